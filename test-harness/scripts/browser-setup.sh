#!/usr/bin/env bash
# What the playground's browser test needs on a fresh machine: Debian's Chromium (apt) and
# playwright-core (npm, pinned by test-harness/e2e/browser/package-lock.json; it drives that
# Chromium and downloads no browser of its own).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then
  echo "browser-setup: Node.js >= 20 with npm is required (playwright-core 1.65); found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi
if [ ! -d "$ROOT/test-harness/e2e/browser/node_modules/playwright-core" ]; then
  (cd "$ROOT/test-harness/e2e/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
