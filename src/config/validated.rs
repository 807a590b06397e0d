//! Phase 2's result: the validated configuration the pipeline runs on, and the questions
//! it answers (token rules, the route for a request, which headers belong to the filter).

use super::raw::{BackendChoice, FeedConfig, HeaderNames, UnmatchedRoute};
use crate::agents::Registry;
use crate::delegation::CeilingMode;
use crate::route::{self, Route};
use crate::token::Issuer;

/// The validated configuration the pipeline runs on.
#[derive(Debug)]
pub struct Config {
    pub issuers: Vec<Issuer>,
    pub clock_skew_s: u64,
    pub max_token_lifetime_s: u64,
    pub max_token_bytes: usize,
    pub max_delegation_depth: usize,
    pub signature_backend: BackendChoice,
    pub cache_entries: usize,
    pub headers: HeaderNames,
    pub strip_authorization: bool,
    pub registry: Registry,
    pub feed: Option<FeedConfig>,
    pub allow_unregistered_subjects: bool,
    pub ceiling: CeilingMode,
    pub routes: Vec<Route>,
    /// Read the route from Envoy's route metadata (`filter_metadata.agent_iam.route`).
    pub route_metadata: bool,
    /// `protected_resource`, with its metadata URL and path.
    pub protected_resource: Option<crate::mcp::ProtectedResource>,
    /// `scope_implies`, closed: each scope with every scope it grants, directly or not.
    pub scope_implies: Vec<(String, Vec<String>)>,
    pub unmatched_route: UnmatchedRoute,
    /// `;` in paths.
    pub semicolons: crate::target::Semicolons,
    /// Every method a request may use (RFC 9110's, PATCH, those routes name, `request.methods`).
    pub methods: Vec<String>,
    /// `upstream.reserved_prefix`, lower-case, `_` as `-` (empty: none).
    pub reserved_prefix: String,
    pub revocation: Option<crate::revocation::Revocation>,
    pub policy: Option<crate::policy::Policy>,
    pub audit: crate::audit::AuditConfig,
    pub verify_budget: Option<crate::budget::BudgetConfig>,
    /// `limits`, in order.
    pub limits: Vec<crate::limits::LimitConfig>,
    pub limits_max_keys: usize,
    pub quarantine: Option<crate::quarantine::QuarantineConfig>,
    /// `quarantine.report`, validated (its signing key parsed).
    pub quarantine_report: Option<crate::quarantine::report::Reporter>,
    /// How DPoP proofs are checked.
    pub dpop: DpopRules,
    /// Every check's mode where a route sets none (`mode`, `checks.<check>.mode`).
    pub modes: crate::mode::Modes,
    /// What a stale registry feed does (`checks.delegation.failure_mode`).
    pub registry_failure: crate::mode::FailureMode,
    /// What stale revocation state does (`checks.revocation.failure_mode`).
    pub revocation_failure: crate::mode::FailureMode,
}

/// The validated `dpop` section.
#[derive(Debug, Clone)]
pub struct DpopRules {
    pub max_proof_age_s: u64,
    pub algorithms: Vec<crate::keys::Alg>,
    pub max_proof_bytes: usize,
    pub replay_max_entries: usize,
    /// `scheme://host[:port]`, normalised as [`crate::dpop::request_htu`] writes it.
    pub origin: Option<String>,
}

impl Config {
    /// What token verification needs of this configuration.
    pub fn token_rules(&self) -> crate::token::TokenRules<'_> {
        crate::token::TokenRules {
            issuers: &self.issuers,
            clock_skew_s: self.clock_skew_s,
            max_token_lifetime_s: self.max_token_lifetime_s,
            max_token_bytes: self.max_token_bytes,
            max_delegation_depth: self.max_delegation_depth,
        }
    }

    /// Every check's mode on `route` (none: the request matched no route).
    pub fn modes_for(&self, route: Option<&Route>) -> crate::mode::Modes {
        match route.and_then(|r| r.mode) {
            Some(m) => crate::mode::Modes::all(m),
            None => self.modes,
        }
    }

    /// The most specific route for `method` and the canonical `path` (no query, see
    /// [`crate::target`]): an exact match first, then the longest segment-aware prefix;
    /// declaration order breaks ties.
    pub fn route_for(&self, method: &str, path: &str) -> Option<&Route> {
        route::most_specific(&self.routes, method, path)
    }

    /// Whether a request header named `name` is one the filter or its policy may set: an
    /// identity header, a header the policy declares, or a name under the reserved
    /// prefix, in any case and with `_` for `-`. Every client copy of these is removed.
    pub fn is_filter_header(&self, name: &str) -> bool {
        (!self.reserved_prefix.is_empty() && header_starts_with(name, &self.reserved_prefix))
            || self.headers.all().iter().any(|h| header_eq(name, h))
            || self
                .policy
                .as_ref()
                .is_some_and(|p| p.headers.iter().any(|h| header_eq(name, h)))
    }
}

/// `name` equals `canonical` (lower-case, `-`), ignoring case and reading `_` as `-`.
fn header_eq(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len() && header_starts_with(name, canonical)
}

/// `name` starts with `prefix` (lower-case, `-`), ignoring case and reading `_` as `-`.
fn header_starts_with(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.bytes().zip(prefix.bytes()).all(|(a, b)| {
            let a = a.to_ascii_lowercase();
            a == b || (a == b'_' && b == b'-')
        })
}
