//! Pushes quarantine reports to the Shared Signals transmitter (`quarantine.report`, RFC
//! 8935): one SET per quarantine this worker started, queued, sent one at a time from the
//! root context (its ticks and call answers), in order.
//!
//! A `2xx` answer delivers it. A `4xx` means the transmitter refuses that SET (RFC 8935
//! §2.3: it will never take it): it is dropped, counted and logged with the transmitter's
//! `err`. Anything else (`5xx`, no answer, no route to the cluster) keeps it first in the
//! queue and retries with exponential backoff (100 ms doubling, at most 30 s). The queue
//! is bounded (`max_queue`): beyond it the oldest report is dropped and counted.

use std::collections::VecDeque;

use super::host::{log, Host, Level, Metric};
use super::poll::Backoff;
use crate::quarantine::report::Reporter;
use crate::quarantine::Evidence;

const BACKOFF_MAX_MS: u64 = 30_000;

/// One report waiting or in flight.
struct Report {
    jti: String,
    set: String,
}

pub struct ReportOut {
    reporter: Reporter,
    queue: VecDeque<Report>,
    in_flight: Option<(u32, Report, u64)>,
    backoff: Backoff,
    sent: Metric,
    refused: Metric,
    failed: Metric,
    dropped: Metric,
}

impl ReportOut {
    pub fn new(host: &dyn Host, reporter: &Reporter) -> ReportOut {
        let counter = |name: &str| Metric::counter(host, name);
        ReportOut {
            reporter: reporter.clone(),
            queue: VecDeque::new(),
            in_flight: None,
            backoff: Backoff::default(),
            sent: counter("agent_iam.quarantine.reports_sent_total"),
            refused: counter("agent_iam.quarantine.reports_refused_total"),
            failed: counter("agent_iam.quarantine.report_failures_total"),
            dropped: counter("agent_iam.quarantine.reports_dropped_total"),
        }
    }

    /// Queues the report of the quarantine `decision_id` started (sent on the next tick).
    pub fn push(&mut self, host: &dyn Host, e: &Evidence, decision_id: &str, now: f64) {
        let (jti, set) = self.reporter.set(e, decision_id, now);
        self.queue.push_back(Report { jti, set });
        while self.queue.len() > self.reporter.max_queue {
            if let Some(old) = self.queue.pop_front() {
                self.dropped.add(host, 1);
                log(
                    host,
                    Level::Warn,
                    &format!(
                        "agent-iam: quarantine report queue full ({}): dropped SET {}",
                        self.reporter.max_queue, old.jti
                    ),
                );
            }
        }
    }

    /// Sends the next report if none is in flight and no backoff holds it; gives up on a
    /// call whose answer never came.
    pub fn on_tick(&mut self, host: &dyn Host, now_ms: u64) {
        let lost_after = self.reporter.timeout_ms.saturating_add(5_000);
        if let Some((_, _, at)) = &self.in_flight {
            if now_ms.saturating_sub(*at) > lost_after {
                if let Some((_, report, _)) = self.in_flight.take() {
                    self.retry(host, report, now_ms, "no callback from the host");
                }
            }
        }
        if self.in_flight.is_some() || !self.backoff.ready(now_ms) {
            return;
        }
        let Some(report) = self.queue.pop_front() else {
            return;
        };
        let headers = [
            (":method", "POST"),
            (":path", self.reporter.path.as_str()),
            (":authority", self.reporter.authority.as_str()),
            ("content-type", "application/secevent+jwt"),
            ("accept", "application/json"),
        ];
        match host.dispatch(
            &self.reporter.cluster,
            &headers,
            Some(report.set.as_bytes()),
            self.reporter.timeout_ms,
        ) {
            Ok(token) => self.in_flight = Some((token, report, now_ms)),
            Err(e) => {
                let why = format!(
                    "dispatch to cluster {} failed: {}",
                    self.reporter.cluster, e.0
                );
                self.retry(host, report, now_ms, &why);
            }
        }
    }

    /// The transmitter's answer; `false` if `token` is not ours.
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
    ) -> bool {
        if !matches!(&self.in_flight, Some((t, _, _)) if *t == token) {
            return false;
        }
        let Some((_, report, _)) = self.in_flight.take() else {
            return false;
        };
        let status = String::from_utf8_lossy(&host.call_status()).into_owned();
        match status.as_bytes().first() {
            Some(b'2') if status.len() == 3 => {
                self.sent.add(host, 1);
                self.backoff
                    .succeeded(host, "quarantine reports delivered again");
                log(
                    host,
                    Level::Info,
                    &format!("agent-iam: quarantine reported: SET {}", report.jti),
                );
                self.on_tick(host, now_ms);
            }
            Some(b'4') if status.len() == 3 => {
                // RFC 8935 §2.3: `{"err": "...", "description": "..."}`.
                let said = host
                    .call_body(body_size.min(2048))
                    .map(|b| {
                        String::from_utf8_lossy(&b)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                self.refused.add(host, 1);
                log(
                    host,
                    Level::Error,
                    &format!(
                        "agent-iam: the transmitter refused quarantine report SET {} (HTTP {status}): {said}",
                        report.jti
                    ),
                );
                self.on_tick(host, now_ms);
            }
            _ => {
                let why = if status.is_empty() {
                    "no answer (timeout or connection failure)".to_owned()
                } else {
                    format!("HTTP status {status}")
                };
                self.retry(host, report, now_ms, &why);
            }
        }
        true
    }

    fn retry(&mut self, host: &dyn Host, report: Report, now_ms: u64, why: &str) {
        self.failed.add(host, 1);
        let (backoff, failures) = self.backoff.failed(now_ms, BACKOFF_MAX_MS);
        if failures % 10 == 1 {
            log(
                host,
                Level::Warn,
                &format!(
                    "agent-iam: quarantine report (cluster {}): {why}; {} report(s) queued, retry in {backoff} ms (failure #{})",
                    self.reporter.cluster,
                    self.queue.len() + 1,
                    failures
                ),
            );
        }
        self.queue.push_front(report);
    }
}
