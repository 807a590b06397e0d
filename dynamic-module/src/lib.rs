//! agent-iam as an Envoy dynamic module (`libagent_iam.so`): the same [`Worker`] the Wasm
//! filter runs, behind Envoy's native HTTP filter ABI instead of proxy-wasm.
//!
//! How the Wasm host's services map onto a native one:
//!
//! - **Workers**: one [`Worker`] per Envoy thread and filter configuration (as Wasm has one
//!   VM per worker thread), made from the configuration on the thread's first request. The
//!   main thread's worker is made when Envoy loads the configuration: a configuration it
//!   refuses is refused to Envoy, with every problem in Envoy's log.
//! - **Shared data** (leases, published feed records): one process-wide map behind a
//!   mutex, with proxy-wasm's compare-and-swap semantics.
//! - **Timer**: a thread of this module wakes the configuration's main-thread scheduler
//!   every 50 ms; there the main thread ticks every worker (each behind its own mutex,
//!   skipped for that round while it decides a request).
//! - **Calls** (registry, JWKS, revocation, collector): Envoy's HTTP callouts of the filter
//!   configuration, made on the main thread (a call a worker thread sends during a request
//!   is queued to it); each answer is delivered to the worker that sent it, on the main
//!   thread, as it arrives.
//! - **Metrics**: counted in the module and written to Envoy's stats on the main thread
//!   (Envoy's metric definitions are not shared-safe across threads), within 50 ms.
//! - **Panics** never cross into Envoy: every hook runs behind `catch_unwind` (the module
//!   is built with `panic = "unwind"`); a panic on a request denies it with a 500.
//!
//! Native code runs with Envoy's privileges: unlike the Wasm build, nothing sandboxes it.

// The C ABI: raw pointers from Envoy, and exported `#[no_mangle]` hooks. Every `unsafe`
// block states what Envoy guarantees.
#![allow(unsafe_code)]
// The exported hooks take Envoy's pointers by the ABI's contract; Envoy is their only caller.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod abi;
mod native;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use abi::*;
use agent_iam::decision::PeerCertificate;
use agent_iam::shared::{HostError, Memory, SharedData};
use agent_iam::worker::{deny_unconfigured, Exchange, Host, Level, MetricKind, Outcome, Worker};

/// How often the main thread wakes (metrics to Envoy, queued calls, its worker's tick).
const WAKE: Duration = Duration::from_millis(50);
const EV_WAKE: u64 = 1;
const EV_CALLS: u64 = 2;

/// The filter-state key of the audit event: the Wasm filter's key (Envoy prefixes a Wasm
/// filter's keys with `wasm.`), so one access-log format reads both builds.
const AUDIT_KEY: &[u8] = b"wasm.agent_iam.audit";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere held it; the data stays usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A raw Envoy pointer the module keeps across threads: Envoy documents which calls are
/// safe from which thread, and the module calls each only there.
#[derive(Clone, Copy)]
struct Ptr(*mut c_void);
// SAFETY: see the type's comment; the pointer is only dereferenced by Envoy.
unsafe impl Send for Ptr {}
// SAFETY: as above.
unsafe impl Sync for Ptr {}

fn log_raw(level: u32, msg: &str) {
    // SAFETY: the buffer is live for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(msg.as_bytes())) }
}

// ------------------------------------------------------------------ shared data

/// The process-wide store every worker shares, with proxy-wasm's CAS rules (the core's
/// in-memory implementation, behind a lock).
fn store() -> &'static Mutex<Memory> {
    static STORE: OnceLock<Mutex<Memory>> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(Memory::default()))
}

// ------------------------------------------------------------------ metrics

struct MetricSlot {
    kind: MetricKind,
    name: String,
    envoy: Option<usize>,
    value: i64,
    synced: i64,
    pending: Vec<u64>,
    refused: bool,
    /// For a series of one of [`FAMILIES`]: the family and this series' label values.
    series: Option<(usize, Vec<String>)>,
}

#[derive(Default)]
struct Metrics {
    slots: Vec<MetricSlot>,
    by_name: HashMap<String, u32>,
    /// Envoy's ids of [`FAMILIES`], defined with their labels when the configuration loads
    /// (Envoy refuses new metric definitions after that).
    families: Vec<Option<usize>>,
}

/// The counters the worker names per series (`<family>.<label>.<value>...`, one name per
/// label set): Envoy defines them once, with labels, and each series is a label set.
const FAMILIES: [(&str, &[&str]); 2] = [
    (
        "agent_iam.decisions_total",
        &["decision", "check", "reason", "route"],
    ),
    (
        "agent_iam.shadow_denied_total",
        &["check", "reason", "route"],
    ),
];

/// A series name of one of [`FAMILIES`] as (family, label values), e.g.
/// `agent_iam.decisions_total.decision.deny.check.token.reason.token.missing.route.none`.
fn family_series(name: &str) -> Option<(usize, Vec<String>)> {
    FAMILIES
        .iter()
        .enumerate()
        .find_map(|(i, (family, labels))| {
            let mut rest = name.strip_prefix(family)?;
            let mut values = Vec::with_capacity(labels.len());
            for (n, label) in labels.iter().enumerate() {
                rest = rest.strip_prefix(&format!(".{label}."))?;
                let end = match labels.get(n + 1) {
                    Some(next) => rest.find(&format!(".{next}."))?,
                    None => rest.len(),
                };
                values.push(rest.get(..end)?.to_owned());
                rest = rest.get(end..)?;
            }
            Some((i, values))
        })
}

// ------------------------------------------------------------------ calls

struct Call {
    token: u32,
    origin: usize,
    cluster: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: u64,
}

struct Answer {
    token: u32,
    status: Vec<u8>,
    body: Vec<u8>,
}

// ------------------------------------------------------------------ configuration

/// One filter configuration Envoy loaded.
struct Config {
    id: u64,
    envoy: Ptr,
    bytes: Vec<u8>,
    scheduler: Ptr,
    stop: AtomicBool,
    timer: Mutex<Option<JoinHandle<()>>>,
    metrics: Mutex<Metrics>,
    outbox: Mutex<Vec<Call>>,
    in_flight: Mutex<HashMap<u64, (u32, usize)>>,
    /// Every thread's worker, by index (the main thread's first).
    workers: Mutex<Vec<Arc<Mutex<Pinned>>>>,
    tokens: AtomicU32,
    main: ThreadId,
}

static CONFIG_IDS: AtomicU64 = AtomicU64::new(1);

/// The configurations Envoy has loaded and not destroyed: a thread drops its workers of any
/// other (after a configuration update) the next time it makes one.
fn live() -> &'static Mutex<std::collections::HashSet<u64>> {
    static LIVE: OnceLock<Mutex<std::collections::HashSet<u64>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(std::collections::HashSet::new()))
}

/// One thread's worker for one configuration, and when it last ticked.
struct Pinned {
    worker: Worker,
    tick: Duration,
    last_tick: Instant,
}

// SAFETY: a `Worker` is `!Send` only for two type-erased parts: the host's foreign-call
// handle (`Rc<dyn ForeignCall>`, always `None` here: this host has no foreign functions)
// and the signature backend (`Box<dyn SignatureBackend>`, here the pure-Rust backend,
// which holds keys and nothing thread-bound). Every access goes through the `Mutex` around
// it, so no two threads ever touch one worker at once.
unsafe impl Send for Pinned {}

/// A thread's worker for one configuration: its index in `Config::workers`.
struct Slot {
    index: usize,
    pinned: Arc<Mutex<Pinned>>,
}

thread_local! {
    static WORKERS: RefCell<HashMap<u64, Rc<Slot>>> = RefCell::new(HashMap::new());
    /// The filter Envoy is calling into on this thread (null outside a request hook).
    static CURRENT: Cell<*mut c_void> = const { Cell::new(std::ptr::null_mut()) };
    /// The call answer being delivered on this thread.
    static ANSWER: RefCell<Option<(Vec<u8>, Vec<u8>)>> = const { RefCell::new(None) };
}

/// The host, for one configuration, on the current thread.
struct DmHost<'a> {
    cfg: &'a Config,
    /// The worker calling (where its calls' answers go).
    worker: usize,
}

fn filter_ptr() -> Result<*mut c_void, HostError> {
    let f = CURRENT.with(Cell::get);
    if f.is_null() {
        Err(HostError("no request on this thread".into()))
    } else {
        Ok(f)
    }
}

fn header_map(filter: *mut c_void, ty: u32) -> Vec<(String, Vec<u8>)> {
    // SAFETY: `filter` is the live filter of the current hook.
    let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(filter, ty) };
    let mut raw = vec![
        EnvoyHttpHeader {
            key_ptr: std::ptr::null(),
            key_len: 0,
            value_ptr: std::ptr::null(),
            value_len: 0,
        };
        n
    ];
    // SAFETY: `raw` has room for the `n` headers Envoy reported.
    if n == 0
        || !unsafe { envoy_dynamic_module_callback_http_get_headers(filter, ty, raw.as_mut_ptr()) }
    {
        return Vec::new();
    }
    raw.iter()
        .map(|h| {
            // SAFETY: Envoy's buffers are valid until the hook ends.
            let key = unsafe {
                EnvoyBuffer {
                    ptr: h.key_ptr,
                    len: h.key_len,
                }
                .to_vec()
            };
            let value = unsafe {
                EnvoyBuffer {
                    ptr: h.value_ptr,
                    len: h.value_len,
                }
                .to_vec()
            };
            (String::from_utf8_lossy(&key).into_owned(), value)
        })
        .collect()
}

fn chunks(filter: *mut c_void, ty: u32, out: &mut Vec<u8>) {
    // SAFETY: `filter` is live; the vector has room for every chunk Envoy reported.
    let n = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(filter, ty) };
    if n == 0 {
        return;
    }
    let mut raw = vec![EnvoyBuffer::EMPTY; n];
    if !unsafe { envoy_dynamic_module_callback_http_get_body_chunks(filter, ty, raw.as_mut_ptr()) }
    {
        return;
    }
    for c in raw {
        // SAFETY: valid until the hook ends.
        out.extend_from_slice(&unsafe { c.to_vec() });
    }
}

/// The body types of one direction: (buffered, received).
fn body_types(request: bool) -> (u32, u32) {
    if request {
        (BUFFERED_REQUEST_BODY, RECEIVED_REQUEST_BODY)
    } else {
        (BUFFERED_RESPONSE_BODY, RECEIVED_RESPONSE_BODY)
    }
}

/// Whether the frame just received is the buffered body, re-delivered.
fn redelivered(filter: *mut c_void, request: bool) -> bool {
    // SAFETY: `filter` is live.
    unsafe {
        if request {
            envoy_dynamic_module_callback_http_received_buffered_request_body(filter)
        } else {
            envoy_dynamic_module_callback_http_received_buffered_response_body(filter)
        }
    }
}

/// The length of [`body`], without copying it.
fn body_size(filter: *mut c_void, request: bool) -> usize {
    let (buffered, received) = body_types(request);
    // SAFETY: `filter` is live.
    let size = |ty| unsafe { envoy_dynamic_module_callback_http_get_body_size(filter, ty) };
    let mut n = size(buffered);
    if !redelivered(filter, request) {
        n = n.saturating_add(size(received));
    }
    n
}

/// The whole body so far: what Envoy buffered, then the frame just received (unless that
/// frame is the buffered body, re-delivered).
fn body(filter: *mut c_void, request: bool) -> Vec<u8> {
    let (buffered, received) = body_types(request);
    let mut out = Vec::new();
    chunks(filter, buffered, &mut out);
    if !redelivered(filter, request) {
        chunks(filter, received, &mut out);
    }
    out
}

fn attribute(filter: *mut c_void, id: u32) -> Option<Vec<u8>> {
    let mut buf = EnvoyBuffer::EMPTY;
    // SAFETY: `filter` is live; Envoy writes the buffer, valid until the hook ends.
    let ok = unsafe {
        envoy_dynamic_module_callback_http_filter_get_attribute_string(filter, id, &mut buf)
    };
    ok.then(|| unsafe { buf.to_vec() })
}

/// The downstream peer's address (`source.address`, `ip:port`).
fn source_address() -> Option<String> {
    let f = filter_ptr().ok()?;
    String::from_utf8(attribute(f, ATTR_SOURCE_ADDRESS)?).ok()
}

/// The downstream client certificate's SHA-256 (absent without one).
fn peer_certificate() -> PeerCertificate {
    let Ok(f) = filter_ptr() else {
        return PeerCertificate::Unavailable;
    };
    match attribute(f, ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST) {
        None => PeerCertificate::Absent,
        Some(hex) if hex.is_empty() => PeerCertificate::Absent,
        Some(hex) => agent_iam::dpop::peer_certificate_sha256(&hex)
            .map_or(PeerCertificate::Unavailable, PeerCertificate::Sha256),
    }
}

impl SharedData for DmHost<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        lock(store()).get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        lock(store()).set(key, value, cas)
    }
}

impl Host for DmHost<'_> {
    fn now(&self) -> Option<f64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64())
    }

    fn log(&self, level: Level, msg: &str) {
        let l = match level {
            Level::Trace => LOG_TRACE,
            Level::Debug => LOG_DEBUG,
            Level::Info => LOG_INFO,
            Level::Warn => LOG_WARN,
            Level::Error => LOG_ERROR,
            Level::Critical => LOG_CRITICAL,
        };
        log_raw(l, msg);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut m = lock(&self.cfg.metrics);
        if let Some(id) = m.by_name.get(name) {
            return Some(*id);
        }
        let id = u32::try_from(m.slots.len()).ok()?;
        m.slots.push(MetricSlot {
            kind,
            name: name.to_owned(),
            envoy: None,
            value: 0,
            synced: 0,
            pending: Vec::new(),
            refused: false,
            series: if kind == MetricKind::Counter {
                family_series(name)
            } else {
                None
            },
        });
        m.by_name.insert(name.to_owned(), id);
        Some(id)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let mut m = lock(&self.cfg.metrics);
        if let Some(s) = m.slots.get_mut(id as usize) {
            s.value = s.value.saturating_add(by);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        let mut m = lock(&self.cfg.metrics);
        if let Some(s) = m.slots.get_mut(id as usize) {
            match s.kind {
                MetricKind::Histogram => {
                    if s.pending.len() < 4096 {
                        s.pending.push(value);
                    }
                }
                _ => s.value = i64::try_from(value).unwrap_or(i64::MAX),
            }
        }
    }

    fn metric(&self, id: u32) -> Option<u64> {
        let m = lock(&self.cfg.metrics);
        m.slots
            .get(id as usize)
            .map(|s| u64::try_from(s.value).unwrap_or(0))
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let token = self.cfg.tokens.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            token,
            origin: self.worker,
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.unwrap_or_default().to_vec(),
            timeout_ms,
        };
        if std::thread::current().id() == self.cfg.main {
            callout(self.cfg, &call)?;
        } else {
            lock(&self.cfg.outbox).push(call);
            // SAFETY: the scheduler lives until the configuration is destroyed, after
            // every worker thread's filters are gone.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                    self.cfg.scheduler.0,
                    EV_CALLS,
                );
            }
        }
        Ok(token)
    }

    fn call_status(&self) -> Vec<u8> {
        ANSWER.with(|a| {
            a.borrow()
                .as_ref()
                .map(|(s, _)| s.clone())
                .unwrap_or_default()
        })
    }

    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        ANSWER.with(|a| {
            a.borrow()
                .as_ref()
                .map(|(_, b)| b.get(..size.min(b.len())).unwrap_or_default().to_vec())
        })
    }

    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        let f = filter_ptr()?;
        let key = if path == ["agent_iam.audit"] {
            AUDIT_KEY.to_vec()
        } else {
            path.join(".").into_bytes()
        };
        // SAFETY: `f` is live; Envoy copies both buffers.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                f,
                ModuleBuffer::of(&key),
                ModuleBuffer::of(value),
            )
        };
        ok.then_some(())
            .ok_or_else(|| HostError("set_filter_state_bytes refused".into()))
    }

    fn memory_bytes(&self) -> Option<u64> {
        None
    }

    fn native_signatures(&self) -> Option<Box<dyn agent_iam::crypto::SignatureBackend>> {
        Some(Box::new(native::Native))
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(header_map(filter_ptr()?, REQUEST_HEADER))
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let f = filter_ptr().ok()?;
        let mut buf = EnvoyBuffer::EMPTY;
        let mut count = 0usize;
        // SAFETY: `f` is live; Envoy writes the buffer and the count.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                f,
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                &mut buf,
                0,
                &mut count,
            )
        };
        (ok && count > 0).then(|| unsafe { buf.to_vec() })
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        set_header(REQUEST_HEADER, name, None)
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        set_header(REQUEST_HEADER, name, Some(value))
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut b = body(filter_ptr()?, true);
        b.truncate(size);
        Ok(b)
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        Ok(header_map(filter_ptr()?, RESPONSE_HEADER))
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        set_header(RESPONSE_HEADER, name, None)
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut b = body(filter_ptr()?, false);
        b.truncate(size);
        Ok(b)
    }

    fn set_response_body(&self, _size: usize, new: &[u8]) -> Result<(), HostError> {
        let f = filter_ptr()?;
        // SAFETY: `f` is live; Envoy copies the appended bytes.
        let ok = unsafe {
            let buffered =
                envoy_dynamic_module_callback_http_get_body_size(f, BUFFERED_RESPONSE_BODY);
            let received =
                envoy_dynamic_module_callback_http_get_body_size(f, RECEIVED_RESPONSE_BODY);
            if buffered > 0 {
                envoy_dynamic_module_callback_http_drain_body(f, BUFFERED_RESPONSE_BODY, buffered);
            }
            if received > 0 {
                envoy_dynamic_module_callback_http_drain_body(f, RECEIVED_RESPONSE_BODY, received);
            }
            envoy_dynamic_module_callback_http_append_body(
                f,
                RECEIVED_RESPONSE_BODY,
                ModuleBuffer::of(new),
            ) || envoy_dynamic_module_callback_http_append_body(
                f,
                BUFFERED_RESPONSE_BODY,
                ModuleBuffer::of(new),
            )
        };
        ok.then_some(())
            .ok_or_else(|| HostError("append_body refused".into()))
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let f = filter_ptr()?;
        let hs: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader::of(k, v))
            .collect();
        // SAFETY: every buffer is live for the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                f,
                u32::from(status),
                hs.as_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"agent_iam"),
            );
        }
        Ok(())
    }
}

fn set_header(ty: u32, name: &str, value: Option<&str>) -> Result<(), HostError> {
    let f = filter_ptr()?;
    let v = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
    // SAFETY: `f` is live; Envoy copies both buffers.
    let ok = unsafe {
        envoy_dynamic_module_callback_http_set_header(f, ty, ModuleBuffer::of(name.as_bytes()), v)
    };
    ok.then_some(())
        .ok_or_else(|| HostError(format!("set_header {name} refused")))
}

/// Sends `call` through Envoy (main thread only).
fn callout(cfg: &Config, call: &Call) -> Result<(), HostError> {
    let hs: Vec<ModuleHttpHeader> = call
        .headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader::of(k, v))
        .collect();
    let mut id = 0u64;
    // SAFETY: on the main thread, with the live configuration; Envoy copies the buffers.
    let r = unsafe {
        envoy_dynamic_module_callback_http_filter_config_http_callout(
            cfg.envoy.0,
            &mut id,
            ModuleBuffer::of(call.cluster.as_bytes()),
            hs.as_ptr(),
            hs.len(),
            ModuleBuffer::of(&call.body),
            call.timeout_ms,
        )
    };
    if r != CALLOUT_SUCCESS {
        return Err(HostError(format!(
            "http callout to {}: result {r}",
            call.cluster
        )));
    }
    lock(&cfg.in_flight).insert(id, (call.token, call.origin));
    Ok(())
}

/// This thread's worker for `cfg`, made on first use.
fn slot(cfg: &Config) -> Option<Rc<Slot>> {
    if let Some(s) = WORKERS.with(|w| w.borrow().get(&cfg.id).cloned()) {
        return Some(s);
    }
    let mut workers = lock(&cfg.workers);
    let index = workers.len();
    let host = DmHost { cfg, worker: index };
    let mut worker = Worker::configure(&host, &cfg.bytes, None).ok()?;
    worker.set_client_source(source_address);
    worker.set_connection_source(peer_certificate);
    let pinned = Arc::new(Mutex::new(Pinned {
        tick: worker.tick_period(),
        worker,
        last_tick: Instant::now(),
    }));
    workers.push(Arc::clone(&pinned));
    drop(workers);
    let s = Rc::new(Slot { index, pinned });
    let live = lock(live()).clone();
    WORKERS.with(|w| {
        let mut w = w.borrow_mut();
        w.retain(|id, _| live.contains(id));
        w.insert(cfg.id, s.clone());
    });
    Some(s)
}

/// Replaces this thread's worker for `cfg` with a fresh one from the configuration.
fn rebuild(cfg: &Config) {
    let Some(s) = WORKERS.with(|w| w.borrow().get(&cfg.id).cloned()) else {
        return;
    };
    let host = DmHost {
        cfg,
        worker: s.index,
    };
    let Ok(mut worker) = Worker::configure(&host, &cfg.bytes, None) else {
        return;
    };
    worker.set_client_source(source_address);
    worker.set_connection_source(peer_certificate);
    let mut p = lock(&s.pinned);
    p.tick = worker.tick_period();
    p.worker = worker;
    p.last_tick = Instant::now();
    drop(p);
    log_raw(
        LOG_WARN,
        "agent-iam: the worker that panicked was replaced by a fresh one",
    );
}

/// Delivers a call's answer to the worker that sent it (main thread).
fn deliver(cfg: &Config, a: Answer, to: usize) {
    let Some(pinned) = lock(&cfg.workers).get(to).cloned() else {
        return;
    };
    let mut p = lock(&pinned);
    let size = a.body.len();
    ANSWER.with(|x| *x.borrow_mut() = Some((a.status, a.body)));
    p.worker
        .on_call_response(&DmHost { cfg, worker: to }, a.token, size);
    ANSWER.with(|x| *x.borrow_mut() = None);
}

/// Ticks every worker whose period has passed and that is not deciding a request now
/// (main thread).
fn tick_all(cfg: &Config) {
    let workers = lock(&cfg.workers).clone();
    for (i, pinned) in workers.iter().enumerate() {
        let Ok(mut p) = pinned.try_lock() else {
            continue;
        };
        if p.last_tick.elapsed() >= p.tick {
            p.last_tick = Instant::now();
            p.worker.on_tick(&DmHost { cfg, worker: i });
        }
    }
}

/// Writes the module's counts to Envoy's stats (main thread).
fn sync_metrics(cfg: &Config) {
    let mut guard = lock(&cfg.metrics);
    let m = &mut *guard;
    for s in &mut m.slots {
        if let Some((family, values)) = &s.series {
            let Some(Some(id)) = m.families.get(*family) else {
                continue;
            };
            let delta = s.value.saturating_sub(s.synced);
            if delta > 0 {
                let vs: Vec<ModuleBuffer> = values
                    .iter()
                    .map(|v| ModuleBuffer::of(v.as_bytes()))
                    .collect();
                // SAFETY: main thread, a metric this configuration defined, with as many
                // label values as it has labels.
                unsafe {
                    envoy_dynamic_module_callback_http_filter_config_increment_counter(
                        cfg.envoy.0,
                        *id,
                        vs.as_ptr(),
                        vs.len(),
                        delta.unsigned_abs(),
                    );
                }
                s.synced = s.value;
            }
            continue;
        }
        if s.envoy.is_none() {
            let mut id = 0usize;
            // SAFETY: main thread, live configuration; Envoy copies the name.
            let r = unsafe {
                let name = ModuleBuffer::of(s.name.as_bytes());
                match s.kind {
                    MetricKind::Counter => {
                        envoy_dynamic_module_callback_http_filter_config_define_counter(
                            cfg.envoy.0,
                            name,
                            std::ptr::null(),
                            0,
                            &mut id,
                        )
                    }
                    MetricKind::Gauge => {
                        envoy_dynamic_module_callback_http_filter_config_define_gauge(
                            cfg.envoy.0,
                            name,
                            std::ptr::null(),
                            0,
                            &mut id,
                        )
                    }
                    MetricKind::Histogram => {
                        envoy_dynamic_module_callback_http_filter_config_define_histogram(
                            cfg.envoy.0,
                            name,
                            std::ptr::null(),
                            0,
                            &mut id,
                        )
                    }
                }
            };
            if r != METRICS_SUCCESS {
                if !s.refused && s.series.is_none() {
                    s.refused = true;
                    log_raw(
                        LOG_WARN,
                        &format!(
                            "agent-iam: Envoy refused the metric {} (result {r})",
                            s.name
                        ),
                    );
                }
                continue;
            }
            s.envoy = Some(id);
        }
        let Some(id) = s.envoy else { continue };
        // SAFETY: main thread, a metric this configuration defined.
        unsafe {
            match s.kind {
                MetricKind::Counter => {
                    let delta = s.value.saturating_sub(s.synced);
                    if delta > 0 {
                        envoy_dynamic_module_callback_http_filter_config_increment_counter(
                            cfg.envoy.0,
                            id,
                            std::ptr::null(),
                            0,
                            delta.unsigned_abs(),
                        );
                        s.synced = s.value;
                    }
                }
                MetricKind::Gauge => {
                    if s.value != s.synced {
                        envoy_dynamic_module_callback_http_filter_config_set_gauge(
                            cfg.envoy.0,
                            id,
                            std::ptr::null(),
                            0,
                            u64::try_from(s.value).unwrap_or(0),
                        );
                        s.synced = s.value;
                    }
                }
                MetricKind::Histogram => {
                    for v in s.pending.drain(..) {
                        envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                            cfg.envoy.0,
                            id,
                            std::ptr::null(),
                            0,
                            v,
                        );
                    }
                }
            }
        }
    }
}

/// Defines [`FAMILIES`] in Envoy (while the configuration loads).
fn define_families(cfg: &Config) {
    let mut m = lock(&cfg.metrics);
    m.families = FAMILIES
        .iter()
        .map(|(name, labels)| {
            let ls: Vec<ModuleBuffer> = labels
                .iter()
                .map(|l| ModuleBuffer::of(l.as_bytes()))
                .collect();
            let mut id = 0usize;
            // SAFETY: main thread, in `config_new`; Envoy copies the names.
            let r = unsafe {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    cfg.envoy.0,
                    ModuleBuffer::of(name.as_bytes()),
                    ls.as_ptr(),
                    ls.len(),
                    &mut id,
                )
            };
            (r == METRICS_SUCCESS).then_some(id)
        })
        .collect();
}

// ------------------------------------------------------------------ event hooks

/// Runs `f`; a panic is caught here and reported as `None` (never unwinds into Envoy).
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            log_raw(
                LOG_CRITICAL,
                &format!("agent-iam: panic caught in {what}; failing closed"),
            );
            None
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    std::panic::set_hook(Box::new(|info| {
        log_raw(LOG_CRITICAL, &format!("agent-iam: panic: {info}"));
    }));
    ABI_VERSION.as_ptr()
}

/// The configuration: Envoy's `filter_config` (a `google.protobuf.StringValue` holding the
/// same JSON document the Wasm filter reads).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("config_new", || {
        // SAFETY: Envoy's buffer is valid for this call.
        let bytes = unsafe { config.to_vec() };
        // SAFETY: `envoy` is the live configuration being created.
        let scheduler =
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
        let cfg = Arc::new(Config {
            id: CONFIG_IDS.fetch_add(1, Ordering::Relaxed),
            envoy: Ptr(envoy),
            bytes,
            scheduler: Ptr(scheduler),
            stop: AtomicBool::new(false),
            timer: Mutex::new(None),
            metrics: Mutex::new(Metrics::default()),
            outbox: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            tokens: AtomicU32::new(1),
            main: std::thread::current().id(),
        });
        lock(live()).insert(cfg.id);
        define_families(&cfg);
        if slot(&cfg).is_none() {
            // SAFETY: the scheduler was made above and nothing else holds it.
            unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler) };
            lock(live()).remove(&cfg.id);
            return std::ptr::null();
        }
        sync_metrics(&cfg);
        let timer_cfg = Arc::clone(&cfg);
        let timer = std::thread::Builder::new()
            .name("agent-iam-timer".into())
            .spawn(move || {
                while !timer_cfg.stop.load(Ordering::Acquire) {
                    std::thread::sleep(WAKE);
                    if timer_cfg.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // SAFETY: the scheduler is deleted only after this thread is joined.
                    unsafe {
                        envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            timer_cfg.scheduler.0,
                            EV_WAKE,
                        );
                    }
                }
            });
        match timer {
            Ok(t) => *lock(&cfg.timer) = Some(t),
            Err(e) => {
                log_raw(
                    LOG_ERROR,
                    &format!("agent-iam: cannot start the timer thread: {e}"),
                );
                // SAFETY: as above.
                unsafe {
                    envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler)
                };
                lock(live()).remove(&cfg.id);
                return std::ptr::null();
            }
        }
        Box::into_raw(Box::new(cfg)) as *const c_void
    })
    .unwrap_or(std::ptr::null())
}

/// # Safety
/// `ptr` is a pointer `config_new` returned (Envoy passes it back unchanged).
unsafe fn config_of<'a>(ptr: *const c_void) -> Option<&'a Arc<Config>> {
    (ptr as *const Arc<Config>).as_ref()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(ptr: *const c_void) {
    guarded("config_destroy", || {
        if ptr.is_null() {
            return;
        }
        // SAFETY: Envoy hands back the pointer `config_new` made, once.
        let cfg = unsafe { Box::from_raw(ptr as *mut Arc<Config>) };
        lock(live()).remove(&cfg.id);
        cfg.stop.store(true, Ordering::Release);
        if let Some(t) = lock(&cfg.timer).take() {
            let _ = t.join();
        }
        WORKERS.with(|w| w.borrow_mut().remove(&cfg.id));
        let workers = std::mem::take(&mut *lock(&cfg.workers));
        for (i, pinned) in workers.iter().enumerate() {
            lock(pinned).worker.on_done(&DmHost {
                cfg: &cfg,
                worker: i,
            });
        }
        // SAFETY: the timer thread is joined; nothing commits to the scheduler any more.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_delete(cfg.scheduler.0)
        };
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: ConfigEnvoyPtr,
    ptr: *const c_void,
    event: u64,
) {
    guarded("config_scheduled", || {
        // SAFETY: Envoy's pointer from `config_new`, live until `config_destroy`.
        let Some(cfg) = (unsafe { config_of(ptr) }) else {
            return;
        };
        let calls = std::mem::take(&mut *lock(&cfg.outbox));
        for call in calls {
            if let Err(e) = callout(cfg, &call) {
                log_raw(LOG_WARN, &format!("agent-iam: {}", e.0));
                let a = Answer {
                    token: call.token,
                    status: Vec::new(),
                    body: Vec::new(),
                };
                deliver(cfg, a, call.origin);
            }
        }
        if event == EV_WAKE {
            tick_all(cfg);
            sync_metrics(cfg);
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: ConfigEnvoyPtr,
    ptr: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    guarded("callout_done", || {
        // SAFETY: Envoy's pointer from `config_new`.
        let Some(cfg) = (unsafe { config_of(ptr) }) else {
            return;
        };
        let Some((token, origin)) = lock(&cfg.in_flight).remove(&callout_id) else {
            return;
        };
        let mut status = Vec::new();
        let mut body = Vec::new();
        if result == CALLOUT_RESULT_SUCCESS {
            if !headers.is_null() {
                // SAFETY: Envoy's `headers_size` headers, valid during this hook.
                let hs = unsafe { std::slice::from_raw_parts(headers, headers_size) };
                for h in hs {
                    // SAFETY: as above.
                    let k = unsafe {
                        EnvoyBuffer {
                            ptr: h.key_ptr,
                            len: h.key_len,
                        }
                        .to_vec()
                    };
                    if k == b":status" {
                        status = unsafe {
                            EnvoyBuffer {
                                ptr: h.value_ptr,
                                len: h.value_len,
                            }
                            .to_vec()
                        };
                    }
                }
            }
            if !body_chunks.is_null() {
                // SAFETY: Envoy's `body_chunks_size` chunks, valid during this hook.
                let cs = unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) };
                for c in cs {
                    body.extend_from_slice(&unsafe { c.to_vec() });
                }
            }
        }
        let a = Answer {
            token,
            status,
            body,
        };
        deliver(cfg, a, origin);
    });
}

/// One request's filter.
struct Filter {
    cfg: Arc<Config>,
    exchange: Exchange,
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    ptr: *const c_void,
    _filter: FilterEnvoyPtr,
) -> *const c_void {
    guarded("filter_new", || {
        // SAFETY: Envoy's pointer from `config_new`.
        let Some(cfg) = (unsafe { config_of(ptr) }) else {
            return std::ptr::null();
        };
        let f = Filter {
            cfg: Arc::clone(cfg),
            exchange: Exchange::default(),
        };
        Box::into_raw(Box::new(f)) as *const c_void
    })
    .unwrap_or(std::ptr::null())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(ptr: *const c_void) {
    guarded("filter_destroy", || {
        if !ptr.is_null() {
            // SAFETY: Envoy hands back the pointer `filter_new` made, once.
            drop(unsafe { Box::from_raw(ptr as *mut Filter) });
        }
    });
}

/// Runs one hook of a request: `f` gets the worker and the exchange, with the filter set
/// as the thread's current one. A panic, or no worker, denies the request.
fn on_filter(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
    what: &str,
    f: impl FnOnce(&DmHost<'_>, &mut Worker, &mut Exchange) -> Outcome,
) -> Outcome {
    // SAFETY: Envoy's pointer from `filter_new`, live until `filter_destroy`; Envoy calls
    // a filter's hooks on one thread, one at a time.
    let Some(filter) = (unsafe { (ptr as *mut Filter).as_mut() }) else {
        return Outcome::Answered;
    };
    let prev = CURRENT.with(|c| c.replace(envoy));
    let cfg = Arc::clone(&filter.cfg);
    let host = DmHost {
        cfg: &cfg,
        worker: usize::MAX,
    };
    let out = guarded(what, || match slot(&cfg) {
        None => deny_unconfigured(&host, "unconfigured"),
        Some(s) => {
            let host = DmHost {
                cfg: &cfg,
                worker: s.index,
            };
            let mut p = lock(&s.pinned);
            f(&host, &mut p.worker, &mut filter.exchange)
        }
    });
    let out = match out {
        Some(o) => o,
        None => {
            // The request never goes upstream after a panic, and the worker the panic
            // left half-way is replaced by a fresh one (what Envoy's `failure_policy:
            // reload` does for a trapped Wasm VM): what workers share lives in the shared
            // store, each write of which is whole.
            let _ = guarded("panic answer", || deny_unconfigured(&host, "internal"));
            let _ = guarded("worker rebuild", || rebuild(&cfg));
            Outcome::Answered
        }
    };
    CURRENT.with(|c| c.set(prev));
    out
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    match on_filter(envoy, ptr, "request_headers", |h, w, ex| {
        w.on_request(h, ex, end_of_stream)
    }) {
        Outcome::Continue => HEADERS_CONTINUE,
        Outcome::Answered | Outcome::NeedBody => HEADERS_STOP_ITERATION,
    }
}

fn waits_for_body(ptr: *const c_void) -> bool {
    // SAFETY: as in `on_filter`.
    unsafe { (ptr as *const Filter).as_ref() }.is_some_and(|f| f.exchange.waits_for_body())
}

fn filters_response(ptr: *const c_void) -> bool {
    // SAFETY: as in `on_filter`.
    unsafe { (ptr as *const Filter).as_ref() }.is_some_and(|f| f.exchange.filters_response())
}

fn body_status(o: Outcome) -> u32 {
    match o {
        Outcome::Continue => BODY_CONTINUE,
        Outcome::NeedBody => BODY_STOP_ITERATION_AND_BUFFER,
        Outcome::Answered => BODY_STOP_ITERATION_NO_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if !waits_for_body(ptr) {
        return BODY_CONTINUE;
    }
    body_status(on_filter(envoy, ptr, "request_body", |h, w, ex| {
        let size = body_size(envoy, true);
        w.on_request_body(h, ex, size, end_of_stream)
    }))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
) -> u32 {
    if !waits_for_body(ptr) {
        return TRAILERS_CONTINUE;
    }
    match on_filter(envoy, ptr, "request_trailers", |h, w, ex| {
        w.on_request_trailers(h, ex)
    }) {
        Outcome::Continue => TRAILERS_CONTINUE,
        _ => TRAILERS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if !filters_response(ptr) {
        return HEADERS_CONTINUE;
    }
    match on_filter(envoy, ptr, "response_headers", |h, w, ex| {
        w.on_response_headers(h, ex, end_of_stream)
    }) {
        Outcome::Continue => HEADERS_CONTINUE,
        _ => HEADERS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if !filters_response(ptr) {
        return BODY_CONTINUE;
    }
    body_status(on_filter(envoy, ptr, "response_body", |h, w, ex| {
        let size = body_size(envoy, false);
        w.on_response_body(h, ex, size, end_of_stream)
    }))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
) -> u32 {
    if !filters_response(ptr) {
        return TRAILERS_CONTINUE;
    }
    match on_filter(envoy, ptr, "response_trailers", |h, w, ex| {
        w.on_response_trailers(h, ex)
    }) {
        Outcome::Continue => TRAILERS_CONTINUE,
        _ => TRAILERS_STOP_ITERATION,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    ptr: *const c_void,
) {
    if !waits_for_body(ptr) {
        return;
    }
    on_filter(envoy, ptr, "stream_complete", |h, w, ex| {
        w.on_stream_end(h, ex);
        Outcome::Continue
    });
}

// Hooks Envoy resolves for every HTTP filter module; this filter does not use them.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _ptr: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: ConfigEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: ConfigEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _envoy: ConfigEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _envoy: ConfigEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _envoy: ConfigEnvoyPtr,
    _ptr: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
) {
}

/// Envoy's local replies (ours and others') go out as they are.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _envoy: FilterEnvoyPtr,
    _ptr: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    0
}
