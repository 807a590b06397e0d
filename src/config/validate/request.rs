//! `request`: the methods accepted and how `;` in a path is read.

use super::problem;
use crate::config::raw::{RequestConfig, SemicolonMode};
use crate::problem::Problem;
use crate::route::Route;
use crate::target::{is_method_name, Semicolons, STANDARD_METHODS};

/// Every method a request may use: RFC 9110's and PATCH, those the routes name, then
/// `request.methods` (each an upper-case token).
pub(super) fn methods(
    request: &RequestConfig,
    routes: &[Route],
    out: &mut Vec<Problem>,
) -> Vec<String> {
    let mut methods: Vec<String> = STANDARD_METHODS.iter().map(|m| (*m).to_owned()).collect();
    for (j, m) in request.methods.iter().enumerate() {
        if !is_method_name(m) {
            out.push(problem(
                format!("$.request.methods[{j}]"),
                format!("\"{m}\" is not an upper-case HTTP method"),
            ));
        }
    }
    for m in routes
        .iter()
        .flat_map(|r| r.methods.iter())
        .chain(&request.methods)
    {
        if !methods.contains(m) {
            methods.push(m.clone());
        }
    }
    methods
}

pub(super) fn semicolons(mode: SemicolonMode) -> Semicolons {
    match mode {
        SemicolonMode::Reject => Semicolons::Reject,
        SemicolonMode::Allow => Semicolons::Allow,
    }
}
