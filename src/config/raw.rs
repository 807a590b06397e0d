//! Phase 1: the configuration as operators write it. Strict serde types (every struct
//! `deny_unknown_fields`) with the safe defaults; the doc comments are the descriptions
//! of the generated JSON Schema (`agent_iam.meta.json`). Sections that belong to a stage
//! (`revocation`, `policy`, `audit`, `verify_budget`, the registry records, JWKS sources)
//! keep their types in that stage's module.

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;

use crate::agents::AgentRecord;
use crate::delegation::CeilingMode;
use crate::keys::{Alg, JwksConfig, JwksUriConfig};
use crate::mode::{FailureMode, Mode};

/// The plugin configuration as written by operators (see docs/configuration.md).
#[derive(Debug, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(tools, schemars(title = "agent-iam plugin configuration"))]
pub struct PluginConfig {
    /// Trusted token issuers. A token's `iss` selects exactly one.
    pub issuers: Vec<IssuerConfig>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (0..=300).
    #[serde(default = "default_skew")]
    pub clock_skew_s: u64,
    /// Upper bound for `exp - iat`: only short-lived tokens pass (1..=86400).
    #[serde(default = "default_lifetime")]
    pub max_token_lifetime_s: u64,
    /// Longest token accepted, in bytes (512..=65536).
    #[serde(default = "default_token_bytes")]
    pub max_token_bytes: u64,
    /// DPoP proofs (RFC 9449): their age, algorithms, size and replay cache.
    #[serde(default)]
    pub dpop: DpopConfig,
    /// Delegation (RFC 8693 `act`) limits.
    #[serde(default)]
    pub delegation: DelegationConfig,
    /// Which code verifies signatures: `auto` (host crypto on Envoy for ES256/RS256, pure
    /// Rust otherwise), `host` (require Envoy's BoringSSL) or `pure` (pure Rust everywhere).
    #[serde(default)]
    pub signature_backend: BackendChoice,
    /// Per-worker cache of verified signatures.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Per-client budget of failed signature checks against floods of forged tokens
    /// (absent: no budget). Keyed by the downstream address the host reports.
    #[serde(default)]
    pub verify_budget: Option<crate::budget::BudgetConfig>,
    /// Per-identity rates and budgets, checked after the built-in checks and before the
    /// policy, shared by every worker of the host (docs/limits.md).
    #[serde(default)]
    pub limits: Vec<crate::limits::LimitConfig>,
    /// Keys each limit keeps counters for (1..=1000000; default 10000): beyond, the
    /// counters touched longest ago are forgotten.
    #[serde(default = "default_limits_max_keys")]
    pub limits_max_keys: u64,
    /// Automatic quarantine of an agent refused too often (docs/limits.md).
    #[serde(default)]
    pub quarantine: Option<crate::quarantine::QuarantineConfig>,
    /// The agent registry and its live feed.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Route requirements; the most specific match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Envoy: a request whose Envoy route carries `metadata.filter_metadata.agent_iam.route`
    /// is decided on the `routes[]` entry of that name, whatever its path (a name no entry
    /// has is refused, `route.metadata`); a request whose route carries none is matched
    /// on `routes[]` paths. Routes with neither `prefix` nor `exact` are selected this way
    /// only. Default false.
    #[serde(default)]
    pub route_metadata: bool,
    /// The resource the routes protect, for OAuth Protected Resource Metadata (RFC 9728)
    /// and the `resource_metadata` of every challenge.
    #[serde(default)]
    pub protected_resource: Option<ProtectedResourceConfig>,
    /// Scopes that grant others (`{"tickets:admin": ["tickets:read", "tickets:write"]}`):
    /// a required scope is held when an effective scope implies it, directly or through
    /// other implied scopes.
    #[serde(default)]
    pub scope_implies: std::collections::BTreeMap<String, Vec<String>>,
    /// What happens to a request that matches no route: `deny` (default) or `allow`.
    #[serde(default)]
    pub unmatched_route: UnmatchedRoute,
    /// How the request target and method are read (see docs/configuration.md, "Request
    /// hygiene").
    #[serde(default)]
    pub request: RequestConfig,
    /// Real-time revocation: the Shared Signals (RFC 8936 poll) feed and its transmitter.
    #[serde(default)]
    pub revocation: Option<crate::revocation::RevocationConfig>,
    /// The Rego policy evaluated after the built-in checks.
    #[serde(default)]
    pub policy: Option<crate::policy::PolicyConfig>,
    /// The audit trail: where events go and how often a quiet stream checkpoints.
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    /// What the filter tells the upstream on allow.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// `enforce` (default) or `shadow`: in shadow a failed check is audited and counted
    /// (`"enforced": false`) and the request goes upstream. `checks` and `routes[].mode`
    /// override it.
    #[serde(default)]
    pub mode: Mode,
    /// Per check: its mode and, for the checks fed at run time, what a stale feed does.
    #[serde(default)]
    pub checks: ChecksConfig,
}

/// `checks`: one member per check, each optional.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// The access token (`token.*`, `jwks.*`).
    #[serde(default)]
    pub token: Option<CheckConfig>,
    /// Proof of possession of bound tokens (`dpop.*`, `mtls.*`, `token.unbound`).
    #[serde(default)]
    pub sender_constraint: Option<CheckConfig>,
    /// The agent registry and the delegation chain (`agent.*`, `delegation.*`); its
    /// `failure_mode` applies to the registry feed (`agents.feed`).
    #[serde(default)]
    pub delegation: Option<FeedCheckConfig>,
    /// Real-time revocation (`revocation.*`); its `failure_mode` applies to the Shared
    /// Signals feed.
    #[serde(default)]
    pub revocation: Option<FeedCheckConfig>,
    /// The route table (`route.unmatched`, `scope.insufficient`).
    #[serde(default)]
    pub route_scopes: Option<CheckConfig>,
    /// MCP calls (`mcp.*`).
    #[serde(default)]
    pub mcp: Option<CheckConfig>,
    /// The configured limits (`limit.*`).
    #[serde(default)]
    pub limits: Option<CheckConfig>,
    /// The Rego policy (`policy.*`).
    #[serde(default)]
    pub policy: Option<CheckConfig>,
}

/// `checks.<check>`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// `enforce` or `shadow` (absent: the configuration's `mode`).
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// `checks.delegation` and `checks.revocation`: a check fed at run time.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedCheckConfig {
    /// `enforce` or `shadow` (absent: the configuration's `mode`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// While the feed is stale: `deny` (default), `last_good` or `allow_safe_methods`.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

/// One trusted issuer.
#[derive(Debug, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// A token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Inline JWKS: `{"keys": [...]}`. Every key needs `kid`; keys are validated at load.
    /// Exactly one of `jwks` / `jwks_uri`.
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Remote JWKS fetched through an Envoy cluster, shared by all workers, refreshed on
    /// schedule and at once (rate-limited) on an unknown `kid`.
    #[serde(default)]
    pub jwks_uri: Option<JwksUriConfig>,
    /// Allowed algorithms (ES256, EdDSA or its RFC 9864 name Ed25519, RS256). `none` and HMAC
    /// are never accepted.
    pub algorithms: Vec<AlgName>,
    /// Accepted `typ` header values, compared case-insensitively with an optional
    /// `application/` prefix (default: the profile's, `at+jwt` for `rfc8693`).
    #[serde(default)]
    pub accepted_types: Option<Vec<String>>,
    /// How this issuer's tokens name the agent, its principal and the chain: `rfc8693`
    /// (default), `entra-agent-id`, `auth0-agents`, `okta-xaa`,
    /// `{"spiffe": {"trust_domains": [...]}}` or `{"custom": {...}}`.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// Sender-constrained tokens: `if_bound` (default: a bound token must prove possession,
    /// an unbound one passes) or `required` (unbound tokens are refused).
    #[serde(default)]
    pub sender_constraint: SenderConstraint,
}

/// `issuers[].profile`: the identity provider's token shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProfileConfig {
    /// `sub` the principal, `act` the chain (RFC 8693).
    #[default]
    Rfc8693,
    /// Microsoft Entra Agent ID: `idtyp`, `oid`, `azp`, the `xms_*_fct` facets.
    EntraAgentId,
    /// Auth0 for AI Agents: `sub` (`<client>@clients` for an agent alone), `act`,
    /// `sub_profile` / `client_profile`.
    Auth0Agents,
    /// Okta Cross App Access: `sub` the user, `act.sub` or `client_id` the agent.
    OktaXaa,
    /// SPIFFE JWT-SVIDs: `sub` a SPIFFE ID in one of the trust domains.
    Spiffe(SpiffeProfileConfig),
    /// A mapping from claim paths (JSON Pointers, RFC 6901).
    Custom(CustomProfileConfig),
}

/// `issuers[].profile.spiffe`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SpiffeProfileConfig {
    /// Trust domains whose SPIFFE IDs this issuer may assert (`example.org`).
    pub trust_domains: Vec<String>,
}

/// `issuers[].profile.custom`: where the model's fields are in the claims. Every path is a
/// JSON Pointer (`/sub`, `/ext/agent`, `/https:~1~1example.com~1tenant`).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomProfileConfig {
    /// The principal, a string claim (required).
    pub principal: String,
    /// The acting agent, a string claim. When it differs from the principal, the agent
    /// acts for the principal; with `actor_chain`, it must be the current actor.
    #[serde(default)]
    pub agent: Option<String>,
    /// An RFC 8693 `act`-shaped object: the chain, current actor first.
    #[serde(default)]
    pub actor_chain: Option<String>,
    /// The agent's type, a string claim.
    #[serde(default)]
    pub agent_type: Option<String>,
    /// The tenant, a string claim.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The OAuth client, a string claim.
    #[serde(default)]
    pub client: Option<String>,
    /// Conditions every token must meet (else `token.profile_claims`).
    #[serde(default)]
    pub require: Vec<ClaimCondition>,
}

/// One condition of `profile.custom.require`: `claim` and exactly one test.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// The claim's JSON Pointer.
    pub claim: String,
    /// The claim equals this JSON value.
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// The claim is present (`true`) or absent (`false`).
    #[serde(default)]
    pub present: Option<bool>,
    /// The claim, an array of strings or a space-separated string, contains this.
    #[serde(default)]
    pub contains: Option<String>,
}

/// `issuers[].sender_constraint`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SenderConstraint {
    #[default]
    IfBound,
    Required,
}

/// `dpop`: how DPoP proofs (RFC 9449) are checked.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    /// How old a proof may be (its `iat`), in seconds, besides the clock skew (1..=300;
    /// default 60).
    #[serde(default = "default_proof_age")]
    pub max_proof_age_s: u64,
    /// Proof algorithms (ES256, EdDSA or Ed25519, RS256; default all three).
    #[serde(default = "default_dpop_algorithms")]
    pub algorithms: Vec<AlgName>,
    /// Longest proof accepted, in bytes (512..=65536; default 8192).
    #[serde(default = "default_proof_bytes")]
    pub max_proof_bytes: u64,
    /// Proofs remembered against replay, per Envoy (1024..=1048576; default 65536): the
    /// sustained DPoP rate is at most this over (`max_proof_age_s` + 2 × `clock_skew_s`).
    #[serde(default = "default_replay_entries")]
    pub replay_max_entries: u64,
    /// The origin clients address (`https://api.example.com`), when Envoy sits behind
    /// something that changes the scheme or the host: a proof's `htu` must then be this
    /// origin and the request's path. Absent: the scheme Envoy reports
    /// (`x-forwarded-proto`, else `:scheme`) and `:authority`.
    #[serde(default)]
    pub origin: Option<String>,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig {
            max_proof_age_s: default_proof_age(),
            algorithms: default_dpop_algorithms(),
            max_proof_bytes: default_proof_bytes(),
            replay_max_entries: default_replay_entries(),
            origin: None,
        }
    }
}

fn default_proof_age() -> u64 {
    60
}

fn default_dpop_algorithms() -> Vec<AlgName> {
    vec![AlgName::ES256, AlgName::EdDSA, AlgName::RS256]
}

fn default_proof_bytes() -> u64 {
    8192
}

fn default_replay_entries() -> u64 {
    65_536
}

/// Algorithm names accepted in `algorithms`. `Ed25519` (RFC 9864's fully specified name)
/// and the deprecated `EdDSA` name one algorithm: Ed25519 signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
pub enum AlgName {
    ES256,
    EdDSA,
    Ed25519,
    RS256,
}

impl AlgName {
    pub(super) fn alg(self) -> Alg {
        match self {
            AlgName::ES256 => Alg::Es256,
            AlgName::EdDSA | AlgName::Ed25519 => Alg::EdDsa,
            AlgName::RS256 => Alg::Rs256,
        }
    }
}

/// Delegation (RFC 8693 `act` chain) limits.
#[derive(Debug, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DelegationConfig {
    /// Most actors in an `act` chain (1..=16).
    #[serde(default = "default_depth")]
    pub max_depth: u64,
    /// A token asking for more than the chain's ceiling: `deny` (default) or `narrow`.
    #[serde(default)]
    pub on_scope_exceeds_ceiling: CeilingMode,
}

impl Default for DelegationConfig {
    fn default() -> Self {
        DelegationConfig {
            max_depth: default_depth(),
            on_scope_exceeds_ceiling: CeilingMode::Deny,
        }
    }
}

/// The agent registry: inline records, optionally replaced at run time by a feed.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// Registered agents (the initial registry when a feed is configured).
    #[serde(default)]
    pub registry: Vec<AgentRecord>,
    /// A registry feed polled through an Envoy cluster.
    #[serde(default)]
    pub feed: Option<FeedConfig>,
    /// Admit an unregistered `sub` when there is no `act` (routes that also serve humans).
    /// Actors in a delegation chain must always be registered.
    #[serde(default)]
    pub allow_unregistered_subjects: bool,
}

/// Where and how often to fetch the registry: `GET path` on an Envoy cluster, answering
/// `{"version": "...", "agents": [...]}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Envoy cluster name serving the feed.
    pub cluster: String,
    /// Path of the registry document.
    pub path: String,
    /// `:authority` of the feed request (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Poll interval in milliseconds (100..=3600000).
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Per-request timeout in milliseconds (10..=60000).
    #[serde(default = "default_feed_timeout_ms")]
    pub timeout_ms: u64,
    /// After this long without a good answer the feed is stale (1..=86400); what a stale
    /// feed does is `checks.delegation.failure_mode`.
    #[serde(default = "default_staleness")]
    pub max_staleness_s: u64,
    /// Accept an answer whose version orders before the one in use (a smaller decimal
    /// integer, or a different version when either is not a decimal integer). Off: such an
    /// answer is refused (logged, counted, audited) and the registry in use stays.
    #[serde(default)]
    pub allow_rollback: bool,
}

/// One route requirement. Exactly one of `prefix` / `exact`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label used in decisions (defaults to the path), unique; the name Envoy's route
    /// metadata selects the route by.
    #[serde(default)]
    pub name: Option<String>,
    /// Matches paths starting with this (query string excluded). With `route_metadata`,
    /// a route may have neither `prefix` nor `exact`: only Envoy's route metadata selects it.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Matches exactly this path (query string excluded).
    #[serde(default)]
    pub exact: Option<String>,
    /// Methods this route covers (upper case); empty = every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Scopes the effective scopes must contain.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// An MCP endpoint: each JSON-RPC call is decided on its tool, resource or prompt.
    #[serde(default)]
    pub mcp: Option<McpRouteConfig>,
    /// `enforce` or `shadow` for every check on this route (absent: `checks` and `mode`).
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Write the policy's `input` document into each decision event on this route (default
    /// false: only its SHA-256), for `agent-iam policy replay`. The input carries the
    /// token's claims and the request's headers: `audit.policy_input_redact` removes some.
    #[serde(default)]
    pub audit_policy_input: bool,
}

/// `routes[].mcp`: the scopes each tool, resource (URI, or a prefix ending in `*`) and
/// prompt needs, on top of the route's `required_scopes`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct McpRouteConfig {
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub resources: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub prompts: std::collections::BTreeMap<String, Vec<String>>,
    /// A tool, resource or prompt not listed: `deny` (default) or `route` (the route's
    /// scopes suffice).
    #[serde(default)]
    pub other_tools: OtherTools,
    /// Remove from `tools/list` (and the resource and prompt lists) what the caller may
    /// not use (default true).
    #[serde(default = "default_true")]
    pub filter_lists: bool,
    /// The largest JSON-RPC body the filter reads (1..=786432; default 65536).
    #[serde(default = "default_mcp_body")]
    pub max_body_bytes: u64,
    /// Write each call's arguments into its audit event (default false: only their
    /// SHA-256). Arguments may carry secrets and personal data.
    #[serde(default)]
    pub audit_arguments: bool,
}

/// `protected_resource` (RFC 9728).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProtectedResourceConfig {
    /// The resource identifier: an `https` URL without query or fragment, one of the
    /// issuers' audiences (RFC 8707).
    pub resource: String,
    /// Authorization servers (issuer URLs) that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// A human-readable name.
    #[serde(default)]
    pub resource_name: Option<String>,
}

/// `routes[].mcp.other_tools`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OtherTools {
    #[default]
    Deny,
    Route,
}

fn default_mcp_body() -> u64 {
    65_536
}

/// How the filter reads the request line.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// A `;` in the path: `reject` (default, 400 `request.target`: servlet containers strip
    /// `;params` from segments, so `/admin;x` runs `/admin` there) or `allow` (an ordinary
    /// path character, for upstreams that never strip them).
    #[serde(default)]
    pub semicolons: SemicolonMode,
    /// Methods accepted besides RFC 9110's (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS,
    /// TRACE), PATCH and those `routes[].methods` name: upper-case tokens (`PROPFIND`).
    #[serde(default)]
    pub methods: Vec<String>,
}

/// `request.semicolons`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SemicolonMode {
    /// 400 `request.target`.
    #[default]
    Reject,
    /// An ordinary path character.
    Allow,
}

/// What to do with a request that matches no route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedRoute {
    /// 403 `route.unmatched`.
    #[default]
    Deny,
    /// Allow with no scope requirement.
    Allow,
}

/// Signature backend selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// Host crypto when the host is positively identified as Envoy, else pure Rust.
    #[default]
    Auto,
    /// Envoy's BoringSSL for ES256/RS256 (EdDSA stays pure Rust); an error elsewhere.
    Host,
    /// Pure Rust for everything.
    Pure,
}

/// Verified-signature cache, one per worker.
#[derive(Debug, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Most cached tokens per worker (0 disables the cache, at most 100000).
    #[serde(default = "default_cache_entries")]
    pub max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: default_cache_entries(),
        }
    }
}

/// Upstream identity context.
#[derive(Debug, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Names of the identity headers. Client-sent copies are always removed.
    #[serde(default)]
    pub headers: HeaderNames,
    /// Remove the `authorization` header before forwarding (the upstream then never sees
    /// the bearer token). Default: keep it.
    #[serde(default)]
    pub strip_authorization: bool,
    /// Request headers whose names start with this (case-insensitive, `_` read as `-`)
    /// belong to the filter: every client copy is removed before the decision, and a
    /// policy may set them. Default `x-agent-`; `""` reserves no prefix.
    #[serde(default = "default_reserved_prefix")]
    pub reserved_prefix: String,
}

fn default_reserved_prefix() -> String {
    "x-agent-".into()
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            headers: HeaderNames::default(),
            strip_authorization: false,
            reserved_prefix: default_reserved_prefix(),
        }
    }
}

/// Identity header names (lower-case HTTP header names).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderNames {
    /// The acting agent (`act.sub`, or `sub` without delegation).
    #[serde(default = "h_agent")]
    pub agent: String,
    /// The principal the agent acts for (`sub`).
    #[serde(default = "h_principal")]
    pub principal: String,
    /// The delegation chain, newest actor first, comma-separated.
    #[serde(default = "h_chain")]
    pub chain: String,
    /// The effective scopes (token scopes narrowed by the chain's ceiling), space-separated.
    #[serde(default = "h_scopes")]
    pub scopes: String,
    /// The decision id (also in the response body and the log line).
    #[serde(default = "h_decision")]
    pub decision_id: String,
    /// The agent's type, when the issuer's profile names one.
    #[serde(default = "h_agent_type")]
    pub agent_type: String,
    /// The tenant, when the issuer's profile names one.
    #[serde(default = "h_tenant")]
    pub tenant: String,
    /// The OAuth client, when the issuer's profile names one.
    #[serde(default = "h_client")]
    pub client: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            agent: h_agent(),
            principal: h_principal(),
            chain: h_chain(),
            scopes: h_scopes(),
            decision_id: h_decision(),
            agent_type: h_agent_type(),
            tenant: h_tenant(),
            client: h_client(),
        }
    }
}

impl HeaderNames {
    /// All names, for stripping.
    pub fn all(&self) -> [&str; 8] {
        [
            &self.agent,
            &self.principal,
            &self.chain,
            &self.scopes,
            &self.decision_id,
            &self.agent_type,
            &self.tenant,
            &self.client,
        ]
    }
}

fn default_skew() -> u64 {
    30
}
fn default_lifetime() -> u64 {
    600
}
fn default_token_bytes() -> u64 {
    8192
}
fn default_depth() -> u64 {
    4
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_feed_timeout_ms() -> u64 {
    500
}
fn default_staleness() -> u64 {
    30
}
fn default_cache_entries() -> u64 {
    1024
}
fn h_agent() -> String {
    "x-agent-id".into()
}
fn h_principal() -> String {
    "x-agent-principal".into()
}
fn h_chain() -> String {
    "x-agent-chain".into()
}
fn h_scopes() -> String {
    "x-agent-scopes".into()
}
fn h_decision() -> String {
    "x-agent-decision-id".into()
}
fn h_agent_type() -> String {
    "x-agent-type".into()
}
fn h_tenant() -> String {
    "x-agent-idp-tenant".into()
}
fn h_client() -> String {
    "x-agent-client".into()
}

fn default_true() -> bool {
    true
}

fn default_limits_max_keys() -> u64 {
    10_000
}
