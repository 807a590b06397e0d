//! One DPoP proof (RFC 9449 §4), checked as strictly as an access token: a compact JWS
//! with strict base64url and JSON (no duplicate members), `typ` `dpop+jwt`, an allowed
//! asymmetric `alg` that is the embedded public key's, a valid signature, and the claims
//! bound to this request: `htm`, `htu`, `iat` in its window and `ath` of this token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{normalize_htu, proof_key};
use crate::crypto::SignatureBackend;
use crate::json::parse_strict;
use crate::keys::Alg;
use crate::reason::Reason;
use crate::target::Semicolons;

/// Nesting allowed in a proof's header (`jwk` and its `key_ops`) and claims.
const MAX_DEPTH: usize = 4;
/// Longest `jti` accepted (RFC 9449 §11.1: refuse unnecessarily large ones).
const MAX_JTI_BYTES: usize = 256;

/// Header members that would change how the proof is processed or name another key.
const FORBIDDEN_HEADER: &[&str] = &[
    "crit", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc",
];

/// The configuration's rules for proofs.
#[derive(Debug, Clone, Copy)]
pub struct ProofRules<'a> {
    pub algorithms: &'a [Alg],
    pub max_age_s: u64,
    pub clock_skew_s: u64,
    pub max_bytes: usize,
    pub semicolons: Semicolons,
}

/// What the proof must be bound to: this request and this access token.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request's URI as [`super::request_htu`] builds it.
    pub htu: &'a str,
    /// SHA-256 of the access token text (what `ath` hashes).
    pub token_sha256: &'a [u8; 32],
    /// UNIX seconds.
    pub now: f64,
}

/// What a valid proof established (for the replay check, the policy and the audit trail).
#[derive(Debug, Clone, PartialEq)]
pub struct ProofFacts {
    /// The RFC 7638 thumbprint of the proof's key: the caller compares it with `cnf.jkt`.
    pub jkt: [u8; 32],
    pub jti: String,
    pub htm: String,
    pub htu: String,
    pub iat: f64,
}

fn b64(segment: &str) -> Result<Vec<u8>, Reason> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::DpopProofMalformed)
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, Reason> {
    match parse_strict(bytes, MAX_DEPTH) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Reason::DpopProofMalformed),
    }
}

fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, Reason> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Reason::DpopClaims),
    }
}

/// Checks `proof` (the `DPoP` header's value) against `rules` for `req`.
pub fn verify_proof(
    proof: &str,
    rules: &ProofRules<'_>,
    req: &ProofRequest<'_>,
    backend: &dyn SignatureBackend,
) -> Result<ProofFacts, Reason> {
    if proof.len() > rules.max_bytes {
        return Err(Reason::DpopProofMalformed);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::DpopProofMalformed);
    };
    if h.is_empty() || s.is_empty() {
        return Err(Reason::DpopProofMalformed);
    }
    let header = object(&b64(h)?)?;
    if header
        .keys()
        .any(|k| FORBIDDEN_HEADER.contains(&k.as_str()))
    {
        return Err(Reason::DpopProofMalformed);
    }
    match header.get("typ") {
        Some(Value::String(t)) if crate::token::normalize_typ(t) == "dpop+jwt" => {}
        _ => return Err(Reason::DpopTyp),
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::from_jose(a).ok_or(Reason::DpopAlg)?,
        _ => return Err(Reason::DpopAlg),
    };
    if !rules.algorithms.contains(&alg) {
        return Err(Reason::DpopAlg);
    }
    let (key, jkt) = proof_key(header.get("jwk").ok_or(Reason::DpopJwk)?)?;
    if key.alg != alg {
        return Err(Reason::DpopAlg);
    }
    let payload = b64(p)?;
    let signature = b64(s)?;
    let signing_input = proof
        .get(..h.len().saturating_add(1).saturating_add(p.len()))
        .ok_or(Reason::DpopProofMalformed)?;
    match backend.verify(&key, signing_input.as_bytes(), &signature) {
        Ok(true) => {}
        Ok(false) => return Err(Reason::DpopSignature),
        Err(_) => return Err(Reason::InternalError),
    }
    let claims = object(&payload)?;
    let jti = string(&claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(Reason::DpopClaims);
    }
    let htm = string(&claims, "htm")?;
    let htu = string(&claims, "htu")?;
    // A proof without `ath` is one for no token (a token endpoint's): not this one's.
    let ath = string(&claims, "ath").map_err(|_| Reason::DpopAth)?;
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .ok_or(Reason::DpopClaims)?,
        _ => return Err(Reason::DpopClaims),
    };
    if htm != req.method {
        return Err(Reason::DpopHtm);
    }
    if normalize_htu(htu, rules.semicolons).as_deref() != Some(req.htu) {
        return Err(Reason::DpopHtu);
    }
    let skew = rules.clock_skew_s as f64;
    if iat > req.now + skew {
        return Err(Reason::DpopIatFuture);
    }
    if iat < req.now - rules.max_age_s as f64 - skew {
        return Err(Reason::DpopIatStale);
    }
    if ath != URL_SAFE_NO_PAD.encode(req.token_sha256) {
        return Err(Reason::DpopAth);
    }
    Ok(ProofFacts {
        jkt,
        jti: jti.to_owned(),
        htm: htm.to_owned(),
        htu: htu.to_owned(),
        iat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::PureRust;
    use sha2::{Digest, Sha256};

    /// RFC 9449 Figure 13: a resource-server proof, really signed (ES256), for the access
    /// token of its Figure 9.
    const FIG13: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
    const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    const IAT: f64 = 1_562_262_618.0;
    const HTU: &str = "https://resource.example.org/protectedresource";

    fn rules() -> ProofRules<'static> {
        ProofRules {
            algorithms: &[Alg::Es256, Alg::EdDsa, Alg::Rs256],
            max_age_s: 60,
            clock_skew_s: 30,
            max_bytes: 8192,
            semicolons: Semicolons::Reject,
        }
    }

    fn check(
        proof: &str,
        method: &str,
        htu: &str,
        token: &str,
        now: f64,
    ) -> Result<ProofFacts, Reason> {
        let sha: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let req = ProofRequest {
            method,
            htu,
            token_sha256: &sha,
            now,
        };
        verify_proof(proof, &rules(), &req, &PureRust)
    }

    #[test]
    fn the_rfcs_own_proof_verifies_and_binds_its_request_and_token() {
        let facts = check(FIG13, "GET", HTU, TOKEN, IAT).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(facts.jkt),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
        assert_eq!(
            (facts.jti.as_str(), facts.htm.as_str()),
            ("e1j3V_bKic8-LAEB", "GET")
        );
        assert_eq!(check(FIG13, "POST", HTU, TOKEN, IAT), Err(Reason::DpopHtm));
        assert_eq!(
            check(
                FIG13,
                "GET",
                "https://resource.example.org/other",
                TOKEN,
                IAT
            ),
            Err(Reason::DpopHtu)
        );
        assert_eq!(
            check(FIG13, "GET", HTU, "another token", IAT),
            Err(Reason::DpopAth)
        );
        assert_eq!(
            check(FIG13, "GET", HTU, TOKEN, IAT + 91.0),
            Err(Reason::DpopIatStale)
        );
        assert!(check(FIG13, "GET", HTU, TOKEN, IAT + 89.0).is_ok());
        assert_eq!(
            check(FIG13, "GET", HTU, TOKEN, IAT - 31.0),
            Err(Reason::DpopIatFuture)
        );
    }

    #[test]
    fn a_proof_is_a_strict_signed_dpop_jwt() {
        let (h, rest) = FIG13.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut hv = header.clone();
            edit(&mut hv);
            format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode(hv.to_string()))
        };
        // Changed header members: the signature no longer covers it, but the rule that names
        // the problem answers first.
        assert_eq!(
            check(&with(&|h| h["typ"] = "JWT".into()), "GET", HTU, TOKEN, IAT),
            Err(Reason::DpopTyp)
        );
        for alg in ["none", "HS256", "ES384", "RS256"] {
            assert_eq!(
                check(&with(&|h| h["alg"] = alg.into()), "GET", HTU, TOKEN, IAT),
                Err(Reason::DpopAlg),
                "{alg}"
            );
        }
        assert_eq!(
            check(
                &with(&|h| h["jwk"]["d"] = "AAAA".into()),
                "GET",
                HTU,
                TOKEN,
                IAT
            ),
            Err(Reason::DpopJwk)
        );
        assert_eq!(
            check(
                &with(&|h| h["jku"] = "https://evil.test".into()),
                "GET",
                HTU,
                TOKEN,
                IAT
            ),
            Err(Reason::DpopProofMalformed)
        );
        assert_eq!(
            check(&with(&|h| h["kid"] = "k".into()), "GET", HTU, TOKEN, IAT),
            Err(Reason::DpopSignature)
        );
        let other_key = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            check(
                &with(&|h| h["jwk"] = other_key.clone()),
                "GET",
                HTU,
                TOKEN,
                IAT
            ),
            Err(Reason::DpopAlg)
        );
        // Shape: segments, padding, duplicate members, size.
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.x"),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}."),
            "a.b.c".to_owned(),
            format!(
                "{}.{p}.{s}",
                URL_SAFE_NO_PAD.encode(br#"{"typ":"dpop+jwt","typ":"dpop+jwt"}"#)
            ),
            "x".repeat(9000),
        ] {
            assert_eq!(
                check(&bad, "GET", HTU, TOKEN, IAT),
                Err(Reason::DpopProofMalformed),
                "{bad:.40}"
            );
        }
        // A tampered signature.
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[0] ^= 1;
        let tampered = format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(
            check(&tampered, "GET", HTU, TOKEN, IAT),
            Err(Reason::DpopSignature)
        );
    }
}
