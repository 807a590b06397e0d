//! Remote JWKS (`issuers[].jwks_uri`): one VM per host (lease in shared data) fetches the
//! key set on schedule, or at once when a worker met an unknown `kid` (at most once per
//! `min_refetch_s`), validates it and publishes the usable keys; every worker switches to a
//! new key set on its next request. A failed fetch keeps the last good keys.
//!
//! Shared data: `<base>/head` = `version\nfetched_ms`, `<base>/body` = the usable JWKs as a
//! JSON array, `<base>/lease` and `<base>/refetch-lease` the poll leases, `<base>/want` the
//! time a worker last asked for a refetch.

use serde_json::Value;

use super::host::{log, Host, Level};
use super::poll::{Endpoint, Poll};
use crate::keys::{usable_keys, Alg, JwksUriConfig, UsableKeys};
use crate::pipeline::Engine;
use crate::shared::{publish, read_head, take_lease, Head};

pub struct JwksFeed {
    /// Index of the issuer in the configuration.
    pub index: usize,
    issuer: String,
    algorithms: Vec<Alg>,
    refresh_ms: u64,
    min_refetch_ms: u64,
    head_key: String,
    body_key: String,
    refetch_lease_key: String,
    want_key: String,
    poll: Poll,
    /// The version this VM last applied to its engine.
    applied: Option<u64>,
}

impl JwksFeed {
    pub fn new(index: usize, issuer: &crate::token::Issuer, cfg: &JwksUriConfig) -> JwksFeed {
        let base = format!("agent-iam/jwks/{}", issuer.issuer);
        let endpoint = Endpoint::new(
            &cfg.cluster,
            &cfg.path,
            cfg.authority.as_deref(),
            cfg.timeout_ms,
        );
        JwksFeed {
            index,
            issuer: issuer.issuer.clone(),
            algorithms: issuer.algorithms.clone(),
            refresh_ms: cfg.refresh_s.saturating_mul(1000),
            min_refetch_ms: cfg.min_refetch_s.saturating_mul(1000),
            head_key: format!("{base}/head"),
            body_key: format!("{base}/body"),
            refetch_lease_key: format!("{base}/refetch-lease"),
            want_key: format!("{base}/want"),
            poll: Poll::new(
                endpoint,
                format!("{base}/lease"),
                "jwks_uri",
                "the last good keys",
            ),
            applied: None,
        }
    }

    /// A worker met an unknown `kid`: ask the fetching VM for a refetch.
    pub fn want_refetch(&self, host: &dyn Host, now_ms: u64) {
        let _ = host.set(&self.want_key, now_ms.to_string().as_bytes(), None);
    }

    fn wanted_at(&self, host: &dyn Host) -> u64 {
        match host.get(&self.want_key) {
            Ok((Some(v), _)) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
            _ => 0,
        }
    }

    fn head(&self, host: &dyn Host) -> Option<(u64, u64)> {
        let head = read_head(host, &self.head_key)?;
        Some((head.number()?, head.fresh_ms))
    }

    /// How long ago the published key set was fetched (`None` before the first fetch).
    pub fn age_ms(&self, host: &dyn Host, now_ms: u64) -> Option<u64> {
        self.head(host)
            .map(|(_, fetched)| now_ms.saturating_sub(fetched))
    }

    pub fn on_tick(&mut self, host: &dyn Host, now_ms: u64) {
        if self.poll.busy() {
            return;
        }
        let fetched_ms = self.head(host).map_or(0, |(_, f)| f);
        let wanted = self.wanted_at(host) > fetched_ms;
        // Nothing fetched yet: retry every second until the first success.
        let interval_ms = if fetched_ms == 0 {
            1000
        } else {
            self.refresh_ms
        };
        let go = self.poll.take_lease(host, interval_ms, now_ms)
            || (wanted && take_lease(host, &self.refetch_lease_key, self.min_refetch_ms, now_ms));
        if !go {
            return;
        }
        let accept = [("accept", "application/jwk-set+json, application/json")];
        if let Err(e) = self.poll.send(host, "GET", &accept, None) {
            self.failed(host, &e);
        }
    }

    fn failed(&mut self, host: &dyn Host, why: &str) {
        let why = format!("{}: {why}", self.issuer);
        self.poll.failed(host, &why);
    }

    /// Returns true when the call answer was ours.
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        body_size: usize,
        now_ms: u64,
    ) -> bool {
        let Some(answer) = self.poll.answer(host, token, body_size) else {
            return false;
        };
        if let Err(e) = answer.and_then(|body| self.publish(host, &body, now_ms)) {
            self.failed(host, &e);
        }
        true
    }

    fn publish(&mut self, host: &dyn Host, body: &[u8], now_ms: u64) -> Result<(), String> {
        let UsableKeys { keys, skipped } = usable_keys(body, &self.algorithms)?;
        if !skipped.is_empty() {
            log(
                host,
                Level::Info,
                &format!(
                    "agent-iam: jwks_uri of {}: skipped {}",
                    self.issuer,
                    skipped.join("; ")
                ),
            );
        }
        let published = Value::Array(keys.into_iter().map(|(_, v)| v).collect()).to_string();
        let previous = match host.get(&self.body_key) {
            Ok((Some(b), _)) => b,
            _ => Vec::new(),
        };
        let version = self.head(host).map_or(0, |(v, _)| v);
        let version = if previous == published.as_bytes() {
            version
        } else {
            version.saturating_add(1)
        };
        let head = Head::new(version.to_string(), now_ms).ok_or("bad head")?;
        publish(
            host,
            &self.body_key,
            Some(published.as_bytes()),
            &self.head_key,
            &head,
        )
        .map_err(|_| "cannot write shared data".to_owned())?;
        self.poll.recovered(host);
        Ok(())
    }

    /// Brings `engine` up to the published keys (one shared-data read when unchanged).
    pub fn sync(&mut self, host: &dyn Host, engine: &mut Engine) {
        let Some((version, _)) = self.head(host) else {
            return;
        };
        if self.applied == Some(version) {
            return;
        }
        let Ok((Some(body), _)) = host.get(&self.body_key) else {
            return;
        };
        let doc = format!("{{\"keys\":{}}}", String::from_utf8_lossy(&body));
        match usable_keys(doc.as_bytes(), &self.algorithms) {
            Ok(UsableKeys { keys, .. }) => {
                let kids: Vec<String> = keys.iter().map(|(k, _)| k.kid.clone()).collect();
                engine.set_issuer_keys(self.index, keys.into_iter().map(|(k, _)| k).collect());
                self.applied = Some(version);
                log(
                    host,
                    Level::Info,
                    &format!(
                        "agent-iam: {} keys version {version} applied: kids {kids:?}",
                        self.issuer
                    ),
                );
            }
            Err(e) => log(
                host,
                Level::Error,
                &format!("agent-iam: published JWKS of {}: {e}", self.issuer),
            ),
        }
    }
}
