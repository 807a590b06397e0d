//! The proxy-wasm adapter: the only code that talks to the host (Envoy, Kong). It
//! implements [`Host`] over `proxy_wasm::hostcalls` and forwards every callback to the
//! one [`Worker`] of this VM; all logic lives there, tested natively.
//!
//! Every host call's `Result` is handled: the SDK's trait helpers `unwrap()`, and a trap
//! takes the worker's VM down.
//!
//! The module must load on Kong too: it imports only host functions Kong's ngx_wasm_module
//! has, with Kong's signatures, and calls only those Kong implements, except
//! `proxy_call_foreign_function`, called only on a host identified as Envoy.
//! `tests/kong_imports.rs` checks the built module against Kong's list. Hence no
//! `proxy_get_log_level` (Kong declares it with another signature, so a module importing it
//! does not instantiate there) and no stream reset (`proxy_close_stream`: calling it traps
//! on Kong; the filter answers a bare 500 instead, see `worker::host::answer`).

// `proxy_wasm::main!` exports `_start` with `#[no_mangle]`.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::crypto::ForeignCall;
use crate::shared::{HostError, SharedData};
use crate::worker::{deny_unconfigured, Exchange, Host, Level, MetricKind, Outcome, Worker};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("agent-iam: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { worker: None }) });
}}

fn err(s: proxy_wasm::types::Status) -> HostError {
    HostError(format!("{s:?}"))
}

// The buffer calls of the ABI, declared here with plain integers: the SDK's wrappers panic
// (a VM trap) on any status they do not expect, and Envoy answers `BadArgument` for some
// ranges (`set_buffer` accepts only a whole-buffer replace or an append).
#[link(wasm_import_module = "env")]
extern "C" {
    #[link_name = "proxy_get_buffer_bytes"]
    fn abi_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    #[link_name = "proxy_set_buffer_bytes"]
    fn abi_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
    // The SDK's wrappers of these three panic on any status but the few they list: a host
    // that refuses a local answer, lacks a foreign function or a property (Kong answers
    // `NotFound` to setting Envoy's filter state) must get a status back, not a VM trap.
    #[link_name = "proxy_send_local_response"]
    fn abi_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    #[link_name = "proxy_set_property"]
    fn abi_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[link_name = "proxy_call_foreign_function"]
    fn abi_call_foreign_function(
        name: *const u8,
        name_size: usize,
        args: *const u8,
        args_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// A header map in the ABI's encoding: the pair count, each name's and value's length
/// (u32 LE), then each name and value, NUL-terminated.
fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = Vec::new();
    out.extend_from_slice(&len32(headers.len()));
    for (name, value) in headers {
        out.extend_from_slice(&len32(name.len()));
        out.extend_from_slice(&len32(value.len()));
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

const REQUEST_BODY: u32 = 0;
const RESPONSE_BODY: u32 = 1;

/// The first `size` bytes of a body buffer (empty when the host has none).
fn get_body(buffer: u32, size: usize) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: the host writes a pointer it allocated through this module's
    // `proxy_on_memory_allocate` (the SDK's: a boxed slice of exactly `len` bytes) and
    // its length; ownership passes to us, as in the SDK's own `get_buffer`.
    let status = unsafe { abi_get_buffer_bytes(buffer, 0, size, &mut data, &mut len) };
    match status {
        0 if data.is_null() => Ok(Vec::new()),
        0 => Ok(unsafe { Vec::from_raw_parts(data, len, len) }),
        // NotFound: no body buffered.
        1 => Ok(Vec::new()),
        other => Err(HostError(format!("get_buffer_bytes: status {other}"))),
    }
}

/// Replaces the whole buffered body (`size` bytes) with `body`.
fn set_body(buffer: u32, size: usize, body: &[u8]) -> Result<(), HostError> {
    // SAFETY: `body` outlives the call; the host copies it.
    let status = unsafe { abi_set_buffer_bytes(buffer, 0, size, body.as_ptr(), body.len()) };
    match status {
        0 => Ok(()),
        other => Err(HostError(format!("set_buffer_bytes: status {other}"))),
    }
}

/// The host, through proxy-wasm. Calls on "the current request" act on the context the
/// host is calling into.
struct ProxyHost;

impl SharedData for ProxyHost {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(err)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(err)
    }
}

fn level(l: Level) -> LogLevel {
    match l {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
        Level::Critical => LogLevel::Critical,
    }
}

impl Host for ProxyHost {
    fn now(&self) -> Option<f64> {
        let t = hostcalls::get_current_time().ok()?;
        t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
    }

    fn log(&self, l: Level, msg: &str) {
        let _ = hostcalls::log(level(l), msg);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let _ = hostcalls::increment_metric(id, by);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn metric(&self, id: u32) -> Option<u64> {
        hostcalls::get_metric(id).ok()
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let timeout = Duration::from_millis(timeout_ms);
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout).map_err(err)
    }

    fn call_status(&self) -> Vec<u8> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        // The ABI's path: the segments joined by NUL bytes.
        let joined = path.join("\0");
        // SAFETY: both buffers are live for the call; the host copies them.
        let status =
            unsafe { abi_set_property(joined.as_ptr(), joined.len(), value.as_ptr(), value.len()) };
        match status {
            0 => Ok(()),
            other => Err(HostError(format!("set_property: status {other}"))),
        }
    }

    fn memory_bytes(&self) -> Option<u64> {
        let pages = core::arch::wasm32::memory_size(0);
        u64::try_from(pages.saturating_mul(65_536)).ok()
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(err)
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(err)
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).map_err(err)
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        get_body(REQUEST_BODY, size)
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpResponseHeaders).map_err(err)
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(MapType::HttpResponseHeaders, name).map_err(err)
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        get_body(RESPONSE_BODY, size)
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        set_body(RESPONSE_BODY, size, body)
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let map = serialize_headers(headers);
        // SAFETY: every pointer is to a live buffer of the given length; the host copies.
        let status = unsafe {
            abi_send_local_response(
                u32::from(status),
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            )
        };
        match status {
            0 => Ok(()),
            other => Err(HostError(format!("send_local_response: status {other}"))),
        }
    }
}

/// `verify_signature` through the host.
struct EnvoyForeign;

impl ForeignCall for EnvoyForeign {
    fn call(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: as in `get_body`: the host hands over a buffer it allocated through this
        // module's allocator, with its length.
        let status = unsafe {
            abi_call_foreign_function(
                name.as_ptr(),
                name.len(),
                args.as_ptr(),
                args.len(),
                &mut data,
                &mut len,
            )
        };
        match status {
            0 if data.is_null() => Ok(None),
            0 => Ok(Some(unsafe { Vec::from_raw_parts(data, len, len) })),
            1 => Err("NotFound".into()),
            other => Err(format!("status {other}")),
        }
    }
}

/// The downstream peer's address as Envoy reports it (`source.address`, `ip:port`).
fn source_address() -> Option<String> {
    String::from_utf8(ProxyHost.property(&["source", "address"])?).ok()
}

/// The downstream connection's client certificate: Envoy's
/// `connection.sha256_peer_certificate_digest` (lower-case hex; absent without TLS or
/// without a client certificate). Anything else, or a failed read, is unavailable.
fn peer_certificate() -> crate::decision::PeerCertificate {
    use crate::decision::PeerCertificate;
    match hostcalls::get_property(vec!["connection", "sha256_peer_certificate_digest"]) {
        Ok(None) => PeerCertificate::Absent,
        Ok(Some(hex)) if hex.is_empty() => PeerCertificate::Absent,
        Ok(Some(hex)) => crate::dpop::peer_certificate_sha256(&hex)
            .map_or(PeerCertificate::Unavailable, PeerCertificate::Sha256),
        Err(_) => PeerCertificate::Unavailable,
    }
}

/// The root context: configuration, timer, call answers, shutdown.
struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _: usize) {
        if let Some(mut w) = self.worker.as_ref().and_then(|w| w.try_borrow_mut().ok()) {
            w.on_call_response(&ProxyHost, token, body);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(mut w) = self.worker.as_ref().and_then(|w| w.try_borrow_mut().ok()) {
            w.on_done(&ProxyHost);
        }
        true
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                let msg = format!("agent-iam: cannot read plugin configuration: {e:?}");
                ProxyHost.log(Level::Error, &msg);
                return false;
            }
        };
        let foreign: Rc<dyn ForeignCall> = Rc::new(EnvoyForeign);
        let Ok(mut worker) = Worker::configure(&ProxyHost, &bytes, Some(foreign)) else {
            return false;
        };
        worker.set_client_source(source_address);
        worker.set_connection_source(peer_certificate);
        if hostcalls::set_tick_period(worker.tick_period()).is_err() {
            ProxyHost.log(Level::Error, "agent-iam: cannot start the poll timer");
            return false;
        }
        self.worker = Some(Rc::new(RefCell::new(worker)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(mut w) = self.worker.as_ref().and_then(|w| w.try_borrow_mut().ok()) {
            w.on_tick(&ProxyHost);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            worker: self.worker.clone(),
            exchange: Exchange::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request's context: the worker, and what it keeps between this request's callbacks.
struct Http {
    worker: Option<Rc<RefCell<Worker>>>,
    exchange: Exchange,
}

impl Context for Http {}

fn action(outcome: Outcome) -> Action {
    match outcome {
        Outcome::Continue => Action::Continue,
        // A local answer, or (with `allow_on_headers_stop_iteration`) "hold the headers
        // and buffer the body".
        Outcome::Answered | Outcome::NeedBody => Action::Pause,
    }
}

impl Http {
    /// Runs `f` on the worker; without one (or re-entered), the request is refused.
    fn with_worker(&mut self, f: impl FnOnce(&mut Worker, &mut Exchange) -> Outcome) -> Action {
        let outcome = match self.worker.as_ref().map(|w| w.try_borrow_mut()) {
            None => deny_unconfigured(&ProxyHost, "unconfigured"),
            Some(Err(_)) => deny_unconfigured(&ProxyHost, "busy"),
            Some(Ok(mut w)) => f(&mut w, &mut self.exchange),
        };
        action(outcome)
    }
}

impl HttpContext for Http {
    // The SDK's defaults call `proxy_close_stream`, which traps on Kong; the filter never
    // resets a stream (overriding them keeps the import out of the module).
    fn reset_http_request(&self) {}

    fn reset_http_response(&self) {}

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.with_worker(|w, ex| w.on_request(&ProxyHost, ex, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.exchange.waits_for_body() {
            return Action::Continue;
        }
        self.with_worker(|w, ex| w.on_request_body(&ProxyHost, ex, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.exchange.waits_for_body() {
            return Action::Continue;
        }
        self.with_worker(|w, ex| w.on_request_trailers(&ProxyHost, ex))
    }

    fn on_log(&mut self) {
        if !self.exchange.waits_for_body() {
            return;
        }
        if let Some(mut w) = self.worker.as_ref().and_then(|w| w.try_borrow_mut().ok()) {
            w.on_stream_end(&ProxyHost, &mut self.exchange);
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.exchange.filters_response() {
            return Action::Continue;
        }
        self.with_worker(|w, ex| w.on_response_headers(&ProxyHost, ex, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.exchange.filters_response() {
            return Action::Continue;
        }
        self.with_worker(|w, ex| w.on_response_body(&ProxyHost, ex, body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.exchange.filters_response() {
            return Action::Continue;
        }
        self.with_worker(|w, ex| w.on_response_trailers(&ProxyHost, ex))
    }
}
