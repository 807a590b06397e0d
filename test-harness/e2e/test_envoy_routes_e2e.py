"""Envoy's own route table and the filter, through a real Envoy: a route that turns the filter
off with Envoy's generic per-route `FilterConfig {disabled: true}` reaches the upstream without
any check (what it means: no identity, and only the header guard removes a client's identity
headers there), while every other route is still decided by the filter."""

import json

import pytest

import harness

DISABLED = """                typed_per_filter_config:
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
"""


def with_public_route(yaml_text):
    """The generated bootstrap plus a `/public` route on which the filter is disabled."""
    catch_all = '              - match: {prefix: "/"}\n'
    assert catch_all in yaml_text
    public = ('              - match: {prefix: "/public"}\n'
              '                route: {cluster: upstream}\n' + DISABLED)
    return yaml_text.replace(catch_all, public + catch_all, 1)


@pytest.fixture(scope="module")
def envoy():
    plugin = json.loads(harness.PLUGIN.read_text())
    with harness.Upstream() as up, harness.ControlPlane(harness.registry_doc(plugin)) as cp:
        listen, admin = harness.free_port(), harness.free_port()
        text = harness.envoy_yaml(listen=listen, admin=admin, upstream=up.port, control_plane=cp.port,
                                  header_guard=True)
        with harness.Envoy(with_public_route(text), name="routes") as e:
            e.listen_port, e.upstream = listen, up
            yield e


def test_a_route_with_the_filter_disabled_is_not_checked_and_the_guard_still_strips(envoy):
    c = harness.Client(envoy.listen_port)
    seen = envoy.upstream.server.seen
    before, events = len(seen), len(envoy.decision_lines())
    r = c.request("/public/status", headers={"x-agent-id": "agent:admin", "x-agent-scopes": "admin"})
    assert r.status == 200, r
    [got] = seen[before:]
    assert "x-agent-id" not in got and "x-agent-scopes" not in got, got  # Envoy's header guard
    assert len(envoy.decision_lines()) == events, "the filter never saw it"
    # Everywhere else the filter decides.
    r = c.request("/tickets/1", headers={"x-agent-id": "agent:admin"})
    assert (r.status, r.json()["reason"]) == (401, "token.missing"), r
    assert len(seen) == before + 1
    c.close()
