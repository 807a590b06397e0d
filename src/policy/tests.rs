//! Compiling and evaluating policies: the decision contract on both engines, data,
//! budgets, load-time errors, revisions.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::default_max_instructions;
use super::*;

fn cfg(rego: &str) -> PolicyConfig {
    PolicyConfig {
        modules: BTreeMap::from([("p.rego".to_string(), rego.to_string())]),
        data: Some(serde_json::json!({"limits": {"max": 2}})),
        entrypoint: DEFAULT_ENTRYPOINT.into(),
        max_eval_ms: 20,
        max_instructions: default_max_instructions(),
        headers: Vec::new(),
    }
}

/// Evaluates on the RVM (the gateway's engine) and checks the interpreter agrees.
fn eval(rego: &str, input: serde_json::Value) -> Verdict {
    let p = Policy::compile(&cfg(rego)).unwrap();
    assert_eq!(p.engine(), "rvm", "{:?}", p.rvm_unavailable);
    let v = p.evaluate(to_rego(&input));
    let i = p.evaluate_interpreted(to_rego(&input));
    match (&v, &i) {
        // Error texts differ between the engines.
        (Verdict::Error(_), Verdict::Error(_)) => {}
        _ => assert_eq!(v, i, "RVM and interpreter disagree for {rego}"),
    }
    v
}

#[test]
fn contract_bool_object_undefined_error() {
    let p = "package agent_iam.authz\ndecision := input.x";
    assert_eq!(
        eval(p, serde_json::json!({"x": true})),
        Verdict::Allow { headers: vec![] }
    );
    assert_eq!(
        eval(p, serde_json::json!({"x": false})),
        Verdict::Deny {
            reason: None,
            status: 403
        }
    );
    assert!(matches!(eval(p, serde_json::json!({})), Verdict::Error(_)));
    assert!(matches!(
        eval(p, serde_json::json!({"x": "yes"})),
        Verdict::Error(_)
    ));
    let obj =
        serde_json::json!({"x": {"allow": false, "reason": "tenant.mismatch", "status": 404}});
    assert_eq!(
        eval(p, obj),
        Verdict::Deny {
            reason: Some("tenant.mismatch".into()),
            status: 404
        }
    );
    let obj = serde_json::json!({"x": {"allow": true, "headers": {"x-tenant": "acme"}}});
    assert_eq!(
        eval(p, obj),
        Verdict::Allow {
            headers: vec![("x-tenant".into(), "acme".into())]
        }
    );
    for bad in [
        serde_json::json!({"allow": "true"}),
        serde_json::json!({"allow": true, "status": 200}),
        serde_json::json!({"allow": true, "headers": {"authorization": "x"}}),
        serde_json::json!({"allow": true, "headers": {"x-a": "a\r\nb: c"}}),
        serde_json::json!({"allow": true, "extra": 1}),
    ] {
        assert!(
            matches!(eval(p, serde_json::json!({"x": bad})), Verdict::Error(_)),
            "{bad}"
        );
    }
}

#[test]
fn data_is_visible_and_errors_deny() {
    let p = "package agent_iam.authz\ndecision if { count(input.items) <= data.limits.max }";
    assert_eq!(
        eval(p, serde_json::json!({"items": [1, 2]})),
        Verdict::Allow { headers: vec![] }
    );
    assert!(matches!(
        eval(p, serde_json::json!({"items": [1, 2, 3]})),
        Verdict::Error(_)
    ));
    let div = "package agent_iam.authz\ndecision := 1 / input.zero";
    assert!(matches!(
        eval(div, serde_json::json!({"zero": 0})),
        Verdict::Error(_)
    ));
}

#[test]
fn runaway_policy_hits_the_limit() {
    let p = "package agent_iam.authz\ndecision if { count([1 | some i in numbers.range(1, 20000); some j in numbers.range(1, 20000)]) > 0 }";
    let start = std::time::Instant::now();
    assert_eq!(eval(p, serde_json::json!({})), Verdict::Limit);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the limit must stop it early"
    );
}

#[test]
fn wall_clock_budget_stops_what_the_instruction_budget_allows() {
    // 400M iterations: far beyond 5 ms, inside a 10M instruction budget for a while.
    let p = "package agent_iam.authz\ndecision := true if input.quick\nelse := false if { count([1 | some i in numbers.range(1, 20000); some j in numbers.range(1, 20000)]) > 0 }";
    let mut c = cfg(p);
    c.max_instructions = 10_000_000;
    c.max_eval_ms = 5;
    let policy = Policy::compile(&c).unwrap();
    let slow = to_rego(&serde_json::json!({"quick": false}));
    let quick = to_rego(&serde_json::json!({"quick": true}));
    assert_eq!(policy.evaluate(slow.clone()), Verdict::Limit);
    // The same policy's VM serves the next request normally, and limits again.
    assert_eq!(policy.evaluate(quick), Verdict::Allow { headers: vec![] });
    assert_eq!(policy.evaluate(slow), Verdict::Limit);
}

#[test]
fn budgets_are_validated() {
    let mut c = cfg("package agent_iam.authz\ndecision := true");
    c.max_instructions = 10;
    c.max_eval_ms = 0;
    let e = Policy::compile(&c).unwrap_err();
    let paths: Vec<_> = e.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["$.policy.max_eval_ms", "$.policy.max_instructions"]);
}

#[test]
fn syntax_errors_and_unknown_builtins_fail_at_load_with_position() {
    let e = Policy::compile(&cfg(
        "package agent_iam.authz\ndecision if {\n  input.x ==\n}",
    ))
    .unwrap_err();
    let text = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("p.rego:") && text.contains("$.policy.modules"),
        "{text}"
    );
    let e = Policy::compile(&cfg(
        "package agent_iam.authz\ndecision if { net.cidr_contains(\"10.0.0.0/8\", input.ip) }",
    ))
    .unwrap_err();
    let text = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("net.cidr_contains"), "{text}");
}

#[test]
fn revision_changes_with_policy_or_data() {
    let a = cfg("package agent_iam.authz\ndecision := true");
    let mut b = cfg("package agent_iam.authz\ndecision := true");
    assert_eq!(revision(&a), revision(&b));
    b.data = Some(serde_json::json!({"limits": {"max": 3}}));
    assert_ne!(revision(&a), revision(&b));
}
