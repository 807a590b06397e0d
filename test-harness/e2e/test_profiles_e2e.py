"""Identity profiles end to end through Envoy: Entra Agent ID, Auth0 for AI Agents and
SPIFFE tokens, built from the vendors' documented claim sets (re-signed with the test keys,
with `iss`, `aud`, `iat` and `exp` set to the test issuer's), are mapped into one model.
The test asserts on what the upstream received and on the audit event, and shows that the
same registry and policy decide equivalent requests from two vendors the same way."""

import copy
import json

import pytest

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
DEMO = PLUGIN["issuers"][0]
AUD = DEMO["audiences"][0]
ENTRA = "https://login.microsoftonline.com/00000001-0000-0ff1-ce00-000000000000/v2.0"
AUTH0 = "https://acme.us.auth0.com/"
SPIRE = "https://oidc.acme.example"
OKTA = "https://as.myresource.com"
OKTA_AGENT = "wlpa0eiuaoCNrpoaE0g7"
ENTRA_AGENT = "aaaaaaaa-1111-2222-3333-444444444444"
AUTH0_AGENT = "agt_1a2b3c"
SPIFFE_AGENT = "spiffe://acme.example/agents/planner"


def record(agent_id, may_act_for):
    return {"id": agent_id, "status": "active", "owner": "team:agents", "max_scopes": ["tickets:read"],
            "may_act_for": may_act_for}


def profiles_plugin():
    p = copy.deepcopy(PLUGIN)
    for iss, profile in ((ENTRA, "entra-agent-id"), (AUTH0, "auth0-agents"),
                         (SPIRE, {"spiffe": {"trust_domains": ["acme.example"]}}), (OKTA, "okta-xaa")):
        i = copy.deepcopy(DEMO)
        i["issuer"] = iss
        i["profile"] = profile
        i.pop("accepted_types", None)
        p["issuers"].append(i)
    p["agents"].pop("feed", None)
    # One budget per tenant of the model, whichever claim the profile read it from.
    p["limits"] = [{"name": "tenant-reads", "key": ["tenant"], "match": {"routes": ["tenants"]},
                    "budget": {"count": 1, "window_s": 3600}}]
    p["agents"]["registry"] += [
        record(ENTRA_AGENT, ["dddddddd-*"]),
        record(AUTH0_AGENT, ["auth0|*"]),
        record(SPIFFE_AGENT, []),
        record(OKTA_AGENT, ["00u*"]),
    ]
    return p


@pytest.fixture(scope="module")
def env():
    with harness.stack(plugin_json=profiles_plugin(), name="profiles") as envoy:
        yield envoy


@pytest.fixture()
def c(env):
    client = harness.Client(env.listen_port)
    client.envoy = env
    yield client
    client.close()


def entra_obo(**extra):
    # "Token claims reference for agent IDs" (learn.microsoft.com/en-us/entra/agent-id/
    # identity-platform/agent-token-claims): the on-behalf-of claim table.
    claims = {"iss": ENTRA, "aud": AUD, "ver": "2.0", "idtyp": "user", "azp": ENTRA_AGENT,
              "oid": "dddddddd-1111-2222-3333-444444444444", "sub": "eeeeeeee-1111-2222-3333-444444444444",
              "scp": "tickets:read", "tid": "00000001-0000-0ff1-ce00-000000000000", "xms_idrel": "1",
              "xms_act_fct": "11", "xms_par_app_azp": "30cf4c22-9985-4ef7-8756-91cc888176bd",
              "scope": None}  # None: the test recipe's default `scope` is left out (Entra sends `scp`)
    claims.update(extra)
    return claims


def auth0_obo(**extra):
    # "Agent Identity in Tokens" (auth0.com/docs/ai-agents-mcp/agents-as-principal/
    # agent-identity-in-tokens): the on-behalf-of exchange, one hop.
    claims = {"iss": AUTH0, "aud": AUD, "sub": "auth0|user123", "sub_profile": "user",
              "client_id": "agent-client-id", "client_profile": "service ai_agent", "scope": "tickets:read",
              "org_id": "org_vIK75NKFvaozQsFy",
              "act": {"sub": AUTH0_AGENT, "sub_profile": "ai_agent", "client_id": "agent-client-id"}}
    claims.update(extra)
    return claims


def send(client, claims, typ=None):
    recipe = {"claims": claims}
    if typ:
        recipe["header"] = {"typ": typ}
    [token] = harness.mint([recipe])
    return client.request("/tickets/7", token=token)


def test_each_vendor_reaches_the_upstream_as_the_one_model(c):
    seen = c.envoy.upstream.server.seen
    r = send(c, entra_obo(), typ="JWT")
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["x-agent-id"] == [ENTRA_AGENT]
    assert h["x-agent-principal"] == ["dddddddd-1111-2222-3333-444444444444"]
    assert h["x-agent-chain"] == [ENTRA_AGENT]
    assert h["x-agent-type"] == ["ai_agent"]
    assert h["x-agent-idp-tenant"] == ["00000001-0000-0ff1-ce00-000000000000"]
    assert h["x-agent-client"] == [ENTRA_AGENT]

    r = send(c, auth0_obo())
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["x-agent-id"] == [AUTH0_AGENT]
    assert h["x-agent-principal"] == ["auth0|user123"]
    assert h["x-agent-type"] == ["ai_agent"]
    assert h["x-agent-idp-tenant"] == ["org_vIK75NKFvaozQsFy"]
    decision_id = h["x-agent-decision-id"][0]
    assert c.envoy.wait_for_log(decision_id)
    [event] = [d for d in c.envoy.decision_lines() if d["decision_id"] == decision_id]
    assert event["agent"] == AUTH0_AGENT and event["principal"] == "auth0|user123"
    assert event["identity"] == {"profile": "auth0-agents", "agent_type": "ai_agent",
                                 "tenant": "org_vIK75NKFvaozQsFy", "client": "agent-client-id"}

    r = send(c, {"iss": SPIRE, "aud": AUD, "sub": SPIFFE_AGENT, "scope": "tickets:read"}, typ="JWT")
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["x-agent-id"] == [SPIFFE_AGENT] and h["x-agent-idp-tenant"] == ["acme.example"]
    assert "x-agent-chain" not in h

    # Okta's ID-JAG example claims (developer.okta.com/docs/guides/xaa-request-token-ex/saml2/main/)
    # as the resource's authorization server carries them into its access token.
    r = send(c, {"iss": OKTA, "aud": AUD, "sub": "00uzkk8ctx1WtQ8fy1d7", "client_id": "0oaa0esowyOyPreaI0g7",
                 "scope": "tickets:read", "act": {"sub": OKTA_AGENT, "sub_profile": "ai_agent"}})
    assert r.status == 200, r
    h = r.json()["headers"]
    assert h["x-agent-id"] == [OKTA_AGENT] and h["x-agent-principal"] == ["00uzkk8ctx1WtQ8fy1d7"]
    assert h["x-agent-type"] == ["ai_agent"] and h["x-agent-client"] == ["0oaa0esowyOyPreaI0g7"]
    assert len(seen) >= 4


def test_the_same_registry_decides_equivalent_tokens_from_two_vendors_alike(c):
    # Beyond the agents' ceiling: the same refusal from both vendors.
    r1 = send(c, entra_obo(scp="tickets:read tickets:write"), typ="JWT")
    r2 = send(c, auth0_obo(scope="tickets:read tickets:write"))
    assert (r1.status, r1.json()["reason"]) == (r2.status, r2.json()["reason"]) == (
        403, "delegation.scope_exceeds_ceiling")
    # A principal the agent may not act for: the same refusal from both.
    r1 = send(c, entra_obo(oid="ffffffff-1111-2222-3333-444444444444"), typ="JWT")
    r2 = send(c, auth0_obo(sub="google-oauth2|999"))
    assert (r1.json()["reason"], r2.json()["reason"]) == ("delegation.principal_not_allowed",) * 2


def test_a_limit_keyed_on_the_tenant_counts_the_models_tenant(c):
    tid = "00000001-0000-0ff1-ce00-000000000000"

    def get(claims, path, typ=None):
        recipe = {"claims": claims, **({"header": {"typ": typ}} if typ else {})}
        [token] = harness.mint([recipe])
        return c.request(path, token=token)

    assert get(entra_obo(), f"/tenants/{tid}/tickets", "JWT").status == 200
    # Another user of the same Entra tenant: the tenant's budget is spent.
    r = get(entra_obo(oid="dddddddd-2222-2222-3333-444444444444"), f"/tenants/{tid}/tickets", "JWT")
    assert (r.status, r.json()["reason"]) == (429, "limit.tenant-reads"), r
    # Auth0's org_id is another tenant: its own budget.
    assert get(auth0_obo(), "/tenants/org_vIK75NKFvaozQsFy/tickets").status == 200


def refused(client, claims, reason, typ=None):
    seen = client.envoy.upstream.server.seen
    before = len(seen)
    r = send(client, claims, typ=typ)
    assert r.status == 401, r
    assert r.json()["reason"] == reason, r
    assert len(seen) == before, seen[before:]


def test_what_is_not_an_access_token_or_contradicts_its_profile_is_refused(c):
    # An ID-JAG (Okta's example shape) is a grant for an authorization server.
    refused(c, {"iss": AUTH0, "aud": AUD, "sub": "00uzkk8ctx1WtQ8fy1d7", "client_id": "0oaa0esowyOyPreaI0g7",
                "scope": "tickets:read", "jti": "IDAAG.x"}, "token.assertion_grant", typ="oauth-id-jag+jwt")
    refused(c, auth0_obo(nonce="n-0S6_WzA2Mj"), "token.id_token")
    refused(c, entra_obo(idtyp="app"), "token.profile_claims", typ="JWT")
    refused(c, entra_obo(xms_sub_fct="11"), "token.profile_claims", typ="JWT")
    refused(c, auth0_obo(act={"sub": AUTH0_AGENT, "sub_profile": "user"}), "token.profile_claims")
    refused(c, {"iss": SPIRE, "aud": AUD, "sub": "spiffe://evil.example/agents/planner",
                "scope": "tickets:read"}, "token.trust_domain", typ="JWT")
