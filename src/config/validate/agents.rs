//! `agents`: the inline registry and the registry feed.

use super::{problem, within};
use crate::agents::{AgentRecord, Registry};
use crate::config::raw::FeedConfig;
use crate::problem::Problem;

/// The inline registry (its records checked by [`Registry::new`]); empty when it has
/// problems.
pub(super) fn registry(records: Vec<AgentRecord>, out: &mut Vec<Problem>) -> Registry {
    match Registry::new("config".into(), records, "$.agents.registry") {
        Ok(r) => r,
        Err(mut p) => {
            out.append(&mut p);
            Registry::default()
        }
    }
}

pub(super) fn feed(feed: &FeedConfig, out: &mut Vec<Problem>) {
    let path = |field: &str| format!("$.agents.feed.{field}");
    if feed.cluster.is_empty() {
        out.push(problem(path("cluster"), "must name an Envoy cluster"));
    }
    if !feed.path.starts_with('/') {
        out.push(problem(
            path("path"),
            format!("\"{}\" must start with `/`", feed.path),
        ));
    }
    within(
        &path("poll_interval_ms"),
        feed.poll_interval_ms,
        100..=3_600_000,
        out,
    );
    within(&path("timeout_ms"), feed.timeout_ms, 10..=60_000, out);
    within(
        &path("max_staleness_s"),
        feed.max_staleness_s,
        1..=86_400,
        out,
    );
    if feed.max_staleness_s.saturating_mul(1000) < feed.poll_interval_ms {
        out.push(problem(
            path("max_staleness_s"),
            "must be at least one poll interval",
        ));
    }
}
