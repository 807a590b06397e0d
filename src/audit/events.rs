//! The events' JSON shapes (what a stream serialises and chains) and the outcomes the feeds
//! report for their events.

use serde::{Serialize, Serializer};

/// Version of the event format (`v`).
pub const FORMAT_VERSION: u8 = 1;

#[derive(Serialize)]
pub(super) struct DecisionEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) decision_id: &'a str,
    pub(super) decision: &'static str,
    /// False for a shadow deny: the checks denied, the request went upstream.
    pub(super) enforced: bool,
    pub(super) status: u16,
    pub(super) reason: Option<&'a str>,
    /// Every check in shadow that failed (shadow denies only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) shadow: Vec<ShadowPart<'a>>,
    pub(super) policy_reason: Option<&'a str>,
    pub(super) agent: Option<&'a str>,
    pub(super) principal: Option<&'a str>,
    pub(super) owner: Option<&'a str>,
    pub(super) chain: Chain<'a>,
    /// How the issuer's profile read the token (a verified token only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) identity: Option<IdentityPart<'a>>,
    pub(super) token: Option<TokenPart<'a>>,
    pub(super) scopes: Scopes<'a>,
    pub(super) route: Option<&'a str>,
    pub(super) request: RequestPart<'a>,
    pub(super) policy: Option<PolicyPart<'a>>,
    /// The MCP call (requests on MCP routes whose body was read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) mcp: Option<McpPart<'a>>,
    /// What a sender-constrained token is bound to and what proved it (bound tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) binding: Option<BindingPart<'a>>,
    pub(super) latency_us: u64,
}

#[derive(Serialize)]
pub(super) struct ShadowPart<'a> {
    pub(super) check: &'static str,
    pub(super) reason: &'a str,
}

#[derive(Serialize)]
pub(super) struct BindingPart<'a> {
    /// `dpop`, `mtls` or `dpop+mtls`.
    pub(super) method: &'static str,
    /// The token's `cnf.jkt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) jkt: Option<B64<'a>>,
    /// The token's `cnf["x5t#S256"]`.
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub(super) x5t_s256: Option<B64<'a>>,
    /// The DPoP proof checked (its key's thumbprint differs from `jkt` on a key mismatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) proof: Option<ProofPart<'a>>,
    /// The connection's client certificate (SHA-256 of its DER), when the filter read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) peer_certificate: Option<B64<'a>>,
}

#[derive(Serialize)]
pub(super) struct ProofPart<'a> {
    pub(super) jkt: B64<'a>,
    pub(super) jti: &'a str,
    pub(super) htm: &'a str,
    pub(super) htu: &'a str,
    #[serde(serialize_with = "numeric_date")]
    pub(super) iat: Option<f64>,
}

/// 32 bytes as unpadded base64url (JOSE's form for thumbprints and digests).
pub(super) struct B64<'a>(pub(super) &'a [u8; 32]);

impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        let mut out = [0u8; 43];
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(self.0, &mut out) {
            Ok(43) => s.serialize_str(std::str::from_utf8(&out).unwrap_or_default()),
            _ => s.serialize_none(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct McpPart<'a> {
    /// `None`: the body was refused before a method could be read from it.
    pub(super) method: Option<&'a str>,
    pub(super) name: Option<&'a str>,
    pub(super) protocol_version: Option<&'a str>,
    /// SHA-256 of the arguments (canonical JSON); the arguments themselves are never logged.
    pub(super) arguments_sha256: Option<Hex<'a>>,
    /// What exactly was wrong with a refused call (header mismatch, body problem).
    pub(super) detail: Option<&'a str>,
    /// The arguments, only where the route opts in (`mcp.audit_arguments`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) arguments: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
pub(super) struct StartEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) version: &'static str,
    pub(super) checkpoint_s: u64,
    pub(super) policy: Option<PolicyPart<'a>>,
}

/// What the revocation feed did with one SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The SET's `jti` (its key in the poll response).
    pub jti: String,
    pub outcome: SetVerdict,
    /// The effects applied, or why the SET was refused.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetVerdict {
    /// Verified and applied (and acknowledged).
    Applied,
    /// Verified, already applied before (acknowledged again).
    Replay,
    /// Refused: neither applied nor acknowledged.
    Refused,
}

impl SetVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            SetVerdict::Applied => "applied",
            SetVerdict::Replay => "replay",
            SetVerdict::Refused => "refused",
        }
    }
}

#[derive(Serialize)]
pub(super) struct RevocationEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) jti: &'a str,
    pub(super) outcome: &'static str,
    pub(super) detail: &'a str,
}

/// What the registry feed poller did with one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOutcome {
    pub outcome: RegistryVerdict,
    /// The answer's version (`None` when the document did not parse).
    pub version: Option<String>,
    /// The version in use before (`None`: the inline registry).
    pub previous: Option<String>,
    /// SHA-256 (hex) of the answer's body.
    pub sha256: String,
    /// What changed, or why the answer was refused.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryVerdict {
    /// Published: every worker switches to it on its next request.
    Applied,
    /// Refused (invalid document or version, or a rollback): the registry in use stays.
    Refused,
}

impl RegistryVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryVerdict::Applied => "applied",
            RegistryVerdict::Refused => "refused",
        }
    }
}

#[derive(Serialize)]
pub(super) struct RegistryEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) outcome: &'static str,
    pub(super) version: Option<&'a str>,
    pub(super) previous: Option<&'a str>,
    pub(super) sha256: &'a str,
    pub(super) detail: &'a str,
}

/// An agent quarantined on this Envoy, with the evidence.
#[derive(Serialize)]
pub(super) struct QuarantineEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) agent: &'a str,
    pub(super) since: f64,
    pub(super) until: f64,
    /// More than `denials` refusals within `within_s` seconds.
    pub(super) denials: u64,
    pub(super) within_s: u64,
    /// The refusal that started it.
    pub(super) decision_id: &'a str,
    /// The agent's last refusals this worker decided, oldest first.
    pub(super) decision_ids: &'a [String],
}

#[derive(Serialize)]
pub(super) struct CheckpointEvent<'a> {
    pub(super) v: u8,
    pub(super) kind: &'static str,
    pub(super) stream: &'a str,
    pub(super) seq: u64,
    pub(super) prev: Hex<'a>,
    pub(super) time: &'a str,
    pub(super) decisions: u64,
    pub(super) dropped: u64,
    pub(super) checkpoint_s: u64,
    /// The worker is shutting down: nothing follows.
    #[serde(rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub(super) last: bool,
}

#[derive(Serialize)]
pub(super) struct TokenPart<'a> {
    pub(super) iss: Option<&'a str>,
    pub(super) jti: Option<&'a str>,
    #[serde(serialize_with = "numeric_date")]
    pub(super) exp: Option<f64>,
    pub(super) kid: Option<&'a str>,
    pub(super) alg: Option<&'a str>,
    pub(super) sha256: Hex<'a>,
    /// Whether the signature check was answered by the verified-token cache.
    pub(super) cached: Option<bool>,
}

#[derive(Serialize)]
pub(super) struct Scopes<'a> {
    pub(super) requested: &'a [String],
    pub(super) effective: &'a [String],
}

#[derive(Serialize)]
pub(super) struct RequestPart<'a> {
    pub(super) method: &'a str,
    pub(super) host: &'a str,
    /// The canonical target the decision was taken on.
    pub(super) path: &'a str,
    /// The client's target, when the filter rewrote or refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) original: Option<OriginalPart<'a>>,
    pub(super) id: Option<&'a str>,
    pub(super) id_source: Option<&'static str>,
    /// The client's W3C `traceparent` (Envoy's own span, when tracing is on, is its child).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) traceparent_source: Option<&'static str>,
}

#[derive(Serialize)]
pub(super) struct OriginalPart<'a> {
    /// At most 512 bytes, with a trailing `…` when clipped.
    pub(super) target: &'a str,
    /// The whole target's length.
    pub(super) bytes: usize,
    pub(super) sha256: Hex<'a>,
}

#[derive(Serialize)]
pub(super) struct PolicyPart<'a> {
    pub(super) revision: &'a str,
    /// SHA-256 of the `input` the policy decided on (decision events where it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) input_sha256: Option<Hex<'a>>,
    /// The `input` itself, on routes with `audit_policy_input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) input: Option<&'a regorus::Value>,
}

/// The actors' `sub`s, newest first.
pub(super) struct Chain<'a>(pub(super) &'a [crate::token::Actor]);

impl Serialize for Chain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| a.sub.as_str()))
    }
}

pub(super) struct Hex<'a>(pub(super) &'a [u8; 32]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = [0u8; 64];
        match hex::encode_to_slice(self.0, &mut out) {
            Ok(()) => s.serialize_str(std::str::from_utf8(&out).unwrap_or_default()),
            Err(_) => s.serialize_none(),
        }
    }
}

/// Request ids come from the client (or the host); keep at most 128 bytes of one.
pub(super) fn clip_id(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default()
}

/// NumericDate: an integer when it is one.
fn numeric_date<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(*v as i64),
        Some(v) => s.serialize_f64(*v),
        None => s.serialize_none(),
    }
}

/// `identity`: the issuer's profile and what it named besides agent, principal and chain.
#[derive(Serialize)]
pub(super) struct IdentityPart<'a> {
    pub(super) profile: &'static str,
    pub(super) agent_type: Option<&'a str>,
    pub(super) tenant: Option<&'a str>,
    pub(super) client: Option<&'a str>,
}
