//! The revocation feed on the host: one VM per Envoy (the holder of a shared-data lease)
//! polls the Shared Signals transmitter (RFC 8936), verifies each SET, merges it into the
//! one revocation state in shared data and acknowledges it on its next poll; every worker
//! picks up a new state version on its next request.
//!
//! Shared data (per `vm_id`, so per Envoy process; `<base>` names the format version, so a
//! module with another state format starts afresh): `<base>/doc` holds
//! `{"version", "fresh_ms", "acks", "state"}`, `<base>/head` holds `version\nfresh_ms` (the
//! cheap per-request read), `<base>/lease` the poll lease, `<base>/session` a random id
//! sent as `x-agent-iam-session` so the transmitter can redeliver to a restarted Envoy.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

use crate::audit::{SetOutcome, SetVerdict};
use serde::{Deserialize, Serialize};

use super::feed::{call_body, dispatch, take_lease, Failures};
use super::log;
use crate::crypto::SignatureBackend;
use crate::pipeline::Engine;
use crate::revocation::{
    parse_poll_response, poll_body, verify_set, Applied, Revocation, RevocationState, SetErrorKind,
    TokenLimits,
};

/// Everything the pollers share through the host.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u64,
    fresh_ms: u64,
    /// SET `jti`s to acknowledge on the next poll.
    acks: Vec<String>,
    state: RevocationState,
}

pub(super) struct RevocationFeed {
    cluster: String,
    path: String,
    authority: String,
    interval_ms: u64,
    timeout_ms: u64,
    max_events: u64,
    limits: TokenLimits,
    doc_key: String,
    head_key: String,
    lease_key: String,
    session_key: String,
    in_flight: Option<u32>,
    /// Poll again at once (the transmitter said `moreAvailable`).
    again: bool,
    failures: Failures,
    age_gauge: Option<u32>,
    polls_ok: Option<u32>,
    poll_failures: Option<u32>,
    sets_refused: Option<u32>,
    unsupported_subjects: Option<u32>,
    /// What this VM's last poll did with each SET, for the audit stream (taken by the root).
    pub outcomes: Vec<SetOutcome>,
    /// Refused SETs already audited: the transmitter redelivers them every poll.
    refusals_audited: std::collections::HashSet<String>,
}

impl RevocationFeed {
    pub fn new(r: &Revocation, max_token_lifetime_s: u64, clock_skew_s: u64) -> RevocationFeed {
        let base = format!("agent-iam/revocation/v2/{}{}", r.feed.cluster, r.feed.path);
        let age_gauge =
            hostcalls::define_metric(MetricType::Gauge, "agent_iam.revocation.feed_age_ms").ok();
        let counter = |name| hostcalls::define_metric(MetricType::Counter, name).ok();
        RevocationFeed {
            cluster: r.feed.cluster.clone(),
            path: r.feed.path.clone(),
            authority: r
                .feed
                .authority
                .clone()
                .unwrap_or_else(|| r.feed.cluster.clone()),
            interval_ms: r.feed.interval_ms,
            timeout_ms: r.feed.timeout_ms,
            max_events: r.feed.max_events,
            limits: TokenLimits {
                max_lifetime_s: max_token_lifetime_s as f64,
                skew_s: clock_skew_s as f64,
            },
            doc_key: format!("{base}/doc"),
            head_key: format!("{base}/head"),
            lease_key: format!("{base}/lease"),
            session_key: format!("{base}/session"),
            in_flight: None,
            again: false,
            failures: Failures::new("revocation feed", "the last state"),
            age_gauge,
            polls_ok: counter("agent_iam.revocation.polls_ok"),
            poll_failures: counter("agent_iam.revocation.poll_failures"),
            sets_refused: counter("agent_iam.revocation.sets_refused"),
            unsupported_subjects: counter("agent_iam.revocation.unsupported_subjects"),
            outcomes: Vec::new(),
            refusals_audited: std::collections::HashSet::new(),
        }
    }

    /// A refusal goes to the audit stream once per SET (bounded memory).
    fn audit_refusal(&mut self, o: SetOutcome) {
        if self.refusals_audited.len() >= 1000 {
            self.refusals_audited.clear();
        }
        if self.refusals_audited.insert(o.jti.clone()) {
            self.outcomes.push(o);
        }
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    fn read_doc(&self) -> Result<(Doc, Option<u32>), String> {
        match hostcalls::get_shared_data(&self.doc_key) {
            Ok((Some(bytes), cas)) => serde_json::from_slice(&bytes)
                .map(|d| (d, cas))
                .map_err(|e| format!("shared revocation state does not parse: {e}")),
            Ok((None, cas)) => Ok((Doc::default(), cas)),
            Err(e) => Err(format!("cannot read shared data: {e:?}")),
        }
    }

    /// The receiver session: one per state store, so a module with a new state format (a
    /// new `<base>`, an empty state) is a new session the transmitter redelivers to.
    fn session(&self) -> String {
        if let Ok((Some(v), _)) = hostcalls::get_shared_data(&self.session_key) {
            return String::from_utf8_lossy(&v).into_owned();
        }
        let mut b = [0u8; 16];
        let _ = getrandom::getrandom(&mut b);
        let id = hex::encode(b);
        let _ = hostcalls::set_shared_data(&self.session_key, Some(id.as_bytes()), None);
        id
    }

    /// On every tick: report the feed's age; poll if this VM holds the lease.
    pub fn on_tick(&mut self, now_ms: u64) {
        if let (Some(g), Ok((Some(head), _))) =
            (self.age_gauge, hostcalls::get_shared_data(&self.head_key))
        {
            if let Some(fresh) = parse_head(&head).map(|(_, f)| f) {
                let _ = hostcalls::record_metric(g, now_ms.saturating_sub(fresh));
            }
        }
        if self.in_flight.is_some() {
            return;
        }
        if !self.again && !take_lease(&self.lease_key, self.interval_ms, now_ms) {
            return;
        }
        self.again = false;
        self.poll();
    }

    fn poll(&mut self) {
        let acks = match self.read_doc() {
            Ok((doc, _)) => doc.acks,
            Err(e) => {
                self.failed(&e);
                Vec::new()
            }
        };
        let session = self.session();
        let body = poll_body(&acks, self.max_events);
        let headers = vec![
            (":method", "POST"),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-agent-iam-session", session.as_str()),
        ];
        match dispatch(&self.cluster, headers, Some(&body), self.timeout_ms) {
            Ok(token) => self.in_flight = Some(token),
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, why: &str) {
        count(self.poll_failures);
        self.failures.record(why);
    }

    /// The transmitter answered: verify, apply, publish, remember what to acknowledge.
    /// Returns true when this callback was ours.
    pub fn on_response(
        &mut self,
        token: u32,
        body_size: usize,
        now_ms: u64,
        backend: &dyn SignatureBackend,
        transmitter: &crate::revocation::Transmitter,
    ) -> bool {
        if self.in_flight != Some(token) {
            return false;
        }
        self.in_flight = None;
        let body = match call_body(body_size) {
            Ok(b) => b,
            Err(e) => {
                self.failed(&e);
                return true;
            }
        };
        let (sets, more) = match parse_poll_response(&body) {
            Ok(x) => x,
            Err(e) => {
                self.failed(&e);
                return true;
            }
        };
        let (mut doc, cas) = match self.read_doc() {
            Ok(x) => x,
            Err(e) => {
                self.failed(&e);
                return true;
            }
        };
        let now = now_ms as f64 / 1000.0;
        let mut acks = Vec::new();
        let mut changed = false;
        for (key, set) in &sets {
            let outcome = |verdict, detail: String| SetOutcome {
                jti: key.clone(),
                outcome: verdict,
                detail,
            };
            match verify_set(set, transmitter, backend, now, self.limits.skew_s) {
                Ok(v) if v.jti != *key => {
                    let why = format!("carries jti {:?} under key {key:?}", v.jti);
                    log(
                        LogLevel::Warn,
                        &format!(
                            "agent-iam: revocation feed: SET {why}; not applied, not acknowledged"
                        ),
                    );
                    count(self.sets_refused);
                    self.audit_refusal(outcome(SetVerdict::Refused, why));
                }
                Ok(v) => {
                    let effects: Vec<String> = v.effects.iter().map(ToString::to_string).collect();
                    match doc.state.apply(&v, now, self.limits) {
                        Applied::Applied => {
                            changed = true;
                            log(
                                LogLevel::Info,
                                &format!(
                                    "agent-iam: revocation applied: SET {} {:?}",
                                    v.jti, v.effects
                                ),
                            );
                            self.outcomes
                                .push(outcome(SetVerdict::Applied, effects.join("; ")));
                        }
                        Applied::Replay => {
                            log(
                                LogLevel::Info,
                                &format!("agent-iam: revocation feed: SET {} already applied (acknowledged again)", v.jti),
                            );
                            self.outcomes
                                .push(outcome(SetVerdict::Replay, effects.join("; ")));
                        }
                    }
                    acks.push(v.jti);
                }
                Err(e) => {
                    self.audit_refusal(outcome(SetVerdict::Refused, e.to_string()));
                    count(self.sets_refused);
                    if e.kind == SetErrorKind::UnsupportedSubject {
                        count(self.unsupported_subjects);
                    }
                    log(
                        LogLevel::Warn,
                        &format!(
                            "agent-iam: revocation feed: SET {key:?} refused ({e}); not applied, not acknowledged"
                        ),
                    );
                }
            }
        }
        let before = doc.state.len();
        doc.state.prune(now);
        changed |= doc.state.len() != before;
        if changed {
            doc.version = doc.version.saturating_add(1);
        }
        doc.fresh_ms = now_ms;
        doc.acks = acks;
        let bytes = match serde_json::to_vec(&doc) {
            Ok(b) => b,
            Err(e) => {
                self.failed(&format!("cannot encode state: {e}"));
                return true;
            }
        };
        // Document first, then head: a reader that sees the new head finds the new state.
        let head = format!("{}\n{}", doc.version, doc.fresh_ms);
        let ok = hostcalls::set_shared_data(&self.doc_key, Some(&bytes), cas).is_ok()
            && hostcalls::set_shared_data(&self.head_key, Some(head.as_bytes()), None).is_ok();
        if !ok {
            self.failed("cannot write shared data (concurrent writer?)");
            return true;
        }
        self.failures.recovered();
        count(self.polls_ok);
        // Poll again at once only if this answer made progress: with nothing acknowledged,
        // the transmitter would answer the same SETs again (wait for the next interval).
        if more && !doc.acks.is_empty() {
            self.again = true;
        }
        true
    }

    /// Brings `engine` up to the published state: one short shared-data read when nothing
    /// changed.
    pub fn sync(&self, engine: &mut Engine) {
        let Ok((Some(head), _)) = hostcalls::get_shared_data(&self.head_key) else {
            return;
        };
        let Some((version, fresh_ms)) = parse_head(&head) else {
            return;
        };
        let fresh_at = fresh_ms as f64 / 1000.0;
        if version == engine.revocation_version() {
            engine.confirm_revocation(fresh_at);
            return;
        }
        match self.read_doc() {
            Ok((doc, _)) => engine.set_revocation(doc.state, doc.version, fresh_at),
            Err(e) => log(
                LogLevel::Error,
                &format!("agent-iam: {e}; keeping the current revocation state"),
            ),
        }
    }
}

fn count(metric: Option<u32>) {
    if let Some(m) = metric {
        let _ = hostcalls::increment_metric(m, 1);
    }
}

fn parse_head(head: &[u8]) -> Option<(u64, u64)> {
    let head = crate::shared::Head::parse(head)?;
    Some((head.number()?, head.fresh_ms))
}
