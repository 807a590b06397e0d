//! The live agent registry: one VM per Envoy polls the feed (a lease in shared data elects
//! it each interval), validates the answer and publishes it in shared data; every worker
//! picks up a new registry on its next request, atomically (a whole registry or nothing).
//!
//! A registry is identified by the SHA-256 of its document, not by its version: a new body
//! under the same version is a change. The poller refuses a rollback (a version ordered
//! before the published one, see [`crate::agents::compare_versions`]) unless
//! `allow_rollback`; every refusal is logged, counted and audited, and the published
//! registry stays. A refused rollback renews the published registry's freshness (the feed
//! answered, and by its own versions ours is the newer registry); an invalid document does
//! not (its content is unknown: beyond `max_staleness_s` the registry is stale).
//!
//! Shared data (`<base>` names the format version): `<base>/body` the published document,
//! `<base>/head` `sha256-hex\nfresh_ms` (the cheap per-request read; both fields have a fixed
//! alphabet, so the record cannot be ambiguous), `<base>/lease` the poll lease.

use std::collections::HashSet;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

use super::log;
use crate::agents::{feed_verdict, parse_feed, FeedVerdict, Registry};
use crate::audit::{RegistryOutcome, RegistryVerdict};
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
    answers_refused: Option<u32>,
    rollbacks_refused: Option<u32>,
    /// What this VM's last poll applied or refused, for the audit stream (taken by the root).
    pub outcomes: Vec<RegistryOutcome>,
    /// Digests of refused answers already audited: a broken feed repeats itself every poll.
    refusals_audited: HashSet<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// The head record: `sha256-hex\nfresh_ms`.
/// The registry's head record: its document's SHA-256 (hex) and when it was confirmed.
fn parse_head(head: &[u8]) -> Option<(String, u64)> {
    crate::shared::Head::parse(head)
        .filter(|h| h.tag.len() == 64 && h.tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| (h.tag, h.fresh_ms))
}

impl Feed {
    pub fn new(cfg: FeedConfig) -> Feed {
        let base = format!("agent-iam/registry/v2/{}{}", cfg.cluster, cfg.path);
        let counter = |name| hostcalls::define_metric(MetricType::Counter, name).ok();
        Feed {
            head_key: format!("{base}/head"),
            body_key: format!("{base}/body"),
            lease_key: format!("{base}/lease"),
            cfg,
            in_flight: None,
            failures: Failures::new("registry feed", "the last good registry"),
            age_gauge: hostcalls::define_metric(
                MetricType::Gauge,
                "agent_iam.registry.feed_age_ms",
            )
            .ok(),
            answers_refused: counter("agent_iam.registry.answers_refused"),
            rollbacks_refused: counter("agent_iam.registry.rollbacks_refused"),
            outcomes: Vec::new(),
            refusals_audited: HashSet::new(),
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
            if let Some((_, fresh)) = parse_head(&head) {
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

    /// The published registry (what every worker uses), if the feed has answered before.
    fn published(&self) -> Option<Registry> {
        match hostcalls::get_shared_data(&self.body_key) {
            Ok((Some(body), _)) => parse_feed(&body).ok(),
            _ => None,
        }
    }

    /// A refused answer: counted every time, audited and logged once per distinct body by
    /// this VM (an invalid document also counts as a failed poll, logged the first and
    /// every 10th consecutive time).
    fn refuse(
        &mut self,
        sha256: String,
        version: Option<String>,
        previous: Option<String>,
        why: String,
        rollback: bool,
    ) {
        count(self.answers_refused);
        if rollback {
            count(self.rollbacks_refused);
        }
        if !rollback {
            self.failed(&why);
        }
        if self.refusals_audited.len() >= 1000 {
            self.refusals_audited.clear();
        }
        if self.refusals_audited.insert(sha256.clone()) {
            if rollback {
                log(
                    LogLevel::Warn,
                    &format!("agent-iam: registry feed: answer refused: {why}; keeping the registry in use"),
                );
            }
            self.outcomes.push(RegistryOutcome {
                outcome: RegistryVerdict::Refused,
                version,
                previous,
                sha256,
                detail: why,
            });
        }
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
        let sha256 = sha256_hex(&body);
        let published = self.published();
        let previous = published.as_ref().map(|r| r.version.clone());
        let registry = match parse_feed(&body) {
            Ok(r) => r,
            Err(problems) => {
                let first = problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let why = format!(
                    "invalid registry document ({} problem(s)), first: {first}",
                    problems.len()
                );
                return self.refuse(sha256, None, previous, why, false);
            }
        };
        let current = published
            .as_ref()
            .and_then(|r| r.digest.as_deref().map(|d| (r.version.as_str(), d)));
        let write_body = match feed_verdict(&registry, current, self.cfg.allow_rollback) {
            FeedVerdict::Unchanged => false,
            FeedVerdict::Apply => true,
            FeedVerdict::Refuse(why) => {
                let kept = current.map(|(_, d)| format!("{d}\n{now_ms}"));
                self.refuse(sha256, Some(registry.version), previous, why, true);
                // The registry in use is newer than the answer: it stays in force, fresh.
                if let Some(head) = kept {
                    let _ = hostcalls::set_shared_data(&self.head_key, Some(head.as_bytes()), None);
                }
                return;
            }
        };
        // Body first, then head: a reader that sees the new head finds the new body.
        let head = format!("{sha256}\n{now_ms}");
        let ok = (!write_body
            || hostcalls::set_shared_data(&self.body_key, Some(&body), None).is_ok())
            && hostcalls::set_shared_data(&self.head_key, Some(head.as_bytes()), None).is_ok();
        if !ok {
            return self.failed("cannot write shared data");
        }
        self.failures.recovered();
        if write_body {
            let same = previous.as_deref() == Some(registry.version.as_str());
            self.outcomes.push(RegistryOutcome {
                outcome: RegistryVerdict::Applied,
                detail: format!(
                    "{} agent(s){}",
                    registry.len(),
                    if same {
                        "; same version, new content"
                    } else {
                        ""
                    }
                ),
                version: Some(registry.version),
                previous,
                sha256,
            });
        }
    }

    /// Brings `engine` up to the published registry. Cheap when nothing changed: one
    /// shared-data read of a short head record.
    pub fn sync(&self, engine: &mut Engine) {
        let Ok((Some(head), _)) = hostcalls::get_shared_data(&self.head_key) else {
            return;
        };
        let Some((digest, fresh_ms)) = parse_head(&head) else {
            return;
        };
        let fresh_at = fresh_ms as f64 / 1000.0;
        if engine.registry().digest.as_deref() == Some(digest.as_str()) {
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
                        "agent-iam: registry version {} applied ({} agent(s), sha256 {})",
                        registry.version,
                        registry.len(),
                        registry.digest.as_deref().unwrap_or_default()
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

fn count(metric: Option<u32>) {
    if let Some(m) = metric {
        let _ = hostcalls::increment_metric(m, 1);
    }
}

/// Takes the poll lease stored under `key` for this interval (see [`crate::shared::take_lease`]).
pub(super) fn take_lease(key: &str, interval_ms: u64, now_ms: u64) -> bool {
    crate::shared::take_lease(&super::ProxyShared, key, interval_ms, now_ms)
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
