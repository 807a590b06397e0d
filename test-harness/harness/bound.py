"""Requests with sender-constrained tokens (DPoP, RFC 9449; certificates, RFC 8705) and the
checks the end-to-end tests make on their answers: what the recording upstream received,
the audit event, and the exact `WWW-Authenticate` the filter's contract gives."""

import uuid

import harness

ALGS = "ES256 EdDSA Ed25519 RS256"  # the default dpop.algorithms, EdDSA under both its names
# Reasons answered with `error="invalid_token"`; every other dpop.* one is invalid_dpop_proof.
INVALID_TOKEN = {"dpop.key_mismatch", "dpop.bearer_scheme", "dpop.token_unbound", "token.unbound",
                 "token.cnf", "mtls.certificate_missing", "mtls.certificate_mismatch"}


def challenge(reason=None, on=None, algs=ALGS):
    """The `WWW-Authenticate` the contract gives: no error without credentials; otherwise
    the error on the DPoP challenge (a request with the DPoP scheme, a dpop.* reason other
    than dpop.bearer_scheme) or on the Bearer one."""
    if reason is None:
        return f'Bearer, DPoP algs="{algs}"'
    error = "invalid_token" if reason in INVALID_TOKEN or not reason.startswith("dpop.") else "invalid_dpop_proof"
    params = f'error="{error}", error_description="{reason}"'
    if on == "Bearer":
        return f'Bearer {params}, DPoP algs="{algs}"'
    return f'Bearer, DPoP {params}, algs="{algs}"'


def send(client, token=None, *proofs, path="/tickets/1", method="GET", scheme="DPoP", headers=()):
    """One request with `Authorization: <scheme> <token>` and one `DPoP` header per proof
    (in order), marked so the upstream's record of it can be found."""
    marker = uuid.uuid4().hex
    pairs = [("x-marker", marker), *headers]
    if token is not None:
        pairs.append(("authorization", f"{scheme} {token}"))
    pairs += [("dpop", p) for p in proofs]
    r = client.request(path, headers=pairs, method=method)
    r.marker = marker
    return r


def reached(envoy, r):
    """What the upstream received of request `r` (a list: empty when it never arrived)."""
    return [h for h in envoy.upstream.server.seen if h.get("x-marker") == [r.marker]]


def event(envoy, decision_id):
    """The decision's audit event in Envoy's log."""
    envoy.wait_for_log(decision_id)
    [e] = [d for d in envoy.decision_lines() if d["decision_id"] == decision_id]
    return e


def assert_allowed(envoy, r, token, *proofs, scheme="DPoP", agent="agent:build-bot-7"):
    """200, and the upstream received the request once, with the filter's identity headers
    and the client's Authorization and DPoP headers unchanged. -> the audit event."""
    assert r.status == 200, r
    [seen] = reached(envoy, r)
    assert seen["x-agent-id"] == [agent] and seen["x-agent-principal"] == [agent], seen
    assert seen["x-agent-scopes"] == ["tickets:read"]
    assert seen["authorization"] == [f"{scheme} {token}"]
    assert seen.get("dpop", []) == list(proofs)
    e = event(envoy, seen["x-agent-decision-id"][0])
    assert e["decision"] == "allow" and e["reason"] is None
    assert harness.audit_schema_errors([e]) == []
    return e


def assert_denied(envoy, r, reason, on=None, status=401, algs=ALGS):
    """`status` with `reason`, the contract's challenge, nothing at the upstream, and the
    same reason in the audit trail. -> the audit event."""
    assert (r.status, r.json().get("reason")) == (status, reason), r
    assert r.headers["www-authenticate"] == challenge(reason, on, algs), r.headers
    assert reached(envoy, r) == []
    e = event(envoy, r.json()["decision_id"])
    assert e["decision"] == "deny" and e["reason"] == reason and e["status"] == status
    assert harness.audit_schema_errors([e]) == []
    return e
