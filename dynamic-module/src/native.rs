//! Native signature verification for the dynamic module: ES256 and RS256 through `ring`
//! (BoringSSL's P-256 and RSA code, with its assembly), EdDSA through ed25519-dalek's
//! strict verification (already native code here, and the same RFC 8032 rules as the Wasm
//! build: a second Ed25519 implementation could disagree on edge cases such as small-order
//! points, and the two builds must decide alike).
//!
//! ring's limits are wider than the key policy's: RSA moduli of 2048 to 8192 bits and odd
//! exponents from 3 to 2^33 - 1 (the configuration admits 2048 to 4096 bits, 65,537 to
//! 2^32); P-256 points are checked on import by both. A key ring cannot import never
//! verifies: its tokens are denied (`token.bad_signature`), never accepted.

use agent_iam::crypto::{CryptoError, PureRust, SignatureBackend};
use agent_iam::keys::{Alg, VerifyKey};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};

/// `signature_backend: host` (and `auto`) in the dynamic module.
#[derive(Debug, Default, Clone, Copy)]
pub struct Native;

impl SignatureBackend for Native {
    fn verify(
        &self,
        key: &VerifyKey,
        signing_input: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError> {
        let algorithm: &'static dyn ring::signature::VerificationAlgorithm = match key.alg {
            Alg::EdDsa => return PureRust.verify(key, signing_input, sig),
            // The JWS form (r || s, 64 bytes); ring refuses r or s outside [1, n - 1].
            Alg::Es256 => &ECDSA_P256_SHA256_FIXED,
            // ring refuses a signature whose length is not the modulus's.
            Alg::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
        };
        let public = key
            .public_key_bytes()
            .ok_or_else(|| CryptoError("key encoding".into()))?;
        Ok(UnparsedPublicKey::new(algorithm, public)
            .verify(signing_input, sig)
            .is_ok())
    }

    fn name_for(&self, alg: Alg) -> &'static str {
        match alg {
            Alg::EdDsa => "native-dalek",
            Alg::Es256 | Alg::Rs256 => "native-ring",
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    //! Project Wycheproof's vectors through ring (the e2e suite replays them inside Envoy
    //! too), and agreement with the pure-Rust backend on every one.
    use super::*;
    use agent_iam::keys::{parse_jwk_with, KeyPolicy};
    use serde_json::Value;

    fn load(name: &str) -> Value {
        let path = format!(
            "{}/../test-harness/wycheproof/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// (tests run, failures) of a raw (key, msg, sig) file through `Native`.
    fn raw_file(name: &str) -> (usize, Vec<String>) {
        let doc = load(name);
        let mut run = 0;
        let mut failures = Vec::new();
        for group in doc["groups"].as_array().unwrap() {
            let mut jwk = group["key"]["jwk"].clone();
            if jwk.get("kid").is_none() {
                jwk["kid"] = "wycheproof".into();
            }
            let key = parse_jwk_with(&jwk, KeyPolicy::VECTORS).unwrap();
            for t in group["tests"].as_array().unwrap() {
                run += 1;
                let msg = hex::decode(t["msg"].as_str().unwrap()).unwrap();
                let sig = hex::decode(t["sig"].as_str().unwrap()).unwrap();
                let got = Native.verify(&key, &msg, &sig).unwrap();
                let pure = PureRust.verify(&key, &msg, &sig).unwrap();
                let id = &t["tcId"];
                match t["result"].as_str().unwrap() {
                    "valid" if !got => failures.push(format!("{name} tc{id}: valid rejected")),
                    "invalid" if got => failures.push(format!("{name} tc{id}: invalid accepted")),
                    _ => {}
                }
                if got != pure {
                    failures.push(format!("{name} tc{id}: native {got}, pure-rust {pure}"));
                }
            }
        }
        (run, failures)
    }

    #[test]
    fn ecdsa_p256_sha256_p1363() {
        let (run, failures) = raw_file("ecdsa_p256_sha256_p1363.json");
        assert_eq!(run, 252);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn rsa_pkcs1v15_2048_sha256() {
        let (run, failures) = raw_file("rsa_pkcs1v15_2048_sha256.json");
        assert_eq!(run, 259);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn ed25519() {
        let (run, failures) = raw_file("ed25519.json");
        assert_eq!(run, 150);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn jws_es256_rs256() {
        use agent_iam::token::{check_signature, parse_compact, select_key};
        let doc = load("jws_es256_rs256.json");
        let mut run = 0;
        let mut failures = Vec::new();
        for group in doc["groups"].as_array().unwrap() {
            let key = parse_jwk_with(&group["public_jwk"], KeyPolicy::VECTORS).unwrap();
            for t in group["tests"].as_array().unwrap() {
                run += 1;
                let decide = |backend: &dyn SignatureBackend| match t["jws"].as_str() {
                    // JSON serialization is not compact JWS: never accepted.
                    None => false,
                    Some(jws) => parse_compact(jws, 65_536)
                        .and_then(|p| {
                            let k = select_key(&p, std::slice::from_ref(&key), &[key.alg])?;
                            check_signature(&p, k, backend)
                        })
                        .is_ok(),
                };
                let (got, pure) = (decide(&Native), decide(&PureRust));
                let want = t["result"].as_str().unwrap() == "valid";
                if got != want || got != pure {
                    failures.push(format!(
                        "tc{}: native {got}, pure {pure}, want {want}",
                        t["tcId"]
                    ));
                }
            }
        }
        assert_eq!(run, 272);
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn names_say_which_library_verifies() {
        assert_eq!(Native.name_for(Alg::Es256), "native-ring");
        assert_eq!(Native.name_for(Alg::Rs256), "native-ring");
        assert_eq!(Native.name_for(Alg::EdDsa), "native-dalek");
    }
}
