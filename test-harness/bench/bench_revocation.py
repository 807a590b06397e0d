"""Revocation propagation latency through a real Envoy (a benchmark, never a test).

Envoy runs with `--concurrency 2` and the default 1 s poll interval. For each of N tokens:
the token is served (200) on every client connection, after a random pause (a random phase
of the poll cycle) a `token-revoked` SET for its `jti` is pushed to the local SSF
transmitter at t0, then every connection requests in turn until
it sees `revocation.jti`. The latency of one revocation is the time until the *last*
connection is refused (connections are spread over the workers). Reports p50/p99/max.

Usage: python test-harness/bench/bench_revocation.py [--revocations 100] [--connections 4]"""

import argparse
import json
import random
import statistics
import time

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--revocations", type=int, default=100)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--interval-ms", type=int, default=1000)
    args = ap.parse_args()
    plugin = harness.with_revocation(json.loads(harness.PLUGIN.read_text()), interval_ms=args.interval_ms,
                                     max_staleness_s=30)
    tokens = harness.mint([{"claims": {"jti": f"bench-{i}"}} for i in range(args.revocations)])
    sets = harness.mint_sets([(f"bench-set-{i}", {harness.EVENT["token_revoked"]: {"jti": f"bench-{i}"}})
                              for i in range(args.revocations)])
    latencies = []
    with harness.stack(plugin_json=plugin, name="bench-revocation", concurrency=2) as envoy:
        clients = [harness.Client(envoy.listen_port) for _ in range(args.connections)]
        harness.wait_until(lambda: clients[0].request("/tickets/1", token=tokens[0]).status == 200, 10,
                           "the revocation feed to become fresh")
        for token, s in zip(tokens, sets):
            for c in clients:
                r = c.request("/tickets/1", token=token)
                assert r.status == 200, r
            time.sleep(random.uniform(0, args.interval_ms / 1000))  # a random phase of the poll cycle
            t0 = time.monotonic()
            envoy.control_plane.push_sets([s])
            pending = set(range(len(clients)))

            def every_connection_refused():
                for i in list(pending):
                    r = clients[i].request("/tickets/1", token=token)
                    if r.status != 200:
                        assert r.json()["reason"] == "revocation.jti", r
                        pending.discard(i)
                return not pending

            harness.wait_until(every_connection_refused, 10, "the revocation to reach every connection", interval=0)
            latencies.append((time.monotonic() - t0) * 1000)
        for c in clients:
            c.close()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(f"revocations: {len(latencies)}, poll interval {args.interval_ms} ms, Envoy --concurrency 2, "
          f"{args.connections} connections")
    print(f"| p50 | p99 | max | mean |\n|---|---|---|---|\n"
          f"| {p(0.5):.0f} ms | {p(0.99):.0f} ms | {latencies[-1]:.0f} ms | {statistics.mean(latencies):.0f} ms |")


if __name__ == "__main__":
    main()
