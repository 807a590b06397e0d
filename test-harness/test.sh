#!/usr/bin/env bash
# The whole quality gate, the same locally and in CI: fmt, clippy -D warnings (native and
# wasm32-wasip1), unit + golden + Wycheproof tests and the fuzz corpora replayed, release
# builds, the playground's browser build, and the end-to-end suite through a real Envoy and a
# real (headless) Chromium. Mutation fuzzing is test-harness/fuzz.sh (nightly, cargo-fuzz).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export AGENT_IAM_NEEDS_LINTS=1
source test-harness/setup.sh

# Chromium and skopeo (apt) and playwright-core (npm) download while the CPU compiles.
mkdir -p test-harness/out
{ test-harness/scripts/browser-setup.sh && test-harness/scripts/skopeo-setup.sh; } >test-harness/out/browser-setup.log 2>&1 &
BROWSER_SETUP=$!

# Name the host target explicitly: build scripts and proc macros are then compiled once and
# shared by the native, wasm32-wasip1 and browser (wasm32-unknown-unknown) builds, instead of
# once per kind (minutes of CI on two cores). Native artifacts go to target/$HOST/.
HOST="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_BUILD_TARGET="$HOST"

step() { printf '\n==> [%4ss] %s\n' "$SECONDS" "$*"; }
step "cargo fmt --check";                    cargo fmt --check
step "clippy (native, incl. the playground crates)"; cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (wasm32-wasip1, incl. test-hooks)"; cargo clippy --target wasm32-wasip1 --features test-hooks --locked -- -D warnings
step "clippy (wasm32-wasip1, the slim build)"; cargo clippy --target wasm32-wasip1 --no-default-features --features slim --locked -- -D warnings
step "cargo deny (licences, duplicate versions, sources)"; cargo deny --workspace --exclude agent-iam-bindgen --all-features check licenses bans sources
# The release module first: tests/kong_imports.rs checks it.
step "builds";                               test-harness/build.sh --for-tests --no-cli
step "cargo test";                           cargo test --locked
step "cargo test (dynamic module: native crypto)"; cargo test --locked -p agent-iam-dynamic-module
# `cargo test` built (and placed) the debug CLI the rest of the suite runs: building it again
# without the test targets would recompile the crate for nothing.
CLI="$ROOT/target/$HOST/debug/agent-iam"
step "Rego policy check and tests";         "$CLI" policy check policies && "$CLI" policy test policies
# The end-to-end tests mostly wait (on Envoy, feeds, poll intervals): the playground's
# browser build uses the CPU they leave, at the lowest priority, and its tests run last.
step "playground (browser build, in the background)"
nice -n 19 test-harness/playground.sh --build-only >test-harness/out/playground-build.log 2>&1 &
PLAYGROUND_BUILD=$!
step "Chromium + playwright-core, skopeo"
wait "$BROWSER_SETUP" || { cat test-harness/out/browser-setup.log; exit 1; }
step "end-to-end through Envoy"
AGENT_IAM_CLI="$CLI" python -m pytest -q -n 2 --dist loadfile --durations=25 test-harness/e2e \
  --ignore=test-harness/e2e/test_playground_e2e.py
# The same core as an Envoy dynamic module (native): the groups that decide requests.
step "end-to-end through Envoy: the dynamic module"
AGENT_IAM_BUILD=dynamic-module AGENT_IAM_CLI="$CLI" python -m pytest -q -n 2 --dist loadfile --durations=5 \
  $(printf 'test-harness/e2e/test_%s.py ' golden_envoy wycheproof_envoy integrity_e2e e2e identity_e2e \
      profiles_e2e agents_e2e revocation_e2e mcp_e2e dpop_e2e failure_e2e audit_e2e limits_e2e \
      decision_cache_e2e)
step "playground build finished"
wait "$PLAYGROUND_BUILD" || { cat test-harness/out/playground-build.log; exit 1; }
tail -n 1 test-harness/out/playground-build.log
step "end-to-end: the playground in Chromium, and the gateway's same decisions"
AGENT_IAM_CLI="$CLI" python -m pytest -q -n 2 --durations=5 test-harness/e2e/test_playground_e2e.py
step "sizes"
ls -l target/wasm32-wasip1/release/agent_iam.wasm | awk '{print "agent_iam.wasm: " $5 " bytes"}'
ls -l target/libagent_iam.so | awk '{print "libagent_iam.so: " $5 " bytes"}'
echo "all green in ${SECONDS}s"
