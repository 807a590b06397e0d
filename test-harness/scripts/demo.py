"""The scripted agent scenario behind the README's first command.

Starts an echo upstream, the local control plane (agent registry feed, Shared Signals
transmitter) and a real Envoy with the release filter (envoy/plugin.json plus a revocation
feed); mints short-lived demo tokens; sends requests; retires an agent through the control
plane and pulls another agent's access mid-run with a RISC account-disabled event while
Envoy runs; shows each response; then prints the audit trail the filter sent to the
collector (who acted for whom, what was allowed or refused and why) and verifies its
integrity with `agent-iam audit verify`, once as delivered and once with one event edited.
Then an MCP server built with the official MCP SDK behind the filter
(`examples/mcp-plugin.json`): per-tool scopes, filtered tool lists, a refused call that never
reaches the server, both protocol revisions. Last, a DPoP-bound token (RFC 9449): served with
a proof of its key, refused when stolen (sent as Bearer, with the thief's own proof, or with a
captured proof replayed). Then a runaway agent: slowed by a per-agent write rate, then
quarantined after too many refusals, with the evidence in the audit trail. Last, agent tokens
from five identity providers (`examples/profiles/plugin.json`): Entra Agent ID, Auth0 for AI
Agents, Okta Cross App Access, a SPIFFE JWT-SVID and a Keycloak token exchange, mapped into
one model and decided by one registry and the shipped policy."""

import json
import sys
import time

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # test-harness/: the harness library
import harness  # noqa: E402
from harness import dpop  # noqa: E402
from harness import mcp_client as mc  # noqa: E402
from harness.mcp_server import McpUpstream  # noqa: E402

ALICE_PLANNER = {"sub": "user:alice", "act": {"sub": "agent:planner"}}
ALICE_PLANNER_TOOL = {"sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}

# (title, method, path, token recipe or None, extra headers)
STEPS = [
    ("build-bot-7 reads tickets with its own ES256 token", "GET", "/tickets/42", {"alg": "ES256"}, {}),
    ("alice -> planner: one-hop delegation (RFC 8693 act), EdDSA",
     "GET", "/tickets/42", {"alg": "EdDSA", "claims": ALICE_PLANNER}, {}),
    ("alice -> planner -> tool-search: two hops, RS256",
     "GET", "/tickets/42", {"alg": "RS256", "claims": ALICE_PLANNER_TOOL}, {}),
    ("the same chain smuggles x-agent-id: agent:admin",
     "GET", "/tickets/42", {"claims": ALICE_PLANNER_TOOL}, {"x-agent-id": "agent:admin", "x-agent-scopes": "admin:*"}),
    ("tool-search tries to write a ticket (route needs tickets:write)",
     "POST", "/tickets/42", {"claims": ALICE_PLANNER_TOOL}, {}),
    ("the chain's token asks for tickets:write: above tool-search's ceiling",
     "GET", "/tickets/42", {"claims": dict(ALICE_PLANNER_TOOL, scope="tickets:read tickets:write")}, {}),
    ("tool-search hands over to planner: not in tool-search's may_delegate_to",
     "GET", "/tickets/42", {"claims": {"sub": "user:alice", "act": {"sub": "agent:planner", "act": {"sub": "agent:tool-search"}}}}, {}),
    ("a retired agent (legacy-bot)", "GET", "/tickets/42", {"claims": {"sub": "agent:legacy-bot"}}, {}),
    ("no token at all", "GET", "/tickets/42", None, {}),
    ("a token that expired two minutes ago", "GET", "/tickets/42", {"iat": -420, "exp": -120}, {}),
    ("alg none: the oldest JWT attack", "GET", "/tickets/42", {"alg": "none", "tamper": "empty_signature"}, {}),
    ("HS256 signed with the issuer's public key as the HMAC secret", "GET", "/tickets/42", {"alg": "HS256-pubkey"}, {}),
    ("build-bot-7 (tickets:write) walks from a tickets route to /mail/send with `..`",
     "POST", "/tickets/../mail/send", {"claims": {"scope": "tickets:read tickets:write"}}, {}),
    ("RETIRE", None, None, None, None),
    ("alice -> planner again, after the security team retired agent:planner",
     "GET", "/tickets/42", {"claims": ALICE_PLANNER}, {}),
    ("build-bot-7 reads tickets (token T, verified and cached)", "GET", "/tickets/42", "T", {}),
    ("REVOKE", None, None, None, None),
    ("build-bot-7 again with the same token T, after the account-disabled event",
     "GET", "/tickets/42", "T", {}),
]


def show(n, title, method, path, headers, r):
    print(f"\n[{n}] {title}")
    shown = {k: (v[:24] + "…" if k == "authorization" else v[:12] + "…" + v[-10:] if k == "dpop" else v)
             for k, v in headers.items()}
    print(f"  → {method} {path} {json.dumps(shown, ensure_ascii=False)}")
    if r.status == 200:
        seen = r.json()["headers"]
        ident = {k: v[0] for k, v in seen.items() if k.startswith("x-agent-") and k != "x-agent-decision-id"}
        print(f"  ← {r.status}; the upstream saw {json.dumps(ident, ensure_ascii=False)}")
    else:
        print(f"  ← {r.status} {r.body.decode()}")
        print(f"    www-authenticate: {r.headers.get('www-authenticate')}")


def retire_planner(envoy, client, token):
    plugin = json.loads(harness.PLUGIN.read_text())
    doc = harness.registry_doc(plugin, version="2")
    for rec in doc["agents"]:
        if rec["id"] == "agent:planner":
            rec["status"] = "retired"
    start = time.monotonic()
    polls = envoy.control_plane.registry_requests()
    envoy.control_plane.set_registry(doc)
    print("\n[*] control plane: agent:planner is now \"retired\" (registry version 2); Envoy keeps running")
    harness.wait_until(lambda: envoy.control_plane.registry_requests() != polls, 5,
                       "the filter to fetch registry version 2", interval=0.02)
    print(f"    the filter fetched version 2 {time.monotonic() - start:.2f}s later (poll interval 1 s); "
          "every worker applies it on its next request")


def disable_build_bot(envoy, client, token):
    [s] = harness.mint_sets([("demo-set-1", {harness.EVENT["account_disabled"]: {
        "subject": harness.opaque("agent:build-bot-7")}})])
    start = time.monotonic()
    envoy.control_plane.push_sets([s])
    print("\n[*] security team: RISC account-disabled for agent:build-bot-7, a signed Security Event "
          "Token queued at the Shared Signals transmitter (RFC 8936 poll)")
    harness.wait_until(lambda: client.request("/tickets/42", token=token).status != 200, 5,
                       "the filter to refuse build-bot-7", interval=0.1)
    print(f"    every worker refuses build-bot-7 {time.monotonic() - start:.2f}s later (poll interval 1 s), "
          "without waiting for its token to expire")


def events(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def print_trail(trail, logged):
    """The audit trail as a security team reads it, then its integrity check."""
    evs = events(trail)
    decisions = [e for e in evs if e["kind"] == "decision"]
    print(f"\nAudit trail at the collector: {len(evs)} events ({len(decisions)} decisions, "
          f"{logged} logged by Envoy, revocations, stream starts; repeats folded)")
    print(f"  {'time (UTC)':<15} {'outcome':<7} {'who (agent for principal, via chain)':<58} {'what':<18} why / authority")
    rows = []
    for e in sorted((e for e in evs if e["kind"] in ("decision", "revocation")), key=lambda e: e["time"]):
        if e["kind"] == "revocation":
            rows.append((e["time"][11:23], e["outcome"], "(Shared Signals feed)", f"SET {e['jti']}", e["detail"]))
            continue
        who = "-" if e["agent"] is None else (
            e["agent"] if e["principal"] == e["agent"] else f"{e['agent']} for {e['principal']}")
        if len(e["chain"]) > 1:
            who += " via " + " <- ".join(e["chain"][1:])
        what = f"{e['request']['method']} {e['request']['path']}"
        if e["decision"] == "allow":
            why = f"scopes {' '.join(e['scopes']['effective'])}; {e['token']['alg']} token of {e['token']['iss']}"
        else:
            why = e["reason"] + (f" ({e['policy_reason']})" if e["policy_reason"] else "")
        rows.append((e["time"][11:23], e["decision"], who, what, why))
    i = 0
    while i < len(rows):
        j = i
        while j + 1 < len(rows) and rows[j + 1][1:] == rows[i][1:]:
            j += 1
        t, outcome, who, what, why = rows[i]
        fold = f"  (x{j - i + 1})" if j > i else ""
        print(f"  {t:<15} {outcome:<7} {who:<58} {what:<18} {why}{fold}")
        i = j + 1
    path = harness.OUT / "demo-audit.ndjson"
    path.write_text(trail)
    code, out = harness.audit_verify(path)
    print(f"\n$ agent-iam audit verify {path.relative_to(harness.ROOT)}\n  " + out.strip().replace("\n", "\n  "))
    lines = trail.splitlines()
    k = next(i for i, line in enumerate(lines) if '"decision":"deny"' in line)
    lines[k] = lines[k].replace('"decision":"deny"', '"decision":"allow"', 1)
    forged = harness.OUT / "demo-audit-edited.ndjson"
    forged.write_text("\n".join(lines) + "\n")
    code2, out2 = harness.audit_verify(forged)
    print(f"\n$ agent-iam audit verify {forged.relative_to(harness.ROOT)}   # one deny edited into an allow\n  "
          + out2.strip().replace("\n", "\n  ") + f"\n  (exit {code2})")
    if code != 0 or code2 == 0:
        raise SystemExit("audit verification did not behave")


MCP_AUDIENCE = "https://api.agent-iam.test/mcp"
TRIAGE = {"sub": "user:alice", "aud": MCP_AUDIENCE, "scope": "tickets:read tickets:write",
          "act": {"sub": "agent:triage"}}
TRIAGE_SEARCH = {"sub": "user:alice", "aud": MCP_AUDIENCE, "scope": "tickets:read",
                 "act": {"sub": "agent:tool-search", "act": {"sub": "agent:triage"}}}


def mcp_act():
    """The ticket desk's MCP server behind the filter: what two agents of one chain see
    and may call, through the official MCP SDK's client."""
    plugin = json.loads((harness.ROOT / "examples" / "mcp-plugin.json").read_text())
    triage, search = harness.mint([{"claims": TRIAGE}, {"claims": TRIAGE_SEARCH}])
    print("\n\nMCP: a ticket desk MCP server (official MCP SDK, stateless Streamable HTTP) behind the filter, "
          "per-tool scopes from examples/mcp-plugin.json")
    with harness.stack(name="demo-mcp", plugin_json=plugin, upstream=lambda: McpUpstream(json_response=False)) as envoy:
        server = envoy.upstream.server

        def tools(token, mode):
            return ", ".join(mc.tool_names(envoy.listen_port, token, mode))

        print(f"\n[M1] alice -> triage (tickets:read tickets:write) lists tools, MCP 2026-07-28 client\n"
              f"  ← {tools(triage, mc.MODERN)}")
        print(f"\n[M2] alice -> triage -> tool-search (tickets:read) lists tools: the write and admin tools are "
              f"filtered out\n  ← {tools(search, mc.MODERN)}")
        print(f"\n[M3] the same agent with a 2025-11-25 client (initialize handshake): "
              f"the same list\n  ← {tools(search, 'legacy')}")
        out = mc.call_tool(envoy.listen_port, search, mc.MODERN, "search_tickets", {"q": "printer"})
        text = out.result.content[0].text if out.error is None else repr(out.error)
        print(f"\n[M4] tool-search calls search_tickets\n  ← {text}")
        executed = len(server.executed)
        out = mc.call_tool(envoy.listen_port, search, mc.MODERN, "create_ticket", {"title": "printer on fire"})
        refused = out.refused
        print(f"\n[M5] tool-search calls create_ticket (needs tickets:write)\n"
              f"  ← {refused.status} JSON-RPC error {out.error.code}: {out.error.message}\n"
              f"    www-authenticate: {refused.headers.get('www-authenticate')}\n"
              f"    the server executed: {[name for name, _ in server.executed[executed:]]}")
        client = harness.Client(envoy.listen_port)
        r = mc.rpc(client, search, "tools/call", {"name": "delete_ticket", "arguments": {"id": 7}},
                   mcp_name="search_tickets")
        print(f"\n[M6] a body that calls delete_ticket under the header Mcp-Name: search_tickets\n"
              f"  ← {r.status} {r.body.decode()}")
        r = client.request("/.well-known/oauth-protected-resource/mcp")
        print(f"\n[M7] GET /.well-known/oauth-protected-resource/mcp, no token (RFC 9728)\n  ← {r.status} {r.body.decode()}")
        client.close()
        print(f"\n    the MCP server executed, in all: {[name for name, _ in server.executed]}")


def dpop_act():
    """A token bound to the agent's key (DPoP, RFC 9449): whoever steals it cannot use it."""
    agent_key, thief_key = dpop.new_key("ES256"), dpop.new_key("ES256")
    [token] = harness.mint([dpop.bound(agent_key)])
    print("\n\nDPoP: a stolen bound token is useless. build-bot-7's token names its key (cnf.jkt, RFC 9449); "
          "each request carries a fresh proof, signed with that key, for that method and URL")
    with harness.stack(name="demo-dpop") as envoy:
        url = f"http://127.0.0.1:{envoy.listen_port}/tickets/42"
        proof = dpop.proof(agent_key, "ES256", "GET", url, token)
        thief_proof = dpop.proof(thief_key, "ES256", "GET", url, token)
        client = harness.Client(envoy.listen_port)
        for n, title, headers in [
            ("D1", "build-bot-7 sends its token with a proof from its own key",
             {"authorization": f"DPoP {token}", "dpop": proof}),
            ("D2", "a thief sends the stolen token as a plain Bearer token", {"authorization": f"Bearer {token}"}),
            ("D3", "the thief signs a proof with its own key", {"authorization": f"DPoP {token}", "dpop": thief_proof}),
            ("D4", "the thief replays the captured request, proof and all",
             {"authorization": f"DPoP {token}", "dpop": proof}),
        ]:
            show(n, title, "GET", "/tickets/42", headers, client.request("/tickets/42", headers=headers))
        client.close()
        print(f"\n    the upstream received {len(envoy.upstream.server.seen)} of these 4 requests")


def runaway_act():
    """A runaway agent: slowed by its write rate, then quarantined after too many refusals."""
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["limits"] = [{"name": "agent-writes", "key": ["agent"],
                         "match": {"methods": ["POST", "PUT", "PATCH", "DELETE"]},
                         "rate": {"per_s": 0.1, "burst": 3}}]
    plugin["quarantine"] = {"denials": 4, "within_s": 60, "for_s": 30}
    print("\n\nA runaway agent: build-bot-7 loops on POST /tickets. Its writes are limited to a burst of 3, "
          "then one every 10 s (limits, keyed on the verified agent); more than 4 refusals within a minute "
          "quarantine it for 30 s on every worker of this Envoy")
    with harness.stack(name="demo-runaway", plugin_json=plugin) as envoy:
        [bot, alice] = harness.mint([{"claims": {"sub": "agent:build-bot-7", "scope": "tickets:read tickets:write"}},
                                     {"claims": ALICE_PLANNER}])
        client = harness.Client(envoy.listen_port)
        statuses = []
        for i in range(8):
            r = client.request("/tickets", method="POST", token=bot, body=b"{}")
            statuses.append(f"{r.status}" + (f" {r.json()['reason']} (retry-after {r.headers['retry-after']})"
                                             if r.status == 429 else ""))
        print("\n[R1] build-bot-7 POSTs /tickets 8 times in a row")
        for i, s in enumerate(statuses, 1):
            print(f"  ← #{i}: {s}")
        show("R2", "then build-bot-7 reads a ticket", "GET", "/tickets/1", {"authorization": f"Bearer {bot}"},
             client.request("/tickets/1", token=bot))
        show("R3", "alice's planner is not affected", "GET", "/tickets/1", {"authorization": f"Bearer {alice}"},
             client.request("/tickets/1", token=alice))
        client.close()
        harness.wait_until(lambda: [e for e in envoy.audit_events() if e["kind"] == "quarantine"], 5,
                           "the quarantine event")
        [q] = [e for e in envoy.audit_events() if e["kind"] == "quarantine"]
        print(f"\n    audit: quarantine of {q['agent']} for {q['until'] - q['since']:.0f} s after more than "
              f"{q['denials']} refusals within {q['within_s']} s; evidence: decisions "
              f"{', '.join(d[-4:] for d in q['decision_ids'])} (last 4 hex digits)")
        print(f"    the upstream received {len(envoy.upstream.server.seen)} of these 10 requests")


def profiles_act():
    """Five identity providers' agent tokens, one model, one policy."""
    plugin = json.loads((harness.ROOT / "examples" / "profiles" / "plugin.json").read_text())
    recipe = {name: json.loads((harness.ROOT / "examples" / "profiles" / f"{name}.json").read_text())
              for name in ("entra-obo", "auth0-obo", "okta-xaa", "spiffe-svid", "keycloak-exchange")}
    id_jag = {"header": {"typ": "oauth-id-jag+jwt"}, "claims": dict(recipe["okta-xaa"]["claims"], act=None)}
    tid = recipe["entra-obo"]["claims"]["tid"]
    org = recipe["auth0-obo"]["claims"]["org_id"]
    steps = [
        ("P1", "Entra Agent ID: an agent acting for a user (on-behalf-of)", f"/tenants/{tid}/tickets", "entra-obo"),
        ("P2", "Auth0 for AI Agents: an agent acting for a user", f"/tenants/{org}/tickets", "auth0-obo"),
        ("P3", "the same Entra agent reaches for another tenant's tickets", "/tenants/globex/tickets", "entra-obo"),
        ("P4", "the same Auth0 agent reaches for another tenant's tickets", "/tenants/globex/tickets", "auth0-obo"),
        ("P5", "Okta Cross App Access: a token issued from an ID-JAG", "/tickets/7", "okta-xaa"),
        ("P6", "the ID-JAG itself, sent as if it were an access token", "/tickets/7", id_jag),
        ("P7", "a SPIFFE JWT-SVID of the planner agent (SPIRE)", "/tickets/7", "spiffe-svid"),
        ("P8", "Keycloak token exchange: the same planner, registered once by its SPIFFE ID, acting for a user",
         "/tickets/7", "keycloak-exchange"),
    ]
    tokens = harness.mint([recipe[r] if isinstance(r, str) else r for *_, r in steps])
    print("\n\nOne model for every identity provider: each issuer's profile maps its agent tokens to agent, "
          "principal, chain, agent type, tenant and client; one registry and the shipped policy "
          "(examples/profiles/plugin.json) decide them alike")
    with harness.stack(name="demo-profiles", plugin_json=plugin) as envoy:
        client = harness.Client(envoy.listen_port)
        for (n, title, path, _), token in zip(steps, tokens):
            headers = {"authorization": f"Bearer {token}"}
            show(n, title, "GET", path, headers, client.request(path, headers=headers))
        client.close()
        print(f"\n    the upstream received {len(envoy.upstream.server.seen)} of these {len(steps)} requests")


def main():
    recipes = [s[3] for s in STEPS if isinstance(s[3], dict)]
    minted = harness.mint(recipes + [{"claims": {"jti": "demo-T"}}])
    token_t = minted.pop()
    tokens = iter(minted)
    plugin = harness.with_revocation(json.loads(harness.PLUGIN.read_text()), interval_ms=1000, max_staleness_s=30)
    plugin["audit"] = {"log": True, "collector": {"cluster": "agent_iam_control_plane", "path": "/audit",
                                                  "flush_interval_ms": 200}}
    with harness.stack(name="demo", plugin_json=plugin) as envoy:
        harness.wait_revocation_fresh(envoy)
        print(f"Envoy {envoy.ready_after_s:.2f}s to ready on 127.0.0.1:{envoy.listen_port} "
              f"(admin {envoy.admin_port}); upstream echo 127.0.0.1:{envoy.upstream.port}; "
              f"control plane 127.0.0.1:{envoy.control_plane.port}")
        for line in envoy.log().splitlines():
            if "agent-iam 0.1.0 configured" in line:
                print("filter:", line.split(": ", 1)[1])
                break
        client = harness.Client(envoy.listen_port)
        n = 0
        for title, method, path, recipe, extra in STEPS:
            if title == "RETIRE":
                retire_planner(envoy, client, None)
                continue
            if title == "REVOKE":
                disable_build_bot(envoy, client, token_t)
                continue
            n += 1
            headers = dict(extra)
            if recipe == "T":
                headers["authorization"] = f"Bearer {token_t}"
            elif recipe is not None:
                headers["authorization"] = f"Bearer {next(tokens)}"
            r = client.request(path, headers=headers, method=method, body=b"{}" if method == "POST" else None)
            show(n, title, method, path, headers, r)
        client.close()
        logged = len(envoy.decision_lines())
        harness.wait_until(lambda: sum(e["kind"] == "decision" for e in events(envoy.control_plane.audit_text())) >= logged,
                           5, f"the collector to hold the {logged} decisions Envoy logged")
        trail = envoy.control_plane.audit_text()
    print_trail(trail, logged)
    mcp_act()
    dpop_act()
    runaway_act()
    profiles_act()
    print("\nEnvoy, the upstream and the control plane are stopped. Full Envoy log:", envoy.log_path)
    print("Try a policy change on the same decisions in the browser: ./test-harness/playground.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
