//! The policy `input` document (DESIGN.md "Policy contract"), built directly as regorus
//! values: no JSON text round trip on the request path.

use crate::agents::{AgentContext, AgentRecord, AgentStatus, Registry};
use crate::config::Route;
use crate::pipeline::Request;
use crate::policy::{object, opt_str, strings, to_rego_object};
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

/// The policy's `input` document (DESIGN.md "Policy contract"), built directly as regorus
/// values: no JSON text round trip on the request path.
pub fn policy_input(
    req: &Request,
    now: f64,
    token: &VerifiedToken,
    agent: &AgentContext,
    route: Option<&Route>,
    registry: &Registry,
) -> regorus::Value {
    use regorus::Value as V;
    let headers = V::from(
        req.headers
            .iter()
            .filter(|(k, _)| k != "authorization")
            .map(|(k, v)| (V::from(k.as_str()), V::from(v.as_str())))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
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
    object([
        ("subject", object([("id", V::from(token.subject.as_str()))])),
        (
            "agent",
            object([
                ("id", V::from(token.agent.as_str())),
                ("registered", V::from(agent.record_id.is_some())),
                ("record", record),
            ]),
        ),
        ("chain", chain),
        ("token", to_rego_object(&token.claims)),
        (
            "request",
            object([
                ("method", V::from(req.method.as_str())),
                ("path", V::from(req.path.as_str())),
                ("host", V::from(req.host.as_str())),
                ("headers", headers),
            ]),
        ),
        (
            "route",
            route.map_or(V::Null, |r| {
                object([
                    ("name", V::from(r.name.as_str())),
                    (
                        "required_scopes",
                        strings(r.required_scopes.iter().map(String::as_str)),
                    ),
                ])
            }),
        ),
        (
            "scopes",
            object([
                (
                    "requested",
                    strings(agent.requested.iter().map(String::as_str)),
                ),
                (
                    "effective",
                    strings(agent.effective.iter().map(String::as_str)),
                ),
            ]),
        ),
        (
            "time",
            object([
                ("now", V::from(now)),
                ("now_ns", V::from((now * 1e9) as i64)),
            ]),
        ),
    ])
}
