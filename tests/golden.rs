//! Replays the golden files through the native pipeline (pure-Rust backend), one test per
//! case: `test-harness/golden/cases.json` (the token rules, under the shipped configuration)
//! and `test-harness/golden/profiles.json` (every identity profile's vendor tokens, under
//! `examples/profiles/plugin.json`; its cases are named `profiles: …`).
//! `cargo test --test golden -- --exact "deny alg none"` runs one alone. The Envoy harness
//! (`test-harness/e2e/test_golden_envoy.py`) replays the same files through the filter.
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

/// The golden files, each with the prefix its cases' test names get and the fewest cases it
/// may hold (a file cut short fails the run).
const FILES: [(&str, &str, usize); 2] = [
    ("test-harness/golden/cases.json", "", 60),
    ("test-harness/golden/profiles.json", "profiles: ", 25),
];
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
    /// The page the claim set was taken from.
    #[allow(dead_code)] // documentation for readers of the file
    #[serde(default)]
    source: Option<String>,
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
    /// The model the issuer's profile mapped the token into.
    #[serde(default, deserialize_with = "present")]
    principal: Option<String>,
    #[serde(default, deserialize_with = "present")]
    chain: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    agent_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    tenant: Option<String>,
    #[serde(default, deserialize_with = "present")]
    client: Option<String>,
    #[serde(default, deserialize_with = "present")]
    profile: Option<String>,
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

/// A golden file, typed, with every problem that makes the whole file unusable.
fn load_doc(path: &str, fewest: usize) -> Result<Doc, String> {
    let text = read(path)?;
    let doc: Doc = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
        .map_err(|e| format!("{path}: {}: {}", e.path(), e.inner()))?;
    if doc.cases.len() < fewest {
        return Err(format!("{path}: only {} cases", doc.cases.len()));
    }
    let mut names = HashSet::new();
    for case in &doc.cases {
        if !names.insert(case.name.as_str()) {
            return Err(format!(
                "{path}: two cases are named {:?}: a name selects one case",
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
    let s = |v: &Option<String>| v.as_ref().map(|v| json!(v));
    let checks: [(&str, &Value, Option<Value>); 13] = [
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
        ("principal", &got["principal"], s(&want.principal)),
        (
            "chain",
            &got["chain"],
            want.chain.as_ref().map(|c| json!(c)),
        ),
        (
            "agent type",
            &got["identity"]["agent_type"],
            s(&want.agent_type),
        ),
        ("tenant", &got["identity"]["tenant"], s(&want.tenant)),
        ("client", &got["identity"]["client"], s(&want.client)),
        ("profile", &got["identity"]["profile"], s(&want.profile)),
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
    let fail = |e: String| -> ! {
        eprintln!("golden: {e}");
        std::process::exit(1)
    };
    let mut trials: Vec<Trial> = Vec::new();
    for (path, prefix, fewest) in FILES {
        let doc = load_doc(path, fewest).unwrap_or_else(|e| fail(e));
        let keys = Arc::new(load_keys(&doc.keys).unwrap_or_else(|e| fail(e)));
        let cfg_bytes: Arc<[u8]> = std::fs::read(&doc.config)
            .unwrap_or_else(|e| fail(format!("{}: {e}", doc.config)))
            .into();
        trials.extend(doc.cases.into_iter().map(|case| {
            let (keys, cfg_bytes) = (Arc::clone(&keys), Arc::clone(&cfg_bytes));
            Trial::test(format!("{prefix}{}", case.name), move || {
                run_case(&case, &keys, &cfg_bytes)
            })
        }));
    }
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
