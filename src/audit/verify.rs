//! The offline chain verifier behind `agent-iam audit verify`.

use std::collections::BTreeMap;

use blake2::Digest;

use super::time::parse_rfc3339_micros;
use super::{ChainHash, LOG_PREFIX};

/// How `verify` reads its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyOptions {
    /// Sort each stream by sequence number first (access logs write events when requests
    /// end, not in decision order). Removal and edits are still detected; order is not.
    pub unordered: bool,
    /// The input continues streams begun elsewhere (rotated logs): a stream may begin
    /// after sequence 1.
    pub continued: bool,
    /// Reference time for truncation (UNIX seconds); default: the newest event's time.
    pub now: Option<f64>,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub streams: usize,
    pub events: usize,
    pub decisions: usize,
    /// Lines that carried no event (other log lines).
    pub skipped: usize,
    /// Problems in the order found; empty means the trail is intact.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

struct Seen {
    at: String,
    seq: u64,
    prev: String,
    hash: String,
    time: f64,
    checkpoint_s: Option<u64>,
    dropped: Option<u64>,
    last: bool,
}

/// The event JSON on a line: after [`LOG_PREFIX`] (log files), or the whole line when it
/// is a JSON object (collector batches, access logs). `None` for other lines.
pub fn event_text(line: &str) -> Option<&str> {
    if let Some((_, rest)) = line.split_once(LOG_PREFIX) {
        return Some(rest.trim_end_matches(['\r', '\n']));
    }
    let t = line.trim_end_matches(['\r', '\n']);
    t.starts_with('{').then_some(t)
}

/// Checks the chains in `inputs` (name, text): every stream starts at sequence 1 (unless
/// `continued`), has no gap, no reordering, no duplicate, every `prev` matches the previous
/// event's hash, and no stream stops without a checkpoint long before the newest event.
pub fn verify(inputs: &[(String, String)], opts: VerifyOptions) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut streams: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    let mut newest = f64::MIN;
    for (name, text) in inputs {
        for (n, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", n + 1);
            let Some(json) = event_text(line) else {
                report.skipped += 1;
                continue;
            };
            let v: serde_json::Value = match serde_json::from_str(json) {
                Ok(v) => v,
                Err(e) => {
                    report
                        .problems
                        .push(format!("{at}: not a JSON event ({e}): modified or corrupt"));
                    continue;
                }
            };
            let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
            let (Some(stream), Some(seq), Some(prev), Some(kind), Some(time)) = (
                field("stream"),
                v.get("seq").and_then(serde_json::Value::as_u64),
                field("prev"),
                field("kind"),
                field("time").and_then(parse_rfc3339_micros),
            ) else {
                report.problems.push(format!(
                    "{at}: an event without stream, seq, prev, kind and time: modified or corrupt"
                ));
                continue;
            };
            newest = newest.max(time);
            report.events += 1;
            if kind == "decision" {
                report.decisions += 1;
            }
            streams.entry(stream.to_owned()).or_default().push(Seen {
                at,
                seq,
                prev: prev.to_owned(),
                hash: hex::encode(ChainHash::digest(json.as_bytes())),
                time,
                checkpoint_s: v.get("checkpoint_s").and_then(serde_json::Value::as_u64),
                dropped: v.get("dropped").and_then(serde_json::Value::as_u64),
                last: v.get("final") == Some(&serde_json::Value::Bool(true)),
            });
        }
    }
    report.streams = streams.len();
    if report.events == 0 && report.problems.is_empty() {
        report
            .problems
            .push("no audit events found in the input".into());
    }
    let now = opts.now.unwrap_or(newest);
    for (id, mut events) in streams {
        if opts.unordered {
            events.sort_by_key(|e| e.seq);
        }
        check_stream(&id, &events, opts, now, &mut report.problems);
    }
    report
}

fn check_stream(id: &str, events: &[Seen], opts: VerifyOptions, now: f64, out: &mut Vec<String>) {
    let zero = "0".repeat(64);
    let Some(first) = events.first() else {
        return;
    };
    if !opts.continued && (first.seq != 1 || first.prev != zero) {
        out.push(format!(
            "stream {id}: begins at seq {} ({}): events 1..{} are missing (removed), or pass --continued for rotated logs",
            first.seq,
            first.at,
            first.seq.saturating_sub(1)
        ));
    }
    let present: std::collections::HashSet<u64> = events.iter().map(|e| e.seq).collect();
    let mut checkpoint_s = first.checkpoint_s;
    let mut dropped = first.dropped.unwrap_or(0);
    for pair in events.windows(2) {
        let [a, b] = pair else { continue };
        checkpoint_s = b.checkpoint_s.or(checkpoint_s);
        if b.seq == a.seq {
            out.push(format!(
                "stream {id}: seq {} appears twice ({} and {}): duplicated or replayed",
                b.seq, a.at, b.at
            ));
        } else if b.seq < a.seq {
            out.push(format!(
                "stream {id}: seq {} ({}) comes after seq {} ({}): reordered",
                b.seq, b.at, a.seq, a.at
            ));
        } else if b.seq > a.seq.saturating_add(1) && present.contains(&(a.seq + 1)) {
            out.push(format!(
                "stream {id}: seq {} ({}) comes before seq {}: reordered",
                b.seq,
                b.at,
                a.seq + 1
            ));
        } else if b.seq > a.seq.saturating_add(1) {
            let why = match b.dropped {
                Some(d) if d > dropped => {
                    format!(" (the worker reports {} event(s) dropped)", d - dropped)
                }
                _ => String::new(),
            };
            out.push(format!(
                "stream {id}: seq {}..{} missing between {} and {}: removed{why}",
                a.seq + 1,
                b.seq - 1,
                a.at,
                b.at
            ));
        } else if b.prev != a.hash {
            out.push(format!(
                "stream {id}: seq {} ({}) does not match the hash recorded by seq {} ({}): modified",
                a.seq, a.at, b.seq, b.at
            ));
        }
        dropped = b.dropped.unwrap_or(dropped);
    }
    if let (Some(last), Some(cs)) = (events.last().filter(|e| !e.last), checkpoint_s) {
        // A live stream writes a checkpoint at least every `checkpoint_s`; allow two
        // periods for ticks and delivery.
        let quiet = now - last.time;
        if quiet > 2.0 * cs as f64 + 1.0 {
            out.push(format!(
                "stream {id}: ends at seq {} ({}, {:.0} s before the newest event) without a later checkpoint (every {cs} s): truncated, or the worker stopped",
                last.seq, last.at, quiet
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::stream::{AuditStream, EventContext};
    use crate::decision::{Decision, DecisionIds, Request};
    use crate::pipeline::Engine;
    use crate::reason::Reason;
    use serde_json::{json, Value};

    fn ctx(now: f64) -> EventContext<'static> {
        EventContext {
            now,
            latency_us: 12,
            request_id: Some("req-1"),
            traceparent: None,
        }
    }

    /// A stream of `n` decisions (allowed and denied, hostile request fields) and a
    /// checkpoint, as the lines a log file would hold.
    fn trail(n: usize) -> Vec<String> {
        use crate::crypto::PureRust;
        use crate::dev::{mint, DevKeys, Recipe};
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys = DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let cfg =
            crate::config::Config::from_json(&std::fs::read("envoy/plugin.json").unwrap()).unwrap();
        let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(0xabc));
        let now = 1_800_000_000.5;
        engine.start_feed_clock(now);
        let recipe: Recipe = serde_json::from_value(
            json!({"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}, "scope": "tickets:read"}}),
        )
        .unwrap();
        let token = mint(&keys, &recipe, now as i64).unwrap();
        let mut lines = Vec::new();
        for i in 0..n {
            let auth = if i % 3 == 2 {
                "Bearer not.a.token".to_owned()
            } else {
                format!("Bearer {token}")
            };
            let req = Request {
                client: None,
                method: "GET".into(),
                path: format!("/tickets/x/../{i}"),
                host: "api\"x\n\u{0}\u{202e}<script>".into(),
                authorization: vec![auth.into_bytes()],
                headers: vec![],
                body: None,
                ..Request::default()
            };
            let d = engine.evaluate(&req, now + i as f64);
            for l in engine.audit(&d, &ctx(now + i as f64)) {
                lines.push(format!(
                    "[2026][info][wasm] wasm log agent_iam: {}",
                    l.log_line()
                ));
            }
        }
        let cp = engine.audit_stream().checkpoint(now + n as f64, 0);
        lines.push(cp.log_line().to_owned());
        lines
    }

    fn check(lines: &[String], opts: VerifyOptions) -> VerifyReport {
        verify(&[("audit.log".into(), lines.join("\n"))], opts)
    }

    #[test]
    fn events_carry_the_decision_and_the_chain_verifies() {
        let lines = trail(6);
        assert_eq!(lines.len(), 8, "start + 6 decisions + checkpoint");
        let events: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(event_text(l).unwrap()).unwrap())
            .collect();
        assert_eq!(events[0]["kind"], "start");
        assert_eq!(events[0]["seq"], 1);
        assert_eq!(events[0]["prev"], "0".repeat(64));
        let allow = &events[1];
        assert_eq!(allow["kind"], "decision");
        assert_eq!(allow["decision"], "allow", "{allow}");
        assert_eq!(allow["agent"], "agent:planner");
        assert_eq!(allow["principal"], "user:alice");
        assert_eq!(allow["chain"], json!(["agent:planner"]));
        assert_eq!(allow["scopes"]["effective"], json!(["tickets:read"]));
        assert_eq!(allow["token"]["iss"], "https://idp.agent-iam.test");
        assert_eq!(allow["token"]["sha256"].as_str().unwrap().len(), 64);
        assert_eq!(allow["request"]["path"], "/tickets/0");
        assert_eq!(allow["request"]["original"]["target"], "/tickets/x/../0");
        assert_eq!(allow["request"]["original"]["bytes"], 15);
        assert_eq!(allow["request"]["host"], "api\"x\n\u{0}\u{202e}<script>");
        assert_eq!(allow["request"]["id_source"], "client");
        assert_eq!(allow["request"]["id"], "req-1");
        assert_eq!(allow["latency_us"], 12);
        assert_eq!(allow["stream"], "0000000000000abc");
        assert!(allow["decision_id"]
            .as_str()
            .unwrap()
            .starts_with("0000000000000abc"));
        let deny = &events[3];
        assert_eq!(deny["decision"], "deny");
        assert_eq!(deny["status"], 401);
        assert!(deny["token"]["iss"].is_null());
        assert_eq!(deny["token"]["sha256"].as_str().unwrap().len(), 64);
        // Never the token itself.
        assert!(!lines.iter().any(|l| l.contains("eyJ")));
        // One event per line, whatever the request held.
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let last = events.last().unwrap();
        assert_eq!(last["kind"], "checkpoint");
        assert_eq!(last["decisions"], 6);

        let r = check(&lines, VerifyOptions::default());
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!((r.events, r.decisions, r.streams), (8, 6, 1));
    }

    #[test]
    fn removal_reordering_edits_and_truncation_are_detected() {
        let lines = trail(6);
        let opts = VerifyOptions::default();
        let first = |r: VerifyReport| r.problems.first().cloned().unwrap_or_default();

        let mut removed = lines.clone();
        removed.remove(3);
        assert!(first(check(&removed, opts)).contains("seq 4..4 missing"));

        let mut reordered = lines.clone();
        reordered.swap(2, 3);
        assert!(first(check(&reordered, opts)).contains("reordered"));
        // Sorting (access logs) forgives the order, never an edit.
        assert!(check(
            &reordered,
            VerifyOptions {
                unordered: true,
                ..opts
            }
        )
        .ok());

        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"status\":200", "\"status\":201");
        assert_ne!(edited[2], lines[2]);
        let p = first(check(&edited, opts));
        assert!(p.contains("seq 3") && p.contains("modified"), "{p}");

        let mut renamed = lines.clone();
        renamed[2] = renamed[2].replace("user:alice", "user:bob__");
        assert!(first(check(&renamed, opts)).contains("modified"));

        let mut broken = lines.clone();
        let len = broken[4].len();
        broken[4].truncate(len - 5);
        assert!(first(check(&broken, opts)).contains("not a JSON event"));

        let mut duplicated = lines.clone();
        duplicated.insert(3, lines[2].clone());
        assert!(first(check(&duplicated, opts)).contains("twice"));

        let headless = lines[2..].to_vec();
        assert!(first(check(&headless, opts)).contains("begins at seq 3"));
        assert!(check(
            &headless,
            VerifyOptions {
                continued: true,
                ..opts
            }
        )
        .ok());

        // Cut after the third decision: the stream is quiet long before "now".
        let cut = lines[..4].to_vec();
        let now = 1_800_000_000.5 + 600.0;
        let p = first(check(
            &cut,
            VerifyOptions {
                now: Some(now),
                ..opts
            },
        ));
        assert!(p.contains("truncated"), "{p}");
        assert!(check(
            &lines,
            VerifyOptions {
                now: Some(1_800_000_000.5 + 60.0),
                ..opts
            }
        )
        .ok());
        // A stream that ended with its final checkpoint is complete however old.
        let mut s = AuditStream::new(0xabc, 60, None);
        let d = Decision::denied("x".into(), Reason::TokenMissing);
        let mut ended: Vec<String> = s
            .decision(&d, &ctx(now - 600.0))
            .iter()
            .map(|l| l.log_line().to_owned())
            .collect();
        ended.push(s.finish(now - 590.0, 0).unwrap().log_line().to_owned());
        let r = check(
            &ended,
            VerifyOptions {
                now: Some(now),
                ..opts
            },
        );
        assert!(r.ok(), "{:?}", r.problems);

        assert!(first(check(&[], opts)).contains("no audit events"));
    }

    #[test]
    fn event_text_finds_log_lines_and_bare_json() {
        assert_eq!(
            event_text("[info] wasm log x: agent-iam audit {\"a\":1}"),
            Some("{\"a\":1}")
        );
        assert_eq!(event_text("{\"a\":1}\r\n"), Some("{\"a\":1}"));
        assert_eq!(event_text("[info] something else"), None);
        assert_eq!(event_text("-"), None);
    }
}
