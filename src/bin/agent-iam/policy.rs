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
    Test(TestArgs),
    Eval(EvalArgs),
    Render(RenderArgs),
}

/// Run every `test_*` rule in DIR/**/*_test.rego (like `opa test`).
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every test passed
  1  a test failed or erred, there is no test, or a module does not compile
  2  usage error, or DIR cannot be read")]
pub struct TestArgs {
    /// `text`: `PASS rule` / `FAIL rule` / `ERROR rule: why` lines and a summary; `json`:
    /// {"dir", "passed", "failed", "tests": [{"rule", "result", "error"?}]}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The policy directory (*.rego, data.json).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

/// Evaluate the policy's decision for one `input` document, on the gateway's engine, and
/// check that the interpreter (which runs `policy test`) agrees.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  evaluated (allowed or denied)
  1  a module does not compile, or the interpreter disagrees with the gateway's engine
  2  usage error, or a file that cannot be read")]
pub struct EvalArgs {
    /// The `input` document (JSON; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    input: String,
    /// More `data` (JSON; `-`: standard input), merged over DIR's data.json.
    #[arg(long, value_name = "FILE")]
    data: Option<String>,
    /// The rule that decides.
    #[arg(long, value_name = "RULE", default_value = agent_iam::policy::DEFAULT_ENTRYPOINT)]
    entrypoint: String,
    /// `json`: {"revision", "entrypoint", "engine", "result"}; `text`: one line.
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
        Command::Test(a) => test(a),
        Command::Eval(a) => eval(a),
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

fn test(a: &TestArgs) -> Outcome {
    let dir = &a.dir;
    let pd = load_policy_dir(dir, true)?;
    let results = match agent_iam::policy::run_tests(&pd.modules, pd.data.as_ref()) {
        Ok(r) => r,
        Err(problems) => return Ok(report(&problems)),
    };
    let (mut pass, mut fail) = (0, 0);
    let mut rows = Vec::new();
    // Written at once: a closed pipe (`| head`) is then an error, not a panic.
    let mut text = String::new();
    for (rule, outcome) in &results {
        let (word, error) = match outcome {
            Ok(true) => ("PASS", None),
            Ok(false) => ("FAIL", None),
            Err(e) => ("ERROR", Some(e)),
        };
        if word == "PASS" {
            pass += 1;
        } else {
            fail += 1;
        }
        match (a.format, error) {
            (Format::Text, None) => text.push_str(&format!("{word} {rule}\n")),
            (Format::Text, Some(e)) => text.push_str(&format!("{word} {rule}: {e}\n")),
            (Format::Json, e) => rows.push(json!({
                "rule": rule,
                "result": word.to_ascii_lowercase(),
                "error": e,
            })),
        }
    }
    match a.format {
        Format::Text => text.push_str(&format!(
            "{pass} passed, {fail} failed ({} test(s) in {dir})\n",
            results.len()
        )),
        Format::Json => text.push_str(&format!(
            "{}\n",
            json!({"dir": dir, "passed": pass, "failed": fail, "tests": rows})
        )),
    }
    common::write_out(&text)?;
    Ok(Code::failed_if(fail > 0 || results.is_empty()))
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
    let cfg = agent_iam::policy::PolicyConfig {
        modules: pd.modules,
        data,
        entrypoint: a.entrypoint.clone(),
        max_eval_ms: 1000,
        max_instructions: 10_000_000,
        headers: Vec::new(),
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
