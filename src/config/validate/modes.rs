//! `mode` and `checks`: every check's mode, and what the feed-backed checks do with a
//! stale feed.

use super::super::raw::{CheckConfig, ChecksConfig, FeedCheckConfig};
use super::problem;
use crate::mode::{Check, FailureMode, Mode, Modes};
use crate::problem::Problem;

/// The validated modes and failure modes.
pub(super) struct Checked {
    pub modes: Modes,
    pub registry_failure: FailureMode,
    pub revocation_failure: FailureMode,
}

pub(super) fn check(
    mode: Mode,
    checks: &ChecksConfig,
    registry_feed: bool,
    revocation: bool,
    limits: bool,
    out: &mut Vec<Problem>,
) -> Checked {
    let plain = |c: &Option<CheckConfig>| c.as_ref().and_then(|c| c.mode);
    let fed = |c: &Option<FeedCheckConfig>| c.as_ref().and_then(|c| c.mode);
    let mut modes = Modes::all(mode);
    let mut explicit = Vec::new();
    for (check, m) in [
        (Check::Token, plain(&checks.token)),
        (Check::SenderConstraint, plain(&checks.sender_constraint)),
        (Check::Delegation, fed(&checks.delegation)),
        (Check::Revocation, fed(&checks.revocation)),
        (Check::RouteScopes, plain(&checks.route_scopes)),
        (Check::Mcp, plain(&checks.mcp)),
        (Check::Limits, plain(&checks.limits)),
        (Check::Policy, plain(&checks.policy)),
    ] {
        if let Some(m) = m {
            modes.set(check, m);
            explicit.push(check);
        }
    }
    // Without limits the limits check never runs: it follows the checks it needs, so that
    // shadowing those asks nothing of a check that is not there.
    if !limits && !explicit.contains(&Check::Limits) {
        let shadowed = Check::Limits
            .needs()
            .iter()
            .any(|&n| modes.of(n) == Mode::Shadow);
        if shadowed {
            modes.set(Check::Limits, Mode::Shadow);
        }
    }
    if let Some((shadowed, enforced)) = modes.inconsistency() {
        // Where the shadow came from: the check's own mode, else the configuration's.
        let path = if explicit.contains(&shadowed) {
            format!("$.checks.{}.mode", shadowed.as_str())
        } else {
            "$.mode".to_owned()
        };
        out.push(problem(
            path,
            format!(
                "`{s}` is shadowed but `{e}`, which needs its result, is enforced: a check \
                 that cannot run cannot deny. Shadow `{e}` too, or enforce `{s}`",
                s = shadowed.as_str(),
                e = enforced.as_str()
            ),
        ));
    }
    let mut failure = |c: &Option<FeedCheckConfig>, name: &str, feed: &str, present: bool| {
        let f = c.as_ref().and_then(|c| c.failure_mode);
        if f.is_some() && !present {
            out.push(problem(
                format!("$.checks.{name}.failure_mode"),
                format!("applies to the {feed}, which is not configured"),
            ));
        }
        f.unwrap_or_default()
    };
    let registry_failure = failure(
        &checks.delegation,
        "delegation",
        "registry feed (`agents.feed`)",
        registry_feed,
    );
    let revocation_failure = failure(
        &checks.revocation,
        "revocation",
        "revocation feed (`revocation`)",
        revocation,
    );
    Checked {
        modes,
        registry_failure,
        revocation_failure,
    }
}
