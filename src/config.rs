//! Plugin configuration: strict serde types (phase 1), then `validate` for values and
//! cross-field rules (phase 2). Every problem carries its JSON path; the filter refuses
//! to start with a configuration it does not fully understand.

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::agents::{AgentRecord, Registry};
use crate::delegation::CeilingMode;
use crate::keys::{parse_jwk, Alg, VerifyKey};
pub use crate::keys::{JwksConfig, JwksUriConfig};
pub use crate::problem::Problem;
pub use crate::token::{normalize_typ, Issuer};

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<Problem>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid plugin configuration: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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
    /// The agent registry and its live feed.
    #[serde(default)]
    pub agents: AgentsConfig,
    /// Route requirements; the most specific match wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
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
    /// Allowed algorithms (ES256, EdDSA, RS256). `none` and HMAC are never accepted.
    pub algorithms: Vec<AlgName>,
    /// Accepted `typ` header values, compared case-insensitively with an optional
    /// `application/` prefix.
    #[serde(default = "default_types")]
    pub accepted_types: Vec<String>,
}

/// Algorithm names accepted in `algorithms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
pub enum AlgName {
    ES256,
    EdDSA,
    RS256,
}

impl AlgName {
    fn alg(self) -> Alg {
        match self {
            AlgName::ES256 => Alg::Es256,
            AlgName::EdDSA => Alg::EdDsa,
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
    /// After this long without a good answer the feed is stale (1..=86400).
    #[serde(default = "default_staleness")]
    pub max_staleness_s: u64,
    /// When stale: `deny` every request (default) or keep using the last good registry.
    #[serde(default)]
    pub on_stale: StaleMode,
    /// Accept an answer whose version orders before the one in use (a smaller decimal
    /// integer, or a different version when either is not a decimal integer). Off: such an
    /// answer is refused (logged, counted, audited) and the registry in use stays.
    #[serde(default)]
    pub allow_rollback: bool,
}

/// Behaviour with a stale registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum StaleMode {
    /// Deny with `agent.registry_stale` (fail closed).
    #[default]
    Deny,
    /// Keep deciding with the last good registry.
    LastGood,
}

/// One route requirement. Exactly one of `prefix` / `exact`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Label used in decisions (defaults to the path).
    #[serde(default)]
    pub name: Option<String>,
    /// Matches paths starting with this (query string excluded).
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
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames {
            agent: h_agent(),
            principal: h_principal(),
            chain: h_chain(),
            scopes: h_scopes(),
            decision_id: h_decision(),
        }
    }
}

impl HeaderNames {
    /// All names, for stripping.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.agent,
            &self.principal,
            &self.chain,
            &self.scopes,
            &self.decision_id,
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
fn default_types() -> Vec<String> {
    vec!["at+jwt".into()]
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
}

/// How a route matches paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: PathMatch,
    pub methods: Vec<String>,
    pub required_scopes: Vec<String>,
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

    /// The most specific route for `method` and the canonical `path` (no query, see
    /// [`crate::target`]): an exact match first, then the longest segment-aware prefix;
    /// declaration order breaks ties.
    pub fn route_for(&self, method: &str, path: &str) -> Option<&Route> {
        let eligible = |r: &&Route| r.methods.is_empty() || r.methods.iter().any(|m| m == method);
        let exact = self
            .routes
            .iter()
            .filter(eligible)
            .find(|r| r.path == PathMatch::Exact(path.to_owned()));
        exact.or_else(|| {
            let mut best: Option<&Route> = None;
            for r in self.routes.iter().filter(eligible) {
                if let PathMatch::Prefix(p) = &r.path {
                    let longer = best.is_none_or(
                        |b| matches!(&b.path, PathMatch::Prefix(bp) if p.len() > bp.len()),
                    );
                    if crate::target::prefix_covers(p, path) && longer {
                        best = Some(r);
                    }
                }
            }
            best
        })
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

impl Config {
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

fn validate_routes(routes: &[RouteConfig], problems: &mut Vec<Problem>) -> Vec<Route> {
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let p = format!("$.routes[{i}]");
        let path = match (&r.prefix, &r.exact) {
            (Some(x), None) => PathMatch::Prefix(x.clone()),
            (None, Some(x)) => PathMatch::Exact(x.clone()),
            _ => {
                problems.push(Problem {
                    path: p,
                    message: "exactly one of `prefix` or `exact` is required".into(),
                });
                continue;
            }
        };
        let text = match &path {
            PathMatch::Prefix(x) | PathMatch::Exact(x) => x.clone(),
        };
        if !text.starts_with('/') {
            problems.push(Problem {
                path: p.clone(),
                message: format!("path \"{text}\" must start with `/`"),
            });
        } else {
            // Requests are matched in canonical form: a route written otherwise never matches.
            match crate::target::canonical(&text, crate::target::Semicolons::Allow) {
                Ok(t) if t.query.is_none() && t.path == text => {}
                Ok(t) if t.query.is_none() => problems.push(Problem {
                    path: p.clone(),
                    message: format!(
                        "path \"{text}\" is not in canonical form; write \"{}\"",
                        t.path
                    ),
                }),
                _ => problems.push(Problem {
                    path: p.clone(),
                    message: format!(
                        "path \"{text}\" is not a canonical path (no query, `%2F`, `\\\\` or control characters)"
                    ),
                }),
            }
        }
        for (j, m) in r.methods.iter().enumerate() {
            if !crate::target::is_method_name(m) {
                problems.push(Problem {
                    path: format!("{p}.methods[{j}]"),
                    message: format!("\"{m}\" is not an upper-case HTTP method"),
                });
            }
        }
        for (j, sc) in r.required_scopes.iter().enumerate() {
            if !crate::agents::is_scope_token(sc) {
                problems.push(Problem {
                    path: format!("{p}.required_scopes[{j}]"),
                    message: format!("\"{sc}\" is not a scope"),
                });
            }
        }
        let name = r.name.clone().unwrap_or_else(|| match &path {
            PathMatch::Prefix(x) => format!("{x}*"),
            PathMatch::Exact(x) => x.clone(),
        });
        out.push(Route {
            name,
            path,
            methods: r.methods.clone(),
            required_scopes: r.required_scopes.clone(),
        });
    }
    out
}

fn validate_jwks_uri(u: &JwksUriConfig, p: &str, bad: &mut impl FnMut(String, String)) {
    if u.cluster.is_empty() {
        bad(format!("{p}.cluster"), "must name an Envoy cluster".into());
    }
    if !u.path.starts_with('/') {
        bad(
            format!("{p}.path"),
            format!("\"{}\" must start with `/`", u.path),
        );
    }
    if !(1..=86_400).contains(&u.refresh_s) {
        bad(
            format!("{p}.refresh_s"),
            format!("{} is outside 1..=86400", u.refresh_s),
        );
    }
    if !(1..=3600).contains(&u.min_refetch_s) {
        bad(
            format!("{p}.min_refetch_s"),
            format!("{} is outside 1..=3600", u.min_refetch_s),
        );
    }
    if !(10..=60_000).contains(&u.timeout_ms) {
        bad(
            format!("{p}.timeout_ms"),
            format!("{} is outside 10..=60000", u.timeout_ms),
        );
    }
}

fn validate_feed(feed: &FeedConfig, problems: &mut Vec<Problem>) {
    let mut bad = |field: &str, message: String| {
        problems.push(Problem {
            path: format!("$.agents.feed.{field}"),
            message,
        })
    };
    if feed.cluster.is_empty() {
        bad("cluster", "must name an Envoy cluster".into());
    }
    if !feed.path.starts_with('/') {
        bad("path", format!("\"{}\" must start with `/`", feed.path));
    }
    if !(100..=3_600_000).contains(&feed.poll_interval_ms) {
        bad(
            "poll_interval_ms",
            format!("{} is outside 100..=3600000", feed.poll_interval_ms),
        );
    }
    if !(10..=60_000).contains(&feed.timeout_ms) {
        bad(
            "timeout_ms",
            format!("{} is outside 10..=60000", feed.timeout_ms),
        );
    }
    if !(1..=86_400).contains(&feed.max_staleness_s) {
        bad(
            "max_staleness_s",
            format!("{} is outside 1..=86400", feed.max_staleness_s),
        );
    }
    if feed.max_staleness_s.saturating_mul(1000) < feed.poll_interval_ms {
        bad(
            "max_staleness_s",
            "must be at least one poll interval".into(),
        );
    }
}

/// Most nesting a configuration document may have.
const CONFIG_MAX_DEPTH: usize = 64;

impl Config {
    /// Parses and validates a configuration document, collecting every problem.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let one = |path: &str, message: String| {
            ConfigError(vec![Problem {
                path: path.into(),
                message,
            }])
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(one(
                "$",
                "empty configuration; expected a JSON object with `issuers`".into(),
            ));
        }
        let value = crate::json::parse_strict(bytes, CONFIG_MAX_DEPTH)
            .map_err(|e| one("$", e.to_string()))?;
        let structural = crate::schema::structural_problems(&config_schema_draft4(), &value);
        if !structural.is_empty() {
            return Err(ConfigError(structural));
        }
        let raw: PluginConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            one(&json_path(&path), e.into_inner().to_string())
        })?;
        raw.validate()
    }
}

/// `config_schema` for Kong's `<filter>.meta.json`: generated from [`PluginConfig`] natively,
/// the shipped copy in the filter.
pub fn config_schema_draft4() -> Value {
    #[cfg(tools)]
    {
        crate::schema::draft4_for::<PluginConfig>()
    }
    #[cfg(filter)]
    {
        crate::schema::shipped_config_schema()
    }
}

/// The whole `agent_iam.meta.json` document.
pub fn kong_meta() -> Value {
    serde_json::json!({ "config_schema": config_schema_draft4() })
}

fn json_path(serde_path: &str) -> String {
    if serde_path == "." || serde_path.is_empty() {
        "$".into()
    } else {
        format!("$.{serde_path}")
    }
}

/// A header name the filter may set: lower-case letters, digits and `-`. No `_`: CGI and
/// WSGI upstreams read `x_a` and `x-a` as the same variable.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl PluginConfig {
    /// Phase 2: values and cross-field rules. Returns every problem at once.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |path: String, message: String| problems.push(Problem { path, message });

        if self.issuers.is_empty() {
            bad("$.issuers".into(), "at least one issuer is required".into());
        }
        let mut issuers = Vec::new();
        for (i, ic) in self.issuers.into_iter().enumerate() {
            let p = format!("$.issuers[{i}]");
            if ic.issuer.is_empty() {
                bad(format!("{p}.issuer"), "must not be empty".into());
            }
            if issuers.iter().any(|x: &Issuer| x.issuer == ic.issuer) {
                bad(
                    format!("{p}.issuer"),
                    format!("duplicate issuer \"{}\"", ic.issuer),
                );
            }
            if ic.audiences.is_empty() {
                bad(
                    format!("{p}.audiences"),
                    "at least one audience is required".into(),
                );
            }
            for (j, a) in ic.audiences.iter().enumerate() {
                if a.is_empty() {
                    bad(format!("{p}.audiences[{j}]"), "must not be empty".into());
                }
            }
            if ic.algorithms.is_empty() {
                bad(
                    format!("{p}.algorithms"),
                    "at least one algorithm is required".into(),
                );
            }
            let mut algorithms: Vec<Alg> = Vec::new();
            for (j, a) in ic.algorithms.iter().enumerate() {
                if algorithms.contains(&a.alg()) {
                    bad(
                        format!("{p}.algorithms[{j}]"),
                        format!("duplicate algorithm {}", a.alg().as_str()),
                    );
                }
                algorithms.push(a.alg());
            }
            if ic.accepted_types.is_empty() {
                bad(
                    format!("{p}.accepted_types"),
                    "at least one type is required (typ is mandatory)".into(),
                );
            }
            let mut accepted_types = Vec::new();
            for (j, t) in ic.accepted_types.iter().enumerate() {
                let n = normalize_typ(t);
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) {
                    bad(
                        format!("{p}.accepted_types[{j}]"),
                        format!("\"{t}\" is not a media type"),
                    );
                }
                accepted_types.push(n);
            }
            let inline_keys = match (&ic.jwks, &ic.jwks_uri) {
                (Some(j), None) => {
                    if j.keys.is_empty() {
                        bad(
                            format!("{p}.jwks.keys"),
                            "at least one key is required".into(),
                        );
                    }
                    j.keys.as_slice()
                }
                (None, Some(u)) => {
                    validate_jwks_uri(u, &format!("{p}.jwks_uri"), &mut bad);
                    &[]
                }
                _ => {
                    bad(
                        p.clone(),
                        "exactly one of `jwks` or `jwks_uri` is required".into(),
                    );
                    &[]
                }
            };
            let mut keys: Vec<VerifyKey> = Vec::new();
            for (j, k) in inline_keys.iter().enumerate() {
                let kp = format!("{p}.jwks.keys[{j}]");
                match parse_jwk(k) {
                    Err(e) => bad(kp, e),
                    Ok(key) => {
                        if keys.iter().any(|x| x.kid == key.kid) {
                            bad(
                                format!("{kp}.kid"),
                                format!("duplicate kid \"{}\"", key.kid),
                            );
                        }
                        if !algorithms.contains(&key.alg) {
                            bad(
                                kp,
                                format!("key alg {} is not in {p}.algorithms", key.alg.as_str()),
                            );
                        }
                        keys.push(key);
                    }
                }
            }
            issuers.push(Issuer {
                issuer: ic.issuer,
                audiences: ic.audiences,
                algorithms,
                accepted_types,
                keys,
                remote: ic.jwks_uri,
            });
        }
        if self.clock_skew_s > 300 {
            bad(
                "$.clock_skew_s".into(),
                format!("{} is above the maximum 300", self.clock_skew_s),
            );
        }
        if !(1..=86_400).contains(&self.max_token_lifetime_s) {
            bad(
                "$.max_token_lifetime_s".into(),
                format!("{} is outside 1..=86400", self.max_token_lifetime_s),
            );
        }
        if !(512..=65_536).contains(&self.max_token_bytes) {
            bad(
                "$.max_token_bytes".into(),
                format!("{} is outside 512..=65536", self.max_token_bytes),
            );
        }
        if !(1..=16).contains(&self.delegation.max_depth) {
            bad(
                "$.delegation.max_depth".into(),
                format!("{} is outside 1..=16", self.delegation.max_depth),
            );
        }
        if self.cache.max_entries > 100_000 {
            bad(
                "$.cache.max_entries".into(),
                format!("{} is above the maximum 100000", self.cache.max_entries),
            );
        }
        let names = self.upstream.headers.all();
        for (field, name) in ["agent", "principal", "chain", "scopes", "decision_id"]
            .iter()
            .zip(names)
        {
            let path = format!("$.upstream.headers.{field}");
            if !valid_header_name(name) {
                bad(path, format!("\"{name}\" is not a lower-case header name"));
            } else if name == "authorization" || name == "host" || name == "cookie" {
                bad(path, format!("\"{name}\" cannot be an identity header"));
            } else if names.iter().filter(|n| **n == name).count() > 1 {
                bad(path, format!("\"{name}\" is used for two identity headers"));
            }
        }
        let routes = validate_routes(&self.routes, &mut problems);
        let mut methods: Vec<String> = crate::target::STANDARD_METHODS
            .iter()
            .map(|m| (*m).to_owned())
            .collect();
        for (j, m) in self.request.methods.iter().enumerate() {
            if !crate::target::is_method_name(m) {
                problems.push(Problem {
                    path: format!("$.request.methods[{j}]"),
                    message: format!("\"{m}\" is not an upper-case HTTP method"),
                });
            }
        }
        for m in routes
            .iter()
            .flat_map(|r| r.methods.iter())
            .chain(&self.request.methods)
        {
            if !methods.contains(m) {
                methods.push(m.clone());
            }
        }
        let reserved_prefix = self.upstream.reserved_prefix.replace('_', "-");
        if !reserved_prefix.is_empty() && !valid_header_name(&reserved_prefix) {
            problems.push(Problem {
                path: "$.upstream.reserved_prefix".into(),
                message: format!(
                    "\"{}\" is not a lower-case header name prefix",
                    self.upstream.reserved_prefix
                ),
            });
        }
        if let Some(feed) = &self.agents.feed {
            validate_feed(feed, &mut problems);
        }
        let registry =
            match Registry::new("config".into(), self.agents.registry, "$.agents.registry") {
                Ok(r) => r,
                Err(mut p) => {
                    problems.append(&mut p);
                    Registry::default()
                }
            };
        let revocation = self
            .revocation
            .and_then(|r| r.validate(&mut problems))
            .map(|mut r| {
                r.transmitter.token_issuers = issuers.iter().map(|i| i.issuer.clone()).collect();
                r
            });
        self.audit.validate(&mut problems);
        if let Some(b) = &self.verify_budget {
            b.validate(&mut problems);
        }
        let policy = match &self.policy {
            None => None,
            Some(pc) if problems.is_empty() => match crate::policy::Policy::compile(pc) {
                Ok(p) => Some(p),
                Err(mut p) => {
                    problems.append(&mut p);
                    None
                }
            },
            Some(_) => None,
        };
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            policy,
            revocation,
            audit: self.audit,
            verify_budget: self.verify_budget,
            strip_authorization: self.upstream.strip_authorization,
            registry,
            feed: self.agents.feed,
            allow_unregistered_subjects: self.agents.allow_unregistered_subjects,
            ceiling: self.delegation.on_scope_exceeds_ceiling,
            routes,
            unmatched_route: self.unmatched_route,
            semicolons: match self.request.semicolons {
                SemicolonMode::Reject => crate::target::Semicolons::Reject,
                SemicolonMode::Allow => crate::target::Semicolons::Allow,
            },
            methods,
            reserved_prefix,
            issuers,
            clock_skew_s: self.clock_skew_s,
            max_token_lifetime_s: self.max_token_lifetime_s,
            max_token_bytes: usize::try_from(self.max_token_bytes).unwrap_or(usize::MAX),
            max_delegation_depth: usize::try_from(self.delegation.max_depth).unwrap_or(usize::MAX),
            signature_backend: self.signature_backend,
            cache_entries: usize::try_from(self.cache.max_entries).unwrap_or(0),
            headers: self.upstream.headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_key() -> Value {
        json!({"kty":"EC","crv":"P-256","kid":"k1",
               "x":"KSexBRK64-3c_kZ4KBKLrSkDJpkZ9whgacjE32xzKDg","y":"x3h5ZOqsAOWSH7FJimD0YGdms9loUAFVjRqXTnNBUT4"})
    }

    fn base() -> Value {
        json!({"issuers":[{"issuer":"https://idp.test","audiences":["api"],"jwks":{"keys":[ec_key()]},"algorithms":["ES256"]}]})
    }

    fn err(v: Value) -> String {
        Config::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let c = Config::from_json(base().to_string().as_bytes()).unwrap();
        assert_eq!(
            (
                c.clock_skew_s,
                c.max_token_lifetime_s,
                c.max_delegation_depth
            ),
            (30, 600, 4)
        );
        assert_eq!(c.issuers[0].accepted_types, vec!["at+jwt"]);
        assert_eq!(c.signature_backend, BackendChoice::Auto);
        assert_eq!(c.headers.agent, "x-agent-id");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_path() {
        let mut v = base();
        v["issuers"][0]["audience"] = json!("typo");
        let e = err(v);
        assert!(e.contains("$.issuers[0]") && e.contains("audience"), "{e}");
        let mut v = base();
        v["clock_skew"] = json!(5);
        assert!(err(v).contains("unknown field `clock_skew`"));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let mut v = base();
        v["clock_skew_s"] = json!(3600);
        v["max_token_lifetime_s"] = json!(0);
        v["issuers"][0]["audiences"] = json!([]);
        v["issuers"][0]["jwks"]["keys"][0]["x"] = json!("AAAA");
        let e = err(v);
        for needle in [
            "$.clock_skew_s",
            "$.max_token_lifetime_s",
            "$.issuers[0].audiences",
            "$.issuers[0].jwks.keys[0]",
        ] {
            assert!(e.contains(needle), "{needle} missing in {e}");
        }
    }

    #[test]
    fn exactly_one_key_source_and_a_checked_jwks_uri() {
        let mut v = base();
        v["issuers"][0]["jwks_uri"] = json!({"cluster": "idp", "path": "/jwks.json"});
        assert!(err(v.clone()).contains("exactly one of `jwks` or `jwks_uri`"));
        v["issuers"][0].as_object_mut().unwrap().remove("jwks");
        let c = Config::from_json(v.to_string().as_bytes()).unwrap();
        assert!(c.issuers[0].keys.is_empty() && c.issuers[0].remote.is_some());
        v["issuers"][0]["jwks_uri"] =
            json!({"cluster": "", "path": "jwks", "refresh_s": 0, "min_refetch_s": 0});
        let e = err(v.clone());
        for p in [
            "jwks_uri.cluster",
            "jwks_uri.path",
            "jwks_uri.refresh_s",
            "jwks_uri.min_refetch_s",
        ] {
            assert!(e.contains(&format!("$.issuers[0].{p}")), "{p}: {e}");
        }
        v["issuers"][0].as_object_mut().unwrap().remove("jwks_uri");
        assert!(err(v).contains("exactly one of"));
    }

    #[test]
    fn wrong_types_and_duplicates_are_errors() {
        let mut v = base();
        v["clock_skew_s"] = json!("30");
        assert!(err(v).contains("$.clock_skew_s"));
        let mut v = base();
        v["issuers"][0]["algorithms"] = json!(["HS256"]);
        assert!(err(v).contains("$.issuers[0].algorithms[0]"));
        let dup = r#"{"issuers":[],"issuers":[]}"#;
        assert!(Config::from_json(dup.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("duplicate member"));
        let mut v = base();
        v["issuers"][0]["jwks"]["keys"] = json!([ec_key(), ec_key()]);
        assert!(err(v).contains("duplicate kid"));
        let mut v = base();
        v["issuers"][0]["algorithms"] = json!(["RS256"]);
        assert!(err(v).contains("not in $.issuers[0].algorithms"));
    }

    #[test]
    fn identity_header_names_are_checked() {
        let mut v = base();
        v["upstream"] = json!({"headers":{"agent":"Authorization"}});
        assert!(err(v).contains("$.upstream.headers.agent"));
        let mut v = base();
        v["upstream"] = json!({"headers":{"agent":"x-who","principal":"x-who"}});
        assert!(err(v).contains("used for two identity headers"));
    }

    #[test]
    fn every_structural_problem_is_reported() {
        let mut v = base();
        v["clock_skew"] = json!(5);
        v["issuers"][0]["audiences"] = json!("not-a-list");
        v["issuers"][0]["algorithms"] = json!(["ES256", "HS256"]);
        v["signature_backend"] = json!("fast");
        v["delegation"] = json!({"max_depth": -1});
        let e = err(v);
        for needle in [
            "$.clock_skew: unknown field `clock_skew`",
            "$.issuers[0].audiences: expected array, got string",
            "$.issuers[0].algorithms[1]: \"HS256\" is not one of",
            "$.signature_backend: \"fast\" is not one of",
            "$.delegation.max_depth: -1 is below the minimum 0",
        ] {
            assert!(e.contains(needle), "{needle} missing in\n{e}");
        }
        let e = err(json!({}));
        assert!(e.contains("$: missing required field `issuers`"), "{e}");
    }

    #[test]
    fn typ_normalisation() {
        assert_eq!(normalize_typ("Application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_typ("JWT"), "jwt");
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_is_draft4_and_closed() {
        let s = config_schema_draft4();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-04/schema#");
        assert_eq!(s["additionalProperties"], false);
        assert!(s["required"]
            .as_array()
            .unwrap()
            .contains(&json!("issuers")));
        let text = s.to_string();
        assert!(!text.contains("\"const\""), "{text}");
        assert!(!text.contains("uint64"), "{text}");
    }

    #[test]
    fn shipped_meta_json_is_current() {
        let shipped = include_str!("../agent_iam.meta.json");
        let shipped: Value = serde_json::from_str(shipped).unwrap();
        assert_eq!(
            shipped,
            kong_meta(),
            "run: cargo run -- generate kong-meta > agent_iam.meta.json"
        );
    }
}
