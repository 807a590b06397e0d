"""Load generators for the benchmarks (never used by tests): wrk at saturation, oha at a
fixed rate, both optionally pinned to cores with taskset, plus /proc readers.

`test-harness/bench.sh` installs both: wrk from apt, oha (pinned version) with cargo into
target/bench-tools."""
import json
import os
import re
import statistics
import shutil
import subprocess

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402

OHA_VERSION = "1.12.1"
TOOLS = harness.ROOT / "target" / "bench-tools" / "bin"


def tool(name):
    found = shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)
    if not found:
        raise SystemExit(f"{name} not found: run test-harness/bench.sh, which installs it")
    return found


def pinned(cmd, cpus):
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def split_cores():
    """(Envoy's core, the load generators' cores) on a machine with >= 2 cores, else (None, None)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return str(cores[0]), ",".join(str(c) for c in cores[1:])


def _headers(headers):
    out = []
    for k, v in (headers or {}).items():
        out += ["-H", f"{k}: {v}"]
    return out


def wrk(url, duration, connections, headers=None, lua=None, cpus=None, expect=None):
    """Saturation run. -> {rps, requests, non2xx, latency (mean, as wrk prints it)}. `expect` 2xx (default) or "any"."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", *_headers(headers)]
    if lua:
        cmd += ["-s", str(lua)]
    out = subprocess.run(pinned(cmd + [url], cpus), capture_output=True, text=True,
                         check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "latency": re.search(r"Latency\s+([\d.]+\w+)", out).group(1),
    }
    if expect != "any" and result["non2xx"]:
        raise SystemExit(f"wrk saw {result['non2xx']} non-2xx responses from {url}:\n{out}")
    return result


def oha_rate(url, rate, duration, connections=4, headers=None, cpus=None, correct=True):
    """Fixed-rate run, by default with latency correction (latency counted from when the
    request was due, so a stall is not hidden: no coordinated omission).
    -> {p50_us, p99_us, rps, statuses, errors}."""
    cmd = [tool("oha"), "--no-tui", "--output-format", "json",
           *(["--latency-correction"] if correct else []), "-q", str(rate), "-z", f"{duration}s", "-c", str(connections), *_headers(headers), url]
    out = subprocess.run(pinned(cmd, cpus), capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    pct = doc["latencyPercentiles"]
    return {
        "p50_us": (pct.get("p50") or 0) * 1e6,
        "p99_us": (pct.get("p99") or 0) * 1e6,
        "rps": doc["summary"]["requestsPerSec"],
        "statuses": doc.get("statusCodeDistribution", {}),
        "errors": doc.get("errorDistribution", {}),
    }


def cpu_seconds(pid):
    """User + system CPU seconds of `pid` and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, grew = {pid}, True
    while grew:
        new = {p for p, (ppid, _) in stats.items() if ppid in family} - family
        family |= new
        grew = bool(new)
    return sum(stats[p][1] for p in family if p in stats) / ticks


def rss_kb(pid):
    """Resident set of `pid` and its threads, from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_section(start, end, section):
    """Replaces the text between the markers `start` and `end` of docs/BENCHMARKS.md
    (markers included) with `section`, when both markers are there."""
    doc = harness.ROOT / "docs" / "BENCHMARKS.md"
    text = doc.read_text()
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
        doc.write_text(text)


BUILD_NAMES = {"wasm": "Wasm", "dynamic-module": "dynamic module"}


def builds_table(samples, builds, titles, baseline, over="over the baseline"):
    """A Markdown table with, per build, req/s and Envoy CPU per request (medians of the
    rounds) and the CPU over `baseline`'s: `samples[(build, title)]` is a list of
    (req/s, CPU µs per request), one per round."""
    head = "| request |" + "".join(f" {BUILD_NAMES[b]} req/s | {BUILD_NAMES[b]} CPU µs/req | {over} |"
                                   for b in builds)
    rows = [head, "|---|" + "---|---|---|" * len(builds)]
    for title in titles:
        row = f"| {title} |"
        for b in builds:
            base_cpu = statistics.median(c for _, c in samples[(b, baseline)])
            rps = statistics.median(r for r, _ in samples[(b, title)])
            cpu = statistics.median(c for _, c in samples[(b, title)])
            row += f" {rps:,.0f} | {cpu:.0f} | {cpu - base_cpu:+.0f} µs |"
        rows.append(row)
    return rows
