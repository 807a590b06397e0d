//! One worker: everything a filter VM does, behind the [`Host`] seam. The proxy-wasm
//! adapter (`src/host/`) forwards each host callback here (`on_configure` →
//! [`Worker::configure`], a request's headers → [`Worker::on_request`], the timer →
//! [`Worker::on_tick`], a call answer → [`Worker::on_call_response`], shutdown →
//! [`Worker::on_done`]); the CLI and the playground decide through [`Worker::check`].
//! Native tests drive the same code through [`local::LocalHost`].
//!
//! A request's sequence: read the headers (one host call), bring the engine up to the
//! published registry, revocation state and keys, decide, strip the filter's headers and
//! set its own, audit (events and metrics), then continue or answer the deny.

use std::rc::Rc;
use std::time::Duration;

use crate::audit::{AuditLine, EventContext};
use crate::config::{BackendChoice, Config};
use crate::crypto::{ForeignCall, HostCrypto, PureRust, SignatureBackend};
use crate::keys::Alg;
use crate::pipeline::{Begun, Decision, DecisionIds, Engine, Request};
use crate::reason::Reason;

mod audit;
mod exchange;
pub mod host;
mod jwks;
#[cfg(tools)]
pub mod local;
mod poll;
mod registry;
mod report;
mod revocation;
#[cfg(feature = "test-hooks")]
mod test_hooks;
#[cfg(test)]
mod tests;

pub use audit::AuditOut;
pub use exchange::Exchange;
use host::{log, Metric};
pub use host::{Host, Level, MetricKind};
use jwks::JwksFeed;
use registry::RegistryFeed;
use report::ReportOut;
use revocation::RevocationFeed;

/// What the host does with the request after [`Worker::on_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send it upstream (with the worker's header edits).
    Continue,
    /// The worker answered it (a deny): stop processing.
    Answered,
    /// Hold the headers and buffer the body: the decision needs the whole body (the
    /// request's, or the list response's the worker filters).
    NeedBody,
}

/// The host's foreign function for signatures, shared by the worker's backends.
struct Foreign(Rc<dyn ForeignCall>);

impl ForeignCall for Foreign {
    fn call(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.0.call(name, args)
    }
}

/// One decision and the audit events it wrote (the CLI and the playground show both).
pub struct Checked {
    pub decision: Decision,
    pub events: Vec<AuditLine>,
}

/// The filter's own time on a request so far: earlier callbacks' and this one's.
#[derive(Debug, Clone, Copy)]
struct Spent {
    since: std::time::Instant,
    before: Duration,
}

impl Spent {
    fn since(started: std::time::Instant) -> Spent {
        Spent {
            since: started,
            before: Duration::ZERO,
        }
    }
}

/// What one read of the request's header map yields.
struct Incoming {
    req: Request,
    request_id: Option<String>,
    /// The client's `traceparent`, when well-formed (W3C Trace Context).
    traceparent: Option<String>,
    /// Client-sent headers the filter or its policy may set (names as sent): all removed.
    strip: Vec<String>,
    /// `content-length`, when the client sent exactly one that parses.
    content_length: Option<u64>,
}

pub struct Worker {
    engine: Engine,
    registry: Option<RegistryFeed>,
    revocation: Option<RevocationFeed>,
    jwks: Vec<JwksFeed>,
    audit: AuditOut,
    /// Quarantine reports to the Shared Signals transmitter (`quarantine.report`).
    reports: Option<ReportOut>,
    jwks_age: Metric,
    tick: Duration,
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    foreign: Option<Rc<dyn ForeignCall>>,
}

/// Envoy exposes its node as `xds.node` (an `envoy.config.core.v3.Node`): a running
/// server sets `user_agent_name` (field 6) to "envoy"; `--mode validate` only carries
/// `user_agent_build_version` with Envoy's build metadata (`revision.sha`, `ssl.version`).
/// Reading a property is safe on every host (unknown properties answer "not found"),
/// unlike calling an unknown foreign function, which traps on Kong. So: positively
/// identified Envoy → host crypto; anything else → pure Rust.
fn host_is_envoy(host: &dyn Host) -> bool {
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    host.property(&["xds", "node"]).is_some_and(|node| {
        contains(&node, b"\x32\x05envoy")
            || (contains(&node, b"revision.sha") && contains(&node, b"ssl.version"))
    })
}

/// The signature backend `cfg` asks for on this host (host crypto: each key self-tested).
fn backend(
    host: &dyn Host,
    cfg: &Config,
    foreign: Option<&Rc<dyn ForeignCall>>,
) -> Result<(Box<dyn SignatureBackend>, bool), Vec<String>> {
    // A host with crypto of its own (the dynamic module, inside Envoy) needs no probe.
    if let Some(native) = host.native_signatures() {
        if cfg.signature_backend == BackendChoice::Pure {
            return Ok((Box::new(PureRust), true));
        }
        return Ok((native, true));
    }
    let on_envoy = foreign.is_some() && host_is_envoy(host);
    let use_host = match cfg.signature_backend {
        BackendChoice::Pure => false,
        BackendChoice::Auto => on_envoy,
        BackendChoice::Host if on_envoy => true,
        BackendChoice::Host => {
            return Err(vec!["$.signature_backend: \"host\" needs Envoy's verify_signature; this host is not Envoy (use \"pure\" or \"auto\")".into()]);
        }
    };
    let Some(foreign) = foreign.filter(|_| use_host) else {
        return Ok((Box::new(PureRust), on_envoy));
    };
    let crypto = HostCrypto::new(Foreign(foreign.clone()));
    if let Err(e) = crypto.probe() {
        if cfg.signature_backend == BackendChoice::Host {
            return Err(vec![format!("$.signature_backend: \"host\" needs the host's verify_signature, which is unavailable ({e}); use \"pure\" or \"auto\"")]);
        }
        log(
            host,
            Level::Warn,
            &format!("agent-iam: the host's verify_signature is unavailable ({e}); signatures use pure Rust"),
        );
        return Ok((Box::new(PureRust), on_envoy));
    }
    let mut problems = Vec::new();
    for (i, issuer) in cfg.issuers.iter().enumerate() {
        for (j, key) in issuer.keys.iter().enumerate() {
            if let Err(e) = crypto.self_test(key) {
                problems.push(format!("$.issuers[{i}].jwks.keys[{j}]: {e}"));
            }
        }
    }
    if problems.is_empty() {
        Ok((Box::new(crypto), on_envoy))
    } else {
        Err(problems)
    }
}

/// The environment variable the loader sets to the module's SHA-256 (a module cannot hash
/// its own bytes).
pub const MODULE_SHA256_ENV: &str = "AGENT_IAM_MODULE_SHA256";

/// What the route the request is on says in `filter_metadata.agent_iam`: `None` when it has
/// no such metadata; otherwise the bytes of its `route` (empty when it has none, is empty,
/// null or cannot be read: no route is named so, the request is refused).
fn envoy_route(host: &dyn Host) -> Option<Vec<u8>> {
    let section = ROUTE_METADATA.get(..4).unwrap_or_default();
    host.property(section)?;
    Some(host.property(&ROUTE_METADATA).unwrap_or_default())
}

/// Where Envoy reports the route metadata `filter_metadata.agent_iam.route` of the route
/// the request is on (a string leaf: its bytes; other types never name a route).
pub const ROUTE_METADATA: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "agent_iam",
    "route",
];

/// The module's SHA-256 as the start-up log line shows it: the loader's value when it is
/// one (64 hex digits, shown in lower case), else what to do about it.
fn module_sha256(host: &dyn Host) -> String {
    match host.env(MODULE_SHA256_ENV) {
        None => format!("unknown (set {MODULE_SHA256_ENV})"),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            v.to_ascii_lowercase()
        }
        Some(_) => format!("invalid ({MODULE_SHA256_ENV} is not 64 hex digits)"),
    }
}

/// A gauge value in seconds (Prometheus's unit) from milliseconds, rounded up: a feed
/// 200 ms old reads 1, never 0.
pub(crate) fn seconds_up(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// The gauge naming this build (value 1): `agent_iam.build_info.version.<version>.commit.<commit>`
/// (the shipped `stats_tags` make both labels), the version's dots as underscores (a stat
/// name's dots separate its parts).
pub fn build_info_metric(version: &str, commit: &str) -> String {
    format!(
        "agent_iam.build_info.version.{}.commit.{}",
        version.replace('.', "_"),
        commit.replace('.', "_")
    )
}

impl Worker {
    /// Builds a worker from the plugin configuration; `foreign` is the host's foreign
    /// function call, where it has one (Envoy's `verify_signature`). Every problem is
    /// logged and returned.
    pub fn configure(
        host: &dyn Host,
        bytes: &[u8],
        foreign: Option<Rc<dyn ForeignCall>>,
    ) -> Result<Worker, Vec<String>> {
        // Which build this VM runs, whatever its configuration: defined once per VM (every
        // VM names the same gauge).
        Metric::gauge(
            host,
            &build_info_metric(crate::VERSION, env!("AGENT_IAM_COMMIT")),
        )
        .record(host, 1);
        let built = Config::from_json(bytes)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|cfg| {
                let (backend, on_envoy) = backend(host, &cfg, foreign.as_ref())?;
                Ok((cfg, backend, on_envoy))
            });
        let (cfg, backend, on_envoy) = match built {
            Ok(x) => x,
            Err(problems) => {
                for p in &problems {
                    log(
                        host,
                        Level::Error,
                        &format!("agent-iam: invalid plugin configuration: {p}"),
                    );
                }
                log(
                    host,
                    Level::Error,
                    &format!(
                        "agent-iam: configuration rejected ({} problem(s))",
                        problems.len()
                    ),
                );
                return Err(problems);
            }
        };
        let keys: usize = cfg.issuers.iter().map(|i| i.keys.len()).sum();
        log(
            host,
            Level::Info,
            &format!(
                "agent-iam {} configured: {} issuer(s), {keys} key(s); signatures ES256={} RS256={} EdDSA={}; host={}; cache={} entries/worker; build commit={} features={} id={} module_sha256={}",
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
                module_sha256(host),
            ),
        );
        if let Some(p) = &cfg.policy {
            let cache = match p.cache_key_paths() {
                Some(key) => format!("keyed on {} input member(s)", key.len()),
                None => format!("off: {}", p.reuse_off.as_deref().unwrap_or_default()),
            };
            log(
                host,
                Level::Info,
                &format!(
                    "agent-iam policy {} on the {}; decision cache {cache}",
                    p.revision,
                    p.engine()
                ),
            );
        }
        Ok(Worker::new(
            host,
            cfg,
            backend,
            DecisionIds::from_entropy(),
            foreign,
        ))
    }

    /// A worker for `cfg` deciding with `backend`.
    pub fn new(
        host: &dyn Host,
        cfg: Config,
        backend: Box<dyn SignatureBackend>,
        ids: DecisionIds,
        foreign: Option<Rc<dyn ForeignCall>>,
    ) -> Worker {
        let mut engine = Engine::new(cfg, backend, ids);
        if let Some(now) = host.now() {
            engine.start_feed_clock(now);
        }
        if let Err(reason) = engine.prepare_limits(host) {
            // Every limited request is then refused (`limit.unavailable`): fail closed.
            log(
                host,
                Level::Error,
                &format!(
                    "agent-iam: cannot create the limits' counters in shared data ({})",
                    reason.as_str()
                ),
            );
        }
        if let Err(reason) = engine.prepare_replay(host) {
            // Every DPoP proof is then refused (`dpop.replay_unavailable`): fail closed.
            log(
                host,
                Level::Error,
                &format!(
                    "agent-iam: cannot create the DPoP replay cache in shared data ({})",
                    reason.as_str()
                ),
            );
        }
        let cfg = engine.config();
        let registry = cfg.feed.as_ref().map(|f| RegistryFeed::new(host, f));
        let revocation = cfg
            .revocation
            .as_ref()
            .map(|r| RevocationFeed::new(host, r, cfg.max_token_lifetime_s, cfg.clock_skew_s));
        let jwks: Vec<JwksFeed> = cfg
            .issuers
            .iter()
            .enumerate()
            .filter_map(|(i, iss)| iss.remote.as_ref().map(|u| JwksFeed::new(i, iss, u)))
            .collect();
        let audit = AuditOut::new(host, &cfg.audit);
        let reports = cfg
            .quarantine_report
            .as_ref()
            .map(|r| ReportOut::new(host, r));
        // Tick often: the shared-data lease keeps polls one interval apart, and a fresh
        // host polls within one tick instead of one interval.
        let mut tick = audit.tick_period(cfg.audit.checkpoint_s);
        for p in registry.iter().map(RegistryFeed::tick_period) {
            tick = tick.min(p);
        }
        for p in revocation.iter().map(RevocationFeed::tick_period) {
            tick = tick.min(p);
        }
        let tick = tick.min(Duration::from_millis(100));
        let jwks_age = if jwks.is_empty() {
            Metric::default()
        } else {
            Metric::gauge(host, "agent_iam.jwks.age_seconds")
        };
        let mut worker = Worker {
            engine,
            registry,
            revocation,
            jwks,
            audit,
            reports,
            jwks_age,
            tick,
            foreign,
        };
        worker.sync(host);
        worker
    }

    /// How often the host must call [`Worker::on_tick`].
    pub fn tick_period(&self) -> Duration {
        self.tick
    }

    /// The engine (the CLI reads its configuration; tests inspect it).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, to change what it keeps of each decision (the authoring tools).
    #[cfg(tools)]
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// How the host reports a request's client address (read only when `verify_budget`
    /// needs it).
    pub fn set_client_source(&mut self, source: fn() -> Option<String>) {
        self.engine.set_client_source(source);
    }

    /// How the host reports a request's client certificate (read only for
    /// certificate-bound tokens).
    pub fn set_connection_source(&mut self, source: fn() -> crate::decision::PeerCertificate) {
        self.engine.set_connection_source(source);
    }

    /// Brings the engine up to what the pollers published (cheap when nothing changed).
    fn sync(&mut self, host: &dyn Host) {
        if let Some(f) = &self.registry {
            f.sync(host, &mut self.engine);
        }
        if let Some(r) = &self.revocation {
            r.sync(host, &mut self.engine);
        }
        for j in &mut self.jwks {
            j.sync(host, &mut self.engine);
        }
    }

    /// Decides `req` at `now` and builds its audit events, without a host: what the CLI
    /// and the playground show. The filter's sequence is [`Worker::on_request`].
    pub fn check(&mut self, req: &Request, now: f64, latency_us: impl FnOnce() -> u64) -> Checked {
        let decision = match self
            .engine
            .protected_resource_metadata(&req.method, &req.path)
        {
            Some(_) => self.engine.metadata_decision(req),
            None => self.engine.evaluate(req, now),
        };
        let traceparent = req
            .headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .and_then(|(_, v)| crate::decision::traceparent(v.as_bytes()));
        let ctx = EventContext {
            now,
            latency_us: latency_us(),
            request_id: req.request_id(),
            traceparent: traceparent.as_deref(),
        };
        let events = self.engine.audit(&decision, &ctx);
        Checked { decision, events }
    }

    /// For tools that decide without the revocation feed (the playground): an empty
    /// revocation state, confirmed at `now`.
    pub fn assume_no_revocations(&mut self, now: f64) {
        if self.engine.config().revocation.is_some() {
            let empty = crate::revocation::RevocationState::default();
            self.engine.set_revocation(empty, 1, now);
        }
    }

    /// Ends this worker's audit stream (its final checkpoint), without a host.
    pub fn finish(&mut self, now: f64) -> Option<AuditLine> {
        self.engine.audit_stream().finish(now, self.audit.dropped())
    }

    /// The host delivers a request's headers (`end_of_stream`: it has no body).
    pub fn on_request(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        end_of_stream: bool,
    ) -> Outcome {
        let started = std::time::Instant::now();
        *ex = Exchange::default();
        #[cfg(feature = "test-hooks")]
        if let Some(outcome) = test_hooks::handle(host, self.foreign.as_ref()) {
            return outcome;
        }
        // Without the host clock the event's time is the last one this worker saw.
        let Some(now) = host.now() else {
            log(host, Level::Error, "agent-iam: cannot read the host clock");
            let last = self.engine.audit_stream().last_event_at();
            return self.host_failure(host, started, last);
        };
        let Ok(incoming) = self.read(host) else {
            log(
                host,
                Level::Error,
                "agent-iam: cannot read the request headers",
            );
            return self.host_failure(host, started, now);
        };
        self.sync(host);
        #[cfg(feature = "test-hooks")]
        if let Some(outcome) = test_hooks::benches(self, host, &incoming.req, &incoming.strip, now)
        {
            return outcome;
        }
        if let Some(doc) = self
            .engine
            .protected_resource_metadata(&incoming.req.method, &incoming.req.path)
        {
            return self.answer_metadata(host, &incoming, &doc, started, now);
        }
        let begun = self.engine.begin_shared(&incoming.req, now, Some(host));
        if let Some(i) = self.engine.take_kid_miss() {
            if let Some(j) = self.jwks.iter().find(|j| j.index == i) {
                j.want_refetch(host, (now * 1000.0) as u64);
            }
        }
        match begun {
            Begun::Decided(d) => self.conclude(host, ex, d, &incoming, Spent::since(started), now),
            Begun::NeedBody(wait) => {
                let max = wait.max_body();
                let declared = incoming.content_length.unwrap_or(0);
                if declared > max as u64 {
                    let d = wait.refuse(
                        Reason::McpBodyTooLarge,
                        &format!("content-length {declared}, the route allows {max}"),
                    );
                    return self.conclude(host, ex, d, &incoming, Spent::since(started), now);
                }
                if end_of_stream {
                    let d = self.engine.with_body_shared(wait, &[], now, Some(host));
                    return self.conclude(host, ex, d, &incoming, Spent::since(started), now);
                }
                ex.wait(Box::new(wait), incoming, started.elapsed(), now);
                Outcome::NeedBody
            }
        }
    }

    /// Edits the headers for decision `d`, audits it and answers; an allowed MCP list
    /// call leaves `ex` ready to filter the response.
    fn conclude(
        &mut self,
        host: &dyn Host,
        ex: &mut Exchange,
        mut d: Decision,
        incoming: &Incoming,
        spent: Spent,
        now: f64,
    ) -> Outcome {
        self.edit_headers(host, &mut d, &incoming.strip);
        let list = self.engine.list_filter(&d);
        if list.is_some() && host.remove_request_header("accept-encoding").is_err() {
            // The list must come back uncompressed for the filter to read it.
            d.reason = Some(Reason::InternalError);
        }
        let spent = spent.before + spent.since.elapsed();
        let ids = (incoming.request_id.clone(), incoming.traceparent.clone());
        let outcome = self.finish_request(host, &d, spent, now, ids);
        if outcome == Outcome::Continue {
            if let Some(f) = list {
                ex.filter_response(f, d);
            }
        }
        outcome
    }

    /// Reads the request's header map (one host call: every header read separately cost
    /// ~2 µs in Envoy, a host call plus an allocation call back into the VM).
    fn read(&self, host: &dyn Host) -> Result<Incoming, ()> {
        let all = host.request_headers().map_err(|_| ())?;
        let mut strip = Vec::new();
        let mut req = Request {
            client: None,
            method: String::new(),
            path: String::new(),
            host: String::new(),
            authorization: Vec::new(),
            headers: Vec::new(),
            body: None,
            dpop: Vec::new(),
            scheme: String::new(),
            forwarded_proto: None,
            peer_certificate: crate::decision::PeerCertificate::Unknown,
            envoy_route: None,
        };
        let mut request_id = None;
        let mut traceparent = None;
        let mut content_length: Option<Option<u64>> = None;
        let mut authorization: Option<Vec<u8>> = None;
        let with_headers = self.engine.wants_headers();
        let cfg = self.engine.config();
        for (name, value) in all {
            let text = || String::from_utf8_lossy(&value).into_owned();
            // Read whatever else becomes of them (a reserved prefix such as `x-` strips
            // them from the request, but the proof and Envoy's scheme still count).
            req.note_binding_header(&name, &value);
            match name.as_str() {
                ":method" => req.method = text(),
                ":path" => req.path = text(),
                ":authority" => req.host = text(),
                ":scheme" => req.scheme = text(),
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
                _ if cfg.is_filter_header(&name) => {
                    if !strip.contains(&name) {
                        strip.push(name);
                    }
                }
                _ => {
                    if name.eq_ignore_ascii_case("content-length") {
                        // Repeated: unknown (Envoy refuses differing copies itself).
                        content_length = Some(match content_length {
                            None => text().trim().parse().ok(),
                            Some(_) => None,
                        });
                    }
                    if request_id.is_none() && name.eq_ignore_ascii_case("x-request-id") {
                        request_id = Some(text());
                    }
                    if traceparent.is_none() && name.eq_ignore_ascii_case("traceparent") {
                        traceparent = crate::decision::traceparent(&value);
                    }
                    if with_headers.keeps(&name) {
                        let value = text();
                        req.headers.push((name.to_ascii_lowercase(), value));
                    }
                }
            }
        }
        req.authorization.extend(authorization);
        if cfg.route_metadata {
            req.envoy_route = envoy_route(host);
        }
        Ok(Incoming {
            req,
            request_id,
            traceparent,
            strip,
            content_length: content_length.flatten(),
        })
    }

    /// Removes every client copy of the filter's headers (allow and deny alike); on allow,
    /// sends the canonical target upstream and adds the filter's own headers. A host
    /// failure turns the decision into an internal-error deny.
    fn edit_headers(&self, host: &dyn Host, d: &mut Decision, strip: &[String]) {
        let cfg = self.engine.config();
        let mut ok = strip
            .iter()
            .all(|name| host.remove_request_header(name).is_ok());
        if ok && d.allowed() {
            ok = !(cfg.strip_authorization && host.remove_request_header("authorization").is_err())
                && d.rewrite
                    .as_ref()
                    .is_none_or(|target| host.set_request_header(":path", target).is_ok())
                && d.upstream_headers(&cfg.headers)
                    .iter()
                    .all(|(name, value)| host.set_request_header(name, value).is_ok());
        }
        if !ok {
            d.reason = Some(Reason::InternalError);
            d.policy_status = None;
        }
    }

    /// Audits the decision (events, metrics), then answers: continue or the deny response.
    fn finish_request(
        &mut self,
        host: &dyn Host,
        d: &Decision,
        spent: Duration,
        now: f64,
        (request_id, traceparent): (Option<String>, Option<String>),
    ) -> Outcome {
        let latency_us = u64::try_from(spent.as_micros()).unwrap_or(u64::MAX);
        let ctx = EventContext {
            now,
            latency_us,
            request_id: request_id.as_deref(),
            traceparent: traceparent.as_deref(),
        };
        let lines = self.engine.audit(d, &ctx);
        self.audit.count(host, d, latency_us);
        self.audit.emit_request(host, lines);
        self.report_quarantine(host, d, now);
        if d.allowed() {
            Outcome::Continue
        } else {
            send_deny(
                host,
                d,
                self.engine.resource_metadata_url(),
                Some(self.engine.dpop_algs()),
                self.engine.retry_after(d),
            )
        }
    }

    /// A deny decided outside the pipeline (host failures), audited like any other.
    /// The identity headers are all removed: which ones the client sent is unknown here.
    fn host_failure(&mut self, host: &dyn Host, started: std::time::Instant, now: f64) -> Outcome {
        let mut d = Decision::denied(self.engine.next_decision_id(), Reason::InternalError);
        let identity: Vec<String> = self
            .engine
            .config()
            .headers
            .all()
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        self.edit_headers(host, &mut d, &identity);
        self.finish_request(host, &d, started.elapsed(), now, (None, None))
    }

    /// Queues the report of the quarantine `d` started, when reports are configured.
    pub(super) fn report_quarantine(&mut self, host: &dyn Host, d: &Decision, now: f64) {
        if let (Some(r), Some(q)) = (self.reports.as_mut(), d.quarantine.as_ref()) {
            r.push(host, q, &d.decision_id, now);
        }
    }

    /// The host's timer: polls, checkpoints, collector flushes, gauges.
    pub fn on_tick(&mut self, host: &dyn Host) {
        let Some(now_ms) = host.now().map(|n| (n * 1000.0) as u64) else {
            return;
        };
        if let Some(f) = self.registry.as_mut() {
            f.on_tick(host, now_ms);
        }
        self.audit.on_tick(host, &mut self.engine, now_ms);
        if let Some(r) = self.reports.as_mut() {
            r.on_tick(host, now_ms);
        }
        if let Some(r) = self.revocation.as_mut() {
            r.on_tick(host, now_ms);
        }
        let mut age = None;
        for j in &mut self.jwks {
            j.on_tick(host, now_ms);
            age = age.max(j.age_ms(host, now_ms));
        }
        if let Some(age) = age {
            self.jwks_age.record(host, seconds_up(age));
        }
    }

    /// An answer to one of the worker's calls (collector, revocation, JWKS, registry).
    pub fn on_call_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some(now_ms) = host.now().map(|n| (n * 1000.0) as u64) else {
            return;
        };
        let now = now_ms as f64 / 1000.0;
        if self.audit.on_response(host, token, now_ms) {
            return;
        }
        if let Some(r) = self.reports.as_mut() {
            if r.on_response(host, token, body_size, now_ms) {
                return;
            }
        }
        if let (Some(r), Some(t)) = (
            self.revocation.as_mut(),
            self.engine.config().revocation.as_ref(),
        ) {
            let backend = self.engine.backend();
            if let Some(outcomes) =
                r.on_response(host, token, body_size, now_ms, backend, &t.transmitter)
            {
                // Every SET the feed applied or refused goes to the audit stream.
                for o in &outcomes {
                    for line in self.engine.audit_stream().revocation(o, now) {
                        self.audit.emit_out_of_request(host, line);
                    }
                }
                return;
            }
        }
        for j in &mut self.jwks {
            if j.on_response(host, token, body_size, now_ms) {
                return;
            }
        }
        if let Some(f) = self.registry.as_mut() {
            if let Some(outcomes) = f.on_response(host, token, body_size, now_ms) {
                // Every registry answer the feed applied or refused goes to the audit stream.
                for o in &outcomes {
                    for line in self.engine.audit_stream().registry(o, now) {
                        self.audit.emit_out_of_request(host, line);
                    }
                }
            }
        }
    }

    /// The host shuts the worker down: the audit stream's final checkpoint.
    pub fn on_done(&mut self, host: &dyn Host) {
        if let Some(now_ms) = host.now().map(|n| (n * 1000.0) as u64) {
            self.audit.on_done(host, &mut self.engine, now_ms);
        }
    }
}

/// Answers a deny: the same response shape for every reason (a JSON-RPC error on MCP
/// routes).
fn send_deny(
    host: &dyn Host,
    d: &Decision,
    resource_metadata: Option<&str>,
    dpop_algs: Option<&str>,
    retry_after: Option<u64>,
) -> Outcome {
    let body = d.deny_body();
    let www = d
        .www_authenticate(resource_metadata, dpop_algs)
        .unwrap_or_default();
    let retry = retry_after.map(|s| s.to_string());
    let mut headers = vec![
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("www-authenticate", www.as_str()),
    ];
    if let Some(retry) = &retry {
        headers.push(("retry-after", retry.as_str()));
    }
    host::answer(host, d.status(), &headers, body.as_bytes());
    Outcome::Answered
}

/// Fails closed before a worker exists (no configuration): the same response shape as any
/// deny.
pub fn deny_unconfigured(host: &dyn Host, why: &str) -> Outcome {
    send_deny(
        host,
        &Decision::denied(why.to_owned(), Reason::InternalError),
        None,
        None,
        None,
    )
}
