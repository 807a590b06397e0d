#!/usr/bin/env bash
# Builds the release bundle: dist/agent-iam-<version>/ and dist/agent-iam-<version>.tar.gz
# (the module, its SHA-256, Kong's meta file, OCI image layouts, the SBOM, the changelog
# entry, the licence). docs/releases.md says what each file is for.
#   --allow-dirty   make it from uncommitted changes too (refused otherwise)
#   --no-build      use the module already built (target/wasm32-wasip1/release/agent_iam.wasm)
#   --out DIR       write into DIR instead of dist/
set -euo pipefail
cd "$(dirname "$0")/.."
args=() build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --allow-dirty) args+=(--allow-dirty) ;;
    --no-build) build=0 ;;
    --out) args+=(--out "$2"); shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "dist: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$build" = 1 ]; then
  if [[ ! " ${args[*]-} " =~ " --allow-dirty " ]] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    echo "dist: the work tree has uncommitted changes (--allow-dirty makes the bundle anyway)" >&2
    exit 1
  fi
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
  cargo build --release --locked --target wasm32-wasip1
fi
exec python3 test-harness/scripts/dist.py "${args[@]}"
