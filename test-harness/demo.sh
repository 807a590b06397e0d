#!/usr/bin/env bash
# The main job: build the filter, start Envoy with it in front of an echo upstream, and
# play a short scripted agent scenario. Everything runs on 127.0.0.1 and is stopped at exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source test-harness/setup.sh
test-harness/build.sh
exec python test-harness/scripts/demo.py "$@"
