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
    /// JSON lines, one request each (`-`: standard input).
    #[arg(value_name = "REQUESTS", default_value = "-")]
    requests: String,
}

pub fn run(args: &Args) -> Outcome {
    common::one_stdin(&[&args.config, &args.requests])?;
    let now = common::now_or_clock(args.now);
    let cfg = match common::load_config(&args.config)?.1 {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if cfg.signature_backend == BackendChoice::Host {
        eprintln!("agent-iam: signature_backend \"host\" exists only inside Envoy; the CLI verifies with pure Rust (same verdicts on every Wycheproof vector)");
    }
    if cfg.feed.is_some() {
        eprintln!("agent-iam: agents.feed is polled inside Envoy only; the CLI decides with the inline agents.registry");
    }
    let input = common::lines(&args.requests)?;
    let host = LocalHost::at(now as f64);
    let mut worker = local_worker(&host, cfg);
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
                let decision = d.to_json();
                match args.format {
                    Format::Json => {
                        with_audit(decision.to_string(), events.last().map(|e| e.json()))
                    }
                    Format::Text => text_line(&decision),
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
