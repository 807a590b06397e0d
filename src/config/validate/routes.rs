//! `routes[]`: exactly one of `prefix` / `exact`, written in canonical form (requests are
//! matched in canonical form: a route written otherwise would never match), methods and
//! scopes that are tokens.

use super::problem;
use crate::config::raw::RouteConfig;
use crate::problem::Problem;
use crate::route::{PathMatch, Route};
use crate::target::{canonical, is_method_name, Semicolons};

/// Every well-formed route (one without a path is left out; its problem is reported).
pub(super) fn check(routes: &[RouteConfig], out: &mut Vec<Problem>) -> Vec<Route> {
    let mut valid = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let p = format!("$.routes[{i}]");
        let path = match (&r.prefix, &r.exact) {
            (Some(x), None) => PathMatch::Prefix(x.clone()),
            (None, Some(x)) => PathMatch::Exact(x.clone()),
            _ => {
                out.push(problem(p, "exactly one of `prefix` or `exact` is required"));
                continue;
            }
        };
        let text = match &path {
            PathMatch::Prefix(x) | PathMatch::Exact(x) => x,
        };
        canonical_path(&p, text, out);
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
        let name = r.name.clone().unwrap_or_else(|| match &path {
            PathMatch::Prefix(x) => format!("{x}*"),
            PathMatch::Exact(x) => x.clone(),
        });
        valid.push(Route {
            name,
            path,
            methods: r.methods.clone(),
            required_scopes: r.required_scopes.clone(),
        });
    }
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
