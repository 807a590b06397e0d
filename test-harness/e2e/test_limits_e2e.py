"""Limits through a real Envoy: rates and budgets keyed on the identity the filter verified,
shared by Envoy's workers. Every test checks what the recording upstream received (a refused
request never arrives), the answer (429, `Retry-After`, the limit's own reason code), the
audit event and the metrics."""

import copy
import json
import threading
import uuid

import harness
from harness import mcp_client as mc
from harness.mcp_server import McpUpstream

PLUGIN = json.loads(harness.PLUGIN.read_text())
WRITER = {"claims": {"sub": "agent:build-bot-7", "scope": "tickets:read tickets:write"}}
ALICE_VIA_PLANNER = {"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"},
                                "scope": "tickets:read tickets:write"}}


def with_limits(limits, base=PLUGIN, **extra):
    p = copy.deepcopy(base)
    p["limits"] = limits
    p.update(extra)
    return p


def marked(client, token, method="POST", path="/tickets", headers=()):
    """One request with a fresh `x-marker`; -> (response, marker)."""
    marker = uuid.uuid4().hex
    r = client.request(path, method=method, token=token, body=b"{}" if method == "POST" else None,
                       headers=[("x-marker", marker), *headers])
    return r, marker


def arrived(envoy, marker):
    return [h for h in envoy.upstream.server.seen if h.get("x-marker") == [marker]]


def test_a_runaway_agent_is_slowed_to_its_rate_and_told_when_to_retry():
    plugin = with_limits([{"name": "agent-writes", "key": ["agent"],
                           "match": {"methods": ["POST", "PUT", "PATCH", "DELETE"]},
                           "rate": {"per_s": 0.2, "burst": 3}}])
    with harness.stack(plugin_json=plugin, name="limits-rate") as envoy:
        c = harness.Client(envoy.listen_port)
        bot, alice = harness.mint([WRITER, ALICE_VIA_PLANNER])
        # A client cannot move itself to another counter: the key is the verified agent.
        forged = [("x-agent-id", "agent:someone-else"), ("x-forwarded-for", "203.0.113.9")]
        results = [marked(c, bot, headers=forged if i % 2 else ()) for i in range(6)]
        statuses = [r.status for r, _ in results]
        assert statuses == [200, 200, 200, 429, 429, 429], statuses
        for r, m in results[3:]:
            assert arrived(envoy, m) == [], "a refused request reached the upstream"
            assert r.json()["reason"] == "limit.agent-writes"
            assert 1 <= int(r.headers["retry-after"]) <= 5, r.headers
        assert all(len(arrived(envoy, m)) == 1 for _, m in results[:3])
        # Reads are not limited; another agent has its own bucket.
        assert marked(c, bot, method="GET", path="/tickets/1")[0].status == 200
        assert marked(c, alice)[0].status == 200
        c.close()
        harness.wait_until(lambda: len(envoy.decision_lines()) >= 8, 5, "eight decision events")
        refused = [e for e in envoy.decision_lines() if e["reason"] == "limit.agent-writes"]
        assert len(refused) == 3 and all(e["status"] == 429 and e["agent"] == "agent:build-bot-7" for e in refused)
        assert harness.audit_schema_errors(refused) == []
        assert harness.count(envoy, reason="limit.agent-writes", check="limits", decision="deny") == 3


def test_a_budget_holds_exactly_under_parallel_requests_across_two_workers():
    budget = 5
    plugin = with_limits([{"name": "writes-per-principal", "key": ["principal", "route"],
                           "match": {"routes": ["tickets-write"]},
                           "budget": {"count": budget, "window_s": 3600}}])
    with harness.stack(plugin_json=plugin, name="limits-workers", concurrency=2) as envoy:
        [bot] = harness.mint([WRITER])
        # Sixteen connections kept open, spread by the kernel over both workers, all firing.
        clients = [harness.Client(envoy.listen_port) for _ in range(16)]
        start = threading.Barrier(len(clients))
        results, lock = [], threading.Lock()

        def fire(client):
            start.wait()
            for _ in range(4):
                r, m = marked(client, bot)
                with lock:
                    results.append((r.status, m))

        threads = [threading.Thread(target=fire, args=(cl,)) for cl in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for cl in clients:
            cl.close()
        admitted = [m for s, m in results if s == 200]
        assert len(results) == 64
        assert len(admitted) == budget, sorted(s for s, _ in results)
        assert sorted({s for s, _ in results}) == [200, 429]
        # What the upstream executed: exactly the admitted requests.
        served = [h for h in envoy.upstream.server.seen if h.get("x-marker")]
        assert sorted(h["x-marker"][0] for h in served) == sorted(admitted)
        harness.wait_until(lambda: len(envoy.decision_lines()) >= 64, 10, "64 decision events")
        events = envoy.decision_lines()
        assert len({e["stream"] for e in events}) == 2, "both workers decided"
        assert sum(e["reason"] == "limit.writes-per-principal" for e in events) == 64 - budget


def test_an_mcp_tool_limit_counts_calls_of_that_tool_only():
    from test_mcp_e2e import PLUGIN as MCP_PLUGIN

    plugin = with_limits([{"name": "mcp-create", "key": ["agent", "mcp.name"],
                           "match": {"mcp_tools": ["create_ticket"]}, "rate": {"per_s": 0.001, "burst": 1}}],
                         base=MCP_PLUGIN)
    with harness.stack(plugin_json=plugin, name="limits-mcp",
                       upstream=lambda: McpUpstream(json_response=True)) as envoy:
        harness.wait_revocation_fresh(envoy)
        [token] = harness.mint([{"claims": {"sub": "agent:build-bot-7", "aud": "https://api.example.test/mcp",
                                            "scope": "tickets:read tickets:write"}}])
        mode = mc.MODES[-1]
        first = mc.call_tool(envoy.listen_port, token, mode, "create_ticket", {"title": "one"})
        assert first.error is None, first
        second = mc.call_tool(envoy.listen_port, token, mode, "create_ticket", {"title": "two"})
        assert second.error is not None, second
        for q in ("a", "b", "c"):
            assert mc.call_tool(envoy.listen_port, token, mode, "search_tickets", {"q": q}).error is None
        assert [name for name, _ in envoy.upstream.executed if name == "create_ticket"] == ["create_ticket"]
        refused = [e for e in envoy.decision_lines() if e["reason"] == "limit.mcp-create"]
        assert len(refused) == 1 and refused[0]["mcp"]["name"] == "create_ticket", refused


def test_limits_in_shadow_are_counted_and_not_enforced():
    plugin = with_limits([{"name": "reads", "key": ["agent"], "budget": {"count": 1, "window_s": 60}}],
                         checks={"limits": {"mode": "shadow"}})
    with harness.stack(plugin_json=plugin, name="limits-shadow") as envoy:
        c = harness.Client(envoy.listen_port)
        [bot] = harness.mint([WRITER])
        results = [marked(c, bot, method="GET", path="/tickets/1") for _ in range(3)]
        c.close()
        assert [r.status for r, _ in results] == [200, 200, 200]
        assert all(len(arrived(envoy, m)) == 1 for _, m in results)
        harness.wait_until(lambda: len(envoy.decision_lines()) >= 3, 5, "three decision events")
        shadowed = [e for e in envoy.decision_lines() if not e["enforced"]]
        assert [s["reason"] for e in shadowed for s in e["shadow"]] == ["limit.reads"] * 2
        assert harness.count(envoy, metric="shadow_denied_total", reason="limit.reads", check="limits") == 2


def test_a_runaway_agent_is_quarantined_everywhere_then_released():
    """Four refusals within a minute quarantine agent:planner on both workers: refused as
    the acting agent and as an earlier actor of a chain, with the evidence audited; the
    quarantine ends after `for_s`, and the registry feed's `released_at` lifts the next one."""
    import time

    plugin = with_limits([], quarantine={"denials": 3, "within_s": 60, "for_s": 3})
    plugin["agents"]["feed"].update({"poll_interval_ms": 200, "max_staleness_s": 3})
    plugin["audit"] = {"log": True, "collector": {"cluster": "agent_iam_control_plane", "path": "/audit",
                                                  "batch_max": 5, "flush_interval_ms": 200}}
    with harness.stack(plugin_json=plugin, name="limits-quarantine", concurrency=2) as envoy:
        planner, chain = harness.mint([
            {"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}},
            {"claims": {"sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}},
        ])
        clients = [harness.Client(envoy.listen_port) for _ in range(4)]

        def run_away():
            # mail/send needs mail:send, which the token lacks: four refusals, spread over
            # the connections (and so the workers).
            return [marked(cl, planner, path="/mail/send") for cl in clients]

        assert [r.json()["reason"] for r, _ in run_away()] == ["scope.insufficient"] * 4
        for token in (planner, chain):
            r, m = marked(clients[0], token, method="GET", path="/tickets/1")
            assert (r.status, r.json()["reason"]) == (403, "agent.quarantined")
            assert arrived(envoy, m) == []
        harness.wait_until(lambda: [e for e in envoy.audit_events() if e["kind"] == "quarantine"], 5,
                           "the quarantine event")
        [q] = [e for e in envoy.audit_events() if e["kind"] == "quarantine"]
        assert (q["agent"], q["denials"], q["within_s"], q["until"] - q["since"]) == ("agent:planner", 3, 60, 3)
        refusals = {e["decision_id"] for e in envoy.decision_lines() if e["reason"] == "scope.insufficient"}
        assert q["decision_id"] in refusals and set(q["decision_ids"]) <= refusals
        assert harness.audit_schema_errors(envoy.audit_events()) == []
        # The security team's collector has it too.
        harness.wait_until(lambda: [json.loads(line) for line in envoy.control_plane.audit_text().splitlines()
                                    if '"kind":"quarantine"' in line], 5, "the quarantine event at the collector",
                           expect=lambda got: got == [q])
        # It ends after for_s.
        harness.wait_until(lambda: marked(clients[0], planner, method="GET", path="/tickets/1")[0].status, 6,
                           "the quarantine to end", expect=lambda s: s == 200)
        # Quarantined again; the registry releases it.
        run_away()
        assert marked(clients[1], planner, method="GET", path="/tickets/1")[0].status == 403
        doc = harness.registry_doc(plugin, version="2")
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["released_at"] = int(time.time()) + 1
        envoy.control_plane.set_registry(doc)
        harness.wait_until(lambda: marked(clients[1], chain, method="GET", path="/tickets/1")[0].status, 2,
                           "the release to apply", expect=lambda s: s == 200)
        for cl in clients:
            cl.close()


def test_envoys_rate_limit_service_gets_the_verified_identity_never_the_clients():
    """`generate envoy --rate-limit-service`: Envoy's own ratelimit filter, after ours, asks
    the service with descriptors from the identity headers the filter set. A client's own
    copies of those headers never reach a descriptor; a request the filter refused asks
    nothing; the service's OVER_LIMIT is Envoy's 429."""
    from harness.ratelimit_server import RateLimitService

    with RateLimitService() as rls, harness.stack(name="limits-rls", rate_limit=rls.port) as envoy:
        c = harness.Client(envoy.listen_port)
        alice, bot = harness.mint([ALICE_VIA_PLANNER, WRITER])
        forged = [("x-agent-id", "agent:innocent"), ("x-agent-principal", "user:someone-else")]
        r, m = marked(c, alice, method="GET", path="/tickets/1", headers=forged)
        assert r.status == 200 and len(arrived(envoy, m)) == 1
        [req] = rls.requests
        assert req["domain"] == "agent_iam"
        assert req["descriptors"] == [[("agent", "agent:planner"), ("principal", "user:alice")],
                                      [("agent", "agent:planner")]]
        # Refused by the filter (no token): the service is not asked.
        assert c.request("/tickets/1", headers=forged).status == 401
        assert len(rls.requests) == 1
        # The service says over the limit for this agent: Envoy refuses, the upstream never sees it.
        rls.over_limit.add("agent:build-bot-7")
        r, m = marked(c, bot, method="GET", path="/tickets/1", headers=forged)
        assert r.status == 429 and arrived(envoy, m) == []
        assert rls.requests[-1]["descriptors"][1] == [("agent", "agent:build-bot-7")]
        c.close()


def test_envoys_local_rate_limit_keeps_one_bucket_per_verified_agent():
    """`generate envoy --local-rate-limit-per-agent N`: Envoy's local_ratelimit after the
    filter, one bucket per verified agent; a client's own x-agent-id moves it nowhere."""
    with harness.stack(name="limits-local", local_rate_limit=2) as envoy:
        c = harness.Client(envoy.listen_port)
        bot, alice = harness.mint([WRITER, ALICE_VIA_PLANNER])
        forged = [("x-agent-id", "agent:innocent")]
        results = [marked(c, bot, method="GET", path="/tickets/1", headers=forged) for _ in range(3)]
        assert [r.status for r, _ in results] == [200, 200, 429]
        assert arrived(envoy, results[2][1]) == []
        assert [marked(c, alice, method="GET", path="/tickets/1")[0].status for _ in range(2)] == [200, 200]
        c.close()


def test_a_sliding_budget_keyed_on_a_claim_is_shared_by_every_agent_of_that_tenant():
    plugin = with_limits([{"name": "tenant-reads", "key": ["claim.tenant"],
                           "budget": {"count": 2, "window_s": 60, "sliding": True}}])
    with harness.stack(plugin_json=plugin, name="limits-claim") as envoy:
        c = harness.Client(envoy.listen_port)
        bot_acme, planner_acme, bot_globex = harness.mint([
            {"claims": {"sub": "agent:build-bot-7", "tenant": "acme"}},
            {"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}, "tenant": "acme"}},
            {"claims": {"sub": "agent:build-bot-7", "tenant": "globex"}},
        ])
        statuses = [marked(c, t, method="GET", path="/tickets/1")[0].status
                    for t in (bot_acme, planner_acme, bot_acme, bot_globex)]
        assert statuses == [200, 200, 429, 200]
        r, m = marked(c, planner_acme, method="GET", path="/tickets/1")
        assert (r.status, r.json()["reason"]) == (429, "limit.tenant-reads") and arrived(envoy, m) == []
        assert 1 <= int(r.headers["retry-after"]) <= 64  # the window plus one step (60 s / 15)
        c.close()


def test_a_quarantine_reaches_another_gateway_through_the_shared_signals_transmitter():
    """Envoy A quarantines agent:planner and pushes the report, a SET it signs (RFC 8935),
    to the transmitter, retrying while the transmitter is down. The SET verifies with PyJWT
    against the public key the gateway gave the transmitter and carries the audited
    evidence. Relayed by the transmitter, it makes Envoy B refuse the agent (which B never
    refused itself) until B's registry releases it."""
    import time

    import jwt
    from joserfc.jwk import ECKey

    private = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    private["kid"] = "gw-a"
    public = {k: v for k, v in private.items() if k != "d"}
    gateway = "https://gw-a.agent-iam.test"
    plugin_a = with_limits([], quarantine={
        "denials": 3, "within_s": 60, "for_s": 60,
        "report": {"cluster": "agent_iam_control_plane", "path": "/ssf/push", "issuer": gateway,
                   "audience": harness.SSF_ISSUER, "signing_key": private}})
    plugin_a["audit"] = {"log": True}
    plugin_b = harness.with_revocation(with_limits([]), max_staleness_s=5)
    plugin_b["agents"]["feed"].update({"poll_interval_ms": 200, "max_staleness_s": 3})
    plugin_b["audit"] = {"log": True}
    with harness.stack(plugin_json=plugin_a, name="report-a") as a, \
            harness.stack(plugin_json=plugin_b, name="report-b") as b:
        [planner] = harness.mint([{"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}])
        ca, cb = harness.Client(a.listen_port), harness.Client(b.listen_port)

        def on_b():
            r, m = marked(cb, planner, method="GET", path="/tickets/1")
            return r, arrived(b, m)

        harness.wait_until(lambda: on_b()[0].status, 5, "B's first revocation poll", expect=lambda s: s == 200)
        a.control_plane.ssf_push_fail("503")
        assert [marked(ca, planner, path="/mail/send")[0].json()["reason"] for _ in range(4)] \
            == ["scope.insufficient"] * 4
        harness.wait_until(lambda: a.control_plane.stats()["push_refused"], 5,
                           "a push while the transmitter is down", expect=lambda n: n >= 1)
        a.control_plane.ssf_push_fail("none")
        [report] = harness.wait_until(a.control_plane.ssf_received, 10, "the quarantine report",
                                      expect=lambda s: len(s) == 1)
        assert jwt.get_unverified_header(report) == {"alg": "ES256", "typ": "secevent+jwt", "kid": "gw-a"}
        claims = jwt.decode(report, key=jwt.PyJWK(public).key, algorithms=["ES256"],
                            audience=harness.SSF_ISSUER, issuer=gateway)
        [q] = [e for e in a.audit_events() if e["kind"] == "quarantine"]
        event = claims["events"][harness.EVENT["agent_quarantined"]]
        assert event["subject"] == {"format": "iss_sub", "iss": PLUGIN["issuers"][0]["issuer"],
                                    "sub": "agent:planner"}
        assert (event["event_timestamp"], event["until"], event["denials"], event["decision_ids"]) \
            == (q["since"], q["until"], 3, q["decision_ids"])
        assert claims["jti"] == "quarantine-" + q["decision_id"]
        stats = harness.admin_stats(a, "agent_iam.quarantine")
        assert stats["wasmcustom.agent_iam.quarantine.reports_sent_total"] == "1"
        assert int(stats["wasmcustom.agent_iam.quarantine.report_failures_total"]) >= 1

        # B has not refused the agent once: the transmitter relays the event, signed as itself.
        r, seen = on_b()
        assert r.status == 200 and len(seen) == 1
        b.control_plane.push_sets(harness.mint_sets([("relay-1", {harness.EVENT["agent_quarantined"]: event})]))
        harness.wait_until(lambda: on_b()[0].status, 5, "B to apply the relayed quarantine",
                           expect=lambda s: s == 403)
        r, seen = on_b()
        assert (r.status, r.json()["reason"], seen) == (403, "agent.quarantined", [])
        [applied] = [e for e in b.audit_events() if e["kind"] == "revocation" and e["jti"] == "relay-1"]
        assert applied["outcome"] == "applied" and "agent:planner quarantined" in applied["detail"]
        # B's registry releases it.
        doc = harness.registry_doc(plugin_b, version="2")
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["released_at"] = int(time.time()) + 1
        b.control_plane.set_registry(doc)
        harness.wait_until(lambda: on_b()[0].status, 3, "the release to apply on B", expect=lambda s: s == 200)
        ca.close()
        cb.close()
