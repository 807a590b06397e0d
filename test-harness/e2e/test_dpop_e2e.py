"""DPoP (RFC 9449) end to end through a real Envoy: a token bound to a key (`cnf.jkt`) is
served only with a fresh proof of that key for this very request, sent once. Proofs are
made with an independent JOSE library (joserfc, `harness.dpop`), hostile ones by hand.
Every test checks what the recording upstream received (on allow the request with the
filter's identity headers, `Authorization` and `DPoP` unchanged; on deny nothing), the
reason, and the exact `WWW-Authenticate` (both challenges, Bearer first, the error on the
one it concerns)."""

import json
import pathlib
import shutil
import tempfile
import time

import pytest

import harness
from harness import dpop
from harness.bound import assert_allowed, assert_denied, challenge, event, reached, send

PLUGIN = json.loads(harness.PLUGIN.read_text())
for _route in PLUGIN["routes"]:
    _route["audit_policy_input"] = True  # the proof as the policy sees it, in the events
MAX_AGE_S, SKEW_S = 60, 30  # dpop.max_proof_age_s and clock_skew_s defaults


@pytest.fixture(scope="module")
def envoy():
    """The shipped plugin: dpop defaults, issuers `sender_constraint` if_bound; the routes
    record the policy's input."""
    with harness.stack(plugin_json=PLUGIN, name="dpop") as e:
        yield e


@pytest.fixture(scope="module")
def key():
    return dpop.new_key("ES256")


@pytest.fixture()
def bound(key):
    """A fresh token bound to `key`."""
    [token] = harness.mint([dpop.bound(key)])
    return token


def htu(envoy, path="/tickets/1", scheme="http", port=None):
    return f"{scheme}://127.0.0.1:{port or envoy.listen_port}{path}"


# ---- allowed -------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "Ed25519", "RS256"])
def test_a_valid_proof_of_the_bound_key_is_allowed(envoy, client, alg):
    key = dpop.new_key(alg)
    [token] = harness.mint([dpop.bound(key)])
    proof = dpop.proof(key, alg, "GET", htu(envoy), token)
    r = send(client, token, proof)
    e = assert_allowed(envoy, r, token, proof)
    claims = json.loads(dpop.b64d(proof.split(".")[1]))
    # The proof's own key thumbprint is recorded too: the key that acted.
    assert e["binding"] == {"method": "dpop", "jkt": dpop.jkt(key),
                            "proof": {"jkt": dpop.jkt(key), **{k: claims[k] for k in ("jti", "htm", "htu", "iat")}}}
    # The policy saw the verified proof, as the published input schema describes it.
    seen = e["policy"]["input"]
    assert harness.policy_input_schema_errors([seen]) == []
    assert seen["proof"] == {"jkt": dpop.jkt(key), **{k: claims[k] for k in ("htm", "htu", "iat")}}


def test_a_proof_htu_with_a_query_or_fragment_is_accepted(envoy, client, key, bound):
    proof = dpop.proof(key, "ES256", "GET", htu(envoy, "/tickets/1?page=2#top"), bound)
    assert_allowed(envoy, send(client, bound, proof, path="/tickets/1?page=3"), bound, proof)


def test_a_proof_within_its_age_and_the_clock_skew_is_allowed(envoy, client, key, bound):
    now = int(time.time())
    for iat in (now - MAX_AGE_S + 15, now + SKEW_S - 15):
        proof = dpop.proof(key, "ES256", "GET", htu(envoy), bound, iat=iat)
        assert_allowed(envoy, send(client, bound, proof), bound, proof)


def test_an_unbound_token_still_passes_as_bearer(envoy, client):
    [token] = harness.mint([{}])
    r = send(client, token, scheme="Bearer")
    e = assert_allowed(envoy, r, token, scheme="Bearer")
    assert "binding" not in e, e  # only sender-constrained tokens carry one


# ---- refused: the proof does not fit this request ---------------------------------------

def test_a_delegated_token_is_bound_to_the_current_actors_key_and_the_audit_says_which_acted(envoy, client):
    """alice -> planner: the token the gateway receives is the planner's, bound to the
    planner's key; the audit event names the chain and the key that signed the proof."""
    planner = dpop.new_key("EdDSA")
    [token] = harness.mint([dpop.bound(planner, sub="user:alice", act={"sub": "agent:planner"})])
    proof = dpop.proof(planner, "Ed25519", "GET", htu(envoy), token)
    r = send(client, token, proof)
    assert r.status == 200, r
    [seen] = reached(envoy, r)
    assert (seen["x-agent-id"], seen["x-agent-principal"], seen["x-agent-chain"]) == (
        ["agent:planner"], ["user:alice"], ["agent:planner"]), seen
    e = event(envoy, seen["x-agent-decision-id"][0])
    assert (e["agent"], e["principal"], e["chain"]) == ("agent:planner", "user:alice", ["agent:planner"])
    assert e["binding"]["jkt"] == e["binding"]["proof"]["jkt"] == dpop.jkt(planner)
    # The principal's (or anyone else's) key is not the actor's.
    alice = dpop.new_key("ES256")
    e = assert_denied(envoy, send(client, token, dpop.proof(alice, "ES256", "GET", htu(envoy), token)),
                      "dpop.key_mismatch", on="DPoP")
    assert e["binding"]["proof"]["jkt"] == dpop.jkt(alice) != e["binding"]["jkt"]


def test_a_replayed_proof_is_refused(envoy, client, key, bound):
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), bound)
    assert_allowed(envoy, send(client, bound, proof), bound, proof)
    assert_denied(envoy, send(client, bound, proof), "dpop.replay", on="DPoP")
    client.close()  # on a new connection too
    assert_denied(envoy, send(client, bound, proof), "dpop.replay", on="DPoP")


def test_a_proof_for_another_method_is_refused(envoy, client, key, bound):
    proof = dpop.proof(key, "ES256", "POST", htu(envoy), bound)
    assert_denied(envoy, send(client, bound, proof), "dpop.htm", on="DPoP")


@pytest.mark.parametrize("where", ["other path", "other port", "https"])
def test_a_proof_for_another_uri_is_refused(envoy, client, key, bound, where):
    target = {"other path": htu(envoy, "/tickets/2"),
              "other port": htu(envoy, port=envoy.listen_port + 1),
              "https": htu(envoy, scheme="https")}[where]
    proof = dpop.proof(key, "ES256", "GET", target, bound)
    assert_denied(envoy, send(client, bound, proof), "dpop.htu", on="DPoP")


def test_a_proof_without_ath_or_for_another_token_is_refused(envoy, client, key, bound):
    [other] = harness.mint([dpop.bound(key)])
    for proof in (dpop.proof(key, "ES256", "GET", htu(envoy)),  # no access_token: no ath
                  dpop.proof(key, "ES256", "GET", htu(envoy), other)):
        assert_denied(envoy, send(client, bound, proof), "dpop.ath", on="DPoP")


def test_a_proof_by_another_key_than_cnf_jkt_is_refused(envoy, client, bound):
    thief = dpop.new_key("ES256")
    proof = dpop.proof(thief, "ES256", "GET", htu(envoy), bound)
    e = assert_denied(envoy, send(client, bound, proof), "dpop.key_mismatch", on="DPoP")
    assert e["binding"]["method"] == "dpop"


@pytest.mark.parametrize("age,reason", [(MAX_AGE_S + SKEW_S + 60, "dpop.iat_stale"),
                                        (-(SKEW_S + 90), "dpop.iat_future")], ids=["stale", "future"])
def test_a_stale_or_future_proof_is_refused(envoy, client, key, bound, age, reason):
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), bound, iat=int(time.time()) - age)
    assert_denied(envoy, send(client, bound, proof), reason, on="DPoP")


# ---- refused: the proof itself -----------------------------------------------------------

def hostile(name, key, envoy, token):
    h = htu(envoy)
    other = dpop.new_key("ES256")
    return {
        "alg none": lambda: dpop.alg_none(key, "GET", h, token),
        "HS256 over a symmetric jwk": lambda: dpop.hs256_symmetric("GET", h, token),
        "alg not the jwk's": lambda: dpop.proof(key, "ES256", "GET", h, token,
                                                jwk=dpop.public_jwk(dpop.new_key("EdDSA"))),
        "private key in jwk": lambda: dpop.private_jwk(key, "ES256", "GET", h, token),
        "typ JWT": lambda: dpop.proof(key, "ES256", "GET", h, token, typ="JWT"),
        "no typ": lambda: dpop.proof(key, "ES256", "GET", h, token, drop=("typ",)),
        "no jwk": lambda: dpop.proof(key, "ES256", "GET", h, token, drop=("jwk",)),
        "signed by another key": lambda: dpop.proof(other, "ES256", "GET", h, token, jwk=dpop.public_jwk(key)),
        "no jti": lambda: dpop.proof(key, "ES256", "GET", h, token, drop=("jti",)),
        "iat a string": lambda: dpop.proof(key, "ES256", "GET", h, token, iat=str(int(time.time()))),
        "duplicate claim": lambda: dpop.duplicate_member(key, "ES256", "GET", h, token, where="claims"),
        "duplicate header member": lambda: dpop.duplicate_member(key, "ES256", "GET", h, token, where="header"),
        "padded base64": lambda: dpop.bad_base64url(key, "ES256", "GET", h, token, how="padded"),
        "standard base64 alphabet": lambda: dpop.bad_base64url(key, "ES256", "GET", h, token, how="alphabet"),
        "four segments": lambda: dpop.bad_base64url(key, "ES256", "GET", h, token, how="segments"),
        "not a JWS": lambda: "not-a-proof",
        "over max_proof_bytes": lambda: dpop.proof(key, "ES256", "GET", h, token, claims_extra={"pad": "x" * 8192}),
    }[name]()


HOSTILE = [
    ("alg none", "dpop.alg"),
    ("HS256 over a symmetric jwk", "dpop.alg"),
    ("alg not the jwk's", "dpop.alg"),
    ("private key in jwk", "dpop.jwk"),
    ("typ JWT", "dpop.typ"),
    ("no typ", "dpop.typ"),
    ("no jwk", "dpop.jwk"),
    ("signed by another key", "dpop.signature"),
    ("no jti", "dpop.claims"),
    ("iat a string", "dpop.claims"),
    ("duplicate claim", "dpop.proof_malformed"),
    ("duplicate header member", "dpop.proof_malformed"),
    ("padded base64", "dpop.proof_malformed"),
    ("standard base64 alphabet", "dpop.proof_malformed"),
    ("four segments", "dpop.proof_malformed"),
    ("not a JWS", "dpop.proof_malformed"),
    ("over max_proof_bytes", "dpop.proof_malformed"),
]


@pytest.mark.parametrize("name,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_proof_is_refused(envoy, client, key, bound, name, reason):
    r = send(client, bound, hostile(name, key, envoy, bound))
    assert_denied(envoy, r, reason, on="DPoP")


def test_two_dpop_headers_are_refused_even_if_both_are_valid(envoy, client, key, bound):
    first, second = (dpop.proof(key, "ES256", "GET", htu(envoy), bound) for _ in range(2))
    assert_denied(envoy, send(client, bound, first, second), "dpop.proof_repeated", on="DPoP")


# ---- refused: the token and the scheme ---------------------------------------------------

def test_a_bound_token_sent_as_bearer_is_refused_with_or_without_a_proof(envoy, client, key, bound):
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), bound)
    for proofs in ((), (proof,)):
        r = send(client, bound, *proofs, scheme="Bearer")
        assert_denied(envoy, r, "dpop.bearer_scheme", on="Bearer")


def test_a_bound_token_without_a_proof_is_refused(envoy, client, bound):
    assert_denied(envoy, send(client, bound), "dpop.proof_missing", on="DPoP")


def test_an_unbound_token_with_the_dpop_scheme_is_refused(envoy, client, key):
    [token] = harness.mint([{}])
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), token)
    assert_denied(envoy, send(client, token, proof), "dpop.token_unbound", on="DPoP")


@pytest.mark.parametrize("cnf", [{"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}, {"jkt": 42},
                                 {"jkt": "not base64url!"}, {}], ids=["another method", "jkt a number",
                                                                     "jkt not base64url", "empty"])
def test_an_unusable_cnf_is_refused_never_served_as_bearer(envoy, client, cnf):
    [token] = harness.mint([{"claims": {"cnf": cnf}}])
    assert_denied(envoy, send(client, token, scheme="Bearer"), "token.cnf", on="Bearer")


def test_no_credentials_get_both_challenges_without_an_error(envoy, client):
    r = send(client)
    assert (r.status, r.json()["reason"]) == (401, "token.missing")
    assert r.headers["www-authenticate"] == challenge()
    assert 'error=' not in r.headers["www-authenticate"] and reached(envoy, r) == []


def test_a_token_error_under_the_dpop_scheme_is_on_the_dpop_challenge(envoy, client, key):
    [token] = harness.mint([dict(dpop.bound(key), tamper="signature")])
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), token)
    assert_denied(envoy, send(client, token, proof), "token.signature", on="DPoP")
    assert_denied(envoy, send(client, token, scheme="Bearer"), "token.signature", on="Bearer")


# ---- a replay on another worker ----------------------------------------------------------

def test_a_proof_accepted_by_one_worker_is_refused_by_the_other():
    with harness.stack(name="dpop-workers", concurrency=2) as envoy:
        key = dpop.new_key("EdDSA")
        [token] = harness.mint([dpop.bound(key)])
        proof = dpop.proof(key, "EdDSA", "GET", htu(envoy), token)
        first = harness.Client(envoy.listen_port)
        allow = assert_allowed(envoy, send(first, token, proof), token, proof)
        # Fresh connections, all kept open: the kernel spreads them over both workers.
        clients = [harness.Client(envoy.listen_port) for _ in range(16)]
        refusals = [assert_denied(envoy, send(c, token, proof), "dpop.replay", on="DPoP") for c in clients]
        streams = {e["stream"] for e in refusals}
        assert streams - {allow["stream"]}, f"every refusal came from the allowing worker {allow['stream']}"
        assert len(streams | {allow["stream"]}) == 2
        # Counted by reason across the workers.
        assert harness.count(envoy, reason="dpop.replay", check="sender_constraint") == len(clients)
        served = [h for h in envoy.upstream.server.seen if h.get("dpop") == [proof]]
        assert len(served) == 1, served
        for c in [first, *clients]:
            c.close()


def test_proofs_by_another_key_are_charged_to_the_clients_signature_budget(key):
    """With verify_budget, a thief holding a stolen token cannot buy signature checks
    without limit: its proofs by another key are charged, and over the budget its address
    gets no more proof checks (429), the upstream seeing none of it."""
    plugin = json.loads(json.dumps(PLUGIN))
    plugin["verify_budget"] = {"per_client_per_s": 0.01, "burst": 2}
    with harness.stack(plugin_json=plugin, name="dpop-budget") as envoy:
        c = harness.Client(envoy.listen_port)
        [token] = harness.mint([dpop.bound(key)])
        thief = dpop.new_key("ES256")
        for _ in range(2):
            assert_denied(envoy, send(c, token, dpop.proof(thief, "ES256", "GET", htu(envoy), token)),
                          "dpop.key_mismatch", on="DPoP")
        r = send(c, token, dpop.proof(thief, "ES256", "GET", htu(envoy), token))
        assert (r.status, r.json()["reason"]) == (429, "token.verify_budget"), r
        assert reached(envoy, r) == []
        c.close()


# ---- configuration: sender_constraint required, algorithms, origin ---------------------

@pytest.fixture(scope="module")
def strict():
    """`sender_constraint: required` on the issuer and ES256 proofs only."""
    plugin = json.loads(json.dumps(PLUGIN))
    plugin["issuers"][0]["sender_constraint"] = "required"
    plugin["dpop"] = {"algorithms": ["ES256"]}
    with harness.stack(plugin_json=plugin, name="dpop-strict") as e:
        c = harness.Client(e.listen_port)
        c.envoy = e
        yield c
        c.close()


def test_required_refuses_an_unbound_token_and_serves_a_bound_one(strict, key):
    envoy = strict.envoy
    unbound, token = harness.mint([{}, dpop.bound(key)])
    assert_denied(envoy, send(strict, unbound, scheme="Bearer"), "token.unbound", on="Bearer", algs="ES256")
    proof = dpop.proof(key, "ES256", "GET", htu(envoy), token)
    assert_allowed(envoy, send(strict, token, proof), token, proof)


def test_a_proof_algorithm_outside_dpop_algorithms_is_refused(strict):
    envoy = strict.envoy
    key = dpop.new_key("EdDSA")
    [token] = harness.mint([dpop.bound(key)])
    proof = dpop.proof(key, "Ed25519", "GET", htu(envoy), token)
    assert_denied(envoy, send(strict, token, proof), "dpop.alg", on="DPoP", algs="ES256")
    r = send(strict)
    assert r.status == 401 and r.headers["www-authenticate"] == challenge(algs="ES256")


ORIGIN = "https://api.agent-iam.test"


def test_with_an_origin_the_proof_names_the_public_uri_not_the_gateways(key):
    plugin = json.loads(json.dumps(PLUGIN))
    plugin["dpop"] = {"origin": ORIGIN}
    with harness.stack(plugin_json=plugin, name="dpop-origin") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([dpop.bound(key)])
        proof = dpop.proof(key, "ES256", "GET", f"{ORIGIN}/tickets/1", token)
        assert_allowed(envoy, send(client, token, proof), token, proof)
        for target in (htu(envoy), f"{ORIGIN}/tickets/2", "https://evil.example/tickets/1"):
            proof = dpop.proof(key, "ES256", "GET", target, token)
            assert_denied(envoy, send(client, token, proof), "dpop.htu", on="DPoP")
        client.close()


# ---- the policy sees the binding -----------------------------------------------------------

POP_MODULE = '''package agent_iam.authz

import rego.v1

# Tickets under /tickets/pop/ need proof of possession: a DPoP-bound token whose proof
# was made with the token's key for this request's method.
deny contains "pop.required" if {
	startswith(path, "/tickets/pop/")
	not pop
}

pop if {
	input.proof.jkt == input.token.cnf.jkt
	input.proof.htm == input.request.method
}
'''


def test_the_policy_sees_the_tokens_cnf_and_the_proof(key):
    folder = tempfile.mkdtemp(prefix="policies-pop-", dir=harness.OUT)
    shutil.copytree(harness.ROOT / "policies", folder, dirs_exist_ok=True)
    (pathlib.Path(folder) / "agent_iam" / "pop.rego").write_text(POP_MODULE)
    with harness.stack(plugin_json=harness.render_plugin(folder), name="dpop-policy") as envoy:
        client = harness.Client(envoy.listen_port)
        token, unbound = harness.mint([dpop.bound(key), {}])
        proof = dpop.proof(key, "ES256", "GET", htu(envoy, "/tickets/pop/1"), token)
        assert_allowed(envoy, send(client, token, proof, path="/tickets/pop/1"), token, proof)
        r = send(client, unbound, path="/tickets/pop/1", scheme="Bearer")
        assert (r.status, r.json()["reason"], r.json()["policy_reason"]) == (403, "policy.denied", "pop.required"), r
        assert reached(envoy, r) == []
        assert_allowed(envoy, send(client, unbound, scheme="Bearer"), unbound, scheme="Bearer")
        client.close()
