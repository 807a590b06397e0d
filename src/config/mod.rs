//! Plugin configuration, strict and in two phases. Every problem carries its JSON path;
//! the filter refuses to start with a configuration it does not fully understand.
//!
//! - `raw`: phase 1, the serde types operators write (unknown keys are errors);
//! - [`schema`]: the JSON Schema generated from them (Kong's `config_schema`) and the
//!   structural check that reports every structural problem at once;
//! - `validate`: phase 2, values and cross-field rules, one file per section;
//! - `validated`: the [`Config`] the pipeline runs on (its routes are [`crate::route`]'s,
//!   a leaf the policy input imports without the configuration).
//!
//! Only [`Config::from_json`] runs the phases in order: strict JSON, the structural
//! check, serde, then `validate` (which compiles the policy last).

mod raw;
pub mod schema;
mod validate;
mod validated;

pub use crate::keys::{JwksConfig, JwksUriConfig};
pub use crate::problem::Problem;
pub use crate::route::{PathMatch, Route};
pub use crate::token::{normalize_typ, Issuer};
pub use raw::{
    AgentsConfig, AlgName, BackendChoice, CacheConfig, CheckConfig, ChecksConfig, DelegationConfig,
    DpopConfig, FeedConfig, HeaderNames, IssuerConfig, PluginConfig, RequestConfig, RouteConfig,
    SemicolonMode, SenderConstraint, UnmatchedRoute, UpstreamConfig,
};
pub use schema::{config_schema_draft4, kong_meta};
pub use validated::{Config, DpopRules};

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<Problem>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid plugin configuration: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Most nesting a configuration document may have.
const CONFIG_MAX_DEPTH: usize = 64;

impl Config {
    /// Parses and validates a configuration document, collecting every problem.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let one = |path: &str, message: String| {
            ConfigError(vec![Problem {
                path: path.into(),
                message,
            }])
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(one(
                "$",
                "empty configuration; expected a JSON object with `issuers`".into(),
            ));
        }
        let value = crate::json::parse_strict(bytes, CONFIG_MAX_DEPTH)
            .map_err(|e| one("$", e.to_string()))?;
        let moved = moved_keys(&value);
        if !moved.is_empty() {
            return Err(ConfigError(moved));
        }
        let structural = schema::structural_problems(&config_schema_draft4(), &value);
        if !structural.is_empty() {
            return Err(ConfigError(structural));
        }
        let raw: PluginConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            one(&json_path(&path), e.into_inner().to_string())
        })?;
        raw.validate()
    }
}

/// Keys that moved, each with where it went (a plain "unknown member" would not say).
fn moved_keys(value: &serde_json::Value) -> Vec<Problem> {
    let moves = [
        (
            "/agents/feed/on_stale",
            "$.agents.feed.on_stale",
            "checks.delegation.failure_mode",
        ),
        (
            "/revocation/on_stale",
            "$.revocation.on_stale",
            "checks.revocation.failure_mode",
        ),
    ];
    moves
        .iter()
        .filter(|(pointer, _, _)| value.pointer(pointer).is_some())
        .map(|(_, path, to)| Problem {
            path: (*path).into(),
            message: format!(
                "moved to `{to}` (same values, and `deny`, `last_good` or `allow_safe_methods` for every feed)"
            ),
        })
        .collect()
}

/// serde_path_to_error's path (`issuers[0].jwks`, `.` for the root) as a JSON path.
fn json_path(serde_path: &str) -> String {
    if serde_path == "." || serde_path.is_empty() {
        "$".into()
    } else {
        format!("$.{serde_path}")
    }
}

#[cfg(test)]
mod tests;
