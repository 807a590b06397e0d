//! The decision cache: a policy's verdict reused for a request whose `input`, at every path
//! the policy can read, equals an earlier one's.
//!
//! Exact by construction, never a guess:
//! - the key is the values of exactly the `input` members the reachable rules read
//!   (`policy check`'s analysis of the syntax tree; a dynamic segment keys on the whole
//!   member above it; a bare `input` keys on everything), compared in full, not hashed;
//! - it is used only when the analysis is complete: no compile error, no expression too
//!   deep to walk, no call of a builtin whose result is not a function of its arguments
//!   (the clock, randomness, the network, `io.jwt.decode_verify`'s own clock);
//! - a policy that reads `input.time` is cached only with `policy.time_resolution_s`, where
//!   the policy sees the clock floored to that resolution on every evaluation, cached or
//!   not, so the time it reads is part of the key;
//! - only allow and deny verdicts are kept (an error or a budget overrun is decided again);
//! - `data` and the modules are fixed per configuration (its revision): a new
//!   configuration starts with an empty cache.
//!
//! The analysis lives in the native builds (the dynamic module, the CLI); the Wasm filter
//! evaluates every request (the analyser would add to the module V8 compiles at start).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use regorus::Value;

use super::config::PolicyConfig;
use super::verdict::Verdict;

/// Calls of builtins whose result depends on more than their arguments: a policy that
/// names one is never cached. Matched on the module text with its whitespace removed (a
/// mention in a comment counts too).
#[cfg(tools)]
const IMPURE_CALLS: &[&str] = &[
    "time.now_ns(",
    "rand.intn(",
    "uuid.rfc4122(",
    "http.send(",
    "opa.runtime(",
    "net.lookup_ip_addr(",
    "io.jwt.decode_verify(",
    "trace(",
    "print(",
];

/// The cache of one policy.
pub(super) struct Reuse {
    /// The `input` members the key holds, by name (none a prefix of another).
    paths: Vec<Vec<String>>,
    entries: RefCell<BTreeMap<Vec<Value>, Verdict>>,
    capacity: usize,
    hits: Cell<u64>,
}

impl Reuse {
    /// The cache for `cfg`, or why it has none.
    pub(super) fn plan(cfg: &PolicyConfig) -> Result<Reuse, String> {
        if cfg.decision_cache_entries == 0 {
            return Err("policy.decision_cache_entries is 0".into());
        }
        let capacity = usize::try_from(cfg.decision_cache_entries).unwrap_or(usize::MAX);
        let paths = members(read_paths(cfg)?);
        Ok(Reuse {
            paths,
            entries: RefCell::new(BTreeMap::new()),
            capacity,
            hits: Cell::new(0),
        })
    }

    /// The input members the key holds, rendered (`input.request.path`).
    pub(super) fn describe(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| {
                std::iter::once("input")
                    .chain(p.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect()
    }

    pub(super) fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// The verdict for `input`: reused, or `evaluate`d and kept.
    pub(super) fn decide(&self, input: Value, evaluate: impl FnOnce(Value) -> Verdict) -> Verdict {
        let key: Vec<Value> = self.paths.iter().map(|p| project(&input, p)).collect();
        if let Some(v) = self.entries.borrow().get(&key) {
            self.hits.set(self.hits.get().saturating_add(1));
            return v.clone();
        }
        let verdict = evaluate(input);
        if matches!(verdict, Verdict::Allow { .. } | Verdict::Deny { .. }) {
            let mut entries = self.entries.borrow_mut();
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(key, verdict.clone());
        }
        verdict
    }
}

/// The members a set of read paths depends on: each path up to its first dynamic segment
/// (what follows it is read from the whole member), without those inside another.
fn members(paths: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = paths
        .into_iter()
        .map(|p| p.into_iter().map_while(|s| s).collect())
        .collect();
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q.len() < p.len() && p.starts_with(q)));
    out
}

/// The value of `input` at `path`; a member that is not set is `Undefined` (so "absent"
/// and "present" never share a key).
fn project(input: &Value, path: &[String]) -> Value {
    let mut at = input;
    for name in path {
        match at {
            Value::Object(obj) => match obj.get(&Value::from(name.as_str())) {
                Some(v) => at = v,
                None => return Value::Undefined,
            },
            _ => return Value::Undefined,
        }
    }
    at.clone()
}

#[cfg(tools)]
fn read_paths(cfg: &PolicyConfig) -> Result<Vec<Vec<Option<String>>>, String> {
    for text in cfg.modules.values() {
        let text: String = text.split_whitespace().collect();
        if let Some(b) = IMPURE_CALLS.iter().find(|b| text.contains(*b)) {
            return Err(format!(
                "a module calls `{}`, whose result is not a function of the request",
                b.trim_end_matches('(')
            ));
        }
    }
    let report = super::lint::check(&cfg.modules, cfg.data.as_ref(), &cfg.entrypoint);
    if report.count(super::lint::Severity::Error) > 0 {
        return Err("`policy check` reports errors".into());
    }
    if report.reads_time && cfg.time_resolution_s.is_none() {
        return Err("the policy reads input.time; set policy.time_resolution_s to cache it".into());
    }
    Ok(report.read_paths.into_iter().collect())
}

#[cfg(not(tools))]
fn read_paths(_cfg: &PolicyConfig) -> Result<Vec<Vec<Option<String>>>, String> {
    Err("the Wasm build evaluates every request".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> PolicyConfig {
        serde_json::from_value(serde_json::json!({
            "modules": {"p.rego": text},
            "entrypoint": "data.p.decision",
        }))
        .unwrap()
    }

    #[test]
    fn the_key_is_the_paths_the_reachable_rules_read() {
        let r = Reuse::plan(&cfg(
            "package p\nimport rego.v1\nimport input.request as req\n\
             decision if { req.method == \"GET\"; input.chain[_].sub == \"a\"; not other }\n\
             other if input.token.claims.x\n\
             orphan if input.agent.id",
        ))
        .unwrap();
        assert_eq!(
            r.describe(),
            [
                "input.chain",
                "input.request.method",
                "input.token.claims.x"
            ]
        );
    }

    #[test]
    fn what_is_not_a_function_of_the_input_is_never_cached() {
        for (text, why) in [
            ("decision if time.now_ns() > 0", "time.now_ns"),
            ("decision if time.now_ns ( ) > 0", "time.now_ns"),
            ("decision if rand.intn(\"x\", 2) == 1", "rand.intn"),
            ("decision if uuid.rfc4122(\"x\")", "uuid.rfc4122"),
            (
                "decision if io.jwt.decode_verify(input.x, {})",
                "io.jwt.decode_verify",
            ),
            (
                "decision if input.time.now_ns > 0",
                "set policy.time_resolution_s",
            ),
            ("decision if input.nope.x", "errors"),
        ] {
            let e = Reuse::plan(&cfg(&format!("package p\nimport rego.v1\n{text}")))
                .err()
                .unwrap();
            assert!(e.contains(why), "{text}: {e}");
        }
        let mut c = cfg("package p\nimport rego.v1\ndecision if input.time.now_ns > 0");
        c.time_resolution_s = Some(1);
        assert_eq!(Reuse::plan(&c).unwrap().describe(), ["input.time.now_ns"]);
        let mut c = cfg("package p\ndefault decision := true");
        c.decision_cache_entries = 0;
        assert!(Reuse::plan(&c).is_err());
    }

    #[test]
    fn absent_and_present_members_never_share_a_key() {
        let input = crate::policy::to_rego(&serde_json::json!({"a": {"b": null}, "c": [1]}));
        let p = |segs: &[&str]| {
            project(
                &input,
                &segs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(p(&["a", "b"]), Value::Null);
        assert_eq!(p(&["a", "x"]), Value::Undefined);
        assert_eq!(p(&["c", "x"]), Value::Undefined);
        assert_eq!(p(&[]), input);
    }

    #[test]
    fn a_member_inside_another_is_keyed_by_the_outer_one() {
        let s = |p: &[Option<&str>]| p.iter().map(|s| s.map(str::to_owned)).collect();
        let got = members(vec![
            s(&[Some("agent"), Some("tenant")]),
            s(&[Some("agent")]),
            s(&[Some("request"), Some("segments"), None, Some("x")]),
            s(&[Some("request"), Some("path")]),
            s(&[Some("chain"), None]),
            s(&[Some("chain"), Some("sub")]),
        ]);
        let want: Vec<Vec<String>> = [
            &["agent"][..],
            &["chain"],
            &["request", "path"],
            &["request", "segments"],
        ]
        .iter()
        .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
        .collect();
        assert_eq!(got, want);
    }
}
