"""Replays the golden files through the real Envoy (the native replay is tests/golden.rs):
golden/cases.json under the shipped configuration, golden/profiles.json (every identity
profile's vendor tokens) under examples/profiles/plugin.json, asserting on what the
upstream received and, for the profiles, on the audit event."""

import json
import time

import pytest

import harness

GOLDEN = harness.ROOT / "test-harness" / "golden"
DOC = json.loads((GOLDEN / "cases.json").read_text())
CASES = DOC["cases"]
PROFILES = json.loads((GOLDEN / "profiles.json").read_text())


def mint_all(cases):
    # Minted once Envoy is up: a slow start must not eat the few seconds of margin the
    # clock-skew cases have.
    now = int(time.time())
    minted = iter(harness.mint([c["token"] for c in cases if "token" in c], now=now))
    return {c["name"]: next(minted) for c in cases if "token" in c}


@pytest.fixture(scope="module")
def tokens(envoy):
    return mint_all(CASES)


@pytest.fixture(scope="module")
def profiles_envoy():
    plugin = json.loads((harness.ROOT / PROFILES["config"]).read_text())
    with harness.stack(plugin_json=plugin, name="golden-profiles") as envoy:
        yield envoy, mint_all(PROFILES["cases"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_case_through_envoy(client, tokens, case):
    replay(client, tokens.get(case["name"]), case)


@pytest.mark.parametrize("case", PROFILES["cases"], ids=[c["name"] for c in PROFILES["cases"]])
def test_profile_case_through_envoy(profiles_envoy, case):
    envoy, tokens = profiles_envoy
    client = harness.Client(envoy.listen_port)
    try:
        seen = envoy.upstream.server.seen
        before = len(seen)
        r = replay(client, tokens[case["name"]], case)
        want = case["expect"]
        assert len(seen) == before + (want["decision"] == "allow"), seen[before:]
        if want["decision"] != "allow":
            return
        h = r.json()["headers"]
        model = {"principal": "x-agent-principal", "agent_type": "x-agent-type",
                 "tenant": "x-agent-idp-tenant", "client": "x-agent-client"}
        for field, header in model.items():
            if field in want:
                assert h.get(header) == [want[field]], (case["name"], field, h)
        if "chain" in want:
            assert h.get("x-agent-chain", [""]) == [",".join(want["chain"])], (case["name"], h)
        decision_id = h["x-agent-decision-id"][0]
        assert envoy.wait_for_log(decision_id)
        [event] = [d for d in envoy.decision_lines() if d["decision_id"] == decision_id]
        for field in ("agent", "principal", "chain"):
            if field in want:
                assert event[field] == want[field], (case["name"], field, event)
        for field in ("agent_type", "tenant", "client", "profile"):
            if field in want:
                assert event["identity"][field] == want[field], (case["name"], field, event)
    finally:
        client.close()


def replay(client, token, case):
    headers = {}
    if "authorization" in case:
        headers["authorization"] = case["authorization"].replace("{token}", token or "")
    elif token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = case.get("request", {})
    r = client.request(request.get("path", "/tickets"), headers=headers, method=request.get("method", "GET"))
    want = case["expect"]
    assert r.status == want["status"], (case["name"], r)
    if want["decision"] == "allow":
        seen = r.json()["headers"]
        if "agent" in want:
            assert seen["x-agent-id"] == [want["agent"]]
        if "effective_scopes" in want:
            assert seen["x-agent-scopes"] == [" ".join(want["effective_scopes"])]
    else:
        assert r.json()["reason"] == want["reason"], (case["name"], r)
        if "policy_reason" in want:
            assert r.json()["policy_reason"] == want["policy_reason"], (case["name"], r)
        challenge = r.headers["www-authenticate"]
        if "authorization" not in headers:  # no credentials: both challenges, no error code
            assert challenge == 'Bearer, DPoP algs="ES256 EdDSA Ed25519 RS256"', (case["name"], challenge)
        else:
            assert f'error_description="{want["reason"]}"' in challenge
        if want["status"] == 403:
            assert challenge.startswith('Bearer error="insufficient_scope"'), challenge
    return r


def test_equivalent_requests_from_different_vendors_expect_the_same_decision():
    """The profile cases that ask the same question of tokens from different vendors
    (`entra: another tenant's tickets`, `auth0: another tenant's tickets`, ...) expect one
    decision: with each replayed above, one policy and registry decide them alike."""
    groups = {}
    for case in PROFILES["cases"]:
        vendor, question = case["name"].split(": ", 1)
        want = case["expect"]
        groups.setdefault(question, {})[vendor] = (want["decision"], want["status"], want["reason"],
                                                   want.get("policy_reason"))
    shared = {q: v for q, v in groups.items() if len(v) > 1}
    assert len(shared) >= 5, shared
    for question, by_vendor in shared.items():
        assert len(set(by_vendor.values())) == 1, (question, by_vendor)
