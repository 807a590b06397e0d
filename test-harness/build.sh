#!/usr/bin/env bash
# Release builds: the filter (target/wasm32-wasip1/release/agent_iam.wasm) and the native CLI
# (target/release/agent-iam).
#   --for-tests   the filter, a debug CLI (reusing `cargo test`'s build) and the test-only hook
#                 build of the filter (target/wasm32-wasip1/test-hooks/agent_iam.wasm) used to
#                 run Wycheproof inside Envoy; no LTO for either helper, to keep CI fast.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --target wasm32-wasip1
if [ "${1:-}" = "--for-tests" ]; then
  cargo build --locked --bin agent-iam
  cargo build --profile test-hooks --locked --target wasm32-wasip1 --features test-hooks
else
  cargo build --release --locked --bin agent-iam
fi
