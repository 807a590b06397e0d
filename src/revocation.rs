//! Real-time revocation: Security Event Tokens (RFC 8417) delivered by OpenID Shared
//! Signals poll delivery (RFC 8936), verified here and applied to one revocation state per
//! Envoy. Host-agnostic: the proxy-wasm adapter moves bytes, this module decides.
//!
//! Events (the `events` claim of a SET; subjects per RFC 9493, see [`subject`]):
//! - CAEP `session-revoked`, `credential-change` for a subject: tokens whose `sub`, any
//!   actor or `email` claim is that subject and whose `iat` is at or before the event time
//!   are refused (`revocation.subject`); later tokens are accepted.
//! - RISC `account-disabled` / `account-enabled` for an agent: last writer wins by event
//!   time (a tie is disabled). While disabled, every token naming it as `sub`, actor or
//!   `email` is refused (`revocation.agent`).
//! - `https://agent-iam.dev/secevent/token-revoked` with `{"jti": "..."}`: that token is
//!   refused (`revocation.jti`).
//! - `https://agent-iam.dev/secevent/agent-quarantined` for an agent, with `until`: another
//!   gateway quarantined it (what this filter's `quarantine.report` sends). Until then,
//!   every request naming it as agent, actor or principal is refused (`agent.quarantined`);
//!   the registry's `released_at` lifts it as it lifts a local quarantine.
//!
//! The state is a function of the *set* of SETs applied, not of their order: every entry
//! merges by maximum (event time, then the safe side), so a poll answer (whose SETs arrive
//! sorted by `jti`) or a replay after a restart gives the same state in any order.
//! Entries that only match old tokens expire once no such token can still be valid (see
//! [`TokenLimits`]).

use std::collections::BTreeMap;

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::SignatureBackend;
use crate::keys::{Alg, VerifyKey};
use crate::reason::Reason;
use crate::token::{check_signature, parse_compact, select_key, Actor};

pub const EVENT_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
pub const EVENT_CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
pub const EVENT_ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
pub const EVENT_ACCOUNT_ENABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-enabled";
/// No standard event revokes one access token by `jti`; this is ours (documented).
pub const EVENT_TOKEN_REVOKED: &str = "https://agent-iam.dev/secevent/token-revoked";
/// No standard event quarantines an agent for a while; this is ours (documented).
pub const EVENT_AGENT_QUARANTINED: &str = "https://agent-iam.dev/secevent/agent-quarantined";
/// The longest quarantine a SET can ask for (30 days, as `quarantine.for_s`).
pub const MAX_QUARANTINE_S: f64 = 2_592_000.0;

/// Largest SET we accept (bytes of the compact JWS).
pub const MAX_SET_BYTES: usize = 16 * 1024;

/// The `revocation` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// The SSF transmitter's poll endpoint (RFC 8936), reached through an Envoy cluster.
    pub feed: PollConfig,
    /// Who signs the SETs and for whom.
    pub transmitter: TransmitterConfig,
    /// After this long without a successful poll the state is stale (1..=3600 s); what
    /// stale state does is `checks.revocation.failure_mode`.
    #[serde(default = "default_staleness")]
    pub max_staleness_s: u64,
}

fn default_staleness() -> u64 {
    30
}

/// Where and how to poll.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// Envoy cluster of the transmitter.
    pub cluster: String,
    /// Path of the poll endpoint (`POST`, RFC 8936 §2.4).
    pub path: String,
    /// `:authority` (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Poll interval in milliseconds (100..=60000; default 1000).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// `maxEvents` per poll (1..=1000; default 100).
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Per-poll timeout in milliseconds (10..=60000; default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_interval_ms() -> u64 {
    1000
}
fn default_max_events() -> u64 {
    100
}
fn default_timeout_ms() -> u64 {
    2000
}

/// The transmitter's identity and keys.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransmitterConfig {
    /// Exact `iss` of every SET.
    pub issuer: String,
    /// Our audience: every SET's `aud` must contain it.
    pub audience: String,
    /// The transmitter's public keys (`{"keys": [...]}`; every key needs `kid`).
    pub jwks: crate::keys::JwksConfig,
}

/// A validated transmitter.
#[derive(Debug)]
pub struct Transmitter {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<VerifyKey>,
    /// The configured token issuers (`issuers[].issuer`): an `iss_sub` subject of any
    /// other issuer names nobody whose tokens this filter accepts.
    pub token_issuers: Vec<String>,
}

/// What one SET asks for. `at` is the event time: `event_timestamp`, else the SET's `iat`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Refuse tokens of `subject` (as `sub`, actor or `email`) issued at or before `at`.
    SubjectRevoked {
        subject: String,
        at: f64,
    },
    AgentDisabled {
        agent: String,
        at: f64,
    },
    AgentEnabled {
        agent: String,
        at: f64,
    },
    TokenRevoked {
        jti: String,
        at: f64,
    },
    /// Quarantined from `at` until `until` (UNIX seconds) by another gateway.
    AgentQuarantined {
        agent: String,
        at: f64,
        until: f64,
    },
    /// An event we do not act on (acknowledged, not applied): an unknown event type, or a
    /// subject that names nobody our tokens carry (`iss_sub` of another issuer).
    Ignored {
        event: String,
        why: String,
    },
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::SubjectRevoked { subject, at } => {
                write!(f, "tokens of {subject} issued at or before {at} revoked")
            }
            Effect::AgentDisabled { agent, at } => write!(f, "{agent} disabled at {at}"),
            Effect::AgentEnabled { agent, at } => write!(f, "{agent} enabled at {at}"),
            Effect::TokenRevoked { jti, .. } => write!(f, "token jti {jti} revoked"),
            Effect::AgentQuarantined { agent, at, until } => {
                write!(f, "{agent} quarantined from {at} until {until}")
            }
            Effect::Ignored { event, why } => write!(f, "event {event} not acted on ({why})"),
        }
    }
}

/// A SET that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSet {
    pub jti: String,
    pub iat: f64,
    pub effects: Vec<Effect>,
}

/// Why a SET was refused (it is then neither applied nor acknowledged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetError {
    pub message: String,
    pub kind: SetErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetErrorKind {
    /// The SET breaks the rules (signature, issuer, audience, shape, ...).
    Invalid,
    /// A valid SET whose subject format (or complex subject) this filter cannot map to an
    /// identity: refused so that the transmitter keeps it (counted separately).
    UnsupportedSubject,
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SetError> {
    Err(SetError {
        message: msg.into(),
        kind: SetErrorKind::Invalid,
    })
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, SetError> {
    Err(SetError {
        message: msg.into(),
        kind: SetErrorKind::UnsupportedSubject,
    })
}

fn num(claims: &Map<String, Value>, name: &str) -> Result<f64, SetError> {
    match claims.get(name) {
        Some(Value::Number(n)) => n
            .as_f64()
            .map_or_else(|| err(format!("{name} is not a number")), Ok),
        Some(_) => err(format!("{name} is not a number")),
        None => err(format!("{name} is missing")),
    }
}

/// The identity an RFC 9493 subject names, as the revocation state keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Matched against a token's `sub`, every actor's `sub` and its `email` claim.
    Id(String),
    /// An `iss_sub` subject of an issuer this filter does not accept tokens from.
    Foreign(String),
}

/// Members of an RFC 9493 `complex` subject that are the identity it names, in order of
/// preference: the `user` (a `sub`), else the `application` (an agent: a `sub` or actor).
const COMPLEX_IDENTITIES: [&str; 2] = ["user", "application"];
/// Members that only narrow a complex subject (and `application` when a `user` is there):
/// tokens carry nothing the filter keys on for them, so the event applies to the identity
/// member without them — broader, so on the safe side, and never wider than that identity.
const COMPLEX_NARROWING: [&str; 5] = ["device", "session", "tenant", "org_unit", "group"];

fn text<'a>(s: &'a Map<String, Value>, field: &str, at: &str) -> Result<&'a str, SetError> {
    match s.get(field).and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v.len() <= 1024 => Ok(v),
        _ => err(format!(
            "{at}.{field} missing, empty or longer than 1024 bytes"
        )),
    }
}

/// A simple subject (RFC 9493 §3.2): `opaque` (`id`), `iss_sub` (`iss` one of the
/// configured token issuers, `sub`), `email` (`email`, compared without ASCII case).
fn simple_subject(v: &Value, issuers: &[String], at: &str) -> Result<Subject, SetError> {
    let Value::Object(s) = v else {
        return err(format!("{at} is not an object"));
    };
    match s.get("format").and_then(Value::as_str) {
        Some("opaque") => Ok(Subject::Id(text(s, "id", at)?.to_owned())),
        Some("iss_sub") => {
            let iss = text(s, "iss", at)?;
            let sub = text(s, "sub", at)?;
            if issuers.iter().any(|i| i == iss) {
                Ok(Subject::Id(sub.to_owned()))
            } else {
                Ok(Subject::Foreign(iss.chars().take(200).collect()))
            }
        }
        Some("email") => Ok(Subject::Id(text(s, "email", at)?.to_ascii_lowercase())),
        Some("complex") => unsupported(format!("{at}: a complex subject inside a complex one")),
        Some(other) => unsupported(format!(
            "{at}: unsupported subject format \"{}\"",
            other.chars().take(64).collect::<String>()
        )),
        None => err(format!("{at} has no format")),
    }
}

/// An RFC 9493 subject: a simple one, or `complex`, whose `user` member (else its
/// `application` member), a simple subject, is the identity it names.
pub fn subject(v: Option<&Value>, issuers: &[String]) -> Result<Subject, SetError> {
    let Some(v) = v else {
        return err("event has no subject object");
    };
    let Value::Object(s) = v else {
        return err("subject is not an object");
    };
    if s.get("format").and_then(Value::as_str) != Some("complex") {
        return simple_subject(v, issuers, "subject");
    }
    let mut identities: [Option<Subject>; 2] = [None, None];
    for (name, member) in s {
        let at = format!("subject.{name}");
        if name == "format" {
            continue;
        }
        if let Some(i) = COMPLEX_IDENTITIES.iter().position(|m| m == name) {
            let found = simple_subject(member, issuers, &at)?;
            if let Some(slot) = identities.get_mut(i) {
                *slot = Some(found);
            }
        } else if COMPLEX_NARROWING.contains(&name.as_str()) {
            // Validated like any member; the event applies without it.
            if let Err(e) = simple_subject(member, issuers, &at) {
                if e.kind == SetErrorKind::Invalid {
                    return Err(e);
                }
            }
        } else {
            return unsupported(format!(
                "unsupported member \"{}\" in a complex subject",
                name.chars().take(64).collect::<String>()
            ));
        }
    }
    match identities {
        [Some(user), _] => Ok(user),
        [None, Some(application)] => Ok(application),
        [None, None] => unsupported("complex subject names no user or application"),
    }
}

fn effects(
    event: &str,
    body: &Value,
    top_subject: Option<&Value>,
    iat: f64,
    issuers: &[String],
) -> Result<Vec<Effect>, SetError> {
    let Value::Object(b) = body else {
        return err(format!("event {event} is not an object"));
    };
    let at = match b.get("event_timestamp") {
        None => iat,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(iat),
        Some(_) => return err("event_timestamp is not a number"),
    };
    // SSF 1.0 puts the subject at the top level (`sub_id`); CAEP/RISC 1.0 in the event.
    // Both, naming different subjects, is ambiguous: neither is picked.
    if let (Some(inner), Some(top)) = (b.get("subject"), top_subject) {
        if inner != top {
            return err("the event's subject and the SET's sub_id differ");
        }
    }
    let id = || -> Result<Result<String, String>, SetError> {
        Ok(match subject(b.get("subject").or(top_subject), issuers)? {
            Subject::Id(id) => Ok(id),
            Subject::Foreign(iss) => Err(format!(
                "iss_sub subject of {iss:?}, which is not a configured token issuer"
            )),
        })
    };
    let per_id = |make: &dyn Fn(String) -> Effect| -> Result<Vec<Effect>, SetError> {
        Ok(match id()? {
            Ok(id) => vec![make(id)],
            Err(why) => vec![Effect::Ignored {
                event: event.chars().take(200).collect(),
                why,
            }],
        })
    };
    match event {
        EVENT_SESSION_REVOKED | EVENT_CREDENTIAL_CHANGE => {
            per_id(&|subject| Effect::SubjectRevoked { subject, at })
        }
        EVENT_ACCOUNT_DISABLED => per_id(&|agent| Effect::AgentDisabled { agent, at }),
        EVENT_ACCOUNT_ENABLED => per_id(&|agent| Effect::AgentEnabled { agent, at }),
        EVENT_AGENT_QUARANTINED => {
            let until = match b.get("until") {
                Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                _ => return err("agent-quarantined event needs until (a number)"),
            };
            if until.is_nan() || until <= at {
                return err("agent-quarantined event's until is not after its time");
            }
            // Never longer than a local quarantine can be.
            let until = until.min(at + MAX_QUARANTINE_S);
            per_id(&|agent| Effect::AgentQuarantined { agent, at, until })
        }
        EVENT_TOKEN_REVOKED => match b.get("jti").and_then(Value::as_str) {
            Some(j) if !j.is_empty() => Ok(vec![Effect::TokenRevoked {
                jti: j.to_owned(),
                at,
            }]),
            _ => err("token-revoked event needs a non-empty jti"),
        },
        other => Ok(vec![Effect::Ignored {
            event: other.chars().take(200).collect(),
            why: "unknown event type".into(),
        }]),
    }
}

/// Verifies one SET (RFC 8417 §2.2, RFC 8936): compact JWS signed by a transmitter key,
/// `typ` `secevent+jwt`, exact `iss`, our `aud`, `iat` not in the future, a `jti`, and an
/// `events` object. It does not check replay (the state does).
pub fn verify_set(
    set: &str,
    transmitter: &Transmitter,
    backend: &dyn SignatureBackend,
    now: f64,
    skew: f64,
) -> Result<VerifiedSet, SetError> {
    // The token rules apply: compact form, canonical base64url, no `crit`/`jku`/`jwk`/`x5*`.
    let jws = parse_compact(set, MAX_SET_BYTES).map_err(|r| SetError {
        message: format!("refused by the JWS rules ({r})"),
        kind: SetErrorKind::Invalid,
    })?;
    let typ = jws
        .header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let typ = typ.to_ascii_lowercase();
    if typ != "secevent+jwt" && typ != "application/secevent+jwt" {
        return err(format!("typ must be secevent+jwt, got \"{typ}\""));
    }
    let key = select_key(
        &jws,
        &transmitter.keys,
        &[Alg::Es256, Alg::EdDsa, Alg::Rs256],
    )
    .map_err(|r| SetError {
        message: format!("no transmitter key for kid/alg ({r})"),
        kind: SetErrorKind::Invalid,
    })?;
    if check_signature(&jws, key, backend).is_err() {
        return err("signature does not verify");
    }
    let claims: Map<String, Value> = match crate::json::parse_strict(&jws.payload, 16) {
        Ok(Value::Object(m)) => m,
        _ => return err("payload is not a JSON object"),
    };
    if claims.get("iss").and_then(Value::as_str) != Some(transmitter.issuer.as_str()) {
        return err("iss is not the transmitter");
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == transmitter.audience,
        Some(Value::Array(a)) => a
            .iter()
            .any(|x| x.as_str() == Some(transmitter.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return err("aud does not name this receiver");
    }
    let iat = num(&claims, "iat")?;
    if iat > now + skew {
        return err("iat is in the future");
    }
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(j) if !j.is_empty() && j.len() <= 256 => j.to_owned(),
        _ => return err("jti missing, empty or too long"),
    };
    let Some(Value::Object(events)) = claims.get("events") else {
        return err("events missing or not an object");
    };
    if events.is_empty() {
        return err("events is empty");
    }
    let mut all = Vec::new();
    for (event, body) in events {
        all.append(&mut effects(
            event,
            body,
            claims.get("sub_id"),
            iat,
            &transmitter.token_issuers,
        )?);
    }
    Ok(VerifiedSet {
        jti,
        iat,
        effects: all,
    })
}

/// The token rules that bound how long a revocation entry can matter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLimits {
    /// `max_token_lifetime_s`: `exp - iat` at most.
    pub max_lifetime_s: f64,
    /// `clock_skew_s`: `iat` up to this far ahead of the clock, `exp` this far behind.
    pub skew_s: f64,
}

impl TokenLimits {
    /// How long after `t` a token that exists at `t` can still be accepted: its `iat` is at
    /// most `t + skew`, its `exp` at most `iat + max_lifetime`, and it is accepted while
    /// `now <= exp + skew`. A `jti` revocation (and everything else kept for replays) lives
    /// this long after it is applied.
    pub fn existing_token_horizon(self) -> f64 {
        self.max_lifetime_s + 2.0 * self.skew_s
    }

    /// How long after `at` a token issued at or before `at` (its `iat` claim) can still be
    /// accepted: `exp <= at + max_lifetime`, accepted while `now <= exp + skew`.
    pub fn issued_before_horizon(self) -> f64 {
        self.max_lifetime_s + self.skew_s
    }
}

/// The last `account-disabled` / `account-enabled` of one agent (last writer wins).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentMark {
    /// Event time of the winning event.
    pub at: f64,
    /// Disabled (refuse its tokens) or enabled (kept as a tombstone so that a late, older
    /// `account-disabled` or `account-enabled` cannot override it).
    pub disabled: bool,
    /// When an enabled tombstone may be forgotten (a disabled mark is never forgotten).
    pub until: f64,
}

impl AgentMark {
    /// The order of the last-writer-wins register: later event time first; at the same
    /// time, disabled wins (the safe side).
    fn key(&self) -> (f64, bool) {
        (self.at, self.disabled)
    }
}

/// One revocation state per Envoy (published through shared data as JSON). Every merge is
/// commutative, associative and idempotent: the state depends on the set of SETs applied,
/// never on the order they arrived in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationState {
    /// Revoked token `jti` → when the entry may be forgotten.
    pub jtis: BTreeMap<String, f64>,
    /// Subject → (tokens issued at or before this time are refused, forget after).
    pub subjects: BTreeMap<String, (f64, f64)>,
    /// Agents disabled or re-enabled (the latest event per agent).
    pub agents: BTreeMap<String, AgentMark>,
    /// SET `jti`s already applied → forget after (replay detection).
    pub seen: BTreeMap<String, f64>,
    /// Agents another gateway quarantined → (since, until): the latest start and end of
    /// every quarantine reported for it, so a `released_at` lifts only what began before it.
    /// Left out of the published document while empty (a filter version that does not
    /// know it reads that document unchanged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantines: BTreeMap<String, (f64, f64)>,
}

/// What applying a SET did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Same `jti` as an applied SET: not applied again (still acknowledged).
    Replay,
}

fn keep_max(slot: &mut f64, v: f64) {
    if v > *slot {
        *slot = v;
    }
}

impl RevocationState {
    /// Applies a verified SET at `now` under the token rules `limits`.
    pub fn apply(&mut self, set: &VerifiedSet, now: f64, limits: TokenLimits) -> Applied {
        if self.seen.contains_key(&set.jti) {
            return Applied::Replay;
        }
        let keep = limits.existing_token_horizon();
        self.seen.insert(set.jti.clone(), now.max(set.iat) + keep);
        for e in &set.effects {
            match e {
                Effect::SubjectRevoked { subject, at } => {
                    let until = at + limits.issued_before_horizon();
                    let entry = self.subjects.entry(subject.clone()).or_insert((*at, until));
                    keep_max(&mut entry.0, *at);
                    keep_max(&mut entry.1, until);
                }
                Effect::AgentDisabled { agent, at } | Effect::AgentEnabled { agent, at } => {
                    let mark = AgentMark {
                        at: *at,
                        disabled: matches!(e, Effect::AgentDisabled { .. }),
                        until: now.max(*at) + keep,
                    };
                    self.mark(agent, mark);
                }
                Effect::TokenRevoked { jti, at } => {
                    let until = now.max(*at) + keep;
                    keep_max(self.jtis.entry(jti.clone()).or_insert(until), until);
                }
                Effect::AgentQuarantined { agent, at, until } => {
                    let entry = self
                        .quarantines
                        .entry(agent.clone())
                        .or_insert((*at, *until));
                    keep_max(&mut entry.0, *at);
                    keep_max(&mut entry.1, *until);
                }
                Effect::Ignored { .. } => {}
            }
        }
        Applied::Applied
    }

    fn mark(&mut self, agent: &str, mark: AgentMark) {
        match self.agents.get_mut(agent) {
            None => {
                self.agents.insert(agent.to_owned(), mark);
            }
            Some(m) if mark.key() > m.key() => *m = mark,
            Some(m) if mark.key() == m.key() => keep_max(&mut m.until, mark.until),
            Some(_) => {}
        }
    }

    /// Forgets entries that can no longer match a valid token (an entry whose `until` is
    /// `now` still matters: a token is accepted while `now <= exp + skew`).
    pub fn prune(&mut self, now: f64) {
        self.jtis.retain(|_, until| *until >= now);
        self.subjects.retain(|_, (_, until)| *until >= now);
        self.agents.retain(|_, m| m.disabled || m.until >= now);
        self.seen.retain(|_, until| *until >= now);
        self.quarantines.retain(|_, (_, until)| *until >= now);
    }

    /// Entries the per-request checks read.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.agents.len() + self.quarantines.len()
    }

    /// When `agent`'s reported quarantine began, if it is in force at `now`.
    pub fn quarantined(&self, agent: &str, now: f64) -> Option<f64> {
        self.quarantines
            .get(agent)
            .filter(|(_, until)| now < *until)
            .map(|(since, _)| *since)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The per-request check: the token's `jti`, then its subject, every actor and its
    /// `email` claim (an address with `@` also matches without ASCII case).
    pub fn check(
        &self,
        jti: Option<&str>,
        subject: &str,
        chain: &[Actor],
        email: Option<&str>,
        iat: f64,
    ) -> Result<(), Reason> {
        if self.is_empty() {
            return Ok(());
        }
        if jti.is_some_and(|j| self.jtis.contains_key(j)) {
            return Err(Reason::RevocationJti);
        }
        let ids = || {
            std::iter::once(subject)
                .chain(chain.iter().map(|a| a.sub.as_str()))
                .chain(email)
        };
        // An e-mail address is stored lower-case (RFC 9493 `email`); only an address with
        // upper-case letters costs a second lookup.
        let named = |id: &str, found: &dyn Fn(&str) -> bool| {
            found(id)
                || (id.contains('@')
                    && id.bytes().any(|b| b.is_ascii_uppercase())
                    && found(&id.to_ascii_lowercase()))
        };
        let disabled = |k: &str| self.agents.get(k).is_some_and(|m| m.disabled);
        if ids().any(|id| named(id, &disabled)) {
            return Err(Reason::RevocationAgent);
        }
        let revoked = |k: &str| {
            self.subjects
                .get(k)
                .is_some_and(|(before, _)| iat <= *before)
        };
        if ids().any(|id| named(id, &revoked)) {
            return Err(Reason::RevocationSubject);
        }
        Ok(())
    }
}

/// The RFC 8936 poll request body.
pub fn poll_body(acks: &[String], max_events: u64) -> Vec<u8> {
    serde_json::json!({"ack": acks, "maxEvents": max_events, "returnImmediately": true})
        .to_string()
        .into_bytes()
}

/// The SETs of an RFC 8936 poll response (`{"sets": {jti: SET}, "moreAvailable": bool}`).
pub fn parse_poll_response(body: &[u8]) -> Result<(Vec<(String, String)>, bool), String> {
    let v = crate::json::parse_strict(body, 16).map_err(|e| format!("poll response: {e}"))?;
    let Value::Object(m) = v else {
        return Err("poll response is not a JSON object".into());
    };
    let sets = match m.get("sets") {
        Some(Value::Object(s)) => s
            .iter()
            .map(|(k, v)| match v {
                Value::String(t) => Ok((k.clone(), t.clone())),
                _ => Err(format!("sets[\"{k}\"] is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("poll response has no `sets` object".into()),
    };
    // A wrong type is an error, never "absent".
    let more = match m.get("moreAvailable") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("moreAvailable is not a boolean".into()),
    };
    Ok((sets, more))
}

/// The validated `revocation` section.
#[derive(Debug)]
pub struct Revocation {
    pub feed: PollConfig,
    pub transmitter: Transmitter,
    pub max_staleness_s: u64,
}

impl RevocationConfig {
    /// Every problem with its JSON path.
    pub fn validate(self, problems: &mut Vec<crate::problem::Problem>) -> Option<Revocation> {
        let before = problems.len();
        let mut bad = |path: &str, message: String| {
            problems.push(crate::problem::Problem {
                path: format!("$.revocation.{path}"),
                message,
            })
        };
        let f = &self.feed;
        if f.cluster.is_empty() {
            bad("feed.cluster", "must name an Envoy cluster".into());
        }
        if !f.path.starts_with('/') {
            bad("feed.path", format!("\"{}\" must start with `/`", f.path));
        }
        if !(100..=60_000).contains(&f.interval_ms) {
            bad(
                "feed.interval_ms",
                format!("{} is outside 100..=60000", f.interval_ms),
            );
        }
        if !(1..=1000).contains(&f.max_events) {
            bad(
                "feed.max_events",
                format!("{} is outside 1..=1000", f.max_events),
            );
        }
        if !(10..=60_000).contains(&f.timeout_ms) {
            bad(
                "feed.timeout_ms",
                format!("{} is outside 10..=60000", f.timeout_ms),
            );
        }
        if !(1..=3600).contains(&self.max_staleness_s) {
            bad(
                "max_staleness_s",
                format!("{} is outside 1..=3600", self.max_staleness_s),
            );
        } else if self.max_staleness_s.saturating_mul(1000) < f.interval_ms {
            bad(
                "max_staleness_s",
                "must be at least one poll interval".into(),
            );
        }
        if self.transmitter.issuer.is_empty() {
            bad("transmitter.issuer", "must not be empty".into());
        }
        if self.transmitter.audience.is_empty() {
            bad("transmitter.audience", "must not be empty".into());
        }
        let mut keys: Vec<VerifyKey> = Vec::new();
        if self.transmitter.jwks.keys.is_empty() {
            bad(
                "transmitter.jwks.keys",
                "at least one key is required".into(),
            );
        }
        for (i, k) in self.transmitter.jwks.keys.iter().enumerate() {
            match crate::keys::parse_jwk(k) {
                Err(e) => bad(&format!("transmitter.jwks.keys[{i}]"), e),
                Ok(key) if keys.iter().any(|x| x.kid == key.kid) => bad(
                    &format!("transmitter.jwks.keys[{i}].kid"),
                    format!("duplicate kid \"{}\"", key.kid),
                ),
                Ok(key) => keys.push(key),
            }
        }
        if problems.len() > before {
            return None;
        }
        Some(Revocation {
            feed: self.feed,
            transmitter: Transmitter {
                issuer: self.transmitter.issuer,
                audience: self.transmitter.audience,
                keys,
                token_issuers: Vec::new(),
            },
            max_staleness_s: self.max_staleness_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PureRust;
    use crate::dev::{mint, DevKeys, Recipe};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const IDP: &str = "https://idp.test";
    const LIMITS: TokenLimits = TokenLimits {
        max_lifetime_s: 600.0,
        skew_s: 30.0,
    };

    fn keys() -> DevKeys {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    fn transmitter(k: &DevKeys) -> Transmitter {
        let jwks = k.public_jwks();
        Transmitter {
            issuer: "https://ssf.test".into(),
            audience: "https://api.test/ssf".into(),
            keys: jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| crate::keys::parse_jwk(j).unwrap())
                .collect(),
            token_issuers: vec![IDP.into()],
        }
    }

    /// A SET as the test control plane mints it; `over` replaces header/claims members.
    fn set(k: &DevKeys, events: Value, over: Value) -> String {
        let mut recipe = json!({
            "header": {"typ": "secevent+jwt"},
            "claims": {"iss": "https://ssf.test", "aud": "https://api.test/ssf", "jti": "set-1",
                       "events": events, "exp": null, "sub": null, "scope": null}
        });
        for part in ["header", "claims"] {
            if let Some(o) = over.get(part).and_then(Value::as_object) {
                for (name, v) in o {
                    recipe[part][name] = v.clone();
                }
            }
        }
        if let Some(t) = over.get("tamper") {
            recipe["tamper"] = t.clone();
        }
        let recipe: Recipe = serde_json::from_value(recipe).unwrap();
        mint(k, &recipe, NOW).unwrap()
    }

    fn verify(k: &DevKeys, s: &str) -> Result<VerifiedSet, SetError> {
        verify_set(s, &transmitter(k), &PureRust, NOW as f64, 30.0)
    }

    fn opaque(id: &str) -> Value {
        json!({"format": "opaque", "id": id})
    }

    fn actor(s: &str) -> Actor {
        Actor {
            sub: s.into(),
            iss: None,
        }
    }

    #[test]
    fn each_supported_event_verifies_to_its_effect() {
        let k = keys();
        let now = NOW as f64;
        let cases = [
            (
                json!({EVENT_SESSION_REVOKED: {"subject": opaque("user:alice"), "event_timestamp": NOW - 5}}),
                Effect::SubjectRevoked {
                    subject: "user:alice".into(),
                    at: now - 5.0,
                },
            ),
            (
                json!({EVENT_CREDENTIAL_CHANGE: {"subject": {"format": "iss_sub", "iss": IDP, "sub": "user:bob"}}}),
                Effect::SubjectRevoked {
                    subject: "user:bob".into(),
                    at: now,
                },
            ),
            (
                json!({EVENT_ACCOUNT_DISABLED: {"subject": opaque("agent:x"), "event_timestamp": NOW - 9}}),
                Effect::AgentDisabled {
                    agent: "agent:x".into(),
                    at: now - 9.0,
                },
            ),
            (
                json!({EVENT_ACCOUNT_ENABLED: {"subject": opaque("agent:x")}}),
                Effect::AgentEnabled {
                    agent: "agent:x".into(),
                    at: now,
                },
            ),
            (
                json!({EVENT_TOKEN_REVOKED: {"jti": "tok-1"}}),
                Effect::TokenRevoked {
                    jti: "tok-1".into(),
                    at: now,
                },
            ),
            (
                json!({"https://example.test/other": {}}),
                Effect::Ignored {
                    event: "https://example.test/other".into(),
                    why: "unknown event type".into(),
                },
            ),
        ];
        for (events, effect) in cases {
            let v = verify(&k, &set(&k, events, json!({}))).unwrap();
            assert_eq!(v.effects, vec![effect]);
            assert_eq!(v.jti, "set-1");
        }
        // SSF 1.0: subject at the top level.
        let s = set(
            &k,
            json!({EVENT_ACCOUNT_DISABLED: {}}),
            json!({"claims": {"sub_id": opaque("agent:y")}}),
        );
        assert_eq!(
            verify(&k, &s).unwrap().effects,
            vec![Effect::AgentDisabled {
                agent: "agent:y".into(),
                at: now
            }]
        );
        let both = set(
            &k,
            json!({EVENT_ACCOUNT_DISABLED: {"subject": opaque("agent:y")}}),
            json!({"claims": {"sub_id": opaque("agent:y")}}),
        );
        assert_eq!(verify(&k, &both).unwrap().effects.len(), 1);
    }

    /// A quarantine another gateway reported: it needs an `until` after its time, lasts at
    /// most 30 days, and merges by the latest start and end (a release lifts only what
    /// began before it), in any order.
    #[test]
    fn a_reported_quarantine_verifies_merges_in_any_order_and_ends() {
        let k = keys();
        let now = NOW as f64;
        let q = |at: i64, until: Value| {
            json!({EVENT_AGENT_QUARANTINED: {"subject": opaque("agent:x"),
                   "event_timestamp": at, "until": until, "denials": 5}})
        };
        let effect = |at: f64, until: f64| Effect::AgentQuarantined {
            agent: "agent:x".into(),
            at,
            until,
        };
        let v = verify(&k, &set(&k, q(NOW - 10, json!(NOW + 50)), json!({}))).unwrap();
        assert_eq!(v.effects, vec![effect(now - 10.0, now + 50.0)]);
        let long = verify(&k, &set(&k, q(NOW, json!(NOW + 90_000_000)), json!({}))).unwrap();
        assert_eq!(long.effects, vec![effect(now, now + MAX_QUARANTINE_S)]);
        for bad in [json!(null), json!("soon"), json!(NOW - 10)] {
            let e = verify(&k, &set(&k, q(NOW - 10, bad.clone()), json!({}))).unwrap_err();
            assert!(e.message.contains("until"), "{bad}: {e}");
        }
        let first = VerifiedSet {
            jti: "q-1".into(),
            iat: now,
            effects: vec![effect(now - 10.0, now + 50.0)],
        };
        let second = VerifiedSet {
            jti: "q-2".into(),
            iat: now,
            effects: vec![effect(now + 20.0, now + 40.0)],
        };
        let mut ab = RevocationState::default();
        ab.apply(&first, now, LIMITS);
        ab.apply(&second, now, LIMITS);
        let mut ba = RevocationState::default();
        ba.apply(&second, now, LIMITS);
        ba.apply(&first, now, LIMITS);
        assert_eq!(ab, ba);
        assert_eq!(ab.quarantined("agent:x", now + 49.0), Some(now + 20.0));
        assert_eq!(ab.quarantined("agent:y", now), None);
        // The per-token checks are not what refuses it (the quarantine check is).
        assert_eq!(ab.check(None, "agent:x", &[], None, now), Ok(()));
        assert_eq!(ab.quarantined("agent:x", now + 50.0), None);
        ab.prune(now + 51.0);
        assert!(ab.quarantines.is_empty());
    }

    #[test]
    fn subject_formats_map_to_the_identities_tokens_carry() {
        let issuers = [IDP.to_string()];
        let ids = |v: Value| subject(Some(&v), &issuers);
        let one = |s: &str| Ok(Subject::Id(s.to_string()));
        assert_eq!(ids(opaque("agent:x")), one("agent:x"));
        assert_eq!(
            ids(json!({"format": "iss_sub", "iss": IDP, "sub": "user:bob"})),
            one("user:bob")
        );
        // Another issuer's subject names nobody whose tokens we accept.
        assert_eq!(
            ids(json!({"format": "iss_sub", "iss": "https://other.idp", "sub": "user:bob"})),
            Ok(Subject::Foreign("https://other.idp".into()))
        );
        // The issuer is compared exactly (no case folding, no trailing slash).
        assert!(matches!(
            ids(json!({"format": "iss_sub", "iss": "https://IDP.test", "sub": "u"})),
            Ok(Subject::Foreign(_))
        ));
        assert_eq!(
            ids(json!({"format": "email", "email": "Alice@Example.COM"})),
            one("alice@example.com")
        );
        // complex: the user and application members; session, device, ... narrow it only.
        assert_eq!(
            ids(json!({"format": "complex",
                       "user": {"format": "email", "email": "bob@example.com"},
                       "session": opaque("sess-1"),
                       "device": opaque("dev-1")})),
            one("bob@example.com")
        );
        // The user with an application: the user's tokens (never every user of the app).
        assert_eq!(
            ids(json!({"format": "complex",
                       "application": opaque("agent:planner"),
                       "user": {"format": "iss_sub", "iss": IDP, "sub": "user:alice"}})),
            one("user:alice")
        );
        assert_eq!(
            ids(
                json!({"format": "complex", "application": opaque("agent:planner"),
                       "session": opaque("s")})
            ),
            one("agent:planner")
        );
        assert_eq!(
            ids(json!({"format": "complex",
                       "user": {"format": "iss_sub", "iss": "https://other.idp", "sub": "u"}})),
            Ok(Subject::Foreign("https://other.idp".into()))
        );
        // Unsupported: refused as such (the transmitter keeps the SET).
        for v in [
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            json!({"format": "complex", "tenant": opaque("t1"), "group": opaque("g")}),
            json!({"format": "complex", "user": {"format": "complex", "user": opaque("u")}}),
            json!({"format": "complex", "user": opaque("u"), "badge": opaque("b")}),
            json!({"format": "complex", "user": {"format": "did", "url": "did:x:1"}}),
        ] {
            let e = ids(v.clone()).unwrap_err();
            assert_eq!(e.kind, SetErrorKind::UnsupportedSubject, "{v}: {e}");
        }
        // Malformed: invalid, not unsupported.
        for v in [
            json!({"id": "x"}),
            json!({"format": "opaque"}),
            json!({"format": "opaque", "id": ""}),
            json!({"format": "iss_sub", "sub": "u"}),
            json!({"format": "email"}),
            json!({"format": "complex", "user": opaque("u"), "session": {"format": "opaque"}}),
            json!("opaque"),
        ] {
            let e = ids(v.clone()).unwrap_err();
            assert_eq!(e.kind, SetErrorKind::Invalid, "{v}: {e}");
        }
        assert_eq!(
            subject(None, &issuers).unwrap_err().kind,
            SetErrorKind::Invalid
        );
    }

    #[test]
    fn foreign_and_complex_subjects_in_sets() {
        let k = keys();
        let now = NOW as f64;
        let s = set(
            &k,
            json!({EVENT_ACCOUNT_DISABLED: {"subject": {"format": "iss_sub", "iss": "https://other.idp", "sub": "agent:planner"}}}),
            json!({}),
        );
        let v = verify(&k, &s).unwrap();
        assert!(
            matches!(&v.effects[..], [Effect::Ignored { why, .. }] if why.contains("not a configured token issuer")),
            "{v:?}"
        );
        let mut st = RevocationState::default();
        st.apply(&v, now, LIMITS);
        assert_eq!(st.check(None, "agent:planner", &[], None, now), Ok(()));

        let s = set(
            &k,
            json!({EVENT_SESSION_REVOKED: {"subject": {"format": "complex",
                "user": {"format": "email", "email": "Carol@Example.com"},
                "session": opaque("s-9")}, "event_timestamp": NOW - 1}}),
            json!({"claims": {"jti": "set-c"}}),
        );
        let v = verify(&k, &s).unwrap();
        st.apply(&v, now, LIMITS);
        // The address as `sub`, in another case, or as the token's `email` claim.
        for (sub, email) in [
            ("carol@example.com", None),
            ("CAROL@example.com", None),
            ("user:carol", Some("carol@EXAMPLE.com")),
        ] {
            assert_eq!(
                st.check(None, sub, &[], email, now - 10.0),
                Err(Reason::RevocationSubject),
                "{sub} {email:?}"
            );
        }
        assert_eq!(st.check(None, "user:carol", &[], None, now - 10.0), Ok(()));
        let s = set(
            &k,
            json!({EVENT_ACCOUNT_DISABLED: {"subject": {"format": "msisdn", "x": 1}}}),
            json!({}),
        );
        assert_eq!(
            verify(&k, &s).unwrap_err().kind,
            SetErrorKind::UnsupportedSubject
        );
    }

    #[test]
    fn bad_sets_are_refused_with_a_reason() {
        let k = keys();
        let ev = json!({EVENT_TOKEN_REVOKED: {"jti": "t"}});
        let cases = [
            (json!({"tamper": "signature"}), "signature"),
            (json!({"claims": {"aud": "https://other"}}), "aud"),
            (json!({"claims": {"aud": ["a", "b"]}}), "aud"),
            (json!({"header": {"typ": "at+jwt"}}), "typ"),
            (json!({"header": {"typ": null}}), "typ"),
            (
                json!({"claims": {"iss": "https://idp.agent-iam.test"}}),
                "iss",
            ),
            (json!({"claims": {"iat": NOW + 3600}}), "iat"),
            (json!({"claims": {"jti": null}}), "jti"),
            (json!({"claims": {"jti": ""}}), "jti"),
            (json!({"claims": {"events": {}}}), "events"),
            (json!({"claims": {"events": "x"}}), "events"),
            (json!({"header": {"kid": "nope"}}), "kid"),
            (
                json!({"header": {"jku": "https://evil"}}),
                "header_forbidden",
            ),
            (
                json!({"claims": {"events": {EVENT_TOKEN_REVOKED: {}}}}),
                "jti",
            ),
            (
                json!({"claims": {"events": {EVENT_SESSION_REVOKED: {"subject": {"format": "opaque"}}}}}),
                "subject.id",
            ),
            (
                json!({"claims": {"sub_id": opaque("agent:a"),
                                  "events": {EVENT_ACCOUNT_ENABLED: {"subject": opaque("agent:b")}}}}),
                "sub_id differ",
            ),
        ];
        for (over, want) in cases {
            let e = verify(&k, &set(&k, ev.clone(), over.clone())).unwrap_err();
            assert!(e.message.contains(want), "{over}: {e}");
            assert_eq!(e.kind, SetErrorKind::Invalid, "{over}: {e}");
        }
        assert!(verify(&k, "not.a.set").is_err());
    }

    #[test]
    fn state_applies_checks_detects_replay_and_forgets() {
        let k = keys();
        let mut st = RevocationState::default();
        let mk = |jti: &str, events: Value| {
            verify(&k, &set(&k, events, json!({"claims": {"jti": jti}}))).unwrap()
        };
        let now = NOW as f64;
        let s1 = mk("s1", json!({EVENT_TOKEN_REVOKED: {"jti": "tok-1"}}));
        assert_eq!(st.apply(&s1, now, LIMITS), Applied::Applied);
        assert_eq!(st.apply(&s1, now, LIMITS), Applied::Replay);
        let s2 = mk(
            "s2",
            json!({EVENT_SESSION_REVOKED: {"subject": opaque("user:alice"), "event_timestamp": NOW - 10}}),
        );
        st.apply(&s2, now, LIMITS);
        let s3 = mk(
            "s3",
            json!({EVENT_ACCOUNT_DISABLED: {"subject": opaque("agent:bad")}}),
        );
        st.apply(&s3, now, LIMITS);

        let old = now - 20.0;
        assert_eq!(
            st.check(Some("tok-1"), "user:zed", &[], None, old),
            Err(Reason::RevocationJti)
        );
        assert_eq!(st.check(Some("tok-2"), "user:zed", &[], None, old), Ok(()));
        // Subject revocation: as principal and as actor; only tokens issued before.
        assert_eq!(
            st.check(None, "user:alice", &[], None, old),
            Err(Reason::RevocationSubject)
        );
        assert_eq!(
            st.check(None, "user:zed", &[actor("user:alice")], None, old),
            Err(Reason::RevocationSubject)
        );
        assert_eq!(st.check(None, "user:alice", &[], None, now), Ok(()));
        // A disabled agent: as subject or anywhere in the chain, whatever the token's age.
        assert_eq!(
            st.check(None, "agent:bad", &[], None, now + 5.0),
            Err(Reason::RevocationAgent)
        );
        assert_eq!(
            st.check(
                None,
                "user:zed",
                &[actor("agent:ok"), actor("agent:bad")],
                None,
                now
            ),
            Err(Reason::RevocationAgent)
        );
        let s4 = mk(
            "s4",
            json!({EVENT_ACCOUNT_ENABLED: {"subject": opaque("agent:bad"), "event_timestamp": NOW + 1}}),
        );
        st.apply(&s4, now, LIMITS);
        assert_eq!(st.check(None, "agent:bad", &[], None, now), Ok(()));

        // Entries live until no token they match can be valid, then go.
        let keep = LIMITS.existing_token_horizon();
        st.prune(now + keep);
        assert_eq!(
            st.check(Some("tok-1"), "user:zed", &[], None, old),
            Err(Reason::RevocationJti)
        );
        st.prune(now + keep + 2.0);
        assert!(st.is_empty(), "{st:?}");
        assert!(st.seen.is_empty());
    }

    /// A token that exists when its `jti` is revoked at `t` can carry `iat = t + skew` and
    /// `exp = iat + max_lifetime`; it is accepted until `exp + skew`. The entry lives
    /// exactly that long, and not a moment less.
    #[test]
    fn a_jti_revocation_lives_as_long_as_the_token_can_be_valid() {
        let t = NOW as f64;
        let (life, skew) = (LIMITS.max_lifetime_s, LIMITS.skew_s);
        let (iat, exp) = (t + skew, t + skew + life);
        // That token is accepted now (iat at most skew ahead) and right up to exp + skew.
        assert_eq!(crate::token::check_times(exp, None, iat, t, skew), Ok(()));
        let last = exp + skew;
        assert_eq!(last, t + LIMITS.existing_token_horizon());
        assert_eq!(
            crate::token::check_times(exp, None, iat, last, skew),
            Ok(())
        );
        assert!(crate::token::check_times(exp, None, iat, last + 0.001, skew).is_err());

        let mut st = RevocationState::default();
        let revoke = VerifiedSet {
            jti: "s".into(),
            iat: t,
            effects: vec![Effect::TokenRevoked {
                jti: "tok".into(),
                at: t,
            }],
        };
        st.apply(&revoke, t, LIMITS);
        st.prune(last);
        assert_eq!(
            st.check(Some("tok"), "u", &[], None, iat),
            Err(Reason::RevocationJti),
            "forgotten while the token is still accepted"
        );
        st.prune(last + 0.001);
        assert!(st.jtis.is_empty());

        // Subject revocations: a token issued at or before `at` has exp <= at + life.
        let mut st = RevocationState::default();
        let at = t - 100.0;
        let sess = VerifiedSet {
            jti: "s2".into(),
            iat: t,
            effects: vec![Effect::SubjectRevoked {
                subject: "u".into(),
                at,
            }],
        };
        st.apply(&sess, t, LIMITS);
        let last = at + life + skew;
        assert_eq!(
            crate::token::check_times(at + life, None, at, last, skew),
            Ok(())
        );
        st.prune(last);
        assert_eq!(
            st.check(None, "u", &[], None, at),
            Err(Reason::RevocationSubject)
        );
        st.prune(last + 0.001);
        assert!(st.subjects.is_empty());
    }

    fn lifecycle(jti: &str, disabled: bool, at: f64) -> VerifiedSet {
        let agent = "agent:x".to_string();
        VerifiedSet {
            jti: jti.into(),
            iat: at,
            effects: vec![if disabled {
                Effect::AgentDisabled { agent, at }
            } else {
                Effect::AgentEnabled { agent, at }
            }],
        }
    }

    fn state_after(sets: &[&VerifiedSet]) -> RevocationState {
        let mut st = RevocationState::default();
        for s in sets {
            st.apply(s, NOW as f64, LIMITS);
        }
        st
    }

    fn disabled(st: &RevocationState) -> bool {
        st.check(None, "agent:x", &[], None, NOW as f64) == Err(Reason::RevocationAgent)
    }

    #[test]
    fn disable_and_enable_are_last_writer_wins_by_event_time() {
        let t = NOW as f64 - 100.0;
        let (d1, e2, d3) = (
            lifecycle("d1", true, t),
            lifecycle("e2", false, t + 1.0),
            lifecycle("d3", true, t + 2.0),
        );
        // disabled, enabled, disabled again: disabled, whatever the arrival order.
        for order in [
            [&d1, &e2, &d3],
            [&d1, &d3, &e2],
            [&e2, &d1, &d3],
            [&e2, &d3, &d1],
            [&d3, &d1, &e2],
            [&d3, &e2, &d1],
        ] {
            let st = state_after(&order);
            assert!(disabled(&st), "{:?}", order.map(|s| &s.jti));
            assert_eq!(st, state_after(&[&d1, &e2, &d3]));
        }
        // A late, older enable does not re-enable; a late, older disable does not disable.
        assert!(disabled(&state_after(&[&d3, &e2])));
        let e4 = lifecycle("e4", false, t + 3.0);
        assert!(!disabled(&state_after(&[&e4, &d3])));
        assert!(!disabled(&state_after(&[&d3, &e4])));
        // Same time: disabled (the safe side), in either order.
        let e3 = lifecycle("e3", false, t + 2.0);
        assert!(disabled(&state_after(&[&d3, &e3])));
        assert!(disabled(&state_after(&[&e3, &d3])));
        // The enable is a tombstone while older events may still arrive, then goes.
        let mut st = state_after(&[&e4]);
        assert_eq!(st.agents.len(), 1);
        st.prune(NOW as f64 + LIMITS.existing_token_horizon() + 1.0);
        assert!(st.agents.is_empty());
        // A disable stays until enabled.
        let mut st = state_after(&[&d3]);
        st.prune(NOW as f64 + 1e9);
        assert!(disabled(&st));
    }

    /// The SETs of one poll answer arrive in `jti` order (a JSON object; serde_json sorts
    /// its keys): an answer whose `jti` order differs from the event order ends as the
    /// event order says.
    #[test]
    fn one_poll_answer_is_applied_by_event_time_not_by_jti() {
        let k = keys();
        let now = NOW as f64;
        let ev = |kind: &str, at: i64| json!({kind: {"subject": opaque("agent:x"), "event_timestamp": at}});
        let answer = json!({"sets": {
            "c-dis-1": set(&k, ev(EVENT_ACCOUNT_DISABLED, NOW - 30), json!({"claims": {"jti": "c-dis-1"}})),
            "a-en-2": set(&k, ev(EVENT_ACCOUNT_ENABLED, NOW - 20), json!({"claims": {"jti": "a-en-2"}})),
            "b-dis-3": set(&k, ev(EVENT_ACCOUNT_DISABLED, NOW - 10), json!({"claims": {"jti": "b-dis-3"}})),
        }});
        let (sets, _) = parse_poll_response(answer.to_string().as_bytes()).unwrap();
        let order: Vec<&str> = sets.iter().map(|(j, _)| j.as_str()).collect();
        assert_eq!(order, ["a-en-2", "b-dis-3", "c-dis-1"], "jti order");
        let mut st = RevocationState::default();
        for (_, s) in &sets {
            st.apply(&verify(&k, s).unwrap(), now, LIMITS);
        }
        assert_eq!(
            st.check(None, "agent:x", &[], None, now),
            Err(Reason::RevocationAgent)
        );
    }

    mod permutations {
        use super::*;
        use proptest::prelude::*;

        /// One generated SET: (kind, subject, event time offset).
        fn effect(kind: u8, who: u8, dt: u8) -> Effect {
            let at = NOW as f64 - 50.0 + f64::from(dt);
            let id = format!("id-{who}");
            match kind {
                0 => Effect::AgentDisabled { agent: id, at },
                1 => Effect::AgentEnabled { agent: id, at },
                2 => Effect::SubjectRevoked { subject: id, at },
                3 => Effect::TokenRevoked { jti: id, at },
                _ => Effect::Ignored {
                    event: "e".into(),
                    why: "w".into(),
                },
            }
        }

        fn sets() -> impl Strategy<Value = Vec<VerifiedSet>> {
            prop::collection::vec(prop::collection::vec((0u8..5, 0u8..3, 0u8..8), 1..3), 1..12)
                .prop_map(|specs| {
                    specs
                        .into_iter()
                        .enumerate()
                        .map(|(i, effects)| VerifiedSet {
                            jti: format!("set-{i}"),
                            iat: NOW as f64 - 40.0 + i as f64,
                            effects: effects
                                .into_iter()
                                .map(|(k, w, t)| effect(k, w, t))
                                .collect(),
                        })
                        .collect()
                })
        }

        fn replayed(sets: &[VerifiedSet], batch: usize) -> RevocationState {
            let now = NOW as f64;
            let mut st = RevocationState::default();
            for chunk in sets.chunks(batch.max(1)) {
                for s in chunk {
                    st.apply(s, now, LIMITS);
                }
                st.prune(now);
            }
            st
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// The state is a function of the set of SETs: any permutation, any split into
            /// poll answers, with replays, gives the same state (and so the same checks).
            #[test]
            fn any_order_gives_the_same_state(
                (sets, shuffled) in sets().prop_flat_map(|s| {
                    let shuffled = Just(s.clone()).prop_shuffle();
                    (Just(s), shuffled)
                }),
                batch in 1usize..5,
                again in 0usize..12,
            ) {
                let reference = replayed(&sets, sets.len());
                let mut other = shuffled.clone();
                if let Some(dup) = shuffled.get(again % shuffled.len()) {
                    other.push(dup.clone());
                }
                prop_assert_eq!(&replayed(&other, batch), &reference);
                // A later prune (a restart replaying the same SETs) agrees too.
                let later = NOW as f64 + LIMITS.existing_token_horizon() + 1.0;
                let (mut a, mut b) = (reference.clone(), replayed(&other, 1));
                a.prune(later);
                b.prune(later);
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn poll_protocol_shapes() {
        let body = poll_body(&["a".into(), "b".into()], 10);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"ack": ["a", "b"], "maxEvents": 10, "returnImmediately": true})
        );
        let (sets, more) =
            parse_poll_response(br#"{"sets": {"j1": "x.y.z"}, "moreAvailable": true}"#).unwrap();
        assert_eq!(sets, vec![("j1".to_string(), "x.y.z".to_string())]);
        assert!(more);
        assert!(parse_poll_response(br#"{"sets": {"j1": 5}}"#).is_err());
        assert!(parse_poll_response(br#"{"sets": {}, "sets": {}}"#).is_err());
        assert!(parse_poll_response(b"[]").is_err());
        assert!(parse_poll_response(br#"{"sets": {}, "moreAvailable": "true"}"#).is_err());
        assert_eq!(
            parse_poll_response(br#"{"sets": {}}"#).unwrap(),
            (vec![], false)
        );
    }
}
