// A whole request through the pipeline the filter runs (token, delegation, registry,
// routes, the shipped Rego policy and its input builder) and its audit event: method,
// path, host, headers and `authorization` values all from the fuzzer. Never a panic; the
// audit event is always one line of valid JSON.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/request.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::audit::EventContext;
use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use std::cell::RefCell;

thread_local! {
    static ENGINE: RefCell<Engine> = RefCell::new({
        let cfg = Config::from_json(include_bytes!("../../envoy/plugin.json")).expect("config");
        let mut e = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(7));
        e.start_feed_clock(1_800_000_000.0);
        e
    });
}

/// Fields separated by 0xff: method, path, host, then header name/value pairs; a pair
/// named `authorization` becomes a bearer value.
fn request(data: &[u8]) -> Request {
    let mut parts = data.split(|b| *b == 0xff);
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let mut req = Request {
        client: None,
        method: text(parts.next()),
        path: text(parts.next()),
        host: text(parts.next()),
        ..Request::default()
    };
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if name == "authorization" {
            req.authorization.push(value.to_vec());
        } else {
            req.headers.push((name, String::from_utf8_lossy(value).into_owned()));
        }
    }
    req
}

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    let req = request(data);
    ENGINE.with(|e| {
        let mut e = e.borrow_mut();
        let d = e.evaluate(&req, 1_800_000_000.0);
        let ctx = EventContext { now: 1_800_000_000.0, latency_us: 1, request_id: Some(&req.host), traceparent: None };
        for line in e.audit(&d, &ctx) {
            assert!(!line.json().contains('\n'));
            let v: serde_json::Value = serde_json::from_str(line.json()).expect("valid JSON event");
            assert!(v.is_object());
        }
    });
}
