//! Criterion benchmarks of the decision path (native): token parse + verify per algorithm,
//! cache hit, delegation check, revocation check, the shipped policy, the whole pipeline
//! for a cached ES256 token with and without the policy, and one audit event.
//! Run: cargo bench --bench decision
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // benchmark code

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use agent_iam::policy::{to_rego, Policy, PolicyConfig};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn plugin() -> Value {
    serde_json::from_str(&std::fs::read_to_string("envoy/plugin.json").unwrap()).unwrap()
}

/// `policy`: None = no policy, Some("") = the shipped one, else a Rego module.
fn engine(policy: Option<&str>) -> Engine {
    let mut p = plugin();
    match policy {
        None => {
            p.as_object_mut().unwrap().remove("policy");
        }
        Some("") => {}
        Some(rego) => p["policy"] = json!({"modules": {"bench.rego": rego}}),
    }
    let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
    let mut e = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
    e.start_feed_clock(1_800_000_000.0);
    e
}

fn request() -> Request {
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap(),
    )
    .unwrap();
    let keys = DevKeys::from_private_json(&keys).unwrap();
    let recipe: Recipe = serde_json::from_value(json!({
        "claims": {"sub": "user:alice", "tenant": "acme", "act": {"sub": "agent:planner"}}
    }))
    .unwrap();
    let token = mint(&keys, &recipe, 1_800_000_000).unwrap();
    Request {
        body: None,
        client: None,
        method: "GET".into(),
        path: "/tenants/acme/tickets".into(),
        host: "api.agent-iam.test".into(),
        authorization: vec![format!("Bearer {token}").into_bytes()],
        headers: vec![
            ("user-agent".into(), "bench".into()),
            ("accept".into(), "application/json".into()),
        ],
        ..Request::default()
    }
}

fn benches(c: &mut Criterion) {
    let cfg: PolicyConfig = serde_json::from_value(plugin()["policy"].clone()).unwrap();
    let policy = Policy::compile(&cfg).unwrap();
    let input = to_rego(&json!({
        "subject": {"id": "user:alice"},
        "agent": {"id": "agent:planner", "registered": true, "record": null},
        "chain": [{"sub": "agent:planner", "iss": null}],
        "token": {"sub": "user:alice", "tenant": "acme", "scope": "tickets:read"},
        "request": {"method": "GET", "path": "/tenants/acme/tickets", "host": "api", "headers": {"accept": "*/*"}},
        "route": {"name": "tenants", "required_scopes": ["tickets:read"]},
        "scopes": {"requested": ["tickets:read"], "effective": ["tickets:read"]},
        "time": {"now": 1800000000.0, "now_ns": 1_800_000_000_000_000_000i64},
    }));
    c.bench_function("policy: shipped policy evaluate (RVM)", |b| {
        b.iter(|| policy.evaluate(input.clone()))
    });
    let trivial_cfg: PolicyConfig = serde_json::from_value(
        json!({"modules": {"t.rego": "package agent_iam.authz\ndecision := true"}}),
    )
    .unwrap();
    let trivial_policy = Policy::compile(&trivial_cfg).unwrap();
    c.bench_function("policy: `decision := true` evaluate (RVM)", |b| {
        b.iter(|| trivial_policy.evaluate(input.clone()))
    });
    c.bench_function("policy: shipped policy evaluate (interpreter)", |b| {
        b.iter(|| policy.evaluate_interpreted(input.clone()))
    });

    let req = request();
    let mut with = engine(Some(""));
    assert!(with.evaluate(&req, 1_800_000_000.0).allowed());
    c.bench_function("pipeline: cached ES256 + registry + route + policy", |b| {
        b.iter(|| with.evaluate(&req, 1_800_000_000.0))
    });
    let mut trivial = engine(Some("package agent_iam.authz\ndecision := true"));
    assert!(trivial.evaluate(&req, 1_800_000_000.0).allowed());
    c.bench_function(
        "pipeline: cached ES256 + registry + route + `decision := true`",
        |b| b.iter(|| trivial.evaluate(&req, 1_800_000_000.0)),
    );
    let mut without = engine(None);
    assert!(without.evaluate(&req, 1_800_000_000.0).allowed());
    c.bench_function(
        "pipeline: cached ES256 + registry + route, no policy",
        |b| b.iter(|| without.evaluate(&req, 1_800_000_000.0)),
    );
}

/// The per-request revocation check against a state of 10,000 revoked `jti`s, 10,000
/// revoked subjects and 1,000 disabled agents (none matching: the full lookup path).
fn revocation(c: &mut Criterion) {
    use agent_iam::revocation::RevocationState;
    use agent_iam::token::Actor;
    let mut st = RevocationState::default();
    for i in 0..10_000 {
        st.jtis.insert(format!("jti-{i}"), 2e9);
        st.subjects.insert(format!("user:{i}"), (1.7e9, 2e9));
    }
    for i in 0..1_000 {
        st.agents.insert(
            format!("agent:{i}"),
            agent_iam::revocation::AgentMark {
                at: 1.7e9,
                disabled: true,
                until: 2e9,
            },
        );
    }
    let chain = vec![
        Actor {
            sub: "agent:planner".into(),
            iss: None,
        },
        Actor {
            sub: "agent:tool".into(),
            iss: None,
        },
    ];
    c.bench_function(
        "revocation: check (21k entries, 2-actor chain, no match)",
        |b| b.iter(|| st.check(Some("jti-live"), "user:alice", &chain, None, 1.8e9)),
    );
}

/// One audit event for a decided request (serialise + chain), and the chain hash alone.
fn audit(c: &mut Criterion) {
    use agent_iam::audit::{ChainHash, EventContext};
    use blake2::Digest;
    let mut e = engine(Some(""));
    let req = request();
    let d = e.evaluate(&req, 1_800_000_000.0);
    let ctx = EventContext {
        now: 1_800_000_000.25,
        latency_us: 17,
        request_id: Some("0f6ad5c3-4c43-4a8c-9d4e-0d6f1f3e9a11"),
        traceparent: None,
    };
    let line = e.audit(&d, &ctx).pop().unwrap();
    let text = line.json().to_owned();
    println!("audit event: {} bytes", text.len());
    c.bench_function("audit/event (serialise + BLAKE2b-256 chain)", |b| {
        b.iter(|| e.audit(&d, &ctx))
    });
    c.bench_function("audit/time (RFC 3339, microseconds)", |b| {
        b.iter(|| agent_iam::audit::rfc3339_micros(black_box(1_800_000_000.25)))
    });
    c.bench_function("audit/hash only (BLAKE2b-256)", |b| {
        b.iter(|| ChainHash::digest(text.as_bytes()))
    });
    c.bench_function("audit/hash only (SHA-256, for comparison)", |b| {
        b.iter(|| sha2::Sha256::digest(text.as_bytes()))
    });
}

/// Token parse + verify per algorithm (pure Rust, no cache: the cold path), a cache hit,
/// and the delegation check of a two-actor chain against the shipped registry.
fn tokens(c: &mut Criterion) {
    use agent_iam::cache::VerifiedCache;
    use agent_iam::delegation::{authorize, AgentRules};
    use agent_iam::token::verify_token;
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap(),
    )
    .unwrap();
    let keys = DevKeys::from_private_json(&keys).unwrap();
    let cfg = Config::from_json(plugin().to_string().as_bytes()).unwrap();
    let now = 1_800_000_000;
    let chain = json!({"sub": "user:alice",
        "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}});
    for alg in ["ES256", "EdDSA", "RS256"] {
        let recipe: Recipe =
            serde_json::from_value(json!({"alg": alg, "claims": chain.clone()})).unwrap();
        let token = mint(&keys, &recipe, now).unwrap();
        assert!(verify_token(&token, &cfg.token_rules(), &PureRust, None, now as f64).is_ok());
        c.bench_function(
            &format!("token: parse + verify {alg} (pure Rust, cold)"),
            |b| b.iter(|| verify_token(&token, &cfg.token_rules(), &PureRust, None, now as f64)),
        );
        if alg == "ES256" {
            let mut cache = VerifiedCache::new(1024);
            c.bench_function(
                "token: ES256 cache hit (parse + claims, no signature)",
                |b| {
                    b.iter(|| {
                        verify_token(
                            &token,
                            &cfg.token_rules(),
                            &PureRust,
                            Some(&mut cache),
                            now as f64,
                        )
                    })
                },
            );
            let (t, _) =
                verify_token(&token, &cfg.token_rules(), &PureRust, None, now as f64).unwrap();
            cache.remember(&token, std::sync::Arc::new(t.clone()));
            c.bench_function("token: ES256 recent-token hit (clock rules only)", |b| {
                b.iter(|| cache.recent(&token, now as f64, 30.0))
            });
            let rules = AgentRules {
                allow_unregistered_subjects: cfg.allow_unregistered_subjects,
                ceiling: cfg.ceiling,
            };
            assert!(authorize(
                &t.subject,
                &t.chain,
                &t.scopes,
                &cfg.registry,
                rules,
                now as f64
            )
            .is_ok());
            c.bench_function("delegation: two-actor chain against the registry", |b| {
                b.iter(|| {
                    authorize(
                        &t.subject,
                        &t.chain,
                        &t.scopes,
                        &cfg.registry,
                        rules,
                        now as f64,
                    )
                })
            });
        }
    }
}

/// One DPoP proof (RFC 9449) per algorithm, pure Rust: its key parsed and thumbprinted,
/// then the whole proof checked; and the replay cache's first use of a `jti`.
fn dpop(c: &mut Criterion) {
    use agent_iam::dpop::{proof_key, verify_proof, ProofRequest, ProofRules, ReplayCache};
    use agent_iam::keys::Alg;
    use agent_iam::target::Semicolons;
    let keys = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
    let keys = DevKeys::from_private_json(&serde_json::from_str(&keys).unwrap()).unwrap();
    let htu = "https://api.agent-iam.test/tickets/1";
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"token").into();
    let rules = ProofRules {
        algorithms: &[Alg::Es256, Alg::EdDsa, Alg::Rs256],
        max_age_s: 60,
        clock_skew_s: 30,
        max_bytes: 8192,
        semicolons: Semicolons::Reject,
    };
    let req = ProofRequest {
        method: "GET",
        htu,
        token_sha256: &sha,
        now: 1_800_000_000.0,
    };
    for alg in ["ES256", "EdDSA"] {
        let jwk = agent_iam::dev::dpop_jwk(&keys, alg).unwrap();
        c.bench_function(
            &format!("dpop: {alg} proof key (parse + RFC 7638 thumbprint)"),
            |b| b.iter(|| proof_key(black_box(&jwk)).unwrap()),
        );
        let proof =
            agent_iam::dev::dpop_proof(&keys, alg, "GET", htu, Some("token"), 1_800_000_000, "j")
                .unwrap();
        c.bench_function(&format!("dpop: {alg} proof verified (pure Rust)"), |b| {
            b.iter(|| verify_proof(black_box(&proof), &rules, &req, &PureRust).unwrap())
        });
    }
    let shared = agent_iam::shared::Memory::default();
    let cache = ReplayCache::new(65_536);
    cache.prepare(&shared).unwrap();
    let mut n = 0u64;
    c.bench_function(
        "dpop: replay cache first use (in-memory shared data)",
        |b| {
            b.iter(|| {
                // Entries live 1,000 ms of a clock that advances 1 ms per proof.
                n += 1;
                cache
                    .first_use(&shared, &[7; 32], &n.to_string(), n + 1_000, n)
                    .unwrap()
            })
        },
    );
}

criterion_group!(decision, benches, revocation, audit, tokens, dpop);
criterion_main!(decision);
