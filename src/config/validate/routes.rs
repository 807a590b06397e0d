//! `routes[]`: exactly one of `prefix` / `exact` (or neither, for a route only Envoy's
//! route metadata selects), written in canonical form (requests are matched in canonical
//! form: a route written otherwise would never match), methods and scopes that are
//! tokens, and names that identify one route each.

use super::problem;
use crate::config::raw::{McpRouteConfig, OtherTools, RouteConfig};
use crate::problem::Problem;
use crate::route::{Mcp, PathMatch, ResourceMatch, Route};
use crate::target::{canonical, is_method_name, Semicolons};

/// Every well-formed route (one without a path is left out; its problem is reported).
pub(super) fn check(
    routes: &[RouteConfig],
    route_metadata: bool,
    out: &mut Vec<Problem>,
) -> Vec<Route> {
    let mut valid = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let p = format!("$.routes[{i}]");
        let path = match (&r.prefix, &r.exact) {
            (Some(x), None) => Some(PathMatch::Prefix(x.clone())),
            (None, Some(x)) => Some(PathMatch::Exact(x.clone())),
            (None, None) if route_metadata => None,
            (None, None) => {
                out.push(problem(
                    p,
                    "exactly one of `prefix` or `exact` is required (or neither, for a route Envoy's route metadata selects: set `route_metadata: true`)",
                ));
                continue;
            }
            _ => {
                out.push(problem(p, "exactly one of `prefix` or `exact` is required"));
                continue;
            }
        };
        if let Some(PathMatch::Prefix(x) | PathMatch::Exact(x)) = &path {
            canonical_path(&p, x, out);
        }
        for (j, m) in r.methods.iter().enumerate() {
            if !is_method_name(m) {
                out.push(problem(
                    format!("{p}.methods[{j}]"),
                    format!("\"{m}\" is not an upper-case HTTP method"),
                ));
            }
        }
        for (j, sc) in r.required_scopes.iter().enumerate() {
            if !crate::agents::is_scope_token(sc) {
                out.push(problem(
                    format!("{p}.required_scopes[{j}]"),
                    format!("\"{sc}\" is not a scope"),
                ));
            }
        }
        let name = match (&r.name, &path) {
            (Some(n), _) => n.clone(),
            (None, Some(PathMatch::Prefix(x))) => format!("{x}*"),
            (None, Some(PathMatch::Exact(x))) => x.clone(),
            (None, None) => {
                out.push(problem(
                    &p,
                    "a route without `prefix` or `exact` needs a `name`: the one Envoy's route metadata gives",
                ));
                continue;
            }
        };
        // The name identifies the route: in audit events and metrics, to the policy, to
        // Envoy's route metadata and when an MCP call resumes with its body.
        if valid.iter().any(|v: &Route| v.name == name) {
            out.push(problem(
                format!("{p}.name"),
                format!(
                    "another route is already named \"{name}\": every route's name must be unique"
                ),
            ));
        }
        if name.is_empty() || name.chars().any(char::is_control) {
            out.push(problem(
                format!("{p}.name"),
                "a route's name is not empty and has no control characters",
            ));
        }
        if name == crate::pipeline::METADATA_ROUTE {
            out.push(problem(
                format!("{p}.name"),
                format!("\"{name}\" names the filter's answers of its protected resource metadata"),
            ));
        }
        let mcp = r
            .mcp
            .as_ref()
            .map(|m| mcp(&format!("{p}.mcp"), m, &r.methods, out));
        valid.push(Route {
            name,
            path,
            methods: r.methods.clone(),
            required_scopes: r.required_scopes.clone(),
            mcp,
            mode: r.mode,
            audit_policy_input: r.audit_policy_input,
        });
    }
    shadowed_mcp(&valid, out);
    valid
}

/// The route's path starts with `/` and is its own canonical form.
fn canonical_path(p: &str, text: &str, out: &mut Vec<Problem>) {
    if !text.starts_with('/') {
        out.push(problem(p, format!("path \"{text}\" must start with `/`")));
        return;
    }
    match canonical(text, Semicolons::Allow) {
        Ok(t) if t.query.is_none() && t.path == text => {}
        Ok(t) if t.query.is_none() => out.push(problem(
            p,
            format!(
                "path \"{text}\" is not in canonical form; write \"{}\"",
                t.path
            ),
        )),
        _ => out.push(problem(
            p,
            format!(
                "path \"{text}\" is not a canonical path (no query, `%2F`, `\\\\` or control characters)"
            ),
        )),
    }
}

/// A route without `mcp` whose path lies inside an MCP route's would decide MCP requests
/// without reading their body: a configuration error.
fn shadowed_mcp(routes: &[Route], out: &mut Vec<Problem>) {
    for (i, r) in routes.iter().enumerate() {
        if r.mcp.is_some() {
            continue;
        }
        let Some(PathMatch::Prefix(path) | PathMatch::Exact(path)) = &r.path else {
            continue;
        };
        if let Some(m) = routes.iter().find(|m| m.mcp.is_some() && m.covers(path)) {
            out.push(problem(
                format!("$.routes[{i}]"),
                format!(
                    "\"{path}\" lies inside the MCP route `{}`: every request there is an MCP request, decided on its body (give this route an `mcp` section, or move it)",
                    m.name
                ),
            ));
        }
    }
}

/// `routes[].mcp`: names and scopes that are tokens, resource prefixes written with a
/// trailing `*`, a body bound the filter can hold, and a route that takes POSTs.
fn mcp(p: &str, m: &McpRouteConfig, methods: &[String], out: &mut Vec<Problem>) -> Mcp {
    if !methods.is_empty() && !methods.iter().any(|x| x == "POST") {
        out.push(problem(
            p,
            "an MCP route must take POST (its `methods` leave it out)",
        ));
    }
    if !(1..=crate::mcp::MAX_BUFFERED_BYTES as u64).contains(&m.max_body_bytes) {
        out.push(problem(
            format!("{p}.max_body_bytes"),
            format!(
                "{} is outside 1..={} (Envoy refuses, unaudited, what goes over its 1 MiB buffer)",
                m.max_body_bytes,
                crate::mcp::MAX_BUFFERED_BYTES
            ),
        ));
    }
    let mut entries = |kind: &str, map: &std::collections::BTreeMap<String, Vec<String>>| {
        let mut v = Vec::new();
        for (name, scopes) in map {
            let at = format!("{p}.{kind}[{name:?}]");
            if name.is_empty() || name.chars().any(char::is_control) {
                out.push(problem(
                    &at,
                    "a name must be non-empty, without control characters",
                ));
            }
            for (j, sc) in scopes.iter().enumerate() {
                if !crate::agents::is_scope_token(sc) {
                    out.push(problem(
                        format!("{at}[{j}]"),
                        format!("\"{sc}\" is not a scope"),
                    ));
                }
            }
            v.push((name.clone(), scopes.clone()));
        }
        v
    };
    let tools = entries("tools", &m.tools);
    let prompts = entries("prompts", &m.prompts);
    let resources = entries("resources", &m.resources)
        .into_iter()
        .map(|(uri, s)| match uri.strip_suffix('*') {
            Some(prefix) => (ResourceMatch::Prefix(prefix.to_owned()), s),
            None => (ResourceMatch::Exact(uri), s),
        })
        .collect();
    Mcp {
        tools,
        resources,
        prompts,
        deny_unlisted: m.other_tools == OtherTools::Deny,
        filter_lists: m.filter_lists,
        audit_arguments: m.audit_arguments,
        max_body_bytes: usize::try_from(m.max_body_bytes).unwrap_or(usize::MAX),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use serde_json::json;

    fn plugin(mcp: serde_json::Value) -> serde_json::Value {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut p = crate::dev::demo_plugin_config(&keys);
        p["routes"] = json!([{"prefix": "/mcp", "methods": ["POST"], "mcp": mcp}]);
        p
    }

    #[test]
    fn mcp_routes_name_the_scopes_of_each_tool_resource_and_prompt() {
        let p = plugin(json!({"tools": {"search_tickets": ["tickets:read"],
                                        "create_ticket": ["tickets:write"]},
                              "resources": {"tickets://*": ["tickets:read"],
                                            "tickets://secret/1": ["tickets:admin"]}}));
        let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
        let mcp = cfg.routes[0].mcp.as_ref().unwrap();
        let scopes = |m: &str, n: &str| mcp.scopes_for(m, n).map(<[String]>::to_vec);
        assert_eq!(
            scopes("tools/call", "create_ticket"),
            Some(vec!["tickets:write".into()])
        );
        assert_eq!(
            scopes("tools/call", "drop_tables"),
            None,
            "unlisted: refused"
        );
        assert_eq!(
            scopes("resources/read", "tickets://7"),
            Some(vec!["tickets:read".into()])
        );
        assert_eq!(
            scopes("resources/read", "tickets://secret/1"),
            Some(vec!["tickets:admin".into()])
        );
        assert_eq!(scopes("resources/read", "mail://1"), None);
        assert_eq!(scopes("tools/list", ""), Some(vec![]));
        assert!(mcp.filter_lists && mcp.max_body_bytes == 65_536);

        let open = plugin(json!({"other_tools": "route"}));
        let cfg = Config::from_json(open.to_string().as_bytes()).unwrap();
        let mcp = cfg.routes[0].mcp.as_ref().unwrap();
        assert_eq!(mcp.scopes_for("tools/call", "anything"), Some(&[][..]));
    }

    #[test]
    fn a_route_inside_an_mcp_route_is_an_error() {
        let mut p = plugin(json!({}));
        p["routes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"exact": "/mcp/admin", "methods": ["POST"]}));
        let err = Config::from_json(p.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("$.routes[1]: \"/mcp/admin\" lies inside the MCP route"),
            "{err}"
        );
    }

    #[test]
    fn bad_mcp_sections_are_errors_with_their_paths() {
        let mut p = plugin(json!({"tools": {"": ["bad scope"]}, "max_body_bytes": 0, "bogus": 1}));
        let e = Config::from_json(p.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        p["routes"][0]["mcp"]
            .as_object_mut()
            .unwrap()
            .remove("bogus");
        p["routes"][0]["methods"] = json!(["GET"]);
        let text = Config::from_json(p.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        for want in [
            "$.routes[0].mcp: an MCP route must take POST",
            "$.routes[0].mcp.max_body_bytes: 0 is outside",
            "$.routes[0].mcp.tools[\"\"]: a name must be non-empty",
            "$.routes[0].mcp.tools[\"\"][0]: \"bad scope\" is not a scope",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }

    #[test]
    fn route_names_are_unique_and_pathless_routes_need_route_metadata_and_a_name() {
        let mut p = plugin(json!({}));
        p["routes"] = json!([
            {"name": "api", "prefix": "/a"},
            {"name": "api", "prefix": "/b"},
            {"prefix": "/c"},
            {"name": "/c*", "exact": "/d"},
            {"name": "envoy-only"},
        ]);
        let text = Config::from_json(p.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        for want in [
            "$.routes[1].name: another route is already named \"api\"",
            "$.routes[3].name: another route is already named \"/c*\"",
            "$.routes[4]: exactly one of `prefix` or `exact` is required (or neither, for a route Envoy's route metadata selects: set `route_metadata: true`)",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
        p["route_metadata"] = json!(true);
        p["routes"] = json!([{"name": "envoy-only", "required_scopes": ["a"]}, {}]);
        let text = Config::from_json(p.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("$.routes[1]: a route without `prefix` or `exact` needs a `name`"),
            "{text}"
        );
        p["routes"] = json!([{"name": "envoy-only", "required_scopes": ["a"]}]);
        let c = Config::from_json(p.to_string().as_bytes()).unwrap();
        assert!(c.route_for("GET", "/envoy-only").is_none());
        assert!(c.routes[0].path.is_none());
    }
}
