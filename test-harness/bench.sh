#!/usr/bin/env bash
# The benchmark command (not part of the test suite): agent-iam side by side with Envoy's
# native jwt_authn + RBAC in one Envoy, then the scale section; writes docs/BENCHMARKS.md
# and docs/benchmarks.json, then the MCP, limits and DPoP rows (test-harness/bench/bench_mcp.py,
# bench_limits.py, bench_dpop.py). Installs
# wrk (apt) and oha (cargo, pinned) when missing.
# Arguments go to test-harness/bench/bench_compare.py (--rounds N, --duration S, --quick).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source test-harness/setup.sh
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
if ! command -v oha >/dev/null && [ ! -x target/bench-tools/bin/oha ]; then
  echo "installing oha 1.12.1 into target/bench-tools (a few minutes, once)"
  cargo install oha --version 1.12.1 --locked --quiet --root target/bench-tools
fi
test-harness/build.sh --for-tests   # bench.py and bench_audit.py time inside Envoy with hooks
test-harness/build.sh
python test-harness/bench/bench_compare.py "$@"
python test-harness/bench/bench_mcp.py
python test-harness/bench/bench_limits.py
exec python test-harness/bench/bench_dpop.py
