//! The `policy` section of the plugin configuration, and the revision that names it.

use std::collections::BTreeMap;

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default entry point.
pub const DEFAULT_ENTRYPOINT: &str = "data.agent_iam.authz.decision";

/// The `policy` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rego modules by file name (`agent-iam policy render` fills this from `policies/`).
    pub modules: BTreeMap<String, String>,
    /// The data document (`data.*` besides the policies' rules).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The rule whose value decides (bool or `{"allow", "reason", "status", "headers"}`).
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Wall-clock budget for one evaluation, in milliseconds (1..=1000): the backstop for
    /// expensive builtins. It counts real time, preemption included, so it is generous;
    /// `max_instructions` is the deterministic bound.
    #[serde(default = "default_eval_ms")]
    pub max_eval_ms: u64,
    /// RVM instruction budget for one evaluation (1000..=10000000). The shipped default
    /// policy executes a few hundred.
    #[serde(default = "default_max_instructions")]
    pub max_instructions: u64,
    /// Upstream headers the policy may set besides those under `upstream.reserved_prefix`
    /// (lower-case names). Every client copy of them is removed from every request; a
    /// decision that sets any other header is a `policy.error`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Verdicts kept for reuse (0..=1000000; 0, the default: evaluate every request). A
    /// request whose `input` equals an earlier one's at every member the policy's text
    /// names gets that verdict again; `agent-iam policy check` shows what a policy's key
    /// holds, or why it cannot be cached.
    #[serde(default = "default_decision_cache_entries")]
    pub decision_cache_entries: u64,
    /// The clock the policy sees, floored to this many seconds (1..=3600): `input.time`
    /// changes in steps, and a policy that reads it can be cached. Unset: the exact time,
    /// and such a policy is evaluated on every request.
    #[serde(default)]
    pub time_resolution_s: Option<u64>,
}

fn default_entrypoint() -> String {
    DEFAULT_ENTRYPOINT.into()
}
fn default_eval_ms() -> u64 {
    50
}
pub(super) fn default_max_instructions() -> u64 {
    100_000
}
pub(super) fn default_decision_cache_entries() -> u64 {
    0
}

/// Revision: SHA-256 over the sorted modules, the data and the entrypoint (12 hex chars),
/// and `time_resolution_s` when set (it changes the time the policy decides on).
pub fn revision(cfg: &PolicyConfig) -> String {
    let mut h = Sha256::new();
    for (name, text) in &cfg.modules {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    h.update(
        cfg.data
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update([0]);
    h.update(cfg.entrypoint.as_bytes());
    if let Some(r) = cfg.time_resolution_s {
        h.update(format!("\0time_resolution_s={r}").as_bytes());
    }
    hex::encode(h.finalize()).chars().take(12).collect()
}
