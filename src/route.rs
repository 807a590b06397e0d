//! Routes as validated from `routes[]` (see `config`), and how a request finds its route.
//! A leaf below the configuration, the policy input and the pipeline.

/// How a route matches paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// `None`: a route only Envoy's route metadata selects (`route_metadata`).
    pub path: Option<PathMatch>,
    pub methods: Vec<String>,
    pub required_scopes: Vec<String>,
    /// Set on MCP endpoints.
    pub mcp: Option<Mcp>,
    /// Every check's mode on this route, when the route sets one.
    pub mode: Option<crate::mode::Mode>,
    /// Decision events carry the policy's `input` (`audit_policy_input`).
    pub audit_policy_input: bool,
}

/// What an MCP route requires per call (validated `routes[].mcp`).
#[derive(Debug, Clone)]
pub struct Mcp {
    pub tools: Vec<(String, Vec<String>)>,
    /// Exact URIs, or prefixes (written with a trailing `*`, stored without it).
    pub resources: Vec<(ResourceMatch, Vec<String>)>,
    pub prompts: Vec<(String, Vec<String>)>,
    /// Unlisted names: refused (`true`) or decided on the route's scopes alone.
    pub deny_unlisted: bool,
    pub filter_lists: bool,
    pub max_body_bytes: usize,
    /// The audit event carries the call's arguments, not only their hash.
    pub audit_arguments: bool,
}

/// How a resource entry matches URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceMatch {
    Exact(String),
    Prefix(String),
}

impl Mcp {
    /// The scopes a call of `method` on `name` needs beyond the route's; `None`: an
    /// unlisted name the route refuses. Methods that name nothing need nothing more.
    pub fn scopes_for(&self, method: &str, name: &str) -> Option<&[String]> {
        let listed = match method {
            "tools/call" => self.tools.iter().find(|(n, _)| n == name).map(|(_, s)| s),
            "prompts/get" => self.prompts.iter().find(|(n, _)| n == name).map(|(_, s)| s),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.resource(name)
            }
            _ => return Some(&[]),
        };
        match listed {
            Some(s) => Some(s.as_slice()),
            None if self.deny_unlisted => None,
            None => Some(&[]),
        }
    }

    /// The most specific resource entry for `uri`: an exact one, else the longest prefix.
    fn resource(&self, uri: &str) -> Option<&Vec<String>> {
        let exact = self
            .resources
            .iter()
            .find(|(m, _)| *m == ResourceMatch::Exact(uri.to_owned()));
        exact.map(|(_, s)| s).or_else(|| {
            self.resources
                .iter()
                .filter_map(|(m, s)| match m {
                    ResourceMatch::Prefix(p) if uri.starts_with(p.as_str()) => Some((p.len(), s)),
                    _ => None,
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, s)| s)
        })
    }
}

impl Route {
    /// Whether the route's path covers the canonical `path` (whatever the method).
    pub fn covers(&self, path: &str) -> bool {
        match &self.path {
            Some(PathMatch::Exact(p)) => p == path,
            Some(PathMatch::Prefix(p)) => crate::target::prefix_covers(p, path),
            None => false,
        }
    }
}

/// The route Envoy's route metadata names (`filter_metadata.agent_iam.route`, the bytes
/// the host reported): `None` when they are not exactly one configured route's name.
pub fn named(routes: &[Route], metadata: &[u8]) -> Option<usize> {
    let name = std::str::from_utf8(metadata).ok()?;
    routes.iter().position(|r| r.name == name)
}

/// The most specific MCP route whose path covers `path`, whatever the method: an MCP
/// endpoint's requests are all decided as MCP requests (a method the route does not take
/// is refused there, never decided by another route).
pub fn mcp_route_for(routes: &[Route], path: &str) -> Option<usize> {
    let mut best: Option<(usize, usize, bool)> = None;
    for (i, r) in routes.iter().enumerate() {
        if r.mcp.is_none() || !r.covers(path) {
            continue;
        }
        let (len, exact) = match &r.path {
            Some(PathMatch::Exact(p)) => (p.len(), true),
            Some(PathMatch::Prefix(p)) => (p.len(), false),
            None => continue,
        };
        let better = best
            .is_none_or(|(_, blen, bexact)| (exact && !bexact) || (exact == bexact && len > blen));
        if better {
            best = Some((i, len, exact));
        }
    }
    best.map(|(i, _, _)| i)
}

/// The most specific of `routes` for `method` and the canonical `path` (no query, see
/// [`crate::target`]): an exact match first, then the longest segment-aware prefix;
/// declaration order breaks ties.
pub fn most_specific<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<&'a Route> {
    let eligible = |r: &&Route| r.methods.is_empty() || r.methods.iter().any(|m| m == method);
    let exact = routes
        .iter()
        .filter(eligible)
        .find(|r| r.path == Some(PathMatch::Exact(path.to_owned())));
    exact.or_else(|| {
        let mut best: Option<&Route> = None;
        for r in routes.iter().filter(eligible) {
            if let Some(PathMatch::Prefix(p)) = &r.path {
                let longer = best.is_none_or(
                    |b| matches!(&b.path, Some(PathMatch::Prefix(bp)) if p.len() > bp.len()),
                );
                if crate::target::prefix_covers(p, path) && longer {
                    best = Some(r);
                }
            }
        }
        best
    })
}
