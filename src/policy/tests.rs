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
        decision_cache_entries: 0,
        time_resolution_s: None,
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

fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn data_files_load_at_the_path_of_their_directory_like_opa() {
    let pf = PolicyFiles::from_files(
        &files(&[
            ("data.json", r#"{"top": 1}"#),
            ("agent_iam/data.json", r#"{"max": 3}"#),
            ("agent_iam/limits/data.json", r#"[1, 2]"#),
            (
                "agent_iam/p.rego",
                "package agent_iam\nx := data.agent_iam.max\n",
            ),
        ]),
        false,
    )
    .unwrap();
    assert_eq!(
        pf.data,
        Some(serde_json::json!({"top": 1, "agent_iam": {"max": 3, "limits": [1, 2]}}))
    );
    // Two files setting one value, and a top document that is not an object, are errors.
    let clash = PolicyFiles::from_files(
        &files(&[
            ("data.json", r#"{"agent_iam": {"max": 1}}"#),
            ("agent_iam/data.json", r#"{"max": 3}"#),
        ]),
        false,
    )
    .unwrap_err();
    assert!(clash.contains("sets data.agent_iam.max"), "{clash}");
    let top = PolicyFiles::from_files(&files(&[("data.json", "[1]")]), false).unwrap_err();
    assert!(top.contains("the top data.json must be an object"), "{top}");
}

#[test]
fn the_test_runner_reports_location_output_selection_and_coverage() {
    let modules = files(&[
        (
            "pkg/p.rego",
            "package pkg\n\nimport rego.v1\n\nallow if input.ok\n\nnever if {\n\tinput.x == 1\n\tinput.y == 2\n}\n",
        ),
        (
            "pkg/p_test.rego",
            "package pkg_test\n\nimport rego.v1\n\ntest_allows if {\n\tprint(\"checking allow\")\n\tdata.pkg.allow with input as {\"ok\": true}\n}\n\ntest_fails if {\n\tdata.pkg.allow with input as {\"ok\": false}\n}\n\ntest_errs if {\n\t1 / 0 == 1\n}\n",
        ),
    ]);
    let clock = || 7_u64;
    let run = run_tests_with(
        &modules,
        None,
        &TestOptions {
            select: None,
            clock: Some(&clock),
            coverage: true,
        },
    )
    .unwrap();
    let by = |rule: &str| run.tests.iter().find(|t| t.rule.ends_with(rule)).unwrap();
    let allows = by("test_allows");
    assert_eq!((allows.file.as_str(), allows.line), ("pkg/p_test.rego", 5));
    assert_eq!(allows.outcome, Ok(true));
    assert_eq!(allows.duration_ns, Some(0));
    assert_eq!(allows.output.len(), 1, "{:?}", allows.output);
    assert!(
        allows.output[0].contains("checking allow"),
        "{:?}",
        allows.output
    );
    assert_eq!(
        (by("test_fails").line, &by("test_fails").outcome),
        (10, &Ok(false))
    );
    let err = by("test_errs").outcome.clone().unwrap_err();
    assert!(err.contains("p_test.rego:15"), "{err}");
    // Coverage of the module under test only: `never`'s body was not evaluated.
    let cov = run.coverage.as_ref().unwrap();
    assert_eq!(cov.len(), 1, "{cov:?}");
    assert_eq!(cov[0].path, "pkg/p.rego");
    assert!(cov[0].covered.contains(&5), "{cov:?}");
    assert!(cov[0].not_covered.contains(&8), "{cov:?}");
    let pct = run.coverage_percent().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{pct}");
    // Selection.
    let only = |rule: &str| rule.ends_with("test_allows");
    let run = run_tests_with(
        &modules,
        None,
        &TestOptions {
            select: Some(&only),
            ..TestOptions::default()
        },
    )
    .unwrap();
    assert_eq!(run.tests.len(), 1);
    assert!(run.coverage.is_none());
}

#[test]
fn any_query_evaluates_to_its_value_its_bindings_or_undefined() {
    let modules = files(&[(
        "p.rego",
        "package p\n\nimport rego.v1\n\ndeny contains \"a\" if input.a\n\ndeny contains \"b\" if input.b\n",
    )]);
    let input = serde_json::json!({"a": true, "b": true});
    let q = |query: &str| eval_query(&modules, None, &input, query).unwrap();
    assert_eq!(
        q("data.p.deny"),
        QueryValue::Value(serde_json::json!(["a", "b"]))
    );
    assert_eq!(
        q("count(data.p.deny) + 1"),
        QueryValue::Value(serde_json::json!(3))
    );
    assert_eq!(
        q("x := data.p.deny[_]"),
        QueryValue::Bindings(vec![
            serde_json::json!({"x": "a"}),
            serde_json::json!({"x": "b"})
        ])
    );
    assert_eq!(q("data.p.nothing"), QueryValue::Undefined);
    assert!(eval_query(&modules, None, &input, "data.p.deny[").is_err());
}
