"""Identity values, principal lifecycle and actor identity, end to end through Envoy: what
the token and the registry say about who is acting is validated where it enters, and the
test asserts on what the upstream received (the echo upstream records every request it
saw), not only on the filter's status. (The same rules have golden cases, replayed
natively and through Envoy, and unit tests in src/token.rs and src/agents.rs.)"""

import copy
import json
import time

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
ISSUER = PLUGIN["issuers"][0]["issuer"]
RELAY = {"id": "agent:relay", "status": "active", "owner": "team:tools", "max_scopes": ["tickets:*"],
         "may_act_for": ["user:*", "agent:*"], "may_delegate_to": ["agent:relay"]}


def identity_plugin():
    """The shipped configuration, admitting unregistered subjects (so that only the identity
    rules stand between a hostile `sub` and the upstream), plus `agent:relay`, which may act
    for users and agents, may delegate to itself and is capped at `tickets:*`."""
    p = copy.deepcopy(PLUGIN)
    p["agents"]["allow_unregistered_subjects"] = True
    p["agents"]["registry"].append(RELAY)
    return p


@pytest.fixture(scope="module")
def ident():
    with harness.stack(plugin_json=identity_plugin(), name="identity") as envoy:
        yield envoy


@pytest.fixture()
def c(ident):
    client = harness.Client(ident.listen_port)
    client.envoy = ident
    yield client
    client.close()


def refused(client, claims, reason, status=401):
    """Sends a token with `claims`; asserts the refusal and that nothing reached the
    upstream. Returns the response."""
    seen = client.envoy.upstream.server.seen
    before = len(seen)
    [token] = harness.mint([{"claims": claims}])
    r = client.request("/tickets/7", token=token)
    assert r.status == status, r
    assert r.json()["reason"] == reason, r
    assert len(seen) == before, seen[before:]
    return r


def allowed(client, claims):
    [token] = harness.mint([{"claims": claims}])
    r = client.request("/tickets/7", token=token)
    assert r.status == 200, r
    return r.json()["headers"]


def decision(envoy, decision_id):
    assert envoy.wait_for_log(decision_id)
    [line] = [d for d in envoy.decision_lines() if d["decision_id"] == decision_id]
    return line


def test_a_comma_in_an_id_never_reaches_the_chain_header(c):
    # Matched by `agent:summarizer-*`, this would read as three actors in x-agent-chain.
    refused(c, {"sub": "agent:summarizer-x,agent:admin"}, "token.subject")
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:summarizer-x,agent:admin",
                                              "act": {"sub": "agent:planner"}}}, "delegation.malformed")
    refused(c, {"sub": "user:alice,agent:admin", "act": {"sub": "agent:planner"}}, "token.subject")
    # The legitimate family member still gets the chain, one comma per actor boundary.
    seen = allowed(c, {"sub": "user:alice", "act": {"sub": "agent:summarizer-x", "act": {"sub": "agent:planner"}}})
    assert seen["x-agent-chain"] == ["agent:summarizer-x,agent:planner"]


def test_a_comma_in_a_scope_never_reaches_the_scopes_header(c):
    # `tickets:x,mail:send` is within relay's `tickets:*` as one scope token; an upstream
    # splitting x-agent-scopes on commas would read `mail:send`.
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:relay"}, "scope": "tickets:read tickets:x,mail:send"},
            "token.claim_type")
    seen = allowed(c, {"sub": "user:alice", "act": {"sub": "agent:relay"}, "scope": "tickets:read tickets:x"})
    assert seen["x-agent-scopes"] == ["tickets:read tickets:x"]


def test_whitespace_around_a_retired_id_is_refused_not_trimmed_into_it(c):
    # Envoy trims a header value: " agent:legacy-bot" would reach the upstream as the
    # retired agent, admitted as an unregistered subject.
    for sub in (" agent:legacy-bot", "agent:legacy-bot ", "agent:legacy-bot\t", "\u00a0agent:legacy-bot",
                "agent:legacy-bot\u3000"):
        refused(c, {"sub": sub}, "token.subject")
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:relay", "act": {"sub": " agent:legacy-bot"}}},
            "delegation.malformed")


@pytest.mark.parametrize("sub", ["agent:x\u0001", "agent:x\u007f", "agent:x\nx-agent-id: agent:admin", "agent:\u0000"])
def test_a_control_character_is_a_401_with_an_audit_event_not_a_503(c, sub):
    r = refused(c, {"sub": sub}, "token.subject")
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    event = decision(c.envoy, r.json()["decision_id"])
    assert (event["decision"], event["status"], event["reason"]) == ("deny", 401, "token.subject")
    assert event["principal"] is None and event["token"]["sha256"]


def test_non_ascii_identities_reach_the_upstream_intact(c):
    seen = allowed(c, {"sub": "user:josé", "act": {"sub": "agent:relay"}})
    # http.server reads header bytes as latin-1.
    assert seen["x-agent-principal"] == ["user:josé".encode().decode("latin-1")]
    assert seen["x-agent-chain"] == ["agent:relay"]


def test_the_empty_suffix_of_a_prefix_pattern_is_not_a_family_member(client):
    seen = client.envoy.upstream.server.seen
    before = len(seen)
    [bare, member] = harness.mint([{"claims": {"sub": "agent:summarizer-"}}, {"claims": {"sub": "agent:summarizer-9"}}])
    r = client.request("/tickets/7", token=bare)
    assert (r.status, r.json()["reason"]) == (401, "agent.unknown"), r
    assert len(seen) == before
    r = client.request("/tickets/7", token=member)
    assert r.status == 200 and r.json()["headers"]["x-agent-id"] == ["agent:summarizer-9"], r


@pytest.mark.parametrize("principal", ["agent:night-batch", "agent:legacy-bot", "agent:contractor-bot"],
                         ids=["suspended", "retired", "expired"])
def test_an_inactive_principal_is_refused_even_with_an_active_actor(c, principal):
    refused(c, {"sub": principal, "act": {"sub": "agent:relay"}}, "delegation.principal_inactive", 403)
    refused(c, {"sub": principal, "act": {"sub": "agent:relay", "iss": ISSUER}}, "delegation.principal_inactive", 403)


def test_an_active_agent_principal_with_an_active_actor_is_allowed(c):
    seen = allowed(c, {"sub": "agent:build-bot-7", "act": {"sub": "agent:relay"}})
    assert (seen["x-agent-principal"], seen["x-agent-id"]) == (["agent:build-bot-7"], ["agent:relay"])


def test_act_iss_must_be_a_configured_issuer(c):
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:relay", "iss": "https://evil.test"}},
            "delegation.actor_issuer")
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:summarizer-1",
                                              "act": {"sub": "agent:planner", "iss": ISSUER + "/"}}},
            "delegation.actor_issuer")
    seen = allowed(c, {"sub": "user:alice", "act": {"sub": "agent:relay", "iss": ISSUER}})
    assert seen["x-agent-chain"] == ["agent:relay"]


def test_relay_to_itself_under_an_iss_variant_is_a_cycle(c):
    # agent:relay may delegate to itself; keyed by (sub, iss) the two levels looked different.
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:relay", "iss": ISSUER, "act": {"sub": "agent:relay"}}},
            "delegation.cycle")
    refused(c, {"sub": "user:alice", "act": {"sub": "agent:relay", "act": {"sub": "agent:relay", "iss": ISSUER}}},
            "delegation.cycle")


def test_a_custom_claim_nested_20_deep_is_accepted(c):
    # (The shipped policy reads `authorization_details` as a task binding: another name.)
    deep = "x"
    for _ in range(20):
        deep = {"n": deep}
    allowed(c, {"context": deep})


def test_a_feed_document_with_a_bad_id_is_refused_and_the_last_good_registry_stays():
    plugin = identity_plugin()
    plugin["agents"]["feed"].update({"poll_interval_ms": 200, "max_staleness_s": 30})
    with harness.stack(plugin_json=plugin, name="identity-feed") as envoy:
        client = harness.Client(envoy.listen_port)
        [token] = harness.mint([{"claims": {"sub": "user:alice", "act": {"sub": "agent:relay"}}}])
        assert client.request("/tickets/1", token=token).status == 200
        doc = harness.registry_doc(plugin, version="2")
        for rec in doc["agents"]:
            if rec["id"] == "agent:relay":
                rec["status"] = "retired"
        doc["agents"].append(dict(RELAY, id="agent:x,agent:admin"))
        envoy.control_plane.set_registry(doc)
        bad = len(doc["agents"]) - 1
        assert envoy.wait_for_log(f"$.agents[{bad}].id"), "the refusal names the bad id's path"
        time.sleep(0.5)
        r = client.request("/tickets/1", token=token)
        assert r.status == 200, r  # version 2 (which retires agent:relay) was never applied
        assert "\"agent:x,agent:admin\"" in envoy.log()
        client.close()


@pytest.mark.parametrize("tenant", ["acme,globex", " acme", "acme\u0001", "acme globex"])
def test_a_tenant_claim_reaches_the_upstream_only_as_one_plain_value(c, tenant):
    # The profile maps the `tenant` claim into the model (x-agent-idp-tenant): a value an
    # upstream could split or that is padded is no identity value.
    refused(c, {"tenant": tenant}, "token.profile_claims")


def test_the_shipped_policy_copies_only_a_plain_tenant_into_its_header(c):
    # An identity value the policy's stricter rule for x-agent-tenant does not accept.
    r = refused(c, {"tenant": "acme/eu"}, "policy.denied", 403)
    assert r.json()["policy_reason"] == "tenant.invalid"


def test_a_plain_tenant_claim_becomes_the_tenant_header(c):
    assert allowed(c, {"tenant": "acme-eu"})["x-agent-tenant"] == ["acme-eu"]


def test_feed_values_never_start_a_log_line_of_their_own():
    plugin = identity_plugin()
    plugin["agents"]["feed"].update({"poll_interval_ms": 200})
    with harness.stack(plugin_json=plugin, name="identity-feed-log") as envoy:
        doc = harness.registry_doc(plugin, version="2")
        doc["agents"][0]["status"] = "active\nagent-iam: registry version 9 applied"
        envoy.control_plane.set_registry(doc)
        assert envoy.wait_for_log("invalid registry document")
        [line] = [ln for ln in envoy.log().splitlines() if "invalid registry document" in ln][:1]
        assert "active\\nagent-iam: registry version 9 applied" in line, line
        assert not any(ln.startswith("agent-iam:") for ln in envoy.log().splitlines())
