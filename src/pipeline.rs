//! The decision pipeline shared by the Envoy/Kong filter and the CLI:
//! request view in, [`Decision`] out. Time and randomness are injected.

use std::sync::Arc;

use serde_json::Value;

use crate::agents::Registry;
use crate::audit::{AuditLine, AuditStream, EventContext};
use crate::budget::VerifyBudget;
use crate::cache::VerifiedCache;
use crate::config::{Config, HeaderNames, SenderConstraint, UnmatchedRoute};
use crate::crypto::SignatureBackend;
use crate::delegation::{authorize, AgentRules, Denial};
use crate::mode::{Check, Mode, Modes};
use crate::policy::input::{repeated_header, InputBuilder, RequestView};
use crate::policy::Verdict;
use crate::reason::Reason;
use crate::revocation::RevocationState;
use crate::shared::SharedData;
use crate::target::Target;
use crate::token::{verify_token, VerifiedToken};

use crate::decision::{clip, clip_marked};
pub use crate::decision::{
    AuthScheme, Decision, DecisionIds, McpCall, OriginalTarget, PeerCertificate, Request,
};

/// Largest list response the filter buffers to filter (over it: refused).
pub const LIST_MAX_BYTES: usize = crate::mcp::MAX_BUFFERED_BYTES;

/// What [`Engine::begin`] could decide from the headers. (One per request, moved once:
/// boxing the larger variant would only add an allocation.)
#[allow(clippy::large_enum_variant)]
pub enum Begun {
    Decided(Decision),
    /// A POST on an MCP route: read the body (at most [`BodyWait::max_body`] bytes), then
    /// [`Engine::with_body`].
    NeedBody(BodyWait),
}

/// A decision waiting for the request body.
pub struct BodyWait {
    d: Decision,
    req: Request,
    target: Target,
    host: String,
    max_body: usize,
}

impl BodyWait {
    /// The longest body the route accepts.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Ends the wait without a body the filter can decide on: a deny for `reason`.
    pub fn refuse(self, reason: Reason, detail: &str) -> Decision {
        let mut d = self.d;
        d.reason = Some(reason);
        d.detail = Some(clip(detail));
        d
    }
}

/// Which request headers a decision reads (see [`Engine::wants_headers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderInterest {
    None,
    Mcp,
    All,
}

impl HeaderInterest {
    /// Whether a header called `name` (any case) is collected.
    pub fn keeps(self, name: &str) -> bool {
        match self {
            HeaderInterest::None => false,
            HeaderInterest::All => !name.starts_with(':'),
            HeaderInterest::Mcp => {
                name.get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("mcp-"))
                    || name.eq_ignore_ascii_case("last-event-id")
            }
        }
    }
}

/// How [`Engine::decide`] ended when it did not deny.
enum Flow {
    Done,
    NeedBody(usize),
}

/// How to filter one list response (see [`Engine::list_filter`]).
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// The route's index in the configuration.
    route: usize,
    pub kind: crate::mcp::ListKind,
    /// The JSON-RPC id of the list request.
    pub id: Value,
    /// The caller's effective scopes (`scope_implies` applies when they are checked).
    effective: Vec<String>,
    pub max_bytes: usize,
    pub decision_id: String,
}

/// Whether the request says it speaks MCP 2026-07-28 (whose clients send requests only).
fn modern(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "mcp-protocol-version" && v == crate::mcp::REVISION_2026_07_28)
}

/// The method that uses an entry of a `kind` list.
fn call_method(kind: crate::mcp::ListKind) -> &'static str {
    use crate::mcp::ListKind;
    match kind {
        ListKind::Tools => "tools/call",
        ListKind::Resources | ListKind::ResourceTemplates => "resources/read",
        ListKind::Prompts => "prompts/get",
    }
}

/// SHA-256 of `v` serialized canonically: members sorted by name, no whitespace.
fn arguments_sha256(v: &Value) -> [u8; 32] {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut names: Vec<&String> = m.keys().collect();
                names.sort();
                out.push('{');
                for (i, k) in names.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    if let Some(x) = m.get(k) {
                        write(x, out);
                    }
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    use sha2::Digest;
    let mut text = String::new();
    write(v, &mut text);
    sha2::Sha256::digest(text.as_bytes()).into()
}

impl Decision {
    /// Identity headers to set upstream on allow.
    pub fn upstream_headers(&self, names: &HeaderNames) -> Vec<(String, String)> {
        let Some(t) = self
            .token
            .as_ref()
            .filter(|_| self.allowed() && self.identity_established())
        else {
            return Vec::new();
        };
        // The chain and the scopes only as the agent checks passed them (neither when they
        // failed in shadow).
        let delegation_failed = self
            .shadow
            .iter()
            .any(|s| s.check == crate::mode::Check::Delegation);
        let mut out = vec![
            (names.agent.clone(), t.agent.clone()),
            (names.principal.clone(), t.subject.clone()),
            (names.decision_id.clone(), self.decision_id.clone()),
        ];
        // What the issuer's profile named besides agent and principal: identity values
        // (`agents::is_identity`, checked by `profile::map`).
        for (name, value) in [
            (&names.agent_type, &t.agent_type),
            (&names.tenant, &t.tenant),
            (&names.client, &t.client),
        ] {
            if let Some(v) = value {
                out.push((name.clone(), v.clone()));
            }
        }
        if !t.chain.is_empty() && !delegation_failed {
            // `x-agent-chain`: the actors' `sub`s, current first, joined by `,` without
            // spaces. Unambiguous: identity values never contain `,` or whitespace
            // (`agents::is_identity`, checked when the token is verified).
            let subs: Vec<&str> = t.chain.iter().map(|a| a.sub.as_str()).collect();
            out.push((names.chain.clone(), subs.join(",")));
        }
        // Only scopes the registry granted (none when the agent checks failed in shadow).
        let effective = match &self.agent {
            Some(a) => Some(&a.effective),
            None if delegation_failed => None,
            None => Some(&t.scopes),
        };
        if let Some(effective) = effective.filter(|e| !e.is_empty()) {
            out.push((names.scopes.clone(), effective.join(" ")));
        }
        // Policy headers never replace the identity headers.
        let reserved = names.all();
        out.extend(
            self.policy_headers
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .cloned(),
        );
        out
    }
}

/// What the feeds change while the engine runs: the keys in force, the registry and the
/// revocation state, each with when its feed last confirmed it. The configuration itself
/// never changes after [`Engine::new`].
struct Live {
    /// The issuers with the keys in force (inline keys, or the last good remote keys).
    issuers: Vec<crate::token::Issuer>,
    registry: Registry,
    /// When the registry was last confirmed by the feed (UNIX seconds); `None` without a feed.
    registry_fresh_at: Option<f64>,
    /// The revocation state in use and its version (from the feed, shared by all workers).
    revoked: RevocationState,
    revocation_version: u64,
    /// When the revocation feed last answered (UNIX seconds); `None` before the first poll.
    revocation_fresh_at: Option<f64>,
}

/// A configured decision engine: one per worker (VM) or CLI run.
pub struct Engine {
    config: Config,
    live: Live,
    backend: Box<dyn SignatureBackend>,
    cache: VerifiedCache,
    ids: DecisionIds,
    /// The policy's `input` builder, with its per-token and per-route parts.
    inputs: InputBuilder,
    /// Set when a token named a `kid` a remote issuer does not have.
    kid_miss: Option<usize>,
    /// This worker's audit chain.
    audit: AuditStream,
    /// Failed signature checks per client (`verify_budget`).
    budget: Option<VerifyBudget>,
    /// Where the client's address comes from when a request does not carry it (the host).
    client_source: Option<fn() -> Option<String>>,
    /// Where the connection's client certificate comes from (the host).
    connection_source: Option<fn() -> PeerCertificate>,
    /// The DPoP replay cache's geometry (its slots live in the host's shared data).
    replay: crate::dpop::ReplayCache,
    /// Replay slots of this engine alone, when no host shares data (the CLI, tests).
    #[cfg(tools)]
    local_replay: Option<crate::shared::Memory>,
    /// Every limit's counters.
    limits: Vec<crate::limits::LimitStore>,
    /// Quarantines and the refusals that start them (`quarantine`).
    quarantine: Option<crate::quarantine::QuarantineStore>,
    /// Keep each decision's policy `input` in it (`agent-iam policy input`).
    #[cfg(tools)]
    keep_inputs: bool,
    /// `algs` of the DPoP challenge: the proof algorithms, both names of Ed25519.
    dpop_algs: String,
}

/// `input` without the configured headers and claims, and without an MCP call's arguments
/// unless the route audits them (`mcp.audit_arguments`): their values read `"(redacted)"`.
fn redacted(
    input: &regorus::Value,
    redact: &crate::audit::RedactConfig,
    hide_arguments: bool,
) -> regorus::Value {
    let mut out = input.clone();
    if redact.headers.is_empty() && redact.claims.is_empty() && !hide_arguments {
        return out;
    }
    let hidden = regorus::Value::from("(redacted)");
    let mut hide = |path: &[&str], names: &[String]| {
        let mut v = &mut out;
        for key in path {
            let Ok(obj) = v.as_object_mut() else { return };
            let Some(next) = obj.get_mut(&regorus::Value::from(*key)) else {
                return;
            };
            v = next;
        }
        if let Ok(obj) = v.as_object_mut() {
            for name in names {
                match obj.get_mut(&regorus::Value::from(name.as_str())) {
                    // Absent and null stay what they are: a policy may test for them.
                    Some(slot) if *slot != regorus::Value::Null => *slot = hidden.clone(),
                    _ => {}
                }
            }
        }
    };
    hide(&["request", "headers"], &redact.headers);
    hide(&["token"], &redact.claims);
    if hide_arguments {
        hide(&["mcp"], &["arguments".to_owned()]);
    }
    out
}

/// The route of the filter's own answers of its Protected Resource Metadata (RFC 9728).
pub const METADATA_ROUTE: &str = "oauth-protected-resource";

impl Engine {
    pub fn new(config: Config, backend: Box<dyn SignatureBackend>, ids: DecisionIds) -> Self {
        let cache = VerifiedCache::new(config.cache_entries);
        let budget = config.verify_budget.as_ref().map(VerifyBudget::new);
        let live = Live {
            issuers: config.issuers.clone(),
            registry: config.registry.clone(),
            registry_fresh_at: None,
            revoked: RevocationState::default(),
            revocation_version: 0,
            revocation_fresh_at: None,
        };
        let audit = AuditStream::new(
            ids.prefix(),
            config.audit.checkpoint_s,
            config.policy.as_ref().map(|p| p.revision.clone()),
        )
        .with_request_id_from(config.audit.request_id_from);
        let replay = crate::dpop::ReplayCache::new(config.dpop.replay_max_entries);
        let dpop_algs = crate::dpop::algs_param(&config.dpop.algorithms);
        Engine {
            audit,
            connection_source: None,
            replay,
            #[cfg(tools)]
            local_replay: None,
            limits: config
                .limits
                .iter()
                .map(|l| crate::limits::LimitStore::new(l, config.limits_max_keys))
                .collect(),
            quarantine: config
                .quarantine
                .as_ref()
                .map(crate::quarantine::QuarantineStore::new),
            #[cfg(tools)]
            keep_inputs: false,
            dpop_algs,
            config,
            live,
            backend,
            cache,
            ids,
            inputs: InputBuilder::default(),
            kid_miss: None,
            budget,
            client_source: None,
        }
    }

    /// The configuration this engine was built with (never changed by the feeds).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token rules in force: the configuration's, with the keys the feeds delivered.
    pub fn token_rules(&self) -> crate::token::TokenRules<'_> {
        crate::token::TokenRules {
            issuers: &self.live.issuers,
            ..self.config.token_rules()
        }
    }

    /// How the host reports a request's client address (read only when `verify_budget`
    /// needs it: a token no cache tier answers).
    pub fn set_client_source(&mut self, source: fn() -> Option<String>) {
        self.client_source = Some(source);
    }

    /// How the host reports a request's client certificate (read only for
    /// certificate-bound tokens).
    pub fn set_connection_source(&mut self, source: fn() -> PeerCertificate) {
        self.connection_source = Some(source);
    }

    /// Creates the DPoP replay cache's slots in the host's shared data (once per host,
    /// before requests: the root context's configure).
    pub fn prepare_replay(&self, shared: &dyn SharedData) -> Result<(), Reason> {
        self.replay.prepare(shared)
    }

    /// Creates every limit's counters in the host's shared data (once per host, before
    /// requests: the root context's configure). Without them every limited request is
    /// refused (`limit.unavailable`).
    pub fn prepare_limits(&self, shared: &dyn SharedData) -> Result<(), Reason> {
        self.limits.iter().try_for_each(|l| l.prepare(shared))?;
        match &self.quarantine {
            Some(q) => q.prepare(shared),
            None => Ok(()),
        }
    }

    /// Seconds a client refused with `d` should wait before trying again (`Retry-After`,
    /// RFC 9110 §10.2.3): for the flood guard, until its budget refills one check; for a
    /// stale feed, one poll; for a full DPoP replay cache, until a proof's entry expires;
    /// for keys not fetched yet, the soonest refetch. `None` for other refusals (a retry
    /// cannot change them, or nothing says when it would).
    pub fn retry_after(&self, d: &Decision) -> Option<u64> {
        let secs = |ms: u64| ms.div_ceil(1000).max(1);
        let cfg = &self.config;
        match d.reason? {
            Reason::TokenVerifyBudget => cfg
                .verify_budget
                .as_ref()
                .map(|b| (1.0 / b.per_client_per_s).ceil().max(1.0) as u64),
            Reason::AgentRegistryStale => cfg.feed.as_ref().map(|f| secs(f.poll_interval_ms)),
            Reason::RevocationStale => cfg.revocation.as_ref().map(|r| secs(r.feed.interval_ms)),
            Reason::DpopReplayFull => Some(cfg.dpop.max_proof_age_s + cfg.clock_skew_s),
            Reason::LimitExceeded => d.retry_after_s,
            Reason::JwksUnavailable => cfg
                .issuers
                .iter()
                .filter_map(|i| i.remote.as_ref().map(|r| r.min_refetch_s))
                .min()
                .map(|s| s.max(1)),
            _ => None,
        }
    }

    /// `algs` of the `DPoP` challenge (RFC 9449 §7.1).
    pub fn dpop_algs(&self) -> &str {
        &self.dpop_algs
    }

    /// The audit event(s) for a decision this engine made (see [`AuditStream::decision`]).
    pub fn audit(&mut self, d: &Decision, ctx: &EventContext<'_>) -> Vec<AuditLine> {
        let mut lines = self.audit.decision(d, ctx);
        if let Some(q) = &d.quarantine {
            lines.extend(self.audit.quarantine(q, &d.decision_id, ctx.now));
        }
        lines
    }

    /// This worker's audit chain (checkpoints, stream id).
    pub fn audit_stream(&mut self) -> &mut AuditStream {
        &mut self.audit
    }

    /// A decision id for a deny decided outside [`Engine::evaluate`] (host failures).
    pub fn next_decision_id(&mut self) -> String {
        self.ids.next_id()
    }

    /// Replaces the registry (a new feed version) and records when it was confirmed.
    pub fn set_registry(&mut self, registry: Registry, fresh_at: f64) {
        self.live.registry = registry;
        self.inputs.clear();
        self.live.registry_fresh_at = Some(fresh_at);
    }

    /// Replaces the keys of issuer `index` (a new remote JWKS). Cached verifications are
    /// dropped: a removed key must not keep its tokens alive.
    pub fn set_issuer_keys(&mut self, index: usize, keys: Vec<crate::keys::VerifyKey>) {
        if let Some(issuer) = self.live.issuers.get_mut(index) {
            issuer.keys = keys;
            self.cache = VerifiedCache::new(self.config.cache_entries);
            self.inputs.clear();
        }
    }

    /// The remote issuer whose unknown `kid` the last request presented (then cleared):
    /// the host asks for a (rate-limited) refetch of its JWKS.
    pub fn take_kid_miss(&mut self) -> Option<usize> {
        self.kid_miss.take()
    }

    /// The signature backend (the revocation feed verifies SETs with it too).
    pub fn backend(&self) -> &dyn SignatureBackend {
        self.backend.as_ref()
    }

    /// Replaces the revocation state (a new published version) confirmed at `fresh_at`.
    pub fn set_revocation(&mut self, state: RevocationState, version: u64, fresh_at: f64) {
        self.live.revoked = state;
        self.live.revocation_version = version;
        self.live.revocation_fresh_at = Some(fresh_at);
    }

    /// Records that the revocation feed answered at `fresh_at` with no change.
    pub fn confirm_revocation(&mut self, fresh_at: f64) {
        self.live.revocation_fresh_at = Some(fresh_at);
    }

    /// The version of the revocation state in use (0: none yet).
    pub fn revocation_version(&self) -> u64 {
        self.live.revocation_version
    }

    /// Revocation check: staleness first (fail closed unless configured otherwise), then
    /// the token's `jti`, subject and actors.
    fn check_revocation(
        &self,
        req: &Request,
        token: &VerifiedToken,
        now: f64,
    ) -> Result<(), Reason> {
        let Some(rc) = self.config.revocation.as_ref() else {
            return Ok(());
        };
        let stale = match self.live.revocation_fresh_at {
            None => true,
            Some(at) => now - at > rc.max_staleness_s as f64,
        };
        // Before the first good poll there is no last good state to keep deciding on.
        let known = self.live.revocation_fresh_at.is_some();
        if stale && !(known && self.config.revocation_failure.keeps(&req.method)) {
            return Err(Reason::RevocationStale);
        }
        self.live.revoked.check(
            token.jti.as_deref(),
            &token.subject,
            &token.chain,
            token.claims.get("email").and_then(Value::as_str),
            token.iat,
        )
    }

    /// Records that the feed confirmed the current registry at `fresh_at`.
    pub fn confirm_registry(&mut self, fresh_at: f64) {
        self.live.registry_fresh_at = Some(fresh_at);
    }

    /// The registry in use.
    pub fn registry(&self) -> &Registry {
        &self.live.registry
    }

    /// Starts the staleness clock of a configured feed (at configure time).
    pub fn start_feed_clock(&mut self, now: f64) {
        if self.config.feed.is_some() && self.live.registry_fresh_at.is_none() {
            self.live.registry_fresh_at = Some(now);
        }
    }

    /// Whether a request of `method` is refused for a stale registry feed
    /// (`checks.delegation.failure_mode`).
    fn registry_stale(&self, now: f64, method: &str) -> bool {
        let stale = match (&self.config.feed, self.live.registry_fresh_at) {
            (Some(feed), Some(at)) => now - at > feed.max_staleness_s as f64,
            (Some(_), None) => true,
            (None, _) => false,
        };
        stale && !self.config.registry_failure.keeps(method)
    }

    /// Decides one request at `now` (UNIX seconds). A request on an MCP route is decided
    /// on `req.body` (none: an empty body); the filter, which reads the body only where a
    /// route needs it, calls [`Engine::begin`] and [`Engine::with_body`].
    pub fn evaluate(&mut self, req: &Request, now: f64) -> Decision {
        match self.begin(req, now) {
            Begun::Decided(d) => d,
            Begun::NeedBody(wait) => {
                let body = req.body.clone().unwrap_or_default();
                self.with_body(wait, &body, now)
            }
        }
    }

    /// Decides what the headers can decide: everything, or (a POST on an MCP route
    /// whose caller passed every check before the route's) that the body must be read.
    pub fn begin(&mut self, req: &Request, now: f64) -> Begun {
        self.begin_shared(req, now, None)
    }

    /// [`Engine::begin`] with the host's shared data, where DPoP proofs are remembered
    /// against replay by every worker (without: this engine's own memory, or none in the
    /// filter, where a DPoP proof is then refused).
    pub fn begin_shared(
        &mut self,
        req: &Request,
        now: f64,
        shared: Option<&dyn SharedData>,
    ) -> Begun {
        let mut d = Decision::denied(self.ids.next_id(), Reason::InternalError);
        d.reason = None;
        d.policy_revision = self.config.policy.as_ref().map(|p| p.revision.clone());
        d.method = clip(&req.method);
        let host = crate::target::canonical_host(&req.host);
        d.host = clip(&host);
        let target = self.request_line(req, &mut d);
        let outcome = target.and_then(|t| {
            self.decide(req, &t, &host, now, shared, &mut d)
                .map(|flow| (flow, t))
        });
        match outcome {
            Err(denial) => {
                d.reason = Some(denial.reason);
                d.scope_hint = denial.scopes;
                self.count_refusal(&mut d, now, shared);
                Begun::Decided(d)
            }
            Ok((Flow::Done, _)) => Begun::Decided(d),
            Ok((Flow::NeedBody(max_body), target)) => Begun::NeedBody(BodyWait {
                d,
                req: req.clone(),
                target,
                host,
                max_body,
            }),
        }
    }

    /// Finishes a decision [`Engine::begin`] left waiting, on the request's whole `body`.
    pub fn with_body(&mut self, wait: BodyWait, body: &[u8], now: f64) -> Decision {
        self.with_body_shared(wait, body, now, None)
    }

    /// [`Engine::with_body`] with the host's shared data (the limits' counters).
    pub fn with_body_shared(
        &mut self,
        wait: BodyWait,
        body: &[u8],
        now: f64,
        shared: Option<&dyn SharedData>,
    ) -> Decision {
        let BodyWait {
            mut d,
            req,
            target,
            host,
            max_body,
        } = wait;
        if body.len() > max_body {
            // Never shadowed: the filter did not read the body (nor does Envoy, which
            // refuses it before this point).
            d.reason = Some(Reason::McpBodyTooLarge);
            d.detail = Some(format!("{} bytes, the route allows {max_body}", body.len()));
            d.failed = Some(Check::Mcp);
            self.count_refusal(&mut d, now, shared);
            return d;
        }
        if let Err(denial) = self.decide_mcp(&req, &target, &host, body, now, shared, &mut d) {
            d.reason = Some(denial.reason);
            d.scope_hint = denial.scopes;
            self.count_refusal(&mut d, now, shared);
        }
        d
    }

    /// Ends `wait` without a body the filter can decide on. A body too large or followed by
    /// trailers is the MCP check's refusal, counted toward the agent's quarantine like the
    /// one [`Engine::with_body_shared`] makes; a body that could not be read is the
    /// filter's failure and counts nothing.
    pub fn refuse_body(
        &mut self,
        wait: BodyWait,
        reason: Reason,
        detail: &str,
        now: f64,
        shared: Option<&dyn SharedData>,
    ) -> Decision {
        let mut d = wait.refuse(reason, detail);
        if matches!(reason, Reason::McpBodyTooLarge | Reason::McpBodyInvalid) {
            d.failed = Some(Check::Mcp);
            self.count_refusal(&mut d, now, shared);
        }
        d
    }

    /// What a list response to the allowed decision `d` must be filtered with, if
    /// anything (a `tools/list`, `resources/list` or `prompts/list` on a route with
    /// `filter_lists`).
    pub fn list_filter(&self, d: &Decision) -> Option<ListFilter> {
        let call = d.mcp.as_ref()?;
        let kind = crate::mcp::ListKind::of(&call.method)?;
        let route = self
            .config
            .routes
            .iter()
            .position(|r| Some(&r.name) == d.route.as_ref())?;
        let r = self.config.routes.get(route)?;
        let mcp = r.mcp.as_ref()?;
        // Filtering is enforcement: a route whose MCP check is in shadow sends lists whole.
        let shadow = self.config.modes_for(Some(r)).of(Check::Mcp) == Mode::Shadow;
        if !mcp.filter_lists || !d.allowed() || shadow {
            return None;
        }
        Some(ListFilter {
            route,
            kind,
            id: call.id.clone().unwrap_or(Value::Null),
            effective: d
                .agent
                .as_ref()
                .map(|a| a.effective.clone())
                .unwrap_or_default(),
            max_bytes: LIST_MAX_BYTES,
            decision_id: d.decision_id.clone(),
        })
    }

    /// Whether the caller `f` was made for may use the list entry `key` (a tool or prompt
    /// name, a resource URI or template).
    pub fn list_allows(&self, f: &ListFilter, key: &str) -> bool {
        let Some(route) = self.config.routes.get(f.route) else {
            return false;
        };
        let Some(mcp) = route.mcp.as_ref() else {
            return false;
        };
        match mcp.scopes_for(call_method(f.kind), key) {
            None => false,
            Some(extra) => route
                .required_scopes
                .iter()
                .chain(extra)
                .all(|s| self.holds(&f.effective, s)),
        }
    }

    /// Whether `effective` holds `scope`, itself or through `scope_implies` (closed at
    /// configure time). No allocation: every routed request asks.
    fn holds(&self, effective: &[String], scope: &str) -> bool {
        effective.iter().any(|e| e == scope)
            || self
                .config
                .scope_implies
                .iter()
                .any(|(k, implied)| implied.iter().any(|i| i == scope) && effective.contains(k))
    }

    /// The metadata document answered at `path` (RFC 9728), if it is one of the filter's.
    pub fn protected_resource_metadata(&self, method: &str, path: &str) -> Option<String> {
        let pr = self.config.protected_resource.as_ref()?;
        if method != "GET" && method != "HEAD" {
            return None;
        }
        let path = path.split('?').next().unwrap_or_default();
        let root = "/.well-known/oauth-protected-resource";
        let mcp_route = |r: &crate::route::Route| {
            r.mcp.is_some()
                && match &r.path {
                    Some(
                        crate::route::PathMatch::Exact(p) | crate::route::PathMatch::Prefix(p),
                    ) => path.strip_prefix(root) == Some(p.trim_end_matches('/')),
                    None => false,
                }
        };
        if path != root && path != pr.metadata_path && !self.config.routes.iter().any(mcp_route) {
            return None;
        }
        let mut scopes: Vec<String> = Vec::new();
        for r in &self.config.routes {
            scopes.extend(r.required_scopes.iter().cloned());
            if let Some(m) = &r.mcp {
                for (_, s) in m.tools.iter().chain(&m.prompts) {
                    scopes.extend(s.iter().cloned());
                }
                for (_, s) in &m.resources {
                    scopes.extend(s.iter().cloned());
                }
            }
        }
        scopes.retain(|s| s != "offline_access");
        scopes.sort();
        scopes.dedup();
        Some(pr.document(&scopes).to_string())
    }

    /// The decision for a request the filter answers with the metadata document itself
    /// (no token needed): an allow of the route `oauth-protected-resource`.
    pub fn metadata_decision(&mut self, req: &Request) -> Decision {
        let mut d = Decision::denied(self.ids.next_id(), Reason::InternalError);
        d.reason = None;
        d.method = clip(&req.method);
        d.host = clip(&crate::target::canonical_host(&req.host));
        d.path = clip_marked(&req.path);
        d.route = Some(METADATA_ROUTE.into());
        d
    }

    /// From now on, each decision keeps the `input` document its policy was evaluated on
    /// ([`Decision::policy_input`]): what the authoring tools show.
    #[cfg(tools)]
    pub fn keep_policy_inputs(&mut self) {
        self.keep_inputs = true;
    }

    /// Where 401 and 403 challenges point clients for the resource's metadata.
    pub fn resource_metadata_url(&self) -> Option<&str> {
        self.config
            .protected_resource
            .as_ref()
            .map(|p| p.metadata_url.as_str())
    }

    /// The method and the canonical target (recorded in `d`), or the request-line denial.
    fn request_line(&self, req: &Request, d: &mut Decision) -> Result<Target, Denial> {
        let target = crate::target::canonical(&req.path, self.config.semicolons);
        match &target {
            Ok(t) => {
                let canonical = t.to_target();
                d.path = clip_marked(&canonical);
                if canonical != req.path {
                    d.original = Some(OriginalTarget::of(&req.path));
                    d.rewrite = Some(canonical);
                }
            }
            Err(_) => d.original = Some(OriginalTarget::of(&req.path)),
        }
        if !self.config.methods.contains(&req.method) {
            return Err(Reason::RequestMethod.into());
        }
        let target = target?;
        // Envoy picked the route, and so its metadata, on the target as sent; the target
        // the filter would forward re-routes the request once it is set (a wasm filter's
        // header edits clear Envoy's route cache, and the filter cannot read the new
        // route): `//reports` on the catch-all could reach `/reports`.
        if self.config.route_metadata && d.rewrite.is_some() {
            d.rewrite = None;
            return Err(Reason::RequestNotCanonical.into());
        }
        Ok(target)
    }

    fn decide(
        &mut self,
        req: &Request,
        target: &Target,
        host: &str,
        now: f64,
        shared: Option<&dyn SharedData>,
        d: &mut Decision,
    ) -> Result<Flow, Denial> {
        // The route first (it only depends on the target, or on the route Envoy chose):
        // on an MCP route every deny is a JSON-RPC error.
        let route_index = match &req.envoy_route {
            Some(named) if self.config.route_metadata => {
                let Some(i) = crate::route::named(&self.config.routes, named) else {
                    d.detail = Some(format!(
                        "Envoy's route names {:?}, no configured route",
                        String::from_utf8_lossy(named)
                    ));
                    return Err(Reason::RouteMetadata.into());
                };
                Some(i)
            }
            _ => crate::route::mcp_route_for(&self.config.routes, &target.path).or_else(|| {
                self.config
                    .route_for(&req.method, &target.path)
                    .and_then(|r| self.config.routes.iter().position(|x| std::ptr::eq(x, r)))
            }),
        };
        let route = route_index.and_then(|i| self.config.routes.get(i));
        d.route = route.map(|r| r.name.clone());
        d.jsonrpc = route.is_some_and(|r| r.mcp.is_some());
        let modes = self.config.modes_for(route);
        let authenticated = self
            .authenticate(req, now, &mut d.scheme)
            .inspect_err(|_| d.presented = presented_hash(req))
            .map_err(Denial::from);
        // In shadow, a token that failed leaves nothing to check: every later check is in
        // shadow too (the configuration refuses anything else).
        let Some((token, cached)) = gate(modes, Check::Token, authenticated, d)? else {
            return Ok(Flow::Done);
        };
        d.token_cached = cached;
        let token = d.token.insert(token);
        // Possession next, on every request (a cached token skips only its signature):
        // a stolen bound token learns nothing of the agent's standing.
        let token = Arc::clone(token);
        let bound = self
            .check_binding(req, target, &token, now, d)
            .map_err(Denial::from);
        let possessed = gate(modes, Check::SenderConstraint, bound, d)?.is_some();
        let token = &token;
        let agent = if self.registry_stale(now, &req.method) {
            Err(Reason::AgentRegistryStale.into())
        } else {
            let rules = AgentRules {
                allow_unregistered_subjects: self.config.allow_unregistered_subjects,
                ceiling: self.config.ceiling,
            };
            authorize(
                &token.subject,
                &token.chain,
                &token.scopes,
                &self.live.registry,
                rules,
                now,
            )
        };
        let agent = agent.and_then(|a| {
            self.check_quarantine(token, now, shared)
                .map(|()| a)
                .map_err(Denial::from)
        });
        let agent = gate(modes, Check::Delegation, agent, d)?;
        let agent = agent.map(|a| d.agent.insert(a).clone());
        let revoked = self.check_revocation(req, token, now).map_err(Denial::from);
        let standing = gate(modes, Check::Revocation, revoked, d)?.is_some() && agent.is_some();
        // Only a token in good standing fills the replay cache (shadowed failures included).
        if possessed && standing {
            let remembered = self
                .remember_proof(d.proof.as_ref(), token.binding.jkt, now, shared)
                .map_err(Denial::from);
            gate(modes, Check::SenderConstraint, remembered, d)?;
        }
        // The route's scopes, MCP and the policy need the agent: without it (a shadowed
        // agent check failed) they are in shadow too, and cannot run.
        let Some(agent) = agent else {
            return Ok(Flow::Done);
        };
        let route = route_index.and_then(|i| self.config.routes.get(i));
        let mut mcp_refused = false;
        d.ran.insert(Check::RouteScopes);
        match route {
            None if self.config.unmatched_route == UnmatchedRoute::Deny => {
                gate::<()>(
                    modes,
                    Check::RouteScopes,
                    Err(Reason::RouteUnmatched.into()),
                    d,
                )?;
            }
            None => {}
            Some(r) => {
                if let Some(mcp) = &r.mcp {
                    let takes = r.methods.is_empty() || r.methods.contains(&req.method);
                    let resumes = req.headers.iter().any(|(k, _)| k == "last-event-id");
                    let refused = if req.method == "GET" && resumes {
                        Some(Reason::McpReplay)
                    } else if !takes {
                        Some(Reason::RequestMethod)
                    } else {
                        match req.method.as_str() {
                            // The scopes a call needs depend on the body: decided there,
                            // all of them named in one challenge.
                            "POST" => return Ok(Flow::NeedBody(mcp.max_body_bytes)),
                            // A 2025-11-25 client's stream (GET) and session end (DELETE)
                            // carry no call: the route's scopes. No other method is MCP's.
                            "GET" | "DELETE" => None,
                            _ => Some(Reason::RequestMethod),
                        }
                    };
                    if let Some(reason) = refused {
                        // Refused in shadow: the route's scopes still decide, then nothing
                        // is left the policy (in shadow too) could be asked about.
                        gate::<()>(modes, Check::Mcp, Err(reason.into()), d)?;
                        mcp_refused = true;
                    }
                } else if !r.methods.is_empty() && !r.methods.contains(&req.method) {
                    // Only a route Envoy's metadata named gets here with a method it does
                    // not take (a path match takes the method into account).
                    gate::<()>(
                        modes,
                        Check::RouteScopes,
                        Err(Reason::RequestMethod.into()),
                        d,
                    )?;
                }
                let missing: Vec<String> = r
                    .required_scopes
                    .iter()
                    .filter(|s| !self.holds(&agent.effective, s))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    let denial = Denial {
                        reason: Reason::ScopeInsufficient,
                        scopes: missing,
                    };
                    gate::<()>(modes, Check::RouteScopes, Err(denial), d)?;
                }
            }
        }
        if mcp_refused {
            return Ok(Flow::Done);
        }
        if !self.limits.is_empty() {
            let limited = self.check_limits(&req.method, token, route_index, None, now, shared, d);
            gate(modes, Check::Limits, limited, d)?;
        }
        let token = Arc::clone(token);
        let verdict = self.policy(req, target, host, now, &token, &agent, route_index, None, d);
        gate(modes, Check::Policy, verdict, d)?;
        Ok(Flow::Done)
    }

    /// The body phase of a POST on an MCP route: one JSON-RPC request, its mirrored
    /// headers, the scopes its tool (resource, prompt) needs, the limits, then the policy.
    #[allow(clippy::too_many_arguments)]
    fn decide_mcp(
        &mut self,
        req: &Request,
        target: &Target,
        host: &str,
        body: &[u8],
        now: f64,
        shared: Option<&dyn SharedData>,
        d: &mut Decision,
    ) -> Result<(), Denial> {
        let (token, agent, route_index) = self.waited_for(d)?;
        let route = route_index.and_then(|i| self.config.routes.get(i));
        let Some((route, mcp)) = route.and_then(|r| r.mcp.as_ref().map(|m| (r, m))) else {
            return Err(Reason::InternalError.into());
        };
        let modes = self.config.modes_for(Some(route));
        d.ran.insert(Check::RouteScopes);
        let route_missing = route
            .required_scopes
            .iter()
            .any(|s| !self.holds(&agent.effective, s));
        let call = self.mcp_call(req, body, route, mcp, d);
        let call = gate(modes, Check::Mcp, call, d)?;
        // What the call needs besides the route's scopes; every scope it needs, named in
        // one challenge.
        let (required, call_missing) = match &call {
            Some(c) => (
                c.required.clone(),
                c.required.iter().any(|s| !self.holds(&agent.effective, s)),
            ),
            None => (route.required_scopes.clone(), false),
        };
        let tool_missing = call_missing
            && call.as_ref().is_some_and(|c| {
                c.required
                    .iter()
                    .filter(|s| !route.required_scopes.contains(s))
                    .any(|s| !self.holds(&agent.effective, s))
            });
        let insufficient = |d: &mut Decision| {
            // A 2025-11-25 response names no call; a call refused in shadow left its own.
            d.detail = call
                .as_ref()
                .filter(|c| !c.response)
                .map(|c| format!("{} {:?} needs {}", c.method, c.name, required.join(" ")));
            Err(Denial {
                reason: Reason::ScopeInsufficient,
                scopes: required.clone(),
            })
        };
        if route_missing {
            let r: Result<(), Denial> = insufficient(d);
            gate(modes, Check::RouteScopes, r, d)?;
        }
        if tool_missing {
            let r: Result<(), Denial> = insufficient(d);
            gate(modes, Check::Mcp, r, d)?;
        }
        // Without the call (refused in shadow) the policy, in shadow too, has nothing to
        // decide on.
        let Some(call) = call else {
            return Ok(());
        };
        // The body may arrive long after the headers: the agent may have been quarantined
        // since (the headers phase checked it then).
        let quarantined = self
            .check_quarantine(&token, now, shared)
            .map_err(Denial::from);
        gate(modes, Check::Delegation, quarantined, d)?;
        if !self.limits.is_empty() {
            let named = (!call.response).then_some((call.method.as_str(), call.key_name.as_str()));
            let limited =
                self.check_limits(&req.method, &token, route_index, named, now, shared, d);
            gate(modes, Check::Limits, limited, d)?;
        }
        let verdict = self.policy(
            req,
            target,
            host,
            now,
            &token,
            &agent,
            route_index,
            call.input,
            d,
        );
        gate(modes, Check::Policy, verdict, d)?;
        Ok(())
    }

    /// The MCP check of a POST's body: one JSON-RPC request, its mirrored headers, and the
    /// names the route lists; the call with every scope it needs (the route's first).
    fn mcp_call(
        &self,
        req: &Request,
        body: &[u8],
        route: &crate::route::Route,
        mcp: &crate::route::Mcp,
        d: &mut Decision,
    ) -> Result<CheckedCall, Denial> {
        let msg = match crate::mcp::parse_message(body) {
            Ok(msg) => msg,
            Err(crate::mcp::MessageError::Response { id }) if !modern(&req.headers) => {
                // A 2025-11-25 client answering the server (sampling, elicitation): it
                // runs nothing; the route's scopes and the policy decide.
                crate::mcp::Message {
                    id: Some(id),
                    method: String::new(),
                    name: None,
                    arguments: None,
                    protocol_version: None,
                }
            }
            Err(e) => {
                d.detail = Some(clip(&e.to_string()));
                return Err(match e {
                    crate::mcp::MessageError::Batch => Reason::McpBatch,
                    crate::mcp::MessageError::Json(_) => {
                        d.jsonrpc_code = Some(-32700);
                        Reason::McpBodyInvalid
                    }
                    _ => Reason::McpBodyInvalid,
                }
                .into());
            }
        };
        d.mcp = Some(crate::decision::McpCall {
            id: msg.id.clone(),
            method: clip(&msg.method),
            name: msg.name.as_deref().map(clip_marked),
            protocol_version: msg.protocol_version.as_deref().map(clip),
            arguments_sha256: msg.arguments.as_ref().map(arguments_sha256),
            arguments: None,
        });
        // A 2025-11-25 client's response names no call (and mirrors nothing): the route's
        // scopes, then the policy with `input.mcp.response`.
        let response = msg.method.is_empty();
        if !response {
            crate::mcp::check_headers(&msg, &req.headers).map_err(|e| {
                d.detail = Some(clip(&e.to_string()));
                Reason::McpHeaderMismatch
            })?;
        }
        if mcp.audit_arguments {
            if let Some(call) = d.mcp.as_mut() {
                call.arguments = msg.arguments.clone();
            }
        }
        let name = msg.name.as_deref().unwrap_or_default();
        // A resource URI is looked up as sent and as a server's URI template decodes it
        // (`tickets://%31` is `tickets://1` to a `tickets://{id}` template): both entries'
        // scopes are needed.
        let mut spellings = vec![name.to_owned()];
        if msg.method.starts_with("resources/") && name.contains('%') {
            let Some(decoded) = crate::mcp::percent_decoded(name) else {
                d.detail = Some("a resource URI whose %-escapes do not decode to UTF-8".into());
                return Err(Reason::McpBodyInvalid.into());
            };
            spellings.push(decoded);
        }
        let mut required: Vec<String> = route.required_scopes.clone();
        for spelling in &spellings {
            let Some(extra) = mcp.scopes_for(&msg.method, spelling) else {
                d.detail = Some(format!(
                    "{} {:?} is not listed on this route",
                    msg.method,
                    clip(spelling)
                ));
                return Err(Reason::McpNameUnlisted.into());
            };
            for s in extra {
                if !required.contains(s) {
                    required.push(s.clone());
                }
            }
        }
        let input = self.config.policy.as_ref().map(|_| {
            if response {
                crate::policy::input::mcp_response_value()
            } else {
                crate::policy::input::mcp_value(&msg)
            }
        });
        // Limits count a resource by its decoded URI: each spelling of one resource is one key.
        let key_name = spellings.pop().unwrap_or_default();
        Ok(CheckedCall {
            method: msg.method.clone(),
            name: clip(msg.name.as_deref().unwrap_or_default()),
            key_name,
            response,
            required,
            input,
        })
    }

    /// What the header phase of `d` established: the token, the agent and the route.
    fn waited_for(
        &self,
        d: &Decision,
    ) -> Result<
        (
            Arc<VerifiedToken>,
            crate::delegation::AgentContext,
            Option<usize>,
        ),
        Denial,
    > {
        let (Some(token), Some(agent)) = (d.token.clone(), d.agent.clone()) else {
            return Err(Reason::InternalError.into());
        };
        let route_index = d
            .route
            .as_ref()
            .and_then(|name| self.config.routes.iter().position(|r| &r.name == name));
        Ok((token, agent, route_index))
    }

    /// The Rego policy, when one is configured.
    #[allow(clippy::too_many_arguments)]
    fn policy(
        &mut self,
        req: &Request,
        target: &Target,
        host: &str,
        now: f64,
        token: &VerifiedToken,
        agent: &crate::delegation::AgentContext,
        route_index: Option<usize>,
        mcp: Option<regorus::Value>,
        d: &mut Decision,
    ) -> Result<(), Denial> {
        let Some(policy) = self.config.policy.as_ref() else {
            return Ok(());
        };
        if repeated_header(&req.headers).is_some() {
            return Err(Reason::RequestHeaderRepeated.into());
        }
        let config = &self.config;
        let route = route_index.and_then(|i| config.routes.get(i));
        let hidden = |name: &str| config.is_filter_header(name);
        let view = RequestView {
            req,
            target,
            host,
            hidden: &hidden,
            mcp,
            // Only a proof that held: one that failed in shadow is in the audit event.
            proof: d
                .proof
                .as_ref()
                .filter(|_| !d.shadow.iter().any(|s| s.check == Check::SenderConstraint)),
        };
        let input = self.inputs.build(
            &view,
            policy.policy_time(now),
            token,
            agent,
            route,
            &self.live.registry,
        );
        #[cfg(tools)]
        if self.keep_inputs {
            d.policy_input = Some(input.clone());
        }
        // What the decision was taken on, for replay: its hash, and on routes that opt in
        // the document itself (redacted). Members serialise sorted: the hash is stable.
        if let Ok(text) = serde_json::to_vec(&input) {
            use sha2::Digest;
            d.policy_input_sha256 = Some(sha2::Sha256::digest(&text).into());
        }
        if let Some(r) = route.filter(|r| r.audit_policy_input) {
            // The arguments are recorded only where the route records them anyway.
            let hide_arguments = r.mcp.as_ref().is_some_and(|m| !m.audit_arguments);
            d.audited_input = Some(redacted(
                &input,
                &config.audit.policy_input_redact,
                hide_arguments,
            ));
        }
        match policy.decide(input) {
            Verdict::Allow { headers } => {
                if let Some((name, _)) = headers.iter().find(|(k, _)| !config.is_filter_header(k)) {
                    d.policy_reason = Some(clip(&format!(
                        "decision.headers: `{name}` is neither in policy.headers nor under upstream.reserved_prefix"
                    )));
                    return Err(Reason::PolicyError.into());
                }
                d.policy_headers = headers;
                Ok(())
            }
            Verdict::Deny { reason, status } => {
                d.policy_reason = reason;
                d.policy_status = Some(status);
                Err(Reason::PolicyDenied.into())
            }
            Verdict::Error(msg) => {
                d.policy_reason = Some(clip(&msg));
                Err(Reason::PolicyError.into())
            }
            Verdict::Limit => Err(Reason::PolicyLimit.into()),
        }
    }

    /// Which request headers the host should collect: all of them when a policy reads
    /// them; otherwise, with MCP routes, only those they compare with the body (`Mcp-*`,
    /// `MCP-Protocol-Version`) and `Last-Event-ID`; otherwise none.
    pub fn wants_headers(&self) -> HeaderInterest {
        if self.config.policy.is_some() {
            HeaderInterest::All
        } else if self.config.routes.iter().any(|r| r.mcp.is_some()) {
            HeaderInterest::Mcp
        } else {
            HeaderInterest::None
        }
    }

    /// The token's binding (`cnf`), checked on every request: a DPoP proof of its key
    /// (RFC 9449), the connection's client certificate (RFC 8705), or, for an unbound
    /// token, its issuer's `sender_constraint`.
    fn check_binding(
        &mut self,
        req: &Request,
        target: &Target,
        token: &VerifiedToken,
        now: f64,
        d: &mut Decision,
    ) -> Result<(), Reason> {
        let binding = token.binding;
        if binding.jkt.is_none() && d.scheme == Some(AuthScheme::Dpop) {
            return Err(Reason::DpopTokenUnbound);
        }
        if !binding.is_bound() {
            let required = self
                .live
                .issuers
                .iter()
                .find(|i| i.issuer == token.issuer)
                .is_some_and(|i| i.sender_constraint == SenderConstraint::Required);
            return if required {
                Err(Reason::TokenUnbound)
            } else {
                Ok(())
            };
        }
        if let Some(want) = binding.x5t_s256 {
            let peer = match req.peer_certificate {
                PeerCertificate::Unknown => self
                    .connection_source
                    .map_or(PeerCertificate::Absent, |source| source()),
                known => known,
            };
            match peer {
                PeerCertificate::Sha256(have) => {
                    d.peer_certificate = Some(have);
                    if have != want {
                        return Err(Reason::MtlsCertificateMismatch);
                    }
                }
                PeerCertificate::Unavailable => return Err(Reason::MtlsUnavailable),
                PeerCertificate::Absent | PeerCertificate::Unknown => {
                    return Err(Reason::MtlsCertificateMissing)
                }
            }
        }
        let Some(jkt) = binding.jkt else {
            return Ok(());
        };
        if d.scheme != Some(AuthScheme::Dpop) {
            return Err(Reason::DpopBearerScheme);
        }
        let proof = match req.dpop.as_slice() {
            [] => return Err(Reason::DpopProofMissing),
            [one] => std::str::from_utf8(one).map_err(|_| Reason::DpopProofMalformed)?,
            _ => return Err(Reason::DpopProofRepeated),
        };
        let htu = match &self.config.dpop.origin {
            Some(origin) => format!("{origin}{}", target.path),
            None => {
                let scheme = req.forwarded_proto.as_deref().unwrap_or(&req.scheme);
                crate::dpop::request_htu(scheme, &req.host, &target.path).ok_or(Reason::DpopHtu)?
            }
        };
        let rules = &self.config.dpop;
        let proof_rules = crate::dpop::ProofRules {
            algorithms: &rules.algorithms,
            max_age_s: rules.max_proof_age_s,
            clock_skew_s: self.config.clock_skew_s,
            max_bytes: rules.max_proof_bytes,
            semicolons: self.config.semicolons,
        };
        // Proofs cost a signature check each, like tokens: a client over its budget of
        // failed checks gets none, and a forged proof or another key's is charged.
        let client = self.budget.as_ref().map(|_| self.budget_client(req));
        if let (Some(budget), Some(client)) = (self.budget.as_ref(), client.as_deref()) {
            if budget.exhausted(client, now) {
                return Err(Reason::TokenVerifyBudget);
            }
        }
        let checked = crate::dpop::verify_proof(
            proof,
            &proof_rules,
            &crate::dpop::ProofRequest {
                method: &req.method,
                htu: &htu,
                token_sha256: &token.sha256,
                now,
            },
            self.backend.as_ref(),
        );
        let charge = match &checked {
            Err(Reason::DpopSignature) => true,
            Ok(f) => f.jkt != jkt,
            Err(_) => false,
        };
        if let (true, Some(budget), Some(client)) = (charge, self.budget.as_mut(), client) {
            budget.charge(&client, now);
        }
        let facts = checked?;
        // The proof's `htu` as sent may carry a long query: the record keeps its start.
        let d_proof = d.proof.insert(crate::dpop::ProofFacts {
            htu: clip(&facts.htu),
            ..facts
        });
        if d_proof.jkt != jkt {
            return Err(Reason::DpopKeyMismatch);
        }
        Ok(())
    }

    /// Records the checked `proof` of the key `jkt` (if any) against replay: after the
    /// registry and revocation checks, so a refused token cannot fill the cache. Refuses a
    /// proof whose `jti` this host already accepted for that key.
    fn remember_proof(
        &mut self,
        proof: Option<&crate::dpop::ProofFacts>,
        jkt: Option<[u8; 32]>,
        now: f64,
        shared: Option<&dyn SharedData>,
    ) -> Result<(), Reason> {
        let (Some(proof), Some(jkt)) = (proof, jkt) else {
            return Ok(());
        };
        // Remembered for as long as the proof is accepted (its `iat` may be
        // `max_proof_age_s` + the skew old), rounded up, so that no instant exists at which
        // the proof is accepted and its entry already expired.
        let lifetime = (self.config.dpop.max_proof_age_s + self.config.clock_skew_s) as f64;
        let expires_ms = ((proof.iat + lifetime) * 1000.0).ceil() as u64 + 1;
        let now_ms = millis(now);
        let jti = proof.jti.clone();
        match shared {
            Some(shared) => self
                .replay
                .first_use(shared, &jkt, &jti, expires_ms, now_ms),
            None => self.first_use_locally(&jkt, &jti, expires_ms, now_ms),
        }
    }

    /// The replay check without a host's shared data: this engine's own slots (the CLI,
    /// native tests); in the filter, which always has the host's, refused.
    #[cfg(tools)]
    fn first_use_locally(
        &mut self,
        jkt: &[u8; 32],
        jti: &str,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), Reason> {
        self.local_shared();
        let memory = self
            .local_replay
            .as_ref()
            .ok_or(Reason::DpopReplayUnavailable)?;
        self.replay.first_use(memory, jkt, jti, expires_ms, now_ms)
    }

    #[cfg(filter)]
    fn first_use_locally(&mut self, _: &[u8; 32], _: &str, _: u64, _: u64) -> Result<(), Reason> {
        Err(Reason::DpopReplayUnavailable)
    }

    /// The limits, after the built-in checks and before the policy: each that applies to
    /// the request takes one unit of its key's rate or budget. The first refusal denies
    /// (`limit.<name>`, 429 with `Retry-After`); in shadow it is recorded and the limits
    /// after it take nothing. A refused request has still been counted by the limits
    /// before the one that refused it.
    #[allow(clippy::too_many_arguments)]
    fn check_limits(
        &mut self,
        method: &str,
        token: &VerifiedToken,
        route_index: Option<usize>,
        mcp: Option<(&str, &str)>,
        now: f64,
        shared: Option<&dyn SharedData>,
        d: &mut Decision,
    ) -> Result<(), Denial> {
        if shared.is_none() {
            self.local_shared();
        }
        let Some(shared) = shared.or_else(|| self.local()) else {
            return Err(Reason::LimitUnavailable.into());
        };
        let facts = crate::limits::Facts {
            agent: &token.agent,
            principal: &token.subject,
            chain: &token.chain,
            route: route_index
                .and_then(|i| self.config.routes.get(i))
                .map(|r| r.name.as_str()),
            method,
            mcp,
            tenant: token.tenant.as_deref(),
            client: token.client.as_deref(),
            agent_type: token.agent_type.as_deref(),
            claims: &token.claims,
        };
        let now_ms = millis(now);
        for (i, store) in self.limits.iter().enumerate() {
            let limit = store.limit();
            if !limit.applies(&facts) {
                continue;
            }
            match store.take(shared, &limit.id(&facts), now_ms)? {
                crate::limits::Taken::Admitted { evicted_live } => d.limit_evicted |= evicted_live,
                crate::limits::Taken::Refused { retry_after_s } => {
                    d.limit = Some(crate::decision::LimitRef {
                        index: u16::try_from(i).unwrap_or(u16::MAX),
                        code: format!("limit.{}", limit.name),
                    });
                    d.retry_after_s = Some(retry_after_s);
                    d.detail = Some(format!("limit {:?} is spent for this key", limit.name));
                    return Err(Reason::LimitExceeded.into());
                }
            }
        }
        Ok(())
    }

    /// Refuses a request whose acting agent, any actor of its chain, or its principal is
    /// quarantined, here or (through the revocation feed) by another gateway, unless the
    /// registry's `released_at` for that agent lifts it: a quarantined agent cannot act
    /// through another it delegates to either.
    fn check_quarantine(
        &mut self,
        token: &VerifiedToken,
        now: f64,
        shared: Option<&dyn SharedData>,
    ) -> Result<(), Reason> {
        let reported = !self.live.revoked.quarantines.is_empty();
        if self.quarantine.is_none() && !reported {
            return Ok(());
        }
        if self.quarantine.is_some() && shared.is_none() {
            self.local_shared();
        }
        let local = match &self.quarantine {
            None => None,
            Some(q) => match shared.or_else(|| self.local()) {
                Some(shared) => Some((q, shared)),
                None => return Err(Reason::AgentQuarantineUnavailable),
            },
        };
        let now_ms = millis(now);
        let actors = std::iter::once(token.agent.as_str())
            .chain(token.chain.iter().map(|a| a.sub.as_str()))
            .chain((token.subject != token.agent).then_some(token.subject.as_str()));
        for agent in actors {
            let here = match local {
                Some((q, shared)) => q.active(shared, agent, now_ms)?.map(|(since, _)| since),
                None => None,
            };
            let elsewhere = if reported {
                self.live.revoked.quarantined(agent, now).map(millis)
            } else {
                None
            };
            // The latest start decides: a release lifts the quarantines that began at or
            // before it. The registry is read only for an agent quarantined.
            let Some(since) = here.max(elsewhere) else {
                continue;
            };
            let released = self
                .live
                .registry
                .lookup(agent)
                .and_then(|r| r.released_at)
                .is_some_and(|at| released_ms(at) >= since);
            if !released {
                return Err(Reason::AgentQuarantined);
            }
        }
        Ok(())
    }

    /// Counts an enforced refusal of a verified agent toward its quarantine: the client's
    /// doing (4xx), not the filter's or a feed's (5xx), and not the quarantine itself.
    fn count_refusal(&mut self, d: &mut Decision, now: f64, shared: Option<&dyn SharedData>) {
        let (Some(_), Some(token)) = (d.reason, d.token.as_ref()) else {
            return;
        };
        // Only refusals after proof of possession and revocation passed (a leaked bound or
        // revoked token cannot get its agent quarantined), and a limit's only where its key is
        // the agent's own (a budget shared with others is not this agent's doing alone).
        let counts = match d.failed {
            Some(Check::RouteScopes | Check::Mcp | Check::Policy) => true,
            Some(Check::Limits) => d
                .limit
                .as_ref()
                .and_then(|l| self.limits.get(usize::from(l.index)))
                .is_some_and(|s| s.limit().key.iter().any(|k| k == "agent" || k == "chain")),
            _ => false,
        };
        if self.quarantine.is_none() || !counts || !(400..500).contains(&d.status()) {
            return;
        }
        let released_ms = self
            .live
            .registry
            .lookup(&token.agent)
            .and_then(|r| r.released_at)
            .map(released_ms);
        let agent = token.agent.clone();
        // The agent's issuer: the acting actor's own `iss` when its `act` names one.
        let issuer = token
            .chain
            .first()
            .and_then(|a| a.iss.clone())
            .unwrap_or_else(|| token.issuer.clone());
        if shared.is_none() {
            self.local_shared();
        }
        #[cfg(tools)]
        let local = self.local_replay.as_ref().map(|m| m as &dyn SharedData);
        #[cfg(filter)]
        let local: Option<&dyn SharedData> = None;
        let Some(q) = self.quarantine.as_mut() else {
            return;
        };
        let Some(shared) = shared.or(local) else {
            return;
        };
        let now_ms = millis(now);
        // A store that cannot be written starts no quarantine: the request is refused anyway.
        if let Ok(Some(evidence)) =
            q.count_denial(shared, &agent, &issuer, &d.decision_id, now_ms, released_ms)
        {
            d.quarantine = Some(evidence);
        }
    }

    /// This engine's own shared data (the CLI, native tests), created on first use with
    /// the replay cache's and the limits' slots. The filter always has the host's.
    #[cfg(tools)]
    fn local_shared(&mut self) {
        if self.local_replay.is_none() {
            let memory = crate::shared::Memory::default();
            if self.replay.prepare(&memory).is_ok() && self.prepare_limits(&memory).is_ok() {
                self.local_replay = Some(memory);
            }
        }
    }

    #[cfg(tools)]
    fn local(&self) -> Option<&dyn SharedData> {
        self.local_replay.as_ref().map(|m| m as &dyn SharedData)
    }

    #[cfg(filter)]
    fn local_shared(&mut self) {}

    #[cfg(filter)]
    fn local(&self) -> Option<&dyn SharedData> {
        None
    }

    /// Who a failed signature check is charged to (`verify_budget`): the client's address.
    fn budget_client(&self, req: &Request) -> String {
        let address = req
            .client
            .clone()
            .or_else(|| self.client_source.and_then(|source| source()))
            .unwrap_or_default();
        crate::budget::client_key(&address).to_owned()
    }

    /// The verified token, and whether the cache spared its signature check.
    fn authenticate(
        &mut self,
        req: &Request,
        now: f64,
        scheme: &mut Option<AuthScheme>,
    ) -> Result<(Arc<VerifiedToken>, bool), Reason> {
        let raw = match req.authorization.as_slice() {
            [] => return Err(Reason::TokenMissing),
            [one] => one,
            _ => return Err(Reason::RequestMalformed),
        };
        if raw.len() > self.config.max_token_bytes.saturating_add(16) {
            return Err(Reason::TokenTooLarge);
        }
        let value = std::str::from_utf8(raw).map_err(|_| Reason::RequestMalformed)?;
        let (used, token) = credentials(value)?;
        *scheme = Some(used);
        if !now.is_finite() {
            return Err(Reason::InternalError);
        }
        if let Some(hit) = self
            .cache
            .recent(token, now, self.config.clock_skew_s as f64)
        {
            return hit.map(|t| (t, true));
        }
        // Over its budget of failed checks, a client gets no more signature checks: only
        // tokens the hash tier answers (no signature check needed) go on.
        let client = match &self.budget {
            None => None,
            Some(budget) => {
                let key = self.budget_client(req);
                if budget.exhausted(&key, now) {
                    let hash = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
                    if !self.cache.hit(&hash, now, self.config.clock_skew_s as f64) {
                        return Err(Reason::TokenVerifyBudget);
                    }
                }
                Some(key)
            }
        };
        let rules = crate::token::TokenRules {
            issuers: &self.live.issuers,
            ..self.config.token_rules()
        };
        let out = verify_token(
            token,
            &rules,
            self.backend.as_ref(),
            Some(&mut self.cache),
            now,
        );
        match out {
            Ok((t, cached)) => {
                let t = Arc::new(t);
                self.cache.remember(token, Arc::clone(&t));
                Ok((t, cached))
            }
            Err(reason) => {
                if reason == Reason::TokenKid {
                    self.kid_miss = remote_issuer_of(token, &self.live.issuers);
                }
                if let (Some(budget), Some(client), Reason::TokenSignature) =
                    (self.budget.as_mut(), client, reason)
                {
                    budget.charge(&client, now);
                }
                Err(reason)
            }
        }
    }
}

/// The index of the remote (`jwks_uri`) issuer named by `token`'s `iss`, if any. Only
/// called after a `kid` miss, so the second payload decode costs nothing in the common case.
/// An MCP call that passed its own checks, before the scopes are compared.
struct CheckedCall {
    method: String,
    /// The tool or prompt name, or the resource URI, clipped.
    name: String,
    /// The name limits count the call by: a resource URI %-decoded, whole.
    key_name: String,
    /// A 2025-11-25 client's response: no call.
    response: bool,
    /// Every scope the call needs, the route's first.
    required: Vec<String>,
    /// `input.mcp`, when a policy is configured.
    input: Option<regorus::Value>,
}

/// A check's result under its mode: a failure in shadow is recorded on `d` and the request
/// goes on (`Ok(None)`); enforced (or a reason no mode shadows), it denies.
fn gate<T>(
    modes: Modes,
    check: Check,
    result: Result<T, Denial>,
    d: &mut Decision,
) -> Result<Option<T>, Denial> {
    d.ran.insert(check);
    match result {
        Ok(v) => Ok(Some(v)),
        Err(denial) if modes.of(check) == Mode::Shadow && !denial.reason.always_enforced() => {
            d.shadow.push(crate::decision::ShadowDeny {
                check,
                reason: denial.reason,
            });
            Ok(None)
        }
        Err(denial) => {
            d.failed = Some(check);
            Err(denial)
        }
    }
}

/// UNIX seconds as the milliseconds the shared stores count in (before 1970: 0).
fn millis(now: f64) -> u64 {
    (now * 1000.0).max(0.0) as u64
}

/// `released_at` (whole UNIX seconds) in milliseconds, to its second's end: a quarantine
/// that began within that second (`since` 1800000012.5 and `released_at` 1800000012) is lifted.
fn released_ms(at: u64) -> u64 {
    at.saturating_mul(1000).saturating_add(999)
}

fn remote_issuer_of(token: &str, issuers: &[crate::token::Issuer]) -> Option<usize> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iss = claims.get("iss")?.as_str()?;
    issuers
        .iter()
        .position(|i| i.issuer == iss && i.remote.is_some())
}

/// SHA-256 of the bearer token a request presented (the same hash a verified token gets).
fn presented_hash(req: &Request) -> Option<crate::cache::TokenHash> {
    use sha2::Digest;
    let [one] = req.authorization.as_slice() else {
        return None;
    };
    let (_, token) = credentials(std::str::from_utf8(one).ok()?).ok()?;
    Some(sha2::Sha256::digest(token.as_bytes()).into())
}

/// `Bearer <token>` (RFC 6750 §2.1) or `DPoP <token>` (RFC 9449 §7.1): scheme
/// case-insensitive, one space, no other whitespace.
fn credentials(value: &str) -> Result<(AuthScheme, &str), Reason> {
    let (scheme, token) = value.split_once(' ').ok_or(Reason::TokenScheme)?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        AuthScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        AuthScheme::Dpop
    } else {
        return Err(Reason::TokenScheme);
    };
    if token.is_empty()
        || token
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(Reason::TokenMalformed);
    }
    Ok((scheme, token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_parsing_is_strict() {
        use AuthScheme::{Bearer, Dpop};
        assert_eq!(credentials("Bearer abc"), Ok((Bearer, "abc")));
        assert_eq!(credentials("bearer abc"), Ok((Bearer, "abc")));
        assert_eq!(credentials("DPoP abc"), Ok((Dpop, "abc")));
        assert_eq!(credentials("dpop abc"), Ok((Dpop, "abc")));
        assert_eq!(credentials("Basic abc"), Err(Reason::TokenScheme));
        assert_eq!(credentials("Bearer"), Err(Reason::TokenScheme));
        assert_eq!(credentials("Bearer  abc"), Err(Reason::TokenMalformed));
        assert_eq!(credentials("DPoP a b"), Err(Reason::TokenMalformed));
    }

    #[test]
    fn decision_ids_are_unique_per_worker() {
        let mut ids = DecisionIds::new(7);
        assert_ne!(ids.next_id(), ids.next_id());
        assert_eq!(ids.next_id().len(), 32);
    }

    /// The demo keys and their plugin configuration, admitting unregistered subjects on
    /// any route (the engine tests below are about tokens, not agents).
    fn demo() -> (crate::dev::DevKeys, Value) {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut plugin = crate::dev::demo_plugin_config(&keys);
        plugin["agents"] = json!({"allow_unregistered_subjects": true});
        plugin["unmatched_route"] = json!("allow");
        (keys, plugin)
    }

    /// `GET /tickets/1` with `token`, from `client`.
    fn get(token: &str, client: Option<&str>) -> Request {
        Request {
            body: None,
            client: client.map(str::to_owned),
            method: "GET".into(),
            path: "/tickets/1".into(),
            host: "h".into(),
            authorization: vec![format!("Bearer {token}").into_bytes()],
            headers: vec![],
            ..Request::default()
        }
    }

    /// `jwks_uri` issuers: `jwks.unavailable` before the first fetch, keys applied at run
    /// time, unknown `kid`s reported for a refetch, and a key removal drops cached
    /// verifications.
    #[test]
    fn remote_jwks_lifecycle_in_the_engine() {
        use crate::crypto::PureRust;
        use crate::dev::{mint, Recipe};
        let (keys, mut plugin) = demo();
        let jwks = plugin["issuers"][0]["jwks"].take();
        plugin["issuers"][0].as_object_mut().unwrap().remove("jwks");
        plugin["issuers"][0]["jwks_uri"] = json!({"cluster": "idp", "path": "/jwks.json"});
        let cfg = Config::from_json(plugin.to_string().as_bytes()).unwrap();
        let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
        let now = 1_800_000_000;
        let tok = |recipe: serde_json::Value| {
            let r: Recipe = serde_json::from_value(recipe).unwrap();
            get(&mint(&keys, &r, now).unwrap(), None)
        };
        let good = tok(json!({}));
        let d = engine.evaluate(&good, now as f64);
        assert_eq!(d.reason, Some(Reason::JwksUnavailable));
        assert_eq!(d.status(), 503);

        let parsed: Vec<_> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| crate::keys::parse_jwk(k).unwrap())
            .collect();
        engine.set_issuer_keys(0, parsed.clone());
        assert_eq!(engine.evaluate(&good, now as f64).reason, None);
        assert!(engine.evaluate(&good, now as f64).token_cached);

        let unknown = tok(json!({"header": {"kid": "rotated-in"}}));
        assert_eq!(
            engine.evaluate(&unknown, now as f64).reason,
            Some(Reason::TokenKid)
        );
        assert_eq!(engine.take_kid_miss(), Some(0));
        assert_eq!(engine.take_kid_miss(), None);

        // Rotation removes es-1: its cached token is refused at once.
        let without_es: Vec<_> = parsed.into_iter().filter(|k| k.kid != "es-1").collect();
        engine.set_issuer_keys(0, without_es);
        assert_eq!(
            engine.evaluate(&good, now as f64).reason,
            Some(Reason::TokenKid)
        );
    }

    /// The recent-token tier answers exactly what a full verification answers, at every
    /// clock reading (forwards and backwards), including the clock-dependent denials;
    /// only `cached` differs. A one-character change is not a hit.
    #[test]
    fn recent_tokens_answer_like_a_fresh_verification() {
        use crate::crypto::PureRust;
        use crate::dev::{mint, Recipe};
        let (keys, plugin) = demo();
        let text = plugin.to_string();
        let cfg = || Config::from_json(text.as_bytes()).unwrap();
        let skew = cfg().clock_skew_s as f64;
        let engine = || Engine::new(cfg(), Box::new(PureRust), DecisionIds::new(1));
        let now = 1_800_000_000;
        let request = |t: &str| get(t, None);
        let recipes = [
            json!({"exp": 60}),
            json!({"exp": 600, "nbf": 100, "claims": {"act": {"sub": "agent:a"}}}),
            json!({"alg": "EdDSA", "iat": 50, "exp": 120}),
        ];
        let times = [
            0.0,
            30.0,
            100.0,
            140.0,
            60.0,
            -50.0,
            100.0 + skew,
            700.0,
            0.0,
        ];
        let mut warm = engine();
        for recipe in recipes {
            let r: Recipe = serde_json::from_value(recipe).unwrap();
            let token = mint(&keys, &r, now).unwrap();
            let req = request(&token);
            let mut hits = 0;
            for dt in times {
                let at = now as f64 + dt;
                let fresh = engine().evaluate(&req, at);
                let cached = warm.evaluate(&req, at);
                assert_eq!(cached.reason, fresh.reason, "{token} at +{dt}");
                assert_eq!(format!("{:?}", cached.token), format!("{:?}", fresh.token));
                hits += usize::from(cached.token_cached);
            }
            assert!(hits > 0, "the tier was exercised");
            let mut other = token.into_bytes();
            if let Some(last) = other.last_mut() {
                *last = if *last == b'A' { b'Q' } else { b'A' };
            }
            let other = String::from_utf8(other).unwrap();
            let d = warm.evaluate(&request(&other), now as f64 + 30.0);
            assert!(d.token.is_none() && !d.token_cached, "not the same text");
        }
        assert!(warm.cache.parsed_len() > 0);
    }

    /// The decision cache answers exactly what an evaluation answers: the shipped policy
    /// with `time_resolution_s` (it reads the clock), one warm engine against a fresh
    /// uncached one per request, across tokens, routes, paths, tenants, the write window's
    /// edge, a registry change, a revocation and a policy change. The cache was used.
    #[test]
    fn reused_verdicts_answer_like_an_evaluation_whatever_changed() {
        use crate::crypto::PureRust;
        use crate::dev::{mint, Recipe};
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut plugin: Value =
            serde_json::from_str(&std::fs::read_to_string("envoy/plugin.json").unwrap()).unwrap();
        plugin["agents"].as_object_mut().unwrap().remove("feed");
        plugin["max_token_lifetime_s"] = json!(86_400);
        plugin["policy"]["time_resolution_s"] = json!(1);
        plugin["policy"]["data"]["agent_iam"]["write_window"] =
            json!({"start_hour_utc": 9, "end_hour_utc": 17});
        let engine_for = |plugin: &Value, entries: u64| {
            let mut p = plugin.clone();
            p["policy"]["decision_cache_entries"] = json!(entries);
            let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
            Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1))
        };
        // 2027-01-15 16:59:59 UTC: the write window closes at 17:00.
        let edge = 1_800_032_399i64;
        let token = |claims: Value| {
            let r: Recipe =
                serde_json::from_value(json!({"exp": 86_000, "claims": claims})).unwrap();
            mint(&keys, &r, edge - 3_600).unwrap()
        };
        let chain = json!({"sub": "agent:tool-search", "act": {"sub": "agent:planner"}});
        let tokens = [
            token(
                json!({"sub": "user:alice", "act": chain, "scope": "tickets:read", "tenant": "acme", "jti": "t1"}),
            ),
            token(
                json!({"sub": "user:alice", "act": chain, "scope": "tickets:read", "tenant": "globex", "jti": "t2"}),
            ),
            token(
                json!({"sub": "agent:build-bot-7", "scope": "tickets:read tickets:write", "tenant": "acme", "jti": "t3"}),
            ),
            token(
                json!({"sub": "user:bob", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner", "act": {"sub": "agent:x", "act": {"sub": "agent:y"}}}}, "scope": "tickets:read", "jti": "t4"}),
            ),
        ];
        let requests = [
            ("GET", "/tickets/1"),
            ("GET", "/tickets/2"),
            ("POST", "/tickets"),
            ("GET", "/tenants/acme/x"),
            ("GET", "/tenants/globex/x"),
            ("GET", "/tenants//acme/./x"),
            ("GET", "/status"),
        ];
        let times = [0.2, 0.9, 1.1, 0.5, -1_800.0];
        let request = |t: &str, (method, path): (&str, &str)| Request {
            method: method.into(),
            path: path.into(),
            host: "h".into(),
            authorization: vec![format!("Bearer {t}").into_bytes()],
            ..Request::default()
        };
        let seen = |d: &Decision| {
            format!(
                "{:?} {} {:?} {:?}",
                d.reason,
                d.status(),
                d.policy_reason,
                d.policy_headers
            )
        };
        let mut warm = engine_for(&plugin, 4096);
        type Change = Box<dyn Fn(&mut Engine)>;
        let mut fresh_state: Vec<Change> = Vec::new();
        let mut allowed = 0;
        let mut denied_by_policy = 0;
        let mut round = |warm: &mut Engine, setup: &[Change], label: &str| {
            for t in &tokens {
                for r in requests {
                    for dt in times {
                        let at = edge as f64 + dt;
                        let req = request(t, r);
                        let mut fresh = engine_for(&plugin, 0);
                        for f in setup {
                            f(&mut fresh);
                        }
                        let want = fresh.evaluate(&req, at);
                        let got = warm.evaluate(&req, at);
                        assert_eq!(seen(&got), seen(&want), "{label}: {r:?} at {dt}");
                        allowed += usize::from(got.allowed());
                        denied_by_policy += usize::from(got.reason == Some(Reason::PolicyDenied));
                    }
                }
            }
        };
        round(&mut warm, &fresh_state, "as configured");
        let hits = warm.config.policy.as_ref().unwrap().cache_hits();
        assert!(hits > 0, "the cache answered");

        // The registry changes: agent:planner is suspended.
        let mut feed: Value =
            json!({"version": "2", "agents": plugin["agents"]["registry"].clone()});
        for a in feed["agents"].as_array_mut().unwrap() {
            if a["id"] == "agent:planner" {
                a["status"] = json!("suspended");
            }
        }
        let bytes = feed.to_string();
        let apply_registry: Change = Box::new(move |e: &mut Engine| {
            let reg = crate::agents::parse_feed(bytes.as_bytes()).unwrap();
            e.set_registry(reg, edge as f64);
        });
        apply_registry(&mut warm);
        fresh_state.push(apply_registry);
        round(&mut warm, &fresh_state, "registry changed");

        // A revocation: t3's jti.
        let revoke: Change = Box::new(move |e: &mut Engine| {
            let state = crate::revocation::RevocationState {
                jtis: std::collections::BTreeMap::from([("t3".to_owned(), edge as f64 + 86_400.0)]),
                ..Default::default()
            };
            e.set_revocation(state, 2, edge as f64);
        });
        revoke(&mut warm);
        fresh_state.push(revoke);
        round(&mut warm, &fresh_state, "t3 revoked");
        assert!(
            allowed > 0 && denied_by_policy > 0,
            "{allowed} {denied_by_policy}"
        );

        // A policy change is a new configuration: its engine starts with an empty cache.
        plugin["policy"]["data"]["agent_iam"]["write_window"] =
            json!({"start_hour_utc": 0, "end_hour_utc": 24});
        let mut changed = engine_for(&plugin, 4096);
        assert_eq!(changed.config.policy.as_ref().unwrap().cache_hits(), 0);
        let bot = token(json!({"sub": "agent:build-bot-7", "scope": "tickets:write", "jti": "t5"}));
        let post = request(&bot, ("POST", "/tickets"));
        let late = edge as f64 + 1.5;
        let d = changed.evaluate(&post, late);
        assert!(d.allowed(), "{:?} {:?}", d.reason, d.policy_reason);
        assert_eq!(
            warm.evaluate(&post, late).reason,
            Some(Reason::PolicyDenied)
        );
    }

    /// `verify_budget`: a client's failed signature checks are budgeted; over it, tokens
    /// no cache answers are refused unverified, cached ones still pass, other clients are
    /// unaffected, and the budget refills.
    #[test]
    fn verify_budget_refuses_unverified_tokens_of_a_spent_client() {
        use crate::crypto::PureRust;
        use crate::dev::{mint, Recipe};
        let (keys, mut plugin) = demo();
        plugin["verify_budget"] = json!({"per_client_per_s": 1.0, "burst": 2});
        let cfg = Config::from_json(plugin.to_string().as_bytes()).unwrap();
        let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
        engine.set_client_source(|| Some("10.0.0.9:4711".into()));
        let now = 1_800_000_000;
        let token = |jti: &str, forged: bool| {
            let mut r: Recipe = serde_json::from_value(json!({"claims": {"jti": jti}})).unwrap();
            if forged {
                r.tamper = Some("signature".into());
            }
            mint(&keys, &r, now).unwrap()
        };
        let at = |engine: &mut Engine, t: &str, client: Option<&str>, dt: f64| {
            let d = engine.evaluate(&get(t, client), now as f64 + dt);
            (d.reason, d.status())
        };
        let early = token("early", false);
        assert_eq!(at(&mut engine, &early, Some("10.0.0.1:1"), 0.0).0, None);
        for i in 0..2 {
            let forged = token(&format!("forged-{i}"), true);
            let port = format!("10.0.0.1:{}", 1000 + i);
            let got = at(&mut engine, &forged, Some(&port), 0.0).0;
            assert_eq!(got, Some(Reason::TokenSignature));
        }
        let forged = token("forged-2", true);
        assert_eq!(
            at(&mut engine, &forged, Some("10.0.0.1:9"), 0.0),
            (Some(Reason::TokenVerifyBudget), 429),
            "the port does not reset the budget"
        );
        let fresh = token("fresh", false);
        assert_eq!(
            at(&mut engine, &fresh, Some("10.0.0.1:9"), 0.1).0,
            Some(Reason::TokenVerifyBudget),
            "an unseen token is not verified either"
        );
        assert_eq!(
            at(&mut engine, &early, Some("10.0.0.1:9"), 0.1).0,
            None,
            "cached"
        );
        assert_eq!(
            at(&mut engine, &fresh, Some("10.0.0.2:9"), 0.1).0,
            None,
            "other client"
        );
        let later = token("later", false);
        assert_eq!(
            at(&mut engine, &later, Some("10.0.0.1:9"), 1.1).0,
            None,
            "refilled"
        );
        // Without an address in the request, the host's source is asked.
        for i in 0..2 {
            let forged = token(&format!("src-{i}"), true);
            assert_eq!(
                at(&mut engine, &forged, None, 2.0).0,
                Some(Reason::TokenSignature)
            );
        }
        assert_eq!(
            at(&mut engine, &token("src-2", false), None, 2.0).0,
            Some(Reason::TokenVerifyBudget)
        );
        assert_eq!(
            at(&mut engine, &token("src-3", false), Some("10.0.0.9:1"), 2.0).0,
            Some(Reason::TokenVerifyBudget),
            "the same client either way"
        );
    }
}
