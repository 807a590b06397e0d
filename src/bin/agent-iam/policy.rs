//! `agent-iam policy`: the policy author's loop (test, evaluate, render into the plugin
//! configuration).

use std::collections::BTreeMap;

use agent_iam::config::{Config, Problem};
use agent_iam::policy::{PolicyFiles, Verdict};
use serde_json::{json, Value};

use crate::common::{self, Code, Format, Outcome};

/// Test, evaluate and ship Rego policies.
#[derive(clap::Subcommand)]
pub enum Command {
    Check(CheckArgs),
    Test(TestArgs),
    Eval(EvalArgs),
    Input(InputArgs),
    Replay(ReplayArgs),
    Render(RenderArgs),
}

/// Re-decide recorded decisions with a candidate policy: what would it have decided on
/// that traffic?
///
/// Reads decision events (audit log lines, collector batches, `check --audit` files) whose
/// `policy.input` was recorded (routes with `audit_policy_input`), evaluates the candidate
/// policy on each input and reports the decisions that change: allow → deny, deny → allow
/// and deny → deny for another reason, grouped by route, agent and reasons.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  replayed (and no more decisions changed than --max-changes)
  1  more decisions changed than --max-changes, or a module does not compile
  2  usage error, or a file that cannot be read")]
pub struct ReplayArgs {
    /// Audit files (one event per line, or `agent-iam audit {...}` log lines).
    #[arg(long = "audit", value_name = "FILE", required = true, num_args = 1..)]
    audit: Vec<String>,
    /// The candidate policy directory (*.rego, data.json).
    #[arg(long, value_name = "DIR", default_value = "policies")]
    policies: String,
    /// The plugin configuration whose `policy.entrypoint` and budgets apply (default: the
    /// default entrypoint).
    #[arg(long, value_name = "PLUGIN.json")]
    config: Option<String>,
    /// Fail (exit 1) when more decisions than this change.
    #[arg(long, value_name = "N")]
    max_changes: Option<usize>,
    /// `text`: a summary and the changes grouped; `json`: {"replayed", "unchanged",
    /// "changed", "without_input", "changes": [{"decision_id", "route", "agent", "from",
    /// "to"}]}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Print the `input` document the gateway builds for each request, exactly as its policy
/// sees it (to write tests from real requests).
///
/// REQUESTS are what `agent-iam check` reads: one JSON object per line. A request the
/// built-in checks deny never reaches the policy: its line is {"error": ...}.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every request reached the policy (one input document per line)
  1  a request did not (denied before the policy, or not a request), or the configuration
     is invalid or has no policy
  2  usage error, or a file that cannot be read")]
pub struct InputArgs {
    /// The plugin configuration, with its policy (JSON; `-`: standard input).
    #[arg(long, value_name = "PLUGIN.json")]
    config: String,
    /// Decision time, UNIX seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// JSON lines, one request each (`-`: standard input).
    #[arg(value_name = "REQUESTS", default_value = "-")]
    requests: String,
}

/// Check DIR's modules without evaluating them: parse and compile errors, builtins this
/// build lacks, `input` paths the gateway never sets (schemas/policy-input.schema.json),
/// rules the entrypoint never reaches, and reads of the clock (`input.time`).
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  no error (warnings allowed, unless --strict)
  1  an error (a warning too with --strict), or DIR cannot be read
  2  usage error")]
pub struct CheckArgs {
    /// The rule that decides (`policy.entrypoint`): reachability starts there.
    #[arg(long, value_name = "RULE", default_value = agent_iam::policy::DEFAULT_ENTRYPOINT)]
    entrypoint: String,
    /// Warnings (an unreachable rule, a read of `input.time`) fail too.
    #[arg(long)]
    strict: bool,
    /// `policy.time_resolution_s` of the configuration: whether the decision cache can
    /// take a policy that reads `input.time`.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    time_resolution_s: Option<u64>,
    /// `text`: `file:line:col: error|warning: message [code]` lines, the builds the policy
    /// runs on, the decision cache and a summary; `json`: {"dir", "entrypoint", "rules",
    /// "reachable", "errors", "warnings", "findings": [{"file", "line", "col", "severity",
    /// "code", "message"}], "reads", "reads_time", "builds": {"slim", "needs": [{"builtin",
    /// "feature", "file", "line", "col"}]}, "decision_cache": {"key": [input members]} or
    /// {"off": why}}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The policy directory (*.rego, data.json; *_test.rego are not checked).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

/// Run every `test_*` rule in DIR/**/*_test.rego (like `opa test`).
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every test passed (and coverage reached --threshold); the codes are opa test's
  1  a module does not compile, there is no test, DIR cannot be read
  2  a test failed or erred, coverage is below --threshold, or a usage error")]
pub struct TestArgs {
    /// `text`: `FAIL rule (file:line)` / `ERROR rule (file:line): why` lines (every test's
    /// `PASS`, time and `print()` output with `-v`) and a summary; `json`: {"dir",
    /// "passed", "failed", "tests": [{"rule", "file", "line", "result", "error"?,
    /// "duration_ns", "output"}], "coverage"?}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Every test with its result, time and `print()` output (text format).
    #[arg(short, long)]
    verbose: bool,
    /// Only the tests whose rule (`data.pkg.test_name`) matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    run: Option<String>,
    /// Report which lines of the modules (not the tests) the tests evaluated.
    #[arg(long)]
    coverage: bool,
    /// Fail (exit 2) when coverage is below this percentage (implies --coverage).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    threshold: Option<f64>,
    /// The policy directory (*.rego, data.json).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

/// Evaluate a query (a rule, `data.agent_iam.authz.deny`, any expression) against one
/// `input` document and print its value as JSON; with --decision, the decision the gateway
/// takes (on its engine, checked against the interpreter that runs `policy test`).
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  evaluated (with --decision: allowed or denied)
  1  a module or the query does not compile, the query is undefined (\"undefined\" on
     standard error), or the interpreter disagrees with the gateway's engine
  2  usage error, or a file that cannot be read")]
pub struct EvalArgs {
    /// The query (default: the entrypoint). Its value is printed as one JSON line; a query
    /// with variables (`x := data.a[_]`) prints every binding that satisfies it.
    #[arg(long, value_name = "QUERY", conflicts_with = "decision")]
    query: Option<String>,
    /// The decision view: the entrypoint's value as the gateway reads it (allow, or deny
    /// with its reason and status), on the gateway's engine.
    #[arg(long)]
    decision: bool,
    /// The `input` document (JSON; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    input: String,
    /// More `data` (JSON; `-`: standard input), merged over DIR's data.json.
    #[arg(long, value_name = "FILE")]
    data: Option<String>,
    /// The rule that decides (`policy.entrypoint`).
    #[arg(long, value_name = "RULE", default_value = agent_iam::policy::DEFAULT_ENTRYPOINT)]
    entrypoint: String,
    /// With --decision, `json`: {"revision", "entrypoint", "engine", "result"}; `text`: one
    /// line. A query's value is always JSON.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// The policy directory (*.rego, data.json).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

/// The plugin configuration with DIR's Rego modules and data.json as its `policy`,
/// validated (write it to the file Envoy loads).
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  written
  1  the rendered configuration is invalid (its problems on standard error)
  2  usage error, or a file that cannot be read")]
pub struct RenderArgs {
    /// The plugin configuration to fill (JSON; `-`: standard input).
    #[arg(long, value_name = "PLUGIN.json")]
    config: String,
    /// The policy directory (*.rego, data.json).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

pub fn run(cmd: &Command) -> Outcome {
    match cmd {
        Command::Check(a) => check(a),
        Command::Test(a) => test(a),
        Command::Eval(a) => eval(a),
        Command::Input(a) => input(a),
        Command::Replay(a) => replay(a),
        Command::Render(a) => render(a),
    }
}

/// A policy directory's files (path relative to `dir`, `/`-separated → text): every
/// `*.rego` and `data.json` below it.
pub fn read_policy_dir(dir: &str) -> Result<BTreeMap<String, String>, String> {
    let root = std::path::Path::new(dir);
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    let mut files = BTreeMap::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(name.ends_with(".rego") || name == "data.json") {
            continue;
        }
        let rel: Vec<String> = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        files.insert(rel.join("/"), text);
    }
    Ok(files)
}

fn load_policy_dir(dir: &str, with_tests: bool) -> Result<PolicyFiles, String> {
    let files = read_policy_dir(dir)?;
    let pd = PolicyFiles::from_files(&files, with_tests).map_err(|e| format!("{dir}/{e}"))?;
    if pd.modules.is_empty() {
        return Err(format!("{dir}: no .rego files"));
    }
    Ok(pd)
}

fn report(problems: &[Problem]) -> Code {
    for p in problems {
        eprintln!("{p}");
    }
    Code::Failed
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a percentage (0 to 100)")),
    }
}

fn check(a: &CheckArgs) -> Outcome {
    use agent_iam::policy::lint::Severity;
    let dir = &a.dir;
    let pd = match load_policy_dir(dir, false) {
        Ok(pd) => pd,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Code::Failed);
        }
    };
    let r = agent_iam::policy::lint::check(&pd.modules, pd.data.as_ref(), &a.entrypoint);
    let (errors, warnings) = (r.count(Severity::Error), r.count(Severity::Warning));
    // What the decision cache (when turned on) keys on, or why it cannot take the policy.
    let cache = agent_iam::policy::Policy::compile(&agent_iam::policy::PolicyConfig {
        modules: pd.modules.clone(),
        data: pd.data.clone(),
        entrypoint: a.entrypoint.clone(),
        max_eval_ms: 1000,
        max_instructions: 10_000_000,
        headers: Vec::new(),
        decision_cache_entries: 4096,
        time_resolution_s: a.time_resolution_s,
    })
    .map_err(|_| "the policy does not compile".to_owned())
    .and_then(|p| match p.cache_key_paths() {
        Some(key) => Ok(key),
        None => Err(p.reuse_off.unwrap_or_default()),
    });
    // Which build the policy needs: calls into builtin families the slim build lacks.
    let mut beyond_slim: Vec<(String, &str, String, usize, usize)> = Vec::new();
    for (file, text) in &pd.modules {
        for (line, col, name, feature) in agent_iam::policy::calls_beyond_slim(text) {
            if !beyond_slim.iter().any(|(n, ..)| *n == name) {
                beyond_slim.push((name, feature, file.clone(), line, col));
            }
        }
    }
    let text = match a.format {
        Format::Text => {
            let mut text = String::new();
            for f in &r.findings {
                if let Some(file) = &f.file {
                    text.push_str(&format!("{dir}/{file}:{}:{}: ", f.line, f.col));
                }
                text.push_str(&format!(
                    "{}: {} [{}]\n",
                    f.severity.as_str(),
                    f.message,
                    f.code
                ));
            }
            text.push_str(&if beyond_slim.is_empty() {
                "builds: runs on the default and the slim build\n".to_owned()
            } else {
                let calls: Vec<String> = beyond_slim
                    .iter()
                    .map(|(name, feature, file, line, col)| {
                        format!("{name} ({feature}) at {dir}/{file}:{line}:{col}")
                    })
                    .collect();
                format!("builds: needs the default build: {}\n", calls.join(", "))
            });
            text.push_str(&match &cache {
                Ok(key) => format!(
                    "decision cache: keyed on {} input member(s): {}\n",
                    key.len(),
                    key.join(", ")
                ),
                Err(why) => format!("decision cache: off: {why}\n"),
            });
            text.push_str(&format!(
                "{dir}: {} module(s), {} of {} rule definition(s) reached from {}; {errors} error(s), {warnings} warning(s)\n",
                pd.modules.len(),
                r.reachable,
                r.rules,
                a.entrypoint
            ));
            text
        }
        Format::Json => {
            let findings: Vec<Value> = r
                .findings
                .iter()
                .map(|f| {
                    json!({"file": f.file, "line": f.line, "col": f.col,
                           "severity": f.severity.as_str(), "code": f.code, "message": f.message})
                })
                .collect();
            let v = json!({"dir": dir, "entrypoint": a.entrypoint, "rules": r.rules,
            "reachable": r.reachable, "errors": errors, "warnings": warnings,
            "findings": findings, "reads": r.reads, "reads_time": r.reads_time,
            "builds": {"slim": beyond_slim.is_empty(), "needs": beyond_slim.iter().map(|(name, feature, file, line, col)| {
                json!({"builtin": name, "feature": feature, "file": file, "line": line, "col": col})
            }).collect::<Vec<_>>()},
            "decision_cache": match &cache {
                Ok(key) => json!({"key": key}),
                Err(why) => json!({"off": why}),
            }});
            format!("{v}\n")
        }
    };
    common::write_out(&text)?;
    Ok(Code::failed_if(errors > 0 || (a.strict && warnings > 0)))
}

fn test(a: &TestArgs) -> Outcome {
    let dir = &a.dir;
    // As opa test: what cannot be loaded is status 1 (2 is a failed test).
    let pd = match load_policy_dir(dir, true) {
        Ok(pd) => pd,
        Err(e) => {
            eprintln!("{e}");
            return Ok(Code::Failed);
        }
    };
    let select = match &a.run {
        Some(re) => Some(regex::Regex::new(re).map_err(|e| format!("--run: {e}"))?),
        None => None,
    };
    let matches = |rule: &str| select.as_ref().is_none_or(|re| re.is_match(rule));
    let started = std::time::Instant::now();
    let clock = || u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let opts = agent_iam::policy::TestOptions {
        select: Some(&matches),
        clock: Some(&clock),
        coverage: a.coverage || a.threshold.is_some(),
    };
    let run = match agent_iam::policy::run_tests_with(&pd.modules, pd.data.as_ref(), &opts) {
        Ok(r) => r,
        Err(problems) => return Ok(report(&problems)),
    };
    let passed = run.tests.iter().filter(|t| t.outcome == Ok(true)).count();
    let failed = run.tests.len() - passed;
    let below = match (a.threshold, run.coverage_percent()) {
        (Some(min), Some(got)) => (got < min).then_some((got, min)),
        _ => None,
    };
    // Written at once: a closed pipe (`| head`) is then an error, not a panic.
    let text = match a.format {
        Format::Text => test_text(&run, a.verbose, dir, (passed, failed), below),
        Format::Json => format!("{}\n", test_json(&run, dir, (passed, failed))),
    };
    common::write_out(&text)?;
    if run.tests.is_empty() {
        eprintln!("{dir}: no test (test_* rules in *_test.rego modules) matched");
        return Ok(Code::Failed);
    }
    Ok(if failed > 0 || below.is_some() {
        Code::TESTS_FAILED
    } else {
        Code::Ok
    })
}

/// `opa test`'s text: failures (every test with `verbose`), the coverage, a summary.
fn test_text(
    run: &agent_iam::policy::TestRun,
    verbose: bool,
    dir: &str,
    (passed, failed): (usize, usize),
    below: Option<(f64, f64)>,
) -> String {
    let mut text = String::new();
    for t in &run.tests {
        let (word, error) = match &t.outcome {
            Ok(true) => ("PASS", None),
            Ok(false) => ("FAIL", None),
            Err(e) => ("ERROR", Some(e)),
        };
        if word == "PASS" && !verbose {
            continue;
        }
        text.push_str(&format!("{word} {} ({}:{})", t.rule, t.file, t.line));
        if verbose {
            if let Some(ns) = t.duration_ns {
                text.push_str(&format!(" {}", duration(ns)));
            }
        }
        text.push('\n');
        // regorus's error: the position and message, then the line with a caret.
        for line in error
            .iter()
            .flat_map(|e| e.lines())
            .filter(|l| !l.trim().is_empty())
        {
            text.push_str(&format!("  {line}\n"));
        }
        if verbose || word != "PASS" {
            for line in &t.output {
                text.push_str(&format!("  {line}\n"));
            }
        }
    }
    if let Some(files) = &run.coverage {
        for f in files {
            text.push_str(&format!(
                "coverage {}: {:.1}% ({} of {} lines)",
                f.path,
                f.percent(),
                f.covered.len(),
                f.covered.len() + f.not_covered.len()
            ));
            if !f.not_covered.is_empty() {
                text.push_str(&format!(", not covered: {}", lines(&f.not_covered)));
            }
            text.push('\n');
        }
        if let Some(total) = run.coverage_percent() {
            text.push_str(&format!("coverage: {total:.1}%\n"));
        }
    }
    if let Some((got, min)) = below {
        text.push_str(&format!(
            "coverage {got:.1}% is below the threshold {min}%\n"
        ));
    }
    text.push_str(&format!(
        "{passed} passed, {failed} failed ({} test(s) in {dir})\n",
        run.tests.len()
    ));
    text
}

fn test_json(
    run: &agent_iam::policy::TestRun,
    dir: &str,
    (passed, failed): (usize, usize),
) -> Value {
    let tests: Vec<Value> = run
        .tests
        .iter()
        .map(|t| {
            let (result, error) = match &t.outcome {
                Ok(true) => ("pass", None),
                Ok(false) => ("fail", None),
                Err(e) => ("error", Some(e)),
            };
            json!({"rule": t.rule, "file": t.file, "line": t.line, "result": result,
                   "error": error, "duration_ns": t.duration_ns, "output": t.output})
        })
        .collect();
    let mut out = json!({"dir": dir, "passed": passed, "failed": failed, "tests": tests});
    if let (Some(files), Some(obj)) = (&run.coverage, out.as_object_mut()) {
        let per_file: serde_json::Map<String, Value> = files
            .iter()
            .map(|f| {
                (
                    f.path.clone(),
                    json!({"covered": f.covered, "not_covered": f.not_covered,
                           "coverage": round1(f.percent())}),
                )
            })
            .collect();
        obj.insert(
            "coverage".into(),
            json!({"files": per_file, "coverage": run.coverage_percent().map(round1)}),
        );
    }
    out
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `1.2ms`, `850µs`: a test's time as `opa test -v` shows it.
fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", ns / 1_000),
        _ => format!("{:.1}ms", ns as f64 / 1e6),
    }
}

/// `3-5, 9`: line numbers as ranges.
fn lines(ns: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(&start) = ns.get(i) {
        let mut end = start;
        while ns.get(i + 1) == Some(&(end + 1)) {
            end += 1;
            i += 1;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}

fn eval(a: &EvalArgs) -> Outcome {
    common::one_stdin(&[&a.input, a.data.as_deref().unwrap_or_default()])?;
    let pd = load_policy_dir(&a.dir, false)?;
    let input = common::read_json(&a.input)?;
    let mut data = pd.data;
    if let Some(extra) = &a.data {
        let v = common::read_json(extra)?;
        match &mut data {
            None => data = Some(v),
            Some(d) => agent_iam::policy::merge_json(d, v),
        }
    }
    if !a.decision {
        let query = a.query.as_deref().unwrap_or(&a.entrypoint);
        return match agent_iam::policy::eval_query(&pd.modules, data.as_ref(), &input, query) {
            Err(problems) => Ok(report(&problems)),
            Ok(agent_iam::policy::QueryValue::Undefined) => {
                eprintln!("undefined");
                Ok(Code::Failed)
            }
            Ok(agent_iam::policy::QueryValue::Value(v)) => {
                common::write_out(&format!("{v}\n"))?;
                Ok(Code::Ok)
            }
            Ok(agent_iam::policy::QueryValue::Bindings(all)) => {
                common::write_out(&format!("{}\n", Value::Array(all)))?;
                Ok(Code::Ok)
            }
        };
    }
    let cfg = agent_iam::policy::PolicyConfig {
        modules: pd.modules,
        data,
        entrypoint: a.entrypoint.clone(),
        max_eval_ms: 1000,
        max_instructions: 10_000_000,
        headers: Vec::new(),
        decision_cache_entries: 0,
        time_resolution_s: None,
    };
    let policy = match agent_iam::policy::Policy::compile(&cfg) {
        Ok(p) => p,
        Err(problems) => return Ok(report(&problems)),
    };
    let input = agent_iam::policy::to_rego(&input);
    let verdict = policy.evaluate(input.clone());
    // The gateway's engine decides; the interpreter (which runs `policy test`) must agree.
    let cross_check = policy.evaluate_interpreted(input);
    let result = verdict_json(&verdict);
    match a.format {
        Format::Json => println!(
            "{}",
            json!({"revision": policy.revision, "entrypoint": policy.entrypoint,
                   "engine": policy.engine(), "result": result})
        ),
        Format::Text => println!(
            "{} (revision {}, {}, engine {})",
            verdict_text(&result),
            policy.revision,
            policy.entrypoint,
            policy.engine()
        ),
    }
    if let Some(why) = &policy.rvm_unavailable {
        eprintln!("note: the RVM cannot run this policy ({why}); the gateway uses the interpreter");
    }
    if cross_check != verdict {
        eprintln!(
            "error: the interpreter disagrees with the gateway's engine: {cross_check:?}; please report this policy"
        );
        return Ok(Code::Failed);
    }
    Ok(Code::Ok)
}

fn input(a: &InputArgs) -> Outcome {
    common::one_stdin(&[&a.config, &a.requests])?;
    let now = common::now_or_clock(a.now);
    let cfg = match common::load_config(&a.config)?.1 {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if cfg.policy.is_none() {
        eprintln!("{}: no policy: the gateway builds no input", a.config);
        return Ok(Code::Failed);
    }
    let host = agent_iam::worker::local::LocalHost::at(now as f64);
    let mut worker = crate::check::local_worker(&host, cfg);
    worker.engine_mut().keep_policy_inputs();
    let mut text = String::new();
    let mut failed = false;
    let lines = common::lines(&a.requests)?;
    for (n, line) in std::io::BufRead::lines(lines).enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", a.requests))?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match crate::check::request_from_line(&line) {
            Err(e) => Err(format!("line {}: {e}", n + 1)),
            Ok(req) => {
                let checked = worker.check(&req, now as f64, || 0);
                let d = checked.decision;
                match (d.policy_input, d.reason) {
                    (Some(input), _) => {
                        serde_json::to_string(&input).map_err(|e| format!("line {}: {e}", n + 1))
                    }
                    (None, Some(r)) => Err(format!(
                        "line {}: denied by the built-in checks ({}) before the policy",
                        n + 1,
                        r.as_str()
                    )),
                    (None, None) => Err(format!(
                        "line {}: decided without the policy (nothing for it to decide)",
                        n + 1
                    )),
                }
            }
        };
        match out {
            Ok(input) => text.push_str(&input),
            Err(e) => {
                failed = true;
                text.push_str(&json!({ "error": e }).to_string());
            }
        }
        text.push('\n');
    }
    common::write_out(&text)?;
    Ok(Code::failed_if(failed))
}

fn replay(a: &ReplayArgs) -> Outcome {
    let pd = load_policy_dir(&a.policies, false)?;
    let configured = match &a.config {
        Some(path) => common::read_json(path)?.get("policy").cloned(),
        None => None,
    };
    let entrypoint = configured
        .as_ref()
        .and_then(|p| p.get("entrypoint"))
        .and_then(Value::as_str)
        .unwrap_or(agent_iam::policy::DEFAULT_ENTRYPOINT)
        .to_owned();
    let policy = match agent_iam::policy::Policy::compile(&agent_iam::policy::PolicyConfig {
        modules: pd.modules,
        data: pd.data,
        entrypoint,
        max_eval_ms: 1000,
        max_instructions: 10_000_000,
        headers: Vec::new(),
        decision_cache_entries: 0,
        time_resolution_s: None,
    }) {
        Ok(p) => p,
        Err(problems) => return Ok(report(&problems)),
    };
    let (mut replayed, mut without_input) = (0usize, 0usize);
    let mut changes: Vec<Value> = Vec::new();
    for path in &a.audit {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        for line in text.lines() {
            let Some(event) = agent_iam::audit::event_text(line) else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Value>(event) else {
                continue;
            };
            if e.get("kind").and_then(Value::as_str) != Some("decision") {
                continue;
            }
            let Some(input) = e.pointer("/policy/input") else {
                if e.pointer("/policy/input_sha256").is_some() {
                    without_input += 1;
                }
                continue;
            };
            replayed += 1;
            let before = agent_iam::policy::recorded_outcome(&e);
            let after = agent_iam::policy::candidate_outcome(
                &policy.evaluate(agent_iam::policy::to_rego(input)),
            );
            if before != after {
                changes.push(json!({
                    "decision_id": e.get("decision_id"),
                    "route": e.get("route"),
                    "agent": e.get("agent"),
                    "from": agent_iam::policy::outcome_text(&before),
                    "to": agent_iam::policy::outcome_text(&after),
                    "kind": format!("{} -> {}", before.0, after.0),
                }));
            }
        }
    }
    let changed = changes.len();
    let text = match a.format {
        Format::Json => format!(
            "{}\n",
            json!({"revision": policy.revision, "replayed": replayed, "unchanged": replayed - changed,
                   "changed": changed, "without_input": without_input, "changes": changes})
        ),
        Format::Text => replay_text(&policy.revision, replayed, without_input, &changes),
    };
    common::write_out(&text)?;
    Ok(Code::failed_if(
        a.max_changes.is_some_and(|max| changed > max),
    ))
}

/// The summary, then each kind of change with its groups (route, agent, from → to): how
/// many, and one decision id to look up.
fn replay_text(revision: &str, replayed: usize, without_input: usize, changes: &[Value]) -> String {
    let mut text = format!(
        "replayed {replayed} decision(s) with policy revision {revision}: {} changed, {} unchanged; {without_input} decision(s) recorded without their input\n",
        changes.len(),
        replayed - changes.len()
    );
    let s = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    for kind in ["allow -> deny", "deny -> allow", "deny -> deny"] {
        let of_kind: Vec<&Value> = changes.iter().filter(|c| s(c, "kind") == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        text.push_str(&format!("{kind}: {}\n", of_kind.len()));
        let mut groups: BTreeMap<(String, String, String, String), (usize, String)> =
            BTreeMap::new();
        for c in of_kind {
            let key = (s(c, "route"), s(c, "agent"), s(c, "from"), s(c, "to"));
            let slot = groups.entry(key).or_insert((0, s(c, "decision_id")));
            slot.0 += 1;
        }
        for ((route, agent, from, to), (n, id)) in groups {
            text.push_str(&format!(
                "  {n}  route {route}, agent {agent}: {from} -> {to} (e.g. {id})\n"
            ));
        }
    }
    text
}

fn verdict_json(v: &Verdict) -> Value {
    match v {
        Verdict::Allow { headers } => {
            json!({"decision": "allow", "headers": headers.iter().cloned().collect::<BTreeMap<_, _>>()})
        }
        Verdict::Deny { reason, status } => {
            json!({"decision": "deny", "reason": "policy.denied", "policy_reason": reason, "status": status})
        }
        Verdict::Error(e) => json!({"decision": "deny", "reason": "policy.error", "error": e}),
        Verdict::Limit => json!({"decision": "deny", "reason": "policy.limit"}),
    }
}

/// `allow`, `allow x-a=1`, `deny policy.denied 403 why`, `deny policy.error why`.
fn verdict_text(result: &Value) -> String {
    let mut words = Vec::new();
    for key in ["decision", "reason", "status", "policy_reason", "error"] {
        match result.get(key) {
            Some(Value::String(s)) => words.push(s.clone()),
            Some(Value::Number(n)) => words.push(n.to_string()),
            _ => {}
        }
    }
    if let Some(Value::Object(h)) = result.get("headers") {
        for (k, v) in h {
            words.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    words.join(" ")
}

fn render(a: &RenderArgs) -> Outcome {
    let pd = load_policy_dir(&a.dir, false)?;
    let mut plugin = common::read_json(&a.config)?;
    agent_iam::policy::render_into(&mut plugin, &pd.modules, pd.data)
        .map_err(|e| format!("{}: {e}", a.config))?;
    let rendered = serde_json::to_string_pretty(&plugin).map_err(|e| e.to_string())?;
    if let Err(e) = Config::from_json(rendered.as_bytes()) {
        eprintln!("{e}");
        return Ok(Code::Failed);
    }
    common::write_out(&(rendered + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_as_one_line() {
        let deny = verdict_json(&Verdict::Deny {
            reason: Some("tool_search.paused".into()),
            status: 403,
        });
        assert_eq!(
            verdict_text(&deny),
            "deny policy.denied 403 tool_search.paused"
        );
        let allow = verdict_json(&Verdict::Allow {
            headers: vec![("x-tenant".into(), "acme".into())],
        });
        assert_eq!(verdict_text(&allow), "allow x-tenant=acme");
    }
}
