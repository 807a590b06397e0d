//! The `audit` section of the plugin configuration.

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;

/// The `audit` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Write each event as a log line `agent-iam audit {json}` through the host. Default:
    /// on unless `filter_state` or `collector` carries the events (the log line is the
    /// dearest output, and the only one that needs no further configuration).
    #[serde(default)]
    pub log: Option<bool>,
    /// Put each event in the request's filter state (`wasm.agent_iam.audit`) for the host's
    /// access logs (default false).
    #[serde(default)]
    pub filter_state: bool,
    /// Longest quiet time of a stream before it writes a checkpoint (1..=3600 s; default 60).
    #[serde(default = "default_checkpoint_s")]
    pub checkpoint_s: u64,
    /// Batch events to an HTTP collector (an Envoy cluster).
    #[serde(default)]
    pub collector: Option<CollectorConfig>,
    /// Who chose the `x-request-id` recorded in each event (`request.id_source`): `client`
    /// (default: Envoy keeps a client's id for requests from internal addresses, and for
    /// every request when `use_remote_address` is off) or `envoy` (only when the connection
    /// manager replaces every client's id, as `agent-iam generate envoy` writes it).
    #[serde(default)]
    pub request_id_from: RequestIdFrom,
    /// What a decision event's policy `input` (routes with `audit_policy_input`) leaves
    /// out: these request headers and token claims read `"(redacted)"`.
    #[serde(default)]
    pub policy_input_redact: RedactConfig,
}

/// `audit.policy_input_redact`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Request header names (lower-case).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Token claim names (top-level).
    #[serde(default)]
    pub claims: Vec<String>,
}

/// `audit.request_id_from`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RequestIdFrom {
    #[default]
    Client,
    Envoy,
}

impl RequestIdFrom {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RequestIdFrom::Client => "client",
            RequestIdFrom::Envoy => "envoy",
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            log: None,
            filter_state: false,
            checkpoint_s: default_checkpoint_s(),
            collector: None,
            request_id_from: RequestIdFrom::Client,
            policy_input_redact: RedactConfig::default(),
        }
    }
}

fn default_checkpoint_s() -> u64 {
    60
}

/// Where and how to send batches of events.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Envoy cluster of the collector.
    pub cluster: String,
    /// Path that receives `POST`ed batches (newline-delimited JSON).
    pub path: String,
    /// `:authority` (defaults to the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Events per batch (1..=1000; default 100); a full batch is sent at once.
    #[serde(default = "default_batch_max")]
    pub batch_max: u64,
    /// A partial batch waits at most this long (10..=60000 ms; default 1000).
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// Events kept per worker while the collector is slow or down (1..=1000000; default
    /// 10000); beyond it the oldest are dropped and counted.
    #[serde(default = "default_max_queue")]
    pub max_queue: u64,
    /// Per-batch timeout (10..=60000 ms; default 2000).
    #[serde(default = "default_collector_timeout_ms")]
    pub timeout_ms: u64,
    /// Longest wait between retries; the wait doubles from 100 ms after each failure
    /// (100..=600000 ms; default 30000).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_batch_max() -> u64 {
    100
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_max_queue() -> u64 {
    10_000
}
fn default_collector_timeout_ms() -> u64 {
    2000
}
fn default_backoff_max_ms() -> u64 {
    30_000
}

impl AuditConfig {
    /// Whether events are written as log lines (see `log`).
    pub fn log_lines(&self) -> bool {
        self.log
            .unwrap_or(!self.filter_state && self.collector.is_none())
    }

    /// Checks value ranges, naming each problem's JSON path.
    pub fn validate(&self, problems: &mut Vec<crate::problem::Problem>) {
        let mut bad = |path: &str, message: String| {
            problems.push(crate::problem::Problem {
                path: format!("$.audit.{path}"),
                message,
            })
        };
        for (i, h) in self.policy_input_redact.headers.iter().enumerate() {
            if h.is_empty()
                || h.bytes().any(|b| {
                    !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                })
            {
                bad(
                    &format!("policy_input_redact.headers[{i}]"),
                    format!("\"{h}\" is not a lower-case header name"),
                );
            }
        }
        for (i, c) in self.policy_input_redact.claims.iter().enumerate() {
            if c.is_empty() {
                bad(
                    &format!("policy_input_redact.claims[{i}]"),
                    "a claim name is not empty".into(),
                );
            }
        }
        if !(1..=3600).contains(&self.checkpoint_s) {
            bad(
                "checkpoint_s",
                format!("{} is outside 1..=3600", self.checkpoint_s),
            );
        }
        let Some(c) = &self.collector else {
            if !self.log_lines() && !self.filter_state {
                bad(
                    "log",
                    "every audit output is off: enable `log`, `filter_state` or `collector`".into(),
                );
            }
            return;
        };
        if c.cluster.is_empty() {
            bad("collector.cluster", "must name an Envoy cluster".into());
        }
        if !c.path.starts_with('/') {
            bad(
                "collector.path",
                format!("\"{}\" must start with `/`", c.path),
            );
        }
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("batch_max", c.batch_max, 1, 1000),
            ("flush_interval_ms", c.flush_interval_ms, 10, 60_000),
            ("max_queue", c.max_queue, 1, 1_000_000),
            ("timeout_ms", c.timeout_ms, 10, 60_000),
            ("backoff_max_ms", c.backoff_max_ms, 100, 600_000),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                bad(
                    &format!("collector.{name}"),
                    format!("{v} is outside {lo}..={hi}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_config_is_checked() {
        let mut p = Vec::new();
        let c: AuditConfig =
            serde_json::from_value(json!({"log": false, "checkpoint_s": 0})).unwrap();
        c.validate(&mut p);
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["$.audit.checkpoint_s", "$.audit.log"]);
        let mut p = Vec::new();
        let c: AuditConfig = serde_json::from_value(
            json!({"collector": {"cluster": "", "path": "x", "batch_max": 0, "max_queue": 0}}),
        )
        .unwrap();
        c.validate(&mut p);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(serde_json::from_value::<AuditConfig>(json!({"colector": {}})).is_err());
    }
}
