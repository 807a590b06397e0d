//! TEST-ONLY (cargo feature `test-hooks`): answers raw signature vectors on the request
//! path so the harness can run Wycheproof through the host crypto backend inside Envoy.
//!
//! `x-agent-iam-test-vector: raw;<host|pure>;<jwk base64url>;<msg hex>;<sig hex>` or
//! `x-agent-iam-test-vector: jws;<host|pure>;<jwk base64url>;<compact jws>`
//! → 200 with body `valid`, `invalid` or `key-rejected: ...`.
//!
//! `x-agent-iam-test-foreign: NAME` → 200 with body `ok N` (N bytes returned) or
//! `error STATUS`: what the host answers a call of its foreign function NAME.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::rc::Rc;
use std::time::Instant;

use super::host::{Host, Level, MetricKind};
use super::{Foreign, Outcome, Worker};
use crate::crypto::{ForeignCall, HostCrypto, PureRust, SignatureBackend};
use crate::keys::{parse_jwk_with, KeyPolicy};
use crate::pipeline::Request;
use crate::token::{check_signature, parse_compact, select_key};

pub(super) fn handle(host: &dyn Host, foreign: Option<&Rc<dyn ForeignCall>>) -> Option<Outcome> {
    // `x-agent-iam-test-panic: 1`: a trap inside the filter (what an unhandled bug would
    // do), so the tests can show Envoy fails closed and the worker recovers.
    if host.request_header("x-agent-iam-test-panic").is_some() {
        #[allow(clippy::panic)]
        {
            panic!("test-hooks: panic requested by x-agent-iam-test-panic");
        }
    }
    // `x-agent-iam-test-noop: 1`: continue at once (the cost of the filter's plumbing alone).
    if host.request_header("x-agent-iam-test-noop").is_some() {
        return Some(Outcome::Continue);
    }
    // What a host answers for a foreign function it may not have, without a trap.
    if let Some(name) = host.request_header("x-agent-iam-test-foreign") {
        let name = String::from_utf8_lossy(&name).into_owned();
        let verdict = match foreign.map(|f| f.call(&name, b"")) {
            None => "no foreign functions".to_owned(),
            Some(Ok(r)) => format!("ok {}", r.map_or(0, |b| b.len())),
            Some(Err(e)) => format!("error {e}"),
        };
        let _ = host.send_response(200, &[], verdict.as_bytes());
        return Some(Outcome::Answered);
    }
    let raw = host.request_header("x-agent-iam-test-vector")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let verdict = run(&text, host, foreign).unwrap_or_else(|e| e);
    let _ = host.send_response(200, &[("x-verdict", verdict.as_str())], verdict.as_bytes());
    Some(Outcome::Answered)
}

fn run(
    text: &str,
    host: &dyn Host,
    foreign: Option<&Rc<dyn ForeignCall>>,
) -> Result<String, String> {
    let mut parts = text.splitn(5, ';');
    let kind = parts.next().unwrap_or_default();
    let backend: Box<dyn SignatureBackend> = match parts.next() {
        // The host's crypto: its own (the dynamic module's native), else its foreign call.
        Some("host") => match (host.native_signatures(), foreign) {
            (Some(native), _) => native,
            (None, Some(f)) => Box::new(HostCrypto::new(Foreign(f.clone()))),
            (None, None) => return Err("bad-backend: this host has no foreign functions".into()),
        },
        Some("pure") => Box::new(PureRust),
        other => return Err(format!("bad-backend: {other:?}")),
    };
    let jwk_bytes = URL_SAFE_NO_PAD
        .decode(parts.next().unwrap_or_default())
        .map_err(|e| format!("bad-jwk: {e}"))?;
    let jwk: serde_json::Value =
        serde_json::from_slice(&jwk_bytes).map_err(|e| format!("bad-jwk: {e}"))?;
    let key = parse_jwk_with(&jwk, KeyPolicy::VECTORS).map_err(|e| format!("key-rejected: {e}"))?;
    let ok = match kind {
        "raw" => {
            let msg = hex::decode(parts.next().unwrap_or_default())
                .map_err(|e| format!("bad-msg: {e}"))?;
            let sig = hex::decode(parts.next().unwrap_or_default())
                .map_err(|e| format!("bad-sig: {e}"))?;
            backend
                .verify(&key, &msg, &sig)
                .map_err(|e| format!("error: {e}"))?
        }
        "jws" => {
            let jws_text = parts.next().unwrap_or_default();
            parse_compact(jws_text, 65_536)
                .and_then(|jws| {
                    let k = select_key(&jws, std::slice::from_ref(&key), &[key.alg])?;
                    check_signature(&jws, k, backend.as_ref())
                })
                .is_ok()
        }
        other => return Err(format!("bad-kind: {other}")),
    };
    Ok(if ok { "valid" } else { "invalid" }.to_owned())
}

/// `x-agent-iam-test-bench: N` → evaluates this request through the whole pipeline N times
/// inside Envoy and answers `ns_per_decision=<n>` (monotonic clock around the loop). The
/// benchmark (`bench.py --in-envoy`) compares configurations with it: a figure
/// free of loopback and scheduling noise.
fn bench(
    host: &dyn Host,
    engine: &mut crate::pipeline::Engine,
    req: &Request,
    now: f64,
) -> Option<Outcome> {
    let raw = host.request_header("x-agent-iam-test-bench")?;
    let n: u32 = String::from_utf8_lossy(&raw).trim().parse().ok()?;
    let n = n.clamp(1, 1_000_000);
    let start = Instant::now();
    let mut allowed = 0u32;
    for _ in 0..n {
        allowed += u32::from(engine.evaluate(req, now).allowed());
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    let body = format!("ns_per_decision={ns} allowed={allowed}/{n}");
    let _ = host.send_response(200, &[], body.as_bytes());
    Some(Outcome::Answered)
}

/// `x-agent-iam-test-audit-bench: N;<build|log|filter_state|queue|metrics>` → decides this
/// request once, then builds (serialises + chains) its audit event N times and emits each
/// the given way, answering `ns_per_event=<n>`: the cost of one event per output.
fn audit_bench(
    host: &dyn Host,
    engine: &mut crate::pipeline::Engine,
    req: &Request,
    now: f64,
) -> Option<Outcome> {
    let raw = host.request_header("x-agent-iam-test-audit-bench")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (n, mode) = text.split_once(';')?;
    let n: u32 = n.trim().parse::<u32>().ok()?.clamp(1, 1_000_000);
    let d = engine.evaluate(req, now);
    let ctx = crate::audit::EventContext {
        now,
        latency_us: 17,
        request_id: Some("0f6ad5c3-4c43-4a8c-9d4e-0d6f1f3e9a11"),
        traceparent: None,
    };
    let counter = host.define_metric(MetricKind::Counter, "agent_iam.bench.counter")?;
    let histogram = host.define_metric(MetricKind::Histogram, "agent_iam.bench.histogram")?;
    let mut queue = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    let start = Instant::now();
    if ["sha256", "sha512", "blake2b", "blake2s"].contains(&mode) {
        use sha2::Digest;
        let sample = engine.audit(&d, &ctx);
        let text = sample
            .last()
            .map(|l| l.json().to_owned())
            .unwrap_or_default();
        let mut acc = 0u8;
        for _ in 0..n {
            let first = match mode {
                "sha256" => sha2::Sha256::digest(text.as_bytes()).first().copied(),
                "sha512" => sha2::Sha512::digest(text.as_bytes()).first().copied(),
                "blake2s" => blake2::Blake2s256::digest(text.as_bytes()).first().copied(),
                _ => blake2::Blake2b::<blake2::digest::consts::U32>::digest(text.as_bytes())
                    .first()
                    .copied(),
            };
            acc ^= first.unwrap_or(0);
        }
        let ns = start.elapsed().as_nanos() / u128::from(n);
        let body = format!(
            "ns_per_event={ns} mode={mode} bytes={} acc={acc}",
            text.len()
        );
        let _ = host.send_response(200, &[], body.as_bytes());
        return Some(Outcome::Answered);
    }
    for _ in 0..n {
        for line in engine.audit(&d, &ctx) {
            bytes = line.json().len();
            match mode {
                "log" => {
                    host.log(Level::Info, line.log_line());
                }
                "filter_state" => {
                    let _ = host.set_property(&["agent_iam.audit"], line.json().as_bytes());
                }
                "queue" => {
                    if queue.len() >= 10_000 {
                        queue.pop_front();
                    }
                    queue.push_back(line);
                }
                "metrics" => {
                    host.increment_metric(counter, 1);
                    host.record_metric(histogram, 17);
                }
                _ => {}
            }
        }
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    let body = format!("ns_per_event={ns} mode={mode} bytes={bytes}");
    let _ = host.send_response(200, &[], body.as_bytes());
    Some(Outcome::Answered)
}

/// The request-path benchmarks (each answers the request when its header is present).
pub(super) fn benches(
    worker: &mut Worker,
    host: &dyn Host,
    req: &Request,
    strip: &[String],
    now: f64,
) -> Option<Outcome> {
    bench(host, &mut worker.engine, req, now)
        .or_else(|| stage_bench(worker, host, req, strip, now))
        .or_else(|| audit_bench(host, &mut worker.engine, req, now))
}

/// `x-agent-iam-test-stages: N` runs each stage of this callback N times and answers
/// `<stage>=<ns per run>` lines: where a request's time inside the filter goes (the rest
/// of the filter's cost is the host calling into the VM).
fn stage_bench(
    worker: &mut Worker,
    host: &dyn Host,
    req: &Request,
    strip: &[String],
    now: f64,
) -> Option<Outcome> {
    let raw = host.request_header("x-agent-iam-test-stages")?;
    let n: u32 = String::from_utf8_lossy(&raw).trim().parse().ok()?;
    let n = n.clamp(1, 100_000);
    let mut body = String::new();
    let mut lap = |name: &str, t: Instant| {
        let ns = t.elapsed().as_nanos() / u128::from(n);
        body.push_str(&format!("{name}={ns}\n"));
    };
    let t = Instant::now();
    for _ in 0..n {
        let _ = host.now();
        let _ = Instant::now();
    }
    lap("clock", t);
    let t = Instant::now();
    for _ in 0..n {
        let _ = worker.read(host);
    }
    lap("read_request", t);
    let t = Instant::now();
    for _ in 0..n {
        worker.sync(host);
    }
    lap("sync_feeds", t);
    // The cold path's parts: a full verification without the cache, and the signature
    // check alone (for ES256/RS256 on the host backend: Envoy's `verify_signature`).
    let token = req
        .authorization
        .first()
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default();
    let engine = &mut worker.engine;
    let t = Instant::now();
    for _ in 0..n {
        let _ =
            crate::token::verify_token(token, &engine.token_rules(), engine.backend(), None, now);
    }
    lap("verify_uncached", t);
    if let Ok(jws) = parse_compact(token, engine.config().max_token_bytes) {
        if let Some(key) = engine
            .token_rules()
            .issuers
            .iter()
            .flat_map(|i| i.keys.iter())
            .find(|k| k.kid == jws.kid)
        {
            let t = Instant::now();
            for _ in 0..n {
                let _ = check_signature(&jws, key, engine.backend());
            }
            lap("signature_only", t);
        }
    }
    let t = Instant::now();
    for _ in 0..n {
        let _ = engine.evaluate(req, now);
    }
    lap("evaluate", t);
    let mut d = worker.engine.evaluate(req, now);
    let t = Instant::now();
    for _ in 0..n {
        worker.edit_headers(host, &mut d, strip);
    }
    lap("identity_headers", t);
    let ctx = crate::audit::EventContext {
        now,
        latency_us: 1,
        request_id: None,
        traceparent: None,
    };
    let t = Instant::now();
    for _ in 0..n {
        let _ = worker.engine.audit(&d, &ctx);
    }
    lap("audit_build", t);
    let t = Instant::now();
    for _ in 0..n {
        let lines = worker.engine.audit(&d, &ctx);
        worker.audit.count(host, &d, 1);
        worker.audit.emit_request(host, lines);
    }
    lap("audit_build_emit_count", t);
    let _ = host.send_response(200, &[], body.as_bytes());
    Some(Outcome::Answered)
}
