#!/usr/bin/env bash
# The policy playground: builds the decision core for the browser (wasm32-unknown-unknown,
# wasm-bindgen) into target/playground/site, then serves it with `agent-iam playground` on
# 127.0.0.1 (arguments are passed on; see `agent-iam help`). `--build-only` stops after the
# build (the test suite uses it). Needs only the Rust toolchain: it adds the target; the
# bindings generator (playground/bindgen) is a workspace member pinned by Cargo.lock.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SITE="$ROOT/target/playground/site"

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
  || rustup target add wasm32-unknown-unknown
cargo build --locked -p agent-iam-playground --target wasm32-unknown-unknown
rm -rf "$SITE"
mkdir -p "$SITE"
# The JS bindings, with wasm-bindgen's library at the version the playground crate pins.
cargo run --locked --quiet -p agent-iam-bindgen -- \
  target/wasm32-unknown-unknown/debug/agent_iam_playground.wasm "$SITE"
cp playground/www/index.html playground/www/app.js playground/www/style.css "$SITE/"
echo "playground: built $SITE ($(du -sh "$SITE" | cut -f1))"
if [ "${1:-}" = "--build-only" ]; then
  exit 0
fi
cargo build --locked --quiet --bin agent-iam
exec "$ROOT/target/debug/agent-iam" playground --site "$SITE" "$@"
