"""The decision cache through a real Envoy (both builds): a repeated request is answered
as an evaluation would answer it, with its own identity headers upstream and its own audit
event; what the policy reads — the token's tenant, the path, the agent's registry record,
the clock — changing is never answered from the cache."""

import copy
import json
import time

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())


def cached_plugin():
    plugin = copy.deepcopy(PLUGIN)
    plugin["policy"]["decision_cache_entries"] = 64
    plugin["policy"]["time_resolution_s"] = 1
    plugin["agents"]["feed"].update({"poll_interval_ms": 200, "max_staleness_s": 3})
    return plugin


def test_repeated_requests_get_their_own_answer_headers_and_events():
    plugin = cached_plugin()
    with harness.stack(plugin_json=plugin, name="decision-cache") as envoy:
        assert envoy.wait_for_log("decision cache keyed on 9 input member(s)")
        c = harness.Client(envoy.listen_port)
        chain = {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}
        acme, globex = harness.mint([{"claims": {"sub": "user:alice", "act": chain, "tenant": "acme"}},
                                     {"claims": {"sub": "user:bob", "act": chain, "tenant": "globex"}}])
        ids = []
        for _ in range(3):
            r = c.request("/tenants/acme/tickets", token=acme)
            assert r.status == 200, r
            seen = r.json()["headers"]
            # What the upstream receives is this request's: its tenant, principal, decision id.
            assert seen["x-agent-tenant"] == ["acme"] and seen["x-agent-principal"] == ["user:alice"]
            ids.append(seen["x-agent-decision-id"][0])
            r = c.request("/tenants/acme/tickets", token=globex)
            assert (r.status, r.json()["policy_reason"]) == (403, "tenant.mismatch")
            r = c.request("/tenants/globex/tickets", token=globex)
            assert r.status == 200 and r.json()["headers"]["x-agent-tenant"] == ["globex"]
            # Another path under the same route: its own decision.
            assert c.request("/tenants/globex/tickets/7", token=acme).json()["policy_reason"] == "tenant.mismatch"
        assert len(set(ids)) == 3
        for d in ids:
            assert envoy.wait_for_log(d)
        events = [e for e in envoy.decision_lines() if e["decision_id"] in ids]
        assert len(events) == 3 and all(e["decision"] == "allow" for e in events)

        # The registry changes the agent's record: the next request is decided on it.
        doc = harness.registry_doc(plugin, version="2")
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["status"] = "suspended"
        envoy.control_plane.set_registry(doc)
        harness.wait_until(lambda: c.request("/tenants/acme/tickets", token=acme).json().get("reason")
                           == "delegation.actor_inactive", 5, "the suspension to apply")
        doc["version"] = "3"
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["status"] = "active"
        envoy.control_plane.set_registry(doc)
        harness.wait_until(lambda: c.request("/tenants/acme/tickets", token=acme).status == 200, 5,
                           "the re-enrolment to apply")
        c.close()


def test_the_policy_sees_the_clock_at_its_resolution():
    """With `time_resolution_s` the clock the policy reads (recorded in the audit event on a
    route that records its input) is floored to whole seconds, on every request; without it,
    the exact time, and the policy is not cached."""
    for resolution in (1, None):
        plugin = cached_plugin()
        if resolution is None:
            del plugin["policy"]["time_resolution_s"]
        for r in plugin["routes"]:
            r["audit_policy_input"] = r["name"] == "tenants"
        with harness.stack(plugin_json=plugin, name=f"decision-cache-clock-{resolution}") as envoy:
            want = ("decision cache keyed on 9 input member(s)" if resolution else
                    "decision cache off: the policy reads input.time; set policy.time_resolution_s to cache it")
            assert envoy.wait_for_log(want)
            c = harness.Client(envoy.listen_port)
            [acme] = harness.mint([{"claims": {"tenant": "acme"}}])
            for _ in range(5):
                assert c.request("/tenants/acme/tickets", token=acme).status == 200
                time.sleep(0.13)
            c.close()
            harness.wait_until(lambda: len(envoy.decision_lines()) >= 5, 5, "five decision events")
            seen = [e["policy"]["input"]["time"]["now_ns"] for e in envoy.decision_lines()]
        whole = [ns % 1_000_000_000 == 0 for ns in seen]
        if resolution:
            assert all(whole), seen
        else:
            assert not all(whole), seen
