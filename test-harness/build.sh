#!/usr/bin/env bash
# Release builds: the filter (target/wasm32-wasip1/release/agent_iam.wasm), the native CLI
# (target/release/agent-iam) and, with --with-test-hooks, the test-only hook build of the
# filter used to run Wycheproof inside Envoy (target/test-hooks/...).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --target wasm32-wasip1
cargo build --release --locked --bin agent-iam
if [ "${1:-}" = "--with-test-hooks" ]; then
  cargo build --release --locked --target wasm32-wasip1 --features test-hooks --target-dir target/test-hooks
fi
