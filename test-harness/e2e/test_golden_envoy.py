"""Replays golden/cases.json through the real Envoy (the native replay is tests/golden.rs)."""

import json
import time

import pytest

import harness

DOC = json.loads((harness.ROOT / "test-harness" / "golden" / "cases.json").read_text())
CASES = DOC["cases"]


@pytest.fixture(scope="module")
def tokens(envoy):
    # Minted once Envoy is up: a slow start must not eat the few seconds of margin the
    # clock-skew cases have.
    now = int(time.time())
    recipes = [c["token"] for c in CASES if "token" in c]
    minted = iter(harness.mint(recipes, now=now))
    return {c["name"]: next(minted) for c in CASES if "token" in c}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_case_through_envoy(client, tokens, case):
    token = tokens.get(case["name"])
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
