//! Phase 2: values and cross-field rules, one file per section, each reporting every
//! problem it finds with its JSON path. [`PluginConfig::validate`] runs the sections in
//! a fixed order (the order problems are reported in) and builds the [`Config`] only
//! when there is none. Sections that belong to a stage (`revocation`, `audit`,
//! `verify_budget`, `policy`, the registry records, JWKS keys) are checked by that
//! stage's own code.

mod agents;
mod dpop;
mod issuers;
mod limits;
mod modes;
mod request;
mod resource;
mod routes;
mod stage;
mod upstream;

use std::ops::RangeInclusive;

use super::raw::PluginConfig;
use super::{Config, ConfigError};
use crate::problem::Problem;

impl PluginConfig {
    /// Phase 2: values and cross-field rules. Returns every problem at once.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let PluginConfig {
            issuers,
            clock_skew_s,
            max_token_lifetime_s,
            max_token_bytes,
            dpop,
            delegation,
            signature_backend,
            cache,
            verify_budget,
            limits,
            limits_max_keys,
            quarantine,
            agents,
            routes,
            protected_resource,
            scope_implies,
            unmatched_route,
            request,
            revocation,
            policy,
            audit,
            upstream,
            mode,
            checks,
            route_metadata,
        } = self;
        let mut problems = Vec::new();
        let out = &mut problems;
        let issuers = issuers::check(issuers, out);
        limits::token(clock_skew_s, max_token_lifetime_s, max_token_bytes, out);
        limits::delegation(&delegation, out);
        let dpop = dpop::check(&dpop, out);
        limits::cache(&cache, out);
        upstream::identity_headers(&upstream.headers, out);
        let routes = routes::check(&routes, route_metadata, out);
        let protected_resource =
            protected_resource.map(|pr| resource::protected_resource(pr, &issuers, out));
        let scope_implies = resource::scope_implies(&scope_implies, out);
        let methods = request::methods(&request, &routes, out);
        let reserved_prefix = upstream::reserved_prefix(&upstream.reserved_prefix, out);
        if let Some(feed) = &agents.feed {
            agents::feed(feed, out);
        }
        let registry = agents::registry(agents.registry, out);
        let checked = modes::check(
            mode,
            &checks,
            agents.feed.is_some(),
            revocation.is_some(),
            !limits.is_empty(),
            out,
        );
        let revocation = revocation.and_then(|r| stage::revocation(r, &issuers, out));
        audit.validate(out);
        if let Some(b) = &verify_budget {
            b.validate(out);
        }
        let route_names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        for (i, l) in limits.iter().enumerate() {
            l.validate(&format!("$.limits[{i}]"), &route_names, out);
            if limits
                .get(..i)
                .is_some_and(|before| before.iter().any(|b| b.name == l.name))
            {
                out.push(problem(
                    format!("$.limits[{i}].name"),
                    format!("{:?} names another limit too", l.name),
                ));
            }
        }
        if limits.len() > 64 {
            out.push(problem(
                "$.limits",
                format!("{} limits; at most 64", limits.len()),
            ));
        }
        within("$.limits_max_keys", limits_max_keys, 1..=1_000_000, out);
        if let Some(q) = &quarantine {
            q.validate(out);
        }
        let quarantine_report = quarantine
            .as_ref()
            .and_then(|q| q.report.as_ref())
            .and_then(|r| r.validate(out));
        // Compiling is the expensive part: only a configuration otherwise valid.
        let policy = match &policy {
            Some(pc) if problems.is_empty() => stage::policy(pc, &mut problems),
            _ => None,
        };
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            policy,
            revocation,
            audit,
            verify_budget,
            limits,
            limits_max_keys: usize::try_from(limits_max_keys).unwrap_or(usize::MAX),
            quarantine,
            quarantine_report,
            strip_authorization: upstream.strip_authorization,
            registry,
            feed: agents.feed,
            allow_unregistered_subjects: agents.allow_unregistered_subjects,
            ceiling: delegation.on_scope_exceeds_ceiling,
            routes,
            route_metadata,
            protected_resource,
            scope_implies,
            unmatched_route,
            semicolons: request::semicolons(request.semicolons),
            methods,
            reserved_prefix,
            issuers,
            clock_skew_s,
            max_token_lifetime_s,
            max_token_bytes: usize::try_from(max_token_bytes).unwrap_or(usize::MAX),
            max_delegation_depth: usize::try_from(delegation.max_depth).unwrap_or(usize::MAX),
            signature_backend,
            cache_entries: usize::try_from(cache.max_entries).unwrap_or(0),
            headers: upstream.headers,
            dpop,
            modes: checked.modes,
            registry_failure: checked.registry_failure,
            revocation_failure: checked.revocation_failure,
        })
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// `value` must lie in `range`: "`value` is outside `start..=end`".
fn within(path: &str, value: u64, range: RangeInclusive<u64>, out: &mut Vec<Problem>) {
    if !range.contains(&value) {
        out.push(problem(
            path,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ));
    }
}

/// `value` must not exceed `max`: "`value` is above the maximum `max`".
fn at_most(path: &str, value: u64, max: u64, out: &mut Vec<Problem>) {
    if value > max {
        out.push(problem(path, format!("{value} is above the maximum {max}")));
    }
}
