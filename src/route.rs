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
    pub path: PathMatch,
    pub methods: Vec<String>,
    pub required_scopes: Vec<String>,
}

/// The most specific of `routes` for `method` and the canonical `path` (no query, see
/// [`crate::target`]): an exact match first, then the longest segment-aware prefix;
/// declaration order breaks ties.
pub fn most_specific<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<&'a Route> {
    let eligible = |r: &&Route| r.methods.is_empty() || r.methods.iter().any(|m| m == method);
    let exact = routes
        .iter()
        .filter(eligible)
        .find(|r| r.path == PathMatch::Exact(path.to_owned()));
    exact.or_else(|| {
        let mut best: Option<&Route> = None;
        for r in routes.iter().filter(eligible) {
            if let PathMatch::Prefix(p) = &r.path {
                let longer = best
                    .is_none_or(|b| matches!(&b.path, PathMatch::Prefix(bp) if p.len() > bp.len()));
                if crate::target::prefix_covers(p, path) && longer {
                    best = Some(r);
                }
            }
        }
        best
    })
}
