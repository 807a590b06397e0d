//! The configuration as a whole: defaults, unknown keys, every problem reported.

use super::*;
use crate::keys::Alg;
use serde_json::json;
use serde_json::Value;

fn ec_key() -> Value {
    json!({"kty":"EC","crv":"P-256","kid":"k1",
           "x":"KSexBRK64-3c_kZ4KBKLrSkDJpkZ9whgacjE32xzKDg","y":"x3h5ZOqsAOWSH7FJimD0YGdms9loUAFVjRqXTnNBUT4"})
}

fn base() -> Value {
    json!({"issuers":[{"issuer":"https://idp.test","audiences":["api"],"jwks":{"keys":[ec_key()]},"algorithms":["ES256"]}]})
}

fn err(v: Value) -> String {
    Config::from_json(v.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_are_the_safe_ones() {
    let c = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(
        (
            c.clock_skew_s,
            c.max_token_lifetime_s,
            c.max_delegation_depth
        ),
        (30, 600, 4)
    );
    assert_eq!(c.issuers[0].accepted_types, vec!["at+jwt"]);
    assert_eq!(c.signature_backend, BackendChoice::Auto);
    assert_eq!(c.headers.agent, "x-agent-id");
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let mut v = base();
    v["issuers"][0]["audience"] = json!("typo");
    let e = err(v);
    assert!(e.contains("$.issuers[0]") && e.contains("audience"), "{e}");
    let mut v = base();
    v["clock_skew"] = json!(5);
    assert!(err(v).contains("unknown field `clock_skew`"));
}

#[test]
fn bad_values_are_all_reported() {
    let mut v = base();
    v["clock_skew_s"] = json!(3600);
    v["max_token_lifetime_s"] = json!(0);
    v["issuers"][0]["audiences"] = json!([]);
    v["issuers"][0]["jwks"]["keys"][0]["x"] = json!("AAAA");
    let e = err(v);
    for needle in [
        "$.clock_skew_s",
        "$.max_token_lifetime_s",
        "$.issuers[0].audiences",
        "$.issuers[0].jwks.keys[0]",
    ] {
        assert!(e.contains(needle), "{needle} missing in {e}");
    }
}

#[test]
fn exactly_one_key_source_and_a_checked_jwks_uri() {
    let mut v = base();
    v["issuers"][0]["jwks_uri"] = json!({"cluster": "idp", "path": "/jwks.json"});
    assert!(err(v.clone()).contains("exactly one of `jwks` or `jwks_uri`"));
    v["issuers"][0].as_object_mut().unwrap().remove("jwks");
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert!(c.issuers[0].keys.is_empty() && c.issuers[0].remote.is_some());
    v["issuers"][0]["jwks_uri"] =
        json!({"cluster": "", "path": "jwks", "refresh_s": 0, "min_refetch_s": 0});
    let e = err(v.clone());
    for p in [
        "jwks_uri.cluster",
        "jwks_uri.path",
        "jwks_uri.refresh_s",
        "jwks_uri.min_refetch_s",
    ] {
        assert!(e.contains(&format!("$.issuers[0].{p}")), "{p}: {e}");
    }
    v["issuers"][0].as_object_mut().unwrap().remove("jwks_uri");
    assert!(err(v).contains("exactly one of"));
}

#[test]
fn wrong_types_and_duplicates_are_errors() {
    let mut v = base();
    v["clock_skew_s"] = json!("30");
    assert!(err(v).contains("$.clock_skew_s"));
    let mut v = base();
    v["issuers"][0]["algorithms"] = json!(["HS256"]);
    assert!(err(v).contains("$.issuers[0].algorithms[0]"));
    let dup = r#"{"issuers":[],"issuers":[]}"#;
    assert!(Config::from_json(dup.as_bytes())
        .unwrap_err()
        .to_string()
        .contains("duplicate member"));
    let mut v = base();
    v["issuers"][0]["jwks"]["keys"] = json!([ec_key(), ec_key()]);
    assert!(err(v).contains("duplicate kid"));
    let mut v = base();
    v["issuers"][0]["algorithms"] = json!(["RS256"]);
    assert!(err(v).contains("not in $.issuers[0].algorithms"));
}

#[test]
fn identity_header_names_are_checked() {
    let mut v = base();
    v["upstream"] = json!({"headers":{"agent":"Authorization"}});
    assert!(err(v).contains("$.upstream.headers.agent"));
    let mut v = base();
    v["upstream"] = json!({"headers":{"agent":"x-who","principal":"x-who"}});
    assert!(err(v).contains("used for two identity headers"));
}

#[test]
fn every_structural_problem_is_reported() {
    let mut v = base();
    v["clock_skew"] = json!(5);
    v["issuers"][0]["audiences"] = json!("not-a-list");
    v["issuers"][0]["algorithms"] = json!(["ES256", "HS256"]);
    v["signature_backend"] = json!("fast");
    v["delegation"] = json!({"max_depth": -1});
    let e = err(v);
    for needle in [
        "$.clock_skew: unknown field `clock_skew`",
        "$.issuers[0].audiences: expected array, got string",
        "$.issuers[0].algorithms[1]: \"HS256\" is not one of",
        "$.signature_backend: \"fast\" is not one of",
        "$.delegation.max_depth: -1 is below the minimum 0",
    ] {
        assert!(e.contains(needle), "{needle} missing in\n{e}");
    }
    let e = err(json!({}));
    assert!(e.contains("$: missing required field `issuers`"), "{e}");
}

#[test]
fn typ_normalisation() {
    assert_eq!(normalize_typ("Application/AT+JWT"), "at+jwt");
    assert_eq!(normalize_typ("JWT"), "jwt");
}

/// An optional section (`policy`, `agents.feed`, `revocation`, ...) is checked as the
/// section itself: its problems name the member, as a required section's would.
#[test]
fn problems_inside_an_optional_section_carry_their_paths() {
    let cases = [
        (
            json!({"entrypoint": "data.x.y"}),
            "policy",
            "$.policy: missing required field `modules`",
        ),
        (
            json!(-1),
            "verify_budget",
            "$.verify_budget: expected object, got integer",
        ),
        (
            json!({"modules": {}, "max_eval_ms": "5"}),
            "policy",
            "$.policy.max_eval_ms: expected integer, got string",
        ),
    ];
    for (section, key, expected) in cases {
        let mut v = base();
        v[key] = section;
        assert_eq!(err(v), format!("invalid plugin configuration: {expected}"));
    }
    let mut v = base();
    v["agents"] = json!({"feed": {"cluster": "c", "paht": "/x"}});
    let e = err(v);
    assert!(
        e.contains("$.agents.feed: missing required field `path`")
            && e.contains(
                "$.agents.feed.paht: unknown field `paht`, expected one of `allow_rollback`"
            ),
        "{e}"
    );
    // Enumerations still list their values; null is still accepted.
    let mut v = base();
    v["signature_backend"] = json!("fast");
    assert!(err(v).contains("\"fast\" is not one of \"auto\", \"host\", \"pure\""));
    let mut v = base();
    v["policy"] = Value::Null;
    assert!(Config::from_json(v.to_string().as_bytes()).is_ok());
}

#[test]
fn ed25519_and_eddsa_name_one_algorithm() {
    for name in ["EdDSA", "Ed25519"] {
        let mut v = base();
        v["issuers"][0]["algorithms"] = json!(["ES256", name]);
        let c = Config::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(
            c.issuers[0].algorithms,
            vec![Alg::Es256, Alg::EdDsa],
            "{name}"
        );
    }
    assert_eq!(Alg::from_jose("Ed25519"), Some(Alg::EdDsa));
    assert_eq!(Alg::from_jose("Ed448"), None);
}

#[test]
fn dpop_and_sender_constraints_have_safe_defaults_and_checked_values() {
    let c = Config::from_json(base().to_string().as_bytes()).unwrap();
    assert_eq!(c.issuers[0].sender_constraint, SenderConstraint::IfBound);
    assert_eq!(
        (
            c.dpop.max_proof_age_s,
            c.dpop.max_proof_bytes,
            c.dpop.replay_max_entries
        ),
        (60, 8192, 65_536)
    );
    assert_eq!(c.dpop.algorithms, vec![Alg::Es256, Alg::EdDsa, Alg::Rs256]);
    let mut v = base();
    v["issuers"][0]["sender_constraint"] = json!("required");
    v["dpop"] = json!({"max_proof_age_s": 30, "algorithms": ["Ed25519"]});
    let c = Config::from_json(v.to_string().as_bytes()).unwrap();
    assert_eq!(c.issuers[0].sender_constraint, SenderConstraint::Required);
    assert_eq!(
        (c.dpop.max_proof_age_s, c.dpop.algorithms.clone()),
        (30, vec![Alg::EdDsa])
    );
    let mut bad = base();
    bad["issuers"][0]["sender_constraint"] = json!("always");
    bad["dpop"] = json!({"max_proof_age_s": 0, "algorithms": ["EdDSA", "Ed25519"],
                         "max_proof_bytes": 100, "replay_max_entries": 1, "nonce": true});
    let e = err(bad);
    assert!(e.contains("$.issuers[0].sender_constraint"), "{e}");
    assert!(e.contains("$.dpop.nonce") || e.contains("nonce"), "{e}");
    let mut bad = base();
    bad["dpop"] = json!({"max_proof_age_s": 0, "algorithms": ["EdDSA", "Ed25519"],
                         "max_proof_bytes": 100, "replay_max_entries": 1});
    let e = err(bad);
    for path in [
        "$.dpop.max_proof_age_s",
        "$.dpop.max_proof_bytes",
        "$.dpop.replay_max_entries",
        "$.dpop.algorithms[1]",
    ] {
        assert!(e.contains(path), "{path}: {e}");
    }
}
