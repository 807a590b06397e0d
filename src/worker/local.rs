//! A host in memory: shared data, metrics, logs and calls a test (or the CLI) can see and
//! answer. The native tests of the worker, its pollers and its audit queue run on it, and
//! so do the CLI and the playground (no clusters: a dispatch fails, as on a host without
//! the cluster).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::host::{Host, Level, MetricKind};
use crate::shared::{HostError, Memory, SharedData};

/// One call the worker dispatched.
#[derive(Debug, Clone)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answer being delivered to the worker (see [`LocalHost::answer`]).
#[derive(Debug, Default)]
struct Answer {
    status: Vec<u8>,
    body: Vec<u8>,
}

/// A local answer: status, headers, body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// What a request's processing did to the request: header edits and the local answer.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    pub headers: Vec<(String, Vec<u8>)>,
    pub removed: Vec<String>,
    pub set: Vec<(String, String)>,
    pub response: Option<Response>,
    pub properties: Vec<(String, Vec<u8>)>,
    /// The statuses of the local answers the host refused, in order.
    pub refused: Vec<u16>,
    /// The request body the host buffered.
    pub body: Vec<u8>,
    /// The upstream's response (headers and body), as the worker left them.
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
}

#[derive(Default)]
pub struct LocalHost {
    /// UNIX seconds; `None`: the clock fails.
    pub clock: Cell<Option<f64>>,
    shared: Memory,
    metrics: RefCell<Vec<(String, MetricKind, u64)>>,
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Calls dispatched and not yet answered; `clusters` lists those that exist.
    pub calls: RefCell<Vec<Call>>,
    pub clusters: RefCell<Vec<String>>,
    next_token: Cell<u32>,
    answer: RefCell<Answer>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    /// Envoy's route table, as far as the filter sees it: `(path prefix, the route's
    /// `filter_metadata.agent_iam`: none, or its `route`'s bytes, empty when it has none)`;
    /// the longest prefix of the current `:path` wins.
    pub envoy_routes: RefCell<Vec<(String, Option<String>)>>,
    /// How many times the worker read that metadata.
    pub route_reads: Cell<u32>,
    /// The VM's environment (the process's is never read).
    pub env: RefCell<HashMap<String, String>>,
    pub stream: RefCell<Stream>,
    /// Host calls that fail (by name: "request_headers", "remove", "set", "send_response",
    /// "shared_set").
    pub failing: RefCell<Vec<&'static str>>,
    /// How many of the next local answers the host refuses (besides "send_response" in
    /// `failing`, which refuses them all).
    pub refuse_answers: Cell<u32>,
    /// The host's own signature backend (as the dynamic module has), when set.
    pub native: Option<fn() -> Box<dyn crate::crypto::SignatureBackend>>,
}

impl LocalHost {
    pub fn at(now: f64) -> LocalHost {
        let h = LocalHost::default();
        h.clock.set(Some(now));
        h
    }

    pub fn advance_ms(&self, ms: u64) {
        if let Some(t) = self.clock.get() {
            self.clock.set(Some(t + ms as f64 / 1000.0));
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.get().map_or(0, |t| (t * 1000.0) as u64)
    }

    /// Starts a new request with these headers (pseudo-headers included).
    pub fn request(&self, headers: &[(&str, &str)]) {
        *self.stream.borrow_mut() = Stream {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            ..Stream::default()
        };
    }

    /// Sets the request body the host has buffered.
    pub fn request_body_is(&self, body: &[u8]) {
        self.stream.borrow_mut().body = body.to_vec();
    }

    /// Sets the upstream's response the worker sees.
    pub fn response_is(&self, headers: &[(&str, &str)], body: &[u8]) {
        let mut s = self.stream.borrow_mut();
        s.response_headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        s.response_body = body.to_vec();
    }

    /// Takes the oldest unanswered call to `cluster`.
    pub fn take_call(&self, cluster: &str) -> Option<Call> {
        let mut calls = self.calls.borrow_mut();
        let i = calls.iter().position(|c| c.cluster == cluster)?;
        Some(calls.remove(i))
    }

    /// Sets the answer the next [`super::Worker::on_call_response`] reads.
    pub fn answer(&self, status: &str, body: &[u8]) {
        *self.answer.borrow_mut() = Answer {
            status: status.as_bytes().to_vec(),
            body: body.to_vec(),
        };
    }

    /// A metric's value by name (counters summed, gauges and histograms: the last value).
    pub fn metric_value(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    /// The sum of `agent_iam.decisions_total` over every series with this `decision` (and
    /// `reason`, if given), whatever its check and route.
    pub fn decisions(&self, decision: &str, reason: Option<&str>) -> u64 {
        let prefix = format!("agent_iam.decisions_total.decision.{decision}.");
        self.metrics
            .borrow()
            .iter()
            .filter(|(n, _, _)| n.starts_with(&prefix))
            .filter(|(n, _, _)| reason.is_none_or(|r| n.contains(&format!(".reason.{r}.route."))))
            .map(|(_, _, v)| *v)
            .sum()
    }

    /// Log lines containing `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(_, m)| m.contains(needle))
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn fails(&self, what: &str) -> Result<(), HostError> {
        if self.failing.borrow().contains(&what) {
            Err(HostError(format!("{what} failed")))
        } else {
            Ok(())
        }
    }
}

impl SharedData for LocalHost {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.shared.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.fails("shared_set")?;
        self.shared.set(key, value, cas)
    }
}

impl Host for LocalHost {
    fn now(&self) -> Option<f64> {
        self.clock.get()
    }

    fn log(&self, level: Level, msg: &str) {
        self.logs.borrow_mut().push((level, msg.to_owned()));
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut m = self.metrics.borrow_mut();
        if let Some(i) = m.iter().position(|(n, _, _)| n == name) {
            return u32::try_from(i).ok();
        }
        m.push((name.to_owned(), kind, 0));
        u32::try_from(m.len() - 1).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        if let Some((_, _, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v = v.saturating_add_signed(by);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some((_, _, v)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *v = value;
        }
    }

    fn metric(&self, id: u32) -> Option<u64> {
        self.metrics.borrow().get(id as usize).map(|(_, _, v)| *v)
    }

    fn dispatch(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        _timeout_ms: u64,
    ) -> Result<u32, HostError> {
        if !self.clusters.borrow().iter().any(|c| c == cluster) {
            return Err(HostError("BadArgument".into()));
        }
        let token = self.next_token.get().wrapping_add(1);
        self.next_token.set(token);
        self.calls.borrow_mut().push(Call {
            token,
            cluster: cluster.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.unwrap_or_default().to_vec(),
        });
        Ok(token)
    }

    fn call_status(&self) -> Vec<u8> {
        self.answer.borrow().status.clone()
    }

    fn call_body(&self, size: usize) -> Option<Vec<u8>> {
        let a = self.answer.borrow();
        (size > 0).then(|| a.body.iter().take(size).copied().collect())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let routes = self.envoy_routes.borrow();
        let section = super::ROUTE_METADATA.get(..4).unwrap_or_default();
        let leaf = path == super::ROUTE_METADATA;
        if (leaf || path == section) && !routes.is_empty() {
            self.route_reads.set(self.route_reads.get() + 1);
            let s = self.stream.borrow();
            let target = s.headers.iter().find(|(k, _)| k == ":path")?;
            let target = String::from_utf8_lossy(&target.1);
            let metadata = routes
                .iter()
                .filter(|(prefix, _)| target.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .and_then(|(_, m)| m.clone())?;
            // As Envoy: the section is a serialized map; an empty string reads as none.
            return match (leaf, metadata.is_empty()) {
                (false, _) => Some(b"map".to_vec()),
                (true, true) => None,
                (true, false) => Some(metadata.into_bytes()),
            };
        }
        self.properties.borrow().get(&path.join(".")).cloned()
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.stream
            .borrow_mut()
            .properties
            .push((path.join("."), value.to_vec()));
        Ok(())
    }

    fn memory_bytes(&self) -> Option<u64> {
        None
    }

    fn native_signatures(&self) -> Option<Box<dyn crate::crypto::SignatureBackend>> {
        self.native.map(|make| make())
    }

    fn env(&self, name: &str) -> Option<String> {
        self.env.borrow().get(name).cloned()
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.fails("request_headers")?;
        Ok(self.stream.borrow().headers.clone())
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.stream.borrow();
        s.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.fails("remove")?;
        let mut s = self.stream.borrow_mut();
        s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        s.removed.push(name.to_owned());
        Ok(())
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.fails("set")?;
        let mut s = self.stream.borrow_mut();
        s.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        s.headers.push((name.to_owned(), value.as_bytes().to_vec()));
        s.set.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.fails("request_body")?;
        let s = self.stream.borrow();
        Ok(s.body
            .get(..size.min(s.body.len()))
            .unwrap_or_default()
            .to_vec())
    }

    fn response_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        self.fails("response_headers")?;
        Ok(self.stream.borrow().response_headers.clone())
    }

    fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
        self.fails("remove_response")?;
        let mut s = self.stream.borrow_mut();
        s.response_headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        self.fails("response_body")?;
        let s = self.stream.borrow();
        let end = size.min(s.response_body.len());
        Ok(s.response_body.get(..end).unwrap_or_default().to_vec())
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        self.fails("set_response_body")?;
        let mut s = self.stream.borrow_mut();
        let end = size.min(s.response_body.len());
        s.response_body.splice(..end, body.iter().copied());
        Ok(())
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let refuse = self.refuse_answers.get();
        if refuse > 0 || self.fails("send_response").is_err() {
            self.refuse_answers.set(refuse.saturating_sub(1));
            self.stream.borrow_mut().refused.push(status);
            return Err(HostError("send_response failed".into()));
        }
        self.stream.borrow_mut().response = Some((
            status,
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body.to_vec(),
        ));
        Ok(())
    }
}
