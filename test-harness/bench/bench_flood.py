"""A flood of invalid tokens against valid traffic (issue: a flood must not push valid
requests' p99 above 2x, nor grow memory without bound).

One Envoy (the shipped plugin without the feed, Envoy answering 200 itself after the
filter, log level warning), pinned to one core; the load generators run on the other
core(s): on a real gateway the attacker does not share the gateway's CPUs, and on a 2-core
VM unpinned clients would measure the scheduler, not the filter.

Valid traffic: oha at a fixed rate (default 500 req/s, latency-corrected), one cached
ES256 token. Each round (default 5): valid traffic alone, then the same while wrk floods with
FLOODERS connections in a closed loop, every request carrying a fresh forged token (real
header and claims, random signature: no cache can answer it, each costs a full signature
verification, the most expensive refusal). Envoy's RSS is sampled before, between and
after every round. Reports valid p50/p99 per round and their medians (this VM's loopback
stalls make single runs vary several-fold), the flood's rate, the RSS, and Envoy's CPU per
refused forged token (a last flood without valid traffic: steadier than p99 on this VM).
With --budget R the plugin has `verify_budget` (R failed checks per client per second,
burst 20): past the burst the flood is refused without signature checks.

With --flood-rate N the flooders wait between requests (wrk's `delay()`), so the flood is
bounded at N forged tokens per second: the case of a flood the gateway can absorb, as
opposed to the closed loop, which saturates the core with signature checks.

Usage: python test-harness/bench/bench_flood.py [--rounds 5] [--duration 5] [--flooders 2] [--rate 500]
           [--flood-rate N] [--native] [--budget R]
(after test-harness/bench.sh has installed wrk and oha and built). Not part of the test
suite: timings belong in benchmarks."""

import argparse
import os
import statistics
import threading
import time

import bench_compare
import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402
import loadgen

LUA = harness.HARNESS_DIR / "bench" / "flood.lua"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per phase")
    ap.add_argument("--flooders", type=int, default=2, help="flooding connections")
    ap.add_argument("--flood-rate", type=int, default=0,
                    help="forged tokens per second at most (each connection waits between "
                         "requests); 0: closed loop, as fast as Envoy refuses them")
    ap.add_argument("--rate", type=int, default=500, help="valid requests per second")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--native", action="store_true",
                    help="flood Envoy's native jwt_authn + RBAC instead of agent-iam")
    ap.add_argument("--concurrency", type=int, default=1, help="Envoy worker threads")
    ap.add_argument("--budget", type=float, default=0,
                    help="enable verify_budget at this many failed checks per client per "
                         "second (burst 20): past it the flood is refused unverified")
    args = ap.parse_args()
    envoy_cpus, client_cpus = loadgen.split_cores()
    [token] = harness.mint([{"alg": "ES256", "exp": 3600}])
    [forged_base] = harness.mint([{"alg": "ES256", "exp": 3600, "claims": {"jti": "forged"}}])
    os.environ["FLOOD_HEADER_PAYLOAD"] = forged_base.rsplit(".", 1)[0]
    delay_ms = max(1, round(args.flooders * 1000 / args.flood_rate)) if args.flood_rate else 0
    os.environ["FLOOD_DELAY_MS"] = str(delay_ms)
    if args.native:
        # The same flood against Envoy's own jwt_authn + RBAC: the bound a CPU-saturating
        # flood puts on any verifier that must check each forged signature.
        mode = bench_compare.Mode("native", filters=bench_compare.native_filters(False))
        yaml_text, port = bench_compare.bootstrap([mode.listener()]), mode.port
    else:
        extra = {"verify_budget": {"per_client_per_s": args.budget}} if args.budget else None
        yaml_text, port = harness.bench_envoy_yaml("bench-flood", extra=extra)
    url = f"http://127.0.0.1:{port}/tickets/1"
    auth = {"authorization": f"Bearer {token}"}
    duration = int(args.duration)
    quiet, loud, floods, rss = [], [], [], []
    with harness.Envoy(yaml_text, name="flood", concurrency=args.concurrency,
                       log_level="warning", cpus=envoy_cpus) as envoy:
        pid = envoy.proc.pid
        loadgen.oha_rate(url, args.rate, 2, headers=auth, cpus=client_cpus)  # warm-up
        rss.append(loadgen.rss_kb(pid))
        for _ in range(args.rounds):
            quiet.append(loadgen.oha_rate(url, args.rate, duration, headers=auth,
                                          cpus=client_cpus))
            flood = {}

            def run_flood():
                flood.update(loadgen.wrk(url, duration + 1, args.flooders, lua=LUA,
                                         cpus=client_cpus, expect="any"))

            t = threading.Thread(target=run_flood)
            t.start()
            time.sleep(0.5)
            loud.append(loadgen.oha_rate(url, args.rate, duration, headers=auth,
                                         cpus=client_cpus))
            t.join()
            floods.append(flood)
            rss.append(loadgen.rss_kb(pid))
        # What one refusal costs: Envoy's CPU over a flood without valid traffic.
        before = loadgen.cpu_seconds(pid)
        alone = loadgen.wrk(url, duration, args.flooders, lua=LUA, cpus=client_cpus,
                            expect="any")
        refusal_us = (loadgen.cpu_seconds(pid) - before) / max(alone["requests"], 1) * 1e6
        refused = harness.admin_stats(
            envoy, r"agent_iam\.denied\.token\.(signature|verify_budget)|jwt_authn\.denied")
    for phase in quiet + loud:
        errors = {k: v for k, v in phase["errors"].items() if k != "aborted due to deadline"}
        if set(phase["statuses"]) != {"200"} or errors:
            raise SystemExit(f"valid traffic was not all 200: {phase}")
    for flood in floods:
        if flood["non2xx"] != flood["requests"]:  # every one refused
            raise SystemExit(f"a forged token was not refused: {flood}")

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    print(f"Envoy on core {envoy_cpus or 'any'} (--concurrency {args.concurrency}), load "
          f"generators on {client_cpus or 'any'}; {args.rounds} rounds of {duration} s alone, "
          f"{duration} s under flood; valid traffic {args.rate} req/s (oha, latency-corrected); "
          + (f"verify_budget {args.budget}/s per client; " if args.budget else "")
          + f"flood: {args.flooders} connections, "
          + (f"{delay_ms} ms between requests (at most {args.flood_rate}/s)" if delay_ms else "closed loop"))
    print("round  alone p50/p99 us   flood p50/p99 us   forged/s")
    for i, (q, l, f) in enumerate(zip(quiet, loud, floods)):
        print(f"{i + 1:5}  {q['p50_us']:6.0f} {q['p99_us']:8.0f}   {l['p50_us']:6.0f} "
              f"{l['p99_us']:8.0f}   {f['rps']:8.0f}")
    q99, l99 = med(quiet, "p99_us"), med(loud, "p99_us")
    q50, l50 = med(quiet, "p50_us"), med(loud, "p50_us")
    total = sum(f["requests"] for f in floods)
    print(f"median p99: alone {q99:.0f} us, under flood {l99:.0f} us -> {l99 / q99:.2f}x (goal <= 2x)")
    print(f"median p50: alone {q50:.0f} us, under flood {l50:.0f} us -> {l50 / q50:.2f}x")
    print(f"Envoy CPU per forged token refused (flood alone, {alone['rps']:.0f}/s): "
          f"{refusal_us:.0f} us")
    print(f"flood: {med(floods, 'rps'):.0f} forged tokens/s over {args.flooders} connections, "
          f"{total} refused ({refused}); Envoy RSS (MB) "
          f"{' -> '.join(str(r // 1024) for r in rss)}")


if __name__ == "__main__":
    main()
