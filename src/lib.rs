//! agent-iam: the identity layer for autonomous AI agents, as one proxy-wasm filter.
//!
//! The core (everything but `host`) is host-agnostic and tested natively; `host` is the
//! thin proxy-wasm adapter, compiled for `wasm32` only. See DESIGN.md for the contracts.

pub mod agents;
pub mod audit;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod json;
pub mod keys;
pub mod pipeline;
pub mod policy;
pub mod reason;
pub mod revocation;
pub mod schema;
pub mod token;

#[cfg(not(target_arch = "wasm32"))]
pub mod dev;
#[cfg(not(target_arch = "wasm32"))]
pub mod generate;

#[cfg(target_arch = "wasm32")]
mod host;

/// Version stamped into the start-up log line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
