"""Envoy's own route table and the filter, through a real Envoy: a route that turns the filter
off with Envoy's generic per-route `FilterConfig {disabled: true}` reaches the upstream without
any check (what it means: no identity, and only the header guard removes a client's identity
headers there), while every other route is still decided by the filter."""

import json

import pytest

import harness
from harness import mcp_client as mc

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


# Route metadata: Envoy's route table says which `routes[]` entry decides a request. Each
# Envoy route also tells the upstream its name, so the recording upstream shows which route
# executed the request, not only that one did.
def envoy_route(match, name, metadata=None):
    lines = [f'              - match: {{prefix: "{match}"}}\n',
             '                route: {cluster: upstream}\n',
             '                request_headers_to_add:\n',
             f'                - header: {{key: x-envoy-route, value: "{name}"}}\n']
    if metadata is not None:
        lines += ['                metadata:\n',
                  '                  filter_metadata:\n',
                  f'                    agent_iam: {{route: "{metadata}"}}\n']
    return "".join(lines)


def with_metadata_routes(yaml_text):
    """Envoy's routes: `/reports` decided as `mail-send`, `/typo` naming no route, `/plain`
    without metadata, and the catch-all decided as `status` (no scope). Without
    `merge_slashes`, as some bootstraps are: `//reports` is then on the catch-all."""
    catch_all = '              - match: {prefix: "/"}\n                route: {cluster: upstream}\n'
    assert catch_all in yaml_text and "merge_slashes: true\n" in yaml_text
    table = (envoy_route("/reports", "reports", "mail-send") + envoy_route("/typo", "typo", "mail-sent")
             + envoy_route("/agent-tools", "agent-tools", "desk-tools")
             + envoy_route("/plain", "plain") + envoy_route("/", "catch-all", "status"))
    return yaml_text.replace(catch_all, table, 1).replace("merge_slashes: true\n", "merge_slashes: false\n")


@pytest.fixture(scope="module")
def metadata():
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["route_metadata"] = True
    plugin["routes"].append({"name": "desk-tools", "methods": ["POST"], "required_scopes": ["tickets:read"],
                             "mcp": {"tools": {"search_tickets": [], "create_ticket": ["tickets:write"]}}})
    with harness.stack(plugin_json=plugin, name="route-metadata", edit_yaml=with_metadata_routes) as e:
        yield e


def sent(envoy, path, scope, method="POST"):
    """`method path` with agent:planner's token holding `scope` -> (response, what the
    upstream got or None, the decision event)."""
    [token] = harness.mint([{"claims": {"sub": "agent:planner", "scope": scope}}])
    c = harness.Client(envoy.listen_port)
    seen, before = envoy.upstream.server.seen, len(envoy.decision_lines())
    n = len(seen)
    r = c.request(path, token=token, method=method, body=b"{}" if method == "POST" else None)
    c.close()
    harness.wait_until(lambda: len(envoy.decision_lines()) > before, 5, "a decision event")
    [event] = envoy.decision_lines()[before:]
    got = seen[n:]
    assert len(got) <= 1, got
    return r, (got[0] if got else None), event


def test_envoy_route_metadata_names_the_rules_a_request_is_decided_on(metadata):
    # `/reports` has no `routes[]` path: Envoy's route says `mail-send` decides it.
    r, up, e = sent(metadata, "/reports/q1", "tickets:read")
    assert (r.status, r.json()["reason"], e["route"]) == (403, "scope.insufficient", "mail-send"), r
    assert up is None
    r, up, e = sent(metadata, "/reports/q1", "mail:send")
    assert (r.status, e["route"], e["decision"]) == (200, "mail-send", "allow"), r
    assert (r.json()["path"], up["x-envoy-route"]) == ("/reports/q1", ["reports"]), (r, up)
    # `mail-send` takes POST only, whichever Envoy route names it.
    r, up, e = sent(metadata, "/reports/q1", "mail:send", method="GET")
    assert (r.status, r.json()["reason"], up) == (400, "request.method", None), r
    # The metadata wins over `routes[]` paths: `/tickets` on the catch-all is `status`.
    r, up, e = sent(metadata, "/tickets/1", "mail:send", method="GET")
    assert (r.status, e["route"]) == (200, "status"), r
    assert up["x-envoy-route"] == ["catch-all"], up


def test_a_route_without_metadata_is_matched_on_paths_and_a_name_no_route_has_is_refused(metadata):
    r, up, e = sent(metadata, "/plain/x", "mail:send", method="GET")
    assert (r.status, r.json()["reason"], e["route"]) == (403, "route.unmatched", None), r
    assert up is None
    r, up, e = sent(metadata, "/typo/x", "mail:send tickets:read")
    assert (r.status, r.json()["reason"], e["reason"]) == (503, "route.metadata", "route.metadata"), r
    assert up is None


def test_a_target_whose_canonical_form_envoy_would_route_elsewhere_never_reaches_the_upstream(metadata):
    # Envoy routes `//reports/q1` on the catch-all (`status`: no scope needed). Forwarded as
    # `/reports/q1`, Envoy would route it again, onto `/reports` (`mail-send`), and the
    # filter cannot see that route: a target it would rewrite is refused.
    for target in ["//reports/q1", "/public//status"]:
        r, up, e = sent(metadata, target, "tickets:read", method="GET")
        assert (r.status, r.json()["reason"]) == (400, "request.not_canonical"), r
        assert up is None, up
        assert e["request"]["original"]["target"] == target, e
    # The same request in canonical form is decided on its own route.
    r, up, e = sent(metadata, "/reports/q1", "tickets:read", method="GET")
    assert (r.status, e["route"], up) == (400, "mail-send", None), r


def test_an_envoy_route_can_name_an_mcp_route_whose_tools_are_decided_on_the_body(metadata):
    [reader] = harness.mint([{"claims": {"sub": "agent:planner", "scope": "tickets:read"}}])
    seen = metadata.upstream.server.seen
    c = harness.Client(metadata.listen_port)
    try:
        for tool, want, reason in [("search_tickets", 200, None), ("create_ticket", 403, "scope.insufficient"),
                                   ("drop_tables", 403, "mcp.name_unlisted")]:
            params = {"name": tool, "arguments": {}}
            before = len(seen)
            r = c.request("/agent-tools", method="POST", token=reader, body=mc.body("tools/call", params).encode(),
                          headers=mc.headers("tools/call", tool))
            assert r.status == want, (tool, r)
            assert len(seen) == before + (want == 200), tool
            if reason:
                assert r.json()["error"]["data"]["reason"] == reason, (tool, r)
    finally:
        c.close()
    events = [e for e in metadata.decision_lines() if e.get("route") == "desk-tools"]
    assert [e["mcp"]["name"] for e in events[-3:]] == ["search_tickets", "create_ticket", "drop_tables"], events
