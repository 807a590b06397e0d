//! One worker's chain of events: sequence numbers, `prev` hashes, `start` and checkpoints.

use blake2::Digest;
use serde::Serialize;

use super::config::RequestIdFrom;
use super::events::{
    clip_id, BindingPart, Chain, CheckpointEvent, DecisionEvent, Hex, IdentityPart, McpPart,
    OriginalPart, PolicyPart, ProofPart, QuarantineEvent, RegistryEvent, RegistryOutcome,
    RequestPart, RevocationEvent, Scopes, SetOutcome, ShadowPart, StartEvent, TokenPart, B64,
    FORMAT_VERSION,
};
use super::time::rfc3339_micros;
use super::{ChainHash, LOG_PREFIX};
use crate::decision::Decision;

/// What the host knows about a request besides the decision.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    /// When the request was decided (UNIX seconds).
    pub now: f64,
    /// The filter's own time for the request, in microseconds.
    pub latency_us: u64,
    /// Host request id (`x-request-id`), if any.
    pub request_id: Option<&'a str>,
    /// The client's W3C `traceparent`, when it sent a well-formed one.
    pub traceparent: Option<&'a str>,
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
            decision: if d.verdict().is_none() {
                "allow"
            } else {
                "deny"
            },
            enforced: d.enforced(),
            status: d.verdict_status(),
            reason: d.verdict_code(),
            shadow: d
                .shadow
                .iter()
                .map(|s| ShadowPart {
                    check: s.check.as_str(),
                    reason: d.code_of(s.reason),
                })
                .collect(),
            policy_reason: d.policy_reason.as_deref(),
            agent: t.map(|t| t.agent.as_str()),
            principal: t.map(|t| t.subject.as_str()),
            owner: a.and_then(|a| a.owner.as_deref()),
            chain: Chain(t.map_or(&[], |t| t.chain.as_slice())),
            identity: t.map(|t| IdentityPart {
                profile: t.profile,
                agent_type: t.agent_type.as_deref(),
                tenant: t.tenant.as_deref(),
                client: t.client.as_deref(),
            }),
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
                traceparent: ctx.traceparent,
                traceparent_source: ctx.traceparent.map(|_| "client"),
            },
            policy: d.policy_revision.as_deref().map(|revision| PolicyPart {
                revision,
                input_sha256: d.policy_input_sha256.as_ref().map(Hex),
                input: d.audited_input.as_ref(),
            }),
            mcp: match (&d.mcp, &d.detail) {
                (Some(m), _) => Some(McpPart {
                    method: Some(&m.method),
                    name: m.name.as_deref(),
                    protocol_version: m.protocol_version.as_deref(),
                    arguments_sha256: m.arguments_sha256.as_ref().map(Hex),
                    detail: d.detail.as_deref(),
                    arguments: m.arguments.as_ref(),
                }),
                // A body refused before its call could be read (too large, not JSON, ended early).
                (None, Some(detail)) if d.jsonrpc => Some(McpPart {
                    method: None,
                    name: None,
                    protocol_version: None,
                    arguments_sha256: None,
                    detail: Some(detail),
                    arguments: None,
                }),
                (None, _) => None,
            },
            binding: t
                .and_then(|t| t.binding.method().map(|m| (t, m)))
                .map(|(t, method)| BindingPart {
                    method,
                    jkt: t.binding.jkt.as_ref().map(B64),
                    x5t_s256: t.binding.x5t_s256.as_ref().map(B64),
                    proof: d.proof.as_ref().map(|p| ProofPart {
                        jkt: B64(&p.jkt),
                        jti: &p.jti,
                        htm: &p.htm,
                        htu: &p.htu,
                        iat: Some(p.iat),
                    }),
                    peer_certificate: d.peer_certificate.as_ref().map(B64),
                }),
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

    /// The event(s) for an agent quarantined by the refusal `decision_id` (the stream's
    /// `start` first if it has not begun).
    pub fn quarantine(
        &mut self,
        q: &crate::quarantine::Evidence,
        decision_id: &str,
        now: f64,
    ) -> Vec<AuditLine> {
        let (mut out, time, prev, seq) = self.open(now);
        let ev = QuarantineEvent {
            v: FORMAT_VERSION,
            kind: "quarantine",
            stream: &self.id,
            seq,
            prev: Hex(&prev),
            time: &time,
            agent: &q.agent,
            since: q.since,
            until: q.until,
            denials: q.denials,
            within_s: q.within_s,
            decision_id,
            decision_ids: &q.decision_ids,
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
            policy: self.policy_revision.as_deref().map(|revision| PolicyPart {
                revision,
                input_sha256: None,
                input: None,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::events::{RegistryVerdict, SetVerdict};
    use crate::audit::verify::{verify, VerifyOptions};
    use crate::reason::Reason;
    use serde_json::Value;

    fn ctx(now: f64) -> EventContext<'static> {
        EventContext {
            now,
            latency_us: 12,
            request_id: Some("req-1"),
            traceparent: None,
        }
    }

    fn verifies(lines: &[String]) -> bool {
        verify(
            &[("audit.log".into(), lines.join("\n"))],
            VerifyOptions::default(),
        )
        .ok()
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
        assert!(verifies(&text));
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
        assert!(verifies(&text));
    }
}
