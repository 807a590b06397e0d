//! JWK SHA-256 thumbprints (RFC 7638) and the public key a DPoP proof carries.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::keys::{parse_jwk, VerifyKey};
use crate::reason::Reason;

/// The members a thumbprint covers, per key type, in lexicographic order (RFC 7638 §3.2,
/// RFC 8037 §2 for OKP).
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "RSA" => Some(&["e", "kty", "n"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        _ => None,
    }
}

/// SHA-256 of the JWK's required members serialized as RFC 7638 §3.3 says (no whitespace,
/// lexicographic order, the received strings). `None`: a key type we do not thumbprint or
/// a required member missing or not a string.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<[u8; 32]> {
    let kty = jwk.get("kty")?.as_str()?;
    let mut canonical = String::from("{");
    for (i, name) in required_members(kty)?.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        // serde_json escapes only what JSON requires; the members are base64url and
        // registered names, so this is the exact text RFC 7638 hashes.
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(value).to_string());
    }
    canonical.push('}');
    Some(Sha256::digest(canonical.as_bytes()).into())
}

/// Members a proof's `jwk` may carry besides the key itself (WebCrypto exports add
/// `ext` and `key_ops`).
const PROOF_JWK_EXTRA: &[&str] = &["alg", "kid", "use", "key_ops", "ext"];

/// The public key of a DPoP proof's `jwk` header and its thumbprint. Private or symmetric
/// keys, certificates and URLs (`x5c`, `x5u`, ...), unknown members and keys the token
/// rules would refuse (curves, RSA sizes, points off the curve) are `dpop.jwk`.
pub fn proof_key(jwk: &Value) -> Result<(VerifyKey, [u8; 32]), Reason> {
    let obj = jwk.as_object().ok_or(Reason::DpopJwk)?;
    let kty = obj
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(Reason::DpopJwk)?;
    let required = required_members(kty).ok_or(Reason::DpopJwk)?;
    if obj
        .keys()
        .any(|k| !required.contains(&k.as_str()) && !PROOF_JWK_EXTRA.contains(&k.as_str()))
    {
        return Err(Reason::DpopJwk);
    }
    // RSA: one key, one thumbprint: no leading zero octets in `n` or `e`.
    if kty == "RSA" {
        for name in ["n", "e"] {
            let text = obj
                .get(name)
                .and_then(Value::as_str)
                .ok_or(Reason::DpopJwk)?;
            let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| Reason::DpopJwk)?;
            if bytes.first() == Some(&0) {
                return Err(Reason::DpopJwk);
            }
        }
    }
    let jkt = jwk_thumbprint(obj).ok_or(Reason::DpopJwk)?;
    // The token rules' key parser, without `ext` and with a `kid` (proof keys need none).
    let mut key = obj.clone();
    key.remove("ext");
    key.entry("kid").or_insert_with(|| Value::from("dpop"));
    let key = parse_jwk(&Value::Object(key)).map_err(|_| Reason::DpopJwk)?;
    Ok((key, jkt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(d: [u8; 32]) -> String {
        URL_SAFE_NO_PAD.encode(d)
    }

    #[test]
    fn thumbprints_match_the_rfcs_examples() {
        // RFC 7638 §3.1.
        let rsa = json!({"kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        let t = jwk_thumbprint(rsa.as_object().unwrap()).unwrap();
        assert_eq!(b64(t), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(t[..4], [55, 54, 203, 177]);
        // RFC 8037 A.3.
        let okp = json!({"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            b64(jwk_thumbprint(okp.as_object().unwrap()).unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        // RFC 9449 Figure 13's proof key, the `cnf.jkt` of its Figure 9.
        let ec = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
        assert_eq!(
            b64(jwk_thumbprint(ec.as_object().unwrap()).unwrap()),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn proof_keys_are_public_asymmetric_keys_only() {
        let ec = json!({"kty": "EC", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "crv": "P-256"});
        let (key, jkt) = proof_key(&ec).unwrap();
        assert_eq!(key.alg, crate::keys::Alg::Es256);
        assert_eq!(b64(jkt), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        let mut webcrypto = ec.clone();
        webcrypto["ext"] = json!(true);
        webcrypto["key_ops"] = json!(["verify"]);
        assert!(proof_key(&webcrypto).is_ok());
        for (member, value) in [
            ("d", json!("AAAA")),
            ("x5c", json!(["MIIB"])),
            ("x5u", json!("https://x")),
            ("jku", json!("https://x")),
            ("other", json!(1)),
        ] {
            let mut bad = ec.clone();
            bad[member] = value;
            assert_eq!(proof_key(&bad).unwrap_err(), Reason::DpopJwk, "{member}");
        }
        for bad in [
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                   "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDB"}),
            json!({"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                   "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA", "alg": "RS256"}),
            json!({"kty": "RSA", "n": "AA", "e": "AQAB"}),
            json!("not an object"),
        ] {
            assert_eq!(proof_key(&bad).unwrap_err(), Reason::DpopJwk, "{bad}");
        }
    }
}
