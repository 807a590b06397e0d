"""The cost of one audit event inside Envoy, per output (issue: ≤ 5 µs per event).

A test-hook build of the filter (`x-agent-iam-test-audit-bench: N;MODE`, never shipped)
decides one request (cached ES256 token, two-hop chain, shipped policy), then builds its
audit event N times (serialise + SHA-256 chain) and emits each one MODE's way, timing the
loop with the monotonic clock:

  build         serialise and chain only
  log           + one `proxy_log` line at info (Envoy writes it to its log file)
  filter_state  + `set_property` (what the access log reads)
  queue         + the collector's in-memory queue (the batch send happens on a timer,
                  off the request path; its cost per event is measured by wrk separately)
  metrics       + a counter and a histogram sample (the decision metrics)

Rounds alternate between modes so a slow phase of the machine hits each alike; the
minimum over the rounds is reported (noise only ever adds time), the median beside it.

Usage: python test-harness/bench/bench_audit.py [--iterations 1000] [--rounds 15]
(after test-harness/build.sh --for-tests)."""

import argparse
import re
import statistics

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402

MODES = ["build", "log", "filter_state", "queue", "metrics", "sha256", "sha512", "blake2b", "blake2s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    [token] = harness.mint([{"alg": "ES256", "exp": 3600, "claims": {
        "sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}}])
    yaml_text, listen = harness.bench_envoy_yaml("bench-audit", wasm=harness.HOOKS_WASM)
    samples = {m: [] for m in MODES}
    size = 0
    with harness.Envoy(yaml_text, name="bench-audit", log_level="info"):
        client = harness.Client(listen)
        for _ in range(args.rounds):
            for mode in MODES:
                r = client.request("/tickets/bench", token=token,
                                   headers={"x-agent-iam-test-audit-bench": f"{args.iterations};{mode}"})
                body = r.body.decode()
                m = re.search(r"ns_per_event=(\d+) mode=\w+ bytes=(\d+)", body)
                if r.status != 200 or not m:
                    raise SystemExit(f"audit bench: {r.status} {body}")
                samples[mode].append(int(m.group(1)) / 1000)
                size = int(m.group(2))
        client.close()
    base = min(samples["build"])
    print(f"audit event: {size} bytes of JSON; {args.rounds} rounds x {args.iterations} events per mode\n")
    print("| output | µs per event (min) | median | over build |")
    print("|---|---|---|---|")
    for mode in MODES:
        lo, med = min(samples[mode]), statistics.median(samples[mode])
        extra = "" if mode == "build" else f"+{lo - base:.2f}"
        print(f"| {mode} | {lo:.2f} | {med:.2f} | {extra} |")


if __name__ == "__main__":
    main()
