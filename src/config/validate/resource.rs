//! `protected_resource` (RFC 9728: an `https` resource the issuers' tokens are meant for)
//! and `scope_implies` (closed over: a scope grants what the scopes it implies grant).

use std::collections::BTreeMap;

use super::problem;
use crate::config::raw::ProtectedResourceConfig;
use crate::mcp::ProtectedResource;
use crate::problem::Problem;
use crate::token::Issuer;

pub(super) fn protected_resource(
    pr: ProtectedResourceConfig,
    issuers: &[Issuer],
    out: &mut Vec<Problem>,
) -> ProtectedResource {
    let p = "$.protected_resource";
    let derived = crate::mcp::metadata_location(&pr.resource);
    if let Err(e) = &derived {
        out.push(problem(format!("{p}.resource"), e.clone()));
    }
    if !issuers.iter().any(|i| i.audiences.contains(&pr.resource)) {
        out.push(problem(
            format!("{p}.resource"),
            format!(
                "\"{}\" is not an audience of any issuer: tokens for it would all be refused (RFC 8707)",
                pr.resource
            ),
        ));
    }
    if pr.authorization_servers.is_empty() {
        out.push(problem(
            format!("{p}.authorization_servers"),
            "name at least one authorization server",
        ));
    }
    for (i, a) in pr.authorization_servers.iter().enumerate() {
        if !a.starts_with("https://") || a.chars().any(|c| c.is_control() || c == ' ') {
            out.push(problem(
                format!("{p}.authorization_servers[{i}]"),
                format!("\"{a}\" is not an https URL"),
            ));
        }
    }
    let (url, path) = derived.unwrap_or_default();
    ProtectedResource {
        resource: pr.resource,
        authorization_servers: pr.authorization_servers,
        resource_name: pr.resource_name,
        metadata_url: url,
        metadata_path: path,
    }
}

/// Each scope with every scope it grants (the closure, cycles allowed: they only mean
/// the scopes grant each other).
pub(super) fn scope_implies(
    map: &BTreeMap<String, Vec<String>>,
    out: &mut Vec<Problem>,
) -> Vec<(String, Vec<String>)> {
    for (scope, implied) in map {
        let at = format!("$.scope_implies[{scope:?}]");
        if !crate::agents::is_scope_token(scope) {
            out.push(problem(&at, format!("\"{scope}\" is not a scope")));
        }
        for (j, s) in implied.iter().enumerate() {
            if !crate::agents::is_scope_token(s) {
                out.push(problem(
                    format!("{at}[{j}]"),
                    format!("\"{s}\" is not a scope"),
                ));
            }
        }
    }
    map.keys()
        .map(|scope| {
            let mut granted: Vec<String> = Vec::new();
            let mut todo: Vec<&String> = map.get(scope).into_iter().flatten().collect();
            while let Some(s) = todo.pop() {
                if s != scope && !granted.contains(s) {
                    granted.push(s.clone());
                    todo.extend(map.get(s).into_iter().flatten());
                }
            }
            granted.sort();
            (scope.clone(), granted)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use serde_json::json;

    fn plugin() -> serde_json::Value {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        crate::dev::demo_plugin_config(&keys)
    }

    #[test]
    fn the_resource_must_be_an_audience_and_its_metadata_url_is_derived() {
        let mut p = plugin();
        let audience = p["issuers"][0]["audiences"][0].as_str().unwrap().to_owned();
        p["protected_resource"] = json!({"resource": audience,
            "authorization_servers": ["https://idp.agent-iam.test"], "resource_name": "Tickets"});
        if audience.starts_with("https://") {
            let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
            let pr = cfg.protected_resource.unwrap();
            assert!(pr
                .metadata_path
                .starts_with("/.well-known/oauth-protected-resource"));
            assert_eq!(
                pr.document(&["tickets:read".into()])["resource_name"],
                "Tickets"
            );
        }
        p["protected_resource"]["resource"] = json!("https://elsewhere.test/mcp");
        p["protected_resource"]["authorization_servers"] = json!(["http://idp"]);
        let text = Config::from_json(p.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(
                "$.protected_resource.resource: \"https://elsewhere.test/mcp\" is not an audience"
            ),
            "{text}"
        );
        assert!(
            text.contains("$.protected_resource.authorization_servers[0]"),
            "{text}"
        );
    }

    #[test]
    fn implied_scopes_are_closed_over() {
        let mut p = plugin();
        p["scope_implies"] = json!({"tickets:admin": ["tickets:write"],
            "tickets:write": ["tickets:read"], "a": ["b"], "b": ["a"]});
        let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
        let of = |s: &str| {
            cfg.scope_implies
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            of("tickets:admin"),
            Some(vec!["tickets:read".into(), "tickets:write".into()])
        );
        assert_eq!(of("a"), Some(vec!["b".into()]));
        p["scope_implies"] = json!({"bad scope": ["x y"]});
        let text = Config::from_json(p.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(text.contains("$.scope_implies[\"bad scope\"][0]"), "{text}");
    }
}
