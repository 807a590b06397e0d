"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/ (seed-*), from the
project's own examples: golden-case tokens (minted for the fuzz targets' clock,
1800000000), the shipped configurations, SETs, the registry document and requests.

Usage: python3 fuzz/seeds.py   (needs the debug CLI: cargo build --bin agent-iam)"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test-harness"))
os.environ.setdefault("AGENT_IAM_CLI", str(ROOT / "target" / "debug" / "agent-iam"))
import harness  # noqa: E402

NOW = 1_800_000_000


def write(target, name, data):
    d = ROOT / "fuzz" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    cases = json.loads((ROOT / "test-harness" / "golden" / "cases.json").read_text())
    cases = [c for c in (cases["cases"] if isinstance(cases, dict) else cases) if c.get("token")]
    tokens = harness.mint([c["token"] for c in cases], now=NOW)
    for i, t in enumerate(tokens):
        write("token", f"golden-{i:03}", t)
    for p in ["envoy/plugin.json", "envoy/plugin.base.json", *map(str, (ROOT / "kong").glob("*.json"))]:
        path = ROOT / p
        if path.exists():
            write("config", path.name, path.read_bytes())
    plugin = json.loads((ROOT / "envoy" / "plugin.json").read_text())
    write("config", "with-revocation-audit.json", json.dumps(dict(
        harness.with_revocation(plugin), audit={"checkpoint_s": 5, "collector": {"cluster": "c", "path": "/a"}})))
    write("registry_feed", "shipped.json", json.dumps(harness.registry_doc(plugin)))
    ev = harness.EVENT
    sets = harness.mint_sets([
        ("s1", {ev["token_revoked"]: {"jti": "jti-1"}}),
        ("s2", {ev["account_disabled"]: {"subject": harness.opaque("agent:build-bot-7")}}),
        ("s3", {ev["session_revoked"]: {"subject": harness.opaque("user:alice")}}),
    ], now=NOW)
    for i, s in enumerate(sets):
        write("set", f"set-{i}", s)
    write("set", "poll", json.dumps({"sets": {f"s{i}": s for i, s in enumerate(sets)}, "moreAvailable": False}))
    for i, t in enumerate(tokens[:12]):
        parts = [b"GET", b"/tickets/42", b"api.agent-iam.test", b"authorization", f"Bearer {t}".encode(),
                 b"x-request-id", b"r-1", b"x-agent-id", b"agent:admin"]
        write("request", f"req-{i:02}", b"\xff".join(parts))
    print("seeds written under fuzz/corpus/")


if __name__ == "__main__":
    main()
