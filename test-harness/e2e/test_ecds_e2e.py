"""Configuration rollout without drains, through a real Envoy: the bootstrap `agent-iam generate
envoy --ecds FILE` writes takes the filter's configuration from ECDS (a watched file, the
resource an xDS control plane would push, written by `agent-iam generate ecds`). A new policy
and a new registry apply with the listener untouched (`listener_modified` unchanged), a broken
configuration is rejected (`update_rejected`) while the old one keeps serving, and a request
in flight during an update finishes."""

import copy
import http.client
import json
import os
from pathlib import Path

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
STATS = "extension_config_discovery.http_filter.agent_iam."


def base_plugin():
    """The shipped configuration, its inline registry authoritative (no feed)."""
    p = copy.deepcopy(PLUGIN)
    p["agents"].pop("feed", None)
    return p


class EcdsStack:
    def __init__(self, envoy, ecds_file, tmp):
        self.envoy, self.file, self.tmp = envoy, Path(ecds_file), Path(tmp)
        self.versions = 1

    def push(self, plugin):
        """Writes a new resource version (to a temporary file, then renamed over the watched
        path, as Envoy's watcher needs) and returns its version."""
        self.versions += 1
        version = str(self.versions)
        src = self.tmp / f"plugin-{version}.json"
        src.write_text(json.dumps(plugin))
        text = harness.cli("generate", "ecds", "--config", src, "--wasm", harness.WASM,
                           "--resource-version", version, check=False)
        if text.returncode != 0:  # an invalid configuration: the generator refuses it; write by hand
            resource = json.loads(harness.cli("generate", "ecds", "--config", self.tmp / "plugin-1.json",
                                              "--wasm", harness.WASM, "--resource-version", version).stdout)
            cfg = resource["resources"][0]["typed_config"]["config"]["configuration"]
            cfg["value"] = json.dumps(plugin)
            body = json.dumps(resource)
        else:
            body = text.stdout
        tmp = self.file.parent / f".{version}.tmp"
        tmp.write_text(body)
        os.replace(tmp, self.file)
        return version

    def stats(self):
        s = harness.admin_stats(self.envoy, "extension_config_discovery|listener_manager")
        return {k: v.strip('"') for k, v in s.items()}


@pytest.fixture(scope="module")
def ecds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ecds")
    plugin = base_plugin()
    (tmp / "plugin-1.json").write_text(json.dumps(plugin))
    ecds_file = tmp / "watched" / "agent_iam.json"
    with harness.Upstream() as up, harness.ControlPlane(harness.registry_doc(plugin)) as cp:
        listen, admin = harness.free_port(), harness.free_port()
        yaml_text = harness.envoy_yaml(plugin=tmp / "plugin-1.json", listen=listen, admin=admin,
                                       upstream=up.port, control_plane=cp.port, ecds=ecds_file)
        assert "config_discovery" in yaml_text and ecds_file.exists()
        # Unknown fields in a dynamic resource are errors, not warnings.
        with harness.Envoy(yaml_text, name="ecds", concurrency=2,
                           extra_args=["--reject-unknown-dynamic-fields"]) as envoy:
            envoy.listen_port, envoy.upstream = listen, up
            stack = EcdsStack(envoy, ecds_file, tmp)
            harness.wait_until(lambda: stack.stats().get(STATS + "version_text") == "1", 10,
                               "the first ECDS resource applied")
            yield stack


def applied(stack, version):
    harness.wait_until(lambda: stack.stats().get(STATS + "version_text"), 10,
                       f"ECDS version {version} in force", expect=lambda v: v == version)


def status(stack, token, path="/tickets/1"):
    c = harness.Client(stack.envoy.listen_port)
    try:
        return c.request(path, token=token)
    finally:
        c.close()


def test_a_new_policy_applies_without_touching_the_listener(ecds):
    [token] = harness.mint([{}])
    assert status(ecds, token).status == 200
    before = ecds.stats()
    p = base_plugin()
    p["policy"]["modules"]["zz_freeze.rego"] = (
        "package agent_iam.authz\nimport rego.v1\n"
        "deny contains \"tickets.frozen\" if startswith(input.request.path, \"/tickets\")\n")
    applied(ecds, ecds.push(p))
    r = status(ecds, token)
    assert (r.status, r.json()["reason"]) == (403, "policy.denied"), r
    after = ecds.stats()
    for name in ["listener_manager.listener_modified", "listener_manager.listener_in_place_updated",
                 "listener_manager.total_listeners_draining"]:
        assert after.get(name) == before.get(name), (name, before.get(name), after.get(name))
    # Envoy counts the reload once every worker has the new configuration: a request may
    # see it first.
    harness.wait_until(lambda: int(ecds.stats()[STATS + "config_reload"]), 5, "the reload counted",
                       expect=lambda n: n > int(before[STATS + "config_reload"]))
    assert after[STATS + "update_rejected"] == before[STATS + "update_rejected"]


def test_a_new_registry_applies(ecds):
    [token] = harness.mint([{}])
    p = base_plugin()
    applied(ecds, ecds.push(p))
    assert status(ecds, token).status == 200
    for a in p["agents"]["registry"]:
        if a["id"] == "agent:build-bot-7":
            a["status"] = "suspended"
    applied(ecds, ecds.push(p))
    r = status(ecds, token)
    assert (r.status, r.json()["reason"]) == (401, "agent.suspended"), r


def test_a_broken_configuration_is_rejected_and_the_old_one_keeps_serving(ecds):
    [token] = harness.mint([{}])
    p = base_plugin()
    good = ecds.push(p)
    applied(ecds, good)
    assert status(ecds, token).status == 200
    before = ecds.stats()
    broken = copy.deepcopy(p)
    broken["clock_skew"] = 30  # not a key: the filter refuses the configuration
    ecds.push(broken)
    harness.wait_until(lambda: int(ecds.stats()[STATS + "update_rejected"]), 10, "the update rejected",
                       expect=lambda n: n == int(before[STATS + "update_rejected"]) + 1)
    assert ecds.envoy.wait_for_log("$.clock_skew")
    assert ecds.stats()[STATS + "version_text"] == good
    for _ in range(6):  # both workers, still on the old configuration
        assert status(ecds, token).status == 200
    assert status(ecds, None).status == 401


def test_a_request_in_flight_during_an_update_finishes(ecds):
    [token] = harness.mint([{"claims": {"scope": "tickets:read tickets:write"}}])
    applied(ecds, ecds.push(base_plugin()))
    decided = len(ecds.envoy.decision_lines())
    conn = http.client.HTTPConnection("127.0.0.1", ecds.envoy.listen_port, timeout=10)
    body = b'{"title": "in flight"}'
    conn.putrequest("POST", "/tickets")
    conn.putheader("authorization", f"Bearer {token}")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(len(body)))
    conn.endheaders()  # decided and on its way upstream; the body is still to come
    harness.wait_until(lambda: len(ecds.envoy.decision_lines()) > decided, 5, "the POST decided")
    p = base_plugin()
    for r in p["routes"]:
        r["required_scopes"] = ["tickets:admin"]
    applied(ecds, ecds.push(p))
    conn.send(body)
    r = conn.getresponse()
    assert r.status == 200, r.read()
    assert json.loads(r.read())["method"] == "POST"
    conn.close()
    # New requests get the new configuration.
    assert status(ecds, token).status == 403
