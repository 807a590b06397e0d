//! The `agent-iam` command line as a user runs it: `--help` with exit codes on every
//! subcommand, `-` for standard input, `--format json|text`, and the exit codes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

const PLUGIN: &str = "envoy/plugin.json";
const KEYS: &str = "test-harness/keys/demo-private.json";
const NOW: &str = "1800000100";

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-iam"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails on its arguments exits before it reads standard input; the
    // pipe it closed is not the test's failure.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    assert!(
        written
            .as_ref()
            .map_or_else(|e| e.kind() == std::io::ErrorKind::BrokenPipe, |()| true),
        "stdin: {written:?}"
    );
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// Two requests with a delegated token (read allowed, write denied) and one without.
fn requests() -> String {
    let recipe = r#"{"claims":{"sub":"user:alice","act":{"sub":"agent:tool-search","act":{"sub":"agent:planner"}}}}"#;
    let minted = run(
        &["dev", "mint", "--keys", KEYS, "--now", "1800000000"],
        recipe,
    );
    assert_eq!(code(&minted), 0);
    let token = stdout(&minted).trim().to_owned();
    let line = |m: &str, auth: bool| {
        let headers = if auth {
            serde_json::json!({"authorization": format!("Bearer {token}")})
        } else {
            serde_json::json!({})
        };
        serde_json::json!({"method": m, "path": "/tickets/42", "host": "api.agent-iam.test", "headers": headers})
            .to_string()
    };
    format!(
        "{}\n{}\n{}\n",
        line("GET", true),
        line("POST", true),
        line("GET", false)
    )
}

#[test]
fn every_subcommand_has_help_with_its_exit_codes() {
    for cmd in [
        &[][..],
        &["check"],
        &["validate"],
        &["reasons"],
        &["generate", "envoy"],
        &["generate", "kong-meta"],
        &["policy", "check"],
        &["policy", "test"],
        &["policy", "eval"],
        &["policy", "replay"],
        &["policy", "input"],
        &["policy", "render"],
        &["dev", "keys"],
        &["dev", "config"],
        &["dev", "mint"],
        &["audit", "verify"],
        &["playground"],
        &["version"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = run(&args, "");
        assert_eq!(code(&o), 0, "{cmd:?}");
        assert!(stdout(&o).contains("Exit codes:\n  0  "), "{cmd:?}");
    }
}

#[test]
fn usage_errors_exit_2_and_failed_checks_exit_1() {
    assert_eq!(code(&run(&["bogus"], "")), 2);
    assert_eq!(code(&run(&["check"], "")), 2);
    assert_eq!(code(&run(&["validate", "--config", "/nonexistent"], "")), 2);
    assert_eq!(code(&run(&["audit", "verify"], "")), 2);
    let bad = run(
        &["validate", "--config", "-"],
        r#"{"issuers":[],"clock_skew":1}"#,
    );
    assert_eq!(code(&bad), 1);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("$.clock_skew: unknown field"));
    let failing = run(&["check", "--config", PLUGIN, "--now", NOW], "not json\n");
    assert_eq!(code(&failing), 1);
    assert!(stdout(&failing).starts_with("{\"error\":\"line 1: "));
    // Standard input can feed one FILE argument only.
    let twice = run(&["check", "--config", "-", "-"], "{}");
    assert_eq!(code(&twice), 2);
    assert!(String::from_utf8_lossy(&twice.stderr).contains("only one FILE argument"));
}

#[test]
fn validate_reads_stdin_and_reports_json() {
    let text = std::fs::read_to_string(PLUGIN).unwrap();
    let o = run(&["validate", "--config", "-"], &text);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, "-: ok (1 issuer(s), 3 key(s))\n".to_owned())
    );
    let o = run(&["validate", "--config", PLUGIN, "--format", "json"], "");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"config": PLUGIN, "ok": true, "issuers": 1, "keys": 3})
    );
    let o = run(
        &["validate", "--config", "-", "--format", "json"],
        r#"{"issuers":[],"clock_skew":1,"clock_skew_s":-1}"#,
    );
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"$.clock_skew") && paths.len() >= 2,
        "{paths:?}"
    );
}

/// The hand-edited base configuration has a `policy` without modules (`policy render`
/// adds them): `validate` says so, at the member's path.
#[test]
fn validate_names_what_an_optional_section_lacks() {
    let o = run(&["validate", "--config", "envoy/plugin.base.json"], "");
    assert_eq!(
        (code(&o), String::from_utf8_lossy(&o.stderr).into_owned()),
        (
            1,
            "invalid plugin configuration: $.policy: missing required field `modules`\n".to_owned()
        )
    );
}

#[test]
fn check_reads_a_file_or_stdin_and_writes_json_or_text() {
    let reqs = requests();
    let from_stdin = run(&["check", "--config", PLUGIN, "--now", NOW], &reqs);
    assert_eq!(code(&from_stdin), 0);
    let path = std::env::temp_dir().join(format!("agent-iam-cli-{}.jsonl", std::process::id()));
    std::fs::write(&path, &reqs).unwrap();
    let p = path.to_str().unwrap();
    let from_file = run(&["check", "--config", PLUGIN, "--now", NOW, p], "");
    let decisions = |o: &Output| -> Vec<(String, String)> {
        stdout(o)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["audit"]["kind"], "decision");
                (v["decision"].to_string(), v["reason"].to_string())
            })
            .collect()
    };
    assert_eq!(decisions(&from_stdin), decisions(&from_file));
    assert_eq!(
        decisions(&from_file),
        [
            ("\"allow\"".into(), "null".into()),
            ("\"deny\"".into(), "\"scope.insufficient\"".into()),
            ("\"deny\"".into(), "\"token.missing\"".into()),
        ]
    );
    let text = run(
        &[
            "check", "--config", PLUGIN, "--now", NOW, "--format", "text", p,
        ],
        "",
    );
    let rows: Vec<Vec<String>> = stdout(&text)
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    let firsts: Vec<String> = rows.iter().map(|r| r[..5].join(" ")).collect();
    assert_eq!(
        firsts,
        [
            "allow 200 GET /tickets/42 -",
            "deny 403 POST /tickets/42 scope.insufficient",
            "deny 401 GET /tickets/42 token.missing",
        ]
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn check_explain_names_the_checks_that_ran_and_the_rules_that_held() {
    let o = run(
        &[
            "check",
            "--explain",
            "--config",
            "examples/replay/plugin.json",
            "--now",
            NOW,
            "examples/replay/requests.jsonl",
        ],
        "",
    );
    assert_eq!(code(&o), 0);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks = |d: &Value| -> Vec<String> {
        d["explain"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["check"].as_str().unwrap(),
                    c["result"].as_str().unwrap()
                )
            })
            .collect()
    };
    // Denied by the policy: every built-in check passed, the rule that added the reason
    // is named where it is written.
    let by_policy = lines
        .iter()
        .find(|d| d["reason"] == "policy.denied")
        .unwrap();
    assert_eq!(
        checks(by_policy),
        [
            "token passed",
            "sender_constraint passed",
            "delegation passed",
            "revocation passed",
            "route_scopes passed",
            "mcp not run",
            "limits none",
            "policy denied"
        ]
    );
    let policy = &by_policy["explain"]["policy"];
    assert_eq!(policy["verdict"], "deny tenant.mismatch");
    let deny = policy["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "data.agent_iam.authz.deny")
        .unwrap();
    assert_eq!(deny["value"], json!(["tenant.mismatch"]));
    assert_eq!(
        (deny["file"].as_str(), deny["line"].as_u64()),
        (Some("agent_iam/tenant.rego"), Some(12))
    );
    // Denied by the route's scopes: the policy never ran.
    let by_scope = lines
        .iter()
        .find(|d| d["reason"] == "scope.insufficient")
        .unwrap();
    assert_eq!(
        &checks(by_scope)[4..],
        [
            "route_scopes denied",
            "mcp not run",
            "limits none",
            "policy not run"
        ]
    );
    assert!(by_scope["explain"]["policy"].is_null());
    // Text: indented lines under each decision.
    let o = run(
        &[
            "check",
            "--explain",
            "--format",
            "text",
            "--config",
            "examples/replay/plugin.json",
            "--now",
            NOW,
            "examples/replay/requests.jsonl",
        ],
        "",
    );
    assert!(stdout(&o)
        .contains("  policy             denied policy.denied: deny tenant.mismatch (revision "));
    assert!(stdout(&o).contains(
        "    data.agent_iam.authz.deny = [\"tenant.mismatch\"] (agent_iam/tenant.rego:12)\n"
    ));
}

#[test]
fn audit_verify_reads_stdin_and_reports_json() {
    let trail = std::env::temp_dir().join(format!("agent-iam-cli-{}.ndjson", std::process::id()));
    let t = trail.to_str().unwrap();
    let o = run(
        &["check", "--config", PLUGIN, "--now", NOW, "--audit", t],
        &requests(),
    );
    assert_eq!(code(&o), 0);
    let text = std::fs::read_to_string(&trail).unwrap();
    let ok = run(&["audit", "verify", "-"], &text);
    assert_eq!(
        (code(&ok), stdout(&ok)),
        (
            0,
            "ok: 5 event(s) (3 decision(s)) in 1 stream(s); 0 other line(s) skipped\n".into()
        )
    );
    let edited = text.replacen("\"allow\"", "\"deny\"", 1);
    let bad = run(&["audit", "verify", "--format", "json", "-"], &edited);
    assert_eq!(code(&bad), 1);
    let v: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["events"].clone()),
        (false.into(), 5.into())
    );
    assert!(v["problems"][0].as_str().unwrap().contains("modified"));
    // Two `-` arguments cannot both be standard input.
    assert_eq!(code(&run(&["audit", "verify", "-", "-"], &text)), 2);
    std::fs::remove_file(&trail).unwrap();
}

#[test]
fn reasons_and_policy_results_come_as_json_too() {
    let table = stdout(&run(&["reasons"], ""));
    let v: Value =
        serde_json::from_str(&stdout(&run(&["reasons", "--format", "json"], ""))).unwrap();
    let all = v.as_array().unwrap();
    assert_eq!(all.len() + 2, table.lines().count());
    assert!(all
        .iter()
        .any(|r| r["reason"] == "scope.insufficient" && r["status"] == 403));
    let text = stdout(&run(&["policy", "test", "policies"], ""));
    let o = run(&["policy", "test", "--format", "json", "policies"], "");
    assert_eq!(code(&o), 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let passed = v["passed"].as_u64().unwrap();
    assert!(passed > 0 && v["failed"] == 0);
    assert!(text.ends_with(&format!(
        "{passed} passed, 0 failed ({passed} test(s) in policies)\n"
    )));
    let input = r#"{"chain":[],"token":{"tenant":"acme"},"request":{"method":"GET","path":"/tenants/globex/tickets","segments":["tenants","globex","tickets"],"headers":{}}}"#;
    let o = run(&["policy", "eval", "--input", "-", "policies"], input);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["reason"], "tenant.mismatch");
    let o = run(
        &["policy", "eval", "--input", "-", "--decision", "policies"],
        input,
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["result"]["policy_reason"], "tenant.mismatch");
    let o = run(
        &[
            "policy",
            "eval",
            "--input",
            "-",
            "--decision",
            "--format",
            "text",
            "policies",
        ],
        input,
    );
    assert!(stdout(&o).starts_with("deny policy.denied 403 tenant.mismatch (revision "));
}

#[test]
fn generate_envoy_passes_the_module_sha256_of_the_wasm_it_points_at() {
    let dir = std::env::temp_dir().join(format!("agent-iam-cli-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("agent_iam.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    // sha256sum of those 8 bytes.
    let sha = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";
    let env_line = |out: &Output| {
        stdout(out)
            .lines()
            .find(|l| l.contains("AGENT_IAM_MODULE_SHA256"))
            .map(str::trim)
            .map(str::to_owned)
    };
    let gen = |extra: &[&str]| {
        let wasm = wasm.to_str().unwrap();
        let mut args = vec!["generate", "envoy", "--config", PLUGIN, "--wasm", wasm];
        args.extend_from_slice(extra);
        run(&args, "")
    };
    let out = gen(&[]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        env_line(&out).as_deref(),
        Some(format!("key_values: {{AGENT_IAM_MODULE_SHA256: \"{sha}\"}}").as_str())
    );
    let given = "AB".repeat(32);
    let out = gen(&["--module-sha256", &given]);
    assert!(env_line(&out).unwrap().contains(&"ab".repeat(32)));
    assert_eq!(env_line(&gen(&["--no-module-sha256"])), None);
    assert_eq!(code(&gen(&["--module-sha256", "abc"])), 2);
    // Envoy loads the module from a path that does not exist here: nothing to hash.
    std::fs::remove_file(&wasm).unwrap();
    let out = gen(&[]);
    assert_eq!(code(&out), 0);
    assert_eq!(env_line(&out), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_check_finds_what_evaluation_would_not() {
    let o = run(&["policy", "check", "policies"], "");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).ends_with("policies: 5 module(s), 16 of 16 rule definition(s) reached from data.agent_iam.authz.decision; 0 error(s), 1 warning(s)\n"), "{}", stdout(&o));
    // The clock read is a warning: --strict fails on it.
    assert_eq!(
        code(&run(&["policy", "check", "--strict", "policies"], "")),
        1
    );
    let o = run(&["policy", "check", "--format", "json", "policies"], "");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["reads_time"], true);
    assert!(v["reads"]
        .as_array()
        .unwrap()
        .contains(&json!("input.request.method")));
    assert_eq!(v["builds"]["slim"], false);
    assert_eq!(v["builds"]["needs"][0]["builtin"], "glob.match");
    assert_eq!(v["builds"]["needs"][0]["feature"], "builtins-glob");
    assert_eq!(
        v["decision_cache"]["off"],
        "the policy reads input.time; set policy.time_resolution_s to cache it"
    );
    let o = run(
        &[
            "policy",
            "check",
            "--format",
            "json",
            "--time-resolution-s",
            "1",
            "policies",
        ],
        "",
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let key = v["decision_cache"]["key"].as_array().unwrap();
    assert!(key.contains(&json!("input.time.now_ns")) && key.contains(&json!("input.agent")));
    assert_eq!(
        code(&run(
            &["policy", "check", "--time-resolution-s", "0", "policies"],
            ""
        )),
        2
    );

    let dir = std::env::temp_dir().join(format!("agent-iam-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.rego"),
        "package agent_iam.authz\n\nimport rego.v1\n\ndecision := {\"allow\": ok}\n\nok if input.request.verb == \"GET\"\n\nspare if input.subject.id\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let o = run(&["policy", "check", d], "");
    assert_eq!(code(&o), 1);
    assert_eq!(
        stdout(&o),
        format!(
            "{d}/p.rego:7:7: error: input.request.verb: the gateway never sets this (input.request has: headers, host, method, path, query, segments) [input.unknown]\n\
             {d}/p.rego:9:1: warning: rule data.agent_iam.authz.spare is never evaluated by the entrypoint data.agent_iam.authz.decision [unreachable]\n\
             builds: runs on the default and the slim build\n\
             decision cache: keyed on 2 input member(s): input.request.verb, input.subject.id\n\
             {d}: 1 module(s), 2 of 3 rule definition(s) reached from data.agent_iam.authz.decision; 1 error(s), 1 warning(s)\n"
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_test_exit_codes_are_opa_tests() {
    let dir = std::env::temp_dir().join(format!("agent-iam-cli-{}", std::process::id()));
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("p.rego"),
        "package pkg\n\nimport rego.v1\n\nallow if input.ok\n\nnever if {\n\tinput.x == 1\n}\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("p_test.rego"),
        "package pkg_test\n\nimport rego.v1\n\ntest_allows if {\n\tdata.pkg.allow with input as {\"ok\": true}\n}\n\ntest_fails if {\n\tdata.pkg.allow with input as {\"ok\": false}\n}\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let o = run(&["policy", "test", d], "");
    assert_eq!(code(&o), 2, "a failing test");
    assert!(stdout(&o).starts_with("FAIL data.pkg_test.test_fails (pkg/p_test.rego:9)\n"));
    let o = run(
        &["policy", "test", "--run", "allows", "--threshold", "90", d],
        "",
    );
    assert_eq!(code(&o), 2, "coverage below the threshold");
    assert!(stdout(&o).contains("coverage 50.0% is below the threshold 90%\n"));
    let o = run(
        &["policy", "test", "--run", "allows", "--threshold", "50", d],
        "",
    );
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(
        code(&run(&["policy", "test", "--run", "nothing", d], "")),
        1
    );
    assert_eq!(code(&run(&["policy", "test", "/nonexistent/dir"], "")), 1);
    assert_eq!(
        code(&run(&["policy", "test", "--threshold", "101", d], "")),
        2
    );
    std::fs::write(pkg.join("broken.rego"), "package pkg\n\nallow if {\n").unwrap();
    assert_eq!(
        code(&run(&["policy", "test", d], "")),
        1,
        "does not compile"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_catches_a_deliberate_policy_edit_on_the_recorded_traffic() {
    let args = [
        "policy",
        "replay",
        "--audit",
        "examples/replay/audit.ndjson",
        "--format",
        "json",
        "--max-changes",
        "0",
    ];
    let o = run(&args, "");
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["replayed"].as_u64(), v["changed"].as_u64()),
        (Some(11), Some(0))
    );
    // The tenant rule dropped: the recorded cross-tenant reads become allows.
    let dir = std::env::temp_dir().join(format!("agent-iam-replay-{}", std::process::id()));
    let pkg = dir.join("agent_iam");
    std::fs::create_dir_all(&pkg).unwrap();
    for entry in std::fs::read_dir("policies/agent_iam").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name != "tenant.rego" {
            std::fs::copy(&path, pkg.join(&name)).unwrap();
        }
    }
    let rego = std::fs::read_to_string("policies/agent_iam/tenant.rego").unwrap();
    let edited = rego.replace(
        "deny contains \"tenant.mismatch\"",
        "unused contains \"tenant.mismatch\"",
    );
    assert_ne!(edited, rego);
    std::fs::write(pkg.join("tenant.rego"), edited).unwrap();
    let mut args = args.to_vec();
    let d = dir.to_str().unwrap().to_owned();
    args.extend(["--policies", &d]);
    let o = run(&args, "");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    assert!(changes
        .iter()
        .all(|c| c["kind"] == "deny -> allow" && c["from"] == "policy.denied tenant.mismatch"));
    let _ = std::fs::remove_dir_all(&dir);
}
