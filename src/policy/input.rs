//! The policy `input` document (DESIGN.md "Policy contract"), built directly as regorus
//! values: no JSON text round trip on the request path.

use std::collections::{BTreeMap, HashMap};

use super::value::{object, opt_str, strings, to_rego_object};
use crate::agents::{AgentRecord, AgentStatus, Registry};
use crate::cache::TokenHash;
use crate::decision::Request;
use crate::delegation::AgentContext;
use crate::route::Route;
use crate::target::Target;
use crate::token::VerifiedToken;

fn record_value(r: &AgentRecord) -> regorus::Value {
    let status = match r.status {
        AgentStatus::Active => "active",
        AgentStatus::Suspended => "suspended",
        AgentStatus::Retired => "retired",
    };
    object([
        ("id", regorus::Value::from(r.id.as_str())),
        ("status", regorus::Value::from(status)),
        ("owner", opt_str(r.owner.as_deref())),
        (
            "max_scopes",
            strings(r.max_scopes.iter().map(String::as_str)),
        ),
        (
            "may_act_for",
            strings(r.may_act_for.iter().map(String::as_str)),
        ),
        (
            "may_delegate_to",
            strings(r.may_delegate_to.iter().map(String::as_str)),
        ),
        (
            "not_after",
            r.not_after
                .map_or(regorus::Value::Null, regorus::Value::from),
        ),
    ])
}

/// The parts of `input` that only depend on the verified token and the registry: the same
/// for every request that presents the same token under the same registry.
#[derive(Clone)]
struct Identity {
    subject: regorus::Value,
    agent: regorus::Value,
    chain: regorus::Value,
    token: regorus::Value,
    scopes: regorus::Value,
}

fn identity(token: &VerifiedToken, agent: &AgentContext, registry: &Registry) -> Identity {
    use regorus::Value as V;
    let chain = V::from(
        token
            .chain
            .iter()
            .map(|a| {
                object([
                    ("sub", V::from(a.sub.as_str())),
                    ("iss", opt_str(a.iss.as_deref())),
                ])
            })
            .collect::<Vec<_>>(),
    );
    let record = registry.lookup(&token.agent).map_or(V::Null, record_value);
    Identity {
        subject: object([("id", V::from(token.subject.as_str()))]),
        agent: object([
            ("id", V::from(token.agent.as_str())),
            ("type", opt_str(token.agent_type.as_deref())),
            ("tenant", opt_str(token.tenant.as_deref())),
            ("client", opt_str(token.client.as_deref())),
            ("profile", V::from(token.profile)),
            ("registered", V::from(agent.record_id.is_some())),
            ("record", record),
        ]),
        chain,
        token: to_rego_object(&token.claims),
        scopes: object([
            (
                "requested",
                strings(agent.requested.iter().map(String::as_str)),
            ),
            (
                "effective",
                strings(agent.effective.iter().map(String::as_str)),
            ),
        ]),
    }
}

fn route_value(route: Option<&Route>) -> regorus::Value {
    use regorus::Value as V;
    route.map_or(V::Null, |r| {
        object([
            ("name", V::from(r.name.as_str())),
            (
                "required_scopes",
                strings(r.required_scopes.iter().map(String::as_str)),
            ),
        ])
    })
}

/// Headers that may be sent more than once: RFC 9110 list-valued fields (and `cookie`,
/// RFC 6265 §5.4), whose copies mean one value joined with `, ` (`; ` for `cookie`).
/// Any other repeated header is refused before a policy sees it (`request.header_repeated`):
/// upstreams disagree on which copy they read.
pub const LIST_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "baggage",
    "cache-control",
    "cookie",
    "forwarded",
    "if-match",
    "if-none-match",
    "te",
    "tracestate",
    "via",
    "x-forwarded-for",
];

/// The first header (lower-case name) sent more than once that is not list-valued.
pub fn repeated_header(headers: &[(String, String)]) -> Option<&str> {
    let mut seen = std::collections::HashSet::with_capacity(headers.len());
    headers
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| !seen.insert(*k) && !LIST_HEADERS.contains(k))
}

/// What `input.request` is built from.
pub struct RequestView<'a> {
    pub req: &'a Request,
    /// The canonical target (`input.request.path`, `segments`, `query`).
    pub target: &'a Target,
    /// The canonical host (lower case, no trailing `.`).
    pub host: &'a str,
    /// Header names the policy never sees: the filter's own (removed from the request).
    pub hidden: &'a dyn Fn(&str) -> bool,
    /// `input.mcp`: the MCP call the body carries (MCP routes only).
    pub mcp: Option<regorus::Value>,
    /// `input.proof`: the request's verified DPoP proof (null without one).
    pub proof: Option<&'a crate::dpop::ProofFacts>,
}

/// `input.proof`: what the DPoP proof bound (its key's thumbprint, base64url).
fn proof_value(proof: Option<&crate::dpop::ProofFacts>) -> regorus::Value {
    use base64::Engine as _;
    use regorus::Value as V;
    proof.map_or(V::Null, |p| {
        let jkt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(p.jkt);
        object([
            ("jkt", V::from(jkt.as_str())),
            ("htm", V::from(p.htm.as_str())),
            ("htu", V::from(p.htu.as_str())),
            ("iat", V::from(p.iat)),
        ])
    })
}

fn headers_value(view: &RequestView<'_>) -> regorus::Value {
    use regorus::Value as V;
    let mut out: BTreeMap<V, V> = BTreeMap::new();
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in &view.req.headers {
        if k == "authorization" || (view.hidden)(k) {
            continue;
        }
        match joined.get_mut(k.as_str()) {
            Some(all) => {
                all.push_str(if k == "cookie" { "; " } else { ", " });
                all.push_str(v);
            }
            None => {
                joined.insert(k.as_str(), v.clone());
            }
        }
    }
    for (k, v) in joined {
        out.insert(V::from(k), V::from(v.as_str()));
    }
    V::from(out)
}

fn assemble(
    id: Identity,
    view: &RequestView<'_>,
    now: f64,
    route: regorus::Value,
    keys: &Keys,
) -> regorus::Value {
    use regorus::Value as V;
    let t = view.target;
    let request = V::from(BTreeMap::from([
        (keys.method.clone(), V::from(view.req.method.as_str())),
        (keys.path.clone(), V::from(t.path.as_str())),
        (keys.segments.clone(), strings(t.segments())),
        (keys.query.clone(), opt_str(t.query.as_deref())),
        (keys.host.clone(), V::from(view.host)),
        (keys.headers.clone(), headers_value(view)),
    ]));
    let time = V::from(BTreeMap::from([
        (keys.now.clone(), V::from(now)),
        (keys.now_ns.clone(), V::from((now * 1e9) as i64)),
    ]));
    let mut input = BTreeMap::from([
        (keys.subject.clone(), id.subject),
        (keys.agent.clone(), id.agent),
        (keys.chain.clone(), id.chain),
        (keys.token.clone(), id.token),
        (keys.request.clone(), request),
        (keys.route.clone(), route),
        (keys.scopes.clone(), id.scopes),
        (keys.time.clone(), time),
    ]);
    if let Some(mcp) = &view.mcp {
        input.insert(V::from("mcp"), mcp.clone());
    }
    input.insert(V::from("proof"), proof_value(view.proof));
    V::from(input)
}

/// Object keys of the per-request parts, allocated once.
struct Keys {
    subject: regorus::Value,
    agent: regorus::Value,
    chain: regorus::Value,
    token: regorus::Value,
    request: regorus::Value,
    route: regorus::Value,
    scopes: regorus::Value,
    time: regorus::Value,
    method: regorus::Value,
    path: regorus::Value,
    segments: regorus::Value,
    query: regorus::Value,
    host: regorus::Value,
    headers: regorus::Value,
    now: regorus::Value,
    now_ns: regorus::Value,
}

impl Keys {
    fn new() -> Keys {
        let k = regorus::Value::from;
        Keys {
            subject: k("subject"),
            agent: k("agent"),
            chain: k("chain"),
            token: k("token"),
            request: k("request"),
            route: k("route"),
            scopes: k("scopes"),
            time: k("time"),
            method: k("method"),
            path: k("path"),
            segments: k("segments"),
            query: k("query"),
            host: k("host"),
            headers: k("headers"),
            now: k("now"),
            now_ns: k("now_ns"),
        }
    }
}

/// `input.mcp` for the policy: the call's method, name, protocol version and arguments
/// (all of them: the body is bounded by `max_body_bytes` and its nesting by the parser, and
/// a policy that could not see some arguments would decide on less than the server runs).
pub fn mcp_value(msg: &crate::mcp::Message) -> regorus::Value {
    let arguments = msg
        .arguments
        .as_ref()
        .map_or(regorus::Value::Null, super::value::to_rego);
    object([
        ("method", regorus::Value::from(msg.method.as_str())),
        ("name", opt_str(msg.name.as_deref())),
        ("protocol_version", opt_str(msg.protocol_version.as_deref())),
        ("arguments", arguments),
        ("response", regorus::Value::from(false)),
    ])
}

/// `input.mcp` for a body that is a 2025-11-25 client's JSON-RPC response (no call).
pub fn mcp_response_value() -> regorus::Value {
    object([
        ("method", regorus::Value::Null),
        ("name", regorus::Value::Null),
        ("protocol_version", regorus::Value::Null),
        ("arguments", regorus::Value::Null),
        ("response", regorus::Value::from(true)),
    ])
}

/// Most tokens kept in the identity cache (it is emptied when full).
const MAX_IDENTITIES: usize = 1024;

/// Builds `input` documents, reusing what does not change between requests: the identity
/// part per token hash (until the registry changes: `clear`) and the route part per route.
/// The result always equals a from-scratch build (unit-tested).
pub struct InputBuilder {
    keys: Keys,
    identities: HashMap<TokenHash, Identity>,
    /// Route name → (its required scopes, its value): the value depends on nothing else.
    routes: HashMap<String, (Vec<String>, regorus::Value)>,
}

impl Default for InputBuilder {
    fn default() -> Self {
        InputBuilder {
            keys: Keys::new(),
            identities: HashMap::new(),
            routes: HashMap::new(),
        }
    }
}

impl InputBuilder {
    /// Forgets the cached identities (the registry changed).
    pub fn clear(&mut self) {
        self.identities.clear();
    }

    pub fn build(
        &mut self,
        view: &RequestView<'_>,
        now: f64,
        token: &VerifiedToken,
        agent: &AgentContext,
        route: Option<&Route>,
        registry: &Registry,
    ) -> regorus::Value {
        let id = match self.identities.get(&token.sha256) {
            Some(id) => id.clone(),
            None => {
                if self.identities.len() >= MAX_IDENTITIES {
                    self.identities.clear();
                }
                let id = identity(token, agent, registry);
                self.identities.insert(token.sha256, id.clone());
                id
            }
        };
        let route = match route {
            None => regorus::Value::Null,
            Some(r) => match self.routes.get(&r.name) {
                // Unnamed routes may share a derived name: the scopes must match too.
                Some((scopes, v)) if *scopes == r.required_scopes => v.clone(),
                _ => {
                    let v = route_value(Some(r));
                    self.routes
                        .insert(r.name.clone(), (r.required_scopes.clone(), v.clone()));
                    v
                }
            },
        };
        assemble(id, view, now, route, &self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Alg;
    use crate::route::PathMatch;
    use crate::token::Actor;

    /// The `input` document built from scratch: the reference the cached builder must equal.
    fn policy_input(
        req: &RequestView<'_>,
        now: f64,
        token: &VerifiedToken,
        agent: &AgentContext,
        route: Option<&Route>,
        registry: &Registry,
    ) -> regorus::Value {
        assemble(
            identity(token, agent, registry),
            req,
            now,
            route_value(route),
            &Keys::new(),
        )
    }

    fn token(sub: &str, hash: u8, chain: &[&str]) -> VerifiedToken {
        let claims =
            serde_json::json!({"sub": sub, "tenant": "acme", "n": [1, 2.5, null, {"a": true}]});
        VerifiedToken {
            issuer: "https://idp".into(),
            subject: sub.into(),
            agent: chain.first().copied().unwrap_or(sub).into(),
            chain: chain
                .iter()
                .map(|s| Actor {
                    sub: (*s).into(),
                    iss: None,
                })
                .collect(),
            profile: "rfc8693",
            agent_type: None,
            tenant: None,
            client: None,
            audiences: vec![],
            scopes: vec!["a:read".into()],
            jti: None,
            exp: 0.0,
            iat: 0.0,
            nbf: None,
            kid: "k".into(),
            alg: Alg::Es256,
            sha256: [hash; 32],
            binding: Default::default(),
            claims: claims.as_object().unwrap().clone(),
        }
    }

    fn registry(status: AgentStatus) -> Registry {
        let r = AgentRecord {
            id: "agent:a".into(),
            status,
            owner: Some("team".into()),
            max_scopes: vec!["a:*".into()],
            may_act_for: vec!["user:*".into()],
            may_delegate_to: vec![],
            not_after: Some(1),
            released_at: None,
        };
        Registry::new("v1".into(), vec![r], "$").unwrap()
    }

    /// The cached builder answers exactly what a from-scratch build answers, across tokens,
    /// routes (including two routes sharing a name), requests and a registry change.
    #[test]
    fn cached_input_equals_fresh_input() {
        let agent = AgentContext {
            record_id: Some("agent:a".into()),
            owner: None,
            requested: vec!["a:read".into()],
            effective: vec!["a:read".into()],
        };
        let r1 = Route {
            name: "same".into(),
            path: Some(PathMatch::Prefix("/a".into())),
            audit_policy_input: false,
            methods: vec![],
            required_scopes: vec!["a:read".into()],
            mcp: None,
            mode: None,
        };
        let r2 = Route {
            required_scopes: vec!["b:read".into()],
            ..r1.clone()
        };
        let tokens = [
            token("user:alice", 1, &["agent:a"]),
            token("agent:a", 2, &[]),
        ];
        let mut b = InputBuilder::default();
        for reg in [
            registry(AgentStatus::Active),
            registry(AgentStatus::Suspended),
        ] {
            b.clear();
            for round in 0..2 {
                for t in &tokens {
                    for route in [None, Some(&r1), Some(&r2)] {
                        let req = Request {
                            body: None,
                            client: None,
                            method: "GET".into(),
                            path: format!("/a/{round}"),
                            host: "h".into(),
                            authorization: vec![],
                            headers: vec![
                                ("authorization".into(), "x".into()),
                                ("x-n".into(), round.to_string()),
                                ("x-agent-tenant".into(), "forged".into()),
                            ],
                            ..Request::default()
                        };
                        let now = 1000.5 + f64::from(round);
                        let target =
                            crate::target::canonical(&req.path, crate::target::Semicolons::Reject)
                                .unwrap();
                        let view = RequestView {
                            req: &req,
                            target: &target,
                            host: "h",
                            hidden: &|k| k.starts_with("x-agent-"),
                            mcp: None,
                            proof: None,
                        };
                        let fresh = policy_input(&view, now, t, &agent, route, &reg);
                        let cached = b.build(&view, now, t, &agent, route, &reg);
                        assert_eq!(fresh, cached);
                        assert_eq!(
                            fresh["request"]["headers"]["authorization"],
                            regorus::Value::Undefined
                        );
                        assert_eq!(
                            fresh["request"]["headers"]["x-agent-tenant"],
                            regorus::Value::Undefined
                        );
                        assert_eq!(
                            fresh["request"]["segments"],
                            strings(["a", round.to_string().as_str()])
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn repeated_headers_are_found_unless_list_valued() {
        assert_eq!(repeated_header(&h(&[("x-a", "1"), ("x-b", "2")])), None);
        assert_eq!(
            repeated_header(&h(&[("x-a", "1"), ("accept", "a"), ("x-a", "2")])),
            Some("x-a")
        );
        assert_eq!(
            repeated_header(&h(&[("accept", "a"), ("accept", "b"), ("cookie", "c")])),
            None
        );
    }

    #[test]
    fn list_valued_copies_are_joined() {
        let req = Request {
            headers: h(&[
                ("accept", "a"),
                ("cookie", "x=1"),
                ("accept", "b"),
                ("cookie", "y=2"),
            ]),
            ..Request::default()
        };
        let target = crate::target::canonical("/", crate::target::Semicolons::Reject).unwrap();
        let view = RequestView {
            req: &req,
            target: &target,
            host: "",
            hidden: &|_| false,
            mcp: None,
            proof: None,
        };
        let v = headers_value(&view);
        assert_eq!(v["accept"], regorus::Value::from("a, b"));
        assert_eq!(v["cookie"], regorus::Value::from("x=1; y=2"));
    }
}
