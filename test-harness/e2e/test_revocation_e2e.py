"""Real-time revocation end to end: Security Event Tokens pushed to the local Shared Signals
transmitter (RFC 8936 poll) and enforced by every Envoy worker within about one poll
interval, including for tokens whose signature check is cached."""

import contextlib
import json
import time

import harness

PLUGIN = json.loads(harness.PLUGIN.read_text())
INTERVAL_S = 0.25
VIA_PLANNER = {"sub": "user:alice", "act": {"sub": "agent:planner"}}


@contextlib.contextmanager
def revocation_stack(concurrency=2, **kwargs):
    plugin = harness.with_revocation(PLUGIN, interval_ms=int(INTERVAL_S * 1000), **kwargs)
    with harness.stack(plugin_json=plugin, name="revocation", concurrency=concurrency) as envoy:
        client = harness.Client(envoy.listen_port)
        wait_fresh(client)
        yield envoy, client
        client.close()


def wait_fresh(client, timeout=10):
    """Until the first poll has answered (before it, requests are `revocation.stale`)."""
    [token] = harness.mint([{}])

    def served():
        r = client.request("/tickets/1", token=token)
        assert r.status == 200 or r.json()["reason"] == "revocation.stale", r
        return r.status == 200

    harness.wait_until(served, timeout, "the revocation feed to become fresh")


def until(client, token, predicate, timeout=5, **kw):
    """Requests until `predicate(response)`; returns (response, seconds waited)."""
    start = time.monotonic()
    r = harness.wait_until(lambda: client.request("/tickets/1", token=token, **kw), timeout,
                           "an answer to the token that passes the check", interval=0.02, expect=predicate)
    return r, time.monotonic() - start


def reason(r):
    return r.json().get("reason") if r.status != 200 else None


def test_revoked_jti_is_refused_within_an_interval_even_when_cached():
    with revocation_stack() as (envoy, client):
        revoked, other = harness.mint([{"claims": {"jti": "tok-revoke-me"}}, {"claims": {"jti": "tok-keep"}}])
        for _ in range(3):  # verified, then served from the signature cache
            assert client.request("/tickets/1", token=revoked).status == 200
        [s] = harness.mint_sets([("set-jti-1", {harness.EVENT["token_revoked"]: {"jti": "tok-revoke-me"}})])
        envoy.control_plane.push_sets([s])
        r, waited = until(client, revoked, lambda r: r.status != 200)
        assert r.status == 401 and reason(r) == "revocation.jti", r
        assert waited < INTERVAL_S + 1.0
        assert client.request("/tickets/1", token=other).status == 200
        # Acknowledged on the next poll, and never applied twice.
        until(client, other, lambda r: "set-jti-1" in envoy.control_plane.stats()["acked"])


def test_disabled_agent_is_refused_as_subject_and_as_actor_until_enabled():
    with revocation_stack() as (envoy, client):
        as_subject, as_actor = harness.mint([{"claims": {"sub": "agent:planner"}}, {"claims": VIA_PLANNER}])
        assert client.request("/tickets/1", token=as_actor).status == 200
        t = int(time.time())
        [s] = harness.mint_sets([("set-dis-1", {harness.EVENT["account_disabled"]: {
            "subject": harness.opaque("agent:planner"), "event_timestamp": t}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, as_actor, lambda r: r.status != 200)
        assert reason(r) == "revocation.agent", r
        assert reason(client.request("/tickets/1", token=as_subject)) == "revocation.agent"
        # A token minted after the event is refused too: the agent is disabled.
        [fresh] = harness.mint([{"claims": VIA_PLANNER}])
        assert reason(client.request("/tickets/1", token=fresh)) == "revocation.agent"
        # Last writer wins by event time, a tie is disabled: the enable comes later.
        [s] = harness.mint_sets([("set-en-1", {harness.EVENT["account_enabled"]: {
            "subject": harness.opaque("agent:planner"), "event_timestamp": t + 1}})])
        envoy.control_plane.push_sets([s])
        until(client, as_actor, lambda r: r.status == 200)


def test_session_revoked_refuses_older_tokens_and_accepts_newer_ones():
    with revocation_stack() as (envoy, client):
        now = time.time()
        [old] = harness.mint([{"claims": VIA_PLANNER}], now=now - 20)
        assert client.request("/tickets/1", token=old).status == 200
        [s] = harness.mint_sets([("set-sess-1", {harness.EVENT["session_revoked"]: {
            "subject": harness.opaque("user:alice"), "event_timestamp": int(now) - 5}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, old, lambda r: r.status != 200)
        assert r.status == 401 and reason(r) == "revocation.subject", r
        [newer] = harness.mint([{"claims": VIA_PLANNER}])
        assert client.request("/tickets/1", token=newer).status == 200
        # credential-change works the same way, and applies to an actor of the chain.
        [s] = harness.mint_sets([("set-cred-1", {harness.EVENT["credential_change"]: {
            "subject": harness.opaque("agent:planner"), "event_timestamp": int(time.time()) + 1}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, newer, lambda r: r.status != 200)
        assert reason(r) == "revocation.subject", r


def test_bad_sets_are_neither_applied_nor_acknowledged_unknown_events_are_acknowledged():
    with revocation_stack() as (envoy, client):
        [token] = harness.mint([{"claims": {"jti": "tok-target"}}])
        bad_sig, wrong_aud, wrong_typ, unknown = harness.mint_sets([
            ("set-bad-sig", {harness.EVENT["token_revoked"]: {"jti": "tok-target"}}, {"tamper": "signature"}),
            ("set-bad-aud", {harness.EVENT["token_revoked"]: {"jti": "tok-target"}}, {"claims": {"aud": "https://other"}}),
            ("set-bad-typ", {harness.EVENT["token_revoked"]: {"jti": "tok-target"}}, {"header": {"typ": "at+jwt"}}),
            ("set-unknown", {"https://example.test/event-type/other": {}}),
        ])
        envoy.control_plane.push_sets([bad_sig, wrong_aud, wrong_typ, unknown])
        until(client, token, lambda r: "set-unknown" in envoy.control_plane.stats()["acked"])
        time.sleep(3 * INTERVAL_S)
        assert client.request("/tickets/1", token=token).status == 200
        acked = envoy.control_plane.stats()["acked"]
        assert not {"set-bad-sig", "set-bad-aud", "set-bad-typ"} & set(acked), acked
        log = envoy.log_path.read_text()
        for jti, why in (("set-bad-sig", "signature does not verify"), ("set-bad-aud", "aud does not name"),
                         ("set-bad-typ", "typ must be secevent+jwt")):
            assert f'SET "{jti}" refused ({why}' in log, jti
        # The audit stream records each refusal once per polling worker, and what was
        # acknowledged (the poll lease moves between the VMs of this Envoy).
        events = [e for e in envoy.audit_events() if e["kind"] == "revocation"]
        refused = [(e["stream"], e["jti"]) for e in events if e["outcome"] == "refused"]
        assert {j for _, j in refused} == {"set-bad-aud", "set-bad-sig", "set-bad-typ"}, events
        assert len(refused) == len(set(refused)), events
        assert any(e["jti"] == "set-unknown" and e["outcome"] == "applied" for e in events), events
        assert harness.audit_schema_errors(envoy.audit_events()) == []


def test_feed_outage_beyond_staleness_denies_then_recovers():
    with revocation_stack(max_staleness_s=1) as (envoy, client):
        [token] = harness.mint([{}])
        envoy.control_plane.ssf_fail("500")
        r, waited = until(client, token, lambda r: r.status != 200, timeout=6)
        assert r.status == 503 and reason(r) == "revocation.stale", r
        assert r.headers["retry-after"] == "1", r.headers  # one poll (250 ms, rounded up)
        assert waited >= 0.5  # the last good state serves until the bound
        gauge = "wasmcustom.agent_iam.revocation.feed_age_seconds"
        assert int(harness.admin_stats(envoy, "revocation")[gauge]) >= 1  # seconds, rounded up
        envoy.control_plane.ssf_fail("none")
        until(client, token, lambda r: r.status == 200)
        # Every VM records the gauge on its own tick (100 ms): give it a few ticks.
        harness.wait_until(lambda: int(harness.admin_stats(envoy, "revocation")[gauge]), 2,
                           "the feed age gauge to come down to 1 s", expect=lambda age: age <= 1)


def test_allow_safe_methods_keeps_reads_during_an_outage():
    with revocation_stack(max_staleness_s=1, failure_mode="allow_safe_methods") as (envoy, client):
        [token] = harness.mint([{"claims": {"scope": "tickets:read tickets:write"}}])
        envoy.control_plane.ssf_fail("500")
        r, _ = until(client, token, lambda r: r.status != 200, method="POST", body=b"{}", timeout=6)
        assert r.status == 503 and reason(r) == "revocation.stale", r
        assert client.request("/tickets/1", token=token).status == 200  # GET still decided


def test_envoy_restart_reads_the_revocations_again_before_serving():
    plugin = harness.with_revocation(PLUGIN, interval_ms=int(INTERVAL_S * 1000))
    cfg_path = harness.OUT / "revocation-restart.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(plugin))
    [token] = harness.mint([{"claims": {"jti": "tok-restart"}}])
    with harness.Upstream() as up, harness.ControlPlane(harness.registry_doc(plugin)) as cp:
        listen, admin = harness.free_port(), harness.free_port()
        yaml_text = harness.envoy_yaml(plugin=cfg_path, listen=listen, admin=admin, upstream=up.port,
                                       control_plane=cp.port)
        with harness.Envoy(yaml_text, name="revocation-1"):
            client = harness.Client(listen)
            wait_fresh(client)
            [s] = harness.mint_sets([("set-restart", {harness.EVENT["token_revoked"]: {"jti": "tok-restart"}})])
            cp.push_sets([s])
            until(client, token, lambda r: reason(r) == "revocation.jti")
            until(client, token, lambda r: "set-restart" in cp.stats()["acked"])
            client.close()
        with harness.Envoy(yaml_text, name="revocation-2"):
            client = harness.Client(listen)
            seen = set()

            def refused_as_revoked():
                r = client.request("/tickets/1", token=token)
                assert r.status != 200, "a revoked token was served after the restart"
                seen.add(reason(r))
                return reason(r) == "revocation.jti"

            harness.wait_until(refused_as_revoked, 5, "revocation.jti after the restart", interval=0.02)
            assert seen <= {"revocation.stale", "revocation.jti"} and "revocation.jti" in seen, seen
            client.close()


# The state is a function of the set of events: event time decides, not arrival order.

def lifecycle_set(jti, kind, subject, at):
    return harness.mint_sets([(jti, {harness.EVENT[kind]: {"subject": subject, "event_timestamp": int(at)}})])[0]


def acked(envoy, *jtis):
    return set(jtis) <= set(envoy.control_plane.stats()["acked"])


def settle(client, token, envoy, *jtis):
    """Until every SET in `jtis` is acknowledged (applied by then), then one more poll."""
    until(client, token, lambda r: acked(envoy, *jtis))
    time.sleep(2 * INTERVAL_S)


def test_disabled_enabled_disabled_in_one_poll_answer_ends_disabled():
    with revocation_stack() as (envoy, client):
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        t = time.time() - 60
        planner = harness.opaque("agent:planner")
        # One answer: the SETs arrive in jti order (a JSON object), which puts the enable last.
        sets = [lifecycle_set("a-disable-1", "account_disabled", planner, t),
                lifecycle_set("c-enable-2", "account_enabled", planner, t + 10),
                lifecycle_set("b-disable-3", "account_disabled", planner, t + 20)]
        envoy.control_plane.push_sets(sets)
        settle(client, token, envoy, "a-disable-1", "b-disable-3", "c-enable-2")
        for _ in range(5):
            assert reason(client.request("/tickets/1", token=token)) == "revocation.agent"
        applied = [e["jti"] for e in envoy.audit_events() if e["kind"] == "revocation" and e["outcome"] == "applied"]
        assert applied[:3] == ["a-disable-1", "b-disable-3", "c-enable-2"], applied  # one answer, jti order


def test_a_late_older_enable_does_not_re_enable_a_newer_one_does():
    with revocation_stack() as (envoy, client):
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        t = time.time()
        planner = harness.opaque("agent:planner")
        envoy.control_plane.push_sets([lifecycle_set("dis-at-t", "account_disabled", planner, t - 10)])
        until(client, token, lambda r: reason(r) == "revocation.agent")
        envoy.control_plane.push_sets([lifecycle_set("en-before-t", "account_enabled", planner, t - 20)])
        settle(client, token, envoy, "en-before-t")
        assert reason(client.request("/tickets/1", token=token)) == "revocation.agent"
        envoy.control_plane.push_sets([lifecycle_set("en-after-t", "account_enabled", planner, t)])
        until(client, token, lambda r: r.status == 200)


def test_iss_sub_of_an_untrusted_issuer_does_not_revoke_a_trusted_one_does():
    with revocation_stack() as (envoy, client):
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        foreign = {"format": "iss_sub", "iss": "https://other-idp.example", "sub": "agent:planner"}
        envoy.control_plane.push_sets([lifecycle_set("foreign-dis", "account_disabled", foreign, time.time())])
        settle(client, token, envoy, "foreign-dis")  # acknowledged: it names nobody of ours
        assert client.request("/tickets/1", token=token).status == 200
        [ev] = [e for e in envoy.audit_events() if e["kind"] == "revocation" and e["jti"] == "foreign-dis"]
        assert ev["outcome"] == "applied" and "not a configured token issuer" in ev["detail"], ev
        ours = {"format": "iss_sub", "iss": PLUGIN["issuers"][0]["issuer"], "sub": "agent:planner"}
        envoy.control_plane.push_sets([lifecycle_set("ours-dis", "account_disabled", ours, time.time())])
        until(client, token, lambda r: reason(r) == "revocation.agent")


def test_email_and_complex_subjects_apply():
    with revocation_stack() as (envoy, client):
        now = time.time()
        carol, via_planner, bob = harness.mint([
            {"claims": {"sub": "user:carol", "email": "Carol@Example.COM", "act": {"sub": "agent:tool-search"}}},
            {"claims": VIA_PLANNER},
            {"claims": {"sub": "user:bob", "act": {"sub": "agent:planner"}}}], now=now - 20)
        for t in (carol, via_planner, bob):
            assert client.request("/tickets/1", token=t).status == 200
        # `email`: matched against the token's email claim (and sub), without ASCII case.
        [s] = harness.mint_sets([("email-sess", {harness.EVENT["session_revoked"]: {
            "subject": {"format": "email", "email": "carol@example.com"}, "event_timestamp": int(now) - 5}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, carol, lambda r: r.status != 200)
        assert reason(r) == "revocation.subject", r
        # `complex` with a user: alice's session in the planner revokes alice's older tokens,
        # not every user's of the planner.
        [s] = harness.mint_sets([("complex-sess", {harness.EVENT["session_revoked"]: {"subject": {
            "format": "complex", "user": {"format": "iss_sub", "iss": PLUGIN["issuers"][0]["issuer"],
                                          "sub": "user:alice"},
            "application": harness.opaque("agent:planner"), "session": harness.opaque("sess-7")},
            "event_timestamp": int(now) - 5}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, via_planner, lambda r: r.status != 200)
        assert reason(r) == "revocation.subject", r
        assert client.request("/tickets/1", token=bob).status == 200
        # `complex` without a user: the application (an agent) is disabled; the session member
        # narrows the event in SSF, and the filter applies it to the whole agent (the safe side).
        [s] = harness.mint_sets([("complex-dis", {harness.EVENT["account_disabled"]: {"subject": {
            "format": "complex", "application": harness.opaque("agent:planner"),
            "session": harness.opaque("sess-42")}}})])
        envoy.control_plane.push_sets([s])
        r, _ = until(client, bob, lambda r: r.status != 200)
        assert reason(r) == "revocation.agent", r


def test_an_unsupported_subject_format_is_refused_counted_and_audited():
    with revocation_stack() as (envoy, client):
        [token] = harness.mint([{"claims": VIA_PLANNER}])
        phone = {"format": "phone_number", "phone_number": "+12065550100"}
        envoy.control_plane.push_sets([lifecycle_set("phone-dis", "account_disabled", phone, time.time())])
        stat = "wasmcustom.agent_iam.revocation.unsupported_subjects_total"
        harness.wait_until(lambda: int(harness.admin_stats(envoy, "revocation").get(stat, 0)) >= 1, 5,
                           "the unsupported subject to be counted")
        time.sleep(2 * INTERVAL_S)
        assert client.request("/tickets/1", token=token).status == 200
        assert "phone-dis" not in envoy.control_plane.stats()["acked"]  # the transmitter keeps it
        refused = [e for e in envoy.audit_events() if e["kind"] == "revocation" and e["jti"] == "phone-dis"]
        assert refused and all(e["outcome"] == "refused" and "unsupported subject format" in e["detail"]
                               for e in refused), refused
        assert harness.audit_schema_errors(envoy.audit_events()) == []


def test_an_answer_of_refused_sets_is_not_polled_again_at_once():
    # max_events 2 and three refused SETs: every answer says moreAvailable, none can be
    # acknowledged, so polling again at once would fetch the same SETs at tick rate.
    plugin = harness.with_revocation(PLUGIN, interval_ms=int(INTERVAL_S * 1000))
    plugin["revocation"]["feed"]["max_events"] = 2
    with harness.stack(plugin_json=plugin, name="revocation-refused-more", concurrency=2) as envoy:
        client = harness.Client(envoy.listen_port)
        wait_fresh(client)
        bad = harness.mint_sets([(f"bad-{i}", {harness.EVENT["token_revoked"]: {"jti": "x"}}, {"tamper": "signature"})
                                 for i in range(3)])
        envoy.control_plane.push_sets(bad)
        time.sleep(0.5)
        before = envoy.control_plane.stats()["ssf_polls"]
        time.sleep(2.0)
        polls = envoy.control_plane.stats()["ssf_polls"] - before
        assert polls <= 2.0 / INTERVAL_S + 3, polls  # one per interval, not one per 100 ms tick
        client.close()


def test_a_restart_replaying_the_sets_in_jti_order_gives_the_same_state():
    # Live, in event order: disabled (a-), enabled (c-), disabled again (b-). A restarted
    # Envoy gets all three in one answer, in jti order (a-, b-, c-): the enable comes last.
    plugin = harness.with_revocation(PLUGIN, interval_ms=int(INTERVAL_S * 1000))
    cfg_path = harness.OUT / "revocation-restart-order.json"
    harness.OUT.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(plugin))
    [token] = harness.mint([{"claims": VIA_PLANNER}])
    planner = harness.opaque("agent:planner")
    t = time.time() - 60
    with harness.Upstream() as up, harness.ControlPlane(harness.registry_doc(plugin)) as cp:
        listen, admin = harness.free_port(), harness.free_port()
        yaml_text = harness.envoy_yaml(plugin=cfg_path, listen=listen, admin=admin, upstream=up.port,
                                       control_plane=cp.port)
        with harness.Envoy(yaml_text, name="revocation-order-1"):
            client = harness.Client(listen)
            wait_fresh(client)
            for jti, kind, at, want in (("a-disable-1", "account_disabled", t, "revocation.agent"),
                                        ("c-enable-2", "account_enabled", t + 10, None),
                                        ("b-disable-3", "account_disabled", t + 20, "revocation.agent")):
                cp.push_sets([lifecycle_set(jti, kind, planner, at)])
                until(client, token, lambda r, want=want: reason(r) == want)
            until(client, token, lambda r: "b-disable-3" in cp.stats()["acked"])
            client.close()
        with harness.Envoy(yaml_text, name="revocation-order-2"):
            client = harness.Client(listen)
            seen = set()

            def refused():
                r = client.request("/tickets/1", token=token)
                assert r.status != 200, "a disabled agent was served after the restart"
                seen.add(reason(r))
                return True

            harness.holds_for(refused, 3, "the disabled agent refused after the restart", interval=0.05)
            assert seen <= {"revocation.stale", "revocation.agent"} and "revocation.agent" in seen, seen
            client.close()
