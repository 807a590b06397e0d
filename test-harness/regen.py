"""Regenerates the files derived from code and policies: agent_iam.meta.json (Kong schema),
envoy/plugin.json (envoy/plugin.base.json + policies/), envoy/envoy.yaml and the
reason-code table of docs/reasons.md. Tests fail when one of them is stale.

Usage: python3 test-harness/regen.py   (builds the CLI in debug mode first)"""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The shipped bootstraps stay the same when the module is rebuilt: no module SHA-256 in them.
SHIPPED = ["--no-module-sha256"]


def cli(*args):
    return subprocess.run(["cargo", "run", "-q", "--bin", "agent-iam", "--", *args], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout


def main():
    (ROOT / "agent_iam.meta.json").write_text(cli("generate", "kong-meta"))
    (ROOT / "envoy" / "plugin.json").write_text(cli("policy", "render", "--config", "envoy/plugin.base.json", "policies"))
    (ROOT / "examples" / "profiles" / "plugin.json").write_text(
        cli("policy", "render", "--config", "examples/profiles/plugin.base.json", "policies"))
    (ROOT / "envoy" / "envoy.yaml").write_text(cli("generate", "envoy", *SHIPPED, "--config", "envoy/plugin.json"))
    (ROOT / "envoy" / "envoy.audit-log.yaml").write_text(cli(
        "generate", "envoy", *SHIPPED, "--config", "envoy/plugin.json", "--audit-access-log", "/tmp/agent-iam-audit.log"))
    (ROOT / "envoy" / "envoy.mtls.yaml").write_text(cli(
        "generate", "envoy", *SHIPPED, "--config", "envoy/plugin.json", "--tls-listen", "10443",
        "--tls-cert", "/etc/agent-iam/tls/server.pem", "--tls-key", "/etc/agent-iam/tls/server.key",
        "--client-ca", "/etc/agent-iam/tls/clients-ca.pem"))
    reasons = ROOT / "docs" / "reasons.md"
    text = reasons.read_text()
    start = text.index("| reason | status | `error` | meaning |")
    end = text.index("\n\n", start) + 1 if "\n\n" in text[start:] else len(text)
    reasons.write_text(text[:start] + cli("reasons") + text[end:])
    print("regenerated agent_iam.meta.json, envoy/plugin.json, examples/profiles/plugin.json, envoy/envoy.yaml, envoy/envoy.audit-log.yaml, envoy/envoy.mtls.yaml and the docs/reasons.md reason table")


if __name__ == "__main__":
    main()
