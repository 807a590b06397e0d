//! `dpop`: proof age, algorithms, size and the replay cache's capacity.

use super::within;
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
    DpopRules {
        max_proof_age_s: d.max_proof_age_s,
        algorithms,
        max_proof_bytes: usize::try_from(d.max_proof_bytes).unwrap_or(usize::MAX),
        replay_max_entries: usize::try_from(d.replay_max_entries).unwrap_or(usize::MAX),
    }
}
