"""Benchmarks the filter inside a real Envoy with wrk (never timed asserts in tests).

For each signature backend (host = Envoy's BoringSSL, pure = pure Rust in V8), Envoy runs
with `--concurrency 1` and answers with a direct_response after the filter, so the numbers
are the filter's cost. "cached": the same ES256 token every request, hitting the per-worker
verified-token cache. "uncached": the same token with the cache disabled
(cache.max_entries = 0), so every request verifies the signature.

Throughput depends on this machine's scheduling (loopback wake-ups in a small VM vary a lot
from day to day), so every row also reports Envoy's CPU time per request (user + system,
Envoy and its threads, from /proc): that figure is stable, and the policy's cost is the
difference of two such figures.

Usage: python test-harness/bench/bench.py [--duration 10] [--connections 16]"""

import argparse
import json
import re
import shutil
import sys

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402
import loadgen


def wrk(port, token, duration, connections, pid=None):
    before = loadgen.cpu_seconds(pid) if pid else 0.0
    out = loadgen.wrk(f"http://127.0.0.1:{port}/tickets/bench", duration, connections,
                      headers={"authorization": f"Bearer {token}"})
    cpu = loadgen.cpu_seconds(pid) - before if pid else 0.0
    return out["rps"], out["latency"], cpu / out["requests"] * 1e6


def run_bare(duration, connections):
    listen, admin = harness.free_port(), harness.free_port()
    yaml_text = harness.envoy_yaml(listen=listen, admin=admin, upstream=1, direct_response=True, no_filter=True)
    with harness.Envoy(yaml_text, name="bench-bare", log_level="warning") as envoy:
        wrk(listen, "x", 2, connections)
        return wrk(listen, "x", duration, connections, envoy.proc.pid)


def run(backend, cache_entries, duration, connections, policy=True):
    plugin = json.loads(harness.PLUGIN.read_text())
    if not policy:
        plugin.pop("policy")
    plugin["signature_backend"] = backend
    plugin["cache"] = {"max_entries": cache_entries}
    plugin["max_token_lifetime_s"] = 3600
    plugin["agents"].pop("feed", None)  # no control plane in benchmarks: inline registry
    path = harness.OUT / f"bench-{backend}-{cache_entries}-{int(policy)}.json"
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
        return wrk(listen, token, duration, connections, envoy.proc.pid)


def in_envoy(policies, iterations=1000, rounds=15):
    """µs per decision measured inside Envoy by the test-hook build (`x-agent-iam-test-bench`):
    the whole pipeline for one cached ES256 token, `iterations` times per request. One Envoy
    per policy ("shipped", "none" or a Rego module text), all running at once and sampled in
    turn, so a slow phase of the machine hits every configuration alike; the minimum over
    `rounds` is reported (noise only ever adds time)."""
    import contextlib
    [token] = harness.mint([{"alg": "ES256", "exp": 3600, "claims": {"tenant": "acme"}}])
    harness.OUT.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        clients = []
        for i, policy in enumerate(policies):
            plugin = json.loads(harness.PLUGIN.read_text())
            if policy == "none":
                plugin.pop("policy")
            elif policy != "shipped":
                plugin["policy"] = {"modules": {"bench.rego": policy}}
            plugin["signature_backend"] = "host"
            plugin["max_token_lifetime_s"] = 3600
            plugin["agents"].pop("feed", None)
            path = harness.OUT / f"bench-in-envoy-{i}.json"
            path.write_text(json.dumps(plugin))
            listen, admin = harness.free_port(), harness.free_port()
            yaml_text = harness.envoy_yaml(plugin=path, wasm=harness.HOOKS_WASM, listen=listen, admin=admin,
                                           upstream=1, direct_response=True)
            stack.enter_context(harness.Envoy(yaml_text, name=f"bench-in-envoy-{i}", log_level="warning"))
            clients.append(harness.Client(listen))
        samples = [[] for _ in policies]
        for _ in range(rounds):
            for c, out in zip(clients, samples):
                r = c.request("/tickets/bench", token=token, headers={"x-agent-iam-test-bench": str(iterations)})
                body = r.body.decode()
                if r.status != 200 or f"allowed={iterations}/{iterations}" not in body:
                    raise SystemExit(f"in-Envoy bench: {r.status} {body}")
                out.append(int(re.search(r"ns_per_decision=(\d+)", body).group(1)))
        for c in clients:
            c.close()
    return [min(s) / 1000 for s in samples]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--in-envoy", action="store_true",
                    help="only the in-Envoy decision timings (test-hook build), no wrk")
    args = ap.parse_args()
    print("In-Envoy decision time (pipeline for a cached ES256 token; min of 15 × 1000; test-hook build):")
    print("| policy | µs per decision |")
    print("|---|---|")
    none, trivial, shipped = in_envoy(["none", "package agent_iam.authz\ndecision := true", "shipped"])
    print(f"| none | {none:.1f} |")
    print(f"| `decision := true` | {trivial:.1f} |")
    print(f"| shipped (policies/) | {shipped:.1f} |")
    print(f"| **shipped policy's cost (shipped − none)** | **{shipped - none:.1f}** |", flush=True)
    if args.in_envoy:
        return
    print()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    print(f"(wrk -t1 -c{args.connections} -d{args.duration}s, Envoy --concurrency 1, direct response after the filter)")
    print("| backend | ES256 token | policy | req/s | mean latency | Envoy CPU per request |")
    print("|---|---|---|---|---|---|")

    def row(backend, label, policy, result):
        rps, lat, cpu = result
        print(f"| {backend} | {label} | {policy} | {rps:,.0f} | {lat} | {cpu:.1f} µs |", flush=True)

    row("no filter (control)", "-", "-", run_bare(args.duration, args.connections))
    for backend in ("host", "pure"):
        for label, entries in (("cached", 1024), ("uncached", 0)):
            with_policy = run(backend, entries, args.duration, args.connections)
            row(backend, label, "shipped", with_policy)
            if (backend, label) == ("host", "cached"):
                without = run(backend, entries, args.duration, args.connections, policy=False)
                row(backend, label, "none", without)
                print(f"| policy cost (host cached, shipped − none) | | | | | {with_policy[2] - without[2]:.1f} µs |", flush=True)


if __name__ == "__main__":
    main()
