#!/usr/bin/env bash
# Builds the filter (target/wasm32-wasip1/release/agent_iam.wasm) and the native CLI.
#   (no flag)     release CLI (target/release/agent-iam), for the demo and benchmarks
#   --for-tests   debug CLI (reusing `cargo test`'s build) and, first, the test-only hook build
#                 of the filter, copied to target/agent_iam_test_hooks.wasm (same profile and
#                 dependency artifacts as the release filter: only our crate is rebuilt).
#                 `--for-tests --no-cli` skips the CLI (test.sh uses the one `cargo test` built).
# Both modes also build the dynamic module (native, for Envoy's dynamic_modules filter) to
# target/libagent_iam.so, and with --for-tests its test-hook build to
# target/libagent_iam_test_hooks.so.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST="$(rustc -vV | sed -n 's/^host: //p')"
dm_build() {
  local out="$1"; shift
  CARGO_BUILD_TARGET="$HOST" cargo build --locked --profile release-dm -p agent-iam-dynamic-module "$@"
  cp "target/$HOST/release-dm/libagent_iam_dm.so" "$out"
}
if [ "${1:-}" = "--for-tests" ]; then
  cargo build --release --locked --target wasm32-wasip1 --features test-hooks
  cp target/wasm32-wasip1/release/agent_iam.wasm target/agent_iam_test_hooks.wasm
  cargo build --release --locked --target wasm32-wasip1
  dm_build target/libagent_iam_test_hooks.so --features test-hooks
  dm_build target/libagent_iam.so
  if [ "${2:-}" != "--no-cli" ]; then
    cargo build --locked --bin agent-iam
  fi
else
  cargo build --release --locked --target wasm32-wasip1
  dm_build target/libagent_iam.so
  cargo build --release --locked --bin agent-iam
fi
