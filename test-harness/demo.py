"""The scripted agent scenario behind the README's first command.

Starts an echo upstream and a real Envoy with the release filter (envoy/plugin.json),
mints short-lived demo tokens, sends requests, and shows each response and the filter's
decision log line. The scenario grows as features land."""

import json
import sys

import harness

STEPS = [
    ("build-bot-7 reads tickets with a fresh ES256 token",
     {"alg": "ES256"}, {}),
    ("summarizer-3 acts for user:alice (RFC 8693 act), EdDSA token",
     {"alg": "EdDSA", "claims": {"sub": "user:alice", "act": {"sub": "agent:summarizer-3"}}}, {}),
    ("an agent tries to smuggle x-agent-id: agent:admin (RS256 token)",
     {"alg": "RS256"}, {"x-agent-id": "agent:admin"}),
    ("no token at all", None, {}),
    ("a token that expired two minutes ago",
     {"iat": -420, "exp": -120}, {}),
    ("a token whose signature was tampered with",
     {"tamper": "signature"}, {}),
    ("alg none: the oldest JWT attack",
     {"alg": "none", "tamper": "empty_signature"}, {}),
    ("HS256 signed with the issuer's public key as the HMAC secret",
     {"alg": "HS256-pubkey"}, {}),
    ("a token that asks for a one-day lifetime",
     {"exp": 86400}, {}),
    ("delegation chain deeper than delegation.max_depth (4)",
     {"claims": {"sub": "user:bob", "act": {"sub": "a1", "act": {"sub": "a2", "act": {"sub": "a3", "act": {"sub": "a4", "act": {"sub": "a5"}}}}}}}, {}),
]


def main():
    recipes = [r for _, r, _ in STEPS if r is not None]
    tokens = iter(harness.mint(recipes))
    with harness.stack(name="demo") as envoy:
        print(f"Envoy {envoy.ready_after_s:.2f}s to ready on 127.0.0.1:{envoy.listen_port} "
              f"(admin {envoy.admin_port}); upstream echo on 127.0.0.1:{envoy.upstream.port}")
        for line in envoy.log().splitlines():
            if "agent-iam 0.1.0 configured" in line:
                print("filter:", line.split(": ", 1)[1])
                break
        client = harness.Client(envoy.listen_port)
        for n, (title, recipe, extra) in enumerate(STEPS, 1):
            headers = dict(extra)
            if recipe is not None:
                headers["authorization"] = f"Bearer {next(tokens)}"
            r = client.request("/tickets/42", headers=headers)
            print(f"\n[{n}] {title}")
            shown = {k: (v[:24] + "…" if k == "authorization" else v) for k, v in headers.items()}
            print(f"  → GET /tickets/42 {json.dumps(shown)}")
            if r.status == 200:
                seen = r.json()["headers"]
                ident = {k: v[0] for k, v in seen.items() if k.startswith("x-agent-")}
                print(f"  ← {r.status}; the upstream saw {json.dumps(ident)}")
            else:
                print(f"  ← {r.status} {r.body.decode()}")
                print(f"    www-authenticate: {r.headers.get('www-authenticate')}")
        client.close()
        envoy.wait_for_log("agent-iam decision", timeout=2)
        print("\nDecision log lines (Envoy log, one per request):")
        for d in envoy.decision_lines():
            print("  " + json.dumps({k: d[k] for k in ("decision_id", "decision", "status", "reason", "agent", "principal", "chain")}))
    print("\nEnvoy and the upstream are stopped. Full Envoy log:", envoy.log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
