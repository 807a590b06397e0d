//! Property tests (proptest): mutated tokens never verify, accepted configurations
//! round-trip, decisions are deterministic for a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use agent_iam::token::verify_token;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_800_000_000;

fn keys() -> DevKeys {
    let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
    DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn plugin() -> Value {
    serde_json::from_slice(&std::fs::read("envoy/plugin.json").unwrap()).unwrap()
}

fn config() -> Config {
    Config::from_json(&std::fs::read("envoy/plugin.json").unwrap()).unwrap()
}

/// One valid token per algorithm, with and without delegation.
fn tokens() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let k = keys();
        ["ES256", "EdDSA", "RS256"]
            .iter()
            .flat_map(|alg| {
                [
                    json!({"alg": alg}),
                    json!({"alg": alg, "claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}),
                ]
            })
            .map(|r| {
                let r: Recipe = serde_json::from_value(r).unwrap();
                mint(&k, &r, NOW).unwrap()
            })
            .collect()
    })
}

fn verifies(token: &str) -> bool {
    static CFG: OnceLock<std::sync::Mutex<Config>> = OnceLock::new();
    let cfg = CFG.get_or_init(|| std::sync::Mutex::new(config()));
    let cfg = cfg.lock().unwrap();
    verify_token(token, &cfg.token_rules(), &PureRust, None, NOW as f64).is_ok()
}

#[derive(Debug, Clone)]
enum Mutation {
    BitFlip { at: usize, bit: u8 },
    SwapSegments { a: usize, b: usize },
    Reencode { segment: usize, how: u8 },
    HeaderEdit { edit: u8 },
    ClaimEdit { edit: u8 },
    Truncate { keep: usize },
    Append { byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::BitFlip { at, bit }),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Mutation::SwapSegments { a, b }),
        (0usize..3, 0u8..4).prop_map(|(segment, how)| Mutation::Reencode { segment, how }),
        (0u8..8).prop_map(|edit| Mutation::HeaderEdit { edit }),
        (0u8..8).prop_map(|edit| Mutation::ClaimEdit { edit }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        any::<u8>().prop_map(|byte| Mutation::Append { byte }),
    ]
}

fn edit_json(segment: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let bytes = URL_SAFE_NO_PAD.decode(segment).unwrap();
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
    f(&mut v);
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
}

fn apply(token: &str, m: &Mutation) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    match m {
        Mutation::BitFlip { at, bit } => {
            let mut b = token.as_bytes().to_vec();
            let i = at % b.len();
            b[i] ^= 1 << bit;
            return String::from_utf8_lossy(&b).into_owned();
        }
        Mutation::SwapSegments { a, b } => parts.swap(*a, *b),
        Mutation::Reencode { segment, how } => {
            let raw = URL_SAFE_NO_PAD.decode(&parts[*segment]).unwrap();
            parts[*segment] = match how {
                0 => URL_SAFE.encode(&raw),           // with padding
                1 => STANDARD.encode(&raw),           // the other alphabet
                2 => format!(" {}", parts[*segment]), // whitespace
                _ => format!("{}=", parts[*segment]), // stray padding
            };
        }
        Mutation::HeaderEdit { edit } => {
            parts[0] = edit_json(&parts[0], |h| match edit {
                0 => drop(h.insert("alg".into(), json!("none"))),
                1 => drop(h.insert("alg".into(), json!("HS256"))),
                2 => drop(h.insert(
                    "alg".into(),
                    json!(if h["alg"] == "ES256" {
                        "RS256"
                    } else {
                        "ES256"
                    }),
                )),
                3 => drop(h.insert("kid".into(), json!("es-1x"))),
                4 => drop(h.insert("crit".into(), json!(["exp"]))),
                5 => drop(h.insert("jwk".into(), json!({"kty": "oct", "k": "AA"}))),
                6 => drop(h.insert("typ".into(), json!("JWT "))),
                _ => drop(h.insert("extra".into(), json!(1))),
            })
        }
        Mutation::ClaimEdit { edit } => {
            parts[1] = edit_json(&parts[1], |c| match edit {
                0 => drop(c.insert("sub".into(), json!("agent:admin"))),
                1 => drop(c.insert(
                    "scope".into(),
                    json!("tickets:read tickets:write mail:send"),
                )),
                2 => drop(c.insert("exp".into(), json!(NOW + 100_000))),
                3 => drop(c.insert("aud".into(), json!("https://other.example"))),
                4 => drop(c.insert("act".into(), json!({"sub": "agent:tool-search"}))),
                5 => drop(c.remove("act")),
                6 => drop(c.insert("iss".into(), json!("https://idp.agent-iam.test/"))),
                _ => drop(c.insert("x".into(), json!(null))),
            })
        }
        Mutation::Truncate { keep } => {
            let keep = keep % token.len();
            return token[..keep].to_owned();
        }
        Mutation::Append { byte } => return format!("{token}{}", char::from(*byte)),
    }
    parts.join(".")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any change to a valid token makes it fail, unless it is the very same token.
    #[test]
    fn mutated_tokens_never_verify(which in 0usize..6, m in mutation()) {
        let original = &tokens()[which];
        prop_assert!(verifies(original));
        let mutated = apply(original, &m);
        if mutated != *original {
            prop_assert!(!verifies(&mutated), "{m:?} produced a token that verifies: {mutated}");
        }
    }
}

/// Configurations derived from the shipped one: numbers inside and outside their ranges,
/// optional sections dropped.
fn config_variant() -> impl Strategy<Value = Value> {
    (
        prop::option::of(0u64..400),
        prop::option::of(0u64..100_000),
        prop::option::of(0u64..70_000),
        prop::option::of(0u64..20),
        prop::option::of(0u64..200_000),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u64..4000),
    )
        .prop_map(
            |(skew, life, bytes, depth, cache, no_routes, no_feed, cp)| {
                let mut p = plugin();
                let o = p.as_object_mut().unwrap();
                o.remove("policy");
                if let Some(v) = skew {
                    o.insert("clock_skew_s".into(), json!(v));
                }
                if let Some(v) = life {
                    o.insert("max_token_lifetime_s".into(), json!(v));
                }
                if let Some(v) = bytes {
                    o.insert("max_token_bytes".into(), json!(v));
                }
                if let Some(v) = depth {
                    o.insert("delegation".into(), json!({"max_depth": v}));
                }
                if let Some(v) = cache {
                    o.insert("cache".into(), json!({"max_entries": v}));
                }
                if no_routes {
                    o.remove("routes");
                }
                if no_feed {
                    o["agents"].as_object_mut().unwrap().remove("feed");
                }
                if let Some(v) = cp {
                    o.insert("audit".into(), json!({"checkpoint_s": v}));
                }
                p
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// What the parser accepts, printed again and parsed again, is the same configuration;
    /// what it refuses, it refuses again with the same problems.
    #[test]
    fn accepted_configs_round_trip(v in config_variant()) {
        let text = serde_json::to_vec(&v).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        match (Config::from_json(&text), Config::from_json(&pretty)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "compact and pretty disagree: {:?} / {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

fn request_strategy() -> impl Strategy<Value = (usize, String, String, bool)> {
    (
        0usize..8,
        prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("HEAD")]
            .prop_map(str::to_owned),
        "/(tickets|tenants/acme|mail/send|status|x)(/[a-z0-9]{0,6}){0,2}",
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same requests at the same clock get the same decisions from two engines, and from
    /// one engine again (the cache changes nothing but `cached`).
    #[test]
    fn decisions_are_deterministic_for_a_fixed_clock(reqs in prop::collection::vec(request_strategy(), 1..6)) {
        let mut a = Engine::new(config(), Box::new(PureRust), DecisionIds::new(9));
        let mut b = Engine::new(config(), Box::new(PureRust), DecisionIds::new(9));
        a.start_feed_clock(NOW as f64);
        b.start_feed_clock(NOW as f64);
        let toks = tokens();
        let strip = |mut v: Value| {
            if let Some(t) = v.get_mut("token").and_then(Value::as_object_mut) {
                t.remove("cached");
            }
            v.as_object_mut().unwrap().remove("decision_id");
            v
        };
        for (which, method, path, with_token) in reqs {
            let auth = match (with_token, which) {
                (false, _) => vec![],
                (true, 6) => vec![b"Bearer not.a.token".to_vec()],
                (true, 7) => vec![format!("Bearer {}", toks[0]).into_bytes(); 2],
                (true, i) => vec![format!("Bearer {}", toks[i]).into_bytes()],
            };
            let req = Request { body: None, method, path, host: "api".into(), authorization: auth, headers: vec![], client: None, ..Request::default() };
            let first = a.evaluate(&req, NOW as f64).to_json();
            prop_assert_eq!(&first, &b.evaluate(&req, NOW as f64).to_json());
            let again = a.evaluate(&req, NOW as f64).to_json();
            prop_assert_eq!(&again, &b.evaluate(&req, NOW as f64).to_json());
            prop_assert_eq!(strip(first), strip(again));
        }
    }
}

/// A request line an attacker might send: path segments mixing dot segments, escapes,
/// empty segments and separators; a method in any case; headers including the filter's
/// own names in other spellings and repeated copies.
fn hostile_request() -> impl Strategy<Value = (String, String, Vec<(String, String)>)> {
    let segment = prop::sample::select(vec![
        "tickets", "mail", "send", "tenants", "acme", "globex", "status", "ticketsX", "..", ".",
        "", "%2e%2e", "%2E", ".%2e", "%2f", "%5c", ";x", "%7e1", "%41", "a%3Ab", "%00", "\\",
    ]);
    let path = (
        prop::collection::vec(segment, 0..6),
        prop::option::of(prop::sample::select(vec!["q=1", "a=/../b", "x=%2F", ""])),
        any::<bool>(),
    )
        .prop_map(|(segs, query, absolute)| {
            let mut p = if absolute {
                "http://api".to_owned()
            } else {
                String::new()
            };
            p.push('/');
            p.push_str(&segs.join("/"));
            if let Some(q) = query {
                p.push('?');
                p.push_str(q);
            }
            p
        });
    let method = prop::sample::select(vec![
        "GET", "get", "POST", "post", "DELETE", "HEAD", "Head", "PROPFIND", "PATCH",
    ]);
    let header = prop::sample::select(vec![
        ("x-agent-tenant", "acme"),
        ("x_agent_tenant", "acme"),
        ("X_Agent_Scopes", "admin"),
        ("x-task", "a"),
        ("x-task", "b"),
        ("accept", "a"),
        ("accept", "b"),
        ("user-agent", "p"),
    ]);
    (
        path,
        method.prop_map(str::to_owned),
        prop::collection::vec(
            header.prop_map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())),
            0..4,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Differential: whenever the pipeline allows, the target it sends upstream is the
    /// canonical form of what the client sent, the route is the one that canonical path
    /// matches, and deciding on the canonical request (upper-case method, canonical path)
    /// gives the same answer. A request the pipeline refuses for its target or method is
    /// one the canonicaliser or the method list rejects.
    #[test]
    fn decisions_hold_for_the_target_the_upstream_receives((path, method, headers) in hostile_request(), which in 0usize..6) {
        use agent_iam::target::{canonical, Semicolons};
        let cfg = config();
        let mut engine = Engine::new(config(), Box::new(PureRust), DecisionIds::new(3));
        engine.start_feed_clock(NOW as f64);
        let auth = vec![format!("Bearer {}", tokens()[which]).into_bytes()];
        let req = Request { body: None, method: method.clone(), path: path.clone(), host: "api".into(), authorization: auth, headers, client: None, ..Request::default() };
        let d = engine.evaluate(&req, NOW as f64);
        let target = canonical(&path, Semicolons::Reject);
        let reason = d.reason.map(|r| r.as_str());
        if !cfg.methods.contains(&method) {
            prop_assert_eq!(reason, Some("request.method"));
        } else if target.is_err() {
            prop_assert_eq!(reason, Some("request.target"));
        }
        if let Ok(t) = &target {
            prop_assert_eq!(&d.path, &t.to_target());
            prop_assert_eq!(d.rewrite.is_some(), t.to_target() != path);
        }
        if d.allowed() {
            let t = target.unwrap();
            let expected = cfg.route_for(&method, &t.path).map(|r| r.name.clone());
            prop_assert_eq!(&d.route, &expected);
            prop_assert!(method.bytes().all(|b| b.is_ascii_uppercase()));
            let upstream = Request { path: d.rewrite.clone().unwrap_or(path.clone()), ..req.clone() };
            let again = engine.evaluate(&upstream, NOW as f64);
            prop_assert_eq!(again.reason, d.reason);
            prop_assert_eq!(&again.route, &d.route);
            prop_assert_eq!(&again.path, &d.path);
            prop_assert!(again.rewrite.is_none());
        }
    }
}
