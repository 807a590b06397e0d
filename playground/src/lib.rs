//! The playground's browser module: the wasm-bindgen surface over `agent_iam::playground`.
//! Every function takes and returns JSON text; the page parses and draws it. No decision
//! logic lives here or in JavaScript.

use wasm_bindgen::prelude::wasm_bindgen;

/// Decides one request (`{"config", "policy_files", "request", "token", "now"}`) as the
/// gateway would: decision, response, delegation chain, audit event, notes or errors.
#[wasm_bindgen]
pub fn evaluate(inputs: &str) -> String {
    agent_iam::playground::evaluate(inputs).to_string()
}

/// The POST an MCP client would send (`{"method", "name", "arguments", "protocol_version"}`):
/// its headers and JSON-RPC body, for the page's editors.
#[wasm_bindgen]
pub fn mcp_request(spec: &str) -> String {
    agent_iam::playground::mcp_request(spec).to_string()
}

/// A `_test.rego` module pinning the policy's verdict on an `input`
/// (`{"config", "policy_files", "input", "existing"}`).
#[wasm_bindgen]
pub fn export_test(inputs: &str) -> String {
    agent_iam::playground::export_test(inputs).to_string()
}

/// Re-decides one recorded decision event with the page's policy
/// (`{"config", "policy_files", "event"}`).
#[wasm_bindgen]
pub fn replay(inputs: &str) -> String {
    agent_iam::playground::replay(inputs).to_string()
}

/// Runs the policy files' `test_*` rules (`{path: text}`).
#[wasm_bindgen]
pub fn policy_tests(files: &str) -> String {
    agent_iam::playground::policy_tests(files).to_string()
}

/// A token's header and claims for display (not verified).
#[wasm_bindgen]
pub fn decode_token(token: &str) -> String {
    agent_iam::playground::decode_token(token).to_string()
}

/// A demo token from a `dev mint` recipe, signed with the demo keys (test keys only).
#[wasm_bindgen]
pub fn mint(keys: &str, recipe: &str, now: f64) -> String {
    agent_iam::playground::mint(keys, recipe, now).to_string()
}

/// The core's version.
#[wasm_bindgen]
pub fn version() -> String {
    agent_iam::VERSION.to_owned()
}
