//! TEST-ONLY (cargo feature `test-hooks`): answers raw signature vectors on the request
//! path so the harness can run Wycheproof through the host crypto backend inside Envoy.
//!
//! `x-agent-iam-test-vector: raw;<host|pure>;<jwk base64url>;<msg hex>;<sig hex>` or
//! `x-agent-iam-test-vector: jws;<host|pure>;<jwk base64url>;<compact jws>`
//! → 200 with body `valid`, `invalid` or `key-rejected: ...`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, MapType};

use super::EnvoyForeign;
use crate::crypto::{HostCrypto, PureRust, SignatureBackend};
use crate::keys::{parse_jwk_with, KeyPolicy};
use crate::token::{check_signature, parse_compact, select_key};

pub(super) fn handle() -> Option<Action> {
    // `x-agent-iam-test-panic: 1`: a trap inside the filter (what an unhandled bug would
    // do), so the tests can show Envoy fails closed and the worker recovers.
    if let Ok(Some(_)) =
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-panic")
    {
        #[allow(clippy::panic)]
        {
            panic!("test-hooks: panic requested by x-agent-iam-test-panic");
        }
    }
    // `x-agent-iam-test-noop: 1`: continue at once (the cost of the filter's plumbing alone).
    if let Ok(Some(_)) =
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-noop")
    {
        return Some(Action::Continue);
    }
    let raw =
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-vector")
            .ok()??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let verdict = run(&text).unwrap_or_else(|e| e);
    let _ = hostcalls::send_http_response(
        200,
        vec![("x-verdict", verdict.as_str())],
        Some(verdict.as_bytes()),
    );
    Some(Action::Pause)
}

fn run(text: &str) -> Result<String, String> {
    let mut parts = text.splitn(5, ';');
    let kind = parts.next().unwrap_or_default();
    let backend: Box<dyn SignatureBackend> = match parts.next() {
        Some("host") => Box::new(HostCrypto::new(EnvoyForeign)),
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
/// benchmark (test-harness/bench.py --in-envoy) compares configurations with it: a figure
/// free of loopback and scheduling noise.
pub(super) fn bench(
    engine: &mut crate::pipeline::Engine,
    req: &crate::pipeline::Request,
    now: f64,
) -> Option<Action> {
    let raw = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-bench")
        .ok()??;
    let n: u32 = String::from_utf8_lossy(&raw).trim().parse().ok()?;
    let n = n.clamp(1, 1_000_000);
    let start = std::time::Instant::now();
    let mut allowed = 0u32;
    for _ in 0..n {
        allowed += u32::from(engine.evaluate(req, now).allowed());
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    let body = format!("ns_per_decision={ns} allowed={allowed}/{n}");
    let _ = hostcalls::send_http_response(200, vec![], Some(body.as_bytes()));
    Some(Action::Pause)
}

/// `x-agent-iam-test-audit-bench: N;<build|log|filter_state|queue|metrics>` → decides this
/// request once, then builds (serialises + chains) its audit event N times and emits each
/// the given way, answering `ns_per_event=<n>`: the cost of one event per output.
pub(super) fn audit_bench(
    engine: &mut crate::pipeline::Engine,
    req: &crate::pipeline::Request,
    now: f64,
) -> Option<Action> {
    use proxy_wasm::types::{LogLevel, MetricType};
    let raw =
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-audit-bench")
            .ok()??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (n, mode) = text.split_once(';')?;
    let n: u32 = n.trim().parse::<u32>().ok()?.clamp(1, 1_000_000);
    let d = engine.evaluate(req, now);
    let ctx = crate::audit::EventContext {
        now,
        latency_us: 17,
        request_id: Some("0f6ad5c3-4c43-4a8c-9d4e-0d6f1f3e9a11"),
    };
    let counter = hostcalls::define_metric(MetricType::Counter, "agent_iam.bench.counter").ok()?;
    let histogram =
        hostcalls::define_metric(MetricType::Histogram, "agent_iam.bench.histogram").ok()?;
    let mut queue = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    let start = std::time::Instant::now();
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
        let _ = hostcalls::send_http_response(200, vec![], Some(body.as_bytes()));
        return Some(Action::Pause);
    }
    for _ in 0..n {
        for line in engine.audit(&d, &ctx) {
            bytes = line.json().len();
            match mode {
                "log" => {
                    let _ = hostcalls::log(LogLevel::Info, line.log_line());
                }
                "filter_state" => {
                    let _ = hostcalls::set_property(
                        vec!["agent_iam.audit"],
                        Some(line.json().as_bytes()),
                    );
                }
                "queue" => {
                    if queue.len() >= 10_000 {
                        queue.pop_front();
                    }
                    queue.push_back(line);
                }
                "metrics" => {
                    let _ = hostcalls::increment_metric(counter, 1);
                    let _ = hostcalls::record_metric(histogram, 17);
                }
                _ => {}
            }
        }
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    let body = format!("ns_per_event={ns} mode={mode} bytes={bytes}");
    let _ = hostcalls::send_http_response(200, vec![], Some(body.as_bytes()));
    Some(Action::Pause)
}
