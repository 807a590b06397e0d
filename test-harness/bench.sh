#!/usr/bin/env bash
# Benchmarks through a real Envoy with wrk (installs wrk with apt if missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source test-harness/setup.sh
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
test-harness/build.sh --for-tests   # the test-hook filter times decisions inside Envoy
test-harness/build.sh
exec python test-harness/bench.py "$@"
