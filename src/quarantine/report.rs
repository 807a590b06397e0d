//! Telling a Shared Signals transmitter about a quarantine (`quarantine.report`): each
//! quarantine this Envoy starts becomes one Security Event Token (RFC 8417), signed with
//! the gateway's own key and pushed to the transmitter (RFC 8935 push delivery:
//! `POST` `application/secevent+jwt`, `202 Accepted`). The transmitter relays it to every
//! receiver it serves; another agent-iam filter polling it applies the event (see
//! [`crate::revocation`]) and refuses the agent until the quarantine ends.
//!
//! The event is ours, as no standard event quarantines an agent for a while:
//! `https://agent-iam.dev/secevent/agent-quarantined`, with the agent as an `iss_sub`
//! subject (the issuer of the token that named it), `event_timestamp` (when it began),
//! `until`, and the evidence: `denials`, `within_s` and the last refused decision ids.

use serde::Deserialize;
use serde_json::{json, Value};

#[cfg(tools)]
use schemars::JsonSchema;

use super::Evidence;
use crate::problem::Problem;
use crate::revocation::EVENT_AGENT_QUARANTINED;

/// The `quarantine.report` section: where and as whom quarantines are reported.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Envoy cluster of the transmitter's push endpoint.
    pub cluster: String,
    /// Path of the push endpoint (`POST`, RFC 8935).
    pub path: String,
    /// `:authority` (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// This gateway's `iss` in every SET it sends (the transmitter knows it by this name
    /// and its public key).
    pub issuer: String,
    /// The transmitter's `aud` in every SET.
    pub audience: String,
    /// This gateway's private signing key: a JWK with `kid`, EC P-256 (ES256) or OKP
    /// Ed25519 (EdDSA), with its private `d`.
    pub signing_key: PrivateJwk,
    /// Per-push timeout in milliseconds (10..=60000; default 2000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Reports held while the transmitter is unreachable (1..=10000; default 1000); the
    /// oldest is dropped beyond that, and counted.
    #[serde(default = "default_max_queue")]
    pub max_queue: u64,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_max_queue() -> u64 {
    1000
}

/// A private JWK: parsed once, never printed (not in a configuration error either).
#[derive(Clone)]
#[cfg_attr(tools, derive(JsonSchema))]
pub struct PrivateJwk(pub serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for PrivateJwk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PrivateJwk, D::Error> {
        match Value::deserialize(d) {
            Ok(Value::Object(m)) => Ok(PrivateJwk(m)),
            _ => Err(serde::de::Error::custom(
                "must be a JWK object (the value is not shown: it may be a secret)",
            )),
        }
    }
}

impl std::fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateJwk(..)")
    }
}

#[derive(Clone)]
enum Key {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

/// A validated `quarantine.report`: the endpoint and the parsed key.
#[derive(Clone)]
pub struct Reporter {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub max_queue: usize,
    issuer: String,
    audience: String,
    kid: String,
    key: Key,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("cluster", &self.cluster)
            .field("path", &self.path)
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// The private key of `jwk` and its `kid`, or why not.
fn parse_key(jwk: &serde_json::Map<String, Value>) -> Result<(String, Key), String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str, len: usize| -> Result<Vec<u8>, String> {
        let v = field(name)
            .and_then(unb64)
            .ok_or_else(|| format!("{name} is missing or not base64url"))?;
        if v.len() != len {
            return Err(format!("{name} is {} bytes, expected {len}", v.len()));
        }
        Ok(v)
    };
    let kid = match field("kid") {
        Some(k) if !k.is_empty() && k.len() <= 256 => k.to_owned(),
        _ => return Err("kid is missing (the transmitter selects our public key by it)".into()),
    };
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err("use must be \"sig\"".into());
    }
    let key = match (field("kty"), field("crv")) {
        (Some("EC"), Some("P-256")) => {
            let d = bytes("d", 32)?;
            let key = p256::ecdsa::SigningKey::from_slice(&d)
                .map_err(|_| "d is not a P-256 private key".to_owned())?;
            let point = key.verifying_key().to_encoded_point(false);
            let (x, y) = (bytes("x", 32)?, bytes("y", 32)?);
            if point.x().map(|p| p.as_slice()) != Some(&x[..])
                || point.y().map(|p| p.as_slice()) != Some(&y[..])
            {
                return Err("x and y are not the public key of d".into());
            }
            Key::Es256(key)
        }
        (Some("OKP"), Some("Ed25519")) => {
            let d = bytes("d", 32)?;
            let seed: [u8; 32] = d.try_into().map_err(|_| "d is not 32 bytes".to_owned())?;
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            if bytes("x", 32)? != key.verifying_key().as_bytes() {
                return Err("x is not the public key of d".into());
            }
            Key::EdDsa(key)
        }
        (kty, crv) => {
            return Err(format!(
                "kty {} crv {}: only EC P-256 (ES256) and OKP Ed25519 (EdDSA) sign reports",
                kty.unwrap_or("(none)"),
                crv.unwrap_or("(none)")
            ))
        }
    };
    let alg = match key {
        Key::Es256(_) => "ES256",
        Key::EdDsa(_) => "EdDSA",
    };
    if jwk.get("alg").is_some_and(|a| a.as_str() != Some(alg)) {
        return Err(format!("alg must be {alg} for this key"));
    }
    Ok((kid, key))
}

impl ReportConfig {
    /// The validated reporter, or the problems (JSON paths under `$.quarantine.report`).
    pub fn validate(&self, out: &mut Vec<Problem>) -> Option<Reporter> {
        let at = |p: &str| format!("$.quarantine.report.{p}");
        let before = out.len();
        let mut problem = |path: &str, message: String| {
            out.push(Problem {
                path: at(path),
                message,
            })
        };
        if self.cluster.is_empty() {
            problem("cluster", "must not be empty".into());
        }
        if !self.path.starts_with('/') {
            problem("path", format!("{:?} does not start with /", self.path));
        }
        for (name, v) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if v.is_empty() {
                problem(name, "must not be empty".into());
            }
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            problem(
                "timeout_ms",
                format!("{} is outside 10..=60000", self.timeout_ms),
            );
        }
        if !(1..=10_000).contains(&self.max_queue) {
            problem(
                "max_queue",
                format!("{} is outside 1..=10000", self.max_queue),
            );
        }
        let key = parse_key(&self.signing_key.0)
            .map_err(|e| problem("signing_key", e))
            .ok();
        let (kid, key) = key?;
        (out.len() == before).then(|| Reporter {
            cluster: self.cluster.clone(),
            path: self.path.clone(),
            authority: self
                .authority
                .clone()
                .unwrap_or_else(|| self.cluster.clone()),
            timeout_ms: self.timeout_ms,
            max_queue: usize::try_from(self.max_queue).unwrap_or(usize::MAX),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            kid,
            key,
        })
    }
}

/// A new private signing key as a JWK (`ES256`: EC P-256; `EdDSA`: OKP Ed25519), for
/// `agent-iam generate signing-key`.
#[cfg(tools)]
pub fn generate_key(alg: &str, kid: &str) -> Result<serde_json::Map<String, Value>, String> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = match alg {
        "ES256" => {
            Key::Es256(p256::ecdsa::SigningKey::from_slice(&seed).map_err(|e| e.to_string())?)
        }
        "EdDSA" | "Ed25519" => Key::EdDsa(ed25519_dalek::SigningKey::from_bytes(&seed)),
        other => return Err(format!("--alg {other}: ES256 or EdDSA")),
    };
    let mut jwk = public_jwk(&key, kid);
    jwk.insert("d".into(), json!(b64(&seed)));
    Ok(jwk)
}

/// The public JWKS of a private JWK (what the transmitter is given), or why the key is
/// not one `quarantine.report.signing_key` takes.
pub fn public_jwks_of(private: &serde_json::Map<String, Value>) -> Result<Value, String> {
    let (kid, key) = parse_key(private)?;
    Ok(json!({"keys": [public_jwk(&key, &kid)]}))
}

fn public_jwk(key: &Key, kid: &str) -> serde_json::Map<String, Value> {
    let jwk = match key {
        Key::Es256(k) => {
            let p = k.verifying_key().to_encoded_point(false);
            json!({"kty": "EC", "crv": "P-256", "alg": "ES256",
                   "x": b64(p.x().map(|x| x.as_slice()).unwrap_or_default()),
                   "y": b64(p.y().map(|y| y.as_slice()).unwrap_or_default())})
        }
        Key::EdDsa(k) => json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                                "x": b64(k.verifying_key().as_bytes())}),
    };
    let mut jwk = match jwk {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    jwk.insert("kid".into(), json!(kid));
    jwk.insert("use".into(), json!("sig"));
    jwk
}

impl Reporter {
    /// The SET reporting the quarantine that `decision_id` started, issued at `now` (its
    /// `jti` is `quarantine-<decision_id>`: unique per gateway, stable across retries).
    pub fn set(&self, e: &Evidence, decision_id: &str, now: f64) -> (String, String) {
        let jti = format!("quarantine-{decision_id}");
        let subject = json!({"format": "iss_sub", "iss": e.issuer, "sub": e.agent});
        let claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now.floor() as i64,
            "jti": jti,
            "events": {EVENT_AGENT_QUARANTINED: {
                "subject": subject,
                "event_timestamp": e.since,
                "until": e.until,
                "reason_admin": {"en": format!(
                    "more than {} refusals within {} s on this gateway", e.denials, e.within_s)},
                "denials": e.denials,
                "within_s": e.within_s,
                "decision_id": decision_id,
                "decision_ids": e.decision_ids,
            }},
        });
        let alg = match self.key {
            Key::Es256(_) => "ES256",
            Key::EdDsa(_) => "EdDSA",
        };
        let header = json!({"alg": alg, "typ": "secevent+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match &self.key {
            Key::Es256(k) => {
                let s: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(k, input.as_bytes());
                s.to_bytes().to_vec()
            }
            Key::EdDsa(k) => ed25519_dalek::Signer::sign(k, input.as_bytes())
                .to_bytes()
                .to_vec(),
        };
        (jti, format!("{input}.{}", b64(&sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PureRust;
    use crate::revocation::{verify_set, Effect, Transmitter};

    fn es256_jwk() -> serde_json::Map<String, Value> {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let p = key.verifying_key().to_encoded_point(false);
        let v = json!({"kty": "EC", "crv": "P-256", "kid": "gw-1",
            "d": b64(&[7u8; 32]), "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())});
        v.as_object().unwrap().clone()
    }

    fn ed25519_jwk() -> serde_json::Map<String, Value> {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let v = json!({"kty": "OKP", "crv": "Ed25519", "kid": "gw-2",
            "d": b64(&[9u8; 32]), "x": b64(key.verifying_key().as_bytes())});
        v.as_object().unwrap().clone()
    }

    fn config(jwk: serde_json::Map<String, Value>) -> ReportConfig {
        ReportConfig {
            cluster: "ssf".into(),
            path: "/ssf/push".into(),
            authority: None,
            issuer: "https://gw-1.test".into(),
            audience: "https://ssf.test".into(),
            signing_key: PrivateJwk(jwk),
            timeout_ms: 2000,
            max_queue: 10,
        }
    }

    fn evidence() -> Evidence {
        Evidence {
            agent: "agent:runaway".into(),
            issuer: "https://idp.test".into(),
            denials: 5,
            within_s: 60,
            since: 1_800_000_000.25,
            until: 1_800_000_300.25,
            decision_ids: vec!["d1".into(), "d2".into()],
        }
    }

    /// What another gateway's revocation feed makes of the report (once the transmitter
    /// signs it: here the receiver trusts the reporting gateway's key directly).
    #[test]
    fn a_report_verifies_as_a_set_another_gateway_applies() {
        for jwk in [es256_jwk(), ed25519_jwk()] {
            let mut problems = Vec::new();
            let public = public_jwks_of(&jwk).unwrap();
            let r = config(jwk).validate(&mut problems).unwrap();
            assert!(problems.is_empty(), "{problems:?}");
            let (jti, set) = r.set(&evidence(), "d2", 1_800_000_001.0);
            assert_eq!(jti, "quarantine-d2");
            let keys = public["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| crate::keys::parse_jwk(j).unwrap())
                .collect();
            let t = Transmitter {
                issuer: "https://gw-1.test".into(),
                audience: "https://ssf.test".into(),
                keys,
                token_issuers: vec!["https://idp.test".into()],
            };
            let v = verify_set(&set, &t, &PureRust, 1_800_000_002.0, 60.0).unwrap();
            assert_eq!(v.jti, "quarantine-d2");
            assert_eq!(
                v.effects,
                vec![Effect::AgentQuarantined {
                    agent: "agent:runaway".into(),
                    at: 1_800_000_000.25,
                    until: 1_800_000_300.25
                }]
            );
        }
    }

    #[test]
    fn bad_keys_and_fields_are_refused_with_their_paths() {
        type Change = Box<dyn Fn(&mut ReportConfig)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|c| {
                    c.signing_key.0.remove("kid");
                }),
                "signing_key",
                "kid is missing",
            ),
            (
                Box::new(|c| {
                    c.signing_key.0.remove("d");
                }),
                "signing_key",
                "d is missing",
            ),
            (
                Box::new(|c| {
                    c.signing_key.0.insert("x".into(), json!(b64(&[1; 32])));
                }),
                "signing_key",
                "not the public key",
            ),
            (
                Box::new(|c| {
                    c.signing_key.0.insert("kty".into(), json!("RSA"));
                }),
                "signing_key",
                "only EC P-256",
            ),
            (
                Box::new(|c| {
                    c.signing_key.0.insert("use".into(), json!("enc"));
                }),
                "signing_key",
                "use must be",
            ),
            (
                Box::new(|c| {
                    c.signing_key.0.insert("alg".into(), json!("EdDSA"));
                }),
                "signing_key",
                "alg must be ES256",
            ),
            (
                Box::new(|c| c.path = "push".into()),
                "path",
                "does not start with /",
            ),
            (
                Box::new(|c| c.issuer = String::new()),
                "issuer",
                "must not be empty",
            ),
            (Box::new(|c| c.max_queue = 0), "max_queue", "outside"),
        ];
        for (change, path, message) in cases {
            let mut c = config(es256_jwk());
            change(&mut c);
            let mut problems = Vec::new();
            assert!(c.validate(&mut problems).is_none());
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, format!("$.quarantine.report.{path}"));
            assert!(problems[0].message.contains(message), "{problems:?}");
        }
    }

    #[cfg(tools)]
    #[test]
    fn a_generated_key_signs_reports() {
        for alg in ["ES256", "EdDSA"] {
            let jwk = generate_key(alg, "gw-9").unwrap();
            let public = public_jwks_of(&jwk).unwrap();
            assert!(public["keys"][0].get("d").is_none());
            assert_eq!(public["keys"][0]["alg"], alg);
            let mut problems = Vec::new();
            assert!(
                config(jwk).validate(&mut problems).is_some(),
                "{problems:?}"
            );
        }
        assert!(generate_key("RS256", "k").is_err());
    }

    #[test]
    fn the_key_is_never_printed() {
        let mut problems = Vec::new();
        let c = config(es256_jwk());
        let d = c.signing_key.0["d"].as_str().unwrap().to_owned();
        let r = c.validate(&mut problems).unwrap();
        assert!(!format!("{c:?}{r:?}").contains(&d));
        let pem = json!({"cluster": "c", "path": "/p", "issuer": "i", "audience": "a",
                         "signing_key": "-----BEGIN PRIVATE KEY----- s3cret"});
        let e = serde_json::from_value::<ReportConfig>(pem)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("must be a JWK object") && !e.contains("s3cret"),
            "{e}"
        );
    }
}
