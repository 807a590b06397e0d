//! `issuers[]`: names, audiences, algorithms, accepted types and exactly one key source
//! (inline `jwks`, every key parsed now, or a checked `jwks_uri`).

use serde_json::Value;

use super::problem;
use crate::config::raw::{AlgName, ClaimCondition, IssuerConfig, ProfileConfig};
use crate::keys::{parse_jwk, Alg, JwksUriConfig, VerifyKey};
use crate::problem::Problem;
use crate::profile::{Condition, Custom, Profile, Test, ID_JAG_TYP};
use crate::token::{normalize_typ, Issuer};

/// Every issuer, in order (an issuer with problems too: the caller discards the lot).
pub(super) fn check(raw: Vec<IssuerConfig>, out: &mut Vec<Problem>) -> Vec<Issuer> {
    if raw.is_empty() {
        out.push(problem("$.issuers", "at least one issuer is required"));
    }
    let mut issuers: Vec<Issuer> = Vec::new();
    for (i, ic) in raw.into_iter().enumerate() {
        let issuer = one(&format!("$.issuers[{i}]"), ic, &issuers, out);
        issuers.push(issuer);
    }
    issuers
}

/// One issuer at `p`; `earlier` are the issuers before it (names must differ).
fn one(p: &str, ic: IssuerConfig, earlier: &[Issuer], out: &mut Vec<Problem>) -> Issuer {
    if ic.issuer.is_empty() {
        out.push(problem(format!("{p}.issuer"), "must not be empty"));
    }
    if earlier.iter().any(|x| x.issuer == ic.issuer) {
        out.push(problem(
            format!("{p}.issuer"),
            format!("duplicate issuer \"{}\"", ic.issuer),
        ));
    }
    audiences(p, &ic.audiences, out);
    let algorithms = algorithms(p, &ic.algorithms, out);
    let profile = profile(&format!("{p}.profile"), &ic.profile, out);
    let accepted_types = match &ic.accepted_types {
        Some(types) => accepted_types(p, types, out),
        None => profile.default_types(),
    };
    let inline = key_source(p, &ic, out);
    let keys = inline_keys(p, inline, &algorithms, out);
    Issuer {
        issuer: ic.issuer,
        audiences: ic.audiences,
        algorithms,
        accepted_types,
        keys,
        remote: ic.jwks_uri,
        sender_constraint: ic.sender_constraint,
        profile,
    }
}

/// The profile, with its trust domains and claim pointers checked.
fn profile(p: &str, raw: &ProfileConfig, out: &mut Vec<Problem>) -> Profile {
    match raw {
        ProfileConfig::Rfc8693 => Profile::Rfc8693,
        ProfileConfig::EntraAgentId => Profile::EntraAgentId,
        ProfileConfig::Auth0Agents => Profile::Auth0Agents,
        ProfileConfig::OktaXaa => Profile::OktaXaa,
        ProfileConfig::Spiffe(s) => {
            let p = format!("{p}.spiffe.trust_domains");
            if s.trust_domains.is_empty() {
                out.push(problem(&p, "at least one trust domain is required"));
            }
            for (j, td) in s.trust_domains.iter().enumerate() {
                let id = format!("spiffe://{td}");
                if crate::profile::spiffe_trust_domain(&id) != Some(td.as_str()) {
                    out.push(problem(
                        format!("{p}[{j}]"),
                        format!("\"{td}\" is not a trust domain name (lower-case letters, digits, `.`, `-`, `_`)"),
                    ));
                }
                if s.trust_domains.iter().take(j).any(|t| t == td) {
                    out.push(problem(
                        format!("{p}[{j}]"),
                        format!("duplicate trust domain \"{td}\""),
                    ));
                }
            }
            Profile::Spiffe {
                trust_domains: s.trust_domains.clone(),
            }
        }
        ProfileConfig::Custom(c) => {
            let p = format!("{p}.custom");
            let ptr = |name: &str, v: &Option<String>, out: &mut Vec<Problem>| {
                if let Some(v) = v {
                    pointer(&format!("{p}.{name}"), v, out);
                }
                v.clone()
            };
            pointer(&format!("{p}.principal"), &c.principal, out);
            let require = c
                .require
                .iter()
                .enumerate()
                .filter_map(|(j, cond)| condition(&format!("{p}.require[{j}]"), cond, out))
                .collect();
            Profile::Custom(Custom {
                principal: c.principal.clone(),
                agent: ptr("agent", &c.agent, out),
                actor_chain: ptr("actor_chain", &c.actor_chain, out),
                agent_type: ptr("agent_type", &c.agent_type, out),
                tenant: ptr("tenant", &c.tenant, out),
                client: ptr("client", &c.client, out),
                require,
            })
        }
    }
}

/// A JSON Pointer into the claims (RFC 6901): `/` then reference tokens, `~` only as
/// `~0` / `~1`.
fn pointer(p: &str, v: &str, out: &mut Vec<Problem>) {
    let escapes_ok = v
        .split('~')
        .skip(1)
        .all(|rest| rest.starts_with('0') || rest.starts_with('1'));
    if !v.starts_with('/') || !escapes_ok {
        out.push(problem(
            p,
            format!(
                "\"{v}\" is not a JSON Pointer into the claims (e.g. \"/sub\", \"/ext/agent\")"
            ),
        ));
    }
}

fn condition(p: &str, c: &ClaimCondition, out: &mut Vec<Problem>) -> Option<Condition> {
    pointer(&format!("{p}.claim"), &c.claim, out);
    let test = match (&c.equals, c.present, &c.contains) {
        (Some(v), None, None) => Test::Equals(v.clone()),
        (None, Some(b), None) => Test::Present(b),
        (None, None, Some(s)) => Test::Contains(s.clone()),
        _ => {
            out.push(problem(
                p,
                "exactly one of `equals`, `present` or `contains` is required",
            ));
            return None;
        }
    };
    Some(Condition {
        claim: c.claim.clone(),
        test,
    })
}

fn audiences(p: &str, audiences: &[String], out: &mut Vec<Problem>) {
    if audiences.is_empty() {
        out.push(problem(
            format!("{p}.audiences"),
            "at least one audience is required",
        ));
    }
    for (j, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            out.push(problem(format!("{p}.audiences[{j}]"), "must not be empty"));
        }
    }
}

pub(super) fn algorithms(p: &str, names: &[AlgName], out: &mut Vec<Problem>) -> Vec<Alg> {
    if names.is_empty() {
        out.push(problem(
            format!("{p}.algorithms"),
            "at least one algorithm is required",
        ));
    }
    let mut algorithms: Vec<Alg> = Vec::new();
    for (j, a) in names.iter().enumerate() {
        if algorithms.contains(&a.alg()) {
            out.push(problem(
                format!("{p}.algorithms[{j}]"),
                format!("duplicate algorithm {}", a.alg().as_str()),
            ));
        }
        algorithms.push(a.alg());
    }
    algorithms
}

/// The accepted `typ` values, normalised (lower case, no `application/`).
fn accepted_types(p: &str, types: &[String], out: &mut Vec<Problem>) -> Vec<String> {
    if types.is_empty() {
        out.push(problem(
            format!("{p}.accepted_types"),
            "at least one type is required (typ is mandatory)",
        ));
    }
    let mut accepted = Vec::new();
    for (j, t) in types.iter().enumerate() {
        let n = normalize_typ(t);
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_graphic()) {
            out.push(problem(
                format!("{p}.accepted_types[{j}]"),
                format!("\"{t}\" is not a media type"),
            ));
        }
        if n == ID_JAG_TYP {
            out.push(problem(
                format!("{p}.accepted_types[{j}]"),
                "an identity assertion grant is for an authorization server, never an access token",
            ));
        }
        accepted.push(n);
    }
    accepted
}

/// Exactly one of `jwks` / `jwks_uri`; the inline keys (none for a remote JWKS).
fn key_source<'a>(p: &str, ic: &'a IssuerConfig, out: &mut Vec<Problem>) -> &'a [Value] {
    match (&ic.jwks, &ic.jwks_uri) {
        (Some(j), None) => {
            if j.keys.is_empty() {
                out.push(problem(
                    format!("{p}.jwks.keys"),
                    "at least one key is required",
                ));
            }
            j.keys.as_slice()
        }
        (None, Some(u)) => {
            jwks_uri(u, &format!("{p}.jwks_uri"), out);
            &[]
        }
        _ => {
            out.push(problem(
                p,
                "exactly one of `jwks` or `jwks_uri` is required",
            ));
            &[]
        }
    }
}

/// Every inline key parsed (strictly), with a unique `kid` and an allowed `alg`.
fn inline_keys(
    p: &str,
    jwks: &[Value],
    algorithms: &[Alg],
    out: &mut Vec<Problem>,
) -> Vec<VerifyKey> {
    let mut keys: Vec<VerifyKey> = Vec::new();
    for (j, k) in jwks.iter().enumerate() {
        let kp = format!("{p}.jwks.keys[{j}]");
        match parse_jwk(k) {
            Err(e) => out.push(problem(kp, e)),
            Ok(key) => {
                if keys.iter().any(|x| x.kid == key.kid) {
                    out.push(problem(
                        format!("{kp}.kid"),
                        format!("duplicate kid \"{}\"", key.kid),
                    ));
                }
                if !algorithms.contains(&key.alg) {
                    out.push(problem(
                        kp,
                        format!("key alg {} is not in {p}.algorithms", key.alg.as_str()),
                    ));
                }
                keys.push(key);
            }
        }
    }
    keys
}

fn jwks_uri(u: &JwksUriConfig, p: &str, out: &mut Vec<Problem>) {
    if u.cluster.is_empty() {
        out.push(problem(
            format!("{p}.cluster"),
            "must name an Envoy cluster",
        ));
    }
    if !u.path.starts_with('/') {
        out.push(problem(
            format!("{p}.path"),
            format!("\"{}\" must start with `/`", u.path),
        ));
    }
    let ranges = [
        ("refresh_s", u.refresh_s, 1..=86_400),
        ("min_refetch_s", u.min_refetch_s, 1..=3600),
        ("timeout_ms", u.timeout_ms, 10..=60_000),
    ];
    for (field, value, range) in ranges {
        super::within(&format!("{p}.{field}"), value, range, out);
    }
}
