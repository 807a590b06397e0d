//! One decision case, for the authoring tools: what a recorded decision event says the
//! policy decided, what a candidate policy decides on the same input (`policy replay`, the
//! playground's replay), and the `_test.rego` that pins a case's verdict (the playground's
//! export).

use std::collections::BTreeMap;

use serde_json::Value;

use super::tools::{eval_query, QueryValue};
use super::verdict::Verdict;
use crate::problem::Problem;

/// A policy outcome as a decision event records it: the decision, its reason and the
/// policy's own reason.
pub type Outcome = (String, Option<String>, Option<String>);

/// What the policy decided in a recorded event: its deny (enforced or in shadow), else allow.
pub fn recorded_outcome(e: &Value) -> Outcome {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let policy_reason = s(e.get("policy_reason"));
    if let Some(r) = s(e.get("reason")).filter(|r| r.starts_with("policy.")) {
        return ("deny".into(), Some(r), policy_reason);
    }
    let shadowed = e.get("shadow").and_then(Value::as_array).and_then(|all| {
        all.iter()
            .find(|x| x.get("check").and_then(Value::as_str) == Some("policy"))
    });
    match shadowed {
        Some(x) => ("deny".into(), s(x.get("reason")), policy_reason),
        None => ("allow".into(), None, None),
    }
}

/// What a candidate policy's verdict is, in the same terms.
pub fn candidate_outcome(v: &Verdict) -> Outcome {
    match v {
        Verdict::Allow { .. } => ("allow".into(), None, None),
        Verdict::Deny { reason, .. } => {
            ("deny".into(), Some("policy.denied".into()), reason.clone())
        }
        Verdict::Error(_) => ("deny".into(), Some("policy.error".into()), None),
        Verdict::Limit => ("deny".into(), Some("policy.limit".into()), None),
    }
}

/// `allow`, `policy.error`, `policy.denied tenant.mismatch`.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        (d, None, _) => d.clone(),
        (_, Some(r), None) => r.clone(),
        (_, Some(r), Some(p)) => format!("{r} {p}"),
    }
}

/// Deepest bracket nesting written inline in an exported test (the module screen refuses
/// more than [`super::MAX_NESTING`]); a deeper input is embedded as JSON text.
const INLINE_DEPTH: usize = 12;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `get /tenants/acme/tickets` → `get_tenants_acme_tickets` (lower-case letters, digits, `_`).
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
        if out.len() >= 48 {
            break;
        }
    }
    out.trim_matches('_').to_owned()
}

/// A Rego module that pins the policy's verdict on `input`: the case as a rule and a
/// `test_…` rule asserting what the entrypoint decides now (allow or deny, the reason and
/// the status of an object decision; the value of a boolean one; undefined). With
/// `existing` (an earlier export), the case and its test are appended to it, numbered on.
/// The modules must compile: the verdict comes from evaluating them (on the interpreter,
/// the engine `policy test` runs).
pub fn test_module(
    modules: &BTreeMap<String, String>,
    data: Option<&Value>,
    entrypoint: &str,
    input: &Value,
    existing: Option<&str>,
) -> Result<String, Vec<Problem>> {
    let value = eval_query(modules, data, input, entrypoint)?;
    let root = entrypoint
        .strip_prefix("data.")
        .and_then(|p| p.split('.').next())
        .unwrap_or("agent_iam");
    let existing = existing.filter(|t| !t.trim().is_empty());
    let n = existing.map_or(0, |t| t.matches("\ncase_").count()) + 1;
    let s = |p: &str| input.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (method, path) = (s("/request/method"), s("/request/path"));
    let who = match (s("/agent/id"), s("/subject/id")) {
        (a, p) if a == p || p.is_empty() => a.to_owned(),
        (a, p) => format!("{a} for {p}"),
    };
    let (checks, verdict) = assertions(&value);
    let mut name = format!("test_{}_{}", slug(&format!("{method} {path}")), verdict);
    if n > 1 {
        name.push_str(&format!("_{n}"));
    }
    let literal = if depth(input) <= INLINE_DEPTH {
        serde_json::to_string_pretty(input).unwrap_or_default()
    } else {
        let text = serde_json::to_string(input).unwrap_or_default();
        format!(
            "json.unmarshal({})",
            serde_json::to_string(&text).unwrap_or_default()
        )
    };
    let mut out = match existing {
        Some(t) => format!("{}\n", t.trim_end()),
        None => format!("# Cases exported from the agent-iam playground: each pins what {entrypoint}\n# decides on one request's `input`. Rename the tests, trim the inputs to what matters.\npackage {root}.playground_test\n\nimport rego.v1\n"),
    };
    out.push_str(&format!(
        "\n# {method} {path} by {who}\ncase_{n} := {literal}\n\n{name} if {{\n"
    ));
    match &value {
        QueryValue::Value(_) => {
            out.push_str(&format!("\td := {entrypoint} with input as case_{n}\n"));
            for c in checks {
                out.push_str(&format!("\t{c}\n"));
            }
        }
        _ => out.push_str(&format!("\tnot {entrypoint} with input as case_{n}\n")),
    }
    out.push_str("}\n");
    Ok(out)
}

/// The conditions on `d` (the entrypoint's value) and a word for the test's name.
fn assertions(value: &QueryValue) -> (Vec<String>, &'static str) {
    let lit = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    match value {
        QueryValue::Value(Value::Bool(b)) => (
            vec![format!("d == {b}")],
            if *b { "is_allowed" } else { "is_denied" },
        ),
        QueryValue::Value(Value::Object(o)) => {
            let allow = o.get("allow").and_then(Value::as_bool).unwrap_or(false);
            let mut checks = vec![format!("d.allow == {allow}")];
            if !allow {
                for key in ["reason", "status"] {
                    if let Some(v) = o.get(key) {
                        checks.push(format!("d.{key} == {}", lit(v)));
                    }
                }
            }
            (checks, if allow { "is_allowed" } else { "is_denied" })
        }
        QueryValue::Value(v) => (vec![format!("d == {}", lit(v))], "decides"),
        _ => (Vec::new(), "is_undefined"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{run_tests, PolicyFiles};

    fn shipped() -> PolicyFiles {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/agent_iam");
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            files.insert(
                format!("agent_iam/{name}"),
                std::fs::read_to_string(format!("{dir}/{name}")).unwrap(),
            );
        }
        PolicyFiles::from_files(&files, false).unwrap()
    }

    /// The exported module, added to the policies, passes `policy test`; changing the
    /// policy's verdict makes it fail: it pins the verdict, it does not restate it.
    #[test]
    fn an_exported_case_passes_until_the_verdict_changes() {
        let pf = shipped();
        let entry = crate::policy::DEFAULT_ENTRYPOINT;
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/input.json"))
                .unwrap(),
        )
        .unwrap();
        let mut allowed = input.clone();
        allowed["request"]["path"] = "/tenants/acme/tickets".into();
        allowed["request"]["segments"] = serde_json::json!(["tenants", "acme", "tickets"]);
        let one = test_module(&pf.modules, pf.data.as_ref(), entry, &input, None).unwrap();
        let two = test_module(&pf.modules, pf.data.as_ref(), entry, &allowed, Some(&one)).unwrap();
        assert!(
            one.contains(
                "\td.allow == false\n\td.reason == \"tenant.mismatch\"\n\td.status == 403\n"
            ),
            "{one}"
        );
        assert!(
            two.starts_with(&one) && two.contains("case_2 := {"),
            "{two}"
        );
        let mut modules = pf.modules.clone();
        modules.insert("agent_iam/playground_test.rego".into(), two.clone());
        let results = run_tests(&modules, pf.data.as_ref()).unwrap();
        let ours: Vec<_> = results
            .iter()
            .filter(|(r, _)| r.contains("playground_test"))
            .collect();
        assert_eq!(ours.len(), 2, "{results:?}");
        assert!(ours.iter().all(|(_, o)| *o == Ok(true)), "{results:?}");
        // Without the tenant rule the first case is allowed: its test fails.
        let tenant = "agent_iam/tenant.rego";
        let edited =
            modules[tenant].replace("deny contains \"tenant.mismatch\"", "unused contains \"x\"");
        modules.insert(tenant.into(), edited);
        let results = run_tests(&modules, pf.data.as_ref()).unwrap();
        let failed: Vec<_> = results
            .iter()
            .filter(|(_, o)| *o != Ok(true))
            .map(|(r, _)| r.as_str())
            .collect();
        assert_eq!(failed.len(), 1, "{results:?}");
        assert!(failed[0].contains("is_denied"), "{failed:?}");
    }

    #[test]
    fn a_deep_input_is_embedded_as_json_text() {
        let pf = shipped();
        let mut deep = serde_json::json!(1);
        for _ in 0..20 {
            deep = serde_json::json!({ "a": deep });
        }
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/input.json"))
                .unwrap(),
        )
        .unwrap();
        let mut input = input;
        input["token"]["nested"] = deep;
        let text = test_module(
            &pf.modules,
            pf.data.as_ref(),
            crate::policy::DEFAULT_ENTRYPOINT,
            &input,
            None,
        )
        .unwrap();
        assert!(text.contains("case_1 := json.unmarshal(\""), "{text}");
        let mut modules = pf.modules.clone();
        modules.insert("agent_iam/playground_test.rego".into(), text);
        let results = run_tests(&modules, pf.data.as_ref()).unwrap();
        assert!(
            results
                .iter()
                .filter(|(r, _)| r.contains("playground_test"))
                .all(|(_, o)| *o == Ok(true)),
            "{results:?}"
        );
    }
}
