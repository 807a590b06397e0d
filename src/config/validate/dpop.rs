//! `dpop`: proof age, algorithms, size and the replay cache's capacity.

use super::{problem, within};
use crate::config::raw::DpopConfig;
use crate::config::validated::DpopRules;
use crate::problem::Problem;

pub(super) fn check(d: &DpopConfig, out: &mut Vec<Problem>) -> DpopRules {
    within("$.dpop.max_proof_age_s", d.max_proof_age_s, 1..=300, out);
    within(
        "$.dpop.max_proof_bytes",
        d.max_proof_bytes,
        512..=65_536,
        out,
    );
    within(
        "$.dpop.replay_max_entries",
        d.replay_max_entries,
        1024..=1_048_576,
        out,
    );
    let algorithms = super::issuers::algorithms("$.dpop", &d.algorithms, out);
    let origin = d.origin.as_deref().and_then(|o| {
        let normal = o
            .split_once("://")
            .filter(|(_, rest)| !rest.contains(['/', '?', '#', '@']))
            .and_then(|(scheme, authority)| crate::dpop::request_htu(scheme, authority, ""));
        if normal.is_none() {
            out.push(problem(
                "$.dpop.origin",
                format!("{o:?}: expected an origin such as \"https://api.example.com\" (scheme and host, optional port, nothing else)"),
            ));
        }
        normal
    });
    DpopRules {
        max_proof_age_s: d.max_proof_age_s,
        algorithms,
        max_proof_bytes: usize::try_from(d.max_proof_bytes).unwrap_or(usize::MAX),
        replay_max_entries: usize::try_from(d.replay_max_entries).unwrap_or(usize::MAX),
        origin,
    }
}
