//! Sections a stage checks itself (`revocation`, `policy`; `audit` and `verify_budget`
//! are called directly), with what the configuration adds to them.

use crate::policy::{Policy, PolicyConfig};
use crate::problem::Problem;
use crate::revocation::{Revocation, RevocationConfig};
use crate::token::Issuer;

/// `revocation`, its transmitter told the configured token issuers (an `iss_sub`
/// subject of any other issuer names nobody whose tokens this filter accepts).
pub(super) fn revocation(
    raw: RevocationConfig,
    issuers: &[Issuer],
    out: &mut Vec<Problem>,
) -> Option<Revocation> {
    let mut r = raw.validate(out)?;
    r.transmitter.token_issuers = issuers.iter().map(|i| i.issuer.clone()).collect();
    Some(r)
}

/// `policy`, compiled.
pub(super) fn policy(raw: &PolicyConfig, out: &mut Vec<Problem>) -> Option<Policy> {
    match Policy::compile(raw) {
        Ok(p) => Some(p),
        Err(mut p) => {
            out.append(&mut p);
            None
        }
    }
}
