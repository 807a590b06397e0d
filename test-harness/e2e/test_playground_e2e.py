"""The policy playground in a real browser: `agent-iam playground` serves the page, headless
Chromium (Debian's, driven by playwright-core) evaluates an allowed and a denied request, a
policy edit, a demo token, MCP calls built in the MCP editor and two broken inputs, and the
test checks what the page showed.
Then the same inputs go through a real Envoy running the filter: the gateway must make the
same decisions the page showed."""

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness

SITE = harness.ROOT / "target" / "playground" / "site"
BROWSER = harness.HARNESS_DIR / "e2e" / "browser"
OUT = harness.OUT / "playground"


@pytest.fixture(scope="module")
def page():
    """Runs the browser script once; returns {case name: case}."""
    # What the test needs, when test.sh has not provided it already: the browser module,
    # Debian's Chromium and playwright-core.
    if not (SITE / "agent_iam_playground_bg.wasm").is_file():
        subprocess.run([str(harness.ROOT / "test-harness" / "playground.sh"), "--build-only"], check=True)
    if not (BROWSER / "node_modules" / "playwright-core").is_dir() or not Path("/usr/bin/chromium").exists():
        subprocess.run([str(harness.HARNESS_DIR / "scripts" / "browser-setup.sh")], check=True)
    now = int(time.time())
    server = subprocess.Popen(
        [str(harness.CLI), "playground", "--listen", "0", "--now", str(now), "--site", str(SITE)],
        cwd=harness.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = harness.first_line(server, 30, "the playground's address line")
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"playground did not start: {line!r}"
        shutil.rmtree(OUT, ignore_errors=True)
        run = subprocess.run(["node", str(BROWSER / "playground.mjs"), match.group(0), str(OUT)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    report = json.loads((OUT / "playground.json").read_text())
    assert report["console_errors"] == [], report["console_errors"]
    cases = {c["name"]: c for c in report["cases"]}
    for c in cases.values():
        c["now"] = now
    return cases


def test_allowed_delegated_request_shows_decision_chain_scopes_and_audit(page):
    s = page["delegated-read"]["shown"]
    assert (s["verdict"], s["reason"], s["status"]) == ("ALLOW", "— (allowed)", "200")
    assert s["scopes"] == "tickets:read"
    # principal -> earlier actor -> acting agent, drawn with an arrow between each.
    assert s["chain"] == [{"role": "principal", "id": "user:alice"},
                          {"role": "actor", "id": "agent:planner"},
                          {"role": "agent", "id": "agent:tool-search"}]
    assert s["chain_arrows"] == 2
    audit = s["audit"]
    assert (audit["kind"], audit["decision"], audit["agent"], audit["principal"]) == (
        "decision", "allow", "agent:tool-search", "user:alice")
    assert audit["chain"] == ["agent:tool-search", "agent:planner"]
    assert harness.audit_schema_errors([audit]) == []
    headers = s["response"]["upstream_headers"]
    assert (headers["x-agent-id"], headers["x-agent-chain"]) == ("agent:tool-search", "agent:tool-search,agent:planner")
    # The page says what it does not do (the shipped config names a registry feed).
    assert any("agents.feed is not polled" in n for n in s["notes"])


def test_policy_tests_shown_match_the_cli(page):
    cli = harness.cli("policy", "test", harness.ROOT / "policies").stdout
    passed = int(re.search(r"(\d+) passed, 0 failed", cli).group(1))
    s = page["delegated-read"]["shown"]
    assert s["tests_summary"] == f"{passed} passed, 0 failed"
    assert len(s["tests"]) == passed and all(row[0] == "PASS" for row in s["tests"])


def test_denied_write_names_the_missing_scope(page):
    s = page["delegated-write"]["shown"]
    assert (s["verdict"], s["reason"], s["status"]) == ("DENY", "scope.insufficient", "403")
    assert 'scope="tickets:write"' in s["response"]["www_authenticate"]
    assert s["response"]["body"]["reason"] == "scope.insufficient"
    assert (s["audit"]["decision"], s["audit"]["reason"]) == ("deny", "scope.insufficient")


def test_policy_edit_changes_the_decision(page):
    s = page["policy-edit"]["shown"]
    assert (s["verdict"], s["reason"], s["status"]) == ("DENY", "policy.denied", "403")
    assert "tool_search.paused" in s["policy"]
    assert s["response"]["body"]["policy_reason"] == "tool_search.paused"
    assert s["audit"]["policy_reason"] == "tool_search.paused"
    # The edit is a new policy revision.
    assert s["policy"].split()[1] != page["delegated-read"]["shown"]["policy"].split()[1]


def test_a_new_module_adds_its_rule(page):
    c = page["new-module"]
    s = c["shown"]
    assert "agent_iam/paused.rego" in c["inputs"]["policy_files"]
    # authz.rego is back as shipped: the new module's rule decides.
    assert "tool_search.paused" not in c["inputs"]["policy_files"]["agent_iam/authz.rego"]
    assert (s["verdict"], s["reason"]) == ("DENY", "policy.denied")
    assert s["response"]["body"]["policy_reason"] == "planner.paused"


def test_minted_demo_token_for_a_self_acting_agent(page):
    c = page["minted-eddsa-self"]
    s = c["shown"]
    assert (s["verdict"], s["status"]) == ("ALLOW", "200")
    assert s["chain"] == [{"role": "agent", "id": "agent:build-bot-7"}]
    segment = c["inputs"]["token"].split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert header["alg"] == "EdDSA"


def test_errors_point_at_the_rego_line_and_the_config_path(page):
    rego = page["rego-syntax-error"]["shown"]
    assert rego["verdict"] == "—" and rego["error_panels"] == ["panel-policy"]
    lines = len(page["delegated-read"]["inputs"]["policy_files"]["agent_iam/authz.rego"].splitlines())
    [err] = rego["errors"]
    assert err.startswith("policy · agent_iam/authz.rego · line "), err
    line = int(re.search(r"line (\d+)", err).group(1))
    assert lines < line <= lines + 3, (line, lines)
    case = page["config-error"]
    cfg = case["shown"]
    assert cfg["error_panels"] == ["panel-config"]
    [err] = cfg["errors"]
    # The JSON path and the line of the config editor it is on.
    typo_line = 1 + case["inputs"]["config"].split('"required_scope"')[0].count("\n")
    assert err.startswith(f"config · line {typo_line} · $.routes[0].required_scope"), err
    assert "unknown field" in err


RESOURCE_METADATA = "https://api.agent-iam.test/.well-known/oauth-protected-resource/mcp"


def sent(case):
    """The request the page's MCP editor composed and decided: {method, path, host,
    headers, body}."""
    return json.loads(case["inputs"]["request"])


def test_mcp_editor_builds_the_post_and_a_read_tool_is_allowed(page):
    c = page["mcp-read-tool"]
    req, s = sent(c), c["shown"]
    assert (req["method"], req["path"]) == ("POST", "/mcp")
    assert {k: req["headers"][k] for k in ("MCP-Protocol-Version", "Mcp-Method", "Mcp-Name")} == {
        "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "search_tickets"}
    body = json.loads(req["body"])
    assert (body["jsonrpc"], body["id"], body["method"]) == ("2.0", 1, "tools/call")
    assert body["params"]["name"] == "search_tickets" and body["params"]["arguments"] == {"q": "printer"}
    assert body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert (s["verdict"], s["reason"], s["status"]) == ("ALLOW", "— (allowed)", "200")
    assert s["mcp"] == "tools/call · search_tickets · 2026-07-28"
    assert s["chain"] == [{"role": "principal", "id": "user:alice"}, {"role": "agent", "id": "agent:tool-search"}]
    # The audit event names the call and hashes its arguments, never carries them.
    canonical = json.dumps({"q": "printer"}, sort_keys=True, separators=(",", ":")).encode()
    assert s["audit"]["mcp"] == {"method": "tools/call", "name": "search_tickets", "protocol_version": "2026-07-28",
                                 "arguments_sha256": hashlib.sha256(canonical).hexdigest(), "detail": None}
    assert "printer" not in json.dumps(s["audit"])
    assert harness.audit_schema_errors([s["audit"]]) == []


def test_mcp_write_tool_is_refused_with_every_needed_scope_and_a_json_rpc_error(page):
    s = page["mcp-write-tool"]["shown"]
    assert (s["verdict"], s["reason"], s["status"]) == ("DENY", "scope.insufficient", "403")
    # The route needs tickets:read, the tool tickets:write: both in one challenge, though
    # the caller lacks only the second.
    assert s["challenge"] == ('Bearer error="insufficient_scope", error_description="scope.insufficient", '
                              f'scope="tickets:read tickets:write", resource_metadata="{RESOURCE_METADATA}", '
                              f'DPoP algs="ES256 EdDSA Ed25519 RS256", resource_metadata="{RESOURCE_METADATA}"')
    assert s["response"]["www_authenticate"] == s["challenge"]
    err = s["response"]["body"]
    assert (err["jsonrpc"], err["id"], err["error"]["code"]) == ("2.0", 1, -31403)
    assert err["error"]["data"]["reason"] == "scope.insufficient"
    assert err["error"]["data"]["decision_id"] == s["audit"]["decision_id"]
    assert (s["audit"]["reason"], s["audit"]["mcp"]["name"]) == ("scope.insufficient", "create_ticket")


def test_mcp_header_that_does_not_mirror_the_body_is_refused(page):
    c = page["mcp-header-mismatch"]
    req, s = sent(c), c["shown"]
    assert req["headers"]["Mcp-Name"] == "search_tickets"
    assert json.loads(req["body"])["params"]["name"] == "create_ticket"
    assert (s["verdict"], s["reason"], s["status"]) == ("DENY", "mcp.header_mismatch", "400")
    err = s["response"]["body"]["error"]
    assert err["code"] == -32020 and "Mcp-Name" in err["message"], err
    assert err["data"]["decision_id"] == s["audit"]["decision_id"]


def test_mcp_name_that_is_not_plain_ascii_is_sent_base64_encoded(page):
    c = page["mcp-encoded-name"]
    header = sent(c)["headers"]["Mcp-Name"]
    assert header == "=?base64?" + base64.b64encode("créer_ticket".encode()).decode() + "?="
    # The filter decodes it and finds it equal to the body: the name itself is refused.
    assert (c["shown"]["reason"], c["shown"]["status"]) == ("mcp.name_unlisted", "403")


def test_mcp_2025_11_25_call_has_no_mirrored_method_and_is_decided_on_its_body(page):
    c = page["mcp-2025-read-tool"]
    req = sent(c)
    assert req["headers"]["MCP-Protocol-Version"] == "2025-11-25"
    assert "Mcp-Method" not in req["headers"] and "Mcp-Name" not in req["headers"]
    assert "_meta" not in json.loads(req["body"])["params"]
    assert (c["shown"]["verdict"], c["shown"]["mcp"]) == ("ALLOW", "tools/call · search_tickets · no protocol version")


def test_the_page_shows_the_input_the_gateway_builds(page):
    c = page["input-shown"]
    shown = c["shown"]["input"]
    assert harness.policy_input_schema_errors([shown]) == []
    # The CLI builds the same document for the same request, token and time.
    request = json.loads(c["inputs"]["request"])
    request.setdefault("headers", {})["authorization"] = f"Bearer {c['inputs']['token']}"
    tmp = Path(tempfile.mkdtemp(prefix="playground-input-", dir=harness.OUT))
    (tmp / "plugin.json").write_text(json.dumps(rendered_plugin(c["inputs"])))
    out = harness.cli("policy", "input", "--config", tmp / "plugin.json", "--now", str(c["inputs"]["now"]),
                      stdin=json.dumps(request) + "\n").stdout
    cli = json.loads(out)
    assert cli == shown


def test_an_exported_case_is_a_passing_test(page):
    c = page["exported-test"]
    assert (c["file"], c["download"]) == ("agent_iam/playground_test.rego", "playground_test.rego")
    text = c["text"]
    assert "test_get_tickets_42_is_allowed if {" in text and "test_get_tenants_globex_tickets_is_denied_2 if {" in text
    assert '\td.reason == "tenant.mismatch"\n' in text
    ours = [row for row in c["shown"]["tests"] if "playground_test" in row[1]]
    assert [row[0] for row in ours] == ["PASS", "PASS"], c["shown"]["tests"]
    assert c["shown"]["tests_summary"].endswith(" passed, 0 failed"), c["shown"]["tests_summary"]
    # The exported module runs with the CLI too (the shipped policies plus the case).
    tmp = Path(tempfile.mkdtemp(prefix="playground-export-", dir=harness.OUT))
    shutil.copytree(harness.ROOT / "policies", tmp / "policies")
    (tmp / "policies" / c["file"]).write_text(text)
    out = harness.cli("policy", "test", "-v", "--run", "playground_test", tmp / "policies").stdout
    assert out.count("PASS data.agent_iam.playground_test.") == 2, out


def test_a_recorded_event_replays_against_the_page_policy(page):
    same, changed = page["replay-same"]["shown"], page["replay-changed"]["shown"]
    assert "recorded policy.denied tenant.mismatch · now policy.denied tenant.mismatch · unchanged" in same["replayed"]
    assert "recorded policy.denied tenant.mismatch · now allow · CHANGED" in changed["replayed"]
    event = json.loads(page["replay-same"]["event"])
    assert same["input"] == event["policy"]["input"]


def test_a_case_shared_as_a_link_reopens_as_it_was(page):
    original, reopened = page["shared-original"], page["shared-reopened"]
    link = reopened["link"]
    assert "#case=" in link and "?" not in link, link
    r = reopened["reopened"]
    assert (r["request"], r["token"]) == (original["inputs"]["request"], original["inputs"]["token"])
    assert set(r["files"]) == set(original["inputs"]["policy_files"])
    assert r["event"] == page["replay-same"]["event"]
    s = original["shown"]
    assert (r["verdict"], r["reason"], r["policy"]) == (s["verdict"], s["reason"], s["policy"])


def test_screenshots_are_saved():
    for name in ("playground.png", "playground-policy-edit.png", "playground-mcp.png", "playground-errors.png",
                 "playground-replay.png"):
        data = (OUT / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name


def rendered_plugin(inputs):
    """The plugin configuration the gateway loads for the page's inputs, rendered by the
    CLI (`agent-iam policy render`) from the config text and the policy files."""
    tmp = Path(tempfile.mkdtemp(prefix="playground-", dir=harness.OUT))
    for name, text in inputs["policy_files"].items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    (tmp / "config.json").write_text(inputs["config"])
    # The page's directory as a whole: data.json files load at the path of their directory.
    out = harness.cli("policy", "render", "--config", tmp / "config.json", tmp).stdout
    return json.loads(out)


@pytest.mark.parametrize("case", ["delegated-read", "delegated-write", "policy-edit", "new-module",
                                  "minted-eddsa-self", "mcp-read-tool", "mcp-write-tool", "mcp-header-mismatch",
                                  "mcp-encoded-name", "mcp-2025-read-tool"])
def test_the_gateway_makes_the_same_decision(page, case):
    inputs, shown = page[case]["inputs"], page[case]["shown"]
    request = json.loads(inputs["request"])
    with harness.stack(plugin_json=rendered_plugin(inputs), name=f"playground-{case}") as envoy:
        client = harness.Client(envoy.listen_port)
        body = request["body"].encode() if "body" in request else b"{}" if request["method"] == "POST" else None
        r = client.request(request["path"], method=request["method"], token=inputs["token"], body=body,
                           headers=request.get("headers"))
        client.close()
    assert str(r.status) == shown["status"], r
    if shown["verdict"] == "ALLOW":
        upstream = r.json()["headers"]
        for name, value in shown["response"]["upstream_headers"].items():
            if name != "x-agent-decision-id":
                assert upstream[name] == [value], name
    else:
        body, expected = r.json(), shown["response"]["body"]
        if "jsonrpc" in expected:
            # On the MCP route: the same JSON-RPC error, for the same request id.
            assert (body["jsonrpc"], body["id"], body["error"]["code"]) == (
                "2.0", expected["id"], expected["error"]["code"])
            assert body["error"]["message"] == expected["error"]["message"]
            body, expected = body["error"]["data"], expected["error"]["data"]
        assert body["reason"] == shown["reason"]
        assert body.get("policy_reason") == expected.get("policy_reason")
        assert r.headers["www-authenticate"] == shown["response"]["www_authenticate"]


def test_the_server_answers_only_its_own_origin_and_files():
    server = subprocess.Popen([str(harness.CLI), "playground", "--listen", "0", "--site", str(SITE)],
                              cwd=harness.ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = harness.first_line(server, 30, "the playground's address line")
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))

        def get(path, host=None, method="GET"):
            return harness.raw_request(port, f"{method} {path} HTTP/1.1\r\nhost: {host or f'127.0.0.1:{port}'}\r\n\r\n".encode())

        assert get("/").startswith(b"HTTP/1.1 200")
        wasm = get("/agent_iam_playground_bg.wasm")
        assert wasm.startswith(b"HTTP/1.1 200") and b"content-type: application/wasm" in wasm
        defaults = get("/defaults.json", host=f"localhost:{port}")
        assert defaults.startswith(b"HTTP/1.1 200") and b"content-type: application/json" in defaults
        # DNS rebinding: another site's name pointed at 127.0.0.1 reads nothing.
        assert get("/defaults.json", host=f"attacker.example:{port}").startswith(b"HTTP/1.1 421")
        for path in ("/../Cargo.toml", "/%2e%2e/Cargo.toml", "/.hidden", "/sub/dir.js"):
            assert get(path).startswith(b"HTTP/1.1 404"), path
        assert get("/", method="POST").startswith(b"HTTP/1.1 405")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_server_judges_the_one_host_a_request_has(tmp_path):
    # The server needs only the page's two files to start.
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "agent_iam_playground_bg.wasm").write_bytes(b"\0asm")
    server = subprocess.Popen([str(harness.CLI), "playground", "--listen", "0", "--site", str(tmp_path)],
                              cwd=harness.ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = harness.first_line(server, 30, "the playground's address line")
        port = int(re.search(r"127\.0\.0\.1:(\d+)/", line).group(1))
        own, foreign = f"127.0.0.1:{port}", f"attacker.example:{port}"

        def get(*header_lines):
            head = "".join(f"{h}\r\n" for h in header_lines)
            return harness.raw_request(port, f"GET /defaults.json HTTP/1.1\r\n{head}\r\n".encode())

        assert get(f"Host: {own}").startswith(b"HTTP/1.1 200")
        assert get(f"Host: {foreign}").startswith(b"HTTP/1.1 421")
        # A second Host line never decides: a request with two is refused (RFC 9112 §3.2),
        # whichever comes first, and so are lines another parser could read as a Host.
        for lines in ([f"Host: {foreign}", f"Host: {own}"], [f"Host: {own}", f"host: {foreign}"],
                      [f"Host: {foreign}", f" Host: {own}"], [f"Host : {own}"], ["x-a: 1"]):
            r = get(*lines)
            assert r.startswith(b"HTTP/1.1 400"), (lines, r[:80])
            assert b"config" not in r
    finally:
        server.terminate()
        server.wait(timeout=10)
