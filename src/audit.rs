//! The audit trail: one JSON event per decision, chained per worker so that a removed,
//! reordered or edited event is detectable (`agent-iam audit verify`).
//!
//! Every event carries the stream id of the worker that wrote it, a sequence number and
//! `prev`, the BLAKE2b-256 of the exact JSON text of the stream's previous event. A stream
//! begins with a `start` event (sequence 1, `prev` all zeros) and carries a `checkpoint`
//! at least every `checkpoint_s` seconds while it lives, so a verifier can tell a stream
//! whose tail was cut off from one that is simply quiet. The host decides where events go
//! (log line, filter state, collector); this module only builds and checks them.

use std::collections::BTreeMap;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

/// The chain's hash: BLAKE2b with a 32-byte digest (RFC 7693; Python's
/// `hashlib.blake2b(text, digest_size=32)`, coreutils' `b2sum -l 256`). Inside Envoy it
/// costs 1.2 µs for a 900-byte event where SHA-256 costs 4.0 µs (no SHA instructions in
/// Wasm; `test-harness/bench_audit.py`).
pub type ChainHash = Blake2b<U32>;

use crate::decision::Decision;
use crate::reason::Reason;

/// Prefix of every audit log line; what follows it on the line is the event's JSON text.
pub const LOG_PREFIX: &str = "agent-iam audit ";

/// `msg` as one log line: control characters and Unicode line separators escaped the way
/// Rust writes them (`\n`, `\u{1}`), so that a value a message quotes (a feed document's,
/// an IdP's, a peer's) can never start a line of its own in the host's log. Audit events
/// are JSON and contain none, so their lines are unchanged.
pub fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    let breaks = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !msg.chars().any(breaks) {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len().saturating_add(16));
    for c in msg.chars() {
        if breaks(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Version of the event format (`v`).
pub const FORMAT_VERSION: u8 = 1;

/// The `audit` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Write each event as a log line `agent-iam audit {json}` through the host. Default:
    /// on unless `filter_state` or `collector` carries the events (the log line is the
    /// dearest output, and the only one that needs no further configuration).
    #[serde(default)]
    pub log: Option<bool>,
    /// Put each event in the request's filter state (`wasm.agent_iam.audit`) for the host's
    /// access logs (default false).
    #[serde(default)]
    pub filter_state: bool,
    /// Longest quiet time of a stream before it writes a checkpoint (1..=3600 s; default 60).
    #[serde(default = "default_checkpoint_s")]
    pub checkpoint_s: u64,
    /// Batch events to an HTTP collector (an Envoy cluster).
    #[serde(default)]
    pub collector: Option<CollectorConfig>,
    /// Who chose the `x-request-id` recorded in each event (`request.id_source`): `client`
    /// (default: Envoy keeps a client's id for requests from internal addresses, and for
    /// every request when `use_remote_address` is off) or `envoy` (only when the connection
    /// manager replaces every client's id, as `agent-iam generate envoy` writes it).
    #[serde(default)]
    pub request_id_from: RequestIdFrom,
}

/// `audit.request_id_from`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RequestIdFrom {
    #[default]
    Client,
    Envoy,
}

impl RequestIdFrom {
    fn as_str(self) -> &'static str {
        match self {
            RequestIdFrom::Client => "client",
            RequestIdFrom::Envoy => "envoy",
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            log: None,
            filter_state: false,
            checkpoint_s: default_checkpoint_s(),
            collector: None,
            request_id_from: RequestIdFrom::Client,
        }
    }
}

fn default_checkpoint_s() -> u64 {
    60
}

/// Where and how to send batches of events.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Envoy cluster of the collector.
    pub cluster: String,
    /// Path that receives `POST`ed batches (newline-delimited JSON).
    pub path: String,
    /// `:authority` (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Events per batch (1..=1000; default 100); a full batch is sent at once.
    #[serde(default = "default_batch_max")]
    pub batch_max: u64,
    /// A partial batch waits at most this long (10..=60000 ms; default 1000).
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// Events kept per worker while the collector is slow or down (1..=1000000; default
    /// 10000); beyond it the oldest are dropped and counted.
    #[serde(default = "default_max_queue")]
    pub max_queue: u64,
    /// Per-batch timeout (10..=60000 ms; default 2000).
    #[serde(default = "default_collector_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait between retries; the wait doubles from 100 ms after each failure
    /// (100..=600000 ms; default 30000).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_batch_max() -> u64 {
    100
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_max_queue() -> u64 {
    10_000
}
fn default_collector_timeout_ms() -> u64 {
    2000
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

impl AuditConfig {
    /// Whether events are written as log lines (see `log`).
    pub fn log_lines(&self) -> bool {
        self.log
            .unwrap_or(!self.filter_state && self.collector.is_none())
    }

    /// Checks value ranges, naming each problem's JSON path.
    pub fn validate(&self, problems: &mut Vec<crate::problem::Problem>) {
        let mut bad = |path: &str, message: String| {
            problems.push(crate::problem::Problem {
                path: format!("$.audit.{path}"),
                message,
            })
        };
        if !(1..=3600).contains(&self.checkpoint_s) {
            bad(
                "checkpoint_s",
                format!("{} is outside 1..=3600", self.checkpoint_s),
            );
        }
        let Some(c) = &self.collector else {
            if !self.log_lines() && !self.filter_state {
                bad(
                    "log",
                    "every audit output is off: enable `log`, `filter_state` or `collector`".into(),
                );
            }
            return;
        };
        if c.cluster.is_empty() {
            bad("collector.cluster", "must name an Envoy cluster".into());
        }
        if !c.path.starts_with('/') {
            bad(
                "collector.path",
                format!("\"{}\" must start with `/`", c.path),
            );
        }
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("batch_max", c.batch_max, 1, 1000),
            ("flush_interval_ms", c.flush_interval_ms, 10, 60_000),
            ("max_queue", c.max_queue, 1, 1_000_000),
            ("timeout_ms", c.timeout_ms, 10, 60_000),
            ("backoff_max_ms", c.backoff_max_ms, 100, 600_000),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                bad(
                    &format!("collector.{name}"),
                    format!("{v} is outside {lo}..={hi}"),
                );
            }
        }
    }
}

/// What the host knows about a request besides the decision.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    /// When the request was decided (UNIX seconds).
    pub now: f64,
    /// The filter's own time for the request, in microseconds.
    pub latency_us: u64,
    /// Host request id (`x-request-id`), if any.
    pub request_id: Option<&'a str>,
}

/// One worker's chain of events.
#[derive(Debug, Clone)]
pub struct AuditStream {
    id: String,
    link: Link,
    checkpoint_s: u64,
    policy_revision: Option<String>,
    decisions: u64,
    request_id_from: RequestIdFrom,
}

/// The running end of a chain.
#[derive(Debug, Clone)]
struct Link {
    seq: u64,
    prev: [u8; 32],
    /// Time of the last event written (UNIX seconds).
    last_event_at: f64,
}

/// A serialised event: the log line `agent-iam audit {json}`; [`AuditLine::json`] is the
/// event itself (what the chain hashes and what collectors and access logs receive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine(String);

impl AuditLine {
    /// The whole log line, with [`LOG_PREFIX`].
    pub fn log_line(&self) -> &str {
        &self.0
    }

    /// The event's JSON text.
    pub fn json(&self) -> &str {
        self.0.get(LOG_PREFIX.len()..).unwrap_or_default()
    }
}

impl AuditStream {
    /// A new stream; `id` is the worker's random 64-bit stream id.
    pub fn new(id: u64, checkpoint_s: u64, policy_revision: Option<String>) -> Self {
        AuditStream {
            id: format!("{id:016x}"),
            link: Link {
                seq: 0,
                prev: [0; 32],
                last_event_at: 0.0,
            },
            checkpoint_s,
            policy_revision,
            decisions: 0,
            request_id_from: RequestIdFrom::Client,
        }
    }

    /// Who chooses the request ids this stream records (`audit.request_id_from`).
    pub fn with_request_id_from(mut self, from: RequestIdFrom) -> Self {
        self.request_id_from = from;
        self
    }

    /// Time of the last event written (UNIX seconds; 0 before the first).
    pub fn last_event_at(&self) -> f64 {
        self.link.last_event_at
    }

    /// Whether the stream has begun (its `start` event is written).
    pub fn started(&self) -> bool {
        self.link.seq > 0
    }

    /// What every event after `start` begins with: the stream's `start` line first if it
    /// has not begun, the event time, the previous event's hash and the next `seq`.
    fn open(&mut self, now: f64) -> (Vec<AuditLine>, String, [u8; 32], u64) {
        let mut out = Vec::with_capacity(2);
        if !self.started() {
            out.push(self.start(now));
        }
        (
            out,
            rfc3339_micros(now),
            self.link.prev,
            self.link.seq.saturating_add(1),
        )
    }

    /// The event(s) for one decision: the stream's `start` event first if this is its
    /// first decision.
    pub fn decision(&mut self, d: &Decision, ctx: &EventContext<'_>) -> Vec<AuditLine> {
        let (mut out, time, prev, seq) = self.open(ctx.now);
        self.decisions = self.decisions.saturating_add(1);
        let t = d.token.as_ref();
        let a = d.agent.as_ref();
        let token = match t {
            Some(t) => Some(TokenPart {
                iss: Some(&t.issuer),
                jti: t.jti.as_deref(),
                exp: Some(t.exp),
                kid: Some(&t.kid),
                alg: Some(t.alg.as_str()),
                sha256: Hex(&t.sha256),
                cached: Some(d.token_cached),
            }),
            None => d.presented.as_ref().map(|h| TokenPart {
                iss: None,
                jti: None,
                exp: None,
                kid: None,
                alg: None,
                sha256: Hex(h),
                cached: None,
            }),
        };
        let empty: &[String] = &[];
        let ev = DecisionEvent {
            v: FORMAT_VERSION,
            kind: "decision",
            stream: &self.id,
            seq,
            prev: Hex(&prev),
            time: &time,
            decision_id: &d.decision_id,
            decision: if d.allowed() { "allow" } else { "deny" },
            status: d.status(),
            reason: d.reason.map(Reason::as_str),
            policy_reason: d.policy_reason.as_deref(),
            agent: t.map(|t| t.agent.as_str()),
            principal: t.map(|t| t.subject.as_str()),
            owner: a.and_then(|a| a.owner.as_deref()),
            chain: Chain(t.map_or(&[], |t| t.chain.as_slice())),
            token,
            scopes: Scopes {
                requested: t.map_or(empty, |t| t.scopes.as_slice()),
                effective: a.map_or(empty, |a| a.effective.as_slice()),
            },
            route: d.route.as_deref(),
            request: RequestPart {
                method: &d.method,
                host: &d.host,
                path: &d.path,
                original: d.original.as_ref().map(|o| OriginalPart {
                    target: &o.clipped,
                    bytes: o.bytes,
                    sha256: Hex(&o.sha256),
                }),
                id: ctx.request_id.map(clip_id),
                id_source: ctx.request_id.map(|_| self.request_id_from.as_str()),
            },
            policy: d
                .policy_revision
                .as_deref()
                .map(|revision| PolicyPart { revision }),
            latency_us: ctx.latency_us,
        };
        out.push(self.link.seal(&ev, ctx.now));
        out
    }

    /// The event(s) for a revocation SET the worker's feed handled (the stream's `start`
    /// first if it has not begun): who revoked what, and what the filter did with it.
    pub fn revocation(&mut self, set: &SetOutcome, now: f64) -> Vec<AuditLine> {
        let (mut out, time, prev, seq) = self.open(now);
        let ev = RevocationEvent {
            v: FORMAT_VERSION,
            kind: "revocation",
            stream: &self.id,
            seq,
            prev: Hex(&prev),
            time: &time,
            jti: &set.jti,
            outcome: set.outcome.as_str(),
            detail: &set.detail,
        };
        out.push(self.link.seal(&ev, now));
        out
    }

    /// The event(s) for a registry feed answer the worker's poller applied or refused (the
    /// stream's `start` first if it has not begun).
    pub fn registry(&mut self, r: &RegistryOutcome, now: f64) -> Vec<AuditLine> {
        let (mut out, time, prev, seq) = self.open(now);
        let ev = RegistryEvent {
            v: FORMAT_VERSION,
            kind: "registry",
            stream: &self.id,
            seq,
            prev: Hex(&prev),
            time: &time,
            outcome: r.outcome.as_str(),
            version: r.version.as_deref(),
            previous: r.previous.as_deref(),
            sha256: &r.sha256,
            detail: &r.detail,
        };
        out.push(self.link.seal(&ev, now));
        out
    }

    /// A checkpoint, if the stream has begun and has been quiet for `checkpoint_s`
    /// (`dropped`: events this worker could not deliver, for the verifier's report).
    pub fn checkpoint_due(&mut self, now: f64, dropped: u64) -> Option<AuditLine> {
        if !self.started() || now - self.link.last_event_at < self.checkpoint_s as f64 {
            return None;
        }
        Some(self.checkpoint(now, dropped))
    }

    /// The stream's last event when the host shuts the worker down (`final`: the verifier
    /// knows the stream ended on purpose); `None` if it never began.
    pub fn finish(&mut self, now: f64, dropped: u64) -> Option<AuditLine> {
        self.started()
            .then(|| self.checkpoint_event(now, dropped, true))
    }

    /// A checkpoint now.
    pub fn checkpoint(&mut self, now: f64, dropped: u64) -> AuditLine {
        self.checkpoint_event(now, dropped, false)
    }

    fn checkpoint_event(&mut self, now: f64, dropped: u64, last: bool) -> AuditLine {
        let time = rfc3339_micros(now);
        let prev = self.link.prev;
        let ev = CheckpointEvent {
            v: FORMAT_VERSION,
            kind: "checkpoint",
            stream: &self.id,
            seq: self.link.seq.saturating_add(1),
            prev: Hex(&prev),
            time: &time,
            decisions: self.decisions,
            dropped,
            checkpoint_s: self.checkpoint_s,
            last,
        };
        self.link.seal(&ev, now)
    }

    fn start(&mut self, now: f64) -> AuditLine {
        let time = rfc3339_micros(now);
        let prev = self.link.prev;
        let ev = StartEvent {
            v: FORMAT_VERSION,
            kind: "start",
            stream: &self.id,
            seq: self.link.seq.saturating_add(1),
            prev: Hex(&prev),
            time: &time,
            version: crate::VERSION,
            checkpoint_s: self.checkpoint_s,
            policy: self
                .policy_revision
                .as_deref()
                .map(|revision| PolicyPart { revision }),
        };
        self.link.seal(&ev, now)
    }
}

impl Link {
    /// Serialises `ev` after the log prefix and advances the chain over its JSON text.
    fn seal<T: Serialize>(&mut self, ev: &T, now: f64) -> AuditLine {
        // Serialising these plain structs cannot fail; if it ever did, the event would
        // still be valid JSON naming the failure (and chained like any other).
        let json = serde_json::to_string(ev).unwrap_or_else(|_| r#"{"kind":"error"}"#.into());
        let mut line = String::with_capacity(LOG_PREFIX.len() + json.len());
        line.push_str(LOG_PREFIX);
        line.push_str(&json);
        self.prev = ChainHash::digest(json.as_bytes()).into();
        self.seq = self.seq.saturating_add(1);
        self.last_event_at = now;
        AuditLine(line)
    }
}

#[derive(Serialize)]
struct DecisionEvent<'a> {
    v: u8,
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    prev: Hex<'a>,
    time: &'a str,
    decision_id: &'a str,
    decision: &'static str,
    status: u16,
    reason: Option<&'static str>,
    policy_reason: Option<&'a str>,
    agent: Option<&'a str>,
    principal: Option<&'a str>,
    owner: Option<&'a str>,
    chain: Chain<'a>,
    token: Option<TokenPart<'a>>,
    scopes: Scopes<'a>,
    route: Option<&'a str>,
    request: RequestPart<'a>,
    policy: Option<PolicyPart<'a>>,
    latency_us: u64,
}

#[derive(Serialize)]
struct StartEvent<'a> {
    v: u8,
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    prev: Hex<'a>,
    time: &'a str,
    version: &'static str,
    checkpoint_s: u64,
    policy: Option<PolicyPart<'a>>,
}

/// What the revocation feed did with one SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// The SET's `jti` (its key in the poll response).
    pub jti: String,
    pub outcome: SetVerdict,
    /// The effects applied, or why the SET was refused.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetVerdict {
    /// Verified and applied (and acknowledged).
    Applied,
    /// Verified, already applied before (acknowledged again).
    Replay,
    /// Refused: neither applied nor acknowledged.
    Refused,
}

impl SetVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            SetVerdict::Applied => "applied",
            SetVerdict::Replay => "replay",
            SetVerdict::Refused => "refused",
        }
    }
}

#[derive(Serialize)]
struct RevocationEvent<'a> {
    v: u8,
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    prev: Hex<'a>,
    time: &'a str,
    jti: &'a str,
    outcome: &'static str,
    detail: &'a str,
}

/// What the registry feed poller did with one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOutcome {
    pub outcome: RegistryVerdict,
    /// The answer's version (`None` when the document did not parse).
    pub version: Option<String>,
    /// The version in use before (`None`: the inline registry).
    pub previous: Option<String>,
    /// SHA-256 (hex) of the answer's body.
    pub sha256: String,
    /// What changed, or why the answer was refused.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryVerdict {
    /// Published: every worker switches to it on its next request.
    Applied,
    /// Refused (invalid document or version, or a rollback): the registry in use stays.
    Refused,
}

impl RegistryVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryVerdict::Applied => "applied",
            RegistryVerdict::Refused => "refused",
        }
    }
}

#[derive(Serialize)]
struct RegistryEvent<'a> {
    v: u8,
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    prev: Hex<'a>,
    time: &'a str,
    outcome: &'static str,
    version: Option<&'a str>,
    previous: Option<&'a str>,
    sha256: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct CheckpointEvent<'a> {
    v: u8,
    kind: &'static str,
    stream: &'a str,
    seq: u64,
    prev: Hex<'a>,
    time: &'a str,
    decisions: u64,
    dropped: u64,
    checkpoint_s: u64,
    /// The worker is shutting down: nothing follows.
    #[serde(rename = "final", skip_serializing_if = "std::ops::Not::not")]
    last: bool,
}

#[derive(Serialize)]
struct TokenPart<'a> {
    iss: Option<&'a str>,
    jti: Option<&'a str>,
    #[serde(serialize_with = "numeric_date")]
    exp: Option<f64>,
    kid: Option<&'a str>,
    alg: Option<&'a str>,
    sha256: Hex<'a>,
    /// Whether the signature check was answered by the verified-token cache.
    cached: Option<bool>,
}

#[derive(Serialize)]
struct Scopes<'a> {
    requested: &'a [String],
    effective: &'a [String],
}

#[derive(Serialize)]
struct RequestPart<'a> {
    method: &'a str,
    host: &'a str,
    /// The canonical target the decision was taken on.
    path: &'a str,
    /// The client's target, when the filter rewrote or refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    original: Option<OriginalPart<'a>>,
    id: Option<&'a str>,
    id_source: Option<&'static str>,
}

#[derive(Serialize)]
struct OriginalPart<'a> {
    /// At most 512 bytes, with a trailing `…` when clipped.
    target: &'a str,
    /// The whole target's length.
    bytes: usize,
    sha256: Hex<'a>,
}

#[derive(Serialize)]
struct PolicyPart<'a> {
    revision: &'a str,
}

/// The actors' `sub`s, newest first.
struct Chain<'a>(&'a [crate::token::Actor]);

impl Serialize for Chain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| a.sub.as_str()))
    }
}

struct Hex<'a>(&'a [u8; 32]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = [0u8; 64];
        match hex::encode_to_slice(self.0, &mut out) {
            Ok(()) => s.serialize_str(std::str::from_utf8(&out).unwrap_or_default()),
            Err(_) => s.serialize_none(),
        }
    }
}

/// Request ids come from the client (or the host); keep at most 128 bytes of one.
fn clip_id(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default()
}

/// NumericDate: an integer when it is one.
fn numeric_date<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(*v as i64),
        Some(v) => s.serialize_f64(*v),
        None => s.serialize_none(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for UNIX seconds (UTC); times before 1970 clamp to it.
pub fn rfc3339_micros(secs: f64) -> String {
    let micros = if secs.is_finite() && secs > 0.0 {
        (secs * 1e6).round() as u64
    } else {
        0
    };
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    let (days, rem) = (s / 86_400, s % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            if let Some(c) = out.get_mut(i) {
                *c = b'0' + (v % 10) as u8;
            }
            v /= 10;
        }
    };
    put(0, 4, y.clamp(0, 9999) as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 6, us);
    out.iter().map(|&b| char::from(b)).collect()
}

/// Parses what [`rfc3339_micros`] writes back to UNIX seconds.
pub fn parse_rfc3339_micros(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if b.len() != 27 || b.get(26) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    let days = days_from_civil(y, m, d);
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + us as f64 / 1e6)
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

    #[test]
    fn time_round_trips() {
        for s in [
            0.0,
            1.5,
            951_782_400.25,
            1_800_000_000.123_456,
            4_102_444_800.0,
        ] {
            let t = rfc3339_micros(s);
            assert_eq!(t.len(), 27, "{t}");
            assert!((parse_rfc3339_micros(&t).unwrap() - s).abs() < 1e-6, "{t}");
        }
        assert_eq!(rfc3339_micros(951_782_400.0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(-5.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(parse_rfc3339_micros("2000-02-29T00:00:00Z"), None);
    }

    use crate::pipeline::{Decision, DecisionIds, Engine, Request};
    use serde_json::{json, Value};

    fn ctx(now: f64) -> EventContext<'static> {
        EventContext {
            now,
            latency_us: 12,
            request_id: Some("req-1"),
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
    fn checkpoints_come_when_a_stream_is_quiet() {
        let mut s = AuditStream::new(1, 10, None);
        assert!(s.checkpoint_due(100.0, 0).is_none(), "not started");
        let d = Decision::denied("id".into(), Reason::TokenMissing);
        assert_eq!(s.decision(&d, &ctx(100.0)).len(), 2);
        assert_eq!(s.decision(&d, &ctx(101.0)).len(), 1);
        assert!(s.checkpoint_due(105.0, 0).is_none());
        let cp = s.checkpoint_due(111.5, 3).unwrap();
        let v: Value = serde_json::from_str(cp.json()).unwrap();
        assert_eq!(
            (v["seq"].as_u64(), v["dropped"].as_u64()),
            (Some(4), Some(3))
        );
        assert!(s.checkpoint_due(115.0, 3).is_none());
        let end = s.finish(116.0, 3).unwrap();
        assert!(end.json().contains(r#""final":true"#));
        assert!(AuditStream::new(2, 10, None).finish(1.0, 0).is_none());
    }

    #[test]
    fn revocation_outcomes_are_chained_events() {
        let mut s = AuditStream::new(3, 60, None);
        let refused = SetOutcome {
            jti: "set-1".into(),
            outcome: SetVerdict::Refused,
            detail: "signature does not verify".into(),
        };
        let lines = s.revocation(&refused, 10.0);
        assert_eq!(lines.len(), 2, "start first");
        let v: Value = serde_json::from_str(lines[1].json()).unwrap();
        assert_eq!(v["kind"], "revocation");
        assert_eq!(v["outcome"], "refused");
        assert_eq!(v["jti"], "set-1");
        let text: Vec<String> = lines.iter().map(|l| l.log_line().to_owned()).collect();
        assert!(check(&text, VerifyOptions::default()).ok());
    }

    #[test]
    fn registry_outcomes_are_chained_events() {
        let mut s = AuditStream::new(4, 60, None);
        let refused = RegistryOutcome {
            outcome: RegistryVerdict::Refused,
            version: Some("2".into()),
            previous: Some("3".into()),
            sha256: "ab".repeat(32),
            detail: "version 2 is older than version 3 in use".into(),
        };
        let lines = s.registry(&refused, 10.0);
        assert_eq!(lines.len(), 2, "start first");
        let v: Value = serde_json::from_str(lines[1].json()).unwrap();
        assert_eq!(v["kind"], "registry");
        assert_eq!(v["outcome"], "refused");
        assert_eq!(
            (v["version"].as_str(), v["previous"].as_str()),
            (Some("2"), Some("3"))
        );
        let applied = RegistryOutcome {
            outcome: RegistryVerdict::Applied,
            version: Some("4".into()),
            previous: None,
            sha256: "cd".repeat(32),
            detail: "1 agent(s)".into(),
        };
        let mut text: Vec<String> = lines.iter().map(|l| l.log_line().to_owned()).collect();
        text.extend(
            s.registry(&applied, 11.0)
                .iter()
                .map(|l| l.log_line().to_owned()),
        );
        assert!(check(&text, VerifyOptions::default()).ok());
    }

    #[test]
    fn audit_config_is_checked() {
        let mut p = Vec::new();
        let c: AuditConfig =
            serde_json::from_value(json!({"log": false, "checkpoint_s": 0})).unwrap();
        c.validate(&mut p);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["$.audit.checkpoint_s", "$.audit.log"]);
        let mut p = Vec::new();
        let c: AuditConfig = serde_json::from_value(
            json!({"collector": {"cluster": "", "path": "x", "batch_max": 0, "max_queue": 0}}),
        )
        .unwrap();
        c.validate(&mut p);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(serde_json::from_value::<AuditConfig>(json!({"colector": {}})).is_err());
    }

    #[test]
    fn log_messages_stay_on_one_line() {
        assert!(matches!(
            one_line("agent-iam: ok é"),
            std::borrow::Cow::Borrowed(_)
        ));
        let forged = "version 2\nagent-iam audit {\"kind\":\"decision\"}\r\u{1}\u{2028}x";
        let got = one_line(forged);
        assert_eq!(
            got,
            "version 2\\nagent-iam audit {\"kind\":\"decision\"}\\r\\u{1}\\u{2028}x"
        );
        assert_eq!(got.lines().count(), 1);
        let mut stream = AuditStream::new(1, 60, None);
        let d = Decision::denied("d".into(), Reason::TokenMissing);
        for line in stream.decision(&d, &ctx(1.0)) {
            assert_eq!(one_line(line.log_line()), line.log_line());
        }
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
