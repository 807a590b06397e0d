"""Request integrity, end to end: the request the filter decides on is the request the
upstream executes. Every test goes client -> Envoy with the filter -> a second Envoy hop
that normalises paths (as Istio sidecars do) -> a WSGI app that records what it executed,
and asserts on what the app executed, not only on the filter's status.

`raw` stacks give the first Envoy no normalisation or header hygiene of its own (the
filter's defences alone); `shipped` stacks use the bootstrap `agent-iam generate envoy`
writes."""

import hashlib
import json
import urllib.parse
from pathlib import Path

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())


@pytest.fixture(scope="module")
def raw():
    with harness.hop_stack(PLUGIN, raw_hcm=True, name="integrity-raw") as e:
        yield e


@pytest.fixture(scope="module")
def shipped():
    with harness.hop_stack(PLUGIN, raw_hcm=False, name="integrity-shipped") as e:
        yield e


def token(**claims):
    base = {"sub": "agent:build-bot-7", "scope": "tickets:read tickets:write"}
    base.update(claims)
    return harness.mint([{"claims": base}])[0]


@pytest.fixture(scope="module")
def write_token():
    """build-bot-7 with tickets:read and tickets:write (minted when the module's tests run)."""
    return token()


def send_raw(envoy, request_line, headers=b""):
    """One HTTP/1.1 request with the target exactly as given; -> (status, body bytes)."""
    payload = request_line + b"\r\nhost: api\r\n" + headers + b"connection: close\r\n\r\n"
    out = harness.raw_request(envoy.listen_port, payload)
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return status, body


def decision(envoy, decision_id):
    assert envoy.wait_for_log(decision_id)
    [d] = [d for d in envoy.decision_lines() if d["decision_id"] == decision_id]
    return d


def executed_after(envoy, before):
    return envoy.app.executed[before:]


# ---- 1. Request target ---------------------------------------------------------------

TRAVERSALS = [
    b"/tickets/../mail/send",
    b"/tickets/%2e%2e/mail/send",
    b"/tickets/%2E%2E/mail/send",
    b"/tickets/.%2e/mail/send",
    b"//mail//send",
    b"/tickets/./../mail/send",
    b"/ticketsX/../mail/send",
    b"http://api/tickets/../mail/send",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_traversal_to_another_route_is_decided_on_the_route_it_reaches(raw, target, write_token):
    """A tickets-write token may not reach POST /mail/send (mail:send) by any spelling."""
    before = len(raw.app.executed)
    status, body = send_raw(raw, b"POST " + target + b" HTTP/1.1", f"authorization: Bearer {write_token}\r\ncontent-length: 0\r\n".encode())
    assert status == 403, body
    d = decision(raw, json.loads(body)["decision_id"])
    assert d["reason"] == "scope.insufficient" and d["route"] == "mail-send", d
    assert d["request"]["path"] == "/mail/send"
    assert executed_after(raw, before) == []


AMBIGUOUS = [
    b"/tickets/%2F..%2Fmail/send",
    b"/tickets/%2fx",
    b"/tickets/%5C..%5Cmail/send",
    b"/tickets/%00",
    b"/tickets;/../mail/send",
    b"/tickets/1;jsessionid=x",
    b"/tickets/%zz",
]


@pytest.mark.parametrize("target", AMBIGUOUS, ids=[t.decode() for t in AMBIGUOUS])
def test_ambiguous_targets_are_refused_before_the_upstream(raw, target, write_token):
    before = len(raw.app.executed)
    status, body = send_raw(raw, b"POST " + target + b" HTTP/1.1", f"authorization: Bearer {write_token}\r\ncontent-length: 0\r\n".encode())
    assert status == 400, body
    did = json.loads(body)["decision_id"]
    d = decision(raw, did)
    assert d["reason"] == "request.target" and d["request"]["path"] == ""
    assert d["request"]["original"]["target"] == target.decode()
    assert executed_after(raw, before) == []


def test_backslash_never_reaches_the_upstream(raw, write_token):
    """Envoy's own HTTP/1 parser may refuse a raw `\\` first; either way nothing runs."""
    before = len(raw.app.executed)
    status, _ = send_raw(raw, b"POST /tickets\\..\\mail/send HTTP/1.1", f"authorization: Bearer {write_token}\r\ncontent-length: 0\r\n".encode())
    assert status == 400
    assert executed_after(raw, before) == []


def test_an_allowed_request_reaches_the_upstream_in_canonical_form(raw, write_token):
    before = len(raw.app.executed)
    status, body = send_raw(raw, b"GET /tickets/a/../%7E42//x?q=%2F.. HTTP/1.1", f"authorization: Bearer {write_token}\r\n".encode())
    assert status == 200, body
    [run] = executed_after(raw, before)
    assert (run["method"], run["path"], run["query"]) == ("GET", "/tickets/~42/x", "q=%2F..")
    did = run["env"]["HTTP_X_AGENT_DECISION_ID"]
    d = decision(raw, did)
    assert d["request"]["path"] == "/tickets/~42/x?q=%2F.."
    original = "/tickets/a/../%7E42//x?q=%2F.."
    assert d["request"]["original"] == {"target": original, "bytes": len(original),
                                        "sha256": hashlib.sha256(original.encode()).hexdigest()}


def test_prefixes_are_segment_aware(raw):
    """/tickets covers /tickets/1, not /ticketsX: that one matches no route (denied)."""
    before = len(raw.app.executed)
    read = token(scope="tickets:read")
    c = harness.Client(raw.listen_port)
    assert c.request("/tickets/1", token=read).status == 200
    r = c.request("/ticketsX", token=read)
    assert r.status == 403 and r.json()["reason"] == "route.unmatched"
    assert [e["path"] for e in executed_after(raw, before)] == ["/tickets/1"]


def test_tenant_policy_sees_the_segments_the_upstream_routes_on(raw):
    """A token without a tenant claim never reaches /tenants/<t>, however it is spelt."""
    read = token(scope="tickets:read")
    before = len(raw.app.executed)
    c = harness.Client(raw.listen_port)
    for path in ["/tenants//globex", "/tenants/./globex", "/tenants/x/../globex", "/tenants/"]:
        r = c.request(path, token=read)
        assert r.status == 403 and r.json().get("policy_reason") == "tenant.mismatch", (path, r)
    acme = token(scope="tickets:read", tenant="acme")
    assert c.request("/tenants//acme/tickets", token=acme).status == 200
    assert [e["path"] for e in executed_after(raw, before)] == ["/tenants/acme/tickets"]


def test_the_shipped_bootstrap_normalises_too(shipped, write_token):
    """Defence in depth: Envoy itself normalises (and refuses %2F) before the filter."""
    before = len(shipped.app.executed)
    status, body = send_raw(shipped, b"POST /tickets/../mail/send HTTP/1.1", f"authorization: Bearer {write_token}\r\ncontent-length: 0\r\n".encode())
    assert status == 403 and json.loads(body)["reason"] == "scope.insufficient"
    status, _ = send_raw(shipped, b"GET /tickets/%2F HTTP/1.1", f"authorization: Bearer {write_token}\r\n".encode())
    assert status == 400
    assert executed_after(shipped, before) == []


# ---- 2. Methods ------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["post", "delete", "Post", "PROPFIND"])
def test_methods_outside_the_known_upper_case_tokens_are_refused(raw, method):
    """Over HTTP/2 a lower-case :method reaches the filter; frameworks upper-case it again."""
    read = token(scope="tickets:read")
    before = len(raw.app.executed)
    h2 = harness.H2(raw.listen_port)
    try:
        r = h2.request(method, "/tickets/1", token=read)
    finally:
        h2.close()
    assert r.status == 400, r
    assert json.loads(r.body)["reason"] == "request.method"
    assert executed_after(raw, before) == []


def test_upper_case_methods_still_pass_over_http2(raw):
    read = token(scope="tickets:read")
    before = len(raw.app.executed)
    h2 = harness.H2(raw.listen_port)
    try:
        assert h2.request("GET", "/tickets/1", token=read).status == 200
        r = h2.request("POST", "/tickets/1", token=read)
    finally:
        h2.close()
    assert r.status == 403 and json.loads(r.body)["reason"] == "scope.insufficient"
    assert [(e["method"], e["path"]) for e in executed_after(raw, before)] == [("GET", "/tickets/1")]


# ---- 3. Headers the filter or a policy sets ----------------------------------------------

def test_forged_filter_headers_never_reach_the_upstream_in_any_spelling(raw):
    """`x-agent-tenant` (set by the shipped policy only for tokens with a tenant claim) and
    underscore spellings a WSGI upstream reads as the same variable are all removed, on
    allow and on deny, also when the filter sets no header of that name itself."""
    no_scope = harness.mint([{"claims": {"sub": "agent:build-bot-7", "scope": None}}])[0]
    forged = (b"x-agent-tenant: acme\r\nx_agent_tenant: acme\r\nX_Agent_Scopes: admin:*\r\n"
              b"x_agent_chain: agent:admin\r\nx-agent-anything: 1\r\nx_agent_id: agent:admin\r\n")
    before = len(raw.app.executed)
    status, body = send_raw(raw, b"GET /status HTTP/1.1", f"authorization: Bearer {no_scope}\r\n".encode() + forged)
    assert status == 200, body
    [run] = executed_after(raw, before)
    env = run["env"]
    assert "HTTP_X_AGENT_TENANT" not in env
    assert "HTTP_X_AGENT_SCOPES" not in env and "HTTP_X_AGENT_CHAIN" not in env
    assert "HTTP_X_AGENT_ANYTHING" not in env
    assert env["HTTP_X_AGENT_ID"] == "agent:build-bot-7"
    acme = token(scope="tickets:read", tenant="acme")
    status, _ = send_raw(raw, b"GET /tenants/acme/x HTTP/1.1", f"authorization: Bearer {acme}\r\n".encode() + b"x_agent_tenant: globex\r\n")
    assert status == 200
    assert raw.app.executed[-1]["env"]["HTTP_X_AGENT_TENANT"] == "acme"


def test_the_shipped_bootstrap_refuses_underscore_headers(shipped, write_token):
    before = len(shipped.app.executed)
    status, _ = send_raw(shipped, b"GET /status HTTP/1.1", f"authorization: Bearer {write_token}\r\nx_agent_scopes: admin\r\n".encode())
    assert status == 400
    assert executed_after(shipped, before) == []


# ---- 5. Repeated request headers ---------------------------------------------------------

def test_repeated_headers_a_policy_may_read_are_refused(raw):
    read = token(scope="tickets:read")
    before = len(raw.app.executed)
    status, body = send_raw(raw, b"GET /tickets/1 HTTP/1.1", f"authorization: Bearer {read}\r\n".encode() + b"x-task: a\r\nx-task: b\r\n")
    assert status == 400 and json.loads(body)["reason"] == "request.header_repeated"
    status, _ = send_raw(raw, b"GET /tickets/1 HTTP/1.1", f"authorization: Bearer {read}\r\n".encode() + b"accept: a\r\naccept: b\r\n")
    assert status == 200
    assert len(executed_after(raw, before)) == 1


# ---- 10. Client address -------------------------------------------------------------------

def test_the_verify_budget_is_keyed_on_the_peer_not_x_forwarded_for():
    """With the shipped bootstrap a client cannot reset its budget by rotating
    X-Forwarded-For (nor spend someone else's by naming their address)."""
    plugin = dict(PLUGIN, verify_budget={"per_client_per_s": 0.01, "burst": 3})
    forged = harness.mint([{"claims": {"jti": f"f{i}"}, "tamper": "signature"} for i in range(5)])
    with harness.hop_stack(plugin, raw_hcm=False, name="integrity-budget") as envoy:
        got = []
        for i, t in enumerate(forged):
            status, body = send_raw(envoy, b"GET /tickets/1 HTTP/1.1",
                                    f"authorization: Bearer {t}\r\nx-forwarded-for: 10.0.0.{i}\r\n".encode())
            got.append(json.loads(body)["reason"])
        assert got == ["token.signature"] * 3 + ["token.verify_budget"] * 2
        assert envoy.app.executed == []


# ---- 11. Audit of the target ---------------------------------------------------------------

def test_a_long_target_is_clipped_with_a_marker_and_hashed(raw):
    read = token(scope="tickets:read")
    target = "/tickets/" + "a/" * 400 + "../" * 400 + "1"
    before = len(raw.app.executed)
    status, _ = send_raw(raw, f"GET {target} HTTP/1.1".encode(), f"authorization: Bearer {read}\r\nx-request-id: chosen-by-client\r\n".encode())
    assert status == 200
    [run] = executed_after(raw, before)
    assert run["path"] == "/tickets/1"
    d = decision(raw, run["env"]["HTTP_X_AGENT_DECISION_ID"])
    original = d["request"]["original"]
    assert original["target"].endswith("…") and len(original["target"].encode()) == 512 + len("…".encode())
    assert target.startswith(original["target"][:-1])
    assert original["bytes"] == len(target)
    assert original["sha256"] == hashlib.sha256(target.encode()).hexdigest()
    assert d["request"]["path"] == "/tickets/1"
    assert (d["request"]["id"], d["request"]["id_source"]) == ("chosen-by-client", "client")


def test_the_shipped_bootstrap_replaces_a_client_request_id_and_says_so(shipped):
    """The generated connection manager replaces every client's x-request-id; the audit event
    records Envoy's id as Envoy's (`generate envoy` sets `audit.request_id_from: envoy`)."""
    read = token(scope="tickets:read")
    before = len(shipped.app.executed)
    status, _ = send_raw(shipped, b"GET /tickets/1 HTTP/1.1", f"authorization: Bearer {read}\r\nx-request-id: chosen-by-client\r\n".encode())
    assert status == 200
    [run] = executed_after(shipped, before)
    assert run["env"]["HTTP_X_REQUEST_ID"] != "chosen-by-client"
    d = decision(shipped, run["env"]["HTTP_X_AGENT_DECISION_ID"])
    assert (d["request"]["id"], d["request"]["id_source"]) == (run["env"]["HTTP_X_REQUEST_ID"], "envoy")
