"""Envoy's start-to-ready time for one or more filter modules, interleaved (the VM start
target of the performance issue: V8 compiles the whole module before the first request).

One Envoy per run, `--concurrency 1`, unpinned (V8 compiles on background threads), the
shipped plugin without policy or feed (so a module built without some policy builtins
still configures), Envoy answering 200 itself after the filter.

Usage: python test-harness/bench/bench_start.py [--runs 4] [WASM...]
(default: the release module, target/wasm32-wasip1/release/agent_iam.wasm). Prints each
module's size, its ready times and their median. Not part of the test suite."""

import argparse
import json
import statistics
from pathlib import Path

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("wasm", nargs="*", default=[str(harness.WASM)])
    args = ap.parse_args()
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin.pop("policy", None)
    plugin["agents"].pop("feed", None)
    harness.OUT.mkdir(parents=True, exist_ok=True)
    path = harness.OUT / "bench-start-plugin.json"
    path.write_text(json.dumps(plugin))
    times = {w: [] for w in args.wasm}
    for _ in range(args.runs):
        for wasm in args.wasm:
            yaml_text = harness.envoy_yaml(plugin=path, wasm=wasm, listen=harness.free_port(),
                                           admin=harness.free_port(), direct_response=True)
            with harness.Envoy(yaml_text, name="bench-start", concurrency=1,
                               log_level="warning") as envoy:
                times[wasm].append(envoy.ready_after_s)
    for wasm, ts in times.items():
        size = Path(wasm).stat().st_size
        print(f"{wasm}: {size:,} bytes; ready after {', '.join(f'{t:.2f}' for t in ts)} s; "
              f"median {statistics.median(ts):.2f} s")


if __name__ == "__main__":
    main()
