//! The token limits (`clock_skew_s`, `max_token_lifetime_s`, `max_token_bytes`),
//! `delegation` and `cache`.

use super::{at_most, within};
use crate::config::raw::{CacheConfig, DelegationConfig};
use crate::problem::Problem;

pub(super) fn token(clock_skew_s: u64, lifetime_s: u64, token_bytes: u64, out: &mut Vec<Problem>) {
    at_most("$.clock_skew_s", clock_skew_s, 300, out);
    within("$.max_token_lifetime_s", lifetime_s, 1..=86_400, out);
    within("$.max_token_bytes", token_bytes, 512..=65_536, out);
}

pub(super) fn delegation(d: &DelegationConfig, out: &mut Vec<Problem>) {
    within("$.delegation.max_depth", d.max_depth, 1..=16, out);
}

pub(super) fn cache(c: &CacheConfig, out: &mut Vec<Problem>) {
    at_most("$.cache.max_entries", c.max_entries, 100_000, out);
}
