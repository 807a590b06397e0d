#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer) on the parsers and the request pipeline.
#   test-harness/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 10 s, every target)
# Targets: token, config, set, registry_feed, request, target, lists (fuzz/fuzz_targets/). Each run starts
# from the committed corpus fuzz/corpus/<target> (read only) and writes what it finds to
# fuzz/new-corpus/<target> (not tracked); a crash or a hang (> 10 s per input) leaves its
# input in fuzz/artifacts/<target>/ and fails the script. Longer runs:
#   test-harness/fuzz.sh 600                 # 10 minutes per target
#   test-harness/fuzz.sh 3600 token request  # an hour on two targets
# Fold what a long run found into the committed corpus, minimised:
#   (cd fuzz && cp new-corpus/T/* corpus/T/ && cargo +nightly fuzz cmin --sanitizer none T corpus/T)
# Installs what it needs: the nightly toolchain (minimal profile) and cargo-fuzz.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/fuzz"
SECONDS_PER_TARGET="${1:-10}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(token config set registry_feed request target lists)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  # Built with the stable toolchain: its locked dependencies predate current nightlies.
  cargo +stable install cargo-fuzz --version 0.13.1 --locked
fi
# No sanitizer: the code under test is safe Rust (unsafe is denied); libFuzzer's coverage
# guidance and Rust's own checks (overflow, bounds, debug assertions) do the work, and the
# build is minutes shorter.
# Short runs (≤ 30 s per target) build `--dev` (opt-level 1 in fuzz/Cargo.toml: a minute
# shorter to build); longer runs build optimised. `cargo test` replays every committed
# corpus input through the same checks (`fuzz/checks/`, `tests/fuzz_corpus.rs`).
MODE=--release
[ "$SECONDS_PER_TARGET" -le 30 ] && MODE=--dev
cargo +nightly fuzz build "$MODE" --sanitizer none
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "new-corpus/$t"
  echo "==> fuzz $t for ${SECONDS_PER_TARGET}s ($(ls "corpus/$t" | wc -l) corpus inputs)"
  if ! cargo +nightly fuzz run "$MODE" --sanitizer none "$t" "new-corpus/$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -max_len=16384 -print_final_stats=1 \
      2>"/tmp/agent-iam-fuzz-$t.log"; then
    tail -40 "/tmp/agent-iam-fuzz-$t.log"
    status=1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "/tmp/agent-iam-fuzz-$t.log" | tr '\n' ' '; echo
done
exit $status
