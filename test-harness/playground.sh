#!/usr/bin/env bash
# The policy playground: builds the decision core for the browser (wasm32-unknown-unknown,
# wasm-bindgen) into target/playground/site, then serves it with `agent-iam playground` on
# 127.0.0.1 (arguments are passed on; see `agent-iam help`). `--build-only` stops after the
# build (the test suite uses it). Needs only the Rust toolchain: it adds the target and
# installs the pinned wasm-bindgen-cli into target/tools.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# Must equal the `wasm-bindgen` requirement in playground/Cargo.toml.
WASM_BINDGEN=0.2.130
TOOLS="$ROOT/target/tools"
SITE="$ROOT/target/playground/site"

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
if ! "$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -q " $WASM_BINDGEN\$"; then
  echo "playground: installing wasm-bindgen-cli $WASM_BINDGEN into target/tools (once)"
  # Not --locked: its lock file pins a webpki-roots release the registry mirror lacks.
  cargo install --quiet wasm-bindgen-cli --version "$WASM_BINDGEN" --root "$TOOLS"
fi
cargo build --locked -p agent-iam-playground --target wasm32-unknown-unknown --profile playground
rm -rf "$SITE"
mkdir -p "$SITE"
"$TOOLS/bin/wasm-bindgen" --target web --no-typescript --out-dir "$SITE" \
  target/wasm32-unknown-unknown/playground/agent_iam_playground.wasm
cp playground/www/index.html playground/www/app.js playground/www/style.css "$SITE/"
echo "playground: built $SITE ($(du -sh "$SITE" | cut -f1))"
if [ "${1:-}" = "--build-only" ]; then
  exit 0
fi
cargo build --locked --quiet --bin agent-iam
exec "$ROOT/target/debug/agent-iam" playground --site "$SITE" "$@"
