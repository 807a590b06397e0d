//! The revocation feed: one VM per host (the holder of a shared-data lease) polls the
//! Shared Signals transmitter (RFC 8936), verifies each SET, merges it into the one
//! revocation state in shared data and acknowledges it on its next poll; every worker
//! picks up a new state version on its next request.
//!
//! Shared data (per `vm_id`, so per Envoy process; `<base>` names the format version, so a
//! module with another state format starts afresh): `<base>/doc` holds
//! `{"version", "fresh_ms", "acks", "state"}`, `<base>/head` holds `version\nfresh_ms` (the
//! cheap per-request read), `<base>/lease` the poll lease, `<base>/session` a random id
//! sent as `x-agent-iam-session` so the transmitter can redeliver to a restarted Envoy.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::host::{log, Host, Level, Metric};
use super::poll::{Endpoint, Poll};
use crate::audit::{SetOutcome, SetVerdict};
use crate::crypto::SignatureBackend;
use crate::pipeline::Engine;
use crate::revocation::{
    parse_poll_response, poll_body, verify_set, Applied, Revocation, RevocationState, SetErrorKind,
    TokenLimits, Transmitter,
};
use crate::shared::{Head, SharedData};

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

#[derive(Clone, Copy)]
struct Metrics {
    age: Metric,
    polls_ok: Metric,
    poll_failures: Metric,
    sets_refused: Metric,
    unsupported_subjects: Metric,
}

pub struct RevocationFeed {
    interval_ms: u64,
    max_events: u64,
    limits: TokenLimits,
    doc_key: String,
    head_key: String,
    session_key: String,
    poll: Poll,
    /// Poll again at once (the transmitter said `moreAvailable`).
    again: bool,
    metrics: Metrics,
    /// Refused SETs already audited: the transmitter redelivers them every poll.
    refusals_audited: HashSet<String>,
}

impl RevocationFeed {
    pub fn new(
        host: &dyn Host,
        r: &Revocation,
        max_token_lifetime_s: u64,
        clock_skew_s: u64,
    ) -> RevocationFeed {
        let base = format!("agent-iam/revocation/v2/{}{}", r.feed.cluster, r.feed.path);
        let counter = |name| Metric::counter(host, name);
        let endpoint = Endpoint::new(
            &r.feed.cluster,
            &r.feed.path,
            r.feed.authority.as_deref(),
            r.feed.timeout_ms,
        );
        RevocationFeed {
            interval_ms: r.feed.interval_ms,
            max_events: r.feed.max_events,
            limits: TokenLimits {
                max_lifetime_s: max_token_lifetime_s as f64,
                skew_s: clock_skew_s as f64,
            },
            doc_key: format!("{base}/doc"),
            head_key: format!("{base}/head"),
            session_key: format!("{base}/session"),
            poll: Poll::new(
                endpoint,
                format!("{base}/lease"),
                "revocation feed",
                "the last state",
            ),
            again: false,
            metrics: Metrics {
                age: Metric::gauge(host, "agent_iam.revocation.feed_age_seconds"),
                polls_ok: counter("agent_iam.revocation.polls_ok_total"),
                poll_failures: counter("agent_iam.revocation.poll_failures_total"),
                sets_refused: counter("agent_iam.revocation.sets_refused_total"),
                unsupported_subjects: counter("agent_iam.revocation.unsupported_subjects_total"),
            },
            refusals_audited: HashSet::new(),
        }
    }

    /// A refusal goes to the audit stream once per SET (bounded memory).
    fn audit_refusal(&mut self, out: &mut Vec<SetOutcome>, o: SetOutcome) {
        if self.refusals_audited.len() >= 1000 {
            self.refusals_audited.clear();
        }
        if self.refusals_audited.insert(o.jti.clone()) {
            out.push(o);
        }
    }

    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    fn read_doc(&self, host: &dyn SharedData) -> Result<(Doc, Option<u32>), String> {
        match host.get(&self.doc_key) {
            Ok((Some(bytes), cas)) => serde_json::from_slice(&bytes)
                .map(|d| (d, cas))
                .map_err(|e| format!("shared revocation state does not parse: {e}")),
            Ok((None, cas)) => Ok((Doc::default(), cas)),
            Err(e) => Err(format!("cannot read shared data: {}", e.0)),
        }
    }

    /// The receiver session: one per state store, so a module with a new state format (a
    /// new `<base>`, an empty state) is a new session the transmitter redelivers to.
    fn session(&self, host: &dyn Host) -> String {
        if let Ok((Some(v), _)) = host.get(&self.session_key) {
            return String::from_utf8_lossy(&v).into_owned();
        }
        let mut b = [0u8; 16];
        let _ = getrandom::getrandom(&mut b);
        let id = hex::encode(b);
        let _ = host.set(&self.session_key, id.as_bytes(), None);
        id
    }

    /// On every tick: report the feed's age; poll if this VM holds the lease.
    pub fn on_tick(&mut self, host: &dyn Host, now_ms: u64) {
        if let Ok((Some(head), _)) = host.get(&self.head_key) {
            if let Some(fresh) = parse_head(&head).map(|(_, f)| f) {
                let age = super::seconds_up(now_ms.saturating_sub(fresh));
                self.metrics.age.record(host, age);
            }
        }
        if self.poll.busy() {
            return;
        }
        if !self.again && !self.poll.take_lease(host, self.interval_ms, now_ms) {
            return;
        }
        self.again = false;
        let acks = match self.read_doc(host) {
            Ok((doc, _)) => doc.acks,
            Err(e) => {
                self.failed(host, &e);
                Vec::new()
            }
        };
        let session = self.session(host);
        let body = poll_body(&acks, self.max_events);
        let headers = [
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-agent-iam-session", session.as_str()),
        ];
        if let Err(e) = self.poll.send(host, "POST", &headers, Some(&body)) {
            self.failed(host, &e);
        }
    }

    fn failed(&mut self, host: &dyn Host, why: &str) {
        self.metrics.poll_failures.add(host, 1);
        self.poll.failed(host, why);
    }

    /// The transmitter answered: verify, apply, publish, remember what to acknowledge.
    /// `None` when the call answer was not ours; else what happened to each SET (for the
    /// audit stream).
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
        backend: &dyn SignatureBackend,
        transmitter: &Transmitter,
    ) -> Option<Vec<SetOutcome>> {
        let answer = self.poll.answer(host, token, body_size)?;
        let mut outcomes = Vec::new();
        let result = answer
            .and_then(|body| self.apply(host, &body, now_ms, backend, transmitter, &mut outcomes));
        if let Err(e) = result {
            self.failed(host, &e);
        }
        Some(outcomes)
    }

    fn apply(
        &mut self,
        host: &dyn Host,
        body: &[u8],
        now_ms: u64,
        backend: &dyn SignatureBackend,
        transmitter: &Transmitter,
        outcomes: &mut Vec<SetOutcome>,
    ) -> Result<(), String> {
        let (sets, more) = parse_poll_response(body)?;
        let (mut doc, cas) = self.read_doc(host)?;
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
                        host,
                        Level::Warn,
                        &format!(
                            "agent-iam: revocation feed: SET {why}; not applied, not acknowledged"
                        ),
                    );
                    self.metrics.sets_refused.add(host, 1);
                    self.audit_refusal(outcomes, outcome(SetVerdict::Refused, why));
                }
                Ok(v) => {
                    let effects: Vec<String> = v.effects.iter().map(ToString::to_string).collect();
                    let verdict = match doc.state.apply(&v, now, self.limits) {
                        Applied::Applied => {
                            changed = true;
                            let msg = format!(
                                "agent-iam: revocation applied: SET {} {:?}",
                                v.jti, v.effects
                            );
                            log(host, Level::Info, &msg);
                            SetVerdict::Applied
                        }
                        Applied::Replay => {
                            let msg = format!("agent-iam: revocation feed: SET {} already applied (acknowledged again)", v.jti);
                            log(host, Level::Info, &msg);
                            SetVerdict::Replay
                        }
                    };
                    outcomes.push(outcome(verdict, effects.join("; ")));
                    acks.push(v.jti);
                }
                Err(e) => {
                    self.audit_refusal(outcomes, outcome(SetVerdict::Refused, e.to_string()));
                    self.metrics.sets_refused.add(host, 1);
                    if e.kind == SetErrorKind::UnsupportedSubject {
                        self.metrics.unsupported_subjects.add(host, 1);
                    }
                    log(
                        host,
                        Level::Warn,
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
        let bytes = serde_json::to_vec(&doc).map_err(|e| format!("cannot encode state: {e}"))?;
        // Document first (compare-and-swap: one writer at a time), then head: a reader that
        // sees the new head finds the new state.
        let head = Head::new(doc.version.to_string(), doc.fresh_ms).ok_or("bad head")?;
        let ok = host.set(&self.doc_key, &bytes, cas).is_ok()
            && host.set(&self.head_key, &head.to_bytes(), None).is_ok();
        if !ok {
            // Nothing was stored: the SETs stay unacknowledged and come again; only the
            // refusals happened.
            outcomes.retain(|o| o.outcome == SetVerdict::Refused);
            return Err("cannot write shared data (concurrent writer?)".into());
        }
        self.poll.recovered(host);
        self.metrics.polls_ok.add(host, 1);
        // Poll again at once only if this answer made progress: with nothing acknowledged,
        // the transmitter would answer the same SETs again (wait for the next interval).
        if more && !doc.acks.is_empty() {
            self.again = true;
        }
        Ok(())
    }

    /// Brings `engine` up to the published state: one short shared-data read when nothing
    /// changed.
    pub fn sync(&self, host: &dyn Host, engine: &mut Engine) {
        let Ok((Some(head), _)) = host.get(&self.head_key) else {
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
        match self.read_doc(host) {
            Ok((doc, _)) => engine.set_revocation(doc.state, doc.version, fresh_at),
            Err(e) => log(
                host,
                Level::Error,
                &format!("agent-iam: {e}; keeping the current revocation state"),
            ),
        }
    }
}

fn parse_head(head: &[u8]) -> Option<(u64, u64)> {
    let head = Head::parse(head)?;
    Some((head.number()?, head.fresh_ms))
}
