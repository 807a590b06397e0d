//! Project Wycheproof vectors through the pure-Rust backend (the host backend runs the same
//! files inside Envoy: test-harness/e2e/test_wycheproof_envoy.py).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use agent_iam::crypto::{PureRust, SignatureBackend};
use agent_iam::keys::{parse_jwk, parse_jwk_with, KeyPolicy};
use agent_iam::token::{check_signature, parse_compact, select_key};
use serde_json::Value;

/// Vendored copy of the vectors (Apache-2.0, see NOTICE there).
const DIR: &str = "test-harness/wycheproof";

fn load(name: &str) -> Value {
    let path = std::env::var("WYCHEPROOF_DIR").unwrap_or_else(|_| DIR.into());
    let text = std::fs::read_to_string(format!("{path}/{name}"))
        .unwrap_or_else(|e| panic!("{path}/{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Runs a raw (key, msg, sig) file; returns (tests run, failures).
fn raw_file(name: &str) -> (usize, Vec<String>) {
    let doc = load(name);
    let mut run = 0;
    let mut failures = Vec::new();
    for group in doc["groups"].as_array().unwrap() {
        let key = parse_jwk_with(&with_kid(&group["key"]["jwk"]), KeyPolicy::VECTORS).unwrap();
        for t in group["tests"].as_array().unwrap() {
            run += 1;
            let msg = hex::decode(t["msg"].as_str().unwrap()).unwrap();
            let sig = hex::decode(t["sig"].as_str().unwrap()).unwrap();
            let got = PureRust.verify(&key, &msg, &sig).unwrap();
            match t["result"].as_str().unwrap() {
                "valid" if !got => failures.push(format!("{name} tc{}: valid rejected", t["tcId"])),
                "invalid" if got => {
                    failures.push(format!("{name} tc{}: invalid accepted", t["tcId"]))
                }
                _ => {}
            }
        }
    }
    (run, failures)
}

fn with_kid(jwk: &Value) -> Value {
    let mut k = jwk.clone();
    if k.get("kid").is_none() {
        k["kid"] = "wycheproof".into();
    }
    k
}

#[test]
fn ecdsa_p256_sha256_p1363() {
    let (run, failures) = raw_file("ecdsa_p256_sha256_p1363.json");
    assert_eq!(run, 252);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn ed25519() {
    let (run, failures) = raw_file("ed25519.json");
    assert_eq!(run, 150);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rsa_pkcs1v15_2048_sha256() {
    let (run, failures) = raw_file("rsa_pkcs1v15_2048_sha256.json");
    assert_eq!(run, 259);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rsa_small_exponent_keys_are_refused_by_configuration() {
    // Two Wycheproof groups use e = 3; the vector policy admits them, configurations do not.
    let doc = load("rsa_pkcs1v15_2048_sha256.json");
    let refused = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| parse_jwk(&with_kid(&g["key"]["jwk"])).is_err())
        .count();
    assert_eq!(refused, 2);
}

#[test]
fn jws_es256_rs256() {
    let doc = load("jws_es256_rs256.json");
    let mut run = 0;
    let mut failures = Vec::new();
    for group in doc["groups"].as_array().unwrap() {
        let key = parse_jwk(&group["public_jwk"]).unwrap();
        for t in group["tests"].as_array().unwrap() {
            run += 1;
            let got = match t["jws"].as_str() {
                // JSON serialization is not compact JWS: never accepted.
                None => false,
                Some(jws) => parse_compact(jws, 65_536)
                    .and_then(|p| {
                        let k = select_key(&p, std::slice::from_ref(&key), &[key.alg])?;
                        check_signature(&p, k, &PureRust)
                    })
                    .is_ok(),
            };
            let want = t["result"].as_str().unwrap() == "valid";
            if got != want {
                failures.push(format!(
                    "{} tc{}: got {got} want {want} ({})",
                    group["comment"], t["tcId"], t["comment"]
                ));
            }
        }
    }
    assert_eq!(run, 272);
    assert!(failures.is_empty(), "{failures:#?}");
}
