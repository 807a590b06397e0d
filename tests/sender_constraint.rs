//! Sender-constrained tokens through the native pipeline: DPoP-bound tokens (RFC 9449)
//! need a fresh proof of their key on every request, certificate-bound ones (RFC 8705) the
//! client certificate they name; unbound tokens pass unless their issuer requires a binding.
//! Proofs here are made by `agent_iam::dev`; the end-to-end tests through Envoy use an
//! independent JOSE library.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{dpop_jkt, dpop_proof, mint, DevKeys, Recipe};
use agent_iam::pipeline::{Decision, DecisionIds, Engine, PeerCertificate, Request};
use agent_iam::reason::Reason;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;
const HOST: &str = "api.agent-iam.test";
const HTU: &str = "https://api.agent-iam.test/tickets/1";
/// A client certificate's SHA-256 as Envoy reports it (hex) and as `x5t#S256` names it.
const CERT_HEX: &str = "6f070ad1eb1cdc0082dc30766399e5112b1713ca3d96d734e4ef3d8dd37e760d";
const CERT_X5T: &str = "bwcK0esc3ACC3DB2Y5nlESsXE8o9ltc05O89jdN-dg0";

fn keys() -> DevKeys {
    let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
    DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn engine(keys: &DevKeys, edit: impl Fn(&mut Value)) -> Engine {
    let mut plugin = agent_iam::dev::demo_plugin_config(keys);
    plugin["agents"] = json!({"allow_unregistered_subjects": true});
    plugin["unmatched_route"] = json!("allow");
    edit(&mut plugin);
    let cfg = Config::from_json(plugin.to_string().as_bytes()).unwrap();
    Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1))
}

fn token(keys: &DevKeys, claims: Value) -> String {
    let r: Recipe = serde_json::from_value(json!({"claims": claims})).unwrap();
    mint(keys, &r, NOW).unwrap()
}

/// `GET https://api.agent-iam.test/tickets/1` with `authorization` and `DPoP` proofs.
fn request(authorization: &str, proofs: &[&str]) -> Request {
    Request {
        method: "GET".into(),
        path: "/tickets/1".into(),
        host: HOST.into(),
        scheme: "https".into(),
        authorization: vec![authorization.as_bytes().to_vec()],
        dpop: proofs.iter().map(|p| p.as_bytes().to_vec()).collect(),
        ..Request::default()
    }
}

fn proof(
    keys: &DevKeys,
    alg: &str,
    htm: &str,
    htu: &str,
    tok: Option<&str>,
    iat: i64,
    jti: &str,
) -> String {
    dpop_proof(keys, alg, htm, htu, tok, iat, jti).unwrap()
}

fn reason(d: &Decision) -> Option<&'static str> {
    d.reason.map(Reason::as_str)
}

#[test]
fn a_dpop_bound_token_needs_a_fresh_proof_of_its_key_on_every_request() {
    let keys = keys();
    let mut e = engine(&keys, |_| {});
    let now = NOW as f64;
    // The agent's proof key is the Ed25519 one; ES256 plays the thief's key.
    let jkt = dpop_jkt(&keys, "Ed25519").unwrap();
    let tok = token(&keys, json!({"cnf": {"jkt": jkt}}));
    let auth = format!("DPoP {tok}");
    let good = |jti: &str| proof(&keys, "Ed25519", "GET", HTU, Some(&tok), NOW, jti);

    let d = e.evaluate(&request(&auth, &[&good("p1")]), now);
    assert_eq!(reason(&d), None);
    assert_eq!(d.proof.as_ref().unwrap().jti, "p1");
    let b = &d.to_json()["binding"];
    assert_eq!(b["method"], "dpop");
    assert_eq!(b["jkt"], jkt.as_str());
    assert_eq!(b["proof"]["jkt"], jkt.as_str());
    assert_eq!(b["proof"]["htu"], HTU);
    // The EdDSA name is the same algorithm; a new jti is a new proof.
    let edd = proof(&keys, "EdDSA", "GET", HTU, Some(&tok), NOW, "p2");
    let d = e.evaluate(&request(&auth, &[&edd]), now);
    assert_eq!(reason(&d), None);
    // The token is now cached: its proof is still checked.
    assert!(d.token_cached);

    let cases: Vec<(&str, Request)> = vec![
        ("dpop.replay", request(&auth, &[&good("p1")])),
        ("dpop.proof_missing", request(&auth, &[])),
        (
            "dpop.proof_repeated",
            request(&auth, &[&good("p3"), &good("p4")]),
        ),
        (
            "dpop.bearer_scheme",
            request(&format!("Bearer {tok}"), &[&good("p5")]),
        ),
        ("dpop.bearer_scheme", request(&format!("Bearer {tok}"), &[])),
        (
            "dpop.key_mismatch",
            request(
                &auth,
                &[&proof(&keys, "ES256", "GET", HTU, Some(&tok), NOW, "p6")],
            ),
        ),
        (
            "dpop.htm",
            request(
                &auth,
                &[&proof(&keys, "Ed25519", "POST", HTU, Some(&tok), NOW, "p7")],
            ),
        ),
        (
            "dpop.htu",
            request(
                &auth,
                &[&proof(
                    &keys,
                    "Ed25519",
                    "GET",
                    "https://api.agent-iam.test/tickets/2",
                    Some(&tok),
                    NOW,
                    "p8",
                )],
            ),
        ),
        (
            "dpop.htu",
            request(
                &auth,
                &[&proof(
                    &keys,
                    "Ed25519",
                    "GET",
                    "http://api.agent-iam.test/tickets/1",
                    Some(&tok),
                    NOW,
                    "p9",
                )],
            ),
        ),
        (
            "dpop.ath",
            request(
                &auth,
                &[&proof(&keys, "Ed25519", "GET", HTU, None, NOW, "p10")],
            ),
        ),
        (
            "dpop.ath",
            request(
                &auth,
                &[&proof(
                    &keys,
                    "Ed25519",
                    "GET",
                    HTU,
                    Some("other"),
                    NOW,
                    "p11",
                )],
            ),
        ),
        (
            "dpop.iat_stale",
            request(
                &auth,
                &[&proof(
                    &keys,
                    "Ed25519",
                    "GET",
                    HTU,
                    Some(&tok),
                    NOW - 200,
                    "p12",
                )],
            ),
        ),
        (
            "dpop.iat_future",
            request(
                &auth,
                &[&proof(
                    &keys,
                    "Ed25519",
                    "GET",
                    HTU,
                    Some(&tok),
                    NOW + 200,
                    "p13",
                )],
            ),
        ),
        ("dpop.proof_malformed", request(&auth, &["not-a-jwt"])),
    ];
    for (want, req) in cases {
        let d = e.evaluate(&req, now);
        assert_eq!(reason(&d), Some(want), "{want}");
        assert_eq!(d.status(), 401, "{want}");
    }
    // A proof with a query in its htu names the same resource (RFC 9449 §4.3).
    let q = proof(
        &keys,
        "Ed25519",
        "GET",
        &format!("{HTU}?page=2"),
        Some(&tok),
        NOW,
        "p14",
    );
    assert_eq!(reason(&e.evaluate(&request(&auth, &[&q]), now)), None);
    // A replayed proof stays refused for its whole lifetime, then is stale.
    let lifetime = 60.0 + e.config().clock_skew_s as f64;
    assert_eq!(
        reason(&e.evaluate(&request(&auth, &[&good("p1")]), now + lifetime - 1.0)),
        Some("dpop.replay")
    );
    assert_eq!(
        reason(&e.evaluate(&request(&auth, &[&good("p1")]), now + lifetime + 1.0)),
        Some("dpop.iat_stale")
    );
    // At the last instant a proof is accepted, its entry is still alive: it is accepted
    // once, not at every request of that instant.
    let last = now + lifetime;
    assert_eq!(
        reason(&e.evaluate(&request(&auth, &[&good("p15")]), last)),
        None
    );
    assert_eq!(
        reason(&e.evaluate(&request(&auth, &[&good("p15")]), last)),
        Some("dpop.replay")
    );
}

#[test]
fn htu_follows_the_scheme_envoy_reports_or_the_configured_origin() {
    let keys = keys();
    let jkt = dpop_jkt(&keys, "ES256").unwrap();
    let tok = token(&keys, json!({"cnf": {"jkt": jkt}}));
    let auth = format!("DPoP {tok}");
    let now = NOW as f64;
    let mut e = engine(&keys, |_| {});
    // `x-forwarded-proto` (Envoy's, from the connection) wins over a client's `:scheme`.
    let mut req = request(
        &auth,
        &[&proof(&keys, "ES256", "GET", HTU, Some(&tok), NOW, "a")],
    );
    req.forwarded_proto = Some("http".into());
    assert_eq!(reason(&e.evaluate(&req, now)), Some("dpop.htu"));
    let http = "http://api.agent-iam.test/tickets/1";
    req.dpop = vec![proof(&keys, "ES256", "GET", http, Some(&tok), NOW, "b").into_bytes()];
    assert_eq!(reason(&e.evaluate(&req, now)), None);
    // Several values (a trusted hop's list): no scheme the filter can name.
    req.forwarded_proto = Some("http,https".into());
    req.dpop = vec![proof(&keys, "ES256", "GET", http, Some(&tok), NOW, "c").into_bytes()];
    assert_eq!(reason(&e.evaluate(&req, now)), Some("dpop.htu"));
    // The canonical path is what the proof names (`/a/../tickets/1` is `/tickets/1`).
    let mut odd = request(
        &auth,
        &[&proof(&keys, "ES256", "GET", HTU, Some(&tok), NOW, "d")],
    );
    odd.path = "/x/../tickets/%31".into();
    assert_eq!(reason(&e.evaluate(&odd, now)), None);

    // Behind a proxy that rewrites the origin: the configured one, whatever Host says.
    let mut e = engine(&keys, |p| {
        p["dpop"] = json!({"origin": "https://Gateway.Example.com:443"})
    });
    let outside = "https://gateway.example.com/tickets/1";
    let req = request(
        &auth,
        &[&proof(&keys, "ES256", "GET", outside, Some(&tok), NOW, "e")],
    );
    assert_eq!(reason(&e.evaluate(&req, now)), None);
    let req = request(
        &auth,
        &[&proof(&keys, "ES256", "GET", HTU, Some(&tok), NOW, "f")],
    );
    assert_eq!(reason(&e.evaluate(&req, now)), Some("dpop.htu"));
}

#[test]
fn unbound_tokens_pass_as_bearer_unless_the_issuer_requires_a_binding() {
    let keys = keys();
    let now = NOW as f64;
    let plain = token(&keys, json!({}));
    let mut e = engine(&keys, |_| {});
    assert_eq!(
        reason(&e.evaluate(&request(&format!("Bearer {plain}"), &[]), now)),
        None
    );
    // An unbound token sent as DPoP: the scheme promises a binding the token lacks.
    let p = proof(&keys, "ES256", "GET", HTU, Some(&plain), NOW, "u1");
    assert_eq!(
        reason(&e.evaluate(&request(&format!("DPoP {plain}"), &[&p]), now)),
        Some("dpop.token_unbound")
    );
    let mut strict = engine(&keys, |p| {
        p["issuers"][0]["sender_constraint"] = json!("required")
    });
    let d = strict.evaluate(&request(&format!("Bearer {plain}"), &[]), now);
    assert_eq!(reason(&d), Some("token.unbound"));
    assert_eq!(d.status(), 401);
    let jkt = dpop_jkt(&keys, "ES256").unwrap();
    let bound = token(&keys, json!({"cnf": {"jkt": jkt}}));
    let p = proof(&keys, "ES256", "GET", HTU, Some(&bound), NOW, "u2");
    assert_eq!(
        reason(&strict.evaluate(&request(&format!("DPoP {bound}"), &[&p]), now)),
        None
    );
    // A confirmation method the filter cannot check is never a bearer token.
    let jwk_cnf = token(&keys, json!({"cnf": {"jwk": {"kty": "EC"}}}));
    assert_eq!(
        reason(&e.evaluate(&request(&format!("Bearer {jwk_cnf}"), &[]), now)),
        Some("token.cnf")
    );
}

#[test]
fn a_certificate_bound_token_needs_its_client_certificate() {
    let keys = keys();
    let now = NOW as f64;
    let tok = token(&keys, json!({"cnf": {"x5t#S256": CERT_X5T}}));
    let mut e = engine(&keys, |_| {});
    let with = |peer: PeerCertificate| {
        let mut r = request(&format!("Bearer {tok}"), &[]);
        r.peer_certificate = peer;
        r
    };
    let right = agent_iam::dpop::peer_certificate_sha256(CERT_HEX.as_bytes()).unwrap();
    let d = e.evaluate(&with(PeerCertificate::Sha256(right)), now);
    assert_eq!(reason(&d), None);
    assert_eq!(d.to_json()["binding"]["method"], "mtls");
    assert_eq!(d.to_json()["binding"]["peer_certificate"], CERT_X5T);
    let mut other = right;
    other[0] ^= 1;
    for (peer, want) in [
        (PeerCertificate::Sha256(other), "mtls.certificate_mismatch"),
        (PeerCertificate::Absent, "mtls.certificate_missing"),
        (PeerCertificate::Unknown, "mtls.certificate_missing"),
        (PeerCertificate::Unavailable, "mtls.unavailable"),
    ] {
        let d = e.evaluate(&with(peer), now);
        assert_eq!(reason(&d), Some(want));
        assert_eq!(d.status(), 401);
    }
}

#[test]
fn challenges_offer_both_schemes_and_put_the_error_on_the_one_used() {
    let keys = keys();
    let now = NOW as f64;
    let mut e = engine(&keys, |_| {});
    let algs = e.dpop_algs().to_owned();
    assert_eq!(algs, "ES256 EdDSA Ed25519 RS256");
    let www = |d: &Decision| d.www_authenticate(None, Some(&algs)).unwrap();
    let mut none = request("", &[]);
    none.authorization.clear();
    let d = e.evaluate(&none, now);
    assert_eq!(reason(&d), Some("token.missing"));
    assert_eq!(www(&d), format!("Bearer, DPoP algs=\"{algs}\""));
    assert_eq!(
        d.www_authenticate(Some("https://api.test/.well-known/oauth-protected-resource"), Some(&algs))
            .unwrap(),
        format!(
            "Bearer resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\", \
             DPoP algs=\"{algs}\", resource_metadata=\"https://api.test/.well-known/oauth-protected-resource\""
        )
    );

    let jkt = dpop_jkt(&keys, "ES256").unwrap();
    let tok = token(&keys, json!({"cnf": {"jkt": jkt}}));
    let d = e.evaluate(&request(&format!("Bearer {tok}"), &[]), now);
    assert_eq!(
        www(&d),
        format!("Bearer error=\"invalid_token\", error_description=\"dpop.bearer_scheme\", DPoP algs=\"{algs}\"")
    );
    let wrong = proof(
        &keys,
        "ES256",
        "GET",
        "https://elsewhere.test/",
        Some(&tok),
        NOW,
        "c1",
    );
    let d = e.evaluate(&request(&format!("DPoP {tok}"), &[&wrong]), now);
    assert_eq!(
        www(&d),
        format!("Bearer, DPoP error=\"invalid_dpop_proof\", error_description=\"dpop.htu\", algs=\"{algs}\"")
    );
    let thief = proof(&keys, "Ed25519", "GET", HTU, Some(&tok), NOW, "c2");
    let d = e.evaluate(&request(&format!("DPoP {tok}"), &[&thief]), now);
    assert_eq!(
        www(&d),
        format!("Bearer, DPoP error=\"invalid_token\", error_description=\"dpop.key_mismatch\", algs=\"{algs}\"")
    );
    // A token problem under the DPoP scheme is reported on the DPoP challenge.
    let expired: Recipe =
        serde_json::from_value(json!({"iat": -600, "exp": -300, "claims": {"cnf": {"jkt": jkt}}}))
            .unwrap();
    let expired = mint(&keys, &expired, NOW).unwrap();
    let d = e.evaluate(&request(&format!("DPoP {expired}"), &[]), now);
    assert_eq!(
        www(&d),
        format!("Bearer, DPoP error=\"invalid_token\", error_description=\"token.expired\", algs=\"{algs}\"")
    );
}

#[test]
fn forged_proofs_and_other_keys_are_charged_to_the_clients_signature_budget() {
    let keys = keys();
    let now = NOW as f64;
    let mut e = engine(&keys, |p| {
        p["verify_budget"] = json!({"per_client_per_s": 0.01, "burst": 2});
    });
    let jkt = dpop_jkt(&keys, "Ed25519").unwrap();
    let tok = token(&keys, json!({"cnf": {"jkt": jkt}}));
    let auth = format!("DPoP {tok}");
    let from = |client: &str, proof: &str| {
        let mut r = request(&auth, &[proof]);
        r.client = Some(client.into());
        r
    };
    let thief = |jti: &str| proof(&keys, "ES256", "GET", HTU, Some(&tok), NOW, jti);
    for jti in ["t1", "t2"] {
        let d = e.evaluate(&from("10.0.0.9:1", &thief(jti)), now);
        assert_eq!(reason(&d), Some("dpop.key_mismatch"));
    }
    // Over its budget, the thief's address gets no more signature checks.
    let d = e.evaluate(&from("10.0.0.9:2", &thief("t3")), now);
    assert_eq!(reason(&d), Some("token.verify_budget"));
    assert_eq!(d.status(), 429);
    // The agent, from its own address, is not affected.
    let mine = proof(&keys, "Ed25519", "GET", HTU, Some(&tok), NOW, "a1");
    assert_eq!(reason(&e.evaluate(&from("10.0.0.7:1", &mine), now)), None);
}
