"""Benchmarks the filter inside a real Envoy with wrk (never timed asserts in tests).

For each signature backend (host = Envoy's BoringSSL, pure = pure Rust in V8), Envoy runs
with `--concurrency 1` and answers with a direct_response after the filter, so the numbers
are the filter's cost. "cached": the same ES256 token every request, hitting the per-worker
verified-token cache. "uncached": the same token with the cache disabled
(cache.max_entries = 0), so every request verifies the signature.

Usage: python test-harness/bench.py [--duration 10] [--connections 16]"""

import argparse
import json
import re
import shutil
import subprocess
import sys

import harness


def wrk(port, token, duration, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-H", f"authorization: Bearer {token}",
         f"http://127.0.0.1:{port}/tickets/bench"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = re.search(r"Latency\s+([\d.]+\w+)", out).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} non-2xx responses:\n{out}")
    return rps, lat


def run_bare(duration, connections):
    listen, admin = harness.free_port(), harness.free_port()
    yaml_text = harness.envoy_yaml(listen=listen, admin=admin, upstream=1, direct_response=True, no_filter=True)
    with harness.Envoy(yaml_text, name="bench-bare", log_level="warning"):
        wrk(listen, "x", 2, connections)
        return wrk(listen, "x", duration, connections)


def run(backend, cache_entries, duration, connections):
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["signature_backend"] = backend
    plugin["cache"] = {"max_entries": cache_entries}
    plugin["max_token_lifetime_s"] = 3600
    plugin["agents"].pop("feed", None)  # no control plane in benchmarks: inline registry
    path = harness.OUT / f"bench-{backend}-{cache_entries}.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plugin))
    listen, admin = harness.free_port(), harness.free_port()
    yaml_text = harness.envoy_yaml(plugin=path, listen=listen, admin=admin, upstream=1, direct_response=True)
    [token] = harness.mint([{"alg": "ES256", "exp": 3600}])
    with harness.Envoy(yaml_text, name=f"bench-{backend}", log_level="warning") as envoy:
        c = harness.Client(listen)
        assert c.request("/tickets/bench", token=token).status == 200
        c.close()
        wrk(listen, token, 2, connections)  # warm-up
        return wrk(listen, token, duration, connections)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    print(f"| backend | ES256 token | req/s | mean latency |  (wrk -t1 -c{args.connections} -d{args.duration}s, Envoy --concurrency 1)")
    print("|---|---|---|---|")
    rps, lat = run_bare(args.duration, args.connections)
    print(f"| no filter (control) | - | {rps:,.0f} | {lat} |", flush=True)
    for backend in ("host", "pure"):
        for label, entries in (("cached", 1024), ("uncached", 0)):
            rps, lat = run(backend, entries, args.duration, args.connections)
            print(f"| {backend} | {label} | {rps:,.0f} | {lat} |", flush=True)


if __name__ == "__main__":
    main()
