#!/usr/bin/env bash
# What the playground's browser test needs on a fresh machine: Debian's Chromium (apt) and
# playwright-core (npm, pinned by test-harness/browser/package-lock.json; it drives that
# Chromium and downloads no browser of its own).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d "$ROOT/test-harness/browser/node_modules/playwright-core" ]; then
  (cd "$ROOT/test-harness/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
