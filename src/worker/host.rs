//! The seam between the worker and its host: every call the filter makes into Envoy or
//! Kong, as one trait. `src/host/` implements it over proxy-wasm; [`super::local`] in
//! memory, for the CLI, the playground and the native tests.

use crate::shared::{HostError, SharedData};

/// A log line's level (proxy-wasm's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// The kind of a metric the host keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// What the host offers a worker. Calls that can fail return `Result`; an error on the
/// request path denies (the worker never assumes a host call worked).
pub trait Host: SharedData {
    /// Wall-clock time, UNIX seconds (`None`: the host cannot tell).
    fn now(&self) -> Option<f64>;
    /// Writes one log line (the worker has already folded it onto one line).
    fn log(&self, level: Level, msg: &str);

    /// Defines (or finds) a metric shared by every worker of this host.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, by: i64);
    fn record_metric(&self, id: u32, value: u64);
    fn metric(&self, id: u32) -> Option<u64>;

    /// Sends an HTTP call through the host's `cluster`; the answer arrives as
    /// [`super::Worker::on_call_response`] with the returned token.
    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, HostError>;
    /// The `:status` of the call answer being delivered (empty: none, e.g. a timeout).
    fn call_status(&self) -> Vec<u8>;
    /// The body of the call answer being delivered.
    fn call_body(&self, size: usize) -> Option<Vec<u8>>;

    /// A host property (`["xds", "node"]`); `None` when the host has none.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a property of the current request (filter state).
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// This VM's linear memory, in bytes (`None` outside a VM).
    fn memory_bytes(&self) -> Option<u64>;
    /// The host's own signature verification, when it has one (the dynamic module's native
    /// crypto): `signature_backend` `host` and `auto` use it.
    fn native_signatures(&self) -> Option<Box<dyn crate::crypto::SignatureBackend>> {
        None
    }
    /// A variable of the VM's environment: in the filter, the WASI environment the loader
    /// sets (Envoy's `vm_config.environment_variables`, Istio's `vmConfig.env`).
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// Every header of the current request, in order (names as the host reports them).
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// One request header (the first copy).
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// The request body the host has buffered (the first `size` bytes).
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Every header of the current response, in order.
    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    fn remove_response_header(&self, name: &str) -> Result<(), HostError>;
    /// The response body the host has buffered (the first `size` bytes).
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the buffered response body (all `size` bytes of it) with `body`.
    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// Answers the current request locally (it does not go upstream).
    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
}

/// Logs one line, folded onto one line: values from feeds and peers never start a line of
/// their own.
pub fn log(host: &dyn Host, level: Level, msg: &str) {
    host.log(level, &crate::audit::one_line(msg));
}

/// Answers the current request locally with `status`, `headers` and `body`. When the host
/// refuses that answer, a bare 500 (no headers, no body) instead; when it refuses that too,
/// the caller still stops the request ([`super::Outcome::Answered`]): it never goes
/// upstream. Only calls every host has: Kong's has no stream reset.
pub fn answer(host: &dyn Host, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let Err(e) = host.send_response(status, headers, body) else {
        return;
    };
    log(
        host,
        Level::Error,
        &format!(
            "agent-iam: the host refused the {status} answer ({}); answering a bare 500",
            e.0
        ),
    );
    if let Err(e) = host.send_response(500, &[], &[]) {
        log(
            host,
            Level::Critical,
            &format!(
                "agent-iam: the host refused the bare 500 too ({}); the request is held and never goes upstream",
                e.0
            ),
        );
    }
}

/// A counter or gauge the worker may have failed to define (then nothing is counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Metric(Option<u32>);

impl Metric {
    pub fn define(host: &dyn Host, kind: MetricKind, name: &str) -> Metric {
        Metric(host.define_metric(kind, name))
    }

    pub fn counter(host: &dyn Host, name: &str) -> Metric {
        Metric::define(host, MetricKind::Counter, name)
    }

    pub fn gauge(host: &dyn Host, name: &str) -> Metric {
        Metric::define(host, MetricKind::Gauge, name)
    }

    pub fn add(self, host: &dyn Host, n: i64) {
        if let (Some(id), true) = (self.0, n != 0) {
            host.increment_metric(id, n);
        }
    }

    pub fn record(self, host: &dyn Host, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
    }

    pub fn value(self, host: &dyn Host) -> Option<u64> {
        self.0.and_then(|id| host.metric(id))
    }

    pub fn is_defined(self) -> bool {
        self.0.is_some()
    }
}
