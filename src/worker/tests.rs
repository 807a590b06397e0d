//! The worker's sequence, its pollers and its audit queue, driven through the in-memory
//! host: what the filter does inside Envoy, step by step, without Envoy.

use serde_json::{json, Value};

use super::local::LocalHost;
use super::{Exchange, Outcome, Worker};
use crate::dev::{demo_plugin_config, mint, DevKeys, Recipe};

const NOW: i64 = 1_800_000_000;

fn keys() -> DevKeys {
    let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
    DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// The demo issuer, any route, any subject.
fn open_plugin(k: &DevKeys) -> Value {
    let mut p = demo_plugin_config(k);
    p["agents"] = json!({"allow_unregistered_subjects": true});
    p["unmatched_route"] = json!("allow");
    p
}

fn token(k: &DevKeys, recipe: Value) -> String {
    let r: Recipe = serde_json::from_value(recipe).unwrap();
    mint(k, &r, NOW).unwrap()
}

fn worker(host: &LocalHost, plugin: &Value) -> Worker {
    Worker::configure(host, plugin.to_string().as_bytes(), None).unwrap_or_else(|p| panic!("{p:?}"))
}

/// Sends `GET path` with `auth` (and `extra` headers) through the worker.
fn get(w: &mut Worker, host: &LocalHost, auth: &str, extra: &[(&str, &str)]) -> Outcome {
    let mut headers = vec![
        (":method", "GET"),
        (":path", "/tickets/1"),
        (":authority", "api.test"),
        ("authorization", auth),
    ];
    headers.extend_from_slice(extra);
    host.request(&headers);
    w.on_request(host, &mut Exchange::default(), true)
}

/// Sends `GET /admin/x` with `auth`.
fn get_admin(w: &mut Worker, host: &LocalHost, auth: &str) -> Outcome {
    host.request(&[
        (":method", "GET"),
        (":path", "/admin/x"),
        (":authority", "api.test"),
        ("authorization", auth),
    ]);
    w.on_request(host, &mut Exchange::default(), true)
}

/// The deny's reason code, from its body.
fn reason(host: &LocalHost) -> Option<String> {
    let s = host.stream.borrow();
    let (_, _, body) = s.response.as_ref()?;
    let v: Value = serde_json::from_slice(body).ok()?;
    v["reason"].as_str().map(str::to_owned)
}

fn status(host: &LocalHost) -> Option<u16> {
    host.stream.borrow().response.as_ref().map(|(s, _, _)| *s)
}

fn header(host: &LocalHost, name: &str) -> Option<String> {
    let s = host.stream.borrow();
    s.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_request_is_decided_edited_audited_and_answered() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = open_plugin(&k);
    plugin["audit"] = json!({"log": true, "filter_state": true});
    let mut w = worker(&host, &plugin);
    assert_eq!(host.logged("configured: 1 issuer(s)").len(), 1);

    // Allowed: the client's copy of an identity header is gone, the filter's own is set.
    let good = format!("Bearer {}", token(&k, json!({})));
    let out = get(&mut w, &host, &good, &[("x-agent-id", "agent:forged")]);
    assert_eq!(out, Outcome::Continue);
    assert_eq!(status(&host), None);
    assert_eq!(
        header(&host, "x-agent-id").as_deref(),
        Some("agent:build-bot-7")
    );
    assert!(host
        .stream
        .borrow()
        .removed
        .contains(&"x-agent-id".to_owned()));
    // Its events: the stream's start and the decision, in the log and the filter state.
    let fs = host.stream.borrow().properties.clone();
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].0, "agent_iam.audit");
    assert_eq!(String::from_utf8_lossy(&fs[0].1).lines().count(), 2);
    assert_eq!(host.logged("agent-iam audit ").len(), 2);
    assert_eq!(host.decisions("allow", None), 1);

    // Denied: answered with the deny response; the forged header is still removed and
    // nothing of the filter's is set.
    let out = get(
        &mut w,
        &host,
        "Bearer x.y.z",
        &[("X-Agent-Id", "agent:forged")],
    );
    assert_eq!(out, Outcome::Answered);
    let (code, headers, body) = host.stream.borrow().response.clone().unwrap();
    assert_eq!(code, 401);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer")));
    assert!(String::from_utf8_lossy(&body).contains("token.malformed"));
    assert_eq!(header(&host, "X-Agent-Id"), None);
    assert!(host
        .stream
        .borrow()
        .removed
        .contains(&"X-Agent-Id".to_owned()));
    assert!(host.stream.borrow().set.is_empty());
    assert_eq!(host.decisions("deny", None), 1);
    assert_eq!(host.decisions("deny", Some("token.malformed")), 1);
}

#[test]
fn host_failures_on_the_request_deny_and_are_audited() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &open_plugin(&k));
    let good = format!("Bearer {}", token(&k, json!({})));

    // The identity headers cannot be set: the allow becomes an internal-error deny.
    host.failing.borrow_mut().push("set");
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("internal.error"));
    host.failing.borrow_mut().clear();

    // The headers cannot be read.
    host.failing.borrow_mut().push("request_headers");
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("internal.error"));
    host.failing.borrow_mut().clear();

    // No clock: denied, audited at the last time the worker saw.
    host.clock.set(None);
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("internal.error"));
    assert_eq!(host.logged("cannot read the host clock").len(), 1);

    host.clock.set(Some(NOW as f64));
    assert_eq!(host.decisions("deny", Some("internal.error")), 3);
}

#[test]
fn a_refused_deny_is_answered_with_a_bare_500_and_still_audited() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = open_plugin(&k);
    plugin["audit"] = json!({"log": true});
    let mut w = worker(&host, &plugin);

    // The host refuses the 401: a bare 500 goes out instead; the deny is audited and
    // counted under its own reason, as any deny.
    host.refuse_answers.set(1);
    assert_eq!(get(&mut w, &host, "Bearer x.y.z", &[]), Outcome::Answered);
    let s = host.stream.borrow().clone();
    assert_eq!(s.refused, vec![401]);
    assert_eq!(s.response, Some((500, vec![], vec![])));
    assert!(s.set.is_empty());
    assert_eq!(host.logged("refused the 401 answer").len(), 1);
    assert_eq!(host.decisions("deny", Some("token.malformed")), 1);
    let audited = host.logged("agent-iam audit ");
    assert!(audited
        .last()
        .unwrap()
        .contains("\"reason\":\"token.malformed\""));

    // It refuses every answer: nothing is sent, the request is still stopped (the host
    // pauses it: it never goes upstream), and audited.
    host.failing.borrow_mut().push("send_response");
    assert_eq!(get(&mut w, &host, "Bearer x.y.z", &[]), Outcome::Answered);
    let s = host.stream.borrow().clone();
    assert_eq!(s.refused, vec![401, 500]);
    assert_eq!(s.response, None);
    assert_eq!(host.logged("the request is held").len(), 1);
    assert_eq!(host.decisions("deny", Some("token.malformed")), 2);

    // An allowed request is never answered.
    host.failing.borrow_mut().clear();
    let good = format!("Bearer {}", token(&k, json!({})));
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Continue);
    assert!(host.stream.borrow().refused.is_empty());
}

/// What Envoy reports as `xds.node` (an `envoy.config.core.v3.Node` whose
/// `user_agent_name` is "envoy").
fn envoy_node(host: &LocalHost) {
    host.properties
        .borrow_mut()
        .insert("xds.node".into(), b"\x0a\x02id\x32\x05envoy".to_vec());
}

/// A host's `verify_signature`: `None` answers like a host without it (Envoy's
/// `NotFound`); every call is counted.
struct FakeForeign {
    answer: Option<Vec<u8>>,
    calls: std::cell::Cell<u32>,
}

impl crate::crypto::ForeignCall for FakeForeign {
    fn call(&self, _name: &str, _args: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.calls.set(self.calls.get() + 1);
        self.answer
            .clone()
            .map(Some)
            .ok_or_else(|| "NotFound".into())
    }
}

fn foreign(answer: Option<&[u8]>) -> std::rc::Rc<FakeForeign> {
    std::rc::Rc::new(FakeForeign {
        answer: answer.map(<[u8]>::to_vec),
        calls: std::cell::Cell::new(0),
    })
}

fn configure_with(
    host: &LocalHost,
    plugin: &Value,
    f: &std::rc::Rc<FakeForeign>,
) -> Result<Worker, Vec<String>> {
    let call: std::rc::Rc<dyn crate::crypto::ForeignCall> = f.clone();
    Worker::configure(host, plugin.to_string().as_bytes(), Some(call))
}

/// A host's own crypto (what the dynamic module offers), by name only: it verifies as
/// pure Rust does.
struct OwnCrypto;

impl crate::crypto::SignatureBackend for OwnCrypto {
    fn verify(
        &self,
        key: &crate::keys::VerifyKey,
        input: &[u8],
        sig: &[u8],
    ) -> Result<bool, crate::crypto::CryptoError> {
        crate::crypto::PureRust.verify(key, input, sig)
    }

    fn name_for(&self, _alg: crate::keys::Alg) -> &'static str {
        "own"
    }
}

#[test]
fn a_host_with_its_own_crypto_uses_it_on_auto_and_host_and_never_calls_a_foreign_function() {
    let k = keys();
    let good = format!("Bearer {}", token(&k, json!({})));
    for (choice, expect) in [
        ("auto", "ES256=own RS256=own EdDSA=own; host=envoy"),
        ("host", "ES256=own RS256=own EdDSA=own; host=envoy"),
        (
            "pure",
            "ES256=pure-rust RS256=pure-rust EdDSA=pure-rust; host=envoy",
        ),
    ] {
        let mut host = LocalHost::at(NOW as f64);
        host.native = Some(|| Box::new(OwnCrypto));
        let f = foreign(Some(b"\x08\x00"));
        let mut p = open_plugin(&k);
        p["signature_backend"] = json!(choice);
        let mut w = configure_with(&host, &p, &f).unwrap();
        assert_eq!(host.logged(expect).len(), 1, "{choice}: {:?}", host.logs);
        assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Continue);
        assert_eq!(f.calls.get(), 0, "{choice}: no probe, no foreign call");
    }
}

#[test]
fn a_host_without_verify_signature_gets_pure_rust_on_auto_and_a_config_error_on_host() {
    let k = keys();
    let good = format!("Bearer {}", token(&k, json!({})));

    // Identified as Envoy, but its `verify_signature` answers "not found".
    let host = LocalHost::at(NOW as f64);
    envoy_node(&host);
    let missing = foreign(None);
    let mut w = configure_with(&host, &open_plugin(&k), &missing).unwrap();
    assert_eq!(missing.calls.get(), 1, "one probe at configure time");
    assert_eq!(
        host.logged("verify_signature is unavailable (NotFound); signatures use pure Rust")
            .len(),
        1
    );
    assert_eq!(host.logged("ES256=pure-rust RS256=pure-rust").len(), 1);
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Continue);
    assert_eq!(missing.calls.get(), 1, "requests never call it");

    let mut p = open_plugin(&k);
    p["signature_backend"] = json!("host");
    let problems = configure_with(&host, &p, &missing).err().unwrap();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("$.signature_backend: \"host\" needs the host's verify_signature, which is unavailable (NotFound)"), "{problems:?}");

    // A working one (answers "invalid" to the dummy signatures): host crypto.
    let host = LocalHost::at(NOW as f64);
    envoy_node(&host);
    let working = foreign(Some(b"\x08\x00"));
    configure_with(&host, &p, &working).unwrap();
    assert_eq!(host.logged("ES256=host RS256=host").len(), 1);

    // Not Envoy (Kong: calling a foreign function it does not know traps): never called,
    // whatever the configuration asks for.
    let host = LocalHost::at(NOW as f64);
    let untouched = foreign(Some(b"\x08\x00"));
    let mut w = configure_with(&host, &open_plugin(&k), &untouched).unwrap();
    assert_eq!(host.logged("ES256=pure-rust").len(), 1);
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Continue);
    let problems = configure_with(&host, &p, &untouched).err().unwrap();
    assert!(problems[0].starts_with("$.signature_backend"));
    assert_eq!(untouched.calls.get(), 0);
}

#[test]
fn a_bad_configuration_is_logged_with_its_paths() {
    let host = LocalHost::at(NOW as f64);
    let problems = Worker::configure(&host, br#"{"issuers": [], "bogus": 1}"#, None)
        .err()
        .unwrap();
    assert!(!problems.is_empty());
    assert_eq!(host.logged("configuration rejected").len(), 1);
    assert!(host
        .logged("invalid plugin configuration: $")
        .iter()
        .any(|l| l.contains("bogus")));
    // `host` crypto needs Envoy's foreign function: refused elsewhere.
    let mut p = open_plugin(&keys());
    p["signature_backend"] = json!("host");
    let problems = Worker::configure(&host, p.to_string().as_bytes(), None)
        .err()
        .unwrap();
    assert!(problems[0].starts_with("$.signature_backend"));
}

#[test]
fn the_start_up_line_names_the_build_and_the_module_hash_the_loader_gives() {
    let k = keys();
    let sha = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let cases = [
        (
            Some(sha),
            format!("module_sha256={}", sha.to_ascii_lowercase()),
        ),
        (
            None,
            "module_sha256=unknown (set AGENT_IAM_MODULE_SHA256)".into(),
        ),
        (
            Some("abc"),
            "module_sha256=invalid (AGENT_IAM_MODULE_SHA256 is not 64 hex digits)".into(),
        ),
        (
            Some(&"g".repeat(64)),
            "module_sha256=invalid (AGENT_IAM_MODULE_SHA256 is not 64 hex digits)".into(),
        ),
    ];
    for (value, shown) in cases {
        let host = LocalHost::at(NOW as f64);
        if let Some(v) = value {
            host.env
                .borrow_mut()
                .insert("AGENT_IAM_MODULE_SHA256".into(), v.into());
        }
        worker(&host, &open_plugin(&k));
        let line = host.logged("configured: ");
        assert_eq!(line.len(), 1);
        assert!(
            line[0].ends_with(&shown),
            "{} does not end with {shown}",
            line[0]
        );
        assert!(line[0].contains(&format!(
            "build commit={} features={} id=",
            env!("AGENT_IAM_COMMIT"),
            env!("AGENT_IAM_FEATURES")
        )));
    }
}

#[test]
fn the_build_info_gauge_is_one_from_the_first_configuration_on() {
    let name = super::build_info_metric(crate::VERSION, env!("AGENT_IAM_COMMIT"));
    assert_eq!(
        super::build_info_metric("0.1.0", "0123456789ab"),
        "agent_iam.build_info.version.0_1_0.commit.0123456789ab"
    );
    assert_eq!(
        super::build_info_metric("1.2.0-rc.1", "unknown"),
        "agent_iam.build_info.version.1_2_0-rc_1.commit.unknown"
    );
    let host = LocalHost::at(NOW as f64);
    worker(&host, &open_plugin(&keys()));
    assert_eq!(host.metric_value(&name), Some(1));
    // A rejected configuration still tells which build rejected it.
    let host = LocalHost::at(NOW as f64);
    assert!(Worker::configure(&host, b"{}", None).is_err());
    assert_eq!(host.metric_value(&name), Some(1));
}

fn with_feed(k: &DevKeys) -> Value {
    let mut p = demo_plugin_config(k);
    p["unmatched_route"] = json!("allow");
    p["agents"] =
        json!({"feed": {"cluster": "cp", "path": "/registry.json", "poll_interval_ms": 1000}});
    p
}

fn registry(version: &str, status: &str) -> Vec<u8> {
    json!({"version": version, "agents": [
        {"id": "agent:build-bot-7", "status": status, "owner": "team:ci",
         "max_scopes": ["tickets:read"]}]})
    .to_string()
    .into_bytes()
}

/// Answers the oldest call to `cluster` on `w`.
fn answer(w: &mut Worker, host: &LocalHost, cluster: &str, status: &str, body: &[u8]) {
    let call = host.take_call(cluster).expect("a call to answer");
    host.answer(status, body);
    w.on_call_response(host, call.token, body.len());
}

#[test]
fn the_registry_feed_polls_once_per_interval_publishes_and_every_worker_applies_it() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("cp".into());
    let plugin = with_feed(&k);
    let mut a = worker(&host, &plugin);
    let mut b = worker(&host, &plugin);
    let good = format!("Bearer {}", token(&k, json!({})));
    assert_eq!(get(&mut a, &host, &good, &[]), Outcome::Answered);

    // One VM wins the lease: one call for the interval.
    a.on_tick(&host);
    b.on_tick(&host);
    assert_eq!(host.calls.borrow().len(), 1);
    let call = host.calls.borrow()[0].clone();
    assert!(call
        .headers
        .contains(&(":path".into(), "/registry.json".into())));
    answer(&mut a, &host, "cp", "200", &registry("1", "active"));

    // Both workers decide with it on their next request (b never polled).
    assert_eq!(get(&mut b, &host, &good, &[]), Outcome::Continue);
    assert_eq!(get(&mut a, &host, &good, &[]), Outcome::Continue);
    assert_eq!(host.logged("registry version 1 applied").len(), 2);

    // A rollback is refused and audited once; the registry in use stays.
    host.advance_ms(1000);
    b.on_tick(&host);
    answer(&mut b, &host, "cp", "200", &registry("0", "suspended"));
    assert_eq!(
        host.metric_value("agent_iam.registry.rollbacks_refused_total"),
        Some(1)
    );
    assert_eq!(host.logged("answer refused").len(), 1);
    assert_eq!(get(&mut a, &host, &good, &[]), Outcome::Continue);

    // A new version suspends the agent everywhere.
    host.advance_ms(1000);
    a.on_tick(&host);
    answer(&mut a, &host, "cp", "200", &registry("2", "suspended"));
    assert_eq!(get(&mut b, &host, &good, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("agent.suspended"));

    // A failing feed keeps the last registry and logs its failures without flooding.
    for _ in 0..12 {
        host.advance_ms(1000);
        a.on_tick(&host);
        answer(&mut a, &host, "cp", "503", b"");
    }
    assert_eq!(host.logged("registry feed: HTTP status 503").len(), 2);
    assert_eq!(get(&mut b, &host, &good, &[]), Outcome::Answered);
}

#[test]
fn remote_keys_are_fetched_published_and_refetched_on_an_unknown_kid() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("idp".into());
    let mut plugin = open_plugin(&k);
    let jwks = plugin["issuers"][0]["jwks"].take();
    plugin["issuers"][0].as_object_mut().unwrap().remove("jwks");
    plugin["issuers"][0]["jwks_uri"] =
        json!({"cluster": "idp", "path": "/jwks.json", "min_refetch_s": 10});
    let mut w = worker(&host, &plugin);
    let good = format!("Bearer {}", token(&k, json!({})));
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Answered);
    assert_eq!(status(&host), Some(503));

    w.on_tick(&host);
    answer(&mut w, &host, "idp", "200", jwks.to_string().as_bytes());
    assert_eq!(get(&mut w, &host, &good, &[]), Outcome::Continue);
    assert_eq!(host.logged("keys version 1 applied").len(), 1);
    host.advance_ms(1500);
    w.on_tick(&host);
    assert_eq!(host.metric_value("agent_iam.jwks.age_seconds"), Some(2));

    // An unknown kid asks for a refetch: the next tick fetches before the schedule.
    let rotated = format!(
        "Bearer {}",
        token(&k, json!({"header": {"kid": "rotated-in"}}))
    );
    host.advance_ms(2000);
    assert_eq!(get(&mut w, &host, &rotated, &[]), Outcome::Answered);
    w.on_tick(&host);
    answer(&mut w, &host, "idp", "200", jwks.to_string().as_bytes());
    // Not again within min_refetch_s (nothing in flight: the lease holds it back).
    host.advance_ms(2000);
    assert_eq!(get(&mut w, &host, &rotated, &[]), Outcome::Answered);
    w.on_tick(&host);
    assert!(host.take_call("idp").is_none());
}

#[test]
fn audit_log_lines_stay_one_line_whatever_the_client_sends() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = open_plugin(&k);
    plugin["audit"] = json!({"log": true, "request_id_from": "client"});
    let mut w = worker(&host, &plugin);
    let good = format!("Bearer {}", token(&k, json!({})));
    let id = "a\u{2028}b\u{85}c\u{7f}d";
    get(&mut w, &host, &good, &[("x-request-id", id)]);
    let lines = host.logged("agent-iam audit {\"v\":1,\"kind\":\"decision\"");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("a\\u{2028}b\\u{85}c\\u{7f}d"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].chars().any(|c| c.is_control() || c == '\u{2028}'));
}

fn with_collector(k: &DevKeys, max_queue: u64) -> Value {
    let mut p = open_plugin(k);
    p["audit"] = json!({"collector": {"cluster": "sink", "path": "/events",
        "batch_max": 2, "flush_interval_ms": 100, "max_queue": max_queue,
        "backoff_max_ms": 1000}});
    p
}

fn lines(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_collector_queue_batches_retries_in_order_and_drops_the_oldest_when_full() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("sink".into());
    let mut w = worker(&host, &with_collector(&k, 4));
    let good = format!("Bearer {}", token(&k, json!({})));
    get(&mut w, &host, &good, &[]); // start + decision
    w.on_tick(&host);
    let first = host.take_call("sink").unwrap();
    assert_eq!(lines(&first.body).len(), 2);
    assert!(first
        .headers
        .contains(&("content-type".into(), "application/x-ndjson".into())));

    // The batch fails: it goes back in front, and the worker backs off.
    host.answer("503", b"");
    w.on_call_response(&host, first.token, 0);
    assert_eq!(
        host.metric_value("agent_iam.audit.send_failures_total"),
        Some(1)
    );
    w.on_tick(&host);
    assert!(host.take_call("sink").is_none(), "backing off");

    // Three more decisions: the queue holds 4, so the oldest event gives way.
    for _ in 0..3 {
        get(&mut w, &host, &good, &[]);
    }
    assert_eq!(host.metric_value("agent_iam.audit.dropped_total"), Some(1));
    host.advance_ms(300);
    w.on_tick(&host);
    assert_eq!(host.logged("dropped the 1 oldest event(s)").len(), 1);
    let retry = host.take_call("sink").unwrap();
    let sent = lines(&retry.body);
    // Oldest first: the stream's start was dropped, the first decision leads.
    assert_eq!(sent[0]["kind"], "decision");
    assert_eq!(sent[0]["seq"], 2);

    // Delivered: the next batch goes out at once.
    host.answer("200", b"");
    w.on_call_response(&host, retry.token, 0);
    assert_eq!(
        host.metric_value("agent_iam.audit.delivered_total"),
        Some(2)
    );
    let next = host.take_call("sink").unwrap();
    assert_eq!(lines(&next.body)[0]["seq"], 4);
    assert_eq!(host.logged("audit collector recovered").len(), 1);

    // Shutdown: the final checkpoint carries the drop count.
    host.answer("200", b"");
    w.on_call_response(&host, next.token, 0);
    w.on_done(&host);
    let last = host.take_call("sink").unwrap();
    let end = lines(&last.body).pop().unwrap();
    assert_eq!(end["kind"], "checkpoint");
    assert_eq!(end["dropped"], 1);
}

#[test]
fn the_revocation_feed_verifies_applies_acknowledges_and_every_worker_enforces() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("ssf".into());
    let mut plugin = open_plugin(&k);
    plugin["revocation"] = json!({
        "feed": {"cluster": "ssf", "path": "/ssf/poll", "interval_ms": 250},
        "transmitter": {"issuer": "https://ssf.test", "audience": "https://api.test/ssf",
                        "jwks": plugin["issuers"][0]["jwks"]},
        "max_staleness_s": 5});
    let mut a = worker(&host, &plugin);
    let mut b = worker(&host, &plugin);
    let good = format!("Bearer {}", token(&k, json!({"claims": {"jti": "tok-1"}})));
    // Before the first poll the state is stale: denied.
    assert_eq!(get(&mut a, &host, &good, &[]), Outcome::Answered);
    assert_eq!(status(&host), Some(503));

    let set = |jti: &str, events: Value| {
        token(
            &k,
            json!({"header": {"typ": "secevent+jwt"},
                   "claims": {"iss": "https://ssf.test", "aud": "https://api.test/ssf",
                              "jti": jti, "events": events, "exp": null, "sub": null,
                              "scope": null}}),
        )
    };
    let revoke = set(
        "set-1",
        json!({crate::revocation::EVENT_TOKEN_REVOKED: {"jti": "tok-1"}}),
    );
    a.on_tick(&host);
    let call = host.take_call("ssf").unwrap();
    assert!(call.headers.iter().any(|(k, _)| k == "x-agent-iam-session"));
    let body = json!({"sets": {"set-1": revoke, "set-2": "not.a.set"}}).to_string();
    host.answer("200", body.as_bytes());
    a.on_call_response(&host, call.token, body.len());
    assert_eq!(
        host.metric_value("agent_iam.revocation.sets_refused_total"),
        Some(1)
    );
    assert_eq!(
        host.metric_value("agent_iam.revocation.polls_ok_total"),
        Some(1)
    );
    assert_eq!(host.logged("revocation applied: SET set-1").len(), 1);

    // The other worker enforces it on its next request.
    assert_eq!(get(&mut b, &host, &good, &[]), Outcome::Answered);
    assert_eq!(status(&host), Some(401));
    let other = format!("Bearer {}", token(&k, json!({"claims": {"jti": "tok-2"}})));
    assert_eq!(get(&mut b, &host, &other, &[]), Outcome::Continue);

    // The next poll acknowledges what was applied (and not what was refused).
    host.advance_ms(250);
    b.on_tick(&host);
    let call = host.take_call("ssf").unwrap();
    let poll: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(poll["ack"], json!(["set-1"]));

    // A state that cannot be stored: nothing is audited as applied, nothing acknowledged.
    let again = set(
        "set-3",
        json!({crate::revocation::EVENT_TOKEN_REVOKED: {"jti": "tok-2"}}),
    );
    let body = json!({"sets": {"set-3": again}}).to_string();
    host.failing.borrow_mut().push("shared_set");
    host.answer("200", body.as_bytes());
    b.on_call_response(&host, call.token, body.len());
    host.failing.borrow_mut().clear();
    assert!(host
        .logged("\"jti\":\"set-3\",\"outcome\":\"applied\"")
        .is_empty());
    assert_eq!(
        host.metric_value("agent_iam.revocation.poll_failures_total"),
        Some(1)
    );
    host.advance_ms(250);
    a.on_tick(&host);
    let call = host.take_call("ssf").unwrap();
    let poll: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        poll["ack"],
        json!(["set-1"]),
        "the last stored acknowledgements"
    );
    assert_eq!(get(&mut a, &host, &other, &[]), Outcome::Continue);
}

/// The demo issuer with an MCP route: read and write tools, a protected resource the
/// issuer's tokens are for, and `tickets:admin` implying both.
fn mcp_plugin(k: &DevKeys) -> Value {
    let mut p = open_plugin(k);
    p["issuers"][0]["audiences"] =
        json!([crate::dev::DEMO_AUDIENCE, "https://api.agent-iam.test/mcp"]);
    p["routes"] = json!([{"prefix": "/mcp", "methods": ["POST"], "required_scopes": [],
        "mcp": {"tools": {"search_tickets": ["tickets:read"], "create_ticket": ["tickets:write"]}}}]);
    p["protected_resource"] = json!({"resource": "https://api.agent-iam.test/mcp",
        "authorization_servers": [crate::dev::DEMO_ISSUER], "resource_name": "Tickets"});
    p["scope_implies"] = json!({"tickets:admin": ["tickets:read", "tickets:write"]});
    p
}

/// Posts `body` to /mcp with `scope` in the token; the body arrives in two chunks.
fn post(
    w: &mut Worker,
    host: &LocalHost,
    ex: &mut Exchange,
    scope: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Outcome {
    let k = keys();
    let auth = bearer(&k, scope);
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "api.test"),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    headers.extend_from_slice(extra);
    host.request(&headers);
    let first = w.on_request(host, ex, false);
    if first != Outcome::NeedBody {
        return first;
    }
    host.request_body_is(body.as_bytes());
    assert_eq!(
        w.on_request_body(host, ex, body.len() / 2, false),
        Outcome::NeedBody
    );
    w.on_request_body(host, ex, body.len(), true)
}

fn call(name: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": name, "arguments": {"q": "x"}}})
    .to_string()
}

fn deny_json(host: &LocalHost) -> (u16, String, Value) {
    let (code, headers, body) = host.stream.borrow().response.clone().unwrap();
    let www = headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    (code, www, serde_json::from_slice(&body).unwrap())
}

#[test]
fn an_mcp_call_is_decided_on_its_body_with_every_scope_it_needs_in_one_challenge() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &mcp_plugin(&k));
    let mut ex = Exchange::default();

    // A read tool with the read scope: the body the filter read goes on unchanged.
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:read",
        &call("search_tickets"),
        &[],
    );
    assert_eq!(out, Outcome::Continue);
    assert_eq!(host.stream.borrow().body, call("search_tickets").as_bytes());
    assert!(host.stream.borrow().response.is_none());

    // The write tool: 403, the JSON-RPC error carries the request's id and the decision
    // id; the challenge names every scope and the resource's metadata.
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:read",
        &call("create_ticket"),
        &[],
    );
    assert_eq!(out, Outcome::Answered);
    let (code, www, body) = deny_json(&host);
    assert_eq!(code, 403);
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"tickets:write\""), "{www}");
    assert!(
        www.contains("resource_metadata=\"https://api.agent-iam.test/.well-known/oauth-protected-resource/mcp\""),
        "{www}"
    );
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -31403);
    assert_eq!(body["error"]["data"]["reason"], "scope.insufficient");
    assert_eq!(
        body["error"]["data"]["decision_id"].as_str().unwrap().len(),
        32
    );

    // scope_implies: admin may write.
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:admin",
        &call("create_ticket"),
        &[],
    );
    assert_eq!(out, Outcome::Continue);

    // Unlisted tools are refused (other_tools defaults to deny).
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:admin",
        &call("drop_database"),
        &[],
    );
    assert_eq!(out, Outcome::Answered);
    assert_eq!(
        deny_json(&host).2["error"]["data"]["reason"],
        "mcp.name_unlisted"
    );

    // Mirrored headers are compared with the body, never believed.
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:admin",
        &call("create_ticket"),
        &[("mcp-method", "tools/call"), ("mcp-name", "search_tickets")],
    );
    assert_eq!(out, Outcome::Answered);
    let (code, _, body) = deny_json(&host);
    assert_eq!((code, body["error"]["code"].as_i64()), (400, Some(-32020)));

    // A batch, a body that is not JSON, duplicate members: refused with their reasons.
    for (body, reason, code) in [
        (format!("[{}]", call("search_tickets")), "mcp.batch", -32600),
        ("{not json".to_owned(), "mcp.body_invalid", -32700),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","name":"create_ticket"}}"#.to_owned(),
            "mcp.body_invalid",
            -32700,
        ),
    ] {
        let out = post(&mut w, &host, &mut ex, "tickets:admin", &body, &[]);
        assert_eq!(out, Outcome::Answered, "{body}");
        let (status, _, v) = deny_json(&host);
        assert_eq!(status, 400, "{body}");
        assert_eq!(v["error"]["data"]["reason"], reason, "{body}");
        assert_eq!(v["error"]["code"], code, "{body}");
    }

    // Over max_body_bytes: refused from content-length, before any body is read.
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:read",
        &call("search_tickets"),
        &[("content-length", "70000")],
    );
    assert_eq!(out, Outcome::Answered);
    assert_eq!(deny_json(&host).0, 413);

    // Every decision was audited with its MCP call (the arguments only as a hash).
    let audited = host.logged("\"mcp\":{\"method\":\"tools/call\"");
    assert_eq!(audited.len(), 5, "{audited:?}");
    assert!(audited.iter().all(|l| !l.contains("\"q\":\"x\"")));
}

#[test]
fn a_token_failure_on_an_mcp_route_is_answered_before_the_body_as_a_json_rpc_error() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &mcp_plugin(&k));
    host.request(&[(":method", "POST"), (":path", "/mcp"), (":authority", "a")]);
    let out = w.on_request(&host, &mut Exchange::default(), false);
    assert_eq!(out, Outcome::Answered);
    let (code, www, body) = deny_json(&host);
    assert_eq!(code, 401);
    assert!(www.contains("resource_metadata=\"https://api.agent-iam.test/.well-known/oauth-protected-resource/mcp\""), "{www}");
    assert_eq!(body["id"], Value::Null);
    assert_eq!(body["error"]["code"], -31401);
}

#[test]
fn the_protected_resource_metadata_is_answered_without_a_token() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &mcp_plugin(&k));
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        host.request(&[(":method", "GET"), (":path", path), (":authority", "a")]);
        assert_eq!(
            w.on_request(&host, &mut Exchange::default(), true),
            Outcome::Answered
        );
        let (code, _, body) = host.stream.borrow().response.clone().unwrap();
        assert_eq!(code, 200);
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["resource"], "https://api.agent-iam.test/mcp");
        assert_eq!(
            doc["scopes_supported"],
            json!(["tickets:read", "tickets:write"])
        );
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        // The CLI and the playground decide it alike.
        let req = crate::pipeline::Request {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        };
        let checked = w.check(&req, NOW as f64, || 0);
        assert!(checked.decision.allowed());
        assert_eq!(
            checked.decision.route.as_deref(),
            Some("oauth-protected-resource")
        );
    }
}

#[test]
fn a_tools_list_shows_only_what_the_caller_may_call() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &mcp_plugin(&k));
    let mut ex = Exchange::default();
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:read",
        list,
        &[("accept-encoding", "gzip")],
    );
    assert_eq!(out, Outcome::Continue);
    assert!(ex.filters_response());
    assert!(host
        .stream
        .borrow()
        .removed
        .contains(&"accept-encoding".to_owned()));
    let result = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [
        {"name": "search_tickets", "inputSchema": {}},
        {"name": "create_ticket", "inputSchema": {}},
        {"name": "unlisted", "inputSchema": {}}], "nextCursor": "c2"}});
    let text = result.to_string();
    host.response_is(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", "9"),
        ],
        text.as_bytes(),
    );
    assert_eq!(
        w.on_response_headers(&host, &mut ex, false),
        Outcome::NeedBody
    );
    assert_eq!(
        w.on_response_body(&host, &mut ex, text.len(), true),
        Outcome::Continue
    );
    let s = host.stream.borrow();
    assert!(s
        .response_headers
        .iter()
        .all(|(k, _)| k != "content-length"));
    let filtered: Value = serde_json::from_slice(&s.response_body).unwrap();
    assert_eq!(
        filtered["result"]["tools"],
        json!([{"name": "search_tickets", "inputSchema": {}}])
    );
    assert_eq!(filtered["result"]["nextCursor"], "c2");
    assert_eq!(filtered["result"]["cacheScope"], "private");
    drop(s);
    assert_eq!(
        host.metric_value("agent_iam.mcp.list_entries_removed_total"),
        Some(2)
    );

    // A compressed list cannot be filtered: refused, never passed through.
    let out = post(&mut w, &host, &mut ex, "tickets:read", list, &[]);
    assert_eq!(out, Outcome::Continue);
    host.response_is(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        b"\x1f\x8b",
    );
    assert_eq!(
        w.on_response_headers(&host, &mut ex, false),
        Outcome::Answered
    );
    let (code, _, body) = deny_json(&host);
    assert_eq!(code, 502);
    assert_eq!(body["error"]["data"]["reason"], "mcp.list_unfilterable");
    assert_eq!(body["id"], 3);
}

#[test]
fn an_mcp_endpoint_is_decided_as_one_whatever_the_method_or_the_spelling_of_a_uri() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = mcp_plugin(&k);
    plugin["routes"][0]["mcp"]["resources"] =
        json!({"tickets://1": ["tickets:admin"], "tickets://*": ["tickets:read"]});
    // A catch-all route would take a GET the MCP route does not list.
    plugin["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"prefix": "/", "required_scopes": []}));
    let mut w = worker(&host, &plugin);
    let mut ex = Exchange::default();
    let auth = bearer(&k, "tickets:read");
    host.request(&[
        (":method", "GET"),
        (":path", "/mcp"),
        (":authority", "a"),
        ("authorization", &auth),
    ]);
    assert_eq!(w.on_request(&host, &mut ex, true), Outcome::Answered);
    assert_eq!(
        deny_json(&host).2["error"]["data"]["reason"],
        "request.method"
    );
    host.request(&[
        (":method", "GET"),
        (":path", "/mcp"),
        (":authority", "a"),
        ("authorization", &auth),
        ("last-event-id", "7"),
    ]);
    assert_eq!(w.on_request(&host, &mut ex, true), Outcome::Answered);
    assert_eq!(deny_json(&host).2["error"]["data"]["reason"], "mcp.replay");

    // `tickets://%31` is `tickets://1` to a `tickets://{id}` template: it needs admin too.
    for (uri, scope, allowed) in [
        ("tickets://2", "tickets:read", true),
        ("tickets://%31", "tickets:read", false),
        ("tickets://%31", "tickets:admin", true),
        ("tickets://%zz", "tickets:admin", false),
    ] {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}});
        let out = post(&mut w, &host, &mut ex, scope, &body.to_string(), &[]);
        assert_eq!(out == Outcome::Continue, allowed, "{uri} {scope}");
    }
    // A 2025-11-25 subscription names its resource too.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "tickets://1"}});
    let out = post(
        &mut w,
        &host,
        &mut ex,
        "tickets:read",
        &body.to_string(),
        &[],
    );
    assert_eq!(out, Outcome::Answered);
    assert_eq!(
        deny_json(&host).2["error"]["data"]["reason"],
        "scope.insufficient"
    );
}

#[test]
fn a_request_that_ends_before_its_body_is_audited_as_a_deny() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &mcp_plugin(&k));
    let mut ex = Exchange::default();
    let auth = format!("Bearer {}", token(&k, json!({})));
    host.request(&[
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "a"),
        ("authorization", &auth),
    ]);
    assert_eq!(w.on_request(&host, &mut ex, false), Outcome::NeedBody);
    assert!(ex.waits_for_body());
    w.on_stream_end(&host, &mut ex);
    assert!(!ex.waits_for_body());
    let events = host.logged("\"reason\":\"mcp.body_invalid\"");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("ended before its whole body"));
    assert_eq!(host.decisions("deny", Some("mcp.body_invalid")), 1);
}

#[test]
fn the_arguments_reach_the_audit_event_only_where_the_route_opts_in() {
    let k = keys();
    for (opt_in, logged) in [(false, 0), (true, 1)] {
        let host = LocalHost::at(NOW as f64);
        let mut plugin = mcp_plugin(&k);
        plugin["routes"][0]["mcp"]["audit_arguments"] = json!(opt_in);
        let mut w = worker(&host, &plugin);
        let mut ex = Exchange::default();
        let out = post(
            &mut w,
            &host,
            &mut ex,
            "tickets:read",
            &call("search_tickets"),
            &[],
        );
        assert_eq!(out, Outcome::Continue);
        assert_eq!(
            host.logged("\"arguments\":{\"q\":\"x\"}").len(),
            logged,
            "{opt_in}"
        );
        assert_eq!(host.logged("\"arguments_sha256\":\"").len(), 1);
    }
}

/// Routes only Envoy's route metadata selects, and Envoy's table: `/admin` names the
/// admin route, `/` the public one, `/plain` carries no metadata.
fn metadata_plugin(k: &DevKeys) -> Value {
    let mut p = open_plugin(k);
    p["route_metadata"] = json!(true);
    p["unmatched_route"] = json!("deny");
    p["audit"] = json!({"log": true});
    p["routes"] = json!([
        {"name": "admin", "required_scopes": ["admin"]},
        {"name": "public"},
    ]);
    p
}

/// `Bearer <a token of the demo issuer with scope>`.
fn bearer(k: &DevKeys, scope: &str) -> String {
    format!("Bearer {}", token(k, json!({"claims": {"scope": scope}})))
}

fn envoy_routes(host: &LocalHost) {
    *host.envoy_routes.borrow_mut() = vec![
        ("/admin".into(), Some("admin".into())),
        ("/plain".into(), None),
        ("/".into(), Some("public".into())),
        ("/typo".into(), Some("admn".into())),
        // `agent_iam` metadata without a (usable) `route`: refused, never matched on paths.
        ("/empty".into(), Some(String::new())),
    ];
}

fn get_path(w: &mut Worker, host: &LocalHost, auth: &str, path: &str) -> Outcome {
    host.request(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "api.test"),
        ("authorization", auth),
    ]);
    w.on_request(host, &mut Exchange::default(), true)
}

#[test]
fn envoy_route_metadata_names_the_route_a_request_is_decided_on() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    envoy_routes(&host);
    let mut w = worker(&host, &metadata_plugin(&k));
    let reader = bearer(&k, "tickets:read");
    let admin = bearer(&k, "admin");
    let cases = [
        (
            &reader,
            "/admin/users",
            Some(403),
            Some("scope.insufficient"),
        ),
        (&admin, "/admin/users", None, None),
        (&reader, "/public/status", None, None),
        // No metadata on Envoy's route: `routes[]` paths decide, and none has one.
        (&admin, "/plain", Some(403), Some("route.unmatched")),
        // A name no route has: refused whatever the caller holds.
        (&admin, "/typo", Some(503), Some("route.metadata")),
        (&admin, "/empty", Some(503), Some("route.metadata")),
    ];
    for (auth, path, want_status, want_reason) in cases {
        let out = get_path(&mut w, &host, auth, path);
        assert_eq!(status(&host), want_status, "{path}");
        assert_eq!(reason(&host).as_deref(), want_reason, "{path}");
        assert_eq!(out == Outcome::Continue, want_status.is_none(), "{path}");
    }
    assert_eq!(host.decisions("allow", None), 2);
    assert_eq!(host.decisions("deny", Some("route.metadata")), 2);
    // A method the named route does not list is refused, in shadow too (counted as such).
    let mut plugin = metadata_plugin(&k);
    plugin["routes"][1]["methods"] = json!(["GET"]);
    for mode in ["enforce", "shadow"] {
        plugin["mode"] = json!(mode);
        let mut w = worker(&host, &plugin);
        host.request(&[
            (":method", "DELETE"),
            (":path", "/public/status"),
            (":authority", "api.test"),
            ("authorization", &reader),
        ]);
        let out = w.on_request(&host, &mut Exchange::default(), true);
        let refused = mode == "enforce";
        assert_eq!(out == Outcome::Answered, refused, "{mode}");
        assert_eq!(
            reason(&host).as_deref(),
            refused.then_some("request.method"),
            "{mode}"
        );
    }
}

#[test]
fn with_route_metadata_a_target_the_filter_would_rewrite_is_refused() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    envoy_routes(&host);
    let mut w = worker(&host, &metadata_plugin(&k));
    let reader = bearer(&k, "tickets:read");
    // Envoy (without merge_slashes) puts `//admin/users` on `/`, the public route; its
    // canonical form, the path the upstream would get, is on the admin route.
    for target in ["//admin/users", "/public//status", "/public/%7Eme"] {
        let out = get_path(&mut w, &host, &reader, target);
        assert_eq!(out, Outcome::Answered, "{target}");
        assert_eq!(status(&host), Some(400));
        assert_eq!(reason(&host).as_deref(), Some("request.not_canonical"));
        // Nothing was forwarded: the path is the client's.
        assert_eq!(header(&host, ":path").as_deref(), Some(target));
    }
    let events = host.logged("\"reason\":\"request.not_canonical\"");
    assert_eq!(events.len(), 3);
    assert!(
        events[0].contains("\"target\":\"//admin/users\""),
        "{}",
        events[0]
    );
    // Without route_metadata the filter forwards the canonical form.
    let mut plugin = metadata_plugin(&k);
    plugin["route_metadata"] = json!(false);
    plugin["routes"] = json!([{"prefix": "/public"}]);
    let mut w = worker(&host, &plugin);
    let out = get_path(&mut w, &host, &reader, "/public//status");
    assert_eq!(out, Outcome::Continue);
    assert_eq!(header(&host, ":path").as_deref(), Some("/public/status"));
}

#[test]
fn envoy_route_metadata_is_read_only_when_configured_and_refused_even_in_shadow() {
    let k = keys();
    let admin = bearer(&k, "admin");
    // Off: the metadata is never read (the table would answer `admn`); paths decide.
    let host = LocalHost::at(NOW as f64);
    envoy_routes(&host);
    let mut plugin = metadata_plugin(&k);
    plugin["route_metadata"] = json!(false);
    plugin["routes"] = json!([{"prefix": "/typo", "required_scopes": ["tickets:read"]}]);
    let mut w = worker(&host, &plugin);
    get_path(&mut w, &host, &admin, "/typo");
    assert_eq!(reason(&host).as_deref(), Some("scope.insufficient"));
    assert_eq!(host.route_reads.get(), 0);
    // In shadow, a route the filter cannot name is still refused: no check could say
    // which rules the request should have met.
    let host = LocalHost::at(NOW as f64);
    envoy_routes(&host);
    let mut plugin = metadata_plugin(&k);
    plugin["mode"] = json!("shadow");
    let mut w = worker(&host, &plugin);
    get_path(&mut w, &host, &admin, "/typo");
    assert_eq!(reason(&host).as_deref(), Some("route.metadata"));
    let out = get_path(&mut w, &host, &admin, "//admin/x");
    assert_eq!(out, Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("request.not_canonical"));
}

/// Limits: two workers of one host share each key's budget; a refusal is a 429 with
/// `Retry-After`, the limit's own reason code, an audit event and a metric; another key
/// keeps its own budget; in shadow the refusal is counted and the request goes on.
#[test]
fn limits_are_shared_by_the_workers_and_refuse_with_their_own_code() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = open_plugin(&k);
    plugin["audit"] = json!({"log": true});
    plugin["limits"] = json!([
        {"name": "agent-reads", "key": ["agent"], "match": {"methods": ["GET"]},
         "budget": {"count": 3, "window_s": 60}},
        {"name": "writes", "key": ["agent"], "match": {"methods": ["POST"]},
         "rate": {"per_s": 1, "burst": 1}}
    ]);
    let mut a = worker(&host, &plugin);
    let mut b = worker(&host, &plugin);
    let bot = format!(
        "Bearer {}",
        token(&k, json!({"claims": {"sub": "agent:bot-1"}}))
    );
    let other = format!(
        "Bearer {}",
        token(&k, json!({"claims": {"sub": "agent:bot-2"}}))
    );
    assert_eq!(get(&mut a, &host, &bot, &[]), Outcome::Continue);
    assert_eq!(get(&mut b, &host, &bot, &[]), Outcome::Continue);
    assert_eq!(get(&mut a, &host, &bot, &[]), Outcome::Continue);
    assert_eq!(get(&mut b, &host, &bot, &[]), Outcome::Answered);
    assert_eq!(status(&host), Some(429));
    assert_eq!(reason(&host).as_deref(), Some("limit.agent-reads"));
    let retry: u64 = host_response_header(&host, "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let logged = host.logged("\"reason\":\"limit.agent-reads\"");
    assert_eq!(logged.len(), 1, "{:?}", host.logged("agent-iam audit"));
    assert_eq!(host.decisions("deny", Some("limit.agent-reads")), 1);
    // Another agent has its own budget.
    assert_eq!(get(&mut a, &host, &other, &[]), Outcome::Continue);
    // The window ends: admitted again.
    host.advance_ms(60_000);
    assert_eq!(get(&mut b, &host, &bot, &[]), Outcome::Continue);

    // One slot (limits_max_keys 1): the 17th agent makes room by forgetting a live
    // counter, and the metric says so.
    let mut small = plugin.clone();
    small["limits_max_keys"] = json!(1);
    let host2 = LocalHost::at(NOW as f64);
    let mut w2 = worker(&host2, &small);
    for i in 0..17 {
        let t = format!(
            "Bearer {}",
            token(&k, json!({"claims": {"sub": format!("agent:bot-{i}")}}))
        );
        assert_eq!(get(&mut w2, &host2, &t, &[]), Outcome::Continue);
    }
    assert_eq!(
        host2.metric_value("agent_iam.limit_evictions_total"),
        Some(1)
    );

    // In shadow: counted, not enforced.
    plugin["checks"] = json!({"limits": {"mode": "shadow"}});
    let host = LocalHost::at(NOW as f64);
    let mut w = worker(&host, &plugin);
    for _ in 0..4 {
        assert_eq!(get(&mut w, &host, &bot, &[]), Outcome::Continue);
    }
    assert_eq!(host.decisions("shadow_deny", Some("limit.agent-reads")), 1);
}

fn host_response_header(host: &LocalHost, name: &str) -> Option<String> {
    let s = host.stream.borrow();
    let (_, headers, _) = s.response.as_ref()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Quarantine: the refusal that makes one too many quarantines the agent on every worker,
/// with an audit event holding the evidence; the agent is then refused as the acting agent
/// and as an actor of a chain, until the quarantine ends or the registry releases it.
#[test]
fn too_many_refusals_quarantine_the_agent_everywhere_until_it_ends_or_is_released() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = open_plugin(&k);
    plugin["audit"] = json!({"log": true});
    plugin["agents"] = json!({"registry": [
        {"id": "agent:bot-1", "status": "active", "max_scopes": ["tickets:read"], "may_act_for": ["user:*"], "may_delegate_to": ["agent:bot-2"]},
        {"id": "agent:bot-2", "status": "active", "max_scopes": ["tickets:read"], "may_act_for": ["user:*", "agent:bot-1"]}
    ]});
    plugin["routes"] = json!([
        {"name": "read", "prefix": "/tickets", "methods": ["GET"], "required_scopes": ["tickets:read"]},
        {"name": "admin", "prefix": "/admin", "required_scopes": ["tickets:admin"]}
    ]);
    plugin["quarantine"] = json!({"denials": 2, "within_s": 60, "for_s": 30});
    let mut a = worker(&host, &plugin);
    let mut b = worker(&host, &plugin);
    let bot = format!(
        "Bearer {}",
        token(&k, json!({"claims": {"sub": "agent:bot-1"}}))
    );
    let via_bot = format!(
        "Bearer {}",
        token(
            &k,
            json!({"claims": {"sub": "user:alice", "act": {"sub": "agent:bot-2", "act": {"sub": "agent:bot-1"}}}})
        )
    );
    let admin = |w: &mut Worker, auth: &str| get_admin(w, &host, auth);
    assert_eq!(get(&mut a, &host, &bot, &[]), Outcome::Continue);
    for w in [&mut a, &mut b] {
        assert_eq!(admin(w, &bot), Outcome::Answered);
        assert_eq!(reason(&host).as_deref(), Some("scope.insufficient"));
    }
    assert_eq!(host.logged("\"kind\":\"quarantine\"").len(), 0);
    // The third refusal, on the other worker, is one too many.
    assert_eq!(admin(&mut a, &bot), Outcome::Answered);
    let events = host.logged("\"kind\":\"quarantine\"");
    assert_eq!(events.len(), 1);
    let ev: Value =
        serde_json::from_str(events[0].split("agent-iam audit ").nth(1).unwrap()).unwrap();
    assert_eq!(
        (
            ev["agent"].as_str(),
            ev["denials"].as_u64(),
            ev["within_s"].as_u64()
        ),
        (Some("agent:bot-1"), Some(2), Some(60))
    );
    assert_eq!(
        ev["decision_ids"].as_array().unwrap().len(),
        2,
        "this worker decided two of the three: {ev}"
    );
    assert_eq!(
        ev["until"].as_f64().unwrap() - ev["since"].as_f64().unwrap(),
        30.0
    );
    // Refused everywhere: directly, and as an earlier actor of a chain.
    assert_eq!(get(&mut b, &host, &bot, &[]), Outcome::Answered);
    assert_eq!(
        (status(&host), reason(&host).as_deref()),
        (Some(403), Some("agent.quarantined"))
    );
    assert_eq!(get(&mut a, &host, &via_bot, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("agent.quarantined"));
    // Nor through an agent it delegates to, as the principal.
    let for_bot = format!(
        "Bearer {}",
        token(
            &k,
            json!({"claims": {"sub": "agent:bot-1", "act": {"sub": "agent:bot-2"}}})
        )
    );
    assert_eq!(get(&mut b, &host, &for_bot, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("agent.quarantined"));
    // It ends.
    host.advance_ms(30_000);
    assert_eq!(get(&mut a, &host, &bot, &[]), Outcome::Continue);

    // Quarantined again, then released by the registry (released_at after it began).
    for _ in 0..3 {
        admin(&mut a, &bot);
    }
    assert_eq!(get(&mut a, &host, &bot, &[]), Outcome::Answered);
    assert_eq!(reason(&host).as_deref(), Some("agent.quarantined"));
    plugin["agents"]["registry"][0]["released_at"] = json!(NOW + 30);
    let mut c = worker(&host, &plugin);
    assert_eq!(get(&mut c, &host, &bot, &[]), Outcome::Continue);
}

/// An MCP call is counted when its body arrives: a body held back while its window passed
/// is counted in the window it arrives in, never in the window its headers opened.
#[test]
fn an_mcp_call_held_back_is_counted_when_its_body_arrives() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = mcp_plugin(&k);
    plugin["limits"] = json!([{"name": "calls", "key": ["agent", "mcp.name"],
        "budget": {"count": 1, "window_s": 60}}]);
    let mut w = worker(&host, &plugin);
    let auth = bearer(&k, "tickets:read");
    let body = call("search_tickets");
    // The held call: headers now, body two minutes later.
    let mut held = Exchange::default();
    host.request(&[
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "api.test"),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ]);
    assert_eq!(w.on_request(&host, &mut held, false), Outcome::NeedBody);
    host.advance_ms(120_000);
    // Counted now, it takes this window's one unit...
    host.request_body_is(body.as_bytes());
    assert_eq!(
        w.on_request_body(&host, &mut held, body.len(), true),
        Outcome::Continue
    );
    // ...so another call in this window is refused (counted at its headers' time, the held
    // call would have spent a window long gone, and both would pass).
    let mut ex = Exchange::default();
    assert_eq!(
        post(&mut w, &host, &mut ex, "tickets:read", &body, &[]),
        Outcome::Answered
    );
    assert_eq!(deny_json(&host).2["error"]["data"]["reason"], "limit.calls");
}

/// A fixed P-256 gateway key as a private JWK, and its public JWKS.
fn gateway_key() -> (Value, Value) {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let p = key.verifying_key().to_encoded_point(false);
    let public = json!({"kty": "EC", "crv": "P-256", "kid": "gw-a",
        "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())});
    let mut private = public.clone();
    private["d"] = json!(b64(&[7u8; 32]));
    (private, json!({"keys": [public]}))
}

/// Quarantine reports: each quarantine becomes one signed SET pushed to the transmitter,
/// retried with backoff while it fails, dropped when the transmitter refuses it; another
/// gateway that receives it refuses the agent until it ends or its registry releases it.
#[test]
fn a_quarantine_is_reported_retried_and_enforced_by_the_gateway_that_receives_it() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("ssf".into());
    let (private, public) = gateway_key();
    let mut plugin = open_plugin(&k);
    plugin["routes"] = json!([
        {"name": "admin", "prefix": "/admin", "required_scopes": ["tickets:admin"]}
    ]);
    plugin["quarantine"] = json!({"denials": 1, "within_s": 60, "for_s": 30,
        "report": {"cluster": "ssf", "path": "/ssf/push", "issuer": "https://gw-a.test",
                   "audience": "https://api.test/ssf", "signing_key": private}});
    let mut a = worker(&host, &plugin);
    let bot = format!(
        "Bearer {}",
        token(&k, json!({"claims": {"sub": "agent:bot-1"}}))
    );
    let admin = |w: &mut Worker, auth: &str| get_admin(w, &host, auth);
    for _ in 0..2 {
        admin(&mut a, &bot);
    }
    a.on_tick(&host);
    let push = host.take_call("ssf").unwrap();
    assert!(push
        .headers
        .contains(&("content-type".into(), "application/secevent+jwt".into())));
    assert!(push.headers.contains(&(":path".into(), "/ssf/push".into())));
    let set = String::from_utf8(push.body.clone()).unwrap();

    // The transmitter is down: kept, retried after a backoff.
    host.answer("503", b"");
    a.on_call_response(&host, push.token, 0);
    a.on_tick(&host);
    assert!(host.take_call("ssf").is_none(), "backing off");
    host.advance_ms(250);
    a.on_tick(&host);
    let again = host.take_call("ssf").unwrap();
    assert_eq!(again.body, push.body, "the same SET, same jti");
    host.answer("202", b"");
    a.on_call_response(&host, again.token, 0);
    assert_eq!(
        host.metric_value("agent_iam.quarantine.reports_sent_total"),
        Some(1)
    );
    assert_eq!(
        host.metric_value("agent_iam.quarantine.report_failures_total"),
        Some(1)
    );

    // A second quarantine (after the first ends): the transmitter refuses it for good.
    host.advance_ms(30_000);
    for _ in 0..2 {
        admin(&mut a, &bot);
    }
    a.on_tick(&host);
    let refused = host.take_call("ssf").unwrap();
    let err = br#"{"err":"invalid_key","description":"unknown kid"}"#;
    host.answer("400", err);
    a.on_call_response(&host, refused.token, err.len());
    assert_eq!(
        host.metric_value("agent_iam.quarantine.reports_refused_total"),
        Some(1)
    );
    assert_eq!(host.logged("unknown kid").len(), 1);
    host.advance_ms(60_000);
    a.on_tick(&host);
    assert!(
        host.take_call("ssf").is_none(),
        "a refused SET is not sent again"
    );

    // Gateway B (its own host) trusts the sender as its transmitter here; it applies the
    // event and refuses the agent, directly and as an actor, while it lasts.
    let host_b = LocalHost::at(NOW as f64 + 1.0);
    host_b.clusters.borrow_mut().push("ssf".into());
    let mut plugin_b = open_plugin(&k);
    plugin_b["revocation"] = json!({
        "feed": {"cluster": "ssf", "path": "/ssf/poll", "interval_ms": 250},
        "transmitter": {"issuer": "https://gw-a.test", "audience": "https://api.test/ssf",
                        "jwks": public}});
    let mut b = worker(&host_b, &plugin_b);
    b.on_tick(&host_b);
    let poll = host_b.take_call("ssf").unwrap();
    let jti = set_jti(&set)["jti"].as_str().unwrap().to_owned();
    assert!(jti.starts_with("quarantine-"), "{jti}");
    let body = json!({"sets": {jti.clone(): set}}).to_string();
    host_b.answer("200", body.as_bytes());
    b.on_call_response(&host_b, poll.token, body.len());
    assert_eq!(
        host_b
            .logged(&format!("revocation applied: SET {jti}"))
            .len(),
        1
    );
    assert_eq!(get(&mut b, &host_b, &bot, &[]), Outcome::Answered);
    assert_eq!(
        (status(&host_b), reason(&host_b).as_deref()),
        (Some(403), Some("agent.quarantined"))
    );
    // B's registry releases it.
    plugin_b["agents"] = json!({"allow_unregistered_subjects": true, "registry": [
        {"id": "agent:bot-1", "status": "active", "max_scopes": ["tickets:read", "tickets:admin"],
         "may_act_for": ["user:*"], "released_at": NOW + 2}]});
    let mut b2 = worker(&host_b, &plugin_b);
    host_b.advance_ms(2_000);
    b2.on_tick(&host_b);
    let poll = host_b.take_call("ssf").unwrap();
    let body = json!({"sets": {}}).to_string();
    host_b.answer("200", body.as_bytes());
    b2.on_call_response(&host_b, poll.token, body.len());
    assert_eq!(get(&mut b2, &host_b, &bot, &[]), Outcome::Continue);
    // And it ends on its own on B as well.
    host_b.advance_ms(30_000);
    b.on_tick(&host_b);
    if let Some(poll) = host_b.take_call("ssf") {
        host_b.answer("200", body.as_bytes());
        b.on_call_response(&host_b, poll.token, body.len());
    }
    assert_eq!(get(&mut b, &host_b, &bot, &[]), Outcome::Continue);
}

/// The claims of a compact JWS (no verification).
fn set_jti(set: &str) -> Value {
    use base64::Engine as _;
    let payload = set.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A streamed MCP body over the route's limit, or followed by trailers, is the MCP check's
/// refusal, and counts toward the agent's quarantine like any other.
#[test]
fn refused_mcp_bodies_count_toward_the_quarantine() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    let mut plugin = mcp_plugin(&k);
    plugin["routes"][0]["mcp"]["max_body_bytes"] = json!(64);
    plugin["quarantine"] = json!({"denials": 1, "within_s": 60, "for_s": 30});
    plugin["audit"] = json!({"log": true});
    let mut w = worker(&host, &plugin);
    let auth = bearer(&k, "tickets:read");
    let start = |w: &mut Worker, ex: &mut Exchange| {
        host.request(&[
            (":method", "POST"),
            (":path", "/mcp"),
            (":authority", "api.test"),
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ]);
        assert_eq!(w.on_request(&host, ex, false), Outcome::NeedBody);
    };
    let mut ex = Exchange::default();
    start(&mut w, &mut ex);
    let big = call(&"x".repeat(200));
    host.request_body_is(big.as_bytes());
    assert_eq!(
        w.on_request_body(&host, &mut ex, 100, false),
        Outcome::Answered
    );
    assert_eq!(deny_json(&host).0, 413);
    assert!(host.logged("\"kind\":\"quarantine\"").is_empty());
    let mut ex = Exchange::default();
    start(&mut w, &mut ex);
    host.request_body_is(b"{");
    assert_eq!(
        w.on_request_body(&host, &mut ex, 1, false),
        Outcome::NeedBody
    );
    assert_eq!(w.on_request_trailers(&host, &mut ex), Outcome::Answered);
    assert_eq!(deny_json(&host).0, 400);
    let events = host.logged("\"kind\":\"quarantine\"");
    assert_eq!(events.len(), 1, "{events:?}");
}

/// A report names the agent under its own issuer: the acting actor's `iss`, when its `act`
/// carries one, not the token's.
#[test]
fn a_report_names_the_agent_under_the_actors_own_issuer() {
    let k = keys();
    let host = LocalHost::at(NOW as f64);
    host.clusters.borrow_mut().push("ssf".into());
    let (private, _) = gateway_key();
    let mut plugin = open_plugin(&k);
    let mut other = plugin["issuers"][0].clone();
    other["issuer"] = json!("https://idp2.test");
    plugin["issuers"].as_array_mut().unwrap().push(other);
    plugin["agents"] = json!({"registry": [{"id": "agent:bot-1", "status": "active",
        "max_scopes": ["tickets:read"], "may_act_for": ["user:*"]}]});
    plugin["routes"] =
        json!([{"name": "admin", "prefix": "/admin", "required_scopes": ["tickets:admin"]}]);
    plugin["quarantine"] = json!({"denials": 1, "within_s": 60, "for_s": 30,
        "report": {"cluster": "ssf", "path": "/ssf/push", "issuer": "https://gw-a.test",
                   "audience": "https://api.test/ssf", "signing_key": private}});
    let mut w = worker(&host, &plugin);
    let via = format!(
        "Bearer {}",
        token(
            &k,
            json!({"claims": {"sub": "user:alice", "scope": "tickets:read",
                              "act": {"sub": "agent:bot-1", "iss": "https://idp2.test"}}})
        )
    );
    for _ in 0..2 {
        assert_eq!(get_admin(&mut w, &host, &via), Outcome::Answered);
        assert_eq!(reason(&host).as_deref(), Some("scope.insufficient"));
    }
    w.on_tick(&host);
    let push = host.take_call("ssf").unwrap();
    let claims = set_jti(&String::from_utf8(push.body).unwrap());
    let event = &claims["events"][crate::revocation::EVENT_AGENT_QUARANTINED];
    assert_eq!(
        event["subject"],
        json!({"format": "iss_sub", "iss": "https://idp2.test", "sub": "agent:bot-1"})
    );
}
