//! The gateway runs policies on regorus's RVM; `agent-iam policy test` runs them on the
//! interpreter (the RVM has no `with`). This replays a grid of requests through the shipped
//! policies (envoy/plugin.json) on both engines and requires identical decisions, under
//! the shipped data and under stricter data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use agent_iam::policy::{to_rego, Policy, PolicyConfig, Verdict};
use serde_json::{json, Value};

fn shipped() -> PolicyConfig {
    let plugin: Value =
        serde_json::from_str(&std::fs::read_to_string("envoy/plugin.json").unwrap()).unwrap();
    serde_json::from_value(plugin["policy"].clone()).unwrap()
}

fn inputs() -> Vec<Value> {
    let chains = [
        json!([]),
        json!([{"sub": "agent:a", "iss": null}]),
        json!([{"sub": "agent:a", "iss": null}, {"sub": "agent:b", "iss": null}]),
        json!([{"sub": "a"}, {"sub": "b"}, {"sub": "c"}, {"sub": "d"}]),
    ];
    let details = [
        None,
        Some(json!([{"type": "agent_task", "actions": ["GET"], "locations": ["/tenants/acme/*"]}])),
        Some(json!([{"type": "agent_task", "actions": ["POST"], "locations": ["/other/**"]}])),
        Some(json!([{"type": "other", "actions": ["GET"], "locations": ["/**"]}])),
        Some(json!("not-an-array")),
    ];
    let tenants = [
        None,
        Some(json!("acme")),
        Some(json!("globex")),
        Some(json!(7)),
    ];
    let mut out = Vec::new();
    for method in ["GET", "POST", "DELETE"] {
        for path in [
            "/tenants/acme/tickets",
            "/tenants/globex",
            "/tenants",
            "/",
            "/other/a/b",
        ] {
            for chain in &chains {
                for d in &details {
                    for t in &tenants {
                        for hour in [3i64, 12, 23] {
                            let mut token = json!({"sub": "user:alice", "scope": "tickets:read"});
                            if let Some(d) = d {
                                token["authorization_details"] = d.clone();
                            }
                            if let Some(t) = t {
                                token["tenant"] = t.clone();
                            }
                            let now = 1_800_000_000i64 - 1_800_000_000 % 86_400 + hour * 3600;
                            let segments: Vec<&str> = match path.strip_prefix('/') {
                                Some("") | None => vec![],
                                Some(rest) => rest.split('/').collect(),
                            };
                            out.push(json!({
                                "subject": {"id": "user:alice"},
                                "agent": {"id": "agent:a", "registered": true, "record": null},
                                "chain": chain,
                                "token": token,
                                "request": {"method": method, "path": path, "segments": segments, "query": null, "host": "api", "headers": {}},
                                "route": null,
                                "scopes": {"requested": [], "effective": []},
                                "time": {"now": now as f64, "now_ns": now * 1_000_000_000},
                            }));
                        }
                    }
                }
            }
        }
    }
    out
}

fn compare(cfg: &PolicyConfig) -> (usize, usize) {
    // Semantics, not budgets: a debug build on a busy machine must not hit the wall clock.
    let mut cfg = cfg.clone();
    cfg.max_eval_ms = 1000;
    let policy = Policy::compile(&cfg).unwrap();
    assert_eq!(policy.engine(), "rvm", "{:?}", policy.rvm_unavailable);
    let (mut allows, mut denies) = (0, 0);
    for input in inputs() {
        let rvm = policy.evaluate(to_rego(&input));
        let interp = policy.evaluate_interpreted(to_rego(&input));
        assert_eq!(rvm, interp, "engines disagree for {input}");
        match rvm {
            Verdict::Allow { .. } => allows += 1,
            Verdict::Deny { .. } => denies += 1,
            other => panic!("shipped policy must decide, got {other:?} for {input}"),
        }
    }
    (allows, denies)
}

#[test]
fn rvm_and_interpreter_agree_on_the_shipped_policies() {
    let (allows, denies) = compare(&shipped());
    assert!(
        allows > 100 && denies > 100,
        "{allows} allows, {denies} denies"
    );
}

#[test]
fn rvm_and_interpreter_agree_under_strict_data() {
    let mut cfg = shipped();
    cfg.data = Some(json!({"agent_iam": {
        "require_task_binding": true,
        "write_window": {"start_hour_utc": 9, "end_hour_utc": 17},
        "max_chain_for_reads": 1
    }}));
    let (allows, denies) = compare(&cfg);
    assert!(
        allows > 10 && denies > 100,
        "{allows} allows, {denies} denies"
    );
}
