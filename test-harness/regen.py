"""Regenerates the files derived from code and policies: agent_iam.meta.json (Kong schema),
envoy/plugin.json (envoy/plugin.base.json + policies/), envoy/envoy.yaml and the README's
reason-code table. Tests fail when one of them is stale.

Usage: python3 test-harness/regen.py   (builds the CLI in debug mode first)"""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args):
    return subprocess.run(["cargo", "run", "-q", "--bin", "agent-iam", "--", *args], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout


def main():
    (ROOT / "agent_iam.meta.json").write_text(cli("generate", "kong-meta"))
    (ROOT / "envoy" / "plugin.json").write_text(cli("policy", "render", "--config", "envoy/plugin.base.json", "policies"))
    (ROOT / "envoy" / "envoy.yaml").write_text(cli("generate", "envoy", "--config", "envoy/plugin.json"))
    (ROOT / "envoy" / "envoy.audit-log.yaml").write_text(cli(
        "generate", "envoy", "--config", "envoy/plugin.json", "--audit-access-log", "/tmp/agent-iam-audit.log"))
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| reason | status | `error` | meaning |")
    end = readme.index("\n\n", start) + 1
    (ROOT / "README.md").write_text(readme[:start] + cli("reasons") + readme[end:])
    print("regenerated agent_iam.meta.json, envoy/plugin.json, envoy/envoy.yaml, envoy/envoy.audit-log.yaml and the README reason table")


if __name__ == "__main__":
    main()
