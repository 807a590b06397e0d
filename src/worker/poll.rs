//! What the three pollers (registry, remote JWKS, revocation) share: one HTTP call at a
//! time through a host cluster, elected by a shared-data lease, and a failure log that is
//! visible without flooding. Each poller then validates the answer and publishes it with
//! [`crate::shared::publish`]; every worker reads the head record on its next request.

use super::host::{log, Host, Level};

/// Where a poller sends its calls.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
}

impl Endpoint {
    pub fn new(cluster: &str, path: &str, authority: Option<&str>, timeout_ms: u64) -> Endpoint {
        Endpoint {
            cluster: cluster.to_owned(),
            path: path.to_owned(),
            authority: authority.unwrap_or(cluster).to_owned(),
            timeout_ms,
        }
    }
}

/// One poller's call state: the call in flight and its consecutive failures.
#[derive(Debug)]
pub struct Poll {
    pub endpoint: Endpoint,
    pub lease_key: String,
    in_flight: Option<u32>,
    failures: Failures,
}

impl Poll {
    pub fn new(
        endpoint: Endpoint,
        lease_key: String,
        what: &'static str,
        keeping: &'static str,
    ) -> Poll {
        Poll {
            endpoint,
            lease_key,
            in_flight: None,
            failures: Failures::new(what, keeping),
        }
    }

    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Takes this interval's lease (one VM per host wins it).
    pub fn take_lease(&self, host: &dyn Host, interval_ms: u64, now_ms: u64) -> bool {
        crate::shared::take_lease(host, &self.lease_key, interval_ms, now_ms)
    }

    /// Sends the call (`method`, extra headers after the pseudo-headers); a failure to
    /// send is logged as a failed poll.
    pub fn send(
        &mut self,
        host: &dyn Host,
        method: &str,
        extra: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(), String> {
        let e = &self.endpoint;
        let mut headers = vec![
            (":method", method),
            (":path", e.path.as_str()),
            (":authority", e.authority.as_str()),
        ];
        headers.extend_from_slice(extra);
        match host.dispatch(&e.cluster, &headers, body, e.timeout_ms) {
            Ok(token) => {
                self.in_flight = Some(token);
                Ok(())
            }
            Err(err) => Err(format!(
                "dispatch to cluster {} failed: {}",
                e.cluster, err.0
            )),
        }
    }

    /// The body of a 200 answer to this poller's call: `None` when `token` is not ours.
    pub fn answer(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
    ) -> Option<Result<Vec<u8>, String>> {
        if self.in_flight != Some(token) {
            return None;
        }
        self.in_flight = None;
        let status = host.call_status();
        if status != b"200" {
            return Some(Err(format!(
                "HTTP status {}",
                String::from_utf8_lossy(&status)
            )));
        }
        Some(host.call_body(body_size).ok_or_else(|| "empty body".into()))
    }

    pub fn failed(&mut self, host: &dyn Host, why: &str) {
        self.failures.record(host, why);
    }

    pub fn recovered(&mut self, host: &dyn Host) {
        self.failures.recovered(host);
    }
}

/// Consecutive failures of one poller, logged the first time and every 10th time after,
/// and the recovery.
#[derive(Debug)]
struct Failures {
    what: &'static str,
    keeping: &'static str,
    count: u64,
}

impl Failures {
    fn new(what: &'static str, keeping: &'static str) -> Failures {
        Failures {
            what,
            keeping,
            count: 0,
        }
    }

    fn record(&mut self, host: &dyn Host, why: &str) {
        self.count = self.count.saturating_add(1);
        if self.count % 10 == 1 {
            log(
                host,
                Level::Warn,
                &format!(
                    "agent-iam: {}: {why}; keeping {} (failure #{})",
                    self.what, self.keeping, self.count
                ),
            );
        }
    }

    fn recovered(&mut self, host: &dyn Host) {
        if self.count > 0 {
            log(
                host,
                Level::Info,
                &format!(
                    "agent-iam: {} recovered after {} failure(s)",
                    self.what, self.count
                ),
            );
        }
        self.count = 0;
    }
}

/// A sender's run of failures and when it may try again (the audit collector, quarantine
/// reports): 100 ms, doubling with each consecutive failure, at most `max_ms`.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    next_attempt_ms: u64,
}

impl Backoff {
    /// Whether an attempt may go out at `now_ms`.
    pub fn ready(&self, now_ms: u64) -> bool {
        now_ms >= self.next_attempt_ms
    }

    /// Lets the next attempt go out at once (a worker stopping sends what it holds).
    pub fn waive(&mut self) {
        self.next_attempt_ms = 0;
    }

    /// Records a failure at `now_ms`: (the wait before the next attempt, failures in a row).
    pub fn failed(&mut self, now_ms: u64, max_ms: u64) -> (u64, u32) {
        self.failures = self.failures.saturating_add(1);
        let wait = 100u64
            .saturating_mul(1u64 << self.failures.min(20))
            .min(max_ms);
        self.next_attempt_ms = now_ms.saturating_add(wait);
        (wait, self.failures)
    }

    /// Records a success; one log line when it ends a run of failures (`what` names the
    /// sender: "audit collector recovered").
    pub fn succeeded(&mut self, host: &dyn Host, what: &str) {
        if self.failures > 0 {
            log(
                host,
                Level::Info,
                &format!("agent-iam: {what} after {} failure(s)", self.failures),
            );
        }
        self.failures = 0;
        self.next_attempt_ms = 0;
    }
}
