"""End-to-end: failure semantics and header integrity through a real Envoy.

A trap inside the filter (the test-hook build panics on `x-agent-iam-test-panic`) never lets
a request through: with the shipped `FAIL_CLOSED` the trapped worker denies every later
request (Envoy 1.40 does not restart its VM), with `FAIL_RELOAD` it denies until Envoy has
started a fresh VM, then serves again. No request can make the upstream see an identity
header the filter did not set."""

import json
import time

import harness

PANIC = {"x-agent-iam-test-panic": "1"}


def marked(up, marker):
    return [h for h in up.server.seen if h.get("x-marker") == [marker]]


@harness.dynamic_module_only
def test_a_panic_in_the_dynamic_module_denies_that_request_and_envoy_keeps_serving():
    """Native code has no VM to trap: the module's barrier catches the panic in the hook,
    answers that request 503 (it never goes upstream), replaces that thread's worker with
    a fresh one, and the next requests are decided as before, by the same Envoy process."""
    with harness.stack(wasm=harness.HOOKS_WASM, name="dm-panic") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        assert client.request("/tickets", token=token).status == 200
        r = client.request("/tickets", token=token, headers={**PANIC, "x-marker": "panicked"})
        assert r.status == 503, r
        assert envoy.wait_for_log("agent-iam: panic: panicked at")
        assert envoy.wait_for_log("agent-iam: panic caught in request_headers; failing closed")
        assert envoy.wait_for_log("agent-iam: the worker that panicked was replaced by a fresh one")
        for i in range(3):
            client.close()
            r = client.request("/tickets", token=token, headers={"x-marker": f"later-{i}"})
            assert r.status == 200, r
        assert client.request("/tickets").status == 401
        assert envoy.proc.poll() is None
        up = envoy.upstream
        assert marked(up, "panicked") == [] and all(len(marked(up, f"later-{i}")) == 1 for i in range(3))


@harness.wasm_only  # a VM trap and Envoy's failure_policy: Wasm only
def test_a_trap_denies_and_fail_closed_never_passes():
    with harness.stack(wasm=harness.HOOKS_WASM, name="trap-closed") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        assert client.request("/tickets", token=token).status == 200
        r = client.request("/tickets", token=token, headers={**PANIC, "x-marker": "trapped"})
        assert r.status == 503, r
        assert envoy.wait_for_log("agent-iam: panic: panicked at")
        for i in range(5):  # five later requests on new connections, 0.3 s apart
            client.close()
            r = client.request("/tickets", token=token, headers={"x-marker": f"later-{i}"})
            assert r.status == 503, r
            time.sleep(0.3)
        up = envoy.upstream
        assert marked(up, "trapped") == [] and all(marked(up, f"later-{i}") == [] for i in range(5))


@harness.wasm_only  # a VM trap and Envoy's failure_policy: Wasm only
def test_fail_reload_denies_then_a_fresh_vm_serves():
    with harness.stack(wasm=harness.HOOKS_WASM, name="trap-reload", failure_policy="reload") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        r = client.request("/tickets", token=token, headers={**PANIC, "x-marker": "trapped"})
        assert r.status == 503, r
        statuses = []

        def served_on_a_new_connection():
            client.close()
            statuses.append(client.request("/tickets", token=token).status)
            return statuses[-1] == 200

        harness.wait_until(served_on_a_new_connection, 10, "a fresh VM to serve", interval=0.2)
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {503}, statuses
        assert marked(envoy.upstream, "trapped") == []
        stats = harness.admin_stats(envoy, "vm_reload")
        assert int(stats["wasm.agent_iam.vm_reload_success"]) >= 1, stats


@harness.wasm_only  # a VM trap and Envoy's failure_policy: Wasm only
def test_an_unknown_foreign_function_answers_not_found_and_the_vm_keeps_serving():
    """What a host without `verify_signature` answers, from Envoy's own foreign-function
    table: "not found" as a status, never a trap (with it the filter falls back to pure Rust
    on `signature_backend: auto` and refuses `host` at configure time, see the worker's
    unit tests)."""
    with harness.stack(wasm=harness.HOOKS_WASM, name="foreign-missing") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{}])
        r = client.request("/tickets", headers={"x-agent-iam-test-foreign": "agent_iam_no_such_function"})
        assert (r.status, r.body) == (200, b"error NotFound"), r.body
        r = client.request("/tickets", headers={"x-agent-iam-test-foreign": "verify_signature"})
        assert r.status == 200 and r.body.startswith(b"error "), r.body  # no arguments: refused
        assert client.request("/tickets", token=token).status == 200
        assert "agent-iam: panic" not in envoy.log()
        assert "signatures ES256=host RS256=host" in envoy.log()


def test_no_request_can_smuggle_an_identity_header(envoy, client):
    check_smuggling(envoy, client)


def test_with_envoys_header_mutation_filter_in_front_as_a_second_line_of_defence():
    with harness.stack(name="header-guard", header_guard=True) as envoy:
        client = harness.Client(envoy.listen_port)
        check_smuggling(envoy, client)
        client.close()


def check_smuggling(envoy, client):
    [token] = harness.mint([{"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}])
    forged = {
        "X-AGENT-ID": "agent:admin",                 # case variant
        "x-Agent-Principal": "user:root",
        "x-agent-scopes": "admin:*",
        "x-agent-chain": "agent:admin",
        "x-agent-decision-id": "00000000000000000000000000000000",
    }
    r = client.request("/tickets", token=token, headers={**forged, "x-marker": "smuggle"})
    assert r.status == 200, r
    [seen] = marked(envoy.upstream, "smuggle")
    assert seen["x-agent-id"] == ["agent:planner"] and seen["x-agent-principal"] == ["user:alice"]
    assert seen["x-agent-scopes"] == ["tickets:read"] and seen["x-agent-chain"] == ["agent:planner"]
    assert seen["x-agent-decision-id"] != ["0" * 32]

    # Duplicates of each identity header, raw on the wire (http.client would merge nothing).
    raw = (f"GET /tickets HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
           "x-marker: dup\r\nx-agent-id: agent:admin\r\nx-agent-id: agent:root\r\n"
           "X-Agent-Scopes: admin:*\r\nx-agent-scopes: root:*\r\nConnection: close\r\n\r\n").encode()
    answer = harness.raw_request(envoy.listen_port, raw)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    [seen] = marked(envoy.upstream, "dup")
    assert seen["x-agent-id"] == ["agent:planner"] and seen["x-agent-scopes"] == ["tickets:read"]

    # Denied requests carry nothing upstream either (they never reach it).
    r = client.request("/tickets", headers={**forged, "x-marker": "denied"})
    assert r.status == 401 and marked(envoy.upstream, "denied") == []


def test_identity_headers_in_trailers_or_odd_names_never_reach_the_upstream(envoy):
    [token] = harness.mint([{}])
    # Chunked body with trailers naming identity headers: Envoy drops HTTP/1 trailers it is
    # not asked to forward, and the filter's headers are the only identity the upstream sees.
    raw = (f"POST /tickets HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
           "x-marker: trailers\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\nConnection: close\r\n\r\n"
           "2\r\n{}\r\n0\r\nx-agent-id: agent:admin\r\nx-agent-scopes: admin:*\r\n\r\n").encode()
    answer = harness.raw_request(envoy.listen_port, raw)
    # build-bot-7 may not write: 403, and nothing reached the upstream.
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert marked(envoy.upstream, "trailers") == []
    # A read with trailers: allowed, and the upstream's identity is the filter's.
    raw = raw.replace(b"POST /tickets", b"GET /tickets").replace(b"x-marker: trailers", b"x-marker: trailers-get")
    answer = harness.raw_request(envoy.listen_port, raw)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    [seen] = marked(envoy.upstream, "trailers-get")
    assert seen["x-agent-id"] == ["agent:build-bot-7"] and seen["x-agent-scopes"] == ["tickets:read"]
    # Header names with odd characters are refused by Envoy's codec before any filter runs.
    for name in (b"x-agent-id ", b"x-agent-id\t", b"x agent id", b"x-agent-id\x00"):
        raw = (b"GET /tickets HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + token.encode() +
               b"\r\nx-marker: odd\r\n" + name + b": agent:admin\r\nConnection: close\r\n\r\n")
        answer = harness.raw_request(envoy.listen_port, raw)
        assert answer.startswith(b"HTTP/1.1 400") or answer == b"" or \
            (answer.startswith(b"HTTP/1.1 200") and all(h.get("x-agent-id") == ["agent:build-bot-7"]
                                                        for h in marked(envoy.upstream, "odd"))), (name, answer[:120])


def test_verify_budget_refuses_a_flooding_client_without_verifying():
    """`verify_budget`: a client that keeps presenting forged tokens spends its budget of
    failed signature checks; then its tokens that no cache answers get 429
    `token.verify_budget` without a signature check (audited like any deny), its cached
    token keeps working, and the budget refills."""
    p = json.loads(harness.PLUGIN.read_text())
    p["verify_budget"] = {"per_client_per_s": 0.5, "burst": 5}
    with harness.stack(plugin_json=p, name="verify-budget") as envoy:
        client = harness.Client(envoy.listen_port)
        [early, fresh] = harness.mint([{"claims": {"jti": f"valid-{i}"}} for i in range(2)])
        forged = harness.mint([{"tamper": "signature", "claims": {"jti": f"forged-{i}"}}
                               for i in range(8)])
        assert client.request("/tickets", token=early).status == 200
        answers = [client.request("/tickets", token=t) for t in forged]
        reasons = [r.json()["reason"] for r in answers]
        # Within 2 s (one refill at 0.5/s) the burst of 5 is all this client gets.
        assert reasons[:5] == ["token.signature"] * 5, reasons
        assert set(reasons[6:]) == {"token.verify_budget"}, reasons
        refused = answers[-1]
        assert refused.status == 429
        assert refused.headers["www-authenticate"].startswith(
            'Bearer error="temporarily_unavailable"')
        # RFC 9110 §10.2.3: until the budget refills one check (1 / 0.5 per second).
        assert refused.headers["retry-after"] == "2", refused.headers
        assert client.request("/tickets", token=early).status == 200, "cached: still served"
        r = client.request("/tickets", token=fresh)
        assert (r.status, r.json()["reason"]) == (429, "token.verify_budget"), "never verified"
        assert envoy.wait_for_log(r.json()["decision_id"])
        [line] = [d for d in envoy.decision_lines() if d["decision_id"] == r.json()["decision_id"]]
        assert line["reason"] == "token.verify_budget" and line["status"] == 429
        # The budget refills (0.5 per second): the fresh token verifies.
        status = harness.wait_until(lambda: client.request("/tickets", token=fresh).status, 6,
                                    "the verify budget to refill (an answer other than 429)", interval=0.2,
                                    expect=lambda status: status != 429)
        assert status == 200
        client.close()
