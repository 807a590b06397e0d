//! Remote JWKS (`issuers[].jwks_uri`): one VM per Envoy (lease in shared data) fetches the
//! key set on schedule, or at once when a worker met an unknown `kid` (at most once per
//! `min_refetch_s`), validates it and publishes the usable keys; every worker switches to a
//! new key set on its next request. A failed fetch keeps the last good keys.
//!
//! Shared data: `<base>/head` = `version\nfetched_ms`, `<base>/body` = the usable JWKs as a
//! JSON array, `<base>/lease` and `<base>/refetch-lease` the poll leases, `<base>/want` the
//! time a worker last asked for a refetch.

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use serde_json::Value;

use super::feed::{call_body, dispatch, take_lease, Failures};
use super::log;
use crate::config::JwksUriConfig;
use crate::keys::{usable_keys, Alg, UsableKeys};
use crate::pipeline::Engine;

pub(super) struct JwksFeed {
    /// Index of the issuer in the configuration.
    pub index: usize,
    issuer: String,
    algorithms: Vec<Alg>,
    cfg: JwksUriConfig,
    head_key: String,
    body_key: String,
    lease_key: String,
    refetch_lease_key: String,
    want_key: String,
    in_flight: Option<u32>,
    failures: Failures,
    /// The version this VM last applied to its engine.
    applied: Option<u64>,
}

impl JwksFeed {
    pub fn new(index: usize, issuer: &crate::config::Issuer, cfg: JwksUriConfig) -> JwksFeed {
        let base = format!("agent-iam/jwks/{}", issuer.issuer);
        JwksFeed {
            index,
            issuer: issuer.issuer.clone(),
            algorithms: issuer.algorithms.clone(),
            head_key: format!("{base}/head"),
            body_key: format!("{base}/body"),
            lease_key: format!("{base}/lease"),
            refetch_lease_key: format!("{base}/refetch-lease"),
            want_key: format!("{base}/want"),
            cfg,
            in_flight: None,
            failures: Failures::new("jwks_uri", "the last good keys"),
            applied: None,
        }
    }

    /// A worker met an unknown `kid`: ask the fetching VM for a refetch.
    pub fn want_refetch(&self, now_ms: u64) {
        let _ =
            hostcalls::set_shared_data(&self.want_key, Some(now_ms.to_string().as_bytes()), None);
    }

    fn shared_u64(key: &str) -> u64 {
        match hostcalls::get_shared_data(key) {
            Ok((Some(v), _)) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
            _ => 0,
        }
    }

    fn head(&self) -> Option<(u64, u64)> {
        let head = crate::shared::read_head(&super::ProxyShared, &self.head_key)?;
        Some((head.number()?, head.fresh_ms))
    }

    /// How long ago the published key set was fetched (`None` before the first fetch).
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.head()
            .map(|(_, fetched)| now_ms.saturating_sub(fetched))
    }

    pub fn on_tick(&mut self, now_ms: u64) {
        if self.in_flight.is_some() {
            return;
        }
        let fetched_ms = self.head().map_or(0, |(_, f)| f);
        let wanted = Self::shared_u64(&self.want_key) > fetched_ms;
        // Nothing fetched yet: retry every second until the first success.
        let interval_ms = if fetched_ms == 0 {
            1000
        } else {
            self.cfg.refresh_s.saturating_mul(1000)
        };
        let go = take_lease(&self.lease_key, interval_ms, now_ms)
            || (wanted
                && take_lease(
                    &self.refetch_lease_key,
                    self.cfg.min_refetch_s.saturating_mul(1000),
                    now_ms,
                ));
        if go {
            self.fetch();
        }
    }

    fn fetch(&mut self) {
        let authority = self
            .cfg
            .authority
            .clone()
            .unwrap_or_else(|| self.cfg.cluster.clone());
        let headers = vec![
            (":method", "GET"),
            (":path", self.cfg.path.as_str()),
            (":authority", authority.as_str()),
            ("accept", "application/jwk-set+json, application/json"),
        ];
        match dispatch(&self.cfg.cluster, headers, None, self.cfg.timeout_ms) {
            Ok(t) => self.in_flight = Some(t),
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, why: &str) {
        self.failures.record(&format!("{}: {why}", self.issuer));
    }

    /// Returns true when the callback was ours.
    pub fn on_response(&mut self, token: u32, body_size: usize, now_ms: u64) -> bool {
        if self.in_flight != Some(token) {
            return false;
        }
        self.in_flight = None;
        let body = match call_body(body_size) {
            Ok(b) => b,
            Err(e) => {
                self.failed(&e);
                return true;
            }
        };
        let UsableKeys { keys, skipped } = match usable_keys(&body, &self.algorithms) {
            Ok(x) => x,
            Err(e) => {
                self.failed(&e);
                return true;
            }
        };
        if !skipped.is_empty() {
            log(
                LogLevel::Info,
                &format!(
                    "agent-iam: jwks_uri of {}: skipped {}",
                    self.issuer,
                    skipped.join("; ")
                ),
            );
        }
        let published = Value::Array(keys.into_iter().map(|(_, v)| v).collect()).to_string();
        let previous = match hostcalls::get_shared_data(&self.body_key) {
            Ok((Some(b), _)) => b,
            _ => Vec::new(),
        };
        let version = self.head().map_or(0, |(v, _)| v);
        let version = if previous == published.as_bytes() {
            version
        } else {
            version.saturating_add(1)
        };
        let head = format!("{version}\n{now_ms}");
        let ok = hostcalls::set_shared_data(&self.body_key, Some(published.as_bytes()), None)
            .is_ok()
            && hostcalls::set_shared_data(&self.head_key, Some(head.as_bytes()), None).is_ok();
        if !ok {
            self.failed("cannot write shared data");
            return true;
        }
        self.failures.recovered();
        true
    }

    /// Brings `engine` up to the published keys (one shared-data read when unchanged).
    pub fn sync(&mut self, engine: &mut Engine) {
        let Some((version, _)) = self.head() else {
            return;
        };
        if self.applied == Some(version) {
            return;
        }
        let Ok((Some(body), _)) = hostcalls::get_shared_data(&self.body_key) else {
            return;
        };
        let doc = format!("{{\"keys\":{}}}", String::from_utf8_lossy(&body));
        match usable_keys(doc.as_bytes(), &self.algorithms) {
            Ok(UsableKeys { keys, .. }) => {
                let kids: Vec<String> = keys.iter().map(|(k, _)| k.kid.clone()).collect();
                engine.set_issuer_keys(self.index, keys.into_iter().map(|(k, _)| k).collect());
                self.applied = Some(version);
                log(
                    LogLevel::Info,
                    &format!(
                        "agent-iam: {} keys version {version} applied: kids {kids:?}",
                        self.issuer
                    ),
                );
            }
            Err(e) => log(
                LogLevel::Error,
                &format!("agent-iam: published JWKS of {}: {e}", self.issuer),
            ),
        }
    }
}
