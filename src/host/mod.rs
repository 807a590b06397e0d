//! The proxy-wasm adapter: the only code that talks to the host (Envoy, Kong).
//!
//! Every host call goes through `proxy_wasm::hostcalls::*` and its `Result` is handled:
//! the SDK's trait helpers `unwrap()`, and a trap takes the worker's VM down.

// `proxy_wasm::main!` exports `_start` with `#[no_mangle]`.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Instant, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::audit::EventContext;
use crate::config::{BackendChoice, Config};
use crate::crypto::{ForeignCall, HostCrypto, PureRust, SignatureBackend};
use crate::keys::Alg;
use crate::pipeline::{Decision, DecisionIds, Engine, Request};
use crate::reason::Reason;

mod audit;
mod feed;
mod jwks;
mod revocation;
#[cfg(feature = "test-hooks")]
mod test_hooks;

use audit::Audit;
use feed::Feed;
use jwks::JwksFeed;
use revocation::RevocationFeed;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("agent-iam: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { engine: None, feed: None, revocation: None, jwks: Vec::new(), audit: None, jwks_age_gauge: None }) });
}}

fn log(level: LogLevel, msg: &str) {
    // One message, one line: values from feeds and peers never start a line of their own.
    let _ = hostcalls::log(level, &crate::audit::one_line(msg));
}

/// Shared data through the host (one copy per Envoy `vm_id`).
pub(crate) struct ProxyShared;

impl crate::shared::SharedData for ProxyShared {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), crate::shared::HostError> {
        hostcalls::get_shared_data(key).map_err(|s| crate::shared::HostError(format!("{s:?}")))
    }

    fn set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), crate::shared::HostError> {
        hostcalls::set_shared_data(key, Some(value), cas)
            .map_err(|s| crate::shared::HostError(format!("{s:?}")))
    }
}

/// `verify_signature` through the host.
pub(crate) struct EnvoyForeign;

impl ForeignCall for EnvoyForeign {
    fn call(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, String> {
        hostcalls::call_foreign_function(name, Some(args)).map_err(|s| format!("{s:?}"))
    }
}

/// Envoy exposes its node as `xds.node` (an `envoy.config.core.v3.Node`): a running
/// server sets `user_agent_name` (field 6) to "envoy"; `--mode validate` only carries
/// `user_agent_build_version` with Envoy's build metadata (`revision.sha`, `ssl.version`).
/// Reading a property is safe on every host (unknown properties answer "not found"),
/// unlike calling an unknown foreign function, which traps on Kong. So: positively
/// identified Envoy → host crypto; anything else → pure Rust.
fn host_is_envoy() -> bool {
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    match hostcalls::get_property(vec!["xds", "node"]) {
        Ok(Some(node)) => {
            contains(&node, b"\x32\x05envoy")
                || (contains(&node, b"revision.sha") && contains(&node, b"ssl.version"))
        }
        _ => false,
    }
}

type SharedFeed = Rc<RefCell<Feed>>;
type SharedRevocation = Rc<RefCell<RevocationFeed>>;
type SharedJwks = Rc<RefCell<JwksFeed>>;
type SharedAudit = Rc<RefCell<Audit>>;

struct Root {
    audit: Option<SharedAudit>,
    engine: Option<Rc<RefCell<Engine>>>,
    feed: Option<SharedFeed>,
    revocation: Option<SharedRevocation>,
    jwks: Vec<SharedJwks>,
    /// `agent_iam.jwks.age_ms`: the oldest remote key set's age.
    jwks_age_gauge: Option<u32>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        if let (Some(a), Some(e), Some(now)) =
            (self.audit.as_ref(), self.engine.as_ref(), now_seconds())
        {
            if let (Ok(mut a), Ok(mut e)) = (a.try_borrow_mut(), e.try_borrow_mut()) {
                a.on_done(&mut e, (now * 1000.0) as u64);
            }
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(now_ms) = now_seconds().map(|n| (n * 1000.0) as u64) else {
            return;
        };
        if let Some(a) = self.audit.as_ref() {
            if let Ok(mut a) = a.try_borrow_mut() {
                if a.on_response(token_id, now_ms) {
                    return;
                }
            }
        }
        if let (Some(rev), Some(engine)) = (self.revocation.as_ref(), self.engine.as_ref()) {
            let outcomes = match (rev.try_borrow_mut(), engine.try_borrow()) {
                (Ok(mut r), Ok(e)) => match e.config.revocation.as_ref() {
                    Some(t)
                        if r.on_response(
                            token_id,
                            body_size,
                            now_ms,
                            e.backend(),
                            &t.transmitter,
                        ) =>
                    {
                        Some(std::mem::take(&mut r.outcomes))
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(outcomes) = outcomes {
                // Every SET the feed applied or refused goes to the audit stream.
                if let (Some(a), Ok(mut e)) = (self.audit.as_ref(), engine.try_borrow_mut()) {
                    if let Ok(mut a) = a.try_borrow_mut() {
                        for o in &outcomes {
                            for line in e.audit_stream().revocation(o, now_ms as f64 / 1000.0) {
                                a.emit_out_of_request(line);
                            }
                        }
                    }
                }
                return;
            }
        }
        for j in &self.jwks {
            if let Ok(mut j) = j.try_borrow_mut() {
                if j.on_response(token_id, body_size, now_ms) {
                    return;
                }
            }
        }
        if let Some(feed) = self.feed.as_ref() {
            let outcomes = match feed.try_borrow_mut() {
                Ok(mut f) => {
                    f.on_response(token_id, body_size, now_ms);
                    std::mem::take(&mut f.outcomes)
                }
                Err(_) => Vec::new(),
            };
            // Every registry answer the feed applied or refused goes to the audit stream.
            if let (Some(a), Some(e), false) = (
                self.audit.as_ref(),
                self.engine.as_ref(),
                outcomes.is_empty(),
            ) {
                if let (Ok(mut a), Ok(mut e)) = (a.try_borrow_mut(), e.try_borrow_mut()) {
                    for o in &outcomes {
                        for line in e.audit_stream().registry(o, now_ms as f64 / 1000.0) {
                            a.emit_out_of_request(line);
                        }
                    }
                }
            }
        }
    }
}

impl Root {
    fn build(&self, cfg: Config) -> Result<Engine, Vec<String>> {
        let on_envoy = host_is_envoy();
        let use_host = match cfg.signature_backend {
            BackendChoice::Pure => false,
            BackendChoice::Auto => on_envoy,
            BackendChoice::Host if on_envoy => true,
            BackendChoice::Host => {
                return Err(vec!["$.signature_backend: \"host\" needs Envoy's verify_signature; this host is not Envoy (use \"pure\" or \"auto\")".into()]);
            }
        };
        let backend: Box<dyn SignatureBackend> = if use_host {
            let host = HostCrypto::new(EnvoyForeign);
            let mut problems = Vec::new();
            for (i, issuer) in cfg.issuers.iter().enumerate() {
                for (j, key) in issuer.keys.iter().enumerate() {
                    if let Err(e) = host.self_test(key) {
                        problems.push(format!("$.issuers[{i}].jwks.keys[{j}]: {e}"));
                    }
                }
            }
            if !problems.is_empty() {
                return Err(problems);
            }
            Box::new(host)
        } else {
            Box::new(PureRust)
        };
        let keys: usize = cfg.issuers.iter().map(|i| i.keys.len()).sum();
        log(
            LogLevel::Info,
            &format!(
                "agent-iam {} configured: {} issuer(s), {keys} key(s); signatures ES256={} RS256={} EdDSA={}; host={}; cache={} entries/worker; build commit={} features={} id={}",
                crate::VERSION,
                cfg.issuers.len(),
                backend.name_for(Alg::Es256),
                backend.name_for(Alg::Rs256),
                backend.name_for(Alg::EdDsa),
                if on_envoy { "envoy" } else { "unknown" },
                cfg.cache_entries,
                env!("AGENT_IAM_COMMIT"),
                env!("AGENT_IAM_FEATURES"),
                env!("AGENT_IAM_BUILD_ID"),
            ),
        );
        Ok(Engine::new(cfg, backend, DecisionIds::from_entropy()))
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("agent-iam: cannot read plugin configuration: {e:?}"),
                );
                return false;
            }
        };
        let built = Config::from_json(&bytes)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|cfg| self.build(cfg));
        match built {
            Ok(mut engine) => {
                engine.set_client_source(source_address);
                self.feed = engine
                    .config
                    .feed
                    .clone()
                    .map(|cfg| Rc::new(RefCell::new(Feed::new(cfg))));
                if let Some(now) = now_seconds() {
                    engine.start_feed_clock(now);
                }
                self.revocation = engine.config.revocation.as_ref().map(|r| {
                    Rc::new(RefCell::new(RevocationFeed::new(
                        r,
                        engine.config.max_token_lifetime_s,
                        engine.config.clock_skew_s,
                    )))
                });
                self.jwks = engine
                    .config
                    .issuers
                    .iter()
                    .enumerate()
                    .filter_map(|(i, iss)| {
                        iss.remote
                            .clone()
                            .map(|u| Rc::new(RefCell::new(JwksFeed::new(i, iss, u))))
                    })
                    .collect();
                let audit = Audit::new(&engine.config.audit);
                let mut period = Some(audit.tick_period(engine.config.audit.checkpoint_s));
                if !self.jwks.is_empty() {
                    self.jwks_age_gauge = hostcalls::define_metric(
                        proxy_wasm::types::MetricType::Gauge,
                        "agent_iam.jwks.age_ms",
                    )
                    .ok();
                }
                self.audit = Some(Rc::new(RefCell::new(audit)));
                for j in &self.jwks {
                    if let Ok(mut j) = j.try_borrow_mut() {
                        j.sync(&mut engine);
                        period = Some(std::time::Duration::from_millis(100));
                    }
                }
                if let Some(feed) = &self.feed {
                    if let Ok(f) = feed.try_borrow() {
                        f.sync(&mut engine);
                        period = Some(f.tick_period());
                    }
                }
                if let Some(rev) = &self.revocation {
                    if let Ok(r) = rev.try_borrow() {
                        r.sync(&mut engine);
                        let p = r.tick_period();
                        period = Some(period.map_or(p, |q| q.min(p)));
                    }
                }
                // Tick often: the shared-data lease keeps polls one interval apart, and a
                // fresh Envoy polls within one tick instead of one interval.
                if let Some(p) = period.map(|p| p.min(std::time::Duration::from_millis(100))) {
                    if hostcalls::set_tick_period(p).is_err() {
                        log(LogLevel::Error, "agent-iam: cannot start the poll timer");
                        return false;
                    }
                }
                self.engine = Some(Rc::new(RefCell::new(engine)));
                true
            }
            Err(problems) => {
                for p in &problems {
                    log(
                        LogLevel::Error,
                        &format!("agent-iam: invalid plugin configuration: {p}"),
                    );
                }
                log(
                    LogLevel::Error,
                    &format!(
                        "agent-iam: configuration rejected ({} problem(s))",
                        problems.len()
                    ),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(now_ms) = now_seconds().map(|n| (n * 1000.0) as u64) else {
            return;
        };
        if let Some(feed) = self.feed.as_ref() {
            if let Ok(mut f) = feed.try_borrow_mut() {
                f.on_tick(now_ms);
            }
        }
        if let (Some(a), Some(e)) = (self.audit.as_ref(), self.engine.as_ref()) {
            if let (Ok(mut a), Ok(mut e)) = (a.try_borrow_mut(), e.try_borrow_mut()) {
                a.on_tick(&mut e, now_ms);
            }
        }
        if let Some(rev) = self.revocation.as_ref() {
            if let Ok(mut r) = rev.try_borrow_mut() {
                r.on_tick(now_ms);
            }
        }
        let mut jwks_age = None;
        for j in &self.jwks {
            if let Ok(mut j) = j.try_borrow_mut() {
                j.on_tick(now_ms);
                jwks_age = jwks_age.max(j.age_ms(now_ms));
            }
        }
        if let (Some(g), Some(age)) = (self.jwks_age_gauge, jwks_age) {
            let _ = hostcalls::record_metric(g, age);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            audit: self.audit.clone(),
            engine: self.engine.clone(),
            feed: self.feed.clone(),
            revocation: self.revocation.clone(),
            jwks: self.jwks.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    audit: Option<SharedAudit>,
    engine: Option<Rc<RefCell<Engine>>>,
    feed: Option<SharedFeed>,
    revocation: Option<SharedRevocation>,
    jwks: Vec<SharedJwks>,
}

impl Context for Http {}

/// The downstream peer's address as Envoy reports it (`source.address`, `ip:port`).
fn source_address() -> Option<String> {
    match hostcalls::get_property(vec!["source", "address"]) {
        Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
        _ => None,
    }
}

fn now_seconds() -> Option<f64> {
    let t = hostcalls::get_current_time().ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// Fail closed outside the pipeline (host errors): the same response shape as any deny.
fn deny(reason: Reason, decision_id: &str) -> Action {
    send_deny(&Decision::denied(decision_id.to_owned(), reason))
}

fn send_deny(d: &Decision) -> Action {
    let body = d.deny_body();
    let www = d.www_authenticate().unwrap_or_default();
    let headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("www-authenticate", www.as_str()),
    ];
    if hostcalls::send_http_response(u32::from(d.status()), headers, Some(body.as_bytes())).is_err()
    {
        log(
            LogLevel::Error,
            "agent-iam: send_http_response failed; resetting the stream",
        );
        let _ = hostcalls::reset_http_request();
    }
    Action::Pause
}

/// What one read of the request's header map yields (one host call: every header read
/// separately cost ~2 µs in Envoy, a host call plus an allocation call back into the VM).
struct Incoming {
    req: Request,
    request_id: Option<String>,
    /// Client-sent headers the filter or its policy may set (names as sent): all removed.
    strip: Vec<String>,
}

impl Http {
    fn request(&self, engine: &Engine) -> Result<Incoming, ()> {
        let all = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|_| ())?;
        let mut strip = Vec::new();
        let mut req = Request {
            client: None,
            method: String::new(),
            path: String::new(),
            host: String::new(),
            authorization: Vec::new(),
            headers: Vec::new(),
        };
        let mut request_id = None;
        let mut authorization: Option<Vec<u8>> = None;
        let with_headers = engine.wants_headers();
        for (name, value) in all {
            let text = || String::from_utf8_lossy(&value).into_owned();
            match name.as_str() {
                ":method" => req.method = text(),
                ":path" => req.path = text(),
                ":authority" => req.host = text(),
                _ if name.eq_ignore_ascii_case("authorization") => {
                    // One value, as the single-header read reported it: repeated headers
                    // joined with ",", which never parses as a token.
                    match authorization.as_mut() {
                        Some(a) => {
                            a.push(b',');
                            a.extend_from_slice(&value);
                        }
                        None => authorization = Some(value),
                    }
                }
                _ if engine.config.is_filter_header(&name) => {
                    if !strip.contains(&name) {
                        strip.push(name);
                    }
                }
                _ => {
                    if request_id.is_none() && name.eq_ignore_ascii_case("x-request-id") {
                        request_id = Some(text());
                    }
                    if with_headers && !name.starts_with(':') {
                        let value = text();
                        req.headers.push((name.to_ascii_lowercase(), value));
                    }
                }
            }
        }
        req.authorization.extend(authorization);
        Ok(Incoming {
            req,
            request_id,
            strip,
        })
    }

    /// Removes every client copy of the filter's headers (allow and deny alike); on allow,
    /// sends the canonical target upstream and adds the filter's own headers. A host
    /// failure turns the decision into an internal-error deny.
    fn headers(&self, engine: &Engine, d: &mut Decision, strip: &[String]) {
        let mut ok = strip
            .iter()
            .all(|name| hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok());
        if ok && d.allowed() {
            ok = !(engine.config.strip_authorization
                && hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization")
                    .is_err())
                && d.rewrite.as_ref().is_none_or(|target| {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(target))
                        .is_ok()
                })
                && d.upstream_headers(&engine.config.headers)
                    .iter()
                    .all(|(name, value)| {
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
                            .is_ok()
                    });
        }
        if !ok {
            d.reason = Some(Reason::InternalError);
            d.policy_status = None;
        }
    }

    /// Audits the decision (events, metrics), then answers: continue or the deny response.
    fn finish(
        &self,
        engine: &mut Engine,
        d: &Decision,
        started: Instant,
        now: f64,
        request_id: Option<String>,
    ) -> Action {
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let ctx = EventContext {
            now,
            latency_us,
            request_id: request_id.as_deref(),
        };
        let lines = engine.audit(d, &ctx);
        if let Some(mut a) = self.audit.as_ref().and_then(|a| a.try_borrow_mut().ok()) {
            a.count(d, latency_us);
            a.emit_request(lines);
        }
        if d.allowed() {
            Action::Continue
        } else {
            send_deny(d)
        }
    }

    /// TEST-ONLY: `x-agent-iam-test-stages: N` runs each stage of this callback N times
    /// and answers `<stage>=<ns per run>` lines: where a request's time inside the filter
    /// goes (the rest of the filter's cost is Envoy calling into the VM).
    #[cfg(feature = "test-hooks")]
    fn stage_bench(&self, engine: &mut Engine, req: &Request, now: f64) -> Option<Action> {
        let raw =
            hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, "x-agent-iam-test-stages")
                .ok()??;
        let n: u32 = String::from_utf8_lossy(&raw).trim().parse().ok()?;
        let n = n.clamp(1, 100_000);
        let mut body = String::new();
        let mut lap = |name: &str, t: Instant| {
            let ns = t.elapsed().as_nanos() / u128::from(n);
            body.push_str(&format!("{name}={ns}\n"));
        };
        let t = Instant::now();
        for _ in 0..n {
            let _ = now_seconds();
            let _ = Instant::now();
        }
        lap("clock", t);
        let t = Instant::now();
        let mut strip = Vec::new();
        for _ in 0..n {
            if let Ok(i) = self.request(engine) {
                strip = i.strip;
            }
        }
        lap("read_request", t);
        let t = Instant::now();
        for _ in 0..n {
            if let Some(feed) = self.feed.as_ref().and_then(|f| f.try_borrow().ok()) {
                feed.sync(engine);
            }
            if let Some(rev) = self.revocation.as_ref().and_then(|r| r.try_borrow().ok()) {
                rev.sync(engine);
            }
            for j in &self.jwks {
                if let Ok(mut j) = j.try_borrow_mut() {
                    j.sync(engine);
                }
            }
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
        let t = Instant::now();
        for _ in 0..n {
            let _ = crate::token::verify_token(
                token,
                &engine.config.token_rules(),
                engine.backend(),
                None,
                now,
            );
        }
        lap("verify_uncached", t);
        if let Ok(jws) = crate::token::parse_compact(token, engine.config.max_token_bytes) {
            if let Some(key) = engine
                .config
                .issuers
                .iter()
                .flat_map(|i| i.keys.iter())
                .find(|k| k.kid == jws.kid)
            {
                let t = Instant::now();
                for _ in 0..n {
                    let _ = crate::token::check_signature(&jws, key, engine.backend());
                }
                lap("signature_only", t);
            }
        }
        let t = Instant::now();
        for _ in 0..n {
            let _ = engine.evaluate(req, now);
        }
        lap("evaluate", t);
        let mut d = engine.evaluate(req, now);
        let t = Instant::now();
        for _ in 0..n {
            self.headers(engine, &mut d, &strip);
        }
        lap("identity_headers", t);
        let ctx = EventContext {
            now,
            latency_us: 1,
            request_id: None,
        };
        let t = Instant::now();
        for _ in 0..n {
            let _ = engine.audit(&d, &ctx);
        }
        lap("audit_build", t);
        let t = Instant::now();
        for _ in 0..n {
            let lines = engine.audit(&d, &ctx);
            if let Some(mut a) = self.audit.as_ref().and_then(|a| a.try_borrow_mut().ok()) {
                a.count(&d, 1);
                a.emit_request(lines);
            }
        }
        lap("audit_build_emit_count", t);
        let _ = hostcalls::send_http_response(200, vec![], Some(body.as_bytes()));
        Some(Action::Pause)
    }

    /// A deny decided outside the pipeline (host failures), audited like any other.
    /// The identity headers are all removed: which ones the client sent is unknown here.
    fn host_failure(&self, engine: &mut Engine, started: Instant, now: f64) -> Action {
        let mut d = Decision::denied(engine.next_decision_id(), Reason::InternalError);
        let identity: Vec<String> = engine
            .config
            .headers
            .all()
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        self.headers(engine, &mut d, &identity);
        self.finish(engine, &d, started, now, None)
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let started = Instant::now();
        let Some(engine) = self.engine.as_ref() else {
            return deny(Reason::InternalError, "unconfigured");
        };
        #[cfg(feature = "test-hooks")]
        if let Some(action) = test_hooks::handle() {
            return action;
        }
        let Ok(mut engine) = engine.try_borrow_mut() else {
            return deny(Reason::InternalError, "busy");
        };
        // Without the host clock the event's time is the last one this worker saw.
        let Some(now) = now_seconds() else {
            log(LogLevel::Error, "agent-iam: cannot read the host clock");
            let last = engine.audit_stream().last_event_at();
            return self.host_failure(&mut engine, started, last);
        };
        let Ok(incoming) = self.request(&engine) else {
            log(
                LogLevel::Error,
                "agent-iam: cannot read the request headers",
            );
            return self.host_failure(&mut engine, started, now);
        };
        let Incoming {
            req,
            request_id,
            strip,
        } = incoming;
        if let Some(feed) = self.feed.as_ref().and_then(|f| f.try_borrow().ok()) {
            feed.sync(&mut engine);
        }
        if let Some(rev) = self.revocation.as_ref().and_then(|r| r.try_borrow().ok()) {
            rev.sync(&mut engine);
        }
        for j in &self.jwks {
            if let Ok(mut j) = j.try_borrow_mut() {
                j.sync(&mut engine);
            }
        }
        #[cfg(feature = "test-hooks")]
        if let Some(action) = test_hooks::bench(&mut engine, &req, now) {
            return action;
        }
        #[cfg(feature = "test-hooks")]
        if let Some(action) = self.stage_bench(&mut engine, &req, now) {
            return action;
        }
        #[cfg(feature = "test-hooks")]
        if let Some(action) = test_hooks::audit_bench(&mut engine, &req, now) {
            return action;
        }
        let mut d = engine.evaluate(&req, now);
        if let Some(i) = engine.take_kid_miss() {
            if let Some(j) = self
                .jwks
                .iter()
                .find_map(|j| j.try_borrow().ok().filter(|j| j.index == i))
            {
                j.want_refetch((now * 1000.0) as u64);
            }
        }
        self.headers(&engine, &mut d, &strip);
        self.finish(&mut engine, &d, started, now, request_id)
    }
}
