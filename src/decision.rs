//! What one request is to the core (a [`Request`]) and what was decided about it (a
//! [`Decision`]): the types the pipeline, the audit trail and every host share.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::cache::TokenHash;
use crate::delegation::AgentContext;
use crate::reason::Reason;
use crate::token::VerifiedToken;

/// What the pipeline needs from a request. Header values are raw bytes: hosts may hand
/// us anything, and non-UTF-8 is answered, not trusted.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub host: String,
    /// Every `authorization` value the host reported.
    pub authorization: Vec<Vec<u8>>,
    /// Other request headers (lower-case names), for the policy; filled only when a policy
    /// or MCP routes are configured ([`crate::pipeline::Engine::wants_headers`]).
    pub headers: Vec<(String, String)>,
    /// The client's address, for `verify_budget`. `None`: the engine asks its client
    /// source ([`Engine::set_client_source`]) when a budget needs it.
    pub client: Option<String>,
    /// The body, for callers that have it up front (the CLI, the playground). The filter
    /// reads it only where a route needs it ([`crate::pipeline::Engine::begin`]).
    pub body: Option<Vec<u8>>,
    /// Every `DPoP` header value (a proof, RFC 9449), each copy on its own.
    pub dpop: Vec<Vec<u8>>,
    /// `:scheme` as the host reports it.
    pub scheme: String,
    /// `x-forwarded-proto` (copies joined with `,`): the scheme Envoy sets from the
    /// connection unless it trusts the hop in front (`xff_num_trusted_hops`).
    pub forwarded_proto: Option<String>,
    /// The connection's client certificate, when the caller knows it (the CLI); the filter
    /// asks the host only for certificate-bound tokens.
    pub peer_certificate: PeerCertificate,
    /// Envoy's route metadata `filter_metadata.agent_iam.route` as the host reported it
    /// (read only with `route_metadata`): the name of the route the request is decided on.
    pub envoy_route: Option<Vec<u8>>,
}

/// What a request's connection says of its client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PeerCertificate {
    /// Not known yet: the engine asks its connection source (none: no certificate).
    #[default]
    Unknown,
    /// No client certificate (or no TLS).
    Absent,
    /// The SHA-256 of the client certificate's DER.
    Sha256([u8; 32]),
    /// The host could not say (fail closed).
    Unavailable,
}

impl Request {
    /// A request as `agent-iam check` and the playground read it: a JSON object with
    /// optional `method` (default GET), `path` (default /), `host`, `client` (its address,
    /// for `verify_budget`), `headers` (name → string or array of strings) and `body` (a
    /// string: what an MCP route decides on), `peer_certificate_sha256` and `envoy_route`
    /// (the route name Envoy's route metadata would give, with `route_metadata`).
    /// `authorization` values go to [`Request::authorization`].
    pub fn from_json(v: &Value) -> Result<Request, String> {
        let obj = v.as_object().ok_or("expected a JSON object")?;
        for k in obj.keys() {
            if ![
                "method",
                "path",
                "host",
                "scheme",
                "client",
                "headers",
                "body",
                "peer_certificate_sha256",
                "envoy_route",
            ]
            .contains(&k.as_str())
            {
                return Err(format!("unknown member `{k}`"));
            }
        }
        let s = |name: &str, default: &str| -> Result<String, String> {
            match obj.get(name) {
                None => Ok(default.to_owned()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("`{name}` must be a string")),
            }
        };
        let mut req = Request {
            method: s("method", "GET")?,
            path: s("path", "/")?,
            host: s("host", "")?,
            scheme: s("scheme", "https")?,
            client: obj
                .contains_key("client")
                .then(|| s("client", ""))
                .transpose()?,
            ..Request::default()
        };
        if let Some(v) = obj.get("peer_certificate_sha256") {
            let digest = v
                .as_str()
                .and_then(|h| crate::dpop::peer_certificate_sha256(h.as_bytes()))
                .ok_or("`peer_certificate_sha256` must be 64 lower-case hex digits (as Envoy reports it)")?;
            req.peer_certificate = PeerCertificate::Sha256(digest);
        }
        if obj.contains_key("envoy_route") {
            req.envoy_route = Some(s("envoy_route", "")?.into_bytes());
        }
        if let Some(b) = obj.get("body") {
            let b = b
                .as_str()
                .ok_or("`body` must be a string (the request body)")?;
            req.body = Some(b.as_bytes().to_vec());
        }
        if let Some(h) = obj.get("headers") {
            let h = h.as_object().ok_or("`headers` must be an object")?;
            for (name, value) in h {
                let values: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for value in values {
                    let value = value
                        .as_str()
                        .ok_or_else(|| format!("header `{name}` must be a string"))?;
                    if name.eq_ignore_ascii_case("authorization") {
                        req.authorization.push(value.as_bytes().to_vec());
                    } else {
                        req.note_binding_header(name, value.as_bytes());
                        req.headers
                            .push((name.to_ascii_lowercase(), value.to_owned()));
                    }
                }
            }
        }
        Ok(req)
    }

    /// Keeps what sender-constrained tokens need of header `name`: each `DPoP` copy on its
    /// own, `x-forwarded-proto` copies joined with `,` (never a scheme the filter can name).
    pub fn note_binding_header(&mut self, name: &str, value: &[u8]) {
        if name.eq_ignore_ascii_case("dpop") {
            self.dpop.push(value.to_vec());
        } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
            let fp = self.forwarded_proto.get_or_insert_with(String::new);
            if !fp.is_empty() {
                fp.push(',');
            }
            fp.push_str(&String::from_utf8_lossy(value));
        }
    }

    /// The request's `x-request-id`, if it has one.
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == "x-request-id")
            .map(|(_, v)| v.as_str())
    }
}

/// A W3C Trace Context `traceparent` value (`00-<trace-id>-<parent-id>-<flags>`, lower-case
/// hex, neither id all zeros), as the audit trail records it; anything else is `None`.
pub fn traceparent(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match parts.as_slice() {
        [version, trace, parent, flags]
            if *version == "00"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && nonzero(trace)
                && nonzero(parent) =>
        {
            Some(text.to_owned())
        }
        _ => None,
    }
}

/// Unique decision ids per worker: a random 64-bit worker prefix and a counter.
#[derive(Debug, Clone)]
pub struct DecisionIds {
    prefix: u64,
    counter: u64,
}

impl DecisionIds {
    pub fn new(seed: u64) -> Self {
        DecisionIds {
            prefix: seed,
            counter: 0,
        }
    }

    /// From the OS/host random source; falls back to a fixed prefix if there is none.
    pub fn from_entropy() -> Self {
        let mut b = [0u8; 8];
        let seed = match getrandom::getrandom(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0x6167_656e_742d_6961,
        };
        DecisionIds::new(seed)
    }

    /// The worker's random prefix (also its audit stream id).
    pub fn prefix(&self) -> u64 {
        self.prefix
    }

    pub fn next_id(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{:016x}{:016x}", self.prefix, self.counter)
    }
}

/// The outcome for one request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub decision_id: String,
    /// `None` on allow.
    pub reason: Option<Reason>,
    /// Shared with the worker's cache of recent tokens.
    pub token: Option<Arc<VerifiedToken>>,
    /// Whether the token's signature check was skipped thanks to the cache (either tier).
    pub token_cached: bool,
    /// SHA-256 of a presented bearer token that did not verify (for the audit trail).
    pub presented: Option<TokenHash>,
    /// Agent checks and scopes (present once the agent checks ran).
    pub agent: Option<AgentContext>,
    /// The matched route's name.
    pub route: Option<String>,
    /// Scopes to name in `WWW-Authenticate` (missing or over the ceiling).
    pub scope_hint: Vec<String>,
    /// The policy's revision, when a policy is configured.
    pub policy_revision: Option<String>,
    /// The policy's own reason for a deny.
    pub policy_reason: Option<String>,
    /// The policy's status for a deny (overrides the reason's default).
    pub policy_status: Option<u16>,
    /// Headers the policy adds upstream on allow.
    pub policy_headers: Vec<(String, String)>,
    /// SHA-256 of the policy's `input` document (its JSON, members sorted), whenever the
    /// policy ran: an audit event names what was decided on without holding it.
    pub policy_input_sha256: Option<[u8; 32]>,
    /// The `input` as the audit event records it (`routes[].audit_policy_input`), redacted.
    pub audited_input: Option<regorus::Value>,
    /// The `input` document the policy was evaluated on, when the engine keeps it
    /// ([`crate::pipeline::Engine::keep_policy_inputs`]: the authoring tools).
    #[cfg(tools)]
    pub policy_input: Option<regorus::Value>,
    pub method: String,
    /// The canonical target (path and query) the decision was taken on, clipped to
    /// [`MAX_FIELD`] bytes with a trailing `…` when longer; empty when it was refused.
    pub path: String,
    pub host: String,
    /// The target as the client sent it, when it differs from the canonical one.
    pub original: Option<OriginalTarget>,
    /// The canonical target the upstream must receive, when it differs from `:path`.
    pub rewrite: Option<String>,
    /// Denies are answered as JSON-RPC errors (the request is on an MCP route).
    pub jsonrpc: bool,
    /// The MCP call the decision was taken on.
    pub mcp: Option<McpCall>,
    /// What exactly was wrong, for the JSON-RPC error's message (never request data
    /// beyond names the body carried, clipped).
    pub detail: Option<String>,
    /// The JSON-RPC error code, when the reason alone does not say (a body that is not JSON).
    pub jsonrpc_code: Option<i64>,
    /// The `Authorization` scheme the request used, once it parsed.
    pub scheme: Option<AuthScheme>,
    /// The DPoP proof that was checked (its key may still differ from the token's).
    pub proof: Option<crate::dpop::ProofFacts>,
    /// The client certificate the connection presented, when a certificate-bound token
    /// made the filter look.
    pub peer_certificate: Option<[u8; 32]>,
    /// Checks in shadow that failed, in the order they ran: not applied.
    pub shadow: Vec<ShadowDeny>,
    /// The checks that ran (passed, failed, or failed in shadow).
    pub ran: crate::mode::CheckSet,
    /// The limit that refused (enforced or in shadow): its index in `limits` and its code,
    /// `limit.<name>`, which the reason [`Reason::LimitExceeded`] reads as.
    pub limit: Option<LimitRef>,
    /// Seconds until that limit admits again (`Retry-After`).
    pub retry_after_s: Option<u64>,
    /// A limit forgot a live counter to make room for this request's.
    pub limit_evicted: bool,
    /// The quarantine this refusal started (its agent had too many).
    pub quarantine: Option<crate::quarantine::Evidence>,
    /// The check whose enforced failure denied (`None` on allow, and for a request refused
    /// before the checks: its target, its headers, the route Envoy named).
    pub failed: Option<crate::mode::Check>,
}

/// The limit a decision was refused by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRef {
    pub index: u16,
    pub code: String,
}

/// A failed check in shadow: what it would have denied with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDeny {
    pub check: crate::mode::Check,
    pub reason: Reason,
}

/// How the request presented its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof header (RFC 9449 §7.1).
    Dpop,
}

/// One MCP call as the body carried it (what the audit trail records of it).
#[derive(Debug, Clone, PartialEq)]
pub struct McpCall {
    /// The JSON-RPC id (`None`: a notification).
    pub id: Option<Value>,
    pub method: String,
    /// The tool or prompt name, or the resource URI (clipped).
    pub name: Option<String>,
    pub protocol_version: Option<String>,
    /// SHA-256 of the arguments as serialized canonically (sorted members, no spaces).
    pub arguments_sha256: Option<[u8; 32]>,
    /// The arguments themselves, only where the route opts in (`mcp.audit_arguments`).
    pub arguments: Option<Value>,
}

/// A client's target that the filter rewrote or refused, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalTarget {
    /// The first [`MAX_FIELD`] bytes, with a trailing `…` when longer.
    pub clipped: String,
    /// Its whole length in bytes.
    pub bytes: usize,
    /// SHA-256 of the whole target.
    pub sha256: [u8; 32],
}

impl OriginalTarget {
    pub(crate) fn of(raw: &str) -> OriginalTarget {
        use sha2::Digest;
        OriginalTarget {
            clipped: clip_marked(raw),
            bytes: raw.len(),
            sha256: sha2::Sha256::digest(raw.as_bytes()).into(),
        }
    }
}

impl Decision {
    /// A deny decided outside the pipeline (host failures), with nothing else known.
    pub fn denied(decision_id: String, reason: Reason) -> Decision {
        Decision {
            decision_id,
            reason: Some(reason),
            token: None,
            token_cached: false,
            presented: None,
            agent: None,
            route: None,
            scope_hint: Vec::new(),
            policy_revision: None,
            policy_reason: None,
            policy_status: None,
            policy_headers: Vec::new(),
            policy_input_sha256: None,
            audited_input: None,
            #[cfg(tools)]
            policy_input: None,
            method: String::new(),
            path: String::new(),
            host: String::new(),
            original: None,
            rewrite: None,
            jsonrpc: false,
            mcp: None,
            detail: None,
            jsonrpc_code: None,
            scheme: None,
            proof: None,
            peer_certificate: None,
            shadow: Vec::new(),
            ran: crate::mode::CheckSet::default(),
            failed: None,
            limit: None,
            retry_after_s: None,
            limit_evicted: false,
            quarantine: None,
        }
    }

    /// Whether the request goes upstream (no enforced check failed).
    pub fn allowed(&self) -> bool {
        self.reason.is_none()
    }

    /// The decision the checks took: the enforced deny, else the first shadowed one.
    pub fn verdict(&self) -> Option<Reason> {
        self.reason
            .or_else(|| self.shadow.first().map(|s| s.reason))
    }

    /// The code `r` reads as on this decision: [`Reason::as_str`], except a limit's
    /// refusal, which names the limit (`limit.agent-writes`).
    pub fn code_of(&self, r: Reason) -> &str {
        match (r, &self.limit) {
            (Reason::LimitExceeded, Some(l)) => &l.code,
            _ => r.as_str(),
        }
    }

    /// The code of the reason that denied (`None` on allow).
    pub fn reason_code(&self) -> Option<&str> {
        self.reason.map(|r| self.code_of(r))
    }

    /// The code of the verdict, applied or in shadow.
    pub fn verdict_code(&self) -> Option<&str> {
        self.verdict().map(|r| self.code_of(r))
    }

    /// Whether the decision was applied: false for a shadow deny (the request went on).
    pub fn enforced(&self) -> bool {
        self.reason.is_some() || self.shadow.is_empty()
    }

    /// The status the verdict answers with (200: allow), applied or not.
    pub fn verdict_status(&self) -> u16 {
        match (self.verdict(), self.policy_status) {
            (Some(Reason::PolicyDenied), Some(s)) => s,
            (r, _) => r.map_or(200, Reason::status),
        }
    }

    /// Whether the identity the token carries was established: it verified, and no check
    /// of it failed in shadow.
    pub(crate) fn identity_established(&self) -> bool {
        self.token.is_some()
            && !self
                .shadow
                .iter()
                .any(|s| s.check == crate::mode::Check::Token)
    }

    /// HTTP status: 200 for allow (the upstream answers), else the reason's status.
    pub fn status(&self) -> u16 {
        match (self.reason, self.policy_status) {
            (Some(Reason::PolicyDenied), Some(s)) => s,
            (r, _) => r.map_or(200, Reason::status),
        }
    }

    /// RFC 6750 error code, following the status for policy denials.
    fn error_code(&self) -> &'static str {
        match (self.reason, self.status()) {
            (Some(Reason::PolicyDenied), 401) => "invalid_token",
            (Some(Reason::PolicyDenied), 403) => "insufficient_scope",
            (Some(Reason::PolicyDenied), 400) => "invalid_request",
            (Some(Reason::PolicyDenied), _) => "access_denied",
            (Some(r), _) => r.error_code(),
            (None, _) => "",
        }
    }

    /// JSON body of a deny response. Never echoes the token. On an MCP route, a JSON-RPC
    /// error response carrying the same members in `error.data`.
    pub fn deny_body(&self) -> String {
        let reason = self.reason.unwrap_or(Reason::InternalError);
        let code = self.code_of(reason);
        let mut body =
            json!({"error": self.error_code(), "reason": code, "decision_id": self.decision_id});
        if let (Some(pr), Some(obj)) = (&self.policy_reason, body.as_object_mut()) {
            obj.insert("policy_reason".into(), json!(pr));
        }
        if !self.jsonrpc {
            return body.to_string();
        }
        let id = self
            .mcp
            .as_ref()
            .and_then(|m| m.id.clone())
            .unwrap_or(Value::Null);
        let message = match (reason, &self.detail) {
            (Reason::McpHeaderMismatch, Some(detail)) => detail.clone(),
            (_, Some(detail)) => format!("{code}: {detail}"),
            (_, None) => format!("{code}: {}", reason.describe()),
        };
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.jsonrpc_error_code(), "message": message, "data": body},
        })
        .to_string()
    }

    /// The JSON-RPC error code of a deny on an MCP route. MCP reserves -32020..-32099 for
    /// codes it defines and discourages -32000..-32019, so the filter's own refusals use
    /// codes outside -32768..-32000 that name the HTTP status (-31401, -31403, -31429,
    /// -31502); malformed bodies get JSON-RPC's own (-32700, -32600).
    pub fn jsonrpc_error_code(&self) -> i64 {
        if let Some(code) = self.jsonrpc_code {
            return code;
        }
        match (self.reason, self.status()) {
            (Some(Reason::McpHeaderMismatch), _) => crate::mcp::HEADER_MISMATCH,
            (Some(Reason::McpListUnfilterable), _) => -31502,
            (_, 400 | 413) => -32600,
            (_, 401) => -31401,
            (_, 403) => -31403,
            (_, 429) => -31429,
            _ => -32603,
        }
    }

    /// `WWW-Authenticate` for a deny response: one field with a `Bearer` challenge
    /// (RFC 6750 §3) and, with `dpop_algs`, a `DPoP` one (RFC 9449 §7.1, `algs` listing
    /// them). The error goes on the challenge of the scheme the request used (a `dpop.*`
    /// reason: DPoP's, except a bound token sent as Bearer); a request without credentials
    /// gets no error code (RFC 6750 §3.1). `resource_metadata` (RFC 9728 §5.1) rides on
    /// each challenge of a 401 or 403 when the configuration names a protected resource.
    pub fn www_authenticate(
        &self,
        resource_metadata: Option<&str>,
        dpop_algs: Option<&str>,
    ) -> Option<String> {
        let reason = self.reason?;
        let on_dpop = dpop_algs.is_some()
            && reason != Reason::DpopBearerScheme
            && (self.scheme == Some(AuthScheme::Dpop) || reason.as_str().starts_with("dpop."));
        let mut error = Vec::new();
        if reason != Reason::TokenMissing {
            error.push(format!("error=\"{}\"", self.error_code()));
            error.push(format!("error_description=\"{}\"", self.code_of(reason)));
            if !self.scope_hint.is_empty() {
                // Scope tokens never contain `"` or `\\` (RFC 6749 §3.3): checked at parse time.
                error.push(format!("scope=\"{}\"", self.scope_hint.join(" ")));
            }
        }
        let metadata = match (resource_metadata, self.status()) {
            // Validated: an https URL without quotes, spaces or control characters.
            (Some(url), 401 | 403) => Some(format!("resource_metadata=\"{url}\"")),
            _ => None,
        };
        let challenge = |scheme: &str, mut params: Vec<String>| {
            params.extend(metadata.clone());
            if params.is_empty() {
                scheme.to_owned()
            } else {
                format!("{scheme} {}", params.join(", "))
            }
        };
        let (bearer, dpop) = if on_dpop {
            (Vec::new(), error)
        } else {
            (error, Vec::new())
        };
        let mut v = challenge("Bearer", bearer);
        if let Some(algs) = dpop_algs {
            let mut params = dpop;
            params.push(format!("algs=\"{algs}\""));
            v.push_str(", ");
            v.push_str(&challenge("DPoP", params));
        }
        Some(v)
    }

    /// One JSON object describing the decision (CLI output and the filter's log line).
    pub fn to_json(&self) -> Value {
        let t = self.token.as_ref();
        let a = self.agent.as_ref();
        let mut out = json!({
            "decision_id": self.decision_id,
            "decision": if self.verdict().is_none() { "allow" } else { "deny" },
            "enforced": self.enforced(),
            "status": self.verdict_status(),
            "reason": self.verdict_code(),
            "agent": t.map(|t| t.agent.as_str()),
            "principal": t.map(|t| t.subject.as_str()),
            "chain": t.map(|t| t.chain.iter().map(|a| a.sub.clone()).collect::<Vec<_>>()).unwrap_or_default(),
            "owner": a.and_then(|a| a.owner.clone()),
            "identity": t.map(|t| json!({
                "profile": t.profile, "agent_type": t.agent_type, "tenant": t.tenant, "client": t.client,
            })),
            "scopes": {
                "requested": t.map(|t| t.scopes.clone()).unwrap_or_default(),
                "effective": a.map(|a| a.effective.clone()).unwrap_or_default(),
            },
            "route": self.route,
            "policy": self.policy_revision.as_ref().map(|rev| json!({"revision": rev, "reason": self.policy_reason})),
            "token": t.map(|t| json!({
                "iss": t.issuer, "jti": t.jti, "exp": numeric_date(t.exp), "kid": t.kid, "alg": t.alg,
                "sha256": hex::encode(t.sha256), "cached": self.token_cached,
            })),
            "request": {"method": self.method, "host": self.host, "path": self.path},
        });
        let mcp = match (&self.mcp, &self.detail) {
            (Some(m), _) => {
                let mut v = json!({
                    "method": m.method, "name": m.name, "protocol_version": m.protocol_version,
                    "arguments_sha256": m.arguments_sha256.as_ref().map(hex::encode),
                    "detail": self.detail,
                });
                if let (Some(args), Some(obj)) = (&m.arguments, v.as_object_mut()) {
                    obj.insert("arguments".into(), args.clone());
                }
                Some(v)
            }
            (None, Some(detail)) if self.jsonrpc => Some(json!({
                "method": null, "name": null, "protocol_version": null,
                "arguments_sha256": null, "detail": detail,
            })),
            (None, _) => None,
        };
        if let (Some(mcp), Some(obj)) = (mcp, out.as_object_mut()) {
            obj.insert("mcp".into(), mcp);
        }
        if let (Some(b), Some(obj)) = (self.binding_json(), out.as_object_mut()) {
            obj.insert("binding".into(), b);
        }
        if let (false, Some(obj)) = (self.shadow.is_empty(), out.as_object_mut()) {
            obj.insert("shadow".into(), self.shadow_json());
        }
        out
    }

    /// The `shadow` member: every check in shadow that failed, with its reason.
    pub fn shadow_json(&self) -> Value {
        Value::Array(
            self.shadow
                .iter()
                .map(|s| json!({"check": s.check.as_str(), "reason": self.code_of(s.reason)}))
                .collect(),
        )
    }

    /// The `binding` member (as in the audit event): what a bound token is bound to and
    /// what proved it.
    fn binding_json(&self) -> Option<Value> {
        use base64::Engine as _;
        let b64 = |d: &[u8; 32]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
        let t = self.token.as_ref()?;
        let method = t.binding.method()?;
        let mut v = json!({"method": method});
        let obj = v.as_object_mut()?;
        if let Some(j) = &t.binding.jkt {
            obj.insert("jkt".into(), json!(b64(j)));
        }
        if let Some(x) = &t.binding.x5t_s256 {
            obj.insert("x5t#S256".into(), json!(b64(x)));
        }
        if let Some(p) = &self.proof {
            obj.insert(
                "proof".into(),
                json!({"jkt": b64(&p.jkt), "jti": p.jti, "htm": p.htm, "htu": p.htu, "iat": numeric_date(p.iat)}),
            );
        }
        if let Some(c) = &self.peer_certificate {
            obj.insert("peer_certificate".into(), json!(b64(c)));
        }
        Some(v)
    }
}

/// NumericDate as JSON: an integer when it is one.
fn numeric_date(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

/// Longest request line fields kept in decisions (they end up in logs).
pub(crate) const MAX_FIELD: usize = 512;

pub(crate) fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// [`clip`], with a trailing `…` when something was cut off.
pub(crate) fn clip_marked(s: &str) -> String {
    let mut out = clip(s);
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(traceparent(tp.as_bytes()).as_deref(), Some(tp));
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(traceparent(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(traceparent(b"\xff"), None);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "é".repeat(400);
        assert!(clip(&s).len() <= MAX_FIELD);
    }
}
