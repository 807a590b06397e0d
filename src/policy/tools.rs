//! Authoring tools for the CLI and the playground, not compiled into the filter: reading a
//! policy directory, rendering it into a plugin configuration, and the Rego test runner.

use std::collections::BTreeMap;

use regorus::Value;

use super::compile::engine_for;
use super::first_line;
use super::verdict::type_name;
use crate::problem::Problem;

/// A policy directory's contents: its Rego modules and its data document.
#[derive(Debug, Clone, Default)]
pub struct PolicyFiles {
    pub modules: BTreeMap<String, String>,
    pub data: Option<serde_json::Value>,
}

impl PolicyFiles {
    /// From a policy directory's files (relative path → text): every `.rego` module
    /// (`*_test.rego` only `with_tests`) and every `data.json`, merged in path order.
    /// Other files are ignored. Errors name the file (and line, for JSON).
    pub fn from_files(
        files: &BTreeMap<String, String>,
        with_tests: bool,
    ) -> Result<PolicyFiles, String> {
        let mut out = PolicyFiles::default();
        for (path, text) in files {
            let name = path.rsplit('/').next().unwrap_or(path);
            if name.ends_with(".rego") && (with_tests || !name.ends_with("_test.rego")) {
                out.modules.insert(path.clone(), text.clone());
            } else if name == "data.json" {
                let v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))?;
                match &mut out.data {
                    None => out.data = Some(v),
                    Some(d) => merge_json(d, v),
                }
            }
        }
        Ok(out)
    }
}

/// Deep-merges `from` into `into`: objects member by member, anything else replaces
/// (several `data.json` files make one policy data document).
pub fn merge_json(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Puts `modules` and `data` into a plugin configuration's `policy` (what `agent-iam
/// policy render` and the playground do); the other `policy` members are kept.
pub fn render_into(
    plugin: &mut serde_json::Value,
    modules: &BTreeMap<String, String>,
    data: Option<serde_json::Value>,
) -> Result<(), String> {
    let obj = plugin
        .as_object_mut()
        .ok_or("the plugin configuration is not a JSON object")?;
    let mut policy = match obj.get("policy") {
        Some(serde_json::Value::Object(p)) => p.clone(),
        None => serde_json::Map::new(),
        Some(_) => return Err("`policy` must be an object".into()),
    };
    policy.insert(
        "modules".into(),
        serde_json::Value::Object(
            modules
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        ),
    );
    match data {
        Some(d) => {
            policy.insert("data".into(), d);
        }
        None => {
            policy.remove("data");
        }
    }
    obj.insert("policy".into(), serde_json::Value::Object(policy));
    Ok(())
}
/// One Rego test: the rule path and pass (`Ok(true)`), fail (`Ok(false)`) or error.
pub type TestResult = (String, Result<bool, String>);

/// Test runner: every `test_*` rule of every package defined in a `*_test.rego` module.
pub fn run_tests(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
) -> Result<Vec<TestResult>, Vec<Problem>> {
    let mut engine = engine_for(modules, data, 5_000)?;
    let mut results = Vec::new();
    for (name, text) in modules.iter().filter(|(n, _)| n.ends_with("_test.rego")) {
        let Some(package) = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("package "))
            .map(str::trim)
        else {
            results.push((name.clone(), Err("no package line".into())));
            continue;
        };
        let mut tests: Vec<String> = Vec::new();
        for line in text.lines() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("test_") {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let rule = format!("data.{package}.test_{ident}");
                if line.starts_with("test_") && !tests.contains(&rule) {
                    tests.push(rule);
                }
            }
        }
        for rule in tests {
            let outcome = match engine.eval_rule(rule.clone()) {
                Ok(Value::Bool(true)) => Ok(true),
                Ok(Value::Undefined) | Ok(Value::Bool(false)) => Ok(false),
                Ok(other) => Err(format!("test evaluated to {}", type_name(&other))),
                Err(e) => Err(first_line(&format!("{e:#}"))),
            };
            results.push((rule, outcome));
        }
    }
    Ok(results)
}
