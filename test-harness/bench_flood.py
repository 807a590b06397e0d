"""A flood of invalid tokens against valid traffic (issue: a flood must not push valid
requests' p99 above 2x, nor grow memory without bound).

One Envoy (--concurrency 2, the shipped plugin without the feed, Envoy answering 200 itself
after the filter, log level warning). Phase 1: a client sends
valid requests (one cached ES256 token) for DURATION seconds, measuring each request's
latency. Phase 2: the same while FLOODERS threads send requests with a fresh, well-formed
but forged token each (unique: every one misses the cache and reaches signature
verification, the most expensive refusal). Envoy's RSS is sampled before, after phase 1 and
after the flood. Reports p50/p99 of the valid requests in both phases and the RSS growth.

Usage: python test-harness/bench_flood.py [--duration 10] [--flooders 2]
(after test-harness/build.sh). Not part of the test suite: timings belong in benchmarks."""

import argparse
import statistics
import multiprocessing
import time

import harness


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def valid_phase(port, token, duration):
    c = harness.Client(port)
    lat = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        t = time.perf_counter()
        r = c.request("/tickets/1", token=token)
        lat.append(time.perf_counter() - t)
        assert r.status == 200, r
    c.close()
    return lat


def flood(port, forged, k, stop, sent):
    """One flooding process (its own GIL): forged tokens on a keep-alive connection."""
    c = harness.Client(port)
    i = 0
    while not stop.is_set():
        h, pl, _ = forged[(i + k) % len(forged)].split(".")
        sig = forged[(i * 7 + k + 1) % len(forged)].split(".")[2]
        r = c.request("/tickets/1", headers={"authorization": f"Bearer {h}.{pl}.{sig}"})
        assert r.status == 401, r
        i += 1
        with sent.get_lock():
            sent.value += 1
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--flooders", type=int, default=2)
    args = ap.parse_args()
    [token] = harness.mint([{"alg": "ES256", "exp": 3600}])
    # Forged: valid shape and kid, signature of another token (refused at signature check).
    forged_base = harness.mint([{"alg": "ES256", "exp": 3600, "claims": {"jti": f"f-{i}"}}
                                for i in range(200)])
    yaml_text, port = harness.bench_envoy_yaml("bench-flood")
    with harness.Envoy(yaml_text, name="flood", concurrency=2, log_level="warning") as envoy:
        pid = envoy.proc.pid
        valid_phase(port, token, 1)  # warm-up
        rss0 = rss_kb(pid)
        quiet = valid_phase(port, token, args.duration)
        rss1 = rss_kb(pid)
        stop = multiprocessing.Event()
        sent = multiprocessing.Value("i", 0)
        procs = [multiprocessing.Process(target=flood, args=(port, forged_base, k, stop, sent))
                 for k in range(args.flooders)]
        for f in procs:
            f.start()
        time.sleep(0.5)
        loud = valid_phase(port, token, args.duration)
        stop.set()
        for f in procs:
            f.join()
        rss2 = rss_kb(pid)
    print(f"valid requests alone:      n={len(quiet)} p50={p(quiet, .5):.2f} ms p99={p(quiet, .99):.2f} ms")
    print(f"valid during the flood:    n={len(loud)} p50={p(loud, .5):.2f} ms p99={p(loud, .99):.2f} ms "
          f"({sent.value} forged tokens refused, {args.flooders} flooding connections)")
    print(f"p99 ratio: {p(loud, .99) / p(quiet, .99):.2f}x (goal <= 2x); "
          f"Envoy RSS {rss0 // 1024} MB -> {rss1 // 1024} MB -> {rss2 // 1024} MB after the flood")
    print(f"median ratio: {statistics.median(loud) / statistics.median(quiet):.2f}x")


if __name__ == "__main__":
    main()
