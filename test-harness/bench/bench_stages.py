"""Where a request's time goes inside Envoy (test-hook build, never shipped).

1. Envoy CPU per request (user + system from /proc, wrk -c16 from the other core, median
   of 3 rounds) for: bare Envoy; our filter continuing at once (`x-agent-iam-test-noop`:
   the Wasm plumbing — stream context, callbacks into V8 — plus one header read); our
   filter with a cached token and no policy.
2. Inside our callback, each stage (`x-agent-iam-test-stages: N`): clock, reading the
   request, feed syncs, the decision, identity headers, the audit event (build; build +
   emit + metrics), ns per run: warm (N = 2,000 in one request) and cold (N = 1, median
   over 500 requests, as in real traffic).

Usage: python test-harness/bench/bench_stages.py (after test-harness/build.sh --for-tests)."""
import statistics

import bench_compare as bc
import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402
import loadgen


def main():
    envoy_cpus, client_cpus = loadgen.split_cores()
    [es] = harness.mint([{"alg": "ES256", "exp": 3600}])
    [chain] = harness.mint([{"alg": "ES256", "exp": 3600, "claims": bc.CHAIN2}])
    harness.WASM = harness.ROOT / "target" / "agent_iam_test_hooks.wasm"
    bc.OUT.mkdir(parents=True, exist_ok=True)
    bare = bc.Mode("bare", filters=[])
    token = bc.Mode("token cached", plugin=bc.token_only("host"), token=es)
    full = bc.Mode("full cached", plugin=bc.full_pipeline(), token=chain, audit_log=True)
    with harness.Envoy(bc.bootstrap([m.listener() for m in (bare, token, full)]), name="stages",
                       log_level="warning", cpus=envoy_cpus) as envoy:
        runs = [("bare Envoy", bare.port, {}),
                ("filter, continue at once", token.port, {"x-agent-iam-test-noop": "1"}),
                ("filter, cached token, no policy", token.port, {"authorization": f"Bearer {es}"}),
                ("filter, full pipeline, cached", full.port, {"authorization": f"Bearer {chain}"})]
        cpu = {}
        for _ in range(3):
            for name, port, headers in runs:
                before = loadgen.cpu_seconds(envoy.proc.pid)
                out = loadgen.wrk(f"http://127.0.0.1:{port}/tickets/1", 4, 16, headers=headers,
                                  cpus=client_cpus)
                cpu.setdefault(name, []).append(
                    (loadgen.cpu_seconds(envoy.proc.pid) - before) / out["requests"] * 1e6)
        print("| Envoy CPU per request | µs |\n|---|---|")
        for name, values in cpu.items():
            print(f"| {name} | {statistics.median(values):.0f} |")
        print("\n| stage, inside the callback (ns) | cached token, warm | cold | "
              "full pipeline, warm | cold |")
        print("|---|---|---|---|---|")
        stages = {}
        for mode in (token, full):
            c = harness.Client(mode.port)
            # warm: each stage 2,000 times in one request; cold: once per request (as in
            # real traffic, between requests Envoy's own code runs), median of 500.
            for n, reps in ((2000, 3), (1, 500)):
                samples = {}
                for _ in range(reps):
                    r = c.request("/tickets/1", token=mode.token,
                                  headers={"x-agent-iam-test-stages": str(n)})
                    for line in r.body.decode().split():
                        k, v = line.split("=")
                        samples.setdefault(k, []).append(int(v))
                for k, v in samples.items():
                    stages.setdefault(k, []).append(v[-1] if n > 1 else statistics.median(v))
        for k, (a, b, c2, d) in stages.items():
            print(f"| {k} | {a:,} | {b:,.0f} | {c2:,} | {d:,.0f} |")


if __name__ == "__main__":
    main()
