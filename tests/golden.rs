//! Replays test-harness/golden/cases.json through the native pipeline (pure-Rust backend).
//! The Envoy harness replays the same file through the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use serde_json::Value;

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn golden_cases_native() {
    let doc = load("test-harness/golden/cases.json");
    let keys = DevKeys::from_private_json(&load("test-harness/keys/demo-private.json")).unwrap();
    let cfg_bytes = std::fs::read(doc["config"].as_str().unwrap()).unwrap();
    let now = 1_800_000_000i64;
    let mut failures = Vec::new();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        // A fresh engine per case: no cache carry-over between cases.
        let cfg = Config::from_json(&cfg_bytes).unwrap();
        let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
        engine.start_feed_clock(now as f64);
        let token = case.get("token").map(|r| {
            let recipe: Recipe = serde_json::from_value(r.clone()).unwrap();
            mint(&keys, &recipe, now).unwrap()
        });
        let auth = match (case.get("authorization").and_then(Value::as_str), &token) {
            (Some(tpl), t) => Some(tpl.replace("{token}", t.as_deref().unwrap_or(""))),
            (None, Some(t)) => Some(format!("Bearer {t}")),
            (None, None) => None,
        };
        let request = case.get("request");
        let field = |name: &str, default: &str| {
            request
                .and_then(|r| r.get(name))
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_owned()
        };
        let req = Request {
            client: None,
            method: field("method", "GET"),
            path: field("path", "/tickets"),
            host: "api.agent-iam.test".into(),
            authorization: auth.into_iter().map(String::into_bytes).collect(),
            headers: Vec::new(),
        };
        let got = engine.evaluate(&req, now as f64).to_json();
        let want = &case["expect"];
        for key in ["decision", "status", "reason", "agent", "route"] {
            if let Some(w) = want.get(key) {
                if &got[key] != w {
                    failures.push(format!("{name}: {key} = {} want {w}", got[key]));
                }
            }
        }
        if let Some(w) = want.get("policy_reason") {
            if &got["policy"]["reason"] != w {
                failures.push(format!(
                    "{name}: policy reason = {} want {w}",
                    got["policy"]["reason"]
                ));
            }
        }
        if let Some(w) = want.get("effective_scopes") {
            if &got["scopes"]["effective"] != w {
                failures.push(format!(
                    "{name}: effective scopes = {} want {w}",
                    got["scopes"]["effective"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn cache_hit_still_rechecks_expiry() {
    let keys = DevKeys::from_private_json(&load("test-harness/keys/demo-private.json")).unwrap();
    let cfg = Config::from_json(&std::fs::read("envoy/plugin.json").unwrap()).unwrap();
    let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
    let now = 1_800_000_000i64;
    engine.start_feed_clock(now as f64);
    let recipe: Recipe = serde_json::from_str(r#"{"exp":60}"#).unwrap();
    let token = mint(&keys, &recipe, now).unwrap();
    let req = Request {
        client: None,
        method: "GET".into(),
        path: "/tickets".into(),
        authorization: vec![format!("Bearer {token}").into_bytes()],
        ..Request::default()
    };
    let first = engine.evaluate(&req, now as f64).to_json();
    let second = engine.evaluate(&req, now as f64 + 1.0).to_json();
    assert_eq!(
        (
            first["decision"].as_str(),
            first["token"]["cached"].as_bool()
        ),
        (Some("allow"), Some(false))
    );
    assert_eq!(
        (
            second["decision"].as_str(),
            second["token"]["cached"].as_bool()
        ),
        (Some("allow"), Some(true))
    );
    engine.confirm_registry((now + 91) as f64);
    let later = engine.evaluate(&req, (now + 60 + 31) as f64).to_json();
    assert_eq!(later["reason"], "token.expired");
}
