//! `upstream`: the identity header names and the reserved header prefix.

use super::problem;
use crate::config::raw::HeaderNames;
use crate::problem::Problem;

/// Lower-case header names, none of them a credential or routing header, no two alike.
pub(super) fn identity_headers(headers: &HeaderNames, out: &mut Vec<Problem>) {
    let names = headers.all();
    for (field, name) in ["agent", "principal", "chain", "scopes", "decision_id"]
        .iter()
        .zip(names)
    {
        let path = format!("$.upstream.headers.{field}");
        if !valid_header_name(name) {
            out.push(problem(
                path,
                format!("\"{name}\" is not a lower-case header name"),
            ));
        } else if name == "authorization" || name == "host" || name == "cookie" {
            out.push(problem(
                path,
                format!("\"{name}\" cannot be an identity header"),
            ));
        } else if names.iter().filter(|n| **n == name).count() > 1 {
            out.push(problem(
                path,
                format!("\"{name}\" is used for two identity headers"),
            ));
        }
    }
}

/// The reserved prefix in its canonical form (`_` as `-`; empty: none).
pub(super) fn reserved_prefix(written: &str, out: &mut Vec<Problem>) -> String {
    let prefix = written.replace('_', "-");
    if !prefix.is_empty() && !valid_header_name(&prefix) {
        out.push(problem(
            "$.upstream.reserved_prefix",
            format!("\"{written}\" is not a lower-case header name prefix"),
        ));
    }
    prefix
}

/// A header name the filter may set: lower-case letters, digits and `-`. No `_`: CGI and
/// WSGI upstreams read `x_a` and `x-a` as the same variable.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
