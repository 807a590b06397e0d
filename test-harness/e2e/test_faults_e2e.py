"""End-to-end: each control-plane dependency slow (longer than the call timeout), down
(HTTP 500) and answering garbage, through a real Envoy, with the documented behaviour:

- registry feed: the last good registry keeps serving, then `agent.registry_stale` (503)
  after `agents.feed.max_staleness_s`;
- revocation feed: the last state keeps serving, then `revocation.stale` (503) after
  `revocation.max_staleness_s`;
- remote JWKS: the last good keys keep serving (tokens stay verifiable), the age gauge grows;
- every failure is logged, and service comes back when the dependency does.
(The audit collector's slow and down cases are in test_audit_e2e.py.)"""

import copy
import json
import time

import pytest

import harness

BASE = json.loads(harness.PLUGIN.read_text())


def plugin():
    p = harness.with_revocation(copy.deepcopy(BASE), interval_ms=250, max_staleness_s=2)
    p["revocation"]["feed"]["timeout_ms"] = 300
    jwks = p["issuers"][0].pop("jwks")
    p["issuers"][0]["jwks_uri"] = {"cluster": "agent_iam_control_plane", "path": "/jwks.json",
                                   "refresh_s": 1, "min_refetch_s": 1, "timeout_ms": 300}
    p["agents"]["feed"].update({"poll_interval_ms": 250, "timeout_ms": 300, "max_staleness_s": 2})
    return p, jwks


def status(client, token):
    r = client.request("/tickets/1", token=token)
    return r.status, (None if r.status == 200 else r.json().get("reason"))


def wait_for(client, token, want, timeout=8):
    harness.wait_until(lambda: status(client, token), timeout, f"requests to get {want}", interval=0.1,
                       expect=lambda got: got == want)


FEEDS = {
    # feed: (control-plane switch, log text, what a request sees once the bound has passed)
    "registry": ("fail", "agent-iam: registry feed:", (503, "agent.registry_stale")),
    "revocation": ("ssf_fail", "agent-iam: revocation feed:", (503, "revocation.stale")),
    "jwks": ("jwks_fail", "agent-iam: jwks_uri:", (200, None)),
}


@pytest.mark.parametrize("mode", ["slow", "500", "garbage"])
@pytest.mark.parametrize("feed", list(FEEDS))
def test_a_failing_dependency_keeps_the_last_good_state_then_behaves_as_documented(feed, mode):
    p, jwks = plugin()
    switch, logged, after_bound = FEEDS[feed]
    with harness.stack(plugin_json=p, name=f"fault-{feed}-{mode}", jwks=jwks) as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        wait_for(client, token, (200, None))
        cp = envoy.control_plane
        if switch == "fail":
            cp.fail(mode)
        elif switch == "ssf_fail":
            cp.ssf_fail(mode)
        else:
            cp.jwks_fail(mode)
        # Inside the bound: the last good state serves.
        harness.holds_for(lambda: status(client, token), 1.2, "the last good state serving",
                          expect=lambda got: got == (200, None))
        assert envoy.wait_for_log(logged, timeout=6), f"no `{logged}` line"
        # Past the bound: the documented behaviour.
        wait_for(client, token, after_bound, timeout=8)
        if feed == "jwks":
            time.sleep(1.5)
            assert status(client, token) == (200, None)
            age = int(harness.admin_stats(envoy, "jwks.age_seconds")["wasmcustom.agent_iam.jwks.age_seconds"])
            assert age >= 2, age
        # The dependency comes back: so does service.
        if switch == "fail":
            cp.fail("none")
        elif switch == "ssf_fail":
            cp.ssf_fail("none")
        else:
            cp.jwks_fail("none")
        wait_for(client, token, (200, None), timeout=10)
        client.close()
