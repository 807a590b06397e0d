//! Replays test-harness/golden/cases.json through the native pipeline (pure-Rust backend),
//! one test per case: `cargo test --test golden -- --exact "deny alg none"` runs one alone.
//! The Envoy harness (`test-harness/test_golden_envoy.py`) replays the same file through the
//! filter.
//!
//! The file is read into typed structs that refuse unknown members, so a misspelt field
//! (`"expct"`, `"reasn"`, a recipe's `"cliams"`) fails the whole run with its JSON path
//! instead of silently checking nothing. Runs under `libtest-mimic` (`harness = false`):
//! the cases are data read at run time, so editing cases.json rebuilds nothing, and the
//! usual libtest arguments (filters, `--exact`, `--list`, `--test-threads`) work.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::HashSet;
use std::sync::Arc;

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

const CASES: &str = "test-harness/golden/cases.json";
/// The time every case is decided at; token recipes' times are offsets from it.
const NOW: i64 = 1_800_000_000;

/// cases.json.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[allow(dead_code)] // documentation for readers of the file
    about: String,
    /// The plugin configuration every case runs under.
    config: String,
    /// The private keys the recipes are signed with.
    keys: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The token to mint (`src/dev.rs`); none: the request carries no token.
    #[serde(default)]
    token: Option<Recipe>,
    /// The `Authorization` value; `{token}` is replaced by the minted token. Default:
    /// `Bearer {token}` when there is a token, no header when there is none.
    #[serde(default, deserialize_with = "present")]
    authorization: Option<String>,
    #[serde(default)]
    request: RequestSpec,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "default_method")]
    method: String,
    #[serde(default = "default_path")]
    path: String,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: default_method(),
            path: default_path(),
        }
    }
}

fn default_method() -> String {
    "GET".into()
}
fn default_path() -> String {
    "/tickets".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allow,
    Deny,
}

/// What the decision must say. `decision`, `status` and `reason` are required (`reason`
/// is `null` for an allow); the others are checked when present and may not be `null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Verdict,
    status: u16,
    #[serde(deserialize_with = "nullable")]
    reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    agent: Option<String>,
    #[serde(default, deserialize_with = "present")]
    route: Option<String>,
    #[serde(default, deserialize_with = "present")]
    policy_reason: Option<String>,
    #[serde(default, deserialize_with = "present")]
    effective_scopes: Option<Vec<String>>,
}

/// A required member whose value may be `null`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)
}

/// An optional member that, when present, holds a value (`null` is refused: it would read
/// as "not checked").
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// cases.json, typed, with every problem that makes the whole file unusable.
fn load_doc() -> Result<Doc, String> {
    let text = read(CASES)?;
    let doc: Doc = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
        .map_err(|e| format!("{CASES}: {}: {}", e.path(), e.inner()))?;
    if doc.cases.len() < 60 {
        return Err(format!("{CASES}: only {} cases", doc.cases.len()));
    }
    let mut names = HashSet::new();
    for case in &doc.cases {
        if !names.insert(case.name.as_str()) {
            return Err(format!(
                "{CASES}: two cases are named {:?}: a name selects one case",
                case.name
            ));
        }
    }
    Ok(doc)
}

fn load_keys(path: &str) -> Result<DevKeys, String> {
    let v: Value = serde_json::from_str(&read(path)?).map_err(|e| format!("{path}: {e}"))?;
    DevKeys::from_private_json(&v).map_err(|e| format!("{path}: {e}"))
}

fn run_case(case: &Case, keys: &DevKeys, cfg_bytes: &[u8]) -> Result<(), Failed> {
    // A fresh engine per case: no cache carry-over between cases.
    let cfg = Config::from_json(cfg_bytes).map_err(|e| format!("config: {e:?}"))?;
    let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
    engine.start_feed_clock(NOW as f64);
    let token = match &case.token {
        Some(recipe) => Some(mint(keys, recipe, NOW)?),
        None => None,
    };
    let auth = match (&case.authorization, &token) {
        (Some(tpl), t) => Some(tpl.replace("{token}", t.as_deref().unwrap_or(""))),
        (None, Some(t)) => Some(format!("Bearer {t}")),
        (None, None) => None,
    };
    let req = Request {
        body: None,
        client: None,
        method: case.request.method.clone(),
        path: case.request.path.clone(),
        host: "api.agent-iam.test".into(),
        authorization: auth.into_iter().map(String::into_bytes).collect(),
        headers: Vec::new(),
        ..Request::default()
    };
    let got = engine.evaluate(&req, NOW as f64).to_json();
    let want = &case.expect;
    let decision = match want.decision {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    let checks: [(&str, &Value, Option<Value>); 7] = [
        ("decision", &got["decision"], Some(json!(decision))),
        ("status", &got["status"], Some(json!(want.status))),
        ("reason", &got["reason"], Some(json!(want.reason))),
        (
            "agent",
            &got["agent"],
            want.agent.as_ref().map(|a| json!(a)),
        ),
        (
            "route",
            &got["route"],
            want.route.as_ref().map(|r| json!(r)),
        ),
        (
            "policy reason",
            &got["policy"]["reason"],
            want.policy_reason.as_ref().map(|r| json!(r)),
        ),
        (
            "effective scopes",
            &got["scopes"]["effective"],
            want.effective_scopes.as_ref().map(|s| json!(s)),
        ),
    ];
    let failures: Vec<String> = checks
        .into_iter()
        .filter_map(|(what, got, want)| {
            let want = want?;
            (*got != want).then(|| format!("{what} = {got} want {want}"))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

fn cache_hit_still_rechecks_expiry() -> Result<(), Failed> {
    let keys = load_keys("test-harness/keys/demo-private.json")?;
    let cfg = Config::from_json(&std::fs::read("envoy/plugin.json").unwrap()).unwrap();
    let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
    let now = NOW;
    engine.start_feed_clock(now as f64);
    let recipe: Recipe = serde_json::from_str(r#"{"exp":60}"#).unwrap();
    let token = mint(&keys, &recipe, now).unwrap();
    let req = Request {
        body: None,
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
    Ok(())
}

/// A misspelt member anywhere in a case must fail the run, not be skipped.
fn cases_refuse_unknown_members() -> Result<(), Failed> {
    let base = json!({"name": "x", "expect": {"decision": "deny", "status": 401, "reason": null}});
    serde_json::from_value::<Case>(base.clone()).map_err(|e| format!("base case: {e}"))?;
    let typos = [
        ("/expct", json!({})),
        ("/expect/reasn", json!("token.missing")),
        ("/expect/effective_scope", json!([])),
        ("/request/pth", json!("/x")),
        ("/token/cliams", json!({})),
        ("/authorisation", json!("Bearer x")),
    ];
    for (pointer, value) in typos {
        let mut case = base.clone();
        let (parent, member) = pointer.rsplit_once('/').unwrap();
        if parent == "/request" || parent == "/token" {
            case[&parent[1..]] = json!({});
        }
        let target = if parent.is_empty() {
            &mut case
        } else {
            case.pointer_mut(parent).unwrap()
        };
        target[member] = value;
        if serde_json::from_value::<Case>(case.clone()).is_ok() {
            return Err(format!("{pointer} was accepted: {case}").into());
        }
    }
    // Required members and `null` where a value must be.
    for (pointer, value) in [
        ("/expect/reason", None),
        ("/expect/status", None),
        ("/expect/decision", Some(json!("allowed"))),
        ("/expect/agent", Some(Value::Null)),
        ("/expect/policy_reason", Some(Value::Null)),
    ] {
        let mut case = base.clone();
        let member = pointer.rsplit_once('/').unwrap().1;
        let expect = case["expect"].as_object_mut().unwrap();
        match &value {
            None => drop(expect.remove(member)),
            Some(v) => drop(expect.insert(member.into(), v.clone())),
        }
        if serde_json::from_value::<Case>(case.clone()).is_ok() {
            return Err(format!("{pointer} = {value:?} was accepted: {case}").into());
        }
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    // A file that does not parse fails the run whatever the filter: no case is skipped
    // silently.
    let doc = load_doc().unwrap_or_else(|e| {
        eprintln!("golden: {e}");
        std::process::exit(1)
    });
    let keys = Arc::new(load_keys(&doc.keys).unwrap_or_else(|e| {
        eprintln!("golden: {e}");
        std::process::exit(1)
    }));
    let cfg_bytes: Arc<[u8]> = std::fs::read(&doc.config)
        .unwrap_or_else(|e| {
            eprintln!("golden: {}: {e}", doc.config);
            std::process::exit(1)
        })
        .into();
    let mut trials: Vec<Trial> = doc
        .cases
        .into_iter()
        .map(|case| {
            let (keys, cfg_bytes) = (Arc::clone(&keys), Arc::clone(&cfg_bytes));
            Trial::test(case.name.clone(), move || {
                run_case(&case, &keys, &cfg_bytes)
            })
        })
        .collect();
    trials.push(Trial::test(
        "cache_hit_still_rechecks_expiry",
        cache_hit_still_rechecks_expiry,
    ));
    trials.push(Trial::test(
        "cases_refuse_unknown_members",
        cases_refuse_unknown_members,
    ));
    libtest_mimic::run(&args, trials).exit();
}
