//! The live agent registry: one VM per host polls the feed (a lease in shared data elects
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

use super::host::{log, Host, Level, Metric};
use super::poll::{Endpoint, Poll};
use crate::agents::{feed_verdict, parse_feed, FeedVerdict, Registry};
use crate::audit::{RegistryOutcome, RegistryVerdict};
use crate::config::FeedConfig;
use crate::pipeline::Engine;
use crate::shared::{publish, Head};

/// Shared-data keys of one feed, and the poll state of this VM.
pub struct RegistryFeed {
    interval_ms: u64,
    allow_rollback: bool,
    head_key: String,
    body_key: String,
    poll: Poll,
    age_gauge: Metric,
    answers_refused: Metric,
    rollbacks_refused: Metric,
    /// Digests of refused answers already audited: a broken feed repeats itself every poll.
    refusals_audited: HashSet<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// The registry's head record: its document's SHA-256 (hex) and when it was confirmed.
fn parse_head(head: &[u8]) -> Option<(String, u64)> {
    Head::parse(head)
        .filter(|h| h.tag.len() == 64 && h.tag.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|h| (h.tag, h.fresh_ms))
}

impl RegistryFeed {
    pub fn new(host: &dyn Host, cfg: &FeedConfig) -> RegistryFeed {
        let base = format!("agent-iam/registry/v2/{}{}", cfg.cluster, cfg.path);
        let endpoint = Endpoint::new(
            &cfg.cluster,
            &cfg.path,
            cfg.authority.as_deref(),
            cfg.timeout_ms,
        );
        RegistryFeed {
            interval_ms: cfg.poll_interval_ms,
            allow_rollback: cfg.allow_rollback,
            head_key: format!("{base}/head"),
            body_key: format!("{base}/body"),
            poll: Poll::new(
                endpoint,
                format!("{base}/lease"),
                "registry feed",
                "the last good registry",
            ),
            age_gauge: Metric::gauge(host, "agent_iam.registry.feed_age_seconds"),
            answers_refused: Metric::counter(host, "agent_iam.registry.answers_refused_total"),
            rollbacks_refused: Metric::counter(host, "agent_iam.registry.rollbacks_refused_total"),
            refusals_audited: HashSet::new(),
        }
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// On every tick: report the feed's age; poll if this VM holds the lease and nothing
    /// is in flight.
    pub fn on_tick(&mut self, host: &dyn Host, now_ms: u64) {
        if let Ok((Some(head), _)) = host.get(&self.head_key) {
            if let Some((_, fresh)) = parse_head(&head) {
                let age = super::seconds_up(now_ms.saturating_sub(fresh));
                self.age_gauge.record(host, age);
            }
        }
        if self.poll.busy() || !self.poll.take_lease(host, self.interval_ms, now_ms) {
            return;
        }
        if let Err(e) = self
            .poll
            .send(host, "GET", &[("accept", "application/json")], None)
        {
            self.poll.failed(host, &e);
        }
    }

    /// The published registry (what every worker uses), if the feed has answered before.
    fn published(&self, host: &dyn Host) -> Option<Registry> {
        match host.get(&self.body_key) {
            Ok((Some(body), _)) => parse_feed(&body).ok(),
            _ => None,
        }
    }

    /// A refused answer: counted every time, audited and logged once per distinct body by
    /// this VM (an invalid document also counts as a failed poll, logged the first and
    /// every 10th consecutive time).
    fn refuse(
        &mut self,
        host: &dyn Host,
        sha256: String,
        version: Option<String>,
        previous: Option<String>,
        why: String,
        rollback: bool,
    ) -> Option<RegistryOutcome> {
        self.answers_refused.add(host, 1);
        if rollback {
            self.rollbacks_refused.add(host, 1);
        } else {
            self.poll.failed(host, &why);
        }
        if self.refusals_audited.len() >= 1000 {
            self.refusals_audited.clear();
        }
        if !self.refusals_audited.insert(sha256.clone()) {
            return None;
        }
        if rollback {
            log(
                host,
                Level::Warn,
                &format!(
                    "agent-iam: registry feed: answer refused: {why}; keeping the registry in use"
                ),
            );
        }
        Some(RegistryOutcome {
            outcome: RegistryVerdict::Refused,
            version,
            previous,
            sha256,
            detail: why,
        })
    }

    /// A call answer: `None` when it was not this feed's, else what the answer did (for
    /// the audit stream; empty when nothing changed).
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
    ) -> Option<Vec<RegistryOutcome>> {
        let body = match self.poll.answer(host, token, body_size)? {
            Ok(b) => b,
            Err(e) => {
                self.poll.failed(host, &e);
                return Some(Vec::new());
            }
        };
        Some(self.apply(host, &body, now_ms).into_iter().collect())
    }

    fn apply(&mut self, host: &dyn Host, body: &[u8], now_ms: u64) -> Option<RegistryOutcome> {
        let sha256 = sha256_hex(body);
        let published = self.published(host);
        let previous = published.as_ref().map(|r| r.version.clone());
        let registry = match parse_feed(body) {
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
                return self.refuse(host, sha256, None, previous, why, false);
            }
        };
        let current = published
            .as_ref()
            .and_then(|r| r.digest.as_deref().map(|d| (r.version.as_str(), d)));
        let write_body = match feed_verdict(&registry, current, self.allow_rollback) {
            FeedVerdict::Unchanged => false,
            FeedVerdict::Apply => true,
            FeedVerdict::Refuse(why) => {
                let kept = current.and_then(|(_, d)| Head::new(d, now_ms));
                let outcome =
                    self.refuse(host, sha256, Some(registry.version), previous, why, true);
                // The registry in use is newer than the answer: it stays in force, fresh.
                if let Some(head) = kept {
                    let _ = host.set(&self.head_key, &head.to_bytes(), None);
                }
                return outcome;
            }
        };
        let written = Head::new(sha256.as_str(), now_ms).map(|head| {
            publish(
                host,
                &self.body_key,
                write_body.then_some(body),
                &self.head_key,
                &head,
            )
        });
        if !matches!(written, Some(Ok(()))) {
            self.poll.failed(host, "cannot write shared data");
            return None;
        }
        self.poll.recovered(host);
        if !write_body {
            return None;
        }
        let same = previous.as_deref() == Some(registry.version.as_str());
        Some(RegistryOutcome {
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
        })
    }

    /// Brings `engine` up to the published registry. Cheap when nothing changed: one
    /// shared-data read of a short head record.
    pub fn sync(&self, host: &dyn Host, engine: &mut Engine) {
        let Ok((Some(head), _)) = host.get(&self.head_key) else {
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
        let Ok((Some(body), _)) = host.get(&self.body_key) else {
            return;
        };
        match parse_feed(&body) {
            Ok(registry) => {
                log(
                    host,
                    Level::Info,
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
                host,
                Level::Error,
                "agent-iam: published registry does not parse; keeping the current one",
            ),
        }
    }
}
