//! Shadow (dry-run) mode and the feeds' failure modes through the native pipeline: a check
//! in shadow that fails is recorded (`enforced: false`, its reason) and the request goes
//! on, but only as far as the enforced checks allow; a token that failed never yields
//! identity headers. The end-to-end tests through Envoy check what the upstream receives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use agent_iam::audit::EventContext;
use agent_iam::config::{Config, HeaderNames};
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{Decision, DecisionIds, Engine, Request};
use agent_iam::reason::Reason;
use serde_json::{json, Value};

const NOW: i64 = 1_800_000_000;

/// Denies writes to `/tickets/locked`, with its own reason.
const POLICY: &str = r#"package agent_iam.authz
import rego.v1
default decision := {"allow": true}
decision := {"allow": false, "reason": "locked"} if input.request.path == "/tickets/locked"
"#;

fn keys() -> DevKeys {
    let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
    DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn plugin(keys: &DevKeys) -> Value {
    let mut p = agent_iam::dev::demo_plugin_config(keys);
    p["agents"] = json!({"registry": [
        {"id": "agent:reader", "status": "active", "max_scopes": ["tickets:read"]},
        {"id": "agent:writer", "status": "active", "max_scopes": ["tickets:read", "tickets:write"]},
    ]});
    p["routes"] = json!([
        {"name": "read", "prefix": "/tickets", "methods": ["GET"], "required_scopes": ["tickets:read"]},
        {"name": "write", "prefix": "/tickets", "methods": ["POST"], "required_scopes": ["tickets:write"]},
        {"name": "admin", "prefix": "/admin", "required_scopes": ["admin"], "mode": "enforce"},
    ]);
    p["policy"] = json!({"modules": {"authz.rego": POLICY}});
    p
}

fn engine_of(plugin: &Value) -> Engine {
    let cfg = Config::from_json(plugin.to_string().as_bytes()).unwrap();
    Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1))
}

fn problems(plugin: &Value) -> String {
    Config::from_json(plugin.to_string().as_bytes())
        .expect_err("a configuration error")
        .to_string()
}

fn token(keys: &DevKeys, sub: &str, scope: &str) -> String {
    let r: Recipe =
        serde_json::from_value(json!({"claims": {"sub": sub, "scope": scope}})).unwrap();
    mint(keys, &r, NOW).unwrap()
}

/// `token` with one signature character changed.
fn forge(token: &str) -> String {
    let mut b = token.as_bytes().to_vec();
    let i = b.len() - 10;
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

fn request(method: &str, path: &str, authorization: Option<&str>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        host: "api.agent-iam.test".into(),
        scheme: "https".into(),
        authorization: authorization
            .map(|a| vec![a.as_bytes().to_vec()])
            .unwrap_or_default(),
        ..Request::default()
    }
}

fn shadowed(d: &Decision) -> Vec<(&'static str, &'static str)> {
    d.shadow
        .iter()
        .map(|s| (s.check.as_str(), s.reason.as_str()))
        .collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn event(e: &mut Engine, d: &Decision) -> Value {
    let ctx = EventContext {
        now: NOW as f64,
        latency_us: 1,
        request_id: None,
        traceparent: None,
    };
    let lines = e.audit(d, &ctx);
    serde_json::from_str(lines.last().unwrap().json()).unwrap()
}

#[test]
fn in_shadow_every_deny_is_recorded_and_the_request_goes_on() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["mode"] = json!("shadow");
    let mut e = engine_of(&p);
    let names = HeaderNames::default();
    let now = NOW as f64;

    // No credentials: a shadow deny, no identity upstream.
    let d = e.evaluate(&request("GET", "/tickets/1", None), now);
    assert!(d.allowed());
    assert!(!d.enforced());
    assert_eq!(shadowed(&d), [("token", "token.missing")]);
    assert!(d.upstream_headers(&names).is_empty());
    let ev = event(&mut e, &d);
    assert_eq!(
        (
            &ev["decision"],
            &ev["enforced"],
            &ev["reason"],
            ev["status"].as_u64()
        ),
        (
            &json!("deny"),
            &json!(false),
            &json!("token.missing"),
            Some(401)
        )
    );
    assert_eq!(
        ev["shadow"],
        json!([{"check": "token", "reason": "token.missing"}])
    );

    // A forged token: the same, never an identity.
    let forged = forge(&token(&keys, "agent:writer", "tickets:write"));
    let d = e.evaluate(
        &request("POST", "/tickets", Some(&format!("Bearer {forged}"))),
        now,
    );
    assert!(d.allowed());
    assert_eq!(shadowed(&d), [("token", "token.signature")]);
    assert!(d.upstream_headers(&names).is_empty());

    // A good token short of the route's scope, on a route the policy also refuses: both
    // recorded, in order; the identity is the token's, the scopes the registry granted.
    let reader = token(&keys, "agent:reader", "tickets:read");
    let d = e.evaluate(
        &request("POST", "/tickets/locked", Some(&format!("Bearer {reader}"))),
        now,
    );
    assert!(d.allowed());
    assert_eq!(d.verdict(), Some(Reason::ScopeInsufficient));
    assert_eq!(
        shadowed(&d),
        [
            ("route_scopes", "scope.insufficient"),
            ("policy", "policy.denied")
        ]
    );
    let h = d.upstream_headers(&names);
    assert_eq!(header(&h, "x-agent-id"), Some("agent:reader"));
    assert_eq!(header(&h, "x-agent-scopes"), Some("tickets:read"));
    assert_eq!(d.to_json()["enforced"], json!(false));

    // An unregistered agent: the delegation check fails in shadow; the identity goes up
    // without scopes (the registry granted none).
    let stranger = token(&keys, "agent:stranger", "tickets:read");
    let d = e.evaluate(
        &request("GET", "/tickets/1", Some(&format!("Bearer {stranger}"))),
        now,
    );
    assert!(d.allowed());
    assert_eq!(shadowed(&d), [("delegation", "agent.unknown")]);
    let h = d.upstream_headers(&names);
    assert_eq!(header(&h, "x-agent-id"), Some("agent:stranger"));
    assert_eq!(header(&h, "x-agent-scopes"), None);

    // A route in enforce mode enforces everything on it.
    let d = e.evaluate(
        &request("GET", "/admin/x", Some(&format!("Bearer {reader}"))),
        now,
    );
    assert_eq!(d.reason, Some(Reason::ScopeInsufficient));
    assert!(d.enforced());
    let d = e.evaluate(&request("GET", "/admin/x", None), now);
    assert_eq!(d.reason, Some(Reason::TokenMissing));

    // A clean request is an ordinary allow.
    let d = e.evaluate(
        &request("GET", "/tickets/1", Some(&format!("Bearer {reader}"))),
        now,
    );
    assert!(d.allowed() && d.enforced() && d.shadow.is_empty());
    assert_eq!(event(&mut e, &d)["enforced"], json!(true));
}

#[test]
fn a_shadowed_check_leaves_the_enforced_ones_in_force() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["checks"] = json!({"policy": {"mode": "shadow"}});
    let mut e = engine_of(&p);
    let now = NOW as f64;
    let writer = token(&keys, "agent:writer", "tickets:write tickets:read");
    let reader = token(&keys, "agent:reader", "tickets:read");

    // The policy's deny is only recorded...
    let d = e.evaluate(
        &request("POST", "/tickets/locked", Some(&format!("Bearer {writer}"))),
        now,
    );
    assert!(d.allowed());
    assert_eq!(shadowed(&d), [("policy", "policy.denied")]);
    assert_eq!(d.policy_reason.as_deref(), Some("locked"));
    let ev = event(&mut e, &d);
    assert_eq!(ev["policy_reason"], json!("locked"));
    assert_eq!(ev["enforced"], json!(false));
    // ...the route's scopes still deny, and so does a missing token.
    let d = e.evaluate(
        &request("POST", "/tickets/locked", Some(&format!("Bearer {reader}"))),
        now,
    );
    assert_eq!(d.reason, Some(Reason::ScopeInsufficient));
    assert!(d.shadow.is_empty(), "the policy never ran: {:?}", d.shadow);
    let d = e.evaluate(&request("POST", "/tickets/locked", None), now);
    assert_eq!(d.reason, Some(Reason::TokenMissing));
}

#[test]
fn the_flood_guard_and_malformed_requests_are_never_shadowed() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["mode"] = json!("shadow");
    p["verify_budget"] = json!({"per_client_per_s": 0.01, "burst": 1});
    let mut e = engine_of(&p);
    let now = NOW as f64;
    let mut req = request("GET", "/tickets/1", Some("Bearer a"));
    req.authorization.push(b"Bearer b".to_vec());
    let d = e.evaluate(&req, now);
    assert_eq!(d.reason, Some(Reason::RequestMalformed));
    // The target is read before any check, whatever the mode.
    let d = e.evaluate(&request("GET", "http://evil/tickets", None), now);
    assert_eq!(d.reason, Some(Reason::RequestTarget));
    // Forged tokens spend the client's budget in shadow too; once spent, it is enforced.
    let forged = forge(&token(&keys, "agent:writer", "tickets:write"));
    let mut req = request("GET", "/tickets/1", Some(&format!("Bearer {forged}")));
    req.client = Some("192.0.2.1".into());
    let d = e.evaluate(&req, now);
    assert_eq!(shadowed(&d), [("token", "token.signature")]);
    let d = e.evaluate(&req, now);
    assert_eq!(d.reason, Some(Reason::TokenVerifyBudget));
}

#[test]
fn a_check_cannot_be_shadowed_under_an_enforced_one_that_needs_it() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["checks"] = json!({"token": {"mode": "shadow"}});
    let err = problems(&p);
    assert!(
        err.contains("$.checks.token.mode") && err.contains("`sender_constraint`"),
        "{err}"
    );
    p["checks"] = json!({"delegation": {"mode": "shadow"}, "route_scopes": {"mode": "shadow"}});
    let err = problems(&p);
    assert!(
        err.contains("$.checks.delegation.mode") && err.contains("`mcp`"),
        "{err}"
    );
    p["checks"] = json!({
        "delegation": {"mode": "shadow"}, "route_scopes": {"mode": "shadow"},
        "mcp": {"mode": "shadow"}, "policy": {"mode": "shadow"},
    });
    engine_of(&p);
    // With limits, they count the call the MCP check read: shadowed with it.
    p["limits"] = json!([{"name": "l", "key": ["agent"], "rate": {"per_s": 1, "burst": 1}}]);
    let err = problems(&p);
    assert!(
        err.contains("$.checks.delegation.mode") && err.contains("`limits`"),
        "{err}"
    );
    p["checks"] = json!({"mcp": {"mode": "shadow"}, "policy": {"mode": "shadow"}});
    let err = problems(&p);
    assert!(
        err.contains("$.checks.mcp.mode") && err.contains("`limits`"),
        "{err}"
    );
    p["checks"]["limits"] = json!({"mode": "shadow"});
    engine_of(&p);
    p.as_object_mut().unwrap().remove("limits");
    // Everything in shadow but one route enforced: consistent on every route.
    p["checks"] = json!({});
    p["mode"] = json!("shadow");
    engine_of(&p);
    p["checks"] = json!({"policy": {"mode": "banana"}});
    let err = problems(&p);
    assert!(err.contains("$.checks.policy.mode"), "{err}");
    p["checks"] = json!({"policy": {"failure_mode": "last_good"}});
    let err = problems(&p);
    assert!(err.contains("$.checks.policy"), "{err}");
    p["checks"] = json!({"revocation": {"failure_mode": "last_good"}});
    let err = problems(&p);
    assert!(
        err.contains("$.checks.revocation.failure_mode") && err.contains("not configured"),
        "{err}"
    );
}

#[test]
fn the_old_stale_switches_say_where_they_moved() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["agents"]["feed"] = json!({"cluster": "c", "path": "/r", "on_stale": "last_good"});
    let err = problems(&p);
    assert!(
        err.contains("$.agents.feed.on_stale") && err.contains("checks.delegation.failure_mode"),
        "{err}"
    );
}

#[test]
fn a_stale_registry_feed_follows_its_failure_mode() {
    let keys = keys();
    let reader = token(&keys, "agent:reader", "tickets:read");
    let auth = format!("Bearer {reader}");
    let now = NOW as f64;
    let stale_at = now + 31.0;
    for (mode, get, post) in [
        (
            "deny",
            Some(Reason::AgentRegistryStale),
            Some(Reason::AgentRegistryStale),
        ),
        ("allow_safe_methods", None, Some(Reason::AgentRegistryStale)),
        ("last_good", None, Some(Reason::ScopeInsufficient)),
    ] {
        let mut p = plugin(&keys);
        p["agents"]["feed"] = json!({"cluster": "c", "path": "/r", "max_staleness_s": 30});
        p["checks"] = json!({"delegation": {"failure_mode": mode}});
        let mut e = engine_of(&p);
        e.start_feed_clock(now);
        let fresh = e.evaluate(&request("GET", "/tickets/1", Some(&auth)), now);
        assert_eq!(fresh.reason, None, "{mode}");
        // Tokens live 300 s: still valid when the feed went stale.
        let d = e.evaluate(&request("GET", "/tickets/1", Some(&auth)), stale_at);
        assert_eq!(d.reason, get, "{mode} GET");
        let d = e.evaluate(&request("POST", "/tickets", Some(&auth)), stale_at);
        assert_eq!(d.reason, post, "{mode} POST");
        // A 503 for a stale feed says to retry after one poll (1000 ms by default).
        let retry = (d.reason == Some(Reason::AgentRegistryStale)).then_some(1);
        assert_eq!(e.retry_after(&d), retry, "{mode}");
    }
}

#[test]
fn a_shadowed_mcp_refusal_leaves_the_routes_scopes_enforced() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["routes"] = json!([{"name": "mcp", "exact": "/mcp", "methods": ["POST", "GET"],
                          "required_scopes": ["tickets:write"], "mcp": {"tools": {}}}]);
    p["checks"] = json!({"mcp": {"mode": "shadow"}, "policy": {"mode": "shadow"}});
    let mut e = engine_of(&p);
    let reader = token(&keys, "agent:reader", "tickets:read");
    let writer = token(&keys, "agent:writer", "tickets:write");
    for (who, want) in [(&reader, Some(Reason::ScopeInsufficient)), (&writer, None)] {
        // A resumed stream (mcp.replay) and a method the route does not take.
        for (method, header) in [("GET", Some(("last-event-id", "1"))), ("DELETE", None)] {
            let mut req = request(method, "/mcp", Some(&format!("Bearer {who}")));
            req.headers
                .extend(header.map(|(k, v)| (k.to_owned(), v.to_owned())));
            let d = e.evaluate(&req, NOW as f64);
            assert_eq!(d.reason, want, "{method}");
            assert_eq!(d.shadow.first().map(|s| s.check.as_str()), Some("mcp"));
        }
    }
}

#[test]
fn a_chain_that_failed_in_shadow_never_reaches_the_upstream() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["mode"] = json!("shadow");
    let mut e = engine_of(&p);
    let r: Recipe = serde_json::from_value(json!({"claims": {
        "sub": "user:alice", "scope": "tickets:read", "act": {"sub": "agent:reader"}}}))
    .unwrap();
    let chained = mint(&keys, &r, NOW).unwrap();
    let d = e.evaluate(
        &request("GET", "/tickets/1", Some(&format!("Bearer {chained}"))),
        NOW as f64,
    );
    assert!(d.allowed());
    assert_eq!(
        d.shadow.first().map(|s| s.check.as_str()),
        Some("delegation")
    );
    let h = d.upstream_headers(&HeaderNames::default());
    assert_eq!(header(&h, "x-agent-id"), Some("agent:reader"));
    assert_eq!(header(&h, "x-agent-chain"), None);
    assert_eq!(header(&h, "x-agent-scopes"), None);
}

#[test]
fn the_inconsistency_names_the_key_that_set_the_shadow() {
    let keys = keys();
    let mut p = plugin(&keys);
    p["mode"] = json!("shadow");
    p["checks"] = json!({"policy": {"mode": "enforce"}});
    let err = problems(&p);
    assert!(err.contains("$.mode:") && err.contains("`policy`"), "{err}");
}
