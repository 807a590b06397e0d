//! Development helpers for demos and tests (native CLI only, never in the filter):
//! generate a demo key set, and mint tokens from declarative *recipes* — including the
//! malformed and hostile ones the test suites need. Private keys here are test keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_compact::alg::{Es256, Hs256, Hs256Key, Rsa};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::BigUint;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The demo/test signing keys: one per algorithm.
pub struct DevKeys {
    pub es256: p256::ecdsa::SigningKey,
    pub ed25519: ed25519_dalek::SigningKey,
    pub rs256: rsa::RsaPrivateKey,
}

pub const KID_ES256: &str = "es-1";
pub const KID_ED25519: &str = "ed-1";
pub const KID_RS256: &str = "rs-1";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(v: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing `{name}`"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("`{name}`: {e}"))
}

impl DevKeys {
    /// Fresh random keys.
    pub fn generate() -> Result<DevKeys, String> {
        let mut rng = rand_core::OsRng;
        let es256 = p256::ecdsa::SigningKey::random(&mut rng);
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| e.to_string())?;
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&seed);
        let rs256 = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
        Ok(DevKeys {
            es256,
            ed25519,
            rs256,
        })
    }

    /// The private key file format written by `agent-iam dev keys`.
    pub fn to_private_json(&self) -> Value {
        let primes = self.rs256.primes();
        json!({
            "note": "TEST KEYS ONLY: published on purpose; never trust tokens signed by them",
            "es256": {"kid": KID_ES256, "d": b64(&self.es256.to_bytes())},
            "ed25519": {"kid": KID_ED25519, "seed": b64(self.ed25519.as_bytes())},
            "rs256": {
                "kid": KID_RS256,
                "n": b64(&self.rs256.n().to_bytes_be()),
                "e": b64(&self.rs256.e().to_bytes_be()),
                "d": b64(&self.rs256.d().to_bytes_be()),
                "p": b64(&primes.first().map(BigUint::to_bytes_be).unwrap_or_default()),
                "q": b64(&primes.get(1).map(BigUint::to_bytes_be).unwrap_or_default()),
            },
        })
    }

    pub fn from_private_json(v: &Value) -> Result<DevKeys, String> {
        let es = v.get("es256").ok_or("missing es256")?;
        let es256 =
            p256::ecdsa::SigningKey::from_slice(&unb64(es, "d")?).map_err(|e| e.to_string())?;
        let ed = v.get("ed25519").ok_or("missing ed25519")?;
        let seed: [u8; 32] = unb64(ed, "seed")?
            .try_into()
            .map_err(|_| "`seed` must decode to 32 bytes".to_string())?;
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&seed);
        let rs = v.get("rs256").ok_or("missing rs256")?;
        let n = |name: &str| unb64(rs, name).map(|b| BigUint::from_bytes_be(&b));
        let rs256 =
            rsa::RsaPrivateKey::from_components(n("n")?, n("e")?, n("d")?, vec![n("p")?, n("q")?])
                .map_err(|e| e.to_string())?;
        Ok(DevKeys {
            es256,
            ed25519,
            rs256,
        })
    }

    /// Public JWKS for the plugin configuration.
    pub fn public_jwks(&self) -> Value {
        let point = self.es256.verifying_key().to_encoded_point(false);
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": KID_ES256, "alg": "ES256", "use": "sig",
             "x": b64(point.x().map(|x| x.as_slice()).unwrap_or_default()),
             "y": b64(point.y().map(|y| y.as_slice()).unwrap_or_default())},
            {"kty": "OKP", "crv": "Ed25519", "kid": KID_ED25519, "alg": "EdDSA", "use": "sig",
             "x": b64(self.ed25519.verifying_key().as_bytes())},
            {"kty": "RSA", "kid": KID_RS256, "alg": "RS256", "use": "sig",
             "n": b64(&self.rs256.n().to_bytes_be()), "e": b64(&self.rs256.e().to_bytes_be())},
        ]})
    }

    /// The ES256 key's SubjectPublicKeyInfo, as the filter derives it from the JWKS.
    fn es256_spki(&self) -> Vec<u8> {
        let jwks = self.public_jwks();
        let first = jwks.get("keys").and_then(|k| k.get(0));
        first
            .and_then(|k| crate::keys::parse_jwk(k).ok())
            .map(|k| k.spki_der)
            .unwrap_or_default()
    }
}

/// The public JWK (no `kid`, `alg` or `use`) a DPoP proof of `alg` (ES256, EdDSA or
/// Ed25519, RS256) made with these keys carries.
pub fn dpop_jwk(keys: &DevKeys, alg: &str) -> Result<Value, String> {
    let jwks = keys.public_jwks();
    let kty = match alg {
        "ES256" => "EC",
        "EdDSA" | "Ed25519" => "OKP",
        "RS256" => "RSA",
        other => {
            return Err(format!(
                "unknown DPoP alg {other} (ES256, EdDSA, Ed25519, RS256)"
            ))
        }
    };
    let mut jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| keys.iter().find(|k| k.get("kty") == Some(&json!(kty))))
        .cloned()
        .ok_or("no such key")?;
    if let Some(obj) = jwk.as_object_mut() {
        for member in ["kid", "alg", "use"] {
            obj.remove(member);
        }
    }
    Ok(jwk)
}

/// The RFC 7638 thumbprint (`cnf.jkt`, base64url) of [`dpop_jwk`].
pub fn dpop_jkt(keys: &DevKeys, alg: &str) -> Result<String, String> {
    let jwk = dpop_jwk(keys, alg)?;
    let (_, jkt) = crate::dpop::proof_key(&jwk).map_err(|r| r.as_str().to_owned())?;
    Ok(b64(&jkt))
}

/// A DPoP proof (RFC 9449 §4.2) of `htm` `htu` at `iat`, bound to `access_token` (`ath`)
/// when given, signed with the `alg` key of `keys`.
pub fn dpop_proof(
    keys: &DevKeys,
    alg: &str,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    iat: i64,
    jti: &str,
) -> Result<String, String> {
    use sha2::Digest;
    let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": dpop_jwk(keys, alg)?});
    let mut claims = json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat});
    if let (Some(t), Some(obj)) = (access_token, claims.as_object_mut()) {
        obj.insert(
            "ath".into(),
            json!(b64(&sha2::Sha256::digest(t.as_bytes()))),
        );
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let msg = input.as_bytes();
    let sig: Vec<u8> = match alg {
        "ES256" => Es256.sign(&keys.es256, msg).as_bytes().into_owned(),
        "EdDSA" | "Ed25519" => ed25519_dalek::Signer::sign(&keys.ed25519, msg)
            .to_bytes()
            .to_vec(),
        _ => Rsa::rs256().sign(&keys.rs256, msg).as_bytes().into_owned(),
    };
    Ok(format!("{input}.{}", b64(&sig)))
}

/// How to build one token. Claims and header members are merged over the defaults; a
/// `null` removes a member. Times are offsets (seconds) from `now`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// ES256, EdDSA, RS256, or an attack: `none`, `HS256-pubkey`.
    #[serde(default = "default_alg")]
    pub alg: String,
    #[serde(default)]
    pub header: Map<String, Value>,
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub iat: i64,
    #[serde(default = "default_exp")]
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Post-signing damage: signature, zero_signature, empty_signature, padding,
    /// whitespace, extra_segment, noncanonical, truncate.
    #[serde(default)]
    pub tamper: Option<String>,
    /// `header:<member>` or `claims:<member>`: repeat that member with another value.
    #[serde(default)]
    pub duplicate: Option<String>,
    /// Claims object repeated this deep under `nest` (hostile nesting).
    #[serde(default)]
    pub nest: Option<usize>,
    /// Bytes of filler in a `pad` claim (oversize tokens).
    #[serde(default)]
    pub pad: Option<usize>,
}

fn default_alg() -> String {
    "ES256".into()
}
fn default_exp() -> i64 {
    300
}

pub const DEMO_ISSUER: &str = "https://idp.agent-iam.test";
pub const DEMO_AUDIENCE: &str = "https://api.agent-iam.test";

fn json_with_duplicate(obj: &Map<String, Value>, dup: Option<&str>) -> String {
    let text = Value::Object(obj.clone()).to_string();
    match dup {
        Some(member) if text.len() > 2 => {
            let extra = format!(
                ",{}:{}",
                Value::String(member.into()),
                json!("duplicate-value")
            );
            let cut = text.len().saturating_sub(1);
            format!("{}{}}}", text.get(..cut).unwrap_or_default(), extra)
        }
        _ => text,
    }
}

/// Mints the token `recipe` describes at time `now`.
pub fn mint(keys: &DevKeys, recipe: &Recipe, now: i64) -> Result<String, String> {
    let kid = match recipe.alg.as_str() {
        "ES256" | "HS256-pubkey" | "none" => KID_ES256,
        "EdDSA" => KID_ED25519,
        "RS256" => KID_RS256,
        other => return Err(format!("unknown recipe alg {other}")),
    };
    let jose_alg = match recipe.alg.as_str() {
        "HS256-pubkey" => "HS256",
        other => other,
    };
    let mut header = Map::new();
    header.insert("alg".into(), json!(jose_alg));
    header.insert("kid".into(), json!(kid));
    header.insert("typ".into(), json!("at+jwt"));
    merge(&mut header, &recipe.header);

    let mut claims = Map::new();
    claims.insert("iss".into(), json!(DEMO_ISSUER));
    claims.insert("aud".into(), json!(DEMO_AUDIENCE));
    claims.insert("sub".into(), json!("agent:build-bot-7"));
    claims.insert("iat".into(), json!(now.saturating_add(recipe.iat)));
    claims.insert("exp".into(), json!(now.saturating_add(recipe.exp)));
    if let Some(nbf) = recipe.nbf {
        claims.insert("nbf".into(), json!(now.saturating_add(nbf)));
    }
    // 64 random bits: minting 100,000 tokens at once must not repeat a jti.
    claims.insert(
        "jti".into(),
        json!(format!("jti-{now}-{:016x}", rand_u64())),
    );
    claims.insert("scope".into(), json!("tickets:read"));
    merge(&mut claims, &recipe.claims);
    if let Some(depth) = recipe.nest {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!({ "n": v });
        }
        claims.insert("nest".into(), v);
    }
    if let Some(n) = recipe.pad {
        claims.insert("pad".into(), json!("x".repeat(n)));
    }
    let dup = recipe.duplicate.as_deref();
    let header_json = json_with_duplicate(&header, dup.and_then(|d| d.strip_prefix("header:")));
    let claims_json = json_with_duplicate(&claims, dup.and_then(|d| d.strip_prefix("claims:")));
    let signing_input = format!(
        "{}.{}",
        b64(header_json.as_bytes()),
        b64(claims_json.as_bytes())
    );
    let msg = signing_input.as_bytes();
    let sig: Vec<u8> = match recipe.alg.as_str() {
        "ES256" => Es256.sign(&keys.es256, msg).as_bytes().into_owned(),
        "EdDSA" => ed25519_dalek::Signer::sign(&keys.ed25519, msg)
            .to_bytes()
            .to_vec(),
        "RS256" => Rsa::rs256().sign(&keys.rs256, msg).as_bytes().into_owned(),
        "HS256-pubkey" => Hs256
            .sign(&Hs256Key::new(keys.es256_spki()), msg)
            .as_bytes()
            .into_owned(),
        _ => Vec::new(),
    };
    tamper(signing_input, sig, recipe.tamper.as_deref())
}

fn tamper(signing_input: String, mut sig: Vec<u8>, how: Option<&str>) -> Result<String, String> {
    let out = match how {
        None => format!("{signing_input}.{}", b64(&sig)),
        Some("signature") => {
            if let Some(b) = sig.get_mut(10) {
                *b ^= 0x01;
            }
            format!("{signing_input}.{}", b64(&sig))
        }
        Some("zero_signature") => format!("{signing_input}.{}", b64(&[0u8; 64])),
        Some("empty_signature") => format!("{signing_input}."),
        Some("padding") => format!("{signing_input}.{}==", b64(&sig)),
        Some("whitespace") => format!("{signing_input}.\t{}", b64(&sig)),
        Some("extra_segment") => format!("{signing_input}.{}.e30", b64(&sig)),
        Some("truncate") => {
            sig.truncate(sig.len() / 2);
            format!("{signing_input}.{}", b64(&sig))
        }
        Some("noncanonical") => {
            // 64- and 256-byte signatures leave unused low bits in the last character.
            let mut s = b64(&sig);
            let last = s.pop().ok_or("empty signature")?;
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let idx = alphabet
                .iter()
                .position(|&c| c == last as u8)
                .ok_or("bad char")?;
            let bumped = alphabet.get(idx | 1).copied().ok_or("bad index")?;
            s.push(bumped as char);
            format!("{signing_input}.{s}")
        }
        Some(other) => return Err(format!("unknown tamper {other}")),
    };
    Ok(out)
}

fn merge(into: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        if v.is_null() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}

/// A plugin configuration trusting `keys` for the demo issuer.
pub fn demo_plugin_config(keys: &DevKeys) -> Value {
    json!({
        "issuers": [{
            "issuer": DEMO_ISSUER,
            "audiences": [DEMO_AUDIENCE],
            "jwks": keys.public_jwks(),
            "algorithms": ["ES256", "EdDSA", "RS256"],
            "accepted_types": ["at+jwt", "jwt"],
        }],
    })
}
