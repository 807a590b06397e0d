"""MCP per-tool authorization end to end: the official Python MCP SDK as the agent (both
protocol eras: the 2025-11-25 `initialize` handshake and 2026-07-28) and as the server (a
stateless Streamable HTTP ticket desk, answering JSON or `text/event-stream`), with the
filter in a real Envoy between them. The server records what it received and executed, so
every refusal is also checked to have never reached it."""

import asyncio
import copy
import hashlib
import http.client
import json
import re
import time
import uuid

import httpx2
import pytest
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    handle_protected_resource_response,
)

import harness
from harness import mcp_client as mc
from harness.mcp_server import READ_TOOLS, TOOLS, WRITE_TOOLS, McpUpstream

RESOURCE = "https://api.example.test/mcp"
METADATA_URL = "https://api.example.test/.well-known/oauth-protected-resource/mcp"
ISSUER = "https://idp.agent-iam.test"
MAX_BODY = 8192
ERA = pytest.mark.parametrize("era", mc.MODES)
SERVER_MODE = pytest.mark.parametrize("server_mode", ["json", "sse"])
VIA_PLANNER = {"sub": "user:alice", "act": {"sub": "agent:planner"}}
VIA_SUMMARIZER = {"sub": "user:alice", "act": {"sub": "agent:summarizer-1"}}

MCP_ROUTE = {
    "name": "tickets-mcp", "prefix": "/mcp", "methods": ["POST", "GET"], "required_scopes": ["tickets:read"],
    "mcp": {
        "tools": {"search_tickets": ["tickets:read"], "get_ticket": ["tickets:read"],
                  "create_ticket": ["tickets:write"], "delete_ticket": ["tickets:admin"]},
        "resources": {"tickets://*": ["tickets:read"], "tickets://1": ["tickets:admin"]},
        "prompts": {"triage": ["tickets:write"]},
        "other_tools": "deny", "filter_lists": True, "max_body_bytes": MAX_BODY,
    },
    # The decision events carry the policy's input (checked against the published schema).
    "audit_policy_input": True,
}
# Rego sees the call: ticket 1 may not be deleted, whoever asks.
MCP_POLICY = """package agent_iam.authz

import rego.v1

deny contains "ticket.protected" if {
\tinput.mcp.method == "tools/call"
\tinput.mcp.name == "delete_ticket"
\tinput.mcp.arguments.id == 1
}
"""


def mcp_plugin():
    """The shipped plugin plus the ticket desk's MCP route, its protected resource (an
    audience of the issuer, RFC 8707), scope_implies, narrowing delegation, a quick registry
    feed and a revocation feed."""
    p = copy.deepcopy(json.loads(harness.PLUGIN.read_text()))
    p["issuers"][0]["audiences"].append(RESOURCE)
    p["agents"]["feed"].update(poll_interval_ms=200)
    p["agents"]["registry"] += [
        {"id": "agent:ticket-admin", "max_scopes": ["tickets:admin", "tickets:read", "tickets:write"],
         "owner": "team:ops", "status": "active"},
        {"id": "agent:mcp-bot", "max_scopes": ["tickets:read"], "owner": "team:ops", "status": "active"},
    ]
    p["delegation"] = {"on_scope_exceeds_ceiling": "narrow"}
    p["routes"] += [MCP_ROUTE,
                    # offline_access is never advertised as a resource scope (MCP authorization).
                    {"name": "sync", "exact": "/sync", "methods": ["POST"], "required_scopes": ["offline_access"]}]
    p["protected_resource"] = {"resource": RESOURCE, "authorization_servers": [ISSUER], "resource_name": "Tickets MCP"}
    p["scope_implies"] = {"tickets:admin": ["tickets:read", "tickets:write"]}
    p["policy"]["modules"]["agent_iam/mcp_tickets.rego"] = MCP_POLICY
    return harness.with_revocation(p, interval_ms=250, max_staleness_s=10)


PLUGIN = mcp_plugin()


class Desk:
    """One stack: Envoy with the filter in front of the ticket desk (`server`), a raw
    client (`client`) and the listener port (`port`)."""

    def __init__(self, envoy):
        self.envoy, self.port, self.server = envoy, envoy.listen_port, envoy.upstream
        self.client = harness.Client(self.port)

    def nothing_reached_the_server(self, before):
        """Asserts the server received no request since it had received `before`."""
        assert self.server.seen[before:] == [], self.server.seen[before:]


def _desk(json_response, name):
    with harness.stack(plugin_json=PLUGIN, name=name, upstream=lambda: McpUpstream(json_response=json_response)) as e:
        desk = Desk(e)
        t = token()
        harness.wait_until(lambda: mc.rpc(desk.client, t, "tools/list"), 10,
                           "the revocation feed to become fresh", expect=lambda r: r.status == 200)
        yield desk
        desk.client.close()


@pytest.fixture(scope="module")
def json_desk():
    yield from _desk(True, "mcp-json")


@pytest.fixture(scope="module")
def sse_desk():
    yield from _desk(False, "mcp-sse")


@pytest.fixture()
def desk(request):
    """The JSON stack, or the one the test's `server_mode` parameter names."""
    callspec = getattr(request.node, "callspec", None)
    mode = callspec.params.get("server_mode", "json") if callspec else "json"
    return request.getfixturevalue(f"{mode}_desk")


def tokens(*claims):
    """One token per claims dict, for the MCP resource (RFC 8707 audience); the default
    subject is agent:build-bot-7 with tickets:read."""
    return harness.mint([{"claims": dict({"aud": RESOURCE}, **c)} for c in claims])


def token(**claims):
    return tokens(claims)[0]


def every_scope():
    """A token holding every scope of the desk outright (no scope_implies needed): the
    checks under test are not about scopes."""
    return token(sub="agent:ticket-admin", scope="tickets:read tickets:write tickets:admin")


def challenge_params(www_authenticate):
    """`WWW-Authenticate: Bearer k="v", ...` -> (scheme, {k: v})."""
    scheme, _, rest = www_authenticate.partition(" ")
    return scheme, dict(re.findall(r'([a-z_]+)="([^"]*)"', rest))


# Refusals of the token, the registry or revocation come before the body is read: the
# request's id may be unknown then (null).
BEFORE_THE_BODY = (None, 1)


def assert_jsonrpc_deny(r, status, code, reason, id=1):
    """A deny on the MCP route: `status`, a JSON-RPC error body with `code`, the request's
    id (or one of a tuple of ids), the reason and a decision id. -> the error object."""
    assert r.status == status, r
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] in (id if isinstance(id, tuple) else (id,)), body
    err = body["error"]
    assert err["code"] == code and isinstance(err["message"], str), body
    assert err["data"]["reason"] == reason, body
    assert re.fullmatch(r"[0-9a-f]{32}", err["data"]["decision_id"]), body
    return err


def assert_scope_challenge(www_authenticate, scopes):
    scheme, params = challenge_params(www_authenticate)
    assert scheme == "Bearer", www_authenticate
    assert params["error"] == "insufficient_scope", www_authenticate
    assert params["error_description"] == "scope.insufficient", www_authenticate
    assert sorted(params["scope"].split(" ")) == sorted(scopes), www_authenticate
    assert params["resource_metadata"] == METADATA_URL, www_authenticate


def executed_tools(desk, since=0):
    return [name for name, _ in desk.server.executed[since:]]


# ---- What a real MCP client sees -------------------------------------------------------

@ERA
@SERVER_MODE
def test_a_read_agent_lists_only_the_read_tools_and_the_list_is_private(desk, era, server_mode):
    before = len(desk.server.seen)
    out = mc.list_tools(desk.port, token(), era)
    assert out.error is None, out
    assert sorted(t.name for t in out.result.tools) == sorted(READ_TOOLS)
    # The server marks its full list "public"; a filtered list may only be cached per caller.
    assert out.result.cache_scope == "private"
    listed = [r for r in desk.server.posts()[before:] if b'"tools/list"' in r["body"]]
    assert len(listed) == 1 and listed[0]["status"] == 200
    # The SSE server really answered as an event stream (both eras): the filter rewrote one.
    expected = "text/event-stream" if server_mode == "sse" else "application/json"
    assert listed[0]["content_type"].startswith(expected), listed[0]
    # On the wire: the filtered list says "private" (added where the era has no cacheScope),
    # and keeps every other member of the result.
    r = mc.rpc(desk.client, token(), "tools/list", mode=era, id=9)
    assert r.status == 200 and r.headers["content-type"].startswith(expected), r
    result = mc.reply(r)["result"]
    assert sorted(t["name"] for t in result["tools"]) == sorted(READ_TOOLS)
    assert result["cacheScope"] == "private"
    if era == mc.MODERN:
        assert result["ttlMs"] == 0 and result["resultType"] == "complete" and "_meta" in result, result


@ERA
@SERVER_MODE
def test_resource_and_prompt_lists_are_filtered_too(desk, era, server_mode):
    reader, writer = tokens({}, {"scope": "tickets:read tickets:write"})
    assert [p.name for p in mc.list_prompts(desk.port, reader, era).result.prompts] == []
    assert [p.name for p in mc.list_prompts(desk.port, writer, era).result.prompts] == ["triage"]
    resources = mc.list_resources(desk.port, reader, era)
    assert [str(r.uri) for r in resources.result.resources] == ["tickets://stats"]
    assert resources.result.cache_scope == "private"


@ERA
def test_a_resource_uri_is_decided_as_the_servers_template_reads_it(desk, era):
    """`tickets://1` needs tickets:admin; the server serves it through its `tickets://{id}`
    template, which %-decodes the variable: `tickets://%31` is ticket 1 too."""
    [reader], admin = tokens({}), every_scope()
    since = len(desk.server.executed)
    out = mc.read_resource(desk.port, reader, era, "tickets://2")
    assert out.error is None, out
    assert desk.server.executed[since:] == [("resource", {"uri": "tickets://2"})]
    before = len(desk.server.seen)
    for uri in ("tickets://1", "tickets://%31"):
        out = mc.read_resource(desk.port, reader, era, uri)
        assert out.error is not None and out.error.code == -31403, (uri, out)
        assert challenge_params(out.refused.headers["www-authenticate"])[1]["scope"] == "tickets:read tickets:admin"
        assert not any(uri.encode() in x["body"] for x in desk.server.seen[before:]), uri
    assert desk.server.executed[since + 1:] == []
    out = mc.read_resource(desk.port, admin, era, "tickets://%31")
    assert out.error is None, out
    assert desk.server.executed[since + 1:] == [("resource", {"uri": "tickets://1"})]


@ERA
@SERVER_MODE
def test_a_read_agent_calls_a_read_tool_and_the_server_runs_it(desk, era, server_mode):
    since = len(desk.server.executed)
    out = mc.call_tool(desk.port, token(), era, "search_tickets", {"q": "printer"})
    assert out.error is None, out
    assert out.result.is_error is False and "3 tickets match 'printer'" in out.result.content[0].text
    assert desk.server.executed[since:] == [("search_tickets", {"q": "printer"})]
    read = mc.read_resource(desk.port, token(), era, "tickets://7")
    assert read.error is None and read.result.contents[0].text == "ticket 7", read
    # The policy saw the call as the published input schema describes it.
    inputs = [e["policy"]["input"] for e in desk.envoy.decision_lines()
              if (e.get("policy") or {}).get("input", {}).get("mcp")]
    assert harness.policy_input_schema_errors(inputs) == []
    assert {"search_tickets", "tickets://7"} <= {i["mcp"]["name"] for i in inputs}, inputs
    # The route does not audit arguments (mcp.audit_arguments): nor does its recorded input.
    assert {json.dumps(i["mcp"]["arguments"]) for i in inputs} <= {'"(redacted)"', "null"}, inputs


@ERA
def test_a_write_call_without_its_scope_is_refused_with_the_whole_challenge(desk, era):
    before, since = len(desk.server.seen), len(desk.server.executed)
    out = mc.call_tool(desk.port, token(), era, "create_ticket", {"title": "more toner"})
    # What the SDK surfaced: the filter's JSON-RPC error, with the decision id.
    assert out.error is not None and out.result is None, out
    assert out.error.code == -31403, out
    assert out.error.data["reason"] == "scope.insufficient"
    assert out.error.data["error"] == "insufficient_scope"
    assert re.fullmatch(r"[0-9a-f]{32}", out.error.data["decision_id"]), out.error.data
    # What the SDK kept to itself: 403 and one challenge naming every scope the call needs
    # (the route's and the tool's, held or not), pointing at the metadata.
    refused = out.refused
    assert refused.status == 403 and refused.mcp_method == "tools/call", out
    assert_scope_challenge(refused.headers["www-authenticate"], ["tickets:read", "tickets:write"])
    assert "create_ticket" not in executed_tools(desk, since)
    assert not any(b"create_ticket" in r["body"] for r in desk.server.seen[before:])
    # The same call sent raw: status, headers and body as the client receives them.
    r = mc.rpc(desk.client, token(), "tools/call", {"name": "create_ticket", "arguments": {"title": "x"}},
               mode=era, id=7)
    err = assert_jsonrpc_deny(r, 403, -31403, "scope.insufficient", id=7)
    assert err["data"]["error"] == "insufficient_scope"
    assert_scope_challenge(r.headers["www-authenticate"], ["tickets:read", "tickets:write"])
    assert not any(b"create_ticket" in x["body"] for x in desk.server.seen[before:])


@ERA
def test_admin_implies_read_and_write_and_may_call_them(desk, era):
    admin = token(sub="agent:ticket-admin", scope="tickets:admin")
    assert mc.tool_names(desk.port, admin, era) == sorted(TOOLS)
    since = len(desk.server.executed)
    for name, args in (("get_ticket", {"id": 3}), ("create_ticket", {"title": "new desk"}),
                       ("delete_ticket", {"id": 3})):
        out = mc.call_tool(desk.port, admin, era, name, args)
        assert out.error is None and out.result.is_error is False, (name, out)
    assert executed_tools(desk, since) == ["get_ticket", "create_ticket", "delete_ticket"]


@ERA
def test_a_delegated_chain_narrows_which_tools_appear(desk, era):
    scopes = "tickets:read tickets:write"
    via_planner, via_summarizer = tokens(dict(VIA_PLANNER, scope=scopes), dict(VIA_SUMMARIZER, scope=scopes))
    # agent:planner may hold both scopes for alice; agent:summarizer-* only tickets:read.
    assert mc.tool_names(desk.port, via_planner, era) == sorted(READ_TOOLS + WRITE_TOOLS)
    assert mc.tool_names(desk.port, via_summarizer, era) == sorted(READ_TOOLS)
    since = len(desk.server.executed)
    out = mc.call_tool(desk.port, via_summarizer, era, "create_ticket", {"title": "from the summarizer"})
    assert out.error is not None and out.error.code == -31403, out
    assert_scope_challenge(out.refused.headers["www-authenticate"], ["tickets:read", "tickets:write"])
    assert mc.call_tool(desk.port, via_planner, era, "create_ticket", {"title": "from the planner"}).error is None
    assert desk.server.executed[since:] == [("create_ticket", {"title": "from the planner"})]


@ERA
def test_a_list_too_large_to_filter_is_refused_not_passed_unfiltered(desk, era):
    reader = token()
    with desk.server.extra_tool("bulky_report", "x" * 1_100_000):  # over the 1 MiB response bound
        r = mc.rpc(desk.client, reader, "tools/list", mode=era, id=4)
        assert_jsonrpc_deny(r, 502, -31502, "mcp.list_unfilterable", id=4)
        out = mc.list_tools(desk.port, reader, era)
        assert out.error is not None and out.error.code == -31502 and out.refused.status == 502, out


def test_an_auto_client_still_negotiates_2026_07_28(desk):
    """`server/discover` names nothing: any caller with the route's scopes gets through, so
    an `auto` client is not pushed back to the handshake era."""
    out = mc.run(desk.port, token(), "auto", lambda c: c.list_tools())
    assert out.error is None, out
    assert [x.mcp_method for x in out.exchanges][:1] == ["server/discover"], out
    assert all(x.status == 200 for x in out.exchanges), out


# ---- Requests no SDK would send: refused before the server sees them -------------------

SEARCH = {"name": "search_tickets", "arguments": {"q": "printer"}}


def post(desk, tok, raw, hdrs):
    return desk.client.request("/mcp", method="POST", token=tok, body=raw, headers=hdrs)


@pytest.mark.parametrize("case", [
    "name_differs", "name_b64_differs", "name_b64_malformed", "method_differs", "version_differs",
    "missing_method", "missing_name", "missing_version_with_modern_meta", "legacy_name_differs",
])
def test_mirrored_headers_must_equal_the_body(desk, case):
    tok = every_scope()
    params, era, extra = dict(SEARCH), mc.MODERN, {}
    if case == "name_differs":
        extra = {"mcp_name": "search_tickets"}
        params["name"] = "delete_ticket"
    elif case == "name_b64_differs":
        extra = {"mcp_name": mc.b64_header("delete_ticket")}
    elif case == "name_b64_malformed":
        extra = {"mcp_name": "=?base64?c2VhcmNoX3RpY2tldHM?="}  # unpadded: not canonical
    elif case == "method_differs":
        extra = {"mcp_method": "tools/list"}
    elif case == "version_differs":
        extra = {"mcp_protocol_version": mc.LEGACY_VERSION}
    elif case == "missing_method":
        extra = {"mcp_method": None}
    elif case == "missing_name":
        extra = {"mcp_name": None}
    elif case == "missing_version_with_modern_meta":
        extra = {"mcp_protocol_version": None}
    elif case == "legacy_name_differs":
        era, extra = "legacy", {"mcp_name": "get_ticket"}  # a header that is present is checked
    raw = mc.body("tools/call", params, mode=era).encode()
    hdrs = mc.headers("tools/call", params["name"], era, **extra)
    before = len(desk.server.seen)
    r = post(desk, tok, raw, hdrs)
    assert_jsonrpc_deny(r, 400, -32020, "mcp.header_mismatch")
    desk.nothing_reached_the_server(before)


def test_a_repeated_mirrored_header_is_a_mismatch(desk):
    raw = mc.body("tools/call", SEARCH).encode()
    conn = http.client.HTTPConnection("127.0.0.1", desk.port, timeout=10)
    before = len(desk.server.seen)
    try:
        conn.putrequest("POST", "/mcp")
        for k, v in mc.headers("tools/call", "search_tickets").items():
            conn.putheader(k, v)
        conn.putheader("mcp-name", "search_tickets")
        conn.putheader("authorization", f"Bearer {token()}")
        conn.putheader("content-length", str(len(raw)))
        conn.endheaders(raw)
        resp = conn.getresponse()
        r = harness.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
    assert_jsonrpc_deny(r, 400, -32020, "mcp.header_mismatch")
    desk.nothing_reached_the_server(before)


@ERA
def test_a_correctly_encoded_name_header_passes(desk, era):
    since = len(desk.server.executed)
    raw = mc.body("tools/call", SEARCH, mode=era).encode()
    r = post(desk, token(), raw, mc.headers("tools/call", None, era, mcp_name=mc.b64_header("search_tickets")))
    assert r.status == 200, r
    assert "result" in mc.reply(r), r
    assert desk.server.executed[since:] == [("search_tickets", {"q": "printer"})]


@pytest.mark.parametrize("case, status, code, reason", [
    ("batch", 400, -32600, "mcp.batch"),
    ("not_json", 400, -32700, "mcp.body_invalid"),
    ("duplicate_member", 400, None, "mcp.body_invalid"),
    ("not_an_object", 400, -32600, "mcp.body_invalid"),
    ("modern_jsonrpc_response", 400, -32600, "mcp.body_invalid"),
    ("unlisted_tool", 403, -31403, "mcp.name_unlisted"),
    ("too_large", 413, -32600, "mcp.body_too_large"),
])
def test_bodies_the_filter_will_not_decide_on(desk, case, status, code, reason):
    tok = every_scope()
    hdrs = mc.headers("tools/call", "search_tickets")
    ids = {1}  # the id the error answers: the request's, or null when the filter could not read one
    if case == "batch":
        raw, ids = ("[" + mc.body("tools/call", SEARCH) + "]").encode(), {None}
    elif case == "not_json":
        raw, ids = b'{"jsonrpc":"2.0","id":1,"method":"tools/call",', {None}
    elif case == "duplicate_member":
        # Python's json (the server's parser) keeps the last member: it would delete.
        raw = mc.body("tools/call", SEARCH).replace('"name":"search_tickets"',
                                                    '"name":"search_tickets","name":"delete_ticket"').encode()
        assert json.loads(raw)["params"]["name"] == "delete_ticket"
        ids = {None, 1}
    elif case == "not_an_object":
        raw, ids = b'"tools/call"', {None}
    elif case == "modern_jsonrpc_response":
        # 2026-07-28 clients send requests only (a 2025-11-25 client's answer is decided on
        # the route's scopes: test_a_2025_client_may_answer_the_server).
        raw, hdrs = b'{"jsonrpc":"2.0","id":1,"result":{}}', {"content-type": "application/json",
                                                              "accept": mc.ACCEPT,
                                                              "mcp-protocol-version": mc.MODERN}
        ids = {None, 1}
    elif case == "unlisted_tool":
        params = {"name": "drop_database", "arguments": {}}
        raw, hdrs = mc.body("tools/call", params).encode(), mc.headers("tools/call", "drop_database")
    elif case == "too_large":
        raw = mc.body("tools/call", {"name": "search_tickets", "arguments": {"q": "x" * MAX_BODY}}).encode()
        ids = {None, 1}
    before = len(desk.server.seen)
    r = post(desk, tok, raw, hdrs)
    assert r.status == status, r
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] in ids, body
    assert body["error"]["data"]["reason"] == reason and body["error"]["data"]["decision_id"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    else:  # duplicate members: invalid JSON or an invalid request, either way refused
        assert body["error"]["code"] in (-32700, -32600), body
    desk.nothing_reached_the_server(before)


def test_a_2025_client_may_answer_the_server(desk):
    """A 2025-11-25 client POSTs JSON-RPC responses to the server's requests (sampling,
    elicitation): they run nothing, so the route's scopes decide, and the server gets the
    exact bytes. The audit event records it as an MCP exchange without a method."""
    raw = b'{"jsonrpc":"2.0","id":"srv-1","result":{"model":"m","role":"assistant"}}'
    hdrs = {"content-type": "application/json", "accept": mc.ACCEPT}
    before = len(desk.server.seen)
    r = post(desk, every_scope(), raw, hdrs)
    assert r.status < 500 and r.status not in (400, 401, 403, 413), r
    [got] = desk.server.seen[before:]
    assert got["body"] == raw


def test_an_oversize_chunked_body_is_refused_too(desk):
    """No content-length to check up front: the filter counts what arrives."""
    raw = mc.body("tools/call", {"name": "search_tickets", "arguments": {"q": "x" * MAX_BODY}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", desk.port, timeout=10)
    before = len(desk.server.seen)
    try:
        hdrs = dict(mc.headers("tools/call", "search_tickets"), authorization=f"Bearer {token()}")
        conn.request("POST", "/mcp", body=iter([raw[:1000], raw[1000:5000], raw[5000:]]), headers=hdrs,
                     encode_chunked=True)
        resp = conn.getresponse()
        r = harness.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
    assert r.status == 413, r
    assert r.json()["error"]["code"] == -32600 and r.json()["error"]["data"]["reason"] == "mcp.body_too_large", r
    desk.nothing_reached_the_server(before)


def test_a_resumed_legacy_stream_is_refused(desk):
    """A 2025-11-25 GET with Last-Event-ID could replay earlier results unfiltered."""
    before = len(desk.server.seen)
    r = desk.client.request("/mcp", token=token(), headers={"accept": "text/event-stream",
                                                            "mcp-protocol-version": mc.LEGACY_VERSION,
                                                            "last-event-id": "1"})
    assert r.status == 400 and r.json()["error"]["data"]["reason"] == "mcp.replay", r
    desk.nothing_reached_the_server(before)


# ---- The body the filter decided on is the body the server executed --------------------

def test_the_server_receives_the_exact_bytes_the_filter_decided_on(desk):
    # Valid, unusual JSON: spacing, member order, escapes the header must be compared after.
    raw = (b'{ "params" : {"arguments":{"q":"caf\\u00e9 \\"quoted\\" \\/slash"},\n'
           b'  "name":"\\u0073earch_tickets", "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
           b'"io.modelcontextprotocol/clientCapabilities":{}}},\r\n "method":"tools/call", "id":"a-1",'
           b' "jsonrpc":"2.0" }  \n')
    before, since = len(desk.server.seen), len(desk.server.executed)
    # Mcp-Param-* headers are the server's to check: passed through untouched.
    r = post(desk, token(), raw, mc.headers("tools/call", "search_tickets", mcp_param_region="=?base64?ZXU=?="))
    assert r.status == 200 and mc.reply(r)["id"] == "a-1", r
    [got] = desk.server.seen[before:]
    assert got["body"] == raw
    assert got["headers"]["mcp-param-region"] == ["=?base64?ZXU=?="]
    assert desk.server.executed[since:] == [("search_tickets", {"q": 'café "quoted" /slash'})]


@ERA
def test_the_sdk_clients_bodies_reach_the_server_byte_for_byte(desk, era):
    before = len(desk.server.seen)
    out = mc.run(desk.port, token(), era,
                 lambda c: c.call_tool("search_tickets", {"q": "größe ✓"}))
    assert out.error is None, out
    sent = [x.body for x in out.exchanges]
    received = [r["body"] for r in desk.server.seen[before:]]
    assert sent == received and any(b"search_tickets" in b for b in received), (sent, received)


# ---- Discovery: 401s and Protected Resource Metadata -----------------------------------

@ERA
def test_a_401_points_at_the_protected_resource_metadata(desk, era):
    before = len(desk.server.seen)
    out = mc.list_tools(desk.port, None, era)
    assert out.error is not None and out.error.code == -31401, out
    refused = out.refused
    assert refused.status == 401, out
    scheme, params = challenge_params(refused.headers["www-authenticate"])
    assert scheme == "Bearer" and "error" not in params, refused.headers  # no credentials: no error code
    assert params["resource_metadata"] == METADATA_URL
    desk.nothing_reached_the_server(before)
    # Derived from the configured resource, never from the request's Host.
    r = mc.rpc(desk.client, None, "tools/list", mode=era, host="evil.example")
    assert r.status == 401 and challenge_params(r.headers["www-authenticate"])[1]["resource_metadata"] == METADATA_URL
    assert r.json()["error"]["code"] == -31401 and r.json()["error"]["data"]["reason"], r


def test_every_403_carries_the_metadata_url_too(desk):
    r = desk.client.request("/tickets/7", method="POST", token=token(), body=b"{}")
    assert r.status == 403, r
    assert challenge_params(r.headers["www-authenticate"])[1]["resource_metadata"] == METADATA_URL


def test_protected_resource_metadata_found_and_parsed_by_the_sdk(desk):
    before = len(desk.server.seen)
    unauthenticated = httpx2.post(mc.url(desk.port), content=mc.body("tools/list"),
                                  headers=mc.headers("tools/list"))
    assert unauthenticated.status_code == 401
    header_url = extract_resource_metadata_from_www_auth(unauthenticated)
    assert header_url == METADATA_URL
    urls = build_protected_resource_metadata_discovery_urls(header_url, RESOURCE)
    assert urls == [METADATA_URL, METADATA_URL, "https://api.example.test/.well-known/oauth-protected-resource"]

    async def discover(url):
        # The resource's origin is this Envoy: same path, its Host.
        path = url.removeprefix("https://api.example.test")
        async with httpx2.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{desk.port}{path}", headers={"host": "api.example.test"})
            return response, await handle_protected_resource_response(response)

    for url in dict.fromkeys(urls):
        response, metadata = asyncio.run(discover(url))
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/json"), url
        assert metadata is not None, (url, response.text)
        assert str(metadata.resource) == RESOURCE
        assert [str(a).rstrip("/") for a in metadata.authorization_servers] == [ISSUER]
        assert metadata.scopes_supported == ["mail:send", "tickets:admin", "tickets:read", "tickets:write"]
        assert "offline_access" not in response.text
        assert "bearer_methods_supported" in metadata.model_fields_set
        assert metadata.bearer_methods_supported == ["header"]
        assert metadata.resource_name == "Tickets MCP"
    desk.nothing_reached_the_server(before)


# ---- The registry, revocation, policy and audit apply to tool calls --------------------

def call_search(desk, tok, era=mc.MODERN):
    return mc.rpc(desk.client, tok, "tools/call", SEARCH, mode=era)


def test_a_revoked_token_is_refused_on_its_next_tool_call(desk):
    jti = f"mcp-{uuid.uuid4().hex}"
    tok = token(jti=jti)
    assert call_search(desk, tok).status == 200
    [s] = harness.mint_sets([(f"set-{jti}", {harness.EVENT["token_revoked"]: {"jti": jti}})])
    desk.envoy.control_plane.push_sets([s])
    r = harness.wait_until(lambda: call_search(desk, tok), 5, "the revocation to apply to tools/call",
                           expect=lambda r: r.status != 200)
    before, since = len(desk.server.seen), len(desk.server.executed)
    r = call_search(desk, tok)
    assert_jsonrpc_deny(r, 401, -31401, "revocation.jti", id=BEFORE_THE_BODY)
    assert challenge_params(r.headers["www-authenticate"])[1]["resource_metadata"] == METADATA_URL
    out = mc.call_tool(desk.port, tok, "legacy", "search_tickets", {"q": "again"})
    assert out.error is not None and (out.error.data or {}).get("reason") == "revocation.jti", out
    assert desk.server.executed[since:] == []
    desk.nothing_reached_the_server(before)


def test_a_suspended_agent_is_refused_on_its_next_tool_call_until_reinstated(desk):
    tok = token(sub="agent:mcp-bot")
    assert mc.tool_names(desk.port, tok, mc.MODERN) == sorted(READ_TOOLS)
    cp = desk.envoy.control_plane
    # Feed versions are ordered decimal integers: later is larger (the stack starts at "1").
    version = time.time_ns()
    doc = harness.registry_doc(PLUGIN, version=str(version))
    for rec in doc["agents"]:
        if rec["id"] == "agent:mcp-bot":
            rec["status"] = "suspended"
    cp.set_registry(doc)
    try:
        harness.wait_until(lambda: call_search(desk, tok), 5, "the suspension to apply to tools/call",
                           expect=lambda r: r.status != 200)
        before = len(desk.server.seen)
        r = call_search(desk, tok)
        assert_jsonrpc_deny(r, 401, -31401, "agent.suspended", id=BEFORE_THE_BODY)
        assert challenge_params(r.headers["www-authenticate"])[1]["resource_metadata"] == METADATA_URL
        for era in mc.MODES:
            out = mc.list_tools(desk.port, tok, era)
            assert out.error is not None and (out.error.data or {}).get("reason") == "agent.suspended", out
        desk.nothing_reached_the_server(before)
    finally:
        doc["version"] = str(version + 1)
        for rec in doc["agents"]:
            if rec["id"] == "agent:mcp-bot":
                rec["status"] = "active"
        cp.set_registry(doc)
    harness.wait_until(lambda: call_search(desk, tok), 5, "the reinstatement to apply",
                       expect=lambda r: r.status == 200)


def test_rego_decides_on_the_call_it_sees(desk):
    tok = every_scope()
    since = len(desk.server.executed)
    r = mc.rpc(desk.client, tok, "tools/call", {"name": "delete_ticket", "arguments": {"id": 1}})
    err = assert_jsonrpc_deny(r, 403, -31403, "policy.denied")
    event = next(e for e in desk.envoy.decision_lines() if e["decision_id"] == err["data"]["decision_id"])
    assert event["policy_reason"] == "ticket.protected"
    r = mc.rpc(desk.client, tok, "tools/call", {"name": "delete_ticket", "arguments": {"id": 2}})
    assert r.status == 200, r
    assert desk.server.executed[since:] == [("delete_ticket", {"id": 2})]


def test_audit_events_name_the_call_and_hash_its_arguments_never_carry_them(desk):
    secret = f"secret-{uuid.uuid4().hex}"
    before = len(desk.server.seen)
    assert call_search(desk, token(), mc.MODERN).status == 200  # warm
    r = mc.rpc(desk.client, token(), "tools/call", {"name": "search_tickets", "arguments": {"q": secret}})
    assert r.status == 200, r
    [got] = [x for x in desk.server.seen[before:] if secret.encode() in x["body"]]
    allowed_id = got["headers"]["x-agent-decision-id"][0]
    denied = mc.rpc(desk.client, token(), "tools/call", {"name": "create_ticket", "arguments": {"title": secret}})
    denied_id = denied.json()["error"]["data"]["decision_id"]
    by_id = {}
    harness.wait_until(lambda: by_id.update({e["decision_id"]: e for e in desk.envoy.decision_lines()})
                       or {allowed_id, denied_id} <= by_id.keys(), 5, "both decisions in the audit log")
    allowed, refused = by_id[allowed_id], by_id[denied_id]
    canonical = json.dumps({"q": secret}, separators=(",", ":"), sort_keys=True).encode()
    assert allowed["decision"] == "allow" and allowed["mcp"] == {
        "method": "tools/call", "name": "search_tickets", "protocol_version": mc.MODERN,
        "arguments_sha256": hashlib.sha256(canonical).hexdigest(), "detail": None}
    assert refused["decision"] == "deny" and refused["reason"] == "scope.insufficient"
    assert refused["mcp"]["method"] == "tools/call" and refused["mcp"]["name"] == "create_ticket"
    assert re.fullmatch(r"[0-9a-f]{64}", refused["mcp"]["arguments_sha256"])
    assert secret not in desk.envoy.log()
    assert harness.audit_schema_errors([allowed, refused]) == []


def test_the_arguments_are_audited_only_where_the_route_opts_in():
    """`mcp.audit_arguments`: the decision event carries the call's arguments besides their
    hash; without it (every test above) only the hash."""
    plugin = json.loads((harness.ROOT / "examples" / "mcp-plugin.json").read_text())
    plugin["routes"][0]["mcp"]["audit_arguments"] = True
    secret = f"printer-{uuid.uuid4().hex}"
    [tok] = harness.mint([{"claims": {"sub": "user:alice", "aud": "https://api.agent-iam.test/mcp",
                                      "scope": "tickets:read", "act": {"sub": "agent:tool-search"}}}])
    with harness.stack(plugin_json=plugin, name="mcp-audit-arguments") as envoy:
        client = harness.Client(envoy.listen_port)
        r = mc.rpc(client, tok, "tools/call", {"name": "search_tickets", "arguments": {"q": secret}})
        client.close()
        assert r.status == 200 and r.json()["path"] == "/mcp", r  # the echo upstream answered
        harness.wait_until(lambda: any(secret in json.dumps(e) for e in envoy.decision_lines()), 5,
                           "the decision event")
        [event] = [e for e in envoy.decision_lines() if e.get("mcp", {}).get("name") == "search_tickets"]
    assert event["mcp"]["arguments"] == {"q": secret}
    canonical = json.dumps({"q": secret}, separators=(",", ":"), sort_keys=True).encode()
    assert event["mcp"]["arguments_sha256"] == hashlib.sha256(canonical).hexdigest()
    assert harness.audit_schema_errors([event]) == []
