"""Agents as first-class identities, end to end through Envoy: delegation, the privilege
ceiling, route scopes, and the live registry feed from the local control plane.
(Every rule also has a golden case, replayed natively and through Envoy.)"""

import copy
import json
import time

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
ALICE_VIA_PLANNER_TOOL = {"sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}


def plugin_with(**changes):
    p = copy.deepcopy(PLUGIN)
    for dotted, value in changes.items():
        node = p
        *parents, leaf = dotted.split("__")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return p


def test_two_hop_delegation_reaches_upstream_with_the_whole_chain(client):
    [token] = harness.mint([{"claims": ALICE_VIA_PLANNER_TOOL}])
    r = client.request("/tickets/7", token=token)
    assert r.status == 200, r
    seen = r.json()["headers"]
    assert seen["x-agent-id"] == ["agent:tool-search"]
    assert seen["x-agent-principal"] == ["user:alice"]
    assert seen["x-agent-chain"] == ["agent:tool-search,agent:planner"]
    assert seen["x-agent-scopes"] == ["tickets:read"]
    assert "authorization" in seen  # kept by default


def test_missing_route_scope_is_403_with_the_scope_named(client):
    [token] = harness.mint([{"claims": {"scope": "tickets:read"}}])
    r = client.request("/tickets/7", token=token, method="POST", body=b"{}")
    assert r.status == 403
    assert r.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="scope.insufficient", scope="tickets:write", '
        'DPoP algs="ES256 EdDSA Ed25519 RS256"')
    assert r.json()["reason"] == "scope.insufficient"


def test_ceiling_exceeded_names_the_excess_scope(client):
    [token] = harness.mint([{"claims": dict(ALICE_VIA_PLANNER_TOOL, scope="tickets:read tickets:write")}])
    r = client.request("/tickets/7", token=token)
    assert r.status == 403 and r.json()["reason"] == "delegation.scope_exceeds_ceiling"
    assert 'scope="tickets:write"' in r.headers["www-authenticate"]


def test_narrow_mode_and_strip_authorization():
    plugin = plugin_with(delegation__on_scope_exceeds_ceiling="narrow", upstream__strip_authorization=True)
    with harness.stack(plugin_json=plugin, name="narrow") as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": dict(ALICE_VIA_PLANNER_TOOL, scope="tickets:read tickets:write")}])
        r = c.request("/tickets/7", token=token)
        assert r.status == 200, r
        seen = r.json()["headers"]
        assert seen["x-agent-scopes"] == ["tickets:read"]
        assert "authorization" not in seen
        # Narrowed away: the write route now lacks its scope.
        assert c.request("/tickets/7", token=token, method="POST", body=b"{}").status == 403
        envoy.wait_for_log("agent-iam audit")
        line = envoy.decision_lines()[0]
        assert line["scopes"] == {"requested": ["tickets:read", "tickets:write"], "effective": ["tickets:read"]}
        c.close()


def fast_feed_plugin(**feed):
    plugin = copy.deepcopy(PLUGIN)
    plugin["agents"]["feed"].update({"poll_interval_ms": 200, "max_staleness_s": 3}, **feed)
    return plugin


def test_agent_retired_through_the_feed_is_denied_within_one_poll_interval():
    plugin = fast_feed_plugin()
    with harness.stack(plugin_json=plugin, name="feed-retire", concurrency=2) as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}])
        assert c.request("/tickets/1", token=token).status == 200
        doc = harness.registry_doc(plugin, version="2")
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["status"] = "retired"
        changed = time.monotonic()
        envoy.control_plane.set_registry(doc)
        harness.wait_until(lambda: c.request("/tickets/1", token=token).json().get("reason") == "agent.retired", 5,
                           "agent:planner's retirement to apply")
        denied_at = time.monotonic()
        # One poll interval (0.2 s) plus request and scheduling slack on a loaded 2-core machine.
        assert denied_at - changed < 1.0, denied_at - changed
        assert envoy.wait_for_log("registry version 2 applied")
        # Re-enrolling works the same way, and Envoy never restarted.
        doc["version"] = "3"
        for rec in doc["agents"]:
            if rec["id"] == "agent:planner":
                rec["status"] = "active"
        envoy.control_plane.set_registry(doc)
        harness.wait_until(lambda: c.request("/tickets/1", token=token).status == 200, 5, "re-enrolment to apply")
        assert envoy.proc.poll() is None
        c.close()


def test_feed_is_polled_once_per_envoy_not_once_per_worker():
    plugin = fast_feed_plugin()
    with harness.stack(plugin_json=plugin, name="feed-lease", concurrency=2) as envoy:
        before = envoy.control_plane.registry_requests()
        time.sleep(2.0)
        polls = envoy.control_plane.registry_requests() - before
        # 2 s at 200 ms: ~10 polls for the whole Envoy (3 VMs would make ~30 without the lease).
        assert 5 <= polls <= 14, polls


def test_broken_feed_keeps_the_last_good_registry_then_fails_closed_when_stale():
    plugin = fast_feed_plugin(max_staleness_s=2)
    with harness.stack(plugin_json=plugin, name="feed-stale") as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        assert c.request("/tickets/1", token=token).status == 200
        envoy.control_plane.fail("garbage")
        assert envoy.wait_for_log("invalid registry document")
        r = c.request("/tickets/1", token=token)
        assert r.status == 200, r  # invalid documents are refused; the last good registry stays
        envoy.control_plane.fail("500")
        harness.wait_until(lambda: c.request("/tickets/1", token=token).json().get("reason") == "agent.registry_stale", 6,
                           "agent.registry_stale once the registry is older than max_staleness_s")
        r = c.request("/tickets/1", token=token)
        assert r.status == 503 and 'error="temporarily_unavailable"' in r.headers["www-authenticate"]
        envoy.control_plane.fail("none")
        harness.wait_until(lambda: c.request("/tickets/1", token=token).status == 200, 5, "service after the feed recovers")
        c.close()


def test_last_good_mode_keeps_serving_when_stale():
    plugin = fast_feed_plugin(max_staleness_s=1)
    plugin["checks"] = {"delegation": {"failure_mode": "last_good"}}
    with harness.stack(plugin_json=plugin, name="feed-last-good") as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        envoy.control_plane.fail("500")
        time.sleep(1.8)
        assert c.request("/tickets/1", token=token).status == 200
        c.close()


@pytest.mark.parametrize("bad", [
    {"agents": {"registry": [{"id": "agent:x", "status": "paused", "max_scopes": []}]}},
    {"routes": [{"prefix": "/a", "exact": "/b"}]},
    {"agents": {"feed": {"cluster": "cp", "path": "registry.json", "poll_interval_ms": 5}}},
])
def test_bad_agent_and_route_config_is_refused(bad):
    plugin = copy.deepcopy(PLUGIN)
    plugin.update(bad)
    path = harness.OUT / "bad-agents.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plugin))
    proc = harness.cli("validate", "--config", path, check=False)
    assert proc.returncode == 1 and "invalid plugin configuration: $." in proc.stderr, proc.stderr


# Registry feed versions: a registry is its document (SHA-256), versions only order it.

VIA_PLANNER = {"sub": "user:alice", "act": {"sub": "agent:planner"}}


def planner_doc(plugin, version, status):
    doc = harness.registry_doc(plugin, version=version)
    for rec in doc["agents"]:
        if rec["id"] == "agent:planner":
            rec["status"] = status
    return doc


def registry_events(envoy):
    return [e for e in envoy.audit_events() if e["kind"] == "registry"]


def applied(envoy, c, token, version):
    """Until a worker logs that it applied `version` (workers pick it up on a request)."""
    return harness.wait_until(lambda: c.request("/tickets/1", token=token) and f"registry version {version} applied" in envoy.log(),
                              5, f"a worker to log `registry version {version} applied`")


def reason_of(c, token):
    r = c.request("/tickets/1", token=token)
    return r.json().get("reason") if r.status != 200 else None


def test_a_changed_body_under_the_same_version_is_applied():
    plugin = fast_feed_plugin()
    with harness.stack(plugin_json=plugin, name="feed-same-version", concurrency=2) as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        assert applied(envoy, c, token, "1")
        assert c.request("/tickets/1", token=token).status == 200
        envoy.control_plane.set_registry(planner_doc(plugin, "1", "retired"))
        harness.wait_until(lambda: reason_of(c, token) == "agent.retired", 5, "a new body under version 1 to apply")
        done = [e for e in registry_events(envoy) if e["outcome"] == "applied" and e["version"] == "1"]
        assert done[-1]["previous"] == "1" and "same version, new content" in done[-1]["detail"], done
        assert harness.audit_schema_errors(envoy.audit_events()) == []
        c.close()


def test_a_first_answer_with_the_inline_registrys_version_is_applied():
    # The inline registry's version is "config"; a feed answering "config" with other
    # content is still a change.
    plugin = fast_feed_plugin()
    cfg_path = harness.OUT / "feed-first-answer.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(plugin))
    with harness.Upstream() as up, harness.ControlPlane(planner_doc(plugin, "config", "retired")) as cp:
        listen, admin = harness.free_port(), harness.free_port()
        yaml_text = harness.envoy_yaml(plugin=cfg_path, listen=listen, admin=admin, upstream=up.port,
                                       control_plane=cp.port)
        with harness.Envoy(yaml_text, name="feed-first-answer", concurrency=2) as envoy:
            c = harness.Client(listen)
            [token] = harness.mint([{"claims": VIA_PLANNER}])
            harness.wait_until(lambda: reason_of(c, token) == "agent.retired", 5, "the first feed answer to apply")
            c.close()


@pytest.mark.parametrize("allow_rollback", [False, True])
def test_a_version_rollback_is_refused_and_audited_unless_allowed(allow_rollback):
    plugin = fast_feed_plugin(**({"allow_rollback": True} if allow_rollback else {}))
    with harness.stack(plugin_json=plugin, name="feed-rollback", concurrency=2) as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        envoy.control_plane.set_registry(planner_doc(plugin, "10", "active"))
        assert applied(envoy, c, token, "10")
        # An older version (numerically: 9 < 10) that would retire the planner.
        envoy.control_plane.set_registry(planner_doc(plugin, "9", "retired"))
        if allow_rollback:
            harness.wait_until(lambda: reason_of(c, token) == "agent.retired", 5, "the allowed rollback to apply")
            c.close()
            return
        # Many polls later, past max_staleness_s (3 s), version 10 is still in force and fresh.
        harness.holds_for(lambda: c.request("/tickets/1", token=token).status == 200, 4,
                          "version 10 serving (the rollback refused)")
        refused = [e for e in registry_events(envoy) if e["outcome"] == "refused"]
        assert len(refused) == len({e["stream"] for e in refused}), refused  # once per VM that polled it
        for e in refused:
            assert (e["version"], e["previous"]) == ("9", "10") and "rollback" in e["detail"], e
        stats = harness.admin_stats(envoy, "registry")
        assert int(stats["wasmcustom.agent_iam.registry.rollbacks_refused_total"]) >= 10, stats
        assert int(stats["wasmcustom.agent_iam.registry.answers_refused_total"]) >= 10, stats
        assert envoy.wait_for_log("registry feed: answer refused: version 9 is older than version 10")
        assert harness.audit_schema_errors(envoy.audit_events()) == []
        # A newer version applies again.
        envoy.control_plane.set_registry(planner_doc(plugin, "11", "retired"))
        harness.wait_until(lambda: reason_of(c, token) == "agent.retired", 5, "version 11 to apply")
        assert harness.audit_schema_errors(envoy.audit_events()) == []
        code, out = harness.audit_verify(envoy.log_path)  # registry events chain like any other
        assert code == 0, out
        c.close()


def test_a_version_with_a_newline_is_refused_and_workers_keep_serving():
    plugin = fast_feed_plugin(max_staleness_s=5)
    with harness.stack(plugin_json=plugin, name="feed-newline", concurrency=2) as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        assert applied(envoy, c, token, "1")
        # A newline (which used to split the shared `version\nfresh_ms` record) and a space.
        refusals = lambda: sum(e["outcome"] == "refused" for e in registry_events(envoy))
        for bad in ("2\n1800000000000", "2 b"):
            before = refusals()
            envoy.control_plane.set_registry(planner_doc(plugin, bad, "retired"))
            # A second of polls: the last good registry serves, fresh enough.
            harness.holds_for(lambda: c.request("/tickets/1", token=token).status == 200, 1,
                              f"the last good registry serving after version {bad!r}")
            harness.wait_until(lambda: refusals() > before, 5, f"version {bad!r} to be refused")
        refused = [e for e in registry_events(envoy) if e["outcome"] == "refused"]
        assert refused and all(e["version"] is None and "$.version" in e["detail"] for e in refused), refused
        assert envoy.wait_for_log("invalid registry document")
        assert harness.audit_schema_errors(envoy.audit_events()) == []
        # A valid answer is applied by every worker: nobody went stale.
        envoy.control_plane.set_registry(planner_doc(plugin, "3", "retired"))
        harness.wait_until(lambda: all(reason_of(c, token) == "agent.retired" for _ in range(6)), 5,
                           "every worker to apply version 3")
        c.close()
