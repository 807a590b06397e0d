//! What the worker keeps of one request between the host's callbacks: a decision waiting
//! for the request body (a POST on an MCP route: the headers are held until the body the
//! upstream will execute has been read and decided on), and a list response to filter
//! (the tools, resources or prompts the caller may use, never an unfiltered list).

use std::time::{Duration, Instant};

use super::{log, send_deny, Host, Incoming, Level, Outcome, Spent, Worker};
use crate::mcp::ListError;
use crate::pipeline::{BodyWait, Decision, ListFilter};
use crate::reason::Reason;

/// One request's state across the host's callbacks (the host context owns it).
#[derive(Default)]
pub struct Exchange {
    waiting: Option<Waiting>,
    list: Option<ListJob>,
}

/// A decision waiting for the request body.
struct Waiting {
    wait: Box<BodyWait>,
    incoming: Incoming,
    /// Time spent deciding so far (the body's transfer time is not the filter's).
    spent: Duration,
    now: f64,
}

/// A list response to filter.
struct ListJob {
    filter: ListFilter,
    /// The allowed decision the list answers (its refusal is audited like it).
    decision: Decision,
    /// Set once the response headers were seen: the body is an event stream.
    sse: Option<bool>,
    /// The body so far. Each chunk is moved here out of the host's buffer, so the host's
    /// own buffer limit (Envoy: a bare 500) never comes before the filter's bound.
    body: Vec<u8>,
}

impl Exchange {
    /// Whether the worker holds the request's headers until its body has arrived.
    pub fn waits_for_body(&self) -> bool {
        self.waiting.is_some()
    }

    /// Whether the worker filters the response.
    pub fn filters_response(&self) -> bool {
        self.list.is_some()
    }

    pub(super) fn wait(
        &mut self,
        wait: Box<BodyWait>,
        incoming: Incoming,
        spent: Duration,
        now: f64,
    ) {
        self.waiting = Some(Waiting {
            wait,
            incoming,
            spent,
            now,
        });
    }

    pub(super) fn filter_response(&mut self, filter: ListFilter, decision: Decision) {
        self.list = Some(ListJob {
            filter,
            decision,
            sse: None,
            body: Vec::new(),
        });
    }
}

/// The response's `content-type` as the filter reads lists: JSON, an event stream, or
/// neither (`None`).
fn list_media(value: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(value).ok()?;
    let media = text.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Some(false),
        "text/event-stream" => Some(true),
        _ => None,
    }
}

impl Worker {
    /// A chunk of the request body arrived (`body_size`: all of it so far).
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        body_size: usize,
        end_of_stream: bool,
    ) -> Outcome {
        let started = Instant::now();
        let Some(waiting) = ex.waiting.take() else {
            return Outcome::Continue;
        };
        let max = waiting.wait.max_body();
        if body_size > max {
            let detail = format!("over {max} bytes, the route's mcp.max_body_bytes");
            return self.refuse_waiting(
                host,
                ex,
                waiting,
                Reason::McpBodyTooLarge,
                &detail,
                started,
            );
        }
        if !end_of_stream {
            ex.waiting = Some(waiting);
            return Outcome::NeedBody;
        }
        let body = match host.request_body(body_size) {
            Ok(b) if b.len() == body_size => b,
            Ok(_) | Err(_) => {
                log(
                    host,
                    Level::Error,
                    "agent-iam: cannot read the request body",
                );
                let reason = Reason::InternalError;
                return self.refuse_waiting(
                    host,
                    ex,
                    waiting,
                    reason,
                    "the body could not be read",
                    started,
                );
            }
        };
        self.conclude_waiting(host, ex, waiting, started, |engine, wait, now| {
            engine.with_body_shared(wait, &body, now, Some(host))
        })
    }

    /// Decides what `waiting` waited for with `decide`, then edits, audits and answers.
    fn conclude_waiting(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        waiting: Waiting,
        started: Instant,
        decide: impl FnOnce(&mut crate::pipeline::Engine, BodyWait, f64) -> Decision,
    ) -> Outcome {
        let Waiting {
            wait,
            incoming,
            spent,
            now,
        } = waiting;
        // Decided at the body's time: limits and quarantines count when the call arrives,
        // not when its headers did (a body held back would otherwise be counted in a window
        // long gone). A clock going back keeps the headers' time.
        let now = host.now().map_or(now, |t| t.max(now));
        let d = decide(&mut self.engine, *wait, now);
        let spent = Spent {
            since: started,
            before: spent,
        };
        self.conclude(host, ex, d, &incoming, spent, now)
    }

    /// Request trailers: a body the filter waits for must end without them (a body the
    /// upstream could see extended after the decision is never let through).
    pub fn on_request_trailers(&mut self, host: &dyn Host, ex: &mut Exchange) -> Outcome {
        let started = Instant::now();
        match ex.waiting.take() {
            None => Outcome::Continue,
            Some(waiting) => {
                let detail = "request trailers after an MCP message";
                self.refuse_waiting(host, ex, waiting, Reason::McpBodyInvalid, detail, started)
            }
        }
    }

    /// The stream ended (the host's last callback) while the worker still waited for the
    /// body: the client gave up, or the host refused the body itself (its own buffer
    /// limit). Nothing went upstream; the decision is audited as a deny all the same.
    pub fn on_stream_end(&mut self, host: &dyn Host, ex: &mut Exchange) {
        let Some(waiting) = ex.waiting.take() else {
            return;
        };
        let Waiting {
            wait,
            incoming,
            spent,
            now,
        } = waiting;
        let d = wait.refuse(
            Reason::McpBodyInvalid,
            "the request ended before its whole body arrived",
        );
        let latency_us = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX);
        let ctx = crate::audit::EventContext {
            now,
            latency_us,
            request_id: incoming.request_id.as_deref(),
            traceparent: incoming.traceparent.as_deref(),
        };
        let lines = self.engine.audit(&d, &ctx);
        self.audit.count(host, &d, latency_us);
        self.audit.emit_request(host, lines);
        self.report_quarantine(host, &d, now);
    }

    fn refuse_waiting(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        waiting: Waiting,
        reason: Reason,
        detail: &str,
        started: Instant,
    ) -> Outcome {
        self.conclude_waiting(host, ex, waiting, started, |engine, wait, now| {
            engine.refuse_body(wait, reason, detail, now, Some(host))
        })
    }

    /// The response's headers, for a list the worker filters: held (the body is
    /// buffered) when it can be filtered, refused when it cannot.
    pub fn on_response_headers(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        end_of_stream: bool,
    ) -> Outcome {
        let Some(mut job) = ex.list.take() else {
            return Outcome::Continue;
        };
        if end_of_stream {
            // No body: nothing listed.
            return Outcome::Continue;
        }
        let Ok(headers) = host.response_headers() else {
            return self.refuse_list(host, job, "the response headers could not be read");
        };
        let header = |name: &str| {
            headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .collect::<Vec<_>>()
        };
        let encoded = header("content-encoding")
            .iter()
            .any(|v| !v.eq_ignore_ascii_case(b"identity"));
        if encoded {
            return self.refuse_list(host, job, "the list response is content-encoded");
        }
        let sse = match header("content-type").as_slice() {
            [one] => list_media(one),
            _ => None,
        };
        let success = header(":status")
            .first()
            .is_some_and(|s| s.first() == Some(&b'2'));
        if sse.is_none() && !success {
            // An error answered in another form (Envoy's own "no healthy upstream", a
            // server's HTML error page): it lists nothing a client would read as a result.
            return Outcome::Continue;
        }
        let Some(sse) = sse else {
            return self.refuse_list(
                host,
                job,
                "the list response is neither JSON nor an event stream",
            );
        };
        // The filtered body has another length; Envoy frames it anew.
        if host.remove_response_header("content-length").is_err() {
            return self.refuse_list(host, job, "content-length could not be removed");
        }
        job.sse = Some(sse);
        ex.list = Some(job);
        Outcome::NeedBody
    }

    /// A chunk of a list response arrived (`body_size`: all of it so far).
    pub fn on_response_body(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        body_size: usize,
        end_of_stream: bool,
    ) -> Outcome {
        let Some(job) = ex.list.take() else {
            return Outcome::Continue;
        };
        let Some(sse) = job.sse else {
            return self.refuse_list(host, job, "the list response's headers were not seen");
        };
        let mut job = job;
        match host.response_body(body_size) {
            Ok(chunk) if chunk.len() == body_size => job.body.extend_from_slice(&chunk),
            Ok(_) | Err(_) => {
                return self.refuse_list(host, job, "the list response could not be read")
            }
        }
        if job.body.len() > job.filter.max_bytes {
            return self.refuse_list(host, job, "the list response is too large to filter");
        }
        // The host keeps nothing of it until the filtered list replaces the last chunk.
        if host.set_response_body(body_size, b"").is_err() {
            return self.refuse_list(host, job, "the list response could not be held");
        }
        if !end_of_stream {
            ex.list = Some(job);
            return Outcome::NeedBody;
        }
        let body = std::mem::take(&mut job.body);
        let f = &job.filter;
        let engine = &self.engine;
        let allowed = |key: &str| engine.list_allows(f, key);
        let filtered = if sse {
            crate::mcp::filter_sse(&body, &f.id, f.kind, &allowed, f.max_bytes)
        } else {
            crate::mcp::filter_json(&body, &f.id, f.kind, &allowed, f.max_bytes)
        };
        match filtered {
            Ok(out) => {
                if host.set_response_body(0, &out.body).is_err() {
                    return self.refuse_list(host, job, "the filtered list could not be written");
                }
                self.audit.count_list(host, out.removed);
                Outcome::Continue
            }
            Err(e) => {
                let detail = list_error(&e);
                self.refuse_list(host, job, &detail)
            }
        }
    }

    /// Response trailers before the list was filtered: refused (fail closed).
    pub fn on_response_trailers(&mut self, host: &dyn Host, ex: &mut Exchange) -> Outcome {
        match ex.list.take() {
            None => Outcome::Continue,
            Some(job) => self.refuse_list(host, job, "response trailers after a list"),
        }
    }

    /// Replaces a list response the filter cannot filter with a JSON-RPC error, audited
    /// as a deny of the call.
    fn refuse_list(&mut self, host: &dyn Host, job: ListJob, detail: &str) -> Outcome {
        let mut d = job.decision;
        d.decision_id = self.engine.next_decision_id();
        d.reason = Some(Reason::McpListUnfilterable);
        d.detail = Some(detail.to_owned());
        d.policy_headers.clear();
        let now = host
            .now()
            .unwrap_or_else(|| self.engine.audit_stream().last_event_at());
        let ctx = crate::audit::EventContext {
            now,
            latency_us: 0,
            request_id: None,
            traceparent: None,
        };
        let lines = self.engine.audit(&d, &ctx);
        self.audit.count(host, &d, 0);
        self.audit.emit_request(host, lines);
        log(
            host,
            Level::Warn,
            &format!(
                "agent-iam: refused a list response ({detail}); decision {}",
                d.decision_id
            ),
        );
        send_deny(host, &d, None, None, None)
    }

    /// Answers the protected resource's metadata document (RFC 9728), without a token.
    pub(super) fn answer_metadata(
        &mut self,
        host: &dyn Host,
        incoming: &Incoming,
        doc: &str,
        started: Instant,
        now: f64,
    ) -> Outcome {
        let d = self.engine.metadata_decision(&incoming.req);
        let lines = {
            let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let ctx = crate::audit::EventContext {
                now,
                latency_us,
                request_id: incoming.request_id.as_deref(),
                traceparent: incoming.traceparent.as_deref(),
            };
            self.engine.audit(&d, &ctx)
        };
        self.audit.count(host, &d, 0);
        self.audit.emit_request(host, lines);
        let headers = [
            ("content-type", "application/json"),
            ("cache-control", "max-age=300"),
        ];
        let body = if incoming.req.method == "HEAD" {
            ""
        } else {
            doc
        };
        super::host::answer(host, 200, &headers, body.as_bytes());
        Outcome::Answered
    }
}

fn list_error(e: &ListError) -> String {
    crate::decision::clip(&e.to_string())
}
