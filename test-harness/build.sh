#!/usr/bin/env bash
# Builds the filter (target/wasm32-wasip1/release/agent_iam.wasm) and the native CLI.
#   (no flag)     release CLI (target/release/agent-iam), for the demo and benchmarks
#   --for-tests   debug CLI (reusing `cargo test`'s build) and, first, the test-only hook build
#                 of the filter, copied to target/agent_iam_test_hooks.wasm (same profile and
#                 dependency artifacts as the release filter: only our crate is rebuilt).
#                 `--for-tests --no-cli` skips the CLI (test.sh uses the one `cargo test` built).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--for-tests" ]; then
  cargo build --release --locked --target wasm32-wasip1 --features test-hooks
  cp target/wasm32-wasip1/release/agent_iam.wasm target/agent_iam_test_hooks.wasm
  cargo build --release --locked --target wasm32-wasip1
  if [ "${2:-}" != "--no-cli" ]; then
    cargo build --locked --bin agent-iam
  fi
else
  cargo build --release --locked --target wasm32-wasip1
  cargo build --release --locked --bin agent-iam
fi
