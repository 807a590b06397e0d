//! The audit trail: one JSON event per decision, chained per worker so that a removed,
//! reordered or edited event is detectable (`agent-iam audit verify`).
//!
//! Every event carries the stream id of the worker that wrote it, a sequence number and
//! `prev`, the BLAKE2b-256 of the exact JSON text of the stream's previous event. A stream
//! begins with a `start` event (sequence 1, `prev` all zeros) and carries a `checkpoint`
//! at least every `checkpoint_s` seconds while it lives, so a verifier can tell a stream
//! whose tail was cut off from one that is simply quiet. The host decides where events go
//! (log line, filter state, collector); this module only builds and checks them.
//!
//! `config`: the `audit` section · `stream`: one worker's chain · `events`: the events'
//! JSON shapes and the feeds' outcomes · `time`: event times · `verify`: the offline
//! chain verifier.

mod config;
mod events;
mod stream;
mod time;
mod verify;

use blake2::digest::consts::U32;
use blake2::Blake2b;

pub use config::{AuditConfig, CollectorConfig, RedactConfig, RequestIdFrom};
pub use events::{RegistryOutcome, RegistryVerdict, SetOutcome, SetVerdict, FORMAT_VERSION};
pub use stream::{AuditLine, AuditStream, EventContext};
pub use time::{parse_rfc3339_micros, rfc3339_micros};
pub use verify::{event_text, verify, VerifyOptions, VerifyReport};

/// The chain's hash: BLAKE2b with a 32-byte digest (RFC 7693; Python's
/// `hashlib.blake2b(text, digest_size=32)`, coreutils' `b2sum -l 256`). Inside Envoy it
/// costs 1.2 µs for a 900-byte event where SHA-256 costs 4.0 µs (no SHA instructions in
/// Wasm; `test-harness/bench/bench_audit.py`).
pub type ChainHash = Blake2b<U32>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::reason::Reason;

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
        let ctx = EventContext {
            now: 1.0,
            latency_us: 12,
            request_id: Some("req-1"),
            traceparent: None,
        };
        for line in stream.decision(&d, &ctx) {
            assert_eq!(one_line(line.log_line()), line.log_line());
        }
    }
}
