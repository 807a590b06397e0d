//! `agent-iam check`: requests in, the filter's decisions out.

use std::io::Write;

use agent_iam::config::BackendChoice;
use agent_iam::crypto::PureRust;
use agent_iam::pipeline::{DecisionIds, Request};
use agent_iam::worker::local::LocalHost;
use agent_iam::worker::{Checked, Worker};
use serde_json::{json, Value};

use crate::common::{self, Code, Format, Outcome};

/// Decide requests exactly as the filter would (pure-Rust signatures, the inline registry).
///
/// Each line of REQUESTS is a JSON object {"method", "path", "host", "headers": {...}}
/// (optionally "client", the client's address, and "body", the body an MCP route decides
/// on); each output line is its decision, with its audit event as the member "audit", byte
/// for byte as the filter writes it.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every line was decided (allowed or denied)
  1  a line was not a request (its output line is {\"error\": ...}), or the configuration
     is invalid (its problems on standard error)
  2  usage error, or a file that cannot be read or written")]
pub struct Args {
    /// The plugin configuration (JSON; `-`: standard input).
    #[arg(long, value_name = "PLUGIN.json")]
    config: String,
    /// Decision time, UNIX seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// Write the audit events to FILE exactly as the filter writes one worker's stream
    /// (its start event, one event per decision, the final checkpoint), for `audit verify`.
    #[arg(long, value_name = "FILE")]
    audit: Option<String>,
    /// `json`: each decision as the JSON the filter audits; `text`: one line per decision
    /// (decision, status, method, path, reason, decision id).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Per request, the built-in checks in the order they run (passed, denied, denied in
    /// shadow, not run), the policy's verdict and the rules that had a value (json: the
    /// member "explain").
    #[arg(long)]
    explain: bool,
    /// JSON lines, one request each (`-`: standard input).
    #[arg(value_name = "REQUESTS", default_value = "-")]
    requests: String,
}

pub fn run(args: &Args) -> Outcome {
    common::one_stdin(&[&args.config, &args.requests])?;
    let now = common::now_or_clock(args.now);
    let (bytes, cfg) = common::load_config(&args.config)?;
    let cfg = match cfg {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // The policy's sources (the validated configuration holds it compiled): what
    // `--explain` evaluates rule by rule.
    let policy: Option<agent_iam::policy::PolicyConfig> = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("policy").cloned())
        .and_then(|p| serde_json::from_value(p).ok());
    if cfg.signature_backend == BackendChoice::Host {
        eprintln!("agent-iam: signature_backend \"host\" exists only inside Envoy; the CLI verifies with pure Rust (same verdicts on every Wycheproof vector)");
    }
    if cfg.feed.is_some() {
        eprintln!("agent-iam: agents.feed is polled inside Envoy only; the CLI decides with the inline agents.registry");
    }
    let input = common::lines(&args.requests)?;
    let host = LocalHost::at(now as f64);
    let limits = !cfg.limits.is_empty();
    let mut worker = local_worker(&host, cfg);
    if args.explain {
        worker.engine_mut().keep_policy_inputs();
    }
    let mut audit_file = match &args.audit {
        Some(p) => Some((
            p,
            std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|e| format!("--audit {p}: {e}"))?,
            ),
        )),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (n, line) in std::io::BufRead::lines(input).enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", args.requests))?;
        if line.trim().is_empty() {
            continue;
        }
        let text = match request_from_line(&line) {
            Ok(req) => {
                let started = std::time::Instant::now();
                // The stream's `start` event comes before the first decision's event.
                let Checked {
                    decision: d,
                    events,
                } = worker.check(&req, now as f64, || {
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
                });
                if let Some((p, f)) = audit_file.as_mut() {
                    for e in &events {
                        writeln!(f, "{}", e.json()).map_err(|e| format!("--audit {p}: {e}"))?;
                    }
                }
                let mut decision = d.to_json();
                let explained = args
                    .explain
                    .then(|| explain(&d, &decision, policy.as_ref(), limits));
                match (args.format, explained) {
                    (Format::Json, explained) => {
                        if let (Some(e), Some(obj)) = (explained, decision.as_object_mut()) {
                            obj.insert("explain".into(), e);
                        }
                        with_audit(decision.to_string(), events.last().map(|e| e.json()))
                    }
                    (Format::Text, None) => text_line(&decision),
                    (Format::Text, Some(e)) => {
                        format!("{}\n{}", text_line(&decision), explain_text(&e))
                    }
                }
            }
            Err(e) => {
                failed = true;
                let msg = format!("line {}: {e}", n + 1);
                match args.format {
                    Format::Json => json!({ "error": msg }).to_string(),
                    Format::Text => format!("error {msg}"),
                }
            }
        };
        writeln!(out, "{text}").map_err(|e| e.to_string())?;
    }
    if let Some((p, mut f)) = audit_file {
        // The filter ends a worker's stream with a final checkpoint.
        if let Some(last) = worker.finish(now as f64) {
            writeln!(f, "{}", last.json()).map_err(|e| format!("--audit {p}: {e}"))?;
        }
        f.flush().map_err(|e| format!("--audit {p}: {e}"))?;
    }
    Ok(Code::failed_if(failed))
}

/// The filter's worker, on a host without clusters (the inline registry decides), with
/// pure-Rust signatures.
pub fn local_worker(host: &LocalHost, cfg: agent_iam::config::Config) -> Worker {
    Worker::new(
        host,
        cfg,
        Box::new(PureRust),
        DecisionIds::from_entropy(),
        None,
    )
}

/// One line of REQUESTS as a request.
pub fn request_from_line(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    Request::from_json(&v)
}

/// A decision's JSON text with its audit event as the member `audit`, byte for byte as
/// the filter writes it (re-serialising it would reorder its members, and the audit chain
/// hashes the exact text).
fn with_audit(mut decision: String, event: Option<&str>) -> String {
    if let (Some(event), true) = (event, decision.ends_with('}') && decision.len() > 2) {
        decision.pop();
        decision.push_str(",\"audit\":");
        decision.push_str(event);
        decision.push('}');
    }
    decision
}

/// `allow 200 GET /tickets/42 - 2a9f…01`: decision, status, method, path, reason (`-` on
/// allow), decision id. A shadow deny (not enforced) reads `shadow-deny`.
fn text_line(d: &Value) -> String {
    let s = |p: &str| match d.pointer(p) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_owned(),
    };
    let decision = match d.get("enforced") {
        Some(Value::Bool(false)) => format!("shadow-{}", s("/decision")),
        _ => s("/decision"),
    };
    let line = format!(
        "{} {} {} {} {} {}",
        decision,
        s("/status"),
        s("/request/method"),
        s("/request/path"),
        s("/reason"),
        s("/decision_id")
    );
    // An MCP call: its method and name after the request line.
    match d.pointer("/mcp/method").and_then(Value::as_str) {
        Some(method) if !method.is_empty() => {
            match d.pointer("/mcp/name").and_then(Value::as_str) {
                Some(name) => format!("{line} {method} {name}"),
                None => format!("{line} {method}"),
            }
        }
        _ => line,
    }
}

/// What `--explain` adds to a decision: {"checks": [{"check", "result" (passed, denied,
/// shadow-denied, not run; none for a policy not configured), "reason"?, "detail"?}], "policy": {"revision", "verdict", "rules": [{"rule", "file", "line",
/// "value"}]} or null}.
fn explain(
    d: &agent_iam::decision::Decision,
    json: &Value,
    policy: Option<&agent_iam::policy::PolicyConfig>,
    limits: bool,
) -> Value {
    use agent_iam::mode::Check;
    let s = |p: &str| json.pointer(p).and_then(Value::as_str).unwrap_or("-");
    let list = |p: &str| {
        json.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let mut checks = Vec::new();
    if d.reason.is_some() && d.failed.is_none() {
        checks.push(json!({"check": "request", "result": "denied", "reason": s("/reason")}));
    }
    for c in Check::ALL {
        let shadow = d.shadow.iter().find(|x| x.check == c);
        let (result, reason) = if d.failed == Some(c) {
            ("denied", d.reason_code())
        } else if let Some(x) = shadow {
            ("shadow-denied", Some(d.code_of(x.reason)))
        } else if (c == Check::Policy && d.ran.contains(c) && d.policy_revision.is_none())
            || (c == Check::Limits && !limits)
        {
            ("none", None)
        } else if d.ran.contains(c) {
            ("passed", None)
        } else {
            ("not run", None)
        };
        let detail = match (c, result) {
            (_, "not run") => None,
            (Check::Token, _) if d.token.is_some() => Some(format!(
                "{} key {} of {}{}{}",
                s("/token/alg"),
                s("/token/kid"),
                s("/token/iss"),
                identity_detail(json),
                if d.token_cached { " (cached)" } else { "" }
            )),
            (Check::SenderConstraint, _) => Some(match json.get("binding") {
                Some(b) => format!(
                    "{} bound",
                    b.get("method").and_then(Value::as_str).unwrap_or("-")
                ),
                None => "bearer (not bound)".to_owned(),
            }),
            (Check::Delegation, "passed") => Some(format!(
                "agent {} for {}, chain [{}], effective scopes [{}]",
                s("/agent"),
                s("/principal"),
                list("/chain"),
                list("/scopes/effective")
            )),
            (Check::RouteScopes, _) => Some(match json.get("route").and_then(Value::as_str) {
                Some(r) => format!("route {r}"),
                None => "no route matched".to_owned(),
            }),
            (Check::Mcp, _) => json
                .pointer("/mcp/method")
                .and_then(Value::as_str)
                .map(|m| format!("{m} {}", s("/mcp/name"))),
            (Check::Policy, "none") => Some("no policy configured".to_owned()),
            (Check::Limits, "none") => Some("no limits configured".to_owned()),
            (Check::Limits, "shadow-denied" | "denied") => {
                d.retry_after_s.map(|s| format!("retry after {s} s"))
            }
            _ => None,
        };
        let mut entry = serde_json::Map::new();
        entry.insert("check".into(), json!(c.as_str()));
        entry.insert("result".into(), json!(result));
        if let Some(r) = reason {
            entry.insert("reason".into(), json!(r));
        }
        if let Some(text) = detail {
            entry.insert("detail".into(), json!(text));
        }
        checks.push(Value::Object(entry));
    }
    let policy = match (policy, &d.policy_input) {
        (Some(p), Some(input)) => {
            let verdict = match (d.failed, &d.policy_reason) {
                (Some(Check::Policy), Some(r)) => format!("deny {r}"),
                (Some(Check::Policy), None) => format!("deny {}", s("/reason")),
                _ if d.shadow.iter().any(|x| x.check == Check::Policy) => "deny (shadow)".into(),
                _ => "allow".into(),
            };
            let input = serde_json::to_value(input).unwrap_or(Value::Null);
            let rules = match agent_iam::policy::explain_rules(
                &p.modules,
                p.data.as_ref(),
                &p.entrypoint,
                &input,
            ) {
                Ok(rules) => rules
                    .into_iter()
                    .map(|r| json!({"rule": r.rule, "file": r.file, "line": r.line, "value": r.value}))
                    .collect(),
                Err(problems) => problems
                    .into_iter()
                    .map(|p| json!({"rule": p.path, "error": p.message}))
                    .collect::<Vec<_>>(),
            };
            json!({"revision": d.policy_revision, "verdict": verdict, "rules": rules})
        }
        _ => Value::Null,
    };
    json!({"checks": checks, "policy": policy})
}

/// `--explain` as indented lines under the decision's line.
fn explain_text(e: &Value) -> String {
    let mut out = String::new();
    for c in e["checks"].as_array().into_iter().flatten() {
        let s = |k: &str| c.get(k).and_then(Value::as_str);
        out.push_str(&format!(
            "  {:<18} {}",
            s("check").unwrap_or("-"),
            s("result").unwrap_or("-")
        ));
        if let Some(r) = s("reason") {
            out.push_str(&format!(" {r}"));
        }
        if let Some(d) = s("detail") {
            out.push_str(&format!(": {d}"));
        }
        if s("check") == Some("policy") {
            if let Some(p) = e.get("policy").filter(|p| !p.is_null()) {
                out.push_str(&format!(
                    ": {} (revision {})",
                    p["verdict"].as_str().unwrap_or("-"),
                    p["revision"].as_str().unwrap_or("-")
                ));
            }
        }
        out.push('\n');
    }
    if let Some(p) = e.get("policy").filter(|p| !p.is_null()) {
        for r in p["rules"].as_array().into_iter().flatten() {
            match r.get("error").and_then(Value::as_str) {
                Some(err) => out.push_str(&format!(
                    "    {}: error: {err}\n",
                    r["rule"].as_str().unwrap_or("-")
                )),
                None => out.push_str(&format!(
                    "    {} = {} ({}:{})\n",
                    r["rule"].as_str().unwrap_or("-"),
                    r["value"],
                    r["file"].as_str().unwrap_or("-"),
                    r["line"]
                )),
            }
        }
    }
    out.pop();
    out
}

/// What the issuer's identity profile named besides agent, principal and chain (`, profile
/// entra-agent-id: agent type ai_agent, tenant …, client …`); nothing for the default profile
/// when it named nothing.
fn identity_detail(json: &Value) -> String {
    let field = |name: &str| {
        json.pointer(&format!("/identity/{name}"))
            .and_then(Value::as_str)
    };
    let profile = field("profile").unwrap_or("rfc8693");
    let named: Vec<String> = [
        ("agent type", "agent_type"),
        ("tenant", "tenant"),
        ("client", "client"),
    ]
    .into_iter()
    .filter_map(|(label, name)| field(name).map(|v| format!("{label} {v}")))
    .collect();
    match (profile, named.is_empty()) {
        ("rfc8693", true) => String::new(),
        (_, true) => format!(", profile {profile}"),
        (_, false) => format!(", profile {profile}: {}", named.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_name_the_decision_and_its_reason() {
        let d = json!({"decision": "deny", "status": 403, "reason": "scope.insufficient",
                       "request": {"method": "POST", "path": "/tickets/42"}, "decision_id": "ab01"});
        assert_eq!(
            text_line(&d),
            "deny 403 POST /tickets/42 scope.insufficient ab01"
        );
        let allow = json!({"decision": "allow", "status": 200, "reason": null,
                           "request": {"method": "GET", "path": "/"}, "decision_id": "ab02"});
        assert_eq!(text_line(&allow), "allow 200 GET / - ab02");
        let shadow = json!({"decision": "deny", "enforced": false, "status": 401,
                            "reason": "token.missing", "decision_id": "ab04",
                            "request": {"method": "GET", "path": "/"}});
        assert_eq!(
            text_line(&shadow),
            "shadow-deny 401 GET / token.missing ab04"
        );
        let call = json!({"decision": "allow", "status": 200, "reason": null, "decision_id": "ab03",
                          "request": {"method": "POST", "path": "/mcp"},
                          "mcp": {"method": "tools/call", "name": "search_tickets"}});
        assert_eq!(
            text_line(&call),
            "allow 200 POST /mcp - ab03 tools/call search_tickets"
        );
    }

    #[test]
    fn the_audit_member_is_the_event_text_itself() {
        assert_eq!(
            with_audit("{\"a\":1}".into(), Some("{\"z\":0,\"b\":2}")),
            "{\"a\":1,\"audit\":{\"z\":0,\"b\":2}}"
        );
        assert_eq!(with_audit("{}".into(), Some("{}")), "{}");
    }
}
