"""End-to-end: the audit trail through a real Envoy. Every decision (allowed, denied,
malformed) becomes exactly one schema-valid event, in the log, at the collector and in the
access log; the chain verifies and any removed, reordered, edited or cut-off event is
reported by `agent-iam audit verify`; a collector outage queues events up to the bound and
counts what it drops; the decision metrics are on /stats."""

import hashlib
import json
import time

import harness


def audit_plugin(feed=True, **audit):
    """The shipped plugin with this audit section. `feed=False`: the inline registry only —
    the registry feed's poller audits each registry it applies from its own VM's stream, and
    tests that follow one worker's decision stream leave it out (`test_agents_e2e.py`
    covers the registry events)."""
    plugin = json.loads(harness.PLUGIN.read_text())
    plugin["audit"] = audit
    if not feed:
        plugin["agents"].pop("feed", None)
    return plugin


def collector(**over):
    c = {"cluster": "agent_iam_control_plane", "path": "/audit", "batch_max": 5, "flush_interval_ms": 200}
    c.update(over)
    return c


# A target Envoy passes and the filter refuses (request.target): audited as sent, hashed.
HOSTILE = '/tickets/1;jsessionid=x%22%3C'


def mixed_requests(client, n_rounds=1):
    """Requests of every outcome; returns the decision id of each, in order."""
    [good, chain, expired, forged, tenant] = harness.mint([
        {"alg": "ES256"},
        {"alg": "RS256", "claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}},
        {"alg": "ES256", "claims": {"iat": int(time.time()) - 400, "exp": int(time.time()) - 100}},
        {"alg": "EdDSA", "tamper": "signature"},
        {"alg": "ES256", "claims": {"tenant": "acme"}},
    ])
    cases = [
        ("/tickets", {"authorization": f"Bearer {good}"}, 200),
        ("/tickets/1", {"authorization": f"Bearer {chain}", "x-request-id": 'id"with\\quote'}, 200),
        ("/tickets", {"authorization": f"Bearer {expired}"}, 401),
        ("/tickets", {"authorization": f"Bearer {forged}"}, 401),
        ("/tickets", {}, 401),
        ("/tickets", {"authorization": "Basic dXNlcjpwYXNz"}, 401),
        ("/tickets", {"authorization": "Bearer " + "x" * 9000}, 401),
        ("/mail/send", {"authorization": f"Bearer {good}"}, 403),
        ("/tenants/other/x", {"authorization": f"Bearer {tenant}"}, 403),
        (HOSTILE, {"authorization": f"Bearer {good}"}, 400),
    ]
    ids = []
    for _ in range(n_rounds):
        for path, headers, status in cases:
            method = "POST" if path == "/mail/send" else "GET"
            r = client.request(path, headers=headers, method=method)
            assert r.status == status, (path, r)
            ids.append(r.json()["headers"]["x-agent-decision-id"][0] if status == 200 else r.json()["decision_id"])
    return ids


def events_of(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return p


def test_every_decision_is_one_valid_chained_event_in_the_log_and_at_the_collector(tmp_path):
    plugin = audit_plugin(log=True, collector=collector())
    with harness.stack(plugin_json=plugin, name="audit-collector", concurrency=2) as envoy:
        client = harness.Client(envoy.listen_port)
        ids = mixed_requests(client, n_rounds=3)
        n = len(ids)
        cp = envoy.control_plane
        decisions = lambda: [e for e in events_of(cp.audit_text()) if e["kind"] == "decision"]
        harness.wait_until(lambda: len(decisions()) >= n, timeout=10, what=f"{n} decisions at the collector")
        time.sleep(0.5)  # nothing more may arrive
        at_collector = events_of(cp.audit_text())
        got = [e for e in at_collector if e["kind"] == "decision"]
        assert sorted(e["decision_id"] for e in got) == sorted(ids), "exactly one event per decision"
        assert harness.audit_schema_errors(at_collector) == []

        by_id = {e["decision_id"]: e for e in got}
        allowed = by_id[ids[1]]
        assert allowed["decision"] == "allow" and allowed["principal"] == "user:alice"
        assert allowed["agent"] == "agent:planner" and allowed["chain"] == ["agent:planner"]
        assert allowed["token"]["alg"] == "RS256" and allowed["token"]["iss"] == "https://idp.agent-iam.test"
        # The recorded request id is the one the upstream received: the shipped bootstrap's
        # Envoy replaces a client's id with its own, and the event says so.
        [upstream_saw] = [h for h in envoy.upstream.server.seen if h.get("x-agent-decision-id") == [ids[1]]]
        assert allowed["request"]["id"] == upstream_saw["x-request-id"][0] and allowed["route"] == "tickets-read"
        assert allowed["request"]["id_source"] == "envoy"
        assert allowed["policy"]["revision"] and allowed["latency_us"] >= 0
        assert [by_id[i]["reason"] for i in ids[2:9]] == [
            "token.expired", "token.signature", "token.missing", "token.scheme", "token.too_large",
            "scope.insufficient", "policy.denied"]
        assert by_id[ids[8]]["policy_reason"] == "tenant.mismatch"
        assert by_id[ids[3]]["token"]["sha256"] and by_id[ids[3]]["token"]["iss"] is None
        # A target the filter refuses is recorded as the client sent it, escaped, and hashed.
        refused = by_id[ids[9]]
        assert refused["reason"] == "request.target" and refused["request"]["path"] == ""
        assert refused["request"]["original"]["target"] == HOSTILE
        assert refused["request"]["original"]["sha256"] == hashlib.sha256(HOSTILE.encode()).hexdigest()

        # The chain is checkable without our CLI (docs/AUDIT.md): BLAKE2b-256 of each line.
        prev = {}
        for line in cp.audit_text().splitlines():
            e = json.loads(line)
            assert e["prev"] == prev.get(e["stream"], "0" * 64)
            prev[e["stream"]] = hashlib.blake2b(line.encode(), digest_size=32).hexdigest()

        # The collector's file and Envoy's own log both verify, with the same events.
        code, out = harness.audit_verify(write(tmp_path, "collector.ndjson", cp.audit_text().splitlines()))
        assert code == 0, out
        assert f"{n} decision(s)" in out
        code, out = harness.audit_verify(envoy.log_path)
        assert code == 0, out
        logged = envoy.audit_events()
        assert sorted(json.dumps(e, sort_keys=True) for e in logged) == \
            sorted(json.dumps(e, sort_keys=True) for e in at_collector)
        # The token never appears in any event.
        [good] = harness.mint([{"alg": "ES256"}])
        assert good.split(".")[2] not in cp.audit_text()

        stats = harness.admin_stats(envoy, "agent_iam")
        assert harness.count(envoy, decision="allow") == 6
        assert harness.count(envoy, decision="deny") == 24
        assert harness.count(envoy, reason="request.target", check="request") == 3
        assert harness.count(envoy, reason="token.expired", check="token") == 3
        assert int(stats["wasmcustom.agent_iam.audit.delivered_total"]) == len(at_collector)
        assert int(stats["wasmcustom.agent_iam.audit.dropped_total"]) == 0
        assert "wasmcustom.agent_iam.decision_duration_microseconds" in stats
        assert stats["wasmcustom.agent_iam.audit.queue_depth"] == "0"
        assert int(stats["wasmcustom.agent_iam.registry.feed_age_seconds"]) < 5
        # A VM's linear memory, set on the tick: a few MB, never zero (a native module has none).
        if harness.BUILD == "wasm":
            assert 1 << 20 <= int(stats["wasmcustom.agent_iam.memory_bytes"]) < 64 << 20


def test_removed_reordered_edited_or_truncated_events_are_detected(tmp_path):
    plugin = audit_plugin(feed=False, checkpoint_s=1)
    with harness.stack(plugin_json=plugin, name="audit-tamper") as envoy:
        client = harness.Client(envoy.listen_port)
        mixed_requests(client)
        # A quiet second: the stream writes a checkpoint.
        harness.wait_until(lambda: any(e["kind"] == "checkpoint" for e in envoy.audit_events()), timeout=10, what="a checkpoint")
        lines = [line.split(harness.AUDIT_PREFIX, 1)[1] for line in envoy.log().splitlines()
                 if harness.AUDIT_PREFIX in line]
    # Envoy stopped: each stream ended with a final checkpoint, so the whole log verifies
    # however late it is checked, while a tail cut off below is reported.
    final = [e for e in envoy.audit_events() if e.get("final")]
    assert len(final) == 1 and final[0]["kind"] == "checkpoint"
    later = str(int(time.time()) + 600)
    code, out = harness.audit_verify("--now", later, envoy.log_path)
    assert code == 0, out
    assert json.loads(lines[0])["kind"] == "start" and len(lines) >= 12
    code, out = harness.audit_verify(write(tmp_path, "intact.log", lines))
    assert code == 0, out

    removed = lines[:4] + lines[5:]
    code, out = harness.audit_verify(write(tmp_path, "removed.log", removed))
    assert code == 1 and "seq 5..5 missing" in out and "removed" in out, out

    reordered = lines[:3] + [lines[4], lines[3]] + lines[5:]
    code, out = harness.audit_verify(write(tmp_path, "reordered.log", reordered))
    assert code == 1 and "reordered" in out, out

    edited = list(lines)
    edited[3] = edited[3].replace('"decision":"deny"', '"decision":"allow"', 1)
    assert edited[3] != lines[3]
    code, out = harness.audit_verify(write(tmp_path, "edited.log", edited))
    assert code == 1 and "seq 4" in out and "modified" in out, out

    # Cut the tail (the decisions' last event and every checkpoint after it): a verifier
    # running later sees a stream that stopped writing.
    cut = [line for line in lines if json.loads(line)["kind"] != "checkpoint"][:-1]
    code, out = harness.audit_verify("--now", later, write(tmp_path, "cut.log", cut))
    assert code == 1 and "truncated" in out, out


def test_collector_outage_queues_up_to_the_bound_and_counts_drops(tmp_path):
    plugin = audit_plugin(feed=False, collector=collector(max_queue=20, timeout_ms=300, backoff_max_ms=400))
    with harness.stack(plugin_json=plugin, name="audit-outage") as envoy:
        cp = envoy.control_plane
        client = harness.Client(envoy.listen_port)
        # Slow first (no answer before the timeout), then refusing.
        cp.audit_fail("hang")
        ids = mixed_requests(client)
        harness.wait_until(lambda: cp.stats()["audit_refused"] >= 1, timeout=10, what="a batch to reach the hung collector")
        cp.audit_fail("503")
        ids += mixed_requests(client, n_rounds=2)
        harness.wait_until(lambda: cp.stats()["audit_refused"] >= 2, timeout=10, what="a refused batch")
        assert cp.stats()["audit_events"] == 0
        held = 20
        dropped = len(ids) + 1 - held  # + the stream's start event
        harness.wait_until(lambda: harness.admin_stats(envoy, "audit.dropped")
                   .get("wasmcustom.agent_iam.audit.dropped_total") == str(dropped), timeout=10, what=f"{dropped} drops counted")
        stats = harness.admin_stats(envoy, "agent_iam.audit")
        assert int(stats["wasmcustom.agent_iam.audit.send_failures_total"]) >= 2
        envoy.wait_for_log("dropped the", timeout=10)
        assert harness.wait_until(lambda: harness.admin_stats(envoy, "queue_depth")
                          .get("wasmcustom.agent_iam.audit.queue_depth") == str(held), timeout=10, what="queue depth gauge")

        cp.audit_fail("none")
        harness.wait_until(lambda: len(events_of(cp.audit_text())) >= held, timeout=15, what="delivery after recovery")
        time.sleep(0.5)
        delivered = events_of(cp.audit_text())
        assert len(delivered) == held, "exactly the bound, oldest dropped"
        assert [e["decision_id"] for e in delivered] == ids[-held:]
        assert harness.audit_schema_errors(delivered) == []
        # The delivered events chain; the dropped head is reported as missing.
        code, out = harness.audit_verify(write(tmp_path, "after-outage.ndjson", cp.audit_text().splitlines()))
        assert code == 1 and f"events 1..{dropped}" in out, out
        code, out = harness.audit_verify("--continued", write(tmp_path, "after-outage.ndjson",
                                                                cp.audit_text().splitlines()))
        assert code == 0, out
        # Nothing was lost silently: the log line says how many, the counter agrees.
        assert f"({dropped} in total on this worker)" in envoy.log() or "dropped the" in envoy.log()
        # With a collector, events are not also logged unless `log: true` says so.
        assert envoy.audit_events() == []


def test_access_log_example_writes_every_event_to_its_own_file(tmp_path):
    audit_log = tmp_path / "audit.log"
    with harness.stack(name="audit-access-log", audit_access_log=str(audit_log)) as envoy:
        client = harness.Client(envoy.listen_port)
        ids = mixed_requests(client)
        harness.wait_until(lambda: audit_log.exists() and
                   sum(1 for e in events_of(audit_log.read_text()) if e["kind"] == "decision") >= len(ids),
                   timeout=10, what="the access log")
        events = events_of(audit_log.read_text())
    assert sorted(e["decision_id"] for e in events if e["kind"] == "decision") == sorted(ids)
    assert events[0]["kind"] == "start"
    assert harness.audit_schema_errors(events) == []
    # Access logs are written when requests end: order within a worker may differ.
    code, out = harness.audit_verify("--unordered", audit_log)
    assert code == 0, out


def test_shipped_access_log_example_is_generated_from_the_plugin():
    shipped = (harness.ROOT / "envoy" / "envoy.audit-log.yaml").read_text()
    assert shipped == harness.cli("generate", "envoy", "--config", harness.PLUGIN, "--no-module-sha256",
                                  "--audit-access-log", "/tmp/agent-iam-audit.log").stdout
    assert "%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%" in shipped


def key_order(v):
    """The members of every object in `v`, in the order written (values left out)."""
    if isinstance(v, dict):
        return [(k, key_order(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [key_order(x) for x in v]
    return None


def test_check_writes_the_audit_lines_the_filter_writes_and_they_verify(tmp_path):
    now = int(time.time())
    [chain, forged] = harness.mint([
        {"claims": {"sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}},
        {"tamper": "signature"},
    ], now=now)
    requests = [
        ("GET", "/tickets/42", {"authorization": f"Bearer {chain}", "x-request-id": "req-1"}),
        ("POST", "/tickets/42", {"authorization": f"Bearer {chain}", "x-request-id": "req-2"}),
        ("GET", "/tickets/42", {"authorization": f"Bearer {forged}", "x-request-id": "req-3"}),
        ("GET", "/tickets/42", {"x-request-id": "req-4"}),
    ]
    stdin = "".join(json.dumps({"method": m, "path": p, "host": "api.agent-iam.test", "headers": h}) + "\n"
                    for m, p, h in requests)
    trail = tmp_path / "check-audit.ndjson"
    out = harness.cli("check", "--config", harness.PLUGIN, "--now", now, "--audit", trail, stdin=stdin).stdout
    code, report = harness.audit_verify(trail)
    assert code == 0, report
    assert "ok: 6 event(s) (4 decision(s)) in 1 stream(s)" in report, report
    events = events_of(trail.read_text())
    assert [e["kind"] for e in events] == ["start"] + ["decision"] * 4 + ["checkpoint"]
    assert events[-1]["final"] is True and harness.audit_schema_errors(events) == []
    # Each output line's `audit` member is that event's text, byte for byte.
    texts = trail.read_text().splitlines()
    for line, text in zip(out.splitlines(), texts[1:5]):
        assert line.endswith(',"audit":' + text + "}"), line
    # Editing one event is detected as in any other trail.
    edited = write(tmp_path, "edited.ndjson", [texts[0], texts[1].replace('"allow"', '"deny"'), *texts[2:]])
    assert harness.audit_verify(edited)[0] == 1

    # The filter in Envoy writes the same events, member for member and in the same order.
    with harness.stack(name="audit-check") as envoy:
        client = harness.Client(envoy.listen_port)
        for method, path, headers in requests:
            client.request(path, method=method, headers=headers, body=b"{}" if method == "POST" else None)
        client.close()
        harness.wait_until(lambda: len(envoy.decision_lines()) >= 4, timeout=10, what="4 decisions in the log")
        logged = envoy.decision_lines()
    for (_, _, sent), mine, theirs in zip(requests, events[1:5], logged):
        assert key_order(mine) == key_order(theirs)
        for k in ("decision", "status", "reason", "agent", "principal", "chain", "scopes", "route"):
            assert mine[k] == theirs[k], k
        # The CLI records the id the request carried; the shipped bootstrap's Envoy replaces
        # a client's id with its own, and the filter says whose it is.
        assert (mine["request"]["id"], mine["request"]["id_source"]) == (sent["x-request-id"], "client")
        assert theirs["request"]["id"] not in ("req-1", "req-2", "req-3", "req-4")
        assert theirs["request"]["id_source"] == "envoy"
