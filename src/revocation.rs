//! Real-time revocation: Security Event Tokens (RFC 8417) delivered by OpenID Shared
//! Signals poll delivery (RFC 8936), verified here and applied to one revocation state per
//! Envoy. Host-agnostic: the proxy-wasm adapter moves bytes, this module decides.
//!
//! Events (the `events` claim of a SET; subjects per RFC 9493 `opaque` / `iss_sub`):
//! - CAEP `session-revoked`, `credential-change` for a subject: tokens whose `sub` or any
//!   actor is that subject and whose `iat` is at or before the event time are refused
//!   (`revocation.subject`); later tokens are accepted.
//! - RISC `account-disabled` for an agent: every token naming it as `sub` or actor is
//!   refused (`revocation.agent`) until RISC `account-enabled`.
//! - `https://agent-iam.dev/secevent/token-revoked` with `{"jti": "..."}`: that token is
//!   refused (`revocation.jti`).
//!
//! Entries that only match old tokens (`jti`, subject) expire once no such token can still
//! be valid: event time + `max_token_lifetime_s` + `clock_skew_s`.

use std::collections::HashMap;

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(not(target_os = "wasi"))]
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

/// Largest SET we accept (bytes of the compact JWS).
pub const MAX_SET_BYTES: usize = 16 * 1024;

/// The `revocation` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_os = "wasi"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// The SSF transmitter's poll endpoint (RFC 8936), reached through an Envoy cluster.
    pub feed: PollConfig,
    /// Who signs the SETs and for whom.
    pub transmitter: TransmitterConfig,
    /// After this long without a successful poll the state is stale (1..=3600 s).
    #[serde(default = "default_staleness")]
    pub max_staleness_s: u64,
    /// With stale state: `deny` every request (default, `revocation.stale`) or
    /// `allow_safe_methods` (GET/HEAD still decided on the last state, the rest denied).
    #[serde(default)]
    pub on_stale: RevocationStaleMode,
}

fn default_staleness() -> u64 {
    30
}

/// Where and how to poll.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(not(target_os = "wasi"), derive(JsonSchema))]
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
#[cfg_attr(not(target_os = "wasi"), derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TransmitterConfig {
    /// Exact `iss` of every SET.
    pub issuer: String,
    /// Our audience: every SET's `aud` must contain it.
    pub audience: String,
    /// The transmitter's public keys (`{"keys": [...]}`; every key needs `kid`).
    pub jwks: crate::config::JwksConfig,
}

/// Behaviour with stale revocation state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_os = "wasi"), derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RevocationStaleMode {
    #[default]
    Deny,
    AllowSafeMethods,
}

/// A validated transmitter.
#[derive(Debug)]
pub struct Transmitter {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<VerifyKey>,
}

/// What one SET asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Refuse tokens of `subject` (as `sub` or actor) issued at or before `at`.
    SubjectRevoked {
        subject: String,
        at: f64,
    },
    AgentDisabled {
        agent: String,
    },
    AgentEnabled {
        agent: String,
    },
    TokenRevoked {
        jti: String,
    },
    /// An event type we do not act on (acknowledged, not applied).
    Ignored {
        event: String,
    },
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::SubjectRevoked { subject, at } => {
                write!(f, "tokens of {subject} issued at or before {at} revoked")
            }
            Effect::AgentDisabled { agent } => write!(f, "{agent} disabled"),
            Effect::AgentEnabled { agent } => write!(f, "{agent} enabled"),
            Effect::TokenRevoked { jti } => write!(f, "token jti {jti} revoked"),
            Effect::Ignored { event } => write!(f, "event {event} not acted on"),
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
pub struct SetError(pub String);

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SetError> {
    Err(SetError(msg.into()))
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

/// RFC 9493 subject → the identifier we match (`sub` / agent id).
fn subject_id(v: Option<&Value>) -> Result<String, SetError> {
    let Some(Value::Object(s)) = v else {
        return err("event has no subject object");
    };
    let field = match s.get("format").and_then(Value::as_str) {
        Some("opaque") => "id",
        Some("iss_sub") => "sub",
        Some(other) => return err(format!("unsupported subject format \"{other}\"")),
        None => return err("subject has no format"),
    };
    match s.get(field).and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => err(format!("subject.{field} missing or empty")),
    }
}

fn effect(
    event: &str,
    body: &Value,
    top_subject: Option<&Value>,
    iat: f64,
) -> Result<Effect, SetError> {
    let Value::Object(b) = body else {
        return err(format!("event {event} is not an object"));
    };
    // SSF 1.0 puts the subject at the top level (`sub_id`); CAEP/RISC 1.0 in the event.
    let subject = || subject_id(b.get("subject").or(top_subject));
    let at = match b.get("event_timestamp") {
        None => iat,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(iat),
        Some(_) => return err("event_timestamp is not a number"),
    };
    Ok(match event {
        EVENT_SESSION_REVOKED | EVENT_CREDENTIAL_CHANGE => Effect::SubjectRevoked {
            subject: subject()?,
            at,
        },
        EVENT_ACCOUNT_DISABLED => Effect::AgentDisabled { agent: subject()? },
        EVENT_ACCOUNT_ENABLED => Effect::AgentEnabled { agent: subject()? },
        EVENT_TOKEN_REVOKED => match b.get("jti").and_then(Value::as_str) {
            Some(j) if !j.is_empty() => Effect::TokenRevoked { jti: j.to_owned() },
            _ => return err("token-revoked event needs a non-empty jti"),
        },
        other => Effect::Ignored {
            event: other.chars().take(200).collect(),
        },
    })
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
    let jws = parse_compact(set, MAX_SET_BYTES)
        .map_err(|r| SetError(format!("refused by the JWS rules ({r})")))?;
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
    .map_err(|r| SetError(format!("no transmitter key for kid/alg ({r})")))?;
    check_signature(&jws, key, backend)
        .map_err(|_| SetError("signature does not verify".into()))?;
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
    let mut effects = Vec::new();
    for (event, body) in events {
        effects.push(effect(event, body, claims.get("sub_id"), iat)?);
    }
    Ok(VerifiedSet { jti, iat, effects })
}

/// One revocation state per Envoy (published through shared data as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationState {
    /// Revoked token `jti` → when the entry may be forgotten.
    pub jtis: HashMap<String, f64>,
    /// Subject → (tokens issued at or before this time are refused, forget after).
    pub subjects: HashMap<String, (f64, f64)>,
    /// Disabled agents (until `account-enabled`).
    pub agents: HashMap<String, f64>,
    /// SET `jti`s already applied → forget after (replay detection).
    pub seen: HashMap<String, f64>,
}

/// What applying a SET did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Same `jti` as an applied SET: not applied again (still acknowledged).
    Replay,
}

impl RevocationState {
    /// Applies a verified SET; `horizon` = `max_token_lifetime_s + clock_skew_s`.
    pub fn apply(&mut self, set: &VerifiedSet, now: f64, horizon: f64) -> Applied {
        if self.seen.contains_key(&set.jti) {
            return Applied::Replay;
        }
        self.seen
            .insert(set.jti.clone(), now.max(set.iat) + horizon);
        for e in &set.effects {
            match e {
                Effect::SubjectRevoked { subject, at } => {
                    let entry = self.subjects.entry(subject.clone()).or_insert((*at, 0.0));
                    entry.0 = entry.0.max(*at);
                    entry.1 = entry.1.max(entry.0 + horizon);
                }
                Effect::AgentDisabled { agent } => {
                    self.agents.insert(agent.clone(), set.iat);
                }
                Effect::AgentEnabled { agent } => {
                    self.agents.remove(agent);
                }
                Effect::TokenRevoked { jti } => {
                    self.jtis.insert(jti.clone(), now.max(set.iat) + horizon);
                }
                Effect::Ignored { .. } => {}
            }
        }
        Applied::Applied
    }

    /// Forgets entries that can no longer match a valid token.
    pub fn prune(&mut self, now: f64) {
        self.jtis.retain(|_, until| *until > now);
        self.subjects.retain(|_, (_, until)| *until > now);
        self.seen.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The per-request check: the token's `jti`, its subject and every actor.
    pub fn check(
        &self,
        jti: Option<&str>,
        subject: &str,
        chain: &[Actor],
        iat: f64,
    ) -> Result<(), Reason> {
        if self.is_empty() {
            return Ok(());
        }
        if jti.is_some_and(|j| self.jtis.contains_key(j)) {
            return Err(Reason::RevocationJti);
        }
        let mut ids = std::iter::once(subject).chain(chain.iter().map(|a| a.sub.as_str()));
        if ids.clone().any(|id| self.agents.contains_key(id)) {
            return Err(Reason::RevocationAgent);
        }
        if ids.any(|id| {
            self.subjects
                .get(id)
                .is_some_and(|(before, _)| iat <= *before)
        }) {
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
    let more = m
        .get("moreAvailable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((sets, more))
}

/// The validated `revocation` section.
#[derive(Debug)]
pub struct Revocation {
    pub feed: PollConfig,
    pub transmitter: Transmitter,
    pub max_staleness_s: u64,
    pub on_stale: RevocationStaleMode,
}

impl RevocationConfig {
    /// Every problem with its JSON path.
    pub fn validate(self, problems: &mut Vec<crate::config::Problem>) -> Option<Revocation> {
        let before = problems.len();
        let mut bad = |path: &str, message: String| {
            problems.push(crate::config::Problem {
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
            },
            max_staleness_s: self.max_staleness_s,
            on_stale: self.on_stale,
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

    #[test]
    fn each_supported_event_verifies_to_its_effect() {
        let k = keys();
        let cases = [
            (
                json!({EVENT_SESSION_REVOKED: {"subject": opaque("user:alice"), "event_timestamp": NOW - 5}}),
                Effect::SubjectRevoked {
                    subject: "user:alice".into(),
                    at: (NOW - 5) as f64,
                },
            ),
            (
                json!({EVENT_CREDENTIAL_CHANGE: {"subject": {"format": "iss_sub", "iss": "https://idp", "sub": "user:bob"}}}),
                Effect::SubjectRevoked {
                    subject: "user:bob".into(),
                    at: NOW as f64,
                },
            ),
            (
                json!({EVENT_ACCOUNT_DISABLED: {"subject": opaque("agent:x")}}),
                Effect::AgentDisabled {
                    agent: "agent:x".into(),
                },
            ),
            (
                json!({EVENT_ACCOUNT_ENABLED: {"subject": opaque("agent:x")}}),
                Effect::AgentEnabled {
                    agent: "agent:x".into(),
                },
            ),
            (
                json!({EVENT_TOKEN_REVOKED: {"jti": "tok-1"}}),
                Effect::TokenRevoked {
                    jti: "tok-1".into(),
                },
            ),
            (
                json!({"https://example.test/other": {}}),
                Effect::Ignored {
                    event: "https://example.test/other".into(),
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
                agent: "agent:y".into()
            }]
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
                json!({"claims": {"events": {EVENT_SESSION_REVOKED: {"subject": {"format": "email", "email": "a@b"}}}}}),
                "format",
            ),
        ];
        for (over, want) in cases {
            let e = verify(&k, &set(&k, ev.clone(), over.clone())).unwrap_err();
            assert!(e.0.contains(want), "{over}: {e}");
        }
        assert!(verify(&k, "not.a.set").is_err());
    }

    #[test]
    fn state_applies_checks_detects_replay_and_forgets() {
        let k = keys();
        let horizon = 630.0;
        let mut st = RevocationState::default();
        let mk = |jti: &str, events: Value| {
            verify(&k, &set(&k, events, json!({"claims": {"jti": jti}}))).unwrap()
        };
        let now = NOW as f64;
        let s1 = mk("s1", json!({EVENT_TOKEN_REVOKED: {"jti": "tok-1"}}));
        assert_eq!(st.apply(&s1, now, horizon), Applied::Applied);
        assert_eq!(st.apply(&s1, now, horizon), Applied::Replay);
        let s2 = mk(
            "s2",
            json!({EVENT_SESSION_REVOKED: {"subject": opaque("user:alice"), "event_timestamp": NOW - 10}}),
        );
        st.apply(&s2, now, horizon);
        let s3 = mk(
            "s3",
            json!({EVENT_ACCOUNT_DISABLED: {"subject": opaque("agent:bad")}}),
        );
        st.apply(&s3, now, horizon);

        let actor = |s: &str| Actor {
            sub: s.into(),
            iss: None,
        };
        let old = now - 20.0;
        assert_eq!(
            st.check(Some("tok-1"), "user:zed", &[], old),
            Err(Reason::RevocationJti)
        );
        assert_eq!(st.check(Some("tok-2"), "user:zed", &[], old), Ok(()));
        // Subject revocation: as principal and as actor; only tokens issued before.
        assert_eq!(
            st.check(None, "user:alice", &[], old),
            Err(Reason::RevocationSubject)
        );
        assert_eq!(
            st.check(None, "user:zed", &[actor("user:alice")], old),
            Err(Reason::RevocationSubject)
        );
        assert_eq!(st.check(None, "user:alice", &[], now), Ok(()));
        // A disabled agent: as subject or anywhere in the chain, whatever the token's age.
        assert_eq!(
            st.check(None, "agent:bad", &[], now + 5.0),
            Err(Reason::RevocationAgent)
        );
        assert_eq!(
            st.check(
                None,
                "user:zed",
                &[actor("agent:ok"), actor("agent:bad")],
                now
            ),
            Err(Reason::RevocationAgent)
        );
        let s4 = mk(
            "s4",
            json!({EVENT_ACCOUNT_ENABLED: {"subject": opaque("agent:bad")}}),
        );
        st.apply(&s4, now, horizon);
        assert_eq!(st.check(None, "agent:bad", &[], now), Ok(()));

        // Entries live until no token they match can be valid, then go.
        st.prune(now + horizon - 1.0);
        assert_eq!(
            st.check(Some("tok-1"), "user:zed", &[], old),
            Err(Reason::RevocationJti)
        );
        st.prune(now + horizon + 1.0);
        assert!(st.is_empty(), "{st:?}");
        assert!(st.seen.is_empty());
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
    }
}
