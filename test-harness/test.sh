#!/usr/bin/env bash
# The whole quality gate, the same locally and in CI: fmt, clippy -D warnings (native and
# wasm32-wasip1), unit + golden + Wycheproof tests, release builds, the playground's browser
# build, and the end-to-end suite through a real Envoy and a real (headless) Chromium.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export AGENT_IAM_NEEDS_LINTS=1
source test-harness/setup.sh

step() { printf '\n==> %s\n' "$*"; }
step "cargo fmt --check";                    cargo fmt --check
step "clippy (native, incl. the playground crate)"; cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (wasm32-wasip1, incl. test-hooks)"; cargo clippy --target wasm32-wasip1 --features test-hooks --locked -- -D warnings
step "cargo test";                           cargo test --locked
step "Rego policy tests";                    cargo run -q --locked --bin agent-iam -- policy test policies
step "fuzz smoke (cargo fuzz, 10 s per target)"; test-harness/fuzz.sh 10
step "builds";                               test-harness/build.sh --for-tests
step "playground (browser build) + Chromium, playwright-core"
test-harness/playground.sh --build-only
test-harness/browser-setup.sh
step "end-to-end through Envoy";             AGENT_IAM_CLI="$ROOT/target/debug/agent-iam" python -m pytest -q test-harness
step "sizes"
ls -l target/wasm32-wasip1/release/agent_iam.wasm | awk '{print "agent_iam.wasm: " $5 " bytes"}'
echo "all green"
