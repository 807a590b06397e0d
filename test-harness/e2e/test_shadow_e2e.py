"""Shadow (dry-run) mode through Envoy (and, on the same stack, the trace ids an event records):
what the upstream executes and receives when a check
in shadow fails (the request, without an identity when the token failed), what the audit
trail and the metrics say (`"enforced": false`, the reason it would have denied with), and
that a route or a check left in enforce mode still denies with nothing upstream."""

import copy
import http.client
import json
import re

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
FORGED_ID = ("x-agent-id", "agent:admin")  # a client's copy of an identity header


def shadow_plugin():
    """The shipped configuration in shadow, but `mail-send` enforced."""
    p = copy.deepcopy(PLUGIN)
    p["mode"] = "shadow"
    for r in p["routes"]:
        if r["name"] == "mail-send":
            r["mode"] = "enforce"
    return p


@pytest.fixture(scope="module")
def shadow():
    with harness.stack(plugin_json=shadow_plugin(), name="shadow") as envoy:
        yield envoy


@pytest.fixture()
def c(shadow):
    client = harness.Client(shadow.listen_port)
    yield client
    client.close()


def last_event(envoy, before):
    """The one decision event logged after the first `before`."""
    harness.wait_until(lambda: len(envoy.decision_lines()) > before, 5, "a decision event")
    [e] = envoy.decision_lines()[before:]
    return e


def sent(envoy, c, path, method="GET", token=None, headers=()):
    """Sends a request; returns (response, what the upstream received or None, its event)."""
    seen = envoy.upstream.server.seen
    before_seen, before_events = len(seen), len(envoy.decision_lines())
    r = c.request(path, method=method, token=token, headers=list(headers))
    got = seen[before_seen:]
    assert len(got) <= 1, got
    return r, (dict(got[0]) if got else None), last_event(envoy, before_events)


def identity(received):
    """The identity headers the upstream received (each name with its one value)."""
    out = {}
    for k, values in received.items():
        if k.lower().startswith("x-agent-"):
            assert len(values) == 1, (k, values)
            out[k.lower()] = values[0]
    return out


def test_without_a_token_the_request_goes_up_without_an_identity(shadow, c):
    r, up, e = sent(shadow, c, "/tickets/1", headers=[FORGED_ID])
    assert r.status == 200, r
    assert up is not None and identity(up) == {}, up
    assert (e["decision"], e["enforced"], e["reason"], e["status"]) == ("deny", False, "token.missing", 401)
    assert e["shadow"] == [{"check": "token", "reason": "token.missing"}]
    assert harness.audit_schema_errors([e]) == []


def test_a_forged_token_never_yields_an_identity(shadow, c):
    [token] = harness.mint([{}])
    head, payload, sig = token.split(".")
    forged = ".".join([head, payload, ("A" if sig[5] != "A" else "B").join([sig[:5], sig[6:]])])
    r, up, e = sent(shadow, c, "/tickets/1", token=forged, headers=[FORGED_ID])
    assert r.status == 200, r
    assert identity(up) == {}, up
    assert (e["enforced"], e["reason"], e["agent"]) == (False, "token.signature", None)


def test_a_verified_agent_short_of_a_scope_goes_up_with_its_identity(shadow, c):
    [token] = harness.mint([{"claims": {"scope": "tickets:read"}}])
    r, up, e = sent(shadow, c, "/tickets", method="POST", token=token, headers=[FORGED_ID])
    assert r.status == 200, r
    ident = identity(up)
    assert ident["x-agent-id"] == "agent:build-bot-7", up
    assert ident["x-agent-scopes"] == "tickets:read"
    assert ident["x-agent-decision-id"] == e["decision_id"]
    assert (e["decision"], e["enforced"], e["reason"], e["route"]) == ("deny", False, "scope.insufficient",
                                                                        "tickets-write")
    assert e["shadow"] == [{"check": "route_scopes", "reason": "scope.insufficient"}]


def test_a_route_in_enforce_mode_denies_and_nothing_goes_up(shadow, c):
    [token] = harness.mint([{}])
    r, up, e = sent(shadow, c, "/mail/send", method="POST", token=token)
    assert r.status == 403 and r.json()["reason"] == "scope.insufficient", r
    assert up is None
    assert (e["decision"], e["enforced"], e["status"]) == ("deny", True, 403)
    r, up, e = sent(shadow, c, "/mail/send", method="POST")
    assert r.status == 401 and up is None, r


def test_shadow_denies_are_counted_by_reason(shadow, c):
    def stats():
        return (harness.count(shadow, decision="shadow_deny", check="token", reason="token.missing",
                              route="tickets-read"),
                harness.count(shadow, "shadow_denied_total", check="token", reason="token.missing"),
                harness.count(shadow, decision="allow"))
    before = stats()
    sent(shadow, c, "/tickets/1")
    harness.wait_until(lambda: stats() == (before[0] + 1, before[1] + 1, before[2]), 5,
                       "a shadow_deny and a shadowed token.missing counted, no allow")


def test_prometheus_sees_labels_not_names(shadow, c):
    """The generated bootstrap's stats_tags: /stats/prometheus shows the decision, check,
    reason and route as labels, counters ending in _total, units in the names."""
    [token] = harness.mint([{}])
    sent(shadow, c, "/tickets/1", token=token)
    sent(shadow, c, "/mail/send", method="POST", token=token)  # enforced: a deny
    conn = http.client.HTTPConnection("127.0.0.1", shadow.admin_port, timeout=5)
    conn.request("GET", "/stats/prometheus")
    text = conn.getresponse().read().decode()
    conn.close()
    ours = [line for line in text.splitlines() if line.startswith("agent_iam_")]
    assert 'agent_iam_decisions_total{decision="allow",check="none",reason="none",route="tickets-read"}' in text
    assert ('agent_iam_decisions_total{decision="deny",check="route_scopes",reason="scope.insufficient",'
            'route="mail-send"}') in text, ours
    assert 'agent_iam_decisions_total{decision="shadow_deny",check="token",reason="token.missing",' \
           'route="tickets-read"}' in text, ours
    assert 'agent_iam_shadow_denied_total{check="token",reason="token.missing",route="tickets-read"}' in text
    assert "# TYPE agent_iam_decisions_total counter" in text
    assert re.search(r'^agent_iam_build_info\{version="[0-9_]+",commit="[0-9a-f]+(-dirty)?"\} 1$', text, re.M), ours
    assert "# TYPE agent_iam_decision_duration_microseconds histogram" in text
    counters = {line.split()[2] for line in text.splitlines()
                if line.startswith("# TYPE agent_iam_") and line.split()[3] == "counter"}
    assert counters and all(name.endswith("_total") for name in counters), counters
    # No series carries a reason or a route in its name.
    assert not [line for line in ours if ".denied" in line or "token_missing" in line.split("{")[0]]


def test_a_check_in_shadow_leaves_the_others_enforced():
    p = copy.deepcopy(PLUGIN)
    p["checks"] = {"route_scopes": {"mode": "shadow"}}
    with harness.stack(plugin_json=p, name="shadow-scopes") as envoy:
        c = harness.Client(envoy.listen_port)
        r, up, e = sent(envoy, c, "/tickets", method="POST")
        assert r.status == 401 and up is None, r
        assert e["enforced"] is True
        [token] = harness.mint([{"claims": {"scope": "tickets:read"}}])
        r, up, e = sent(envoy, c, "/mail/send", method="POST", token=token)
        assert r.status == 200 and identity(up)["x-agent-id"] == "agent:build-bot-7", r
        assert (e["enforced"], e["reason"]) == (False, "scope.insufficient")
        c.close()


def test_an_inconsistent_mode_is_refused_at_load():
    p = copy.deepcopy(PLUGIN)
    p["checks"] = {"token": {"mode": "shadow"}}
    path = harness.OUT / "shadow-inconsistent.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(p))
    out = harness.cli("validate", "--config", path, check=False)
    assert out.returncode != 0
    assert "$.checks.token.mode" in out.stderr + out.stdout, out


def test_the_event_carries_the_clients_traceparent_and_request_id(shadow, c):
    """(On this module's stack: any decision.) A well-formed W3C traceparent is recorded
    with its source; a malformed one is not; x-request-id is Envoy's (it replaces the client's)."""
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    _, _, e = sent(shadow, c, "/tickets/1", headers=[("traceparent", tp), ("x-request-id", "client-chosen")])
    assert (e["request"]["traceparent"], e["request"]["traceparent_source"]) == (tp, "client"), e["request"]
    assert e["request"]["id"] != "client-chosen" and e["request"]["id_source"] == "envoy", e["request"]
    for bad in ["00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-" + tp[3:], tp.upper(), tp + "-x"]:
        _, _, e = sent(shadow, c, "/tickets/1", headers=[("traceparent", bad)])
        assert "traceparent" not in e["request"], (bad, e["request"])
    assert harness.audit_schema_errors([e]) == []
