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
    /// (`*_test.rego` only `with_tests`) and every `data.json`, each at the path of its
    /// directory as OPA loads them (`a/b/data.json` is `data.a.b`; the top one is `data`
    /// and must be an object). Other files are ignored. Errors name the file (and line,
    /// for JSON); two files that set the same value are an error.
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
                let mut v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))?;
                let dirs: Vec<&str> = path.split('/').collect();
                let dirs = dirs.get(..dirs.len().saturating_sub(1)).unwrap_or_default();
                if dirs.is_empty() && !v.is_object() {
                    return Err(format!("{path}: the top data.json must be an object"));
                }
                for dir in dirs.iter().rev() {
                    let mut obj = serde_json::Map::new();
                    obj.insert((*dir).to_owned(), v);
                    v = serde_json::Value::Object(obj);
                }
                let into = out
                    .data
                    .get_or_insert_with(|| serde_json::Value::Object(Default::default()));
                merge_disjoint(into, v, "data")
                    .map_err(|at| format!("{path}: sets {at}, which another data.json sets"))?;
            }
        }
        Ok(out)
    }
}

/// Merges `from` into `into` where they do not overlap (objects member by member); the
/// path (`data.a.b`) of the first value both set is the error.
fn merge_disjoint(
    into: &mut serde_json::Value,
    from: serde_json::Value,
    at: &str,
) -> Result<(), String> {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                let path = format!("{at}.{k}");
                match a.get_mut(&k) {
                    Some(existing) => merge_disjoint(existing, v, &path)?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        _ => Err(at.to_owned()),
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
    let run = run_tests_with(modules, data, &TestOptions::default())?;
    Ok(run
        .tests
        .into_iter()
        .map(|t| (t.rule, t.outcome.map_err(|e| first_line(&e))))
        .collect())
}

/// What [`run_tests_with`] runs and gathers.
#[derive(Default)]
pub struct TestOptions<'a> {
    /// Only the tests whose rule (`data.pkg.test_x`) this accepts (none: every test).
    pub select: Option<&'a dyn Fn(&str) -> bool>,
    /// A monotonic clock in nanoseconds, to time each test (none: no timing).
    pub clock: Option<&'a dyn Fn() -> u64>,
    /// Gather line coverage of the modules under test (not on wasm32).
    pub coverage: bool,
}

/// One test's run.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// `data.pkg.test_x`.
    pub rule: String,
    /// The module and line that define it.
    pub file: String,
    pub line: usize,
    /// Pass (`Ok(true)`), fail (`Ok(false)`) or the error (with its file:line:col).
    pub outcome: Result<bool, String>,
    pub duration_ns: Option<u64>,
    /// What the test's `print()` calls wrote, in order.
    pub output: Vec<String>,
}

/// Lines of one module that evaluation reached and did not.
#[derive(Debug, Clone)]
pub struct FileCoverage {
    pub path: String,
    pub covered: Vec<u32>,
    pub not_covered: Vec<u32>,
}

impl FileCoverage {
    /// Covered lines in percent of the lines that can be (100 for a module without any).
    pub fn percent(&self) -> f64 {
        percent(self.covered.len(), self.not_covered.len())
    }
}

fn percent(covered: usize, not_covered: usize) -> f64 {
    let all = covered + not_covered;
    if all == 0 {
        return 100.0;
    }
    covered as f64 * 100.0 / all as f64
}

/// Every test's run and, when asked for, the coverage of the modules that are not tests.
#[derive(Debug, Clone, Default)]
pub struct TestRun {
    pub tests: Vec<TestCase>,
    pub coverage: Option<Vec<FileCoverage>>,
}

impl TestRun {
    /// Covered lines of every module, in percent.
    pub fn coverage_percent(&self) -> Option<f64> {
        let files = self.coverage.as_ref()?;
        let covered = files.iter().map(|f| f.covered.len()).sum();
        let not_covered = files.iter().map(|f| f.not_covered.len()).sum();
        Some(percent(covered, not_covered))
    }
}

/// The `test_*` rules a `*_test.rego` module defines (rule, 1-based line), or why none.
fn tests_of(text: &str) -> Result<Vec<(String, usize)>, String> {
    let package = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(str::trim)
        .ok_or("no package line")?;
    let mut tests: Vec<(String, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("test_") {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rule = format!("data.{package}.test_{ident}");
            if !tests.iter().any(|(r, _)| *r == rule) {
                tests.push((rule, i + 1));
            }
        }
    }
    Ok(tests)
}

/// Test runner (what `agent-iam policy test` runs): every selected `test_*` rule of every
/// package a `*_test.rego` module defines, each with its location, time, `print()` output.
pub fn run_tests_with(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
    opts: &TestOptions<'_>,
) -> Result<TestRun, Vec<Problem>> {
    let mut engine = engine_for(modules, data, 5_000)?;
    engine.set_gather_prints(true);
    #[cfg(not(target_arch = "wasm32"))]
    if opts.coverage {
        engine.set_enable_coverage(true);
    }
    let mut run = TestRun::default();
    for (name, text) in modules.iter().filter(|(n, _)| n.ends_with("_test.rego")) {
        let tests = match tests_of(text) {
            Ok(t) => t,
            Err(why) => {
                run.tests.push(TestCase {
                    rule: name.clone(),
                    file: name.clone(),
                    line: 1,
                    outcome: Err(why.to_owned()),
                    duration_ns: None,
                    output: Vec::new(),
                });
                continue;
            }
        };
        for (rule, line) in tests {
            if opts.select.is_some_and(|select| !select(&rule)) {
                continue;
            }
            let started = opts.clock.map(|c| c());
            let outcome = match engine.eval_rule(rule.clone()) {
                Ok(Value::Bool(true)) => Ok(true),
                Ok(Value::Undefined) | Ok(Value::Bool(false)) => Ok(false),
                Ok(other) => Err(format!("test evaluated to {}", type_name(&other))),
                Err(e) => Err(format!("{e:#}")),
            };
            let duration_ns = opts.clock.zip(started).map(|(c, t)| c().saturating_sub(t));
            let output = engine.take_prints().unwrap_or_default();
            run.tests.push(TestCase {
                rule,
                file: name.clone(),
                line,
                outcome,
                duration_ns,
                output,
            });
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    if opts.coverage {
        let report = engine.get_coverage_report().map_err(|e| {
            vec![Problem {
                path: "$.policy.modules".into(),
                message: format!("coverage: {e}"),
            }]
        })?;
        run.coverage = Some(
            report
                .files
                .into_iter()
                .filter(|f| !f.path.ends_with("_test.rego"))
                .map(|f| FileCoverage {
                    path: f.path,
                    covered: f.covered.into_iter().collect(),
                    not_covered: f.not_covered.into_iter().collect(),
                })
                .collect(),
        );
    }
    Ok(run)
}

/// What a query evaluated to ([`eval_query`]).
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// No result: the query is undefined for this input.
    Undefined,
    /// One expression, no variables: its value.
    Value(serde_json::Value),
    /// A query with variables: every binding of them that satisfies it.
    Bindings(Vec<serde_json::Value>),
}

/// Evaluates any Rego query (`data.pkg.rule`, an expression, `x := data.a[_]`) against
/// `input`, on the interpreter `policy test` runs on.
/// A rule's value on one input, where it is defined: what `check --explain` lists.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleValue {
    pub rule: String,
    pub file: String,
    pub line: u32,
    pub value: serde_json::Value,
}

/// The entrypoint, and the rules with conditions it reaches (functions, constants and
/// derived values aside), that have a value on `input` other than `false` or an empty
/// collection: the rules whose conditions held, each with its value, evaluated on the
/// interpreter (the engine `policy test` runs).
pub fn explain_rules(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
    entrypoint: &str,
    input: &serde_json::Value,
) -> Result<Vec<RuleValue>, Vec<Problem>> {
    let report = super::lint::check(modules, data, entrypoint);
    let mut engine = engine_for(modules, data, 5_000)?;
    engine.set_input(super::to_rego(input));
    let shown = |r: &&super::lint::RuleInfo| {
        r.name == entrypoint || (r.reachable && !r.function && r.conditional)
    };
    let mut out = Vec::new();
    for r in report.definitions.iter().filter(shown) {
        let value = engine.eval_rule(r.name.clone()).map_err(|e| {
            vec![Problem {
                path: r.name.clone(),
                message: first_line(&format!("{e:#}")),
            }]
        })?;
        let empty = match &value {
            Value::Undefined | Value::Bool(false) => true,
            Value::Set(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if empty {
            continue;
        }
        let text = value.to_json_str().map_err(|e| {
            vec![Problem {
                path: r.name.clone(),
                message: e.to_string(),
            }]
        })?;
        // A set of literal members (`deny contains "reason" if …`): where the first member
        // present is emitted, rather than where the rule is first defined.
        let (file, line) = match &value {
            Value::Set(members) => members
                .iter()
                .filter_map(|m| m.as_string().ok())
                .find_map(|m| r.emitters.iter().find(|(k, _, _)| **k == **m))
                .map_or((r.file.clone(), r.line), |(_, f, l)| (f.clone(), *l)),
            _ => (r.file.clone(), r.line),
        };
        out.push(RuleValue {
            rule: r.name.clone(),
            file,
            line,
            value: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(out)
}

pub fn eval_query(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
    input: &serde_json::Value,
    query: &str,
) -> Result<QueryValue, Vec<Problem>> {
    let mut engine = engine_for(modules, data, 5_000)?;
    engine.set_input(super::to_rego(input));
    let problem = |message: String| {
        vec![Problem {
            path: "query".into(),
            message,
        }]
    };
    let results = engine
        .eval_query(query.to_owned(), false)
        .map_err(|e| problem(format!("{e:#}")))?;
    let json = |v: &Value| -> Result<serde_json::Value, Vec<Problem>> {
        let text = v.to_json_str().map_err(|e| problem(format!("{e:#}")))?;
        serde_json::from_str(&text).map_err(|e| problem(e.to_string()))
    };
    let results = results.result;
    let first = match results.first() {
        None => return Ok(QueryValue::Undefined),
        Some(r) => r,
    };
    let no_bindings = |b: &Value| match b {
        Value::Object(o) => o.is_empty(),
        Value::Undefined | Value::Null => true,
        _ => false,
    };
    if results.len() == 1 && first.expressions.len() == 1 && no_bindings(&first.bindings) {
        let Some(e) = first.expressions.first() else {
            return Ok(QueryValue::Undefined);
        };
        if e.value == Value::Undefined {
            return Ok(QueryValue::Undefined);
        }
        return Ok(QueryValue::Value(json(&e.value)?));
    }
    let mut all = Vec::new();
    for r in &results {
        all.push(json(&r.bindings)?);
    }
    Ok(QueryValue::Bindings(all))
}
