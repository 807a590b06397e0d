"""Remote JWKS (`issuers[].jwks_uri`) end to end: fetched through an Envoy cluster from the
local control plane, shared by all workers, rotated with no restart, refetched at once (and
rate-limited) on an unknown `kid`, last good keys kept through an IdP outage."""

import contextlib
import copy
import json
import time

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
DEMO_JWKS = PLUGIN["issuers"][0]["jwks"]


def remote_plugin(refresh_s=1, min_refetch_s=1):
    p = copy.deepcopy(PLUGIN)
    p["issuers"][0].pop("jwks")
    p["issuers"][0]["jwks_uri"] = {"cluster": "agent_iam_control_plane", "path": "/jwks.json",
                                   "refresh_s": refresh_s, "min_refetch_s": min_refetch_s}
    return p


@contextlib.contextmanager
def jwks_stack(jwks=DEMO_JWKS, **kw):
    with harness.stack(plugin_json=remote_plugin(**kw), name="jwks", concurrency=2, jwks=jwks) as envoy:
        client = harness.Client(envoy.listen_port)
        yield envoy, client
        client.close()


def until(client, token, predicate, timeout=6):
    """Requests until `predicate(response)`; returns (response, seconds waited)."""
    start = time.monotonic()
    r = harness.wait_until(lambda: client.request("/tickets/1", token=token), timeout,
                           "an answer to the token that passes the check", interval=0.02, expect=predicate)
    return r, time.monotonic() - start


def reason(r):
    return None if r.status == 200 else r.json()["reason"]


def second_key():
    """A new ES256 key published as kid es-2, and a private key file that signs with it."""
    path = harness.OUT / "rotated-keys.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    public = json.loads(harness.cli("dev", "keys", "--private", path).stdout)
    [es] = [k for k in public["keys"] if k.get("crv") == "P-256"]
    return dict(es, kid="es-2"), path


def test_fetched_keys_verify_tokens_and_requests_before_the_first_fetch_are_503():
    with jwks_stack(jwks={"keys": []}) as (envoy, client):
        [token] = harness.mint([{}])
        r = client.request("/tickets/1", token=token)
        assert r.status == 503 and reason(r) == "jwks.unavailable", r
        envoy.control_plane.set_jwks(DEMO_JWKS)
        until(client, token, lambda r: r.status == 200)


def test_rotation_without_restart_new_kid_at_once_removed_kid_refused_even_if_cached():
    es2, es2_keys = second_key()
    with jwks_stack(refresh_s=2, min_refetch_s=1) as (envoy, client):
        [old] = harness.mint([{}])
        until(client, old, lambda r: r.status == 200)
        for _ in range(3):
            assert client.request("/tickets/1", token=old).status == 200  # cached
        # The IdP adds es-2 and starts signing with it: the unknown kid triggers a refetch.
        envoy.control_plane.set_jwks({"keys": DEMO_JWKS["keys"] + [es2]})
        [new] = harness.mint([{"header": {"kid": "es-2"}}], keys=es2_keys)
        r, waited = until(client, new, lambda r: r.status == 200)
        assert waited < 2.0, waited  # before the 2 s scheduled refresh could matter much
        # The IdP retires es-1: gone after the next refresh, cached verifications included.
        envoy.control_plane.set_jwks({"keys": [es2]})
        r, _ = until(client, old, lambda r: r.status != 200, timeout=8)
        assert reason(r) == "token.kid", r
        assert client.request("/tickets/1", token=new).status == 200


def test_idp_outage_keeps_the_last_good_keys():
    with jwks_stack(refresh_s=1) as (envoy, client):
        [token] = harness.mint([{}])
        until(client, token, lambda r: r.status == 200)
        before = envoy.control_plane.stats()["jwks_requests"]
        envoy.control_plane.jwks_fail("500")
        harness.holds_for(lambda: client.request("/tickets/1", token=token), 3.5, "the last good keys serving",
                          expect=lambda r: r.status == 200)
        assert envoy.control_plane.stats()["jwks_requests"] >= before + 2  # it kept trying
        assert "keeping the last good keys" in envoy.log_path.read_text()
        # The age gauge shows the keys growing old (> 3 s: every refetch failed).
        age = int(harness.admin_stats(envoy, "jwks.age_seconds")["wasmcustom.agent_iam.jwks.age_seconds"])
        assert age >= 3, age


def test_a_flood_of_unknown_kids_is_rate_limited():
    with jwks_stack(refresh_s=300, min_refetch_s=2) as (envoy, client):
        [good] = harness.mint([{}])
        until(client, good, lambda r: r.status == 200)
        before = envoy.control_plane.stats()["jwks_requests"]
        bogus = harness.mint([{"header": {"kid": f"bogus-{i}"}} for i in range(60)])
        start = time.monotonic()
        for t in bogus:
            r = client.request("/tickets/1", token=t)
            assert r.status == 401 and reason(r) == "token.kid", r
        elapsed = time.monotonic() - start
        time.sleep(0.3)
        fetches = envoy.control_plane.stats()["jwks_requests"] - before
        # At most one refetch per min_refetch_s (2 s), plus one in flight at the start.
        assert 1 <= fetches <= int(elapsed / 2) + 2, (fetches, elapsed)
