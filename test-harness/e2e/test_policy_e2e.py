"""Rego policies through a real Envoy: allow with headers, deny with the policy's reason
and status, errors and runaway policies failing closed, and hot reload without a restart
(a new policy serves new requests; a broken one is rejected and the old one keeps serving)."""

import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest

import harness

TENANT_ACME = {"claims": {"tenant": "acme"}}


def test_policy_allow_adds_its_headers_upstream(client):
    [token] = harness.mint([TENANT_ACME])
    r = client.request("/tenants/acme/tickets", token=token)
    assert r.status == 200, r
    assert r.json()["headers"]["x-agent-tenant"] == ["acme"]


def test_policy_deny_carries_the_policy_reason(envoy, client):
    [token] = harness.mint([TENANT_ACME])
    r = client.request("/tenants/globex/tickets", token=token)
    assert r.status == 403
    body = r.json()
    assert (body["reason"], body["policy_reason"]) == ("policy.denied", "tenant.mismatch")
    assert envoy.wait_for_log(body["decision_id"])
    [line] = [d for d in envoy.decision_lines() if d["decision_id"] == body["decision_id"]]
    assert line["policy_reason"] == "tenant.mismatch" and len(line["policy"]["revision"]) == 12


def test_client_cannot_smuggle_policy_visible_headers_into_identity(client):
    # The policy sees request headers, but never `authorization`, and the identity headers it
    # receives upstream are the filter's own.
    [token] = harness.mint([TENANT_ACME])
    r = client.request("/tenants/acme/tickets", token=token, headers={"x-agent-tenant": "globex"})
    assert r.status == 200
    # The policy's header replaces the client's copy.
    assert r.json()["headers"]["x-agent-tenant"] == ["acme"]


def copy_policies():
    tmp = tempfile.mkdtemp(prefix="policies-", dir=harness.OUT)
    shutil.copytree(harness.ROOT / "policies", tmp, dirs_exist_ok=True)
    return tmp


@pytest.fixture(scope="module")
def dynamic():
    harness.OUT.mkdir(parents=True, exist_ok=True)
    with harness.DynamicStack(harness.render_plugin(harness.ROOT / "policies"), name="policy-reload") as d:
        yield d


def test_hot_reload_to_a_new_policy_without_restart(dynamic):
    c = harness.Client(dynamic.listen_port)
    [token] = harness.mint([TENANT_ACME])
    assert c.request("/tickets/1", token=token).status == 200
    pid = dynamic.envoy.proc.pid
    dynamic.envoy.wait_for_log("agent-iam audit")
    old_rev = dynamic.envoy.decision_lines()[-1]["policy"]["revision"]

    folder = copy_policies()
    with open(f"{folder}/agent_iam/maintenance.rego", "w") as f:
        f.write('package agent_iam.authz\n\nimport rego.v1\n\n'
                '# Maintenance: agents may not touch ticket 1.\n'
                'deny contains "maintenance.ticket_locked" if path == "/tickets/1"\n')
    dynamic.apply(harness.render_plugin(folder))
    r = harness.Client(dynamic.listen_port).request("/tickets/1", token=token)
    assert r.status == 403 and r.json()["policy_reason"] == "maintenance.ticket_locked", r
    assert c.request("/tickets/2", token=token).status == 200
    assert dynamic.envoy.proc.pid == pid and dynamic.envoy.proc.poll() is None
    dynamic.envoy.wait_for_log("maintenance")
    [new_rev] = {d["policy"]["revision"] for d in dynamic.envoy.decision_lines()
                 if d["policy_reason"] == "maintenance.ticket_locked"}
    assert new_rev != old_rev
    c.close()


def test_broken_policy_is_rejected_and_the_old_one_keeps_serving(dynamic):
    c = harness.Client(dynamic.listen_port)
    [token] = harness.mint([{}])
    before = c.request("/tickets/3", token=token)
    assert before.status == 200
    plugin = copy.deepcopy(dynamic.current if hasattr(dynamic, "current") else harness.render_plugin(harness.ROOT / "policies"))
    plugin["policy"]["modules"]["agent_iam/tenant.rego"] = "package agent_iam.authz\n\ndeny contains \"x\" if {\n  input.request.method ==\n}\n"
    dynamic.apply(json.dumps(plugin), expect="update_rejected")
    assert dynamic.envoy.wait_for_log("invalid plugin configuration: $.policy.modules[\"agent_iam/tenant.rego\"]")
    log = dynamic.envoy.log()
    assert "agent_iam/tenant.rego:" in log  # file:line:col of the error
    assert c.request("/tickets/3", token=token).status == 200
    c.close()


def test_policy_error_and_custom_status(dynamic):
    folder = tempfile.mkdtemp(prefix="policies-custom-", dir=harness.OUT)
    with open(f"{folder}/authz.rego", "w") as f:
        f.write('package agent_iam.authz\n\nimport rego.v1\n\n'
                'decision := {"allow": false, "reason": "demo.not_found", "status": 404} if startswith(input.request.path, "/tickets/404")\n'
                'decision := "not a decision" if startswith(input.request.path, "/tickets/bad")\n'
                'decision := true if startswith(input.request.path, "/tickets/ok")\n')
    dynamic.apply(harness.render_plugin(folder))
    c = harness.Client(dynamic.listen_port)
    [token] = harness.mint([{}])
    r = c.request("/tickets/404", token=token)
    assert r.status == 404 and r.json()["policy_reason"] == "demo.not_found", r
    assert 'error="access_denied"' in r.headers["www-authenticate"]
    r = c.request("/tickets/bad", token=token)
    assert r.status == 503 and r.json()["reason"] == "policy.error", r
    r = c.request("/tickets/undefined", token=token)
    assert r.status == 503 and r.json()["reason"] == "policy.error", r
    assert c.request("/tickets/ok", token=token).status == 200
    c.close()


def test_runaway_policy_is_cut_off_and_the_worker_keeps_serving(dynamic):
    folder = tempfile.mkdtemp(prefix="policies-runaway-", dir=harness.OUT)
    with open(f"{folder}/authz.rego", "w") as f:
        f.write('package agent_iam.authz\n\nimport rego.v1\n\n'
                'decision if {\n  startswith(input.request.path, "/tickets/spin")\n'
                '  count([1 | some i in numbers.range(1, 30000); some j in numbers.range(1, 30000)]) > 0\n}\n'
                'decision if startswith(input.request.path, "/tickets/ok")\n')
    dynamic.apply(harness.render_plugin(folder))
    c = harness.Client(dynamic.listen_port)
    [token] = harness.mint([{}])
    r = c.request("/tickets/spin", token=token)
    assert r.status == 503 and r.json()["reason"] == "policy.limit", r
    assert c.request("/tickets/ok", token=token).status == 200
    c.close()


def test_decisions_recorded_by_envoy_replay_against_a_candidate_policy(tmp_path):
    """Envoy records the policy's input on a route that opts in (redacted as configured);
    `agent-iam policy replay` re-decides those events: the shipped policies change nothing,
    a candidate without the tenant rule turns the recorded cross-tenant deny into an allow."""
    plugin = json.loads(harness.PLUGIN.read_text())
    for r in plugin["routes"]:
        r["audit_policy_input"] = r["name"] == "tenants"
    plugin["audit"] = {"policy_input_redact": {"headers": ["x-secret"]}}
    with harness.stack(plugin_json=plugin, name="replay") as envoy:
        c = harness.Client(envoy.listen_port)
        [acme] = harness.mint([TENANT_ACME])
        statuses = [c.request(p, token=acme, headers={"x-secret": "s3cr3t"}).status
                    for p in ["/tenants/acme/tickets", "/tenants/globex/tickets", "/tickets/1"]]
        c.close()
        assert statuses == [200, 403, 200]
        harness.wait_until(lambda: len(envoy.decision_lines()) >= 3, 5, "three decision events")
        events = envoy.decision_lines()
        log = tmp_path / "envoy.log"
        log.write_text(envoy.log())
    # The tenants route recorded its inputs, redacted; /tickets only the input's hash.
    recorded = [e for e in events if e["route"] == "tenants"]
    assert [e["policy"]["input"]["request"]["headers"]["x-secret"] for e in recorded] == ["(redacted)"] * 2
    assert harness.policy_input_schema_errors([e["policy"]["input"] for e in recorded]) == []
    other = next(e for e in events if e["route"] == "tickets-read")
    assert "input" not in other["policy"] and len(other["policy"]["input_sha256"]) == 64

    def replay(policies):
        out = harness.cli("policy", "replay", "--audit", log, "--policies", policies, "--format", "json",
                          check=False)
        return json.loads(out.stdout)

    same = replay(harness.ROOT / "policies")
    assert (same["replayed"], same["changed"], same["without_input"]) == (2, 0, 1), same
    candidate = copy_policies()
    tenant = Path(candidate) / "agent_iam" / "tenant.rego"
    tenant.write_text(tenant.read_text().replace('deny contains "tenant.mismatch"', 'unused contains "x"'))
    changed = replay(candidate)
    assert changed["changed"] == 1, changed
    [change] = changed["changes"]
    assert (change["kind"], change["from"], change["to"], change["route"]) == (
        "deny -> allow", "policy.denied tenant.mismatch", "allow", "tenants")
    assert change["decision_id"] == recorded[1]["decision_id"]
