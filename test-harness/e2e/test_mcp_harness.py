"""The MCP test harness on its own, without Envoy: the SDK client talks straight to the
ticket desk (`harness.mcp_server`) in each era and server mode, and the desk records what
it received and ran. Also the facts the filter's tests rest on: the server itself would run
what a lenient gateway let through (a stateless 2025-11-25 server runs `tools/call` without
any handshake; Python's JSON parser keeps the last of duplicate members)."""

import json

import pytest

import harness
from harness import mcp_client as mc
from harness.mcp_server import TOOLS, McpUpstream


@pytest.fixture(scope="module", params=["json", "sse"])
def server(request):
    with McpUpstream(json_response=request.param == "json") as s:
        s.mode = request.param
        yield s


@pytest.mark.parametrize("era", mc.MODES)
def test_the_sdk_client_lists_and_calls_in_each_era_and_mode(server, era):
    before, since = len(server.seen), len(server.executed)
    out = mc.run(server.port, "any", era, lambda c: c.list_tools())
    assert out.error is None and sorted(t.name for t in out.result.tools) == sorted(TOOLS), out
    # What a filtered list must stop saying (2026-07-28); 2025-11-25 results have no cacheScope.
    assert out.result.cache_scope == ("public" if era == mc.MODERN else "private")
    assert mc.call_tool(server.port, "any", era, "create_ticket", {"title": "t"}).error is None
    assert mc.read_resource(server.port, "any", era, "tickets://stats").error is None
    assert mc.get_prompt(server.port, "any", era, "triage", {"ticket_id": "9"}).error is None
    assert server.executed[since:] == [("create_ticket", {"title": "t"}), ("resource", {"uri": "tickets://stats"}),
                                       ("prompt", {"name": "triage", "ticket_id": "9"})]
    posts = server.seen[before:]
    assert all(r["method"] == "POST" and r["path"] == "/mcp" for r in posts)
    assert posts[0]["headers"]["authorization"] == ["Bearer any"]
    lists = [r for r in posts if json.loads(r["body"]).get("method") == "tools/list"]
    expected = "application/json" if server.mode == "json" else "text/event-stream"
    assert lists and all(r["content_type"].startswith(expected) for r in lists), lists
    if era == mc.MODERN:
        call = next(r for r in posts if json.loads(r["body"]).get("method") == "tools/call")
        assert call["headers"]["mcp-method"] == ["tools/call"] and call["headers"]["mcp-name"] == ["create_ticket"]


def test_raw_requests_and_the_recording_are_byte_exact(server):
    c = harness.Client(server.port)
    try:
        raw = mc.body("tools/call", {"name": "get_ticket", "arguments": {"id": 5}}).encode() + b"  \n"
        before = len(server.seen)
        r = c.request("/mcp", method="POST", body=raw, headers=mc.headers("tools/call", "get_ticket"))
        assert r.status == 200 and mc.reply(r)["result"]["content"][0]["text"] == "ticket 5: printer on fire", r
        assert server.seen[before]["body"] == raw
        if server.mode == "sse":  # the progress notification, then the result
            assert r.headers["content-type"].startswith("text/event-stream")
            assert [m.get("method") for m in mc.messages(r)] == ["notifications/progress", None]
        for era in mc.MODES:
            result = mc.reply(mc.rpc(c, None, "tools/list", mode=era))["result"]
            assert sorted(t["name"] for t in result["tools"]) == sorted(TOOLS)
            assert result.get("cacheScope") == ("public" if era == mc.MODERN else None), result
    finally:
        c.close()


def test_the_server_alone_trusts_what_reaches_it(server):
    """Why the filter must decide on the body and answer first: a stateless 2025-11-25
    server runs a tools/call with no handshake, and of duplicate members it keeps the last."""
    c = harness.Client(server.port)
    try:
        since = len(server.executed)
        r = c.request("/mcp", method="POST", body=mc.body("tools/call", {"name": "delete_ticket", "arguments": {"id": 4}},
                                                          mode="legacy").encode(),
                      headers=mc.headers("tools/call", mode="legacy"))
        assert r.status == 200 and "result" in mc.reply(r), r
        dup = mc.body("tools/call", {"name": "search_tickets", "arguments": {"id": 8}}, mode="legacy").replace(
            '"name":"search_tickets"', '"name":"search_tickets","name":"delete_ticket"')
        r = c.request("/mcp", method="POST", body=dup.encode(), headers=mc.headers("tools/call", mode="legacy"))
        assert r.status == 200, r
        assert server.executed[since:] == [("delete_ticket", {"id": 4}), ("delete_ticket", {"id": 8})]
        # It checks the mirrored headers itself (2026-07-28): refused, but by the server.
        r = c.request("/mcp", method="POST", body=mc.body("tools/call", {"name": "delete_ticket", "arguments": {"id": 1}}).encode(),
                      headers=mc.headers("tools/call", "search_tickets"))
        assert r.status == 400 and mc.reply(r)["error"]["code"] == -32020, r
    finally:
        c.close()
