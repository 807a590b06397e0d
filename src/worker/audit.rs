//! Audit events out of the VM, the three ways the host offers: a log line (`agent-iam audit
//! {json}`), the request's filter state (`wasm.agent_iam.audit`, for access logs), and
//! batches to a collector cluster. Plus the decision metrics.
//!
//! The collector queue is per worker and bounded: when it is full the oldest events are
//! dropped, counted (`agent_iam.audit.dropped_total`) and logged; checkpoints carry the running
//! drop count so `agent-iam audit verify` can say why a gap is there.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::host::{log, Host, Level, Metric, MetricKind};
use crate::audit::{AuditConfig, AuditLine, CollectorConfig};
use crate::pipeline::{Decision, Engine};
use crate::reason::Reason;

/// Filter-state key (Envoy prefixes it: `wasm.agent_iam.audit`).
const FILTER_STATE_KEY: &str = "agent_iam.audit";

/// The counter of `key` on `route` in `map`, defined as `name()` on first use (the route's
/// entry is allocated only then, not on every request).
fn series<K: PartialEq + Copy>(
    host: &dyn Host,
    map: &mut HashMap<String, Vec<(K, Metric)>>,
    route: &str,
    key: K,
    name: impl FnOnce() -> String,
) -> Metric {
    if let Some((_, m)) = map
        .get(route)
        .and_then(|v| v.iter().find(|(k, _)| *k == key))
    {
        return *m;
    }
    let m = Metric::counter(host, &name());
    map.entry(route.to_owned()).or_default().push((key, m));
    m
}

/// (decision, check, reason) of `agent_iam.decisions_total`.
type DecisionKey = (&'static str, &'static str, &'static str, u16);

/// (check, reason) of `agent_iam.shadow_denied_total`.
type ShadowKey = (&'static str, &'static str, u16);

/// A route's name as a stat name part: letters, digits, `_` and `-` kept, anything else
/// (`.` separates a stat name's parts, `/` is common in route names) as `_`; `none` for a
/// request that matched no route.
pub fn route_label(route: Option<&str>) -> String {
    match route {
        None | Some("") => "none".to_owned(),
        Some(r) => r
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// The check a reason belongs to, as the metrics label it.
pub fn check_label(r: Reason) -> &'static str {
    let code = r.as_str();
    let category = code.split('.').next().unwrap_or_default();
    match (r, category) {
        (Reason::TokenUnbound | Reason::TokenCnf, _) => "sender_constraint",
        (Reason::RouteUnmatched | Reason::ScopeInsufficient, _) => "route_scopes",
        (Reason::RequestHeaderRepeated, _) => "request",
        (_, "token" | "jwks") => "token",
        (_, "dpop" | "mtls") => "sender_constraint",
        (_, "agent" | "delegation") => "delegation",
        (_, "revocation") => "revocation",
        (_, "mcp") => "mcp",
        (_, "policy") => "policy",
        (_, "limit") => "limits",
        (_, "request") => "request",
        _ => "internal",
    }
}

/// Out-of-band events kept for the next request's filter state.
const MAX_PENDING_FILTER_STATE: usize = 64;

/// Metric ids (defined by name; Envoy shares them across workers and prefixes them with
/// `wasmcustom.`).
struct Metrics {
    /// `agent_iam.decisions_total` by route, then by (decision, check, reason): defined on
    /// first use (routes and reasons are bounded by the configuration and the code).
    decisions: HashMap<String, Vec<(DecisionKey, Metric)>>,
    /// `agent_iam.shadow_denied_total` by route, then by (check, reason): every failure of a
    /// check in shadow.
    shadowed: HashMap<String, Vec<(ShadowKey, Metric)>>,
    latency: Metric,
    events: Metric,
    dropped: Metric,
    delivered: Metric,
    send_failures: Metric,
    queue_depth: Metric,
    /// MCP list responses filtered, and the entries removed from them.
    lists_filtered: Metric,
    list_entries_removed: Metric,
    /// Live limit counters forgotten to make room for new keys (`limits_max_keys`).
    limit_evictions: Metric,
    /// The largest linear memory among this Envoy's filter VMs, in bytes (each VM raises it
    /// on its tick; linear memory never shrinks, so the gauge is the busiest worker's).
    memory: Metric,
}

impl Metrics {
    fn define(host: &dyn Host) -> Metrics {
        let counter = |name: &str| Metric::counter(host, name);
        Metrics {
            decisions: HashMap::new(),
            shadowed: HashMap::new(),
            latency: Metric::define(
                host,
                MetricKind::Histogram,
                "agent_iam.decision_duration_microseconds",
            ),
            events: counter("agent_iam.audit.events_total"),
            dropped: counter("agent_iam.audit.dropped_total"),
            delivered: counter("agent_iam.audit.delivered_total"),
            send_failures: counter("agent_iam.audit.send_failures_total"),
            queue_depth: Metric::gauge(host, "agent_iam.audit.queue_depth"),
            lists_filtered: counter("agent_iam.mcp.lists_filtered_total"),
            list_entries_removed: counter("agent_iam.mcp.list_entries_removed_total"),
            limit_evictions: counter("agent_iam.limit_evictions_total"),
            memory: Metric::gauge(host, "agent_iam.memory_bytes"),
        }
    }
}

/// Where a worker's audit events and decision metrics go.
pub struct AuditOut {
    log: bool,
    filter_state: bool,
    /// Out-of-band events (checkpoints) waiting for the next request's filter state.
    pending_fs: Vec<AuditLine>,
    collector: Option<Collector>,
    metrics: Metrics,
}

impl AuditOut {
    pub fn new(host: &dyn Host, cfg: &AuditConfig) -> AuditOut {
        AuditOut {
            log: cfg.log_lines(),
            filter_state: cfg.filter_state,
            pending_fs: Vec::new(),
            collector: cfg.collector.clone().map(Collector::new),
            metrics: Metrics::define(host),
        }
    }

    /// How often `on_tick` must run.
    pub fn tick_period(&self, checkpoint_s: u64) -> Duration {
        let cp = Duration::from_millis(checkpoint_s.saturating_mul(1000) / 2);
        match &self.collector {
            // A full batch goes out on the next tick (or as soon as the previous answer).
            Some(c) => cp.min(Duration::from_millis(c.cfg.flush_interval_ms.min(50))),
            None => cp.min(Duration::from_millis(1000)),
        }
    }

    /// The metrics of one decision: `agent_iam.decisions_total` with its decision (`allow`,
    /// `deny`, `shadow_deny`), check, reason and route, every shadowed failure in
    /// `agent_iam.shadow_denied_total`, and the filter's time.
    pub fn count(&mut self, host: &dyn Host, d: &Decision, latency_us: u64) {
        let route = route_label(d.route.as_deref());
        if d.limit_evicted {
            self.metrics.limit_evictions.add(host, 1);
        }
        // A limit's refusals are one series per limit (`reason.limit.<name>`).
        let limit = d.limit.as_ref().map_or(u16::MAX, |l| l.index);
        let key = match (d.reason, d.verdict()) {
            (Some(r), _) => ("deny", check_label(r), r.as_str(), limit),
            (None, Some(r)) => {
                let check = d.shadow.first().map_or("none", |s| s.check.as_str());
                ("shadow_deny", check, r.as_str(), limit)
            }
            (None, None) => ("allow", "none", "none", u16::MAX),
        };
        let (decision, check) = (key.0, key.1);
        let reason = d.verdict_code().unwrap_or("none");
        series(host, &mut self.metrics.decisions, &route, key, || {
            format!("agent_iam.decisions_total.decision.{decision}.check.{check}.reason.{reason}.route.{route}")
        })
        .add(host, 1);
        for s in &d.shadow {
            let (check, reason) = (s.check.as_str(), d.code_of(s.reason));
            series(
                host,
                &mut self.metrics.shadowed,
                &route,
                (check, s.reason.as_str(), limit),
                || {
                    format!(
                        "agent_iam.shadow_denied_total.check.{check}.reason.{reason}.route.{route}"
                    )
                },
            )
            .add(host, 1);
        }
        self.metrics.latency.record(host, latency_us);
    }

    /// One MCP list response filtered, `removed` entries taken out.
    pub fn count_list(&self, host: &dyn Host, removed: usize) {
        self.metrics.lists_filtered.add(host, 1);
        self.metrics
            .list_entries_removed
            .add(host, i64::try_from(removed).unwrap_or(i64::MAX));
    }

    /// Writes the events of one request (its decision, after the stream's `start` event
    /// on the worker's first request).
    pub fn emit_request(&mut self, host: &dyn Host, lines: Vec<AuditLine>) {
        if self.filter_state {
            let mut text = String::new();
            for l in self.pending_fs.drain(..).chain(lines.iter().cloned()) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(l.json());
            }
            if host
                .set_property(&[FILTER_STATE_KEY], text.as_bytes())
                .is_err()
            {
                log(
                    host,
                    Level::Error,
                    "agent-iam: cannot set the audit filter state",
                );
            }
        }
        for l in lines {
            self.out_of_request(host, l, false);
        }
    }

    /// An event outside any request (feed outcomes): log, collector, and the next
    /// request's filter state.
    pub fn emit_out_of_request(&mut self, host: &dyn Host, line: AuditLine) {
        self.out_of_request(host, line, true);
    }

    /// Log line and collector queue (and, for events outside a request, the next
    /// request's filter state).
    fn out_of_request(&mut self, host: &dyn Host, line: AuditLine, pending: bool) {
        self.metrics.events.add(host, 1);
        if self.log {
            // One event, one line: client-sent values (U+2028, NEL, DEL survive JSON
            // escaping) never start a line of their own.
            log(host, Level::Info, line.log_line());
        }
        if pending && self.filter_state {
            if self.pending_fs.len() >= MAX_PENDING_FILTER_STATE {
                self.pending_fs.remove(0);
            }
            self.pending_fs.push(line.clone());
        }
        if let Some(c) = self.collector.as_mut() {
            c.push(line, host, &self.metrics);
        }
    }

    /// Checkpoints, collector flushes, drop reports.
    pub fn on_tick(&mut self, host: &dyn Host, engine: &mut Engine, now_ms: u64) {
        if let Some(mine) = host.memory_bytes() {
            // Not "last one wins": the main thread's VM decides nothing and stays small.
            let m = self.metrics.memory;
            if m.is_defined() && m.value(host).is_none_or(|seen| mine > seen) {
                m.record(host, mine);
            }
        }
        let dropped = self.collector.as_ref().map_or(0, |c| c.dropped_total);
        if let Some(cp) = engine
            .audit_stream()
            .checkpoint_due(now_ms as f64 / 1000.0, dropped)
        {
            self.out_of_request(host, cp, true);
        }
        if let Some(c) = self.collector.as_mut() {
            c.report_drops(host);
            c.expire(host, now_ms, &self.metrics);
            c.flush(host, now_ms, &self.metrics);
            c.report_depth(host, &self.metrics);
        }
    }

    /// The worker shuts down: the stream's final checkpoint (log line and a last attempt to
    /// hand the queue to the collector).
    pub fn on_done(&mut self, host: &dyn Host, engine: &mut Engine, now_ms: u64) {
        let dropped = self.collector.as_ref().map_or(0, |c| c.dropped_total);
        if let Some(end) = engine
            .audit_stream()
            .finish(now_ms as f64 / 1000.0, dropped)
        {
            self.out_of_request(host, end, false);
        }
        if let Some(c) = self.collector.as_mut() {
            c.last_flush_ms = 0;
            c.backoff.waive();
            c.flush(host, now_ms, &self.metrics);
        }
    }

    /// A collector answer; `false` if `token` is not ours.
    pub fn on_response(&mut self, host: &dyn Host, token: u32, now_ms: u64) -> bool {
        match self.collector.as_mut() {
            Some(c) if c.in_flight.as_ref().map(|(t, _)| *t) == Some(token) => {
                c.on_response(host, now_ms, &self.metrics);
                true
            }
            _ => false,
        }
    }

    /// Events held for the collector (queued and in flight, less those given up).
    pub fn held(&self) -> usize {
        self.collector.as_ref().map_or(0, Collector::held)
    }

    /// Events this worker dropped from the collector queue.
    pub fn dropped(&self) -> u64 {
        self.collector.as_ref().map_or(0, |c| c.dropped_total)
    }
}

struct Collector {
    cfg: CollectorConfig,
    authority: String,
    queue: VecDeque<AuditLine>,
    /// The batch on its way: call token and events (put back on failure).
    in_flight: Option<(u32, Vec<AuditLine>)>,
    /// How many of the in-flight events (oldest first) newer events have replaced: they
    /// are dropped if the batch fails (and were delivered if it succeeds).
    doomed: usize,
    last_flush_ms: u64,
    backoff: super::poll::Backoff,
    dropped_total: u64,
    dropped_unreported: u64,
    depth_reported: i64,
}

impl Collector {
    fn new(cfg: CollectorConfig) -> Collector {
        Collector {
            authority: cfg.authority.clone().unwrap_or_else(|| cfg.cluster.clone()),
            cfg,
            queue: VecDeque::new(),
            in_flight: None,
            doomed: 0,
            last_flush_ms: 0,
            backoff: super::poll::Backoff::default(),
            dropped_total: 0,
            dropped_unreported: 0,
            depth_reported: 0,
        }
    }

    /// Events held and not yet given up: the queue and the in-flight batch, less the
    /// in-flight events already replaced.
    fn held(&self) -> usize {
        (self.queue.len() + self.in_flight.as_ref().map_or(0, |(_, b)| b.len()))
            .saturating_sub(self.doomed)
    }

    fn max_queue(&self) -> usize {
        usize::try_from(self.cfg.max_queue).unwrap_or(usize::MAX)
    }

    fn drop_count(&mut self, n: u64, host: &dyn Host, m: &Metrics) {
        self.dropped_total = self.dropped_total.saturating_add(n);
        self.dropped_unreported = self.dropped_unreported.saturating_add(n);
        m.dropped.add(host, i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Queues an event; when the bound is reached the oldest held event gives way: an
    /// in-flight one (dropped only if its batch fails) or the oldest waiting one.
    fn push(&mut self, line: AuditLine, host: &dyn Host, m: &Metrics) {
        if self.held() >= self.max_queue() {
            let in_flight = self.in_flight.as_ref().map_or(0, |(_, b)| b.len());
            if self.doomed < in_flight {
                self.doomed += 1;
            } else if self.queue.pop_front().is_some() {
                self.drop_count(1, host, m);
            } else {
                // Nothing older to give up (max_queue 0 cannot be configured).
                self.drop_count(1, host, m);
                return;
            }
        }
        self.queue.push_back(line);
    }

    fn report_drops(&mut self, host: &dyn Host) {
        if self.dropped_unreported > 0 {
            log(
                host,
                Level::Warn,
                &format!(
                    "agent-iam: audit collector queue full ({} events): dropped the {} oldest event(s) ({} in total on this worker)",
                    self.cfg.max_queue, self.dropped_unreported, self.dropped_total
                ),
            );
            self.dropped_unreported = 0;
        }
    }

    fn report_depth(&mut self, host: &dyn Host, m: &Metrics) {
        let depth = i64::try_from(self.held()).unwrap_or(i64::MAX);
        m.queue_depth.add(host, depth - self.depth_reported);
        self.depth_reported = depth;
    }

    /// A batch whose answer never came (the host lost the call) counts as failed.
    fn expire(&mut self, host: &dyn Host, now_ms: u64, m: &Metrics) {
        let limit = self.cfg.timeout_ms.saturating_add(5_000);
        if self.in_flight.is_some() && now_ms.saturating_sub(self.last_flush_ms) > limit {
            if let Some((_, batch)) = self.in_flight.take() {
                self.failed(host, batch, now_ms, "no callback from the host", m);
            }
        }
    }

    /// Sends a batch if one is due: full, or a partial one older than the flush interval;
    /// never while one is in flight or during backoff. Only from the root context (ticks
    /// and call answers): the SDK delivers an answer to the context that made the call,
    /// and a request's context is gone long before the collector answers.
    fn flush(&mut self, host: &dyn Host, now_ms: u64, m: &Metrics) {
        let batch_max = usize::try_from(self.cfg.batch_max).unwrap_or(1);
        let due = self.queue.len() >= batch_max
            || (!self.queue.is_empty()
                && now_ms.saturating_sub(self.last_flush_ms) >= self.cfg.flush_interval_ms);
        if !due || self.in_flight.is_some() || !self.backoff.ready(now_ms) {
            return;
        }
        let n = self.queue.len().min(batch_max);
        let batch: Vec<AuditLine> = self.queue.drain(..n).collect();
        let mut body = String::with_capacity(batch.len() * 800);
        for l in &batch {
            body.push_str(l.json());
            body.push('\n');
        }
        let headers = [
            (":method", "POST"),
            (":path", self.cfg.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", "application/x-ndjson"),
        ];
        let sent = host.dispatch(
            &self.cfg.cluster,
            &headers,
            Some(body.as_bytes()),
            self.cfg.timeout_ms,
        );
        self.last_flush_ms = now_ms;
        match sent {
            Ok(token) => self.in_flight = Some((token, batch)),
            Err(e) => {
                let why = format!("dispatch to cluster {} failed: {}", self.cfg.cluster, e.0);
                self.failed(host, batch, now_ms, &why, m);
            }
        }
    }

    fn on_response(&mut self, host: &dyn Host, now_ms: u64, m: &Metrics) {
        let Some((_, batch)) = self.in_flight.take() else {
            return;
        };
        let status = host.call_status();
        if status.first() == Some(&b'2') && status.len() == 3 {
            self.doomed = 0;
            m.delivered
                .add(host, i64::try_from(batch.len()).unwrap_or(i64::MAX));
            self.backoff.succeeded(host, "audit collector recovered");
            // More waiting: send the next batch now.
            self.flush(host, now_ms, m);
        } else {
            let why = if status.is_empty() {
                "no answer (timeout or connection failure)".to_owned()
            } else {
                format!("HTTP status {}", String::from_utf8_lossy(&status))
            };
            self.failed(host, batch, now_ms, &why, m);
        }
    }

    /// Puts a failed batch back in front (oldest first, within the bound) and backs off.
    fn failed(
        &mut self,
        host: &dyn Host,
        mut batch: Vec<AuditLine>,
        now_ms: u64,
        why: &str,
        m: &Metrics,
    ) {
        m.send_failures.add(host, 1);
        let doomed = std::mem::take(&mut self.doomed).min(batch.len());
        if doomed > 0 {
            batch.drain(..doomed);
            self.drop_count(doomed as u64, host, m);
        }
        let (backoff, failures) = self.backoff.failed(now_ms, self.cfg.backoff_max_ms);
        if failures % 10 == 1 {
            log(
                host,
                Level::Warn,
                &format!(
                    "agent-iam: audit collector (cluster {}): {why}; {} event(s) queued, retry in {backoff} ms (failure #{})",
                    self.cfg.cluster,
                    self.held() + batch.len(),
                    failures
                ),
            );
        }
        for l in batch.into_iter().rev() {
            self.queue.push_front(l);
        }
        let over = self.queue.len().saturating_sub(self.max_queue());
        if over > 0 {
            self.queue.drain(..over);
            self.drop_count(over as u64, host, m);
        }
    }
}
