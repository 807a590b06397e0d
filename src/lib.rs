//! agent-iam: the identity layer for autonomous AI agents, as one proxy-wasm filter.
//!
//! The core (everything but `host`) is host-agnostic and tested natively: `worker` runs
//! every host callback behind the `worker::Host` trait; `host` is the thin proxy-wasm
//! adapter implementing it, compiled for `wasm32-wasip1` only. `playground` serves the
//! browser build of the same core. See DESIGN.md for the contracts.

pub mod agents;
pub mod audit;
pub mod budget;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod decision;
pub mod delegation;
pub mod dpop;
pub mod identity;
pub mod json;
pub mod keys;
pub mod limits;
pub mod mcp;
pub mod mode;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod profile;
pub mod quarantine;
pub mod reason;
pub mod revocation;
pub mod route;
pub mod shared;
pub mod target;
pub mod token;
pub mod worker;

// Not in the filter (wasm32-wasip1): the CLI's and the playground's helpers.
#[cfg(tools)]
pub mod dev;
#[cfg(native)]
pub mod generate;
#[cfg(tools)]
pub mod playground;

// The proxy-wasm adapter: only in the filter. The playground's browser build
// (wasm32-unknown-unknown) has no proxy-wasm host.
#[cfg(filter)]
mod host;

/// Version stamped into the start-up log line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
