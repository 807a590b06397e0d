"""End-to-end: requests through a real Envoy running the release filter."""

import json

import pytest

import harness


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_allow_per_algorithm_sets_identity_headers(client, alg):
    [token] = harness.mint([{"alg": alg}])
    r = client.request("/tickets", token=token)
    assert r.status == 200, r
    seen = r.json()["headers"]
    assert seen["x-agent-id"] == ["agent:build-bot-7"]
    assert seen["x-agent-principal"] == ["agent:build-bot-7"]
    assert seen["x-agent-scopes"] == ["tickets:read"]
    assert len(seen["x-agent-decision-id"][0]) == 32


def test_deny_is_401_with_bearer_challenge_and_json_body(envoy, client):
    [token] = harness.mint([{"alg": "ES256", "tamper": "signature"}])
    r = client.request("/tickets", token=token)
    assert r.status == 401
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "reason", "decision_id"}
    assert body["error"] == "invalid_token" and body["reason"] == "token.signature"
    assert token not in r.body.decode() and token.split(".")[2] not in r.body.decode()
    # The same decision is in Envoy's log, once, and the token is never logged.
    assert envoy.wait_for_log(body["decision_id"])
    [line] = [d for d in envoy.decision_lines() if d["decision_id"] == body["decision_id"]]
    assert line["reason"] == "token.signature" and line["status"] == 401
    assert token.split(".")[2] not in envoy.log()


def test_missing_token_is_401_with_both_challenges_and_no_error(client):
    r = client.request("/tickets")
    assert r.status == 401 and r.json()["reason"] == "token.missing"
    # RFC 6750 §3.1: no error code for a request without credentials.
    assert r.headers["www-authenticate"] == 'Bearer, DPoP algs="ES256 EdDSA Ed25519 RS256"'


def test_client_identity_headers_never_reach_upstream(client):
    [token] = harness.mint([{"alg": "ES256", "claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}])
    smuggled = {"x-agent-id": "agent:admin", "X-Agent-Principal": "user:root", "x-agent-chain": "agent:admin",
                "x-agent-scopes": "admin:*", "x-agent-decision-id": "forged"}
    r = client.request("/tickets", token=token, headers=smuggled)
    assert r.status == 200, r
    seen = r.json()["headers"]
    assert seen["x-agent-id"] == ["agent:planner"]
    assert seen["x-agent-principal"] == ["user:alice"]
    assert seen["x-agent-chain"] == ["agent:planner"]
    assert seen["x-agent-scopes"] == ["tickets:read"]
    assert seen["x-agent-decision-id"] != ["forged"]


def test_cached_token_is_rechecked(envoy, client):
    [token] = harness.mint([{"alg": "ES256"}])
    first = client.request("/tickets/a", token=token)
    second = client.request("/tickets/b", token=token)
    assert first.status == second.status == 200
    ids = {first.json()["headers"]["x-agent-decision-id"][0]: False, second.json()["headers"]["x-agent-decision-id"][0]: True}
    for did, cached in ids.items():
        assert envoy.wait_for_log(did)
        [line] = [d for d in envoy.decision_lines() if d["decision_id"] == did]
        assert line["token"]["cached"] is cached


HOSTILE = [
    ("binary junk in Authorization", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \x80\xff\xfe\x01junk\r\n\r\n"),
    ("latin-1 token", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \xe9\xe9.\xe9.\xe9\r\n\r\n"),
    ("only dots", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ....\r\n\r\n"),
    ("two Authorization headers", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer a.b.c\r\nauthorization: Bearer d.e.f\r\n\r\n"),
    ("64 KiB Authorization", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"A" * 65536 + b"\r\n\r\n"),
    ("1 MiB header", b"GET /tickets HTTP/1.1\r\nhost: x\r\nx-junk: " + b"B" * (1 << 20) + b"\r\n\r\n"),
    ("9 KiB token", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"eyJ" * 3000 + b"\r\n\r\n"),
    ("JSON bomb header", b"GET /tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + b"W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tb" * 40 + b".e30.AA\r\n\r\n"),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))),
]


@pytest.mark.parametrize("name,payload", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_4xx_and_filter_keeps_serving(envoy, client, name, payload):
    reply = harness.raw_request(envoy.listen_port, payload)
    if reply:  # Envoy may also just close a connection it cannot parse.
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, (name, reply[:300])
    [token] = harness.mint([{"alg": "ES256"}])
    r = client.request("/tickets/after-hostile", token=token)
    assert r.status == 200, (name, r)
    assert "panic" not in envoy.log() and "wasm trap" not in envoy.log().lower()


def test_bad_plugin_config_is_refused_by_envoy():
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["clock_skew"] = 5  # misspelled key
    plugin["issuers"][0]["audiences"] = "not-a-list"
    good = harness.envoy_yaml(listen=harness.free_port(), admin=harness.free_port())
    bad_json = json.dumps(plugin, indent=2)
    marker = next(l + "\n" for l in good.splitlines() if l.strip() == "value: |")
    head, _, _ = good.partition(marker)
    tail = good[good.index("          - name: envoy.filters.http.router"):]
    yaml_text = head + marker + "".join(f"                    {l}\n" for l in bad_json.splitlines()) + tail
    envoy = harness.Envoy(yaml_text, name="bad-config")
    try:
        with pytest.raises(RuntimeError) as err:
            envoy.start()
        log = str(err.value)
        # Every problem, each with its JSON path, then the verdict.
        assert "agent-iam: invalid plugin configuration: $.clock_skew: unknown field `clock_skew`" in log, log[-3000:]
        assert "agent-iam: invalid plugin configuration: $.issuers[0].audiences: expected array" in log
        assert "agent-iam: configuration rejected (2 problem(s))" in log
    finally:
        envoy.stop()
    validate = harness.subprocess.run(["envoy", "--mode", "validate", "-c", str(envoy.config)],
                                      capture_output=True, text=True, timeout=60)
    assert validate.returncode != 0


def test_each_config_problem_is_logged_with_its_path():
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["clock_skew_s"] = 9999
    plugin["max_token_lifetime_s"] = 0
    plugin["issuers"][0]["jwks"]["keys"][0]["x"] = "AAAA"
    path = harness.OUT / "multi-problem.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plugin))
    proc = harness.cli("validate", "--config", path, check=False)
    assert proc.returncode == 1
    for needle in ("$.clock_skew_s", "$.max_token_lifetime_s", "$.issuers[0].jwks.keys[0]"):
        assert needle in proc.stderr, proc.stderr


# The host's crypto: Envoy's BoringSSL through `verify_signature` (Wasm), native ring and
# ed25519-dalek (the dynamic module).
HOST_CRYPTO = ("ES256=native-ring RS256=native-ring EdDSA=native-dalek" if harness.BUILD == "dynamic-module"
               else "ES256=host RS256=host EdDSA=pure-rust")


def test_host_crypto_is_chosen_on_envoy_and_logged(envoy):
    assert f"signatures {HOST_CRYPTO}; host=envoy" in envoy.log()


@pytest.mark.parametrize("choice,expect", [("pure", "ES256=pure-rust RS256=pure-rust EdDSA=pure-rust"),
                                           ("host", HOST_CRYPTO)])
def test_backend_chosen_by_configuration(choice, expect):
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["signature_backend"] = choice
    with harness.stack(plugin_json=plugin, name=f"backend-{choice}") as e:
        assert expect in e.log()
        c = harness.Client(e.listen_port)
        good, bad = harness.mint([{"alg": "ES256"}, {"alg": "RS256", "tamper": "signature"}])
        assert c.request("/tickets", token=good).status == 200
        assert c.request("/tickets", token=bad).json()["reason"] == "token.signature"
        c.close()
