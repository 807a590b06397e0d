//! Public keys from JWKS, validated when the configuration loads — never at request time.
//!
//! Each key fixes its algorithm: a token's `alg` must equal the algorithm of the key its
//! `kid` selects. A key we cannot fully validate is a configuration error.

pub(crate) mod der;

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Signature algorithms we verify. Everything else (none, HS*, PS*, ES384, ...) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Alg {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "RS256")]
    Rs256,
}

impl Alg {
    /// Exact, case-sensitive JOSE name lookup. `Ed25519` (RFC 9864's fully specified name,
    /// which current libraries sign with) and the deprecated polymorphic `EdDSA` are one
    /// algorithm here: we verify Ed25519 only.
    pub fn from_jose(name: &str) -> Option<Alg> {
        match name {
            "ES256" => Some(Alg::Es256),
            "EdDSA" | "Ed25519" => Some(Alg::EdDsa),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
        }
    }
}

/// Validated key material, ready for either signature backend.
#[derive(Clone)]
pub enum KeyMaterial {
    Es256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256(rsa::RsaPublicKey),
}

/// One verification key of one issuer.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: String,
    pub alg: Alg,
    pub material: KeyMaterial,
    /// SubjectPublicKeyInfo DER, what BoringSSL imports on the host backend.
    pub spki_der: Vec<u8>,
}

impl VerifyKey {
    /// The public key as native crypto libraries import it (ring's `UnparsedPublicKey`):
    /// the uncompressed SEC1 point (P-256), the 32-byte key (Ed25519), or the PKCS#1
    /// `RSAPublicKey` DER (RSA).
    pub fn public_key_bytes(&self) -> Option<&[u8]> {
        der::spki_subject_key(&self.spki_der)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// RSA moduli we accept, in bits.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 4096;

const PUBLIC_MEMBERS: &[&str] = &[
    "kty", "use", "key_ops", "alg", "kid", "crv", "x", "y", "n", "e", "x5c", "x5t", "x5t#S256",
    "x5u",
];
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Key-strength rules beyond well-formedness.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// Smallest RSA public exponent accepted.
    pub min_rsa_exponent: u64,
}

impl KeyPolicy {
    /// What configurations get: RSA exponent at least 65537.
    pub const STRICT: KeyPolicy = KeyPolicy {
        min_rsa_exponent: 65_537,
    };
    /// For replaying Wycheproof vectors, whose edge-case groups use e = 3.
    pub const VECTORS: KeyPolicy = KeyPolicy {
        min_rsa_exponent: 3,
    };
}

/// Parses and validates one JWK. Errors are messages without the path; the caller adds it.
pub fn parse_jwk(v: &Value) -> Result<VerifyKey, String> {
    parse_jwk_with(v, KeyPolicy::STRICT)
}

/// [`parse_jwk`] under an explicit [`KeyPolicy`].
pub fn parse_jwk_with(v: &Value, policy: KeyPolicy) -> Result<VerifyKey, String> {
    let obj = v.as_object().ok_or("a JWK must be a JSON object")?;
    for name in obj.keys() {
        if PRIVATE_MEMBERS.contains(&name.as_str()) {
            return Err(format!(
                "`{name}` is private key material; publish only public keys"
            ));
        }
        if !PUBLIC_MEMBERS.contains(&name.as_str()) {
            return Err(format!("unknown JWK member `{name}`"));
        }
    }
    let kid = opt_str(obj, "kid")?.ok_or("`kid` is required: tokens select keys by exact kid")?;
    if kid.is_empty() {
        return Err("`kid` must not be empty".into());
    }
    if let Some(u) = opt_str(obj, "use")? {
        if u != "sig" {
            return Err(format!("`use` is \"{u}\"; only \"sig\" keys verify tokens"));
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops
            .as_array()
            .ok_or("`key_ops` must be an array of strings")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Err("`key_ops` does not include \"verify\"".into());
        }
    }
    let kty = opt_str(obj, "kty")?.ok_or("`kty` is required")?;
    let declared_alg = match opt_str(obj, "alg")? {
        None => None,
        Some(a) => Some(
            Alg::from_jose(a)
                .ok_or_else(|| format!("unsupported `alg` \"{a}\" (ES256, EdDSA, RS256)"))?,
        ),
    };
    let (alg, material, spki_der) = match kty {
        "EC" => {
            let crv = opt_str(obj, "crv")?.ok_or("`crv` is required for kty EC")?;
            if crv != "P-256" {
                return Err(format!("unsupported EC curve \"{crv}\" (only P-256)"));
            }
            let x = fixed_b64(obj, "x", 32)?;
            let y = fixed_b64(obj, "y", 32)?;
            let mut sec1 = Vec::with_capacity(65);
            sec1.push(4u8);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| "EC point is not on the P-256 curve".to_string())?;
            (Alg::Es256, KeyMaterial::Es256(vk), der::p256_spki(&sec1))
        }
        "OKP" => {
            let crv = opt_str(obj, "crv")?.ok_or("`crv` is required for kty OKP")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve \"{crv}\" (only Ed25519)"));
            }
            let x = fixed_b64(obj, "x", 32)?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| "invalid Ed25519 public key".to_string())?;
            let pk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| "invalid Ed25519 public key (not a curve point)".to_string())?;
            (Alg::EdDsa, KeyMaterial::Ed25519(pk), der::ed25519_spki(&x))
        }
        "RSA" => {
            let n = strip_zeros(&b64_member(obj, "n")?);
            let e = strip_zeros(&b64_member(obj, "e")?);
            let bits = bit_len(&n);
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(format!(
                    "RSA modulus has {bits} bits; need {RSA_MIN_BITS} to {RSA_MAX_BITS}"
                ));
            }
            let e_val = e.iter().try_fold(0u64, |acc, b| {
                acc.checked_mul(256).map(|a| a | u64::from(*b))
            });
            match e_val {
                Some(v) if v >= policy.min_rsa_exponent && v % 2 == 1 && v < (1u64 << 32) => {}
                _ => {
                    return Err(format!(
                        "RSA exponent must be odd, at least {} and below 2^32",
                        policy.min_rsa_exponent
                    ))
                }
            }
            let pk = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|err| format!("invalid RSA public key: {err}"))?;
            (Alg::Rs256, KeyMaterial::Rs256(pk), der::rsa_spki(&n, &e))
        }
        other => return Err(format!("unsupported `kty` \"{other}\" (EC, OKP, RSA)")),
    };
    if let Some(declared) = declared_alg {
        if declared != alg {
            return Err(format!(
                "`alg` {} does not match kty {kty}",
                declared.as_str()
            ));
        }
    }
    Ok(VerifyKey {
        kid: kid.to_owned(),
        alg,
        material,
        spki_der,
    })
}

fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = opt_str(obj, name)?.ok_or_else(|| format!("`{name}` is required"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("`{name}` is not canonical unpadded base64url"))
}

fn fixed_b64(obj: &Map<String, Value>, name: &str, len: usize) -> Result<Vec<u8>, String> {
    let bytes = b64_member(obj, name)?;
    if bytes.len() != len {
        return Err(format!(
            "`{name}` must decode to {len} bytes, got {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or_default().to_vec()
}

fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len().saturating_sub(1))
            .saturating_mul(8)
            .saturating_add(8usize.saturating_sub(top.leading_zeros() as usize)),
    }
}

/// Where to fetch an issuer's JWKS.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwksUriConfig {
    /// Envoy cluster of the IdP.
    pub cluster: String,
    /// Path of the JWKS document.
    pub path: String,
    /// `:authority` (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Scheduled refresh, in seconds (1..=86400; default 300).
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    /// Least time between two fetches triggered by unknown `kid`s (1..=3600; default 10).
    #[serde(default = "default_min_refetch_s")]
    pub min_refetch_s: u64,
    /// Per-fetch timeout in milliseconds (10..=60000; default 2000).
    #[serde(default = "default_jwks_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_refresh_s() -> u64 {
    300
}
fn default_min_refetch_s() -> u64 {
    10
}
fn default_jwks_timeout_ms() -> u64 {
    2000
}

/// An inline JSON Web Key Set.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// Public JWKs (EC P-256, OKP Ed25519, RSA 2048..4096 bits).
    pub keys: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EC: (&str, &str) = (
        "KSexBRK64-3c_kZ4KBKLrSkDJpkZ9whgacjE32xzKDg",
        "x3h5ZOqsAOWSH7FJimD0YGdms9loUAFVjRqXTnNBUT4",
    );

    #[test]
    fn remote_jwks_keeps_usable_keys_and_names_the_rest() {
        let ec = |kid: &str| json!({"kty":"EC","crv":"P-256","kid":kid,"x":EC.0,"y":EC.1});
        let doc = json!({"keys": [
            ec("a"),
            {"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":EC.0,"y":EC.1},
            {"kty":"oct","kid":"h","k":"c2VjcmV0"},
            ec("a"),
            {"kty":"EC","crv":"P-256","x":EC.0,"y":EC.1},
        ]});
        let u = usable_keys(doc.to_string().as_bytes(), &[Alg::Es256]).unwrap();
        assert_eq!(u.keys.len(), 1);
        assert_eq!(u.keys[0].0.kid, "a");
        assert_eq!(u.skipped.len(), 4, "{:?}", u.skipped);
        assert!(u.skipped[0].contains("use=enc") && u.skipped[2].contains("duplicate kid"));
        // An issuer that only allows EdDSA can use none of them: keep the last good set.
        let e = usable_keys(doc.to_string().as_bytes(), &[Alg::EdDsa]).unwrap_err();
        assert!(e.contains("no usable key"), "{e}");
        assert!(usable_keys(b"{\"keys\": {}}", &[Alg::Es256]).is_err());
        assert!(usable_keys(b"[", &[Alg::Es256]).is_err());
    }

    #[test]
    fn accepts_a_valid_p256_key_and_builds_spki() {
        let k = parse_jwk(&json!({"kty":"EC","crv":"P-256","kid":"a","x":EC.0,"y":EC.1})).unwrap();
        assert_eq!(k.alg, Alg::Es256);
        assert_eq!(k.spki_der.len(), 91);
    }

    #[test]
    fn rejects_point_off_curve_and_inconsistent_alg() {
        let bad_y = "x3h5ZOqsAOWSH7FJimD0YGdms9loUAFVjRqXTnNBUT8";
        let e =
            parse_jwk(&json!({"kty":"EC","crv":"P-256","kid":"a","x":EC.0,"y":bad_y})).unwrap_err();
        assert!(e.contains("not on the P-256 curve"), "{e}");
        let e =
            parse_jwk(&json!({"kty":"EC","crv":"P-256","kid":"a","alg":"RS256","x":EC.0,"y":EC.1}))
                .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e =
            parse_jwk(&json!({"kty":"EC","crv":"P-384","kid":"a","x":EC.0,"y":EC.1})).unwrap_err();
        assert!(e.contains("P-384"), "{e}");
    }

    #[test]
    fn rejects_private_material_missing_kid_and_unknown_members() {
        assert!(
            parse_jwk(&json!({"kty":"EC","crv":"P-256","kid":"a","x":EC.0,"y":EC.1,"d":"AA"}))
                .unwrap_err()
                .contains("private")
        );
        assert!(
            parse_jwk(&json!({"kty":"EC","crv":"P-256","x":EC.0,"y":EC.1}))
                .unwrap_err()
                .contains("kid")
        );
        assert!(
            parse_jwk(&json!({"kty":"EC","crv":"P-256","kid":"a","x":EC.0,"y":EC.1,"foo":1}))
                .unwrap_err()
                .contains("foo")
        );
        assert!(parse_jwk(&json!({"kty":"oct","kid":"a"}))
            .unwrap_err()
            .contains("oct"));
    }

    #[test]
    fn rejects_short_rsa_modulus_and_small_exponent() {
        let n1024 = URL_SAFE_NO_PAD.encode([0xc3u8; 128]);
        let e = parse_jwk(&json!({"kty":"RSA","kid":"r","n":n1024,"e":"AQAB"})).unwrap_err();
        assert!(e.contains("1024 bits"), "{e}");
        let n2048 = URL_SAFE_NO_PAD.encode([0xc3u8; 256]);
        let e = parse_jwk(&json!({"kty":"RSA","kid":"r","n":n2048,"e":"Aw"})).unwrap_err();
        assert!(e.contains("exponent"), "{e}");
    }

    /// The SubjectPublicKeyInfo of each demo key, as BoringSSL imports it on the host backend
    /// (pinned by SHA-256; the encoding is DER, so one key has exactly one).
    #[test]
    fn spki_of_each_key_type_is_pinned() {
        use sha2::Digest;
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let got: Vec<(String, usize, String)> = keys.public_jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|jwk| {
                let k = parse_jwk(jwk).unwrap();
                let digest = hex::encode(sha2::Sha256::digest(&k.spki_der));
                (k.alg.as_str().to_owned(), k.spki_der.len(), digest)
            })
            .collect();
        let want = [
            (
                "ES256",
                91,
                "7497d813dcec1d500057847b901d888c9952c969407e1658056233b69f297938",
            ),
            (
                "EdDSA",
                44,
                "384d9052c55c88913338739045f2dbfbd9c8654a68a89b5790c96ed25a733f6a",
            ),
            (
                "RS256",
                294,
                "7837694cec3227af60f71da1597f67021e9cfb38767780f665b4729cd96ea9cf",
            ),
        ];
        let want: Vec<(String, usize, String)> = want
            .iter()
            .map(|(a, n, d)| ((*a).to_owned(), *n, (*d).to_owned()))
            .collect();
        assert_eq!(got, want);
    }
}

/// The keys of a fetched JWKS this issuer can use, each with its JSON, and what was skipped.
#[derive(Debug)]
pub struct UsableKeys {
    pub keys: Vec<(VerifyKey, serde_json::Value)>,
    pub skipped: Vec<String>,
}

/// The usable keys of a JWKS document, each with its JSON; unusable entries (encryption
/// keys, unsupported types, algorithms the issuer does not allow) are skipped and named.
pub fn usable_keys(body: &[u8], algorithms: &[Alg]) -> Result<UsableKeys, String> {
    let doc =
        crate::json::parse_strict(body, 8).map_err(|e| format!("JWKS does not parse: {e}"))?;
    let Some(serde_json::Value::Array(keys)) = doc.get("keys") else {
        return Err("JWKS has no `keys` array".into());
    };
    let mut out: Vec<(VerifyKey, serde_json::Value)> = Vec::new();
    let mut skipped = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if k.get("use").and_then(serde_json::Value::as_str) == Some("enc") {
            skipped.push(format!("keys[{i}]: use=enc"));
            continue;
        }
        match parse_jwk(k) {
            Err(e) => skipped.push(format!("keys[{i}]: {e}")),
            Ok(key) if !algorithms.contains(&key.alg) => {
                skipped.push(format!("keys[{i}]: alg {} not allowed", key.alg.as_str()));
            }
            Ok(key) if out.iter().any(|(x, _)| x.kid == key.kid) => {
                skipped.push(format!("keys[{i}]: duplicate kid \"{}\"", key.kid));
            }
            Ok(key) => out.push((key, k.clone())),
        }
    }
    if out.is_empty() {
        return Err(format!("JWKS has no usable key ({})", skipped.join("; ")));
    }
    Ok(UsableKeys { keys: out, skipped })
}
