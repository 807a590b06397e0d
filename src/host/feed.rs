//! The live agent registry: one VM per Envoy polls the feed (a lease in shared data elects
//! it each interval), validates the answer and publishes it in shared data; every worker
//! picks up a new version on its next request, atomically (a whole registry or nothing).

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use super::log;
use crate::agents::parse_feed;
use crate::config::FeedConfig;
use crate::pipeline::Engine;

/// Shared-data keys of one feed, and the poll state of this VM.
pub(super) struct Feed {
    pub cfg: FeedConfig,
    head_key: String,
    body_key: String,
    lease_key: String,
    in_flight: Option<u32>,
    failures: Failures,
    age_gauge: Option<u32>,
}

impl Feed {
    pub fn new(cfg: FeedConfig) -> Feed {
        let base = format!("agent-iam/registry/{}{}", cfg.cluster, cfg.path);
        Feed {
            head_key: format!("{base}/head"),
            body_key: format!("{base}/body"),
            lease_key: format!("{base}/lease"),
            cfg,
            in_flight: None,
            failures: Failures::new("registry feed", "the last good registry"),
            age_gauge: hostcalls::define_metric(
                proxy_wasm::types::MetricType::Gauge,
                "agent_iam.registry.feed_age_ms",
            )
            .ok(),
        }
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.cfg.poll_interval_ms)
    }

    /// On every tick: poll if this VM holds the lease and nothing is in flight.
    pub fn on_tick(&mut self, now_ms: u64) {
        if let (Some(g), Ok((Some(head), _))) =
            (self.age_gauge, hostcalls::get_shared_data(&self.head_key))
        {
            let text = String::from_utf8_lossy(&head);
            if let Some(fresh) = text
                .split_once('\n')
                .and_then(|(_, f)| f.parse::<u64>().ok())
            {
                let _ = hostcalls::record_metric(g, now_ms.saturating_sub(fresh));
            }
        }
        if self.in_flight.is_some()
            || !take_lease(&self.lease_key, self.cfg.poll_interval_ms, now_ms)
        {
            return;
        }
        let authority = self
            .cfg
            .authority
            .clone()
            .unwrap_or_else(|| self.cfg.cluster.clone());
        let headers = vec![
            (":method", "GET"),
            (":path", self.cfg.path.as_str()),
            (":authority", authority.as_str()),
            ("accept", "application/json"),
        ];
        match dispatch(&self.cfg.cluster, headers, None, self.cfg.timeout_ms) {
            Ok(token) => self.in_flight = Some(token),
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, why: &str) {
        self.failures.record(why);
    }

    /// The feed answered.
    pub fn on_response(&mut self, token: u32, body_size: usize, now_ms: u64) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let body = match call_body(body_size) {
            Ok(b) => b,
            Err(e) => return self.failed(&e),
        };
        match parse_feed(&body) {
            Err(problems) => {
                let first = problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.failed(&format!(
                    "invalid registry document ({} problem(s)), first: {first}",
                    problems.len()
                ));
            }
            Ok(registry) => {
                // Body first, then head: a reader that sees the new head finds the new body.
                let head = format!("{}\n{now_ms}", registry.version);
                let ok = hostcalls::set_shared_data(&self.body_key, Some(&body), None).is_ok()
                    && hostcalls::set_shared_data(&self.head_key, Some(head.as_bytes()), None)
                        .is_ok();
                if ok {
                    self.failures.recovered();
                } else {
                    self.failed("cannot write shared data");
                }
            }
        }
    }

    /// Brings `engine` up to the published registry. Cheap when nothing changed: one
    /// shared-data read of a short head record.
    pub fn sync(&self, engine: &mut Engine) {
        let Ok((Some(head), _)) = hostcalls::get_shared_data(&self.head_key) else {
            return;
        };
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.splitn(2, '\n');
        let (Some(version), Some(fresh_ms)) = (
            parts.next(),
            parts.next().and_then(|t| t.parse::<u64>().ok()),
        ) else {
            return;
        };
        let fresh_at = fresh_ms as f64 / 1000.0;
        if engine.registry().version == version {
            engine.confirm_registry(fresh_at);
            return;
        }
        let Ok((Some(body), _)) = hostcalls::get_shared_data(&self.body_key) else {
            return;
        };
        match parse_feed(&body) {
            Ok(registry) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "agent-iam: registry version {} applied ({} agent(s))",
                        registry.version,
                        registry.len()
                    ),
                );
                engine.set_registry(registry, fresh_at);
            }
            Err(_) => log(
                LogLevel::Error,
                "agent-iam: published registry does not parse; keeping the current one",
            ),
        }
    }
}

/// Takes the poll lease stored under `key` for this interval: only one VM per Envoy wins it
/// (compare-and-swap on shared data).
pub(super) fn take_lease(key: &str, interval_ms: u64, now_ms: u64) -> bool {
    let (value, cas) = match hostcalls::get_shared_data(key) {
        Ok(x) => x,
        Err(_) => return false,
    };
    let last = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    // A little slack so the lease holder's own next tick wins again.
    if now_ms.saturating_sub(last) < interval_ms.saturating_mul(9) / 10 {
        return false;
    }
    hostcalls::set_shared_data(key, Some(now_ms.to_string().as_bytes()), cas).is_ok()
}

/// Sends one poll through an Envoy cluster; the error names the cluster.
pub(super) fn dispatch(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<u32, String> {
    hostcalls::dispatch_http_call(
        cluster,
        headers,
        body,
        vec![],
        Duration::from_millis(timeout_ms),
    )
    .map_err(|e| format!("dispatch to cluster {cluster} failed: {e:?}"))
}

/// The body of a 200 answer to our `dispatch_http_call`; anything else is an error text.
pub(super) fn call_body(body_size: usize) -> Result<Vec<u8>, String> {
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .unwrap_or_default();
    if status != b"200" {
        return Err(format!("HTTP status {}", String::from_utf8_lossy(&status)));
    }
    match hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size) {
        Ok(Some(b)) => Ok(b),
        _ => Err("empty body".into()),
    }
}

/// Consecutive failures of one poller, logged the first time and every 10th time after
/// (visible without flooding the log), and the recovery.
pub(super) struct Failures {
    what: &'static str,
    keeping: &'static str,
    count: u64,
}

impl Failures {
    pub fn new(what: &'static str, keeping: &'static str) -> Failures {
        Failures {
            what,
            keeping,
            count: 0,
        }
    }

    pub fn record(&mut self, why: &str) {
        self.count = self.count.saturating_add(1);
        if self.count % 10 == 1 {
            log(
                LogLevel::Warn,
                &format!(
                    "agent-iam: {}: {why}; keeping {} (failure #{})",
                    self.what, self.keeping, self.count
                ),
            );
        }
    }

    pub fn recovered(&mut self) {
        if self.count > 0 {
            log(
                LogLevel::Info,
                &format!(
                    "agent-iam: {} recovered after {} failure(s)",
                    self.what, self.count
                ),
            );
        }
        self.count = 0;
    }
}
