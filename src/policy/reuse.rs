//! The decision cache (`policy.decision_cache_entries`, off by default): a policy's
//! verdict reused for a request whose `input` equals an earlier one's at every member the
//! policy's text can reach.
//!
//! Exact by construction, never a guess:
//! - which members: every occurrence of the word `input` in every module (code, comments
//!   and strings alike: more words only make the key larger), followed as far as a literal
//!   path goes (`input.request.method`, `input["request"]`); anything else after it (`[x]`,
//!   a call, a space) keys on the member reached so far, a bare `input` on all of it. No
//!   name resolution, no reachability: an import, an alias, a sibling module, a function
//!   argument all name `input` in the text;
//! - the key holds those members' values in full, in an exact encoding (numbers by their
//!   decimal form after [`super::to_rego`] made each number's form unique), compared, not
//!   hashed;
//! - a policy is never cached when it can reach something besides `input` and `data` that
//!   changes: the words `rand` and `now_ns` (except in `input.time.now_ns`), or `time` other
//!   than `input.time` and the clock-free `time.` builtins;
//! - a policy whose key holds `input.time` is cached only with `policy.time_resolution_s`:
//!   the policy then sees the clock floored to it on every evaluation, cached or not, so
//!   the time it reads is part of the key;
//! - only allow and deny verdicts are kept (an error or a budget overrun is decided again);
//!   a key over 16 KiB is never kept, and the cache empties itself at 4 MiB of keys;
//! - `data` and the modules are fixed per configuration (its revision): a new
//!   configuration starts with an empty cache.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use regorus::Value;

use super::config::PolicyConfig;
use super::verdict::Verdict;

/// `time.` builtins that never read the clock.
const CLOCK_FREE_TIME: &[&str] = &[
    "add_date",
    "clock",
    "date",
    "diff",
    "format",
    "parse_duration_ns",
    "parse_ns",
    "parse_rfc3339_ns",
    "weekday",
];

/// Longest key kept (bytes of its encoding).
const MAX_KEY_BYTES: usize = 16 * 1024;
/// Bytes of keys at which the cache empties itself.
const MAX_TOTAL_BYTES: usize = 4 * 1024 * 1024;

/// The cache of one policy.
pub(super) struct Reuse {
    /// The `input` members the key holds, by name (none inside another).
    paths: Vec<Vec<String>>,
    entries: RefCell<HashMap<Vec<u8>, Verdict>>,
    bytes: Cell<usize>,
    capacity: usize,
    hits: Cell<u64>,
}

impl Reuse {
    /// The cache for `cfg`, or why it has none.
    pub(super) fn plan(cfg: &PolicyConfig) -> Result<Reuse, String> {
        if cfg.decision_cache_entries == 0 {
            return Err("policy.decision_cache_entries is 0 (the default)".into());
        }
        let mut paths = Vec::new();
        for (file, text) in &cfg.modules {
            if let Some(word) = changing_word(&code_only(text)) {
                return Err(format!(
                    "{file} names `{word}`: the decision could change between identical requests"
                ));
            }
            paths.extend(input_paths(text));
        }
        let paths = members(paths);
        let reads_time = paths.iter().any(|p| p.first().is_none_or(|m| m == "time"));
        if reads_time && cfg.time_resolution_s.is_none() {
            return Err(
                "the policy reads input.time; set policy.time_resolution_s to cache it".into(),
            );
        }
        Ok(Reuse {
            paths,
            entries: RefCell::new(HashMap::new()),
            bytes: Cell::new(0),
            capacity: usize::try_from(cfg.decision_cache_entries).unwrap_or(usize::MAX),
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
        let mut key = Vec::with_capacity(256);
        for p in &self.paths {
            encode(&project(&input, p), &mut key);
        }
        if let Some(v) = self.entries.borrow().get(&key) {
            self.hits.set(self.hits.get().saturating_add(1));
            return v.clone();
        }
        let verdict = evaluate(input);
        if matches!(verdict, Verdict::Allow { .. } | Verdict::Deny { .. })
            && key.len() <= MAX_KEY_BYTES
        {
            let mut entries = self.entries.borrow_mut();
            if entries.len() >= self.capacity
                || self.bytes.get().saturating_add(key.len()) > MAX_TOTAL_BYTES
            {
                entries.clear();
                self.bytes.set(0);
            }
            self.bytes.set(self.bytes.get().saturating_add(key.len()));
            entries.insert(key, verdict.clone());
        }
        verdict
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every start of `word` in `text` as a whole word.
fn words<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let bytes = text.as_bytes();
    text.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        let before = i.checked_sub(1).and_then(|j| bytes.get(j)).copied();
        let after = bytes.get(i + word.len()).copied();
        !before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte)
    })
}

/// `text` with the contents of its string literals and comments blanked out (the quotes
/// stay): only code. Rego's rules: `"…"` on one line with `\` escapes, `` `…` `` raw (lines
/// included), `#` to the end of the line outside strings. A module that breaks them does
/// not compile, so no code can hide in what is blanked.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let mut in_str: Option<char> = None;
    let mut in_comment = false;
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push(c);
            } else {
                out.push(' ');
            }
            continue;
        }
        match (in_str, c) {
            (Some('"'), '\\') => {
                out.push(' ');
                if chars.next().is_some() {
                    out.push(' ');
                }
            }
            (Some(q), c) if c == q => {
                in_str = None;
                out.push(c);
            }
            (Some(_), '\n') => out.push('\n'),
            (Some(_), _) => out.push(' '),
            (None, '"' | '`') => {
                in_str = Some(c);
                out.push(c);
            }
            (None, '#') => {
                in_comment = true;
                out.push(' ');
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// A word of `text` through which a policy could reach a value other than its `input`
/// and `data` (the clock, randomness), if any.
fn changing_word(text: &str) -> Option<&'static str> {
    if words(text, "rand").next().is_some() {
        return Some("rand");
    }
    for i in words(text, "now_ns") {
        if !text[..i].ends_with("input.time.") {
            return Some("now_ns");
        }
    }
    for i in words(text, "time") {
        if text[..i].ends_with("input.") {
            continue;
        }
        let rest = text.get(i + 4..).unwrap_or_default();
        let name: String = rest
            .strip_prefix('.')
            .unwrap_or_default()
            .bytes()
            .take_while(|&b| is_word_byte(b))
            .map(char::from)
            .collect();
        if !CLOCK_FREE_TIME.contains(&name.as_str()) {
            return Some("time");
        }
    }
    None
}

/// The literal path after each `input` word of `text` (`input.a.b`, `input["a"]`): as far
/// as it is literal.
fn input_paths(text: &str) -> Vec<Vec<String>> {
    words(text, "input")
        .map(|i| {
            let mut rest = text.get(i + 5..).unwrap_or_default();
            let mut path = Vec::new();
            loop {
                if let Some(r) = rest.strip_prefix('.') {
                    let n = r.bytes().take_while(|&b| is_word_byte(b)).count();
                    if n == 0 {
                        break;
                    }
                    path.push(r[..n].to_owned());
                    rest = &r[n..];
                } else if let Some(r) = rest.strip_prefix("[\"") {
                    // A plain string: no escape, no quote inside.
                    let Some(end) = r.find('"') else { break };
                    let name = &r[..end];
                    if name.contains('\\') || !r[end..].starts_with("\"]") {
                        break;
                    }
                    path.push(name.to_owned());
                    rest = &r[end + 2..];
                } else {
                    break;
                }
            }
            path
        })
        .collect()
}

/// The members a set of paths depends on, without those inside another.
fn members(mut paths: Vec<Vec<String>>) -> Vec<Vec<String>> {
    paths.sort();
    paths.dedup();
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|q| q.len() < p.len() && p.starts_with(q)));
    paths
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

/// An exact, self-delimiting encoding of `v`: equal bytes, equal values in every form a
/// policy can observe.
fn encode(v: &Value, out: &mut Vec<u8>) {
    let len = |out: &mut Vec<u8>, n: usize| out.extend_from_slice(&(n as u64).to_le_bytes());
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => {
            let text = n.format_decimal();
            out.push(b'#');
            len(out, text.len());
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => {
            out.push(b's');
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            out.push(b'a');
            len(out, items.len());
            for i in items.iter() {
                encode(i, out);
            }
        }
        Value::Set(items) => {
            out.push(b'e');
            len(out, items.len());
            for i in items.iter() {
                encode(i, out);
            }
        }
        Value::Object(fields) => {
            out.push(b'o');
            len(out, fields.len());
            for (k, v) in fields.iter() {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Undefined => out.push(b'u'),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn cfg_of(modules: &[(&str, &str)]) -> PolicyConfig {
        let modules: serde_json::Map<String, serde_json::Value> = modules
            .iter()
            .map(|(f, t)| ((*f).to_owned(), serde_json::Value::from(*t)))
            .collect();
        serde_json::from_value(serde_json::json!({
            "modules": modules,
            "entrypoint": "data.p.decision",
            "decision_cache_entries": 16,
        }))
        .unwrap()
    }

    /// The key, with the clock at a resolution (a key of the whole `input` holds the time).
    fn key_of(modules: &[(&str, &str)]) -> Vec<String> {
        let mut c = cfg_of(modules);
        c.time_resolution_s = Some(1);
        Reuse::plan(&c).unwrap().describe()
    }

    #[test]
    fn the_key_holds_every_member_the_text_names() {
        assert_eq!(
            key_of(&[(
                "p.rego",
                "package p\nimport rego.v1\nimport input.request as req\n\
                 decision if { req.method == \"GET\"; input.chain[_].sub == \"a\" }\n\
                 orphan if input[\"token\"].claims.x\nf(input.agent.id) := true"
            )]),
            [
                "input.agent.id",
                "input.chain",
                "input.request",
                "input.token.claims.x"
            ]
        );
        // An import in a sibling module, a sub-package, a function's argument: all in text.
        assert_eq!(
            key_of(&[
                (
                    "a.rego",
                    "package p\nimport input.request as req\ndecision := {\"allow\": ok}"
                ),
                (
                    "b.rego",
                    "package p\nimport rego.v1\nok if req.method == \"GET\""
                ),
                (
                    "c.rego",
                    "package p.lib\nis_get(input.request.method) := true"
                ),
            ]),
            ["input.request"]
        );
        // Anything but a literal path keys on the member reached: `input[x]`, `input .a`,
        // a call's argument, an escaped name.
        for text in [
            "decision if input[x] == 1",
            "decision if walk(input, [p, v])",
            "decision if input .a == 1",
            "decision if input[\"a\\u0062\"] == 1",
            "decision if object.get(input, \"a\", 0)",
        ] {
            assert_eq!(
                key_of(&[("p.rego", &format!("package p\nimport rego.v1\n{text}"))]),
                ["input"],
                "{text}"
            );
        }
        // A mention in a comment or a string only adds to the key.
        assert_eq!(
            key_of(&[(
                "p.rego",
                "package p\n# input.subject\ndecision := \"input.route\""
            )]),
            ["input.route", "input.subject"]
        );
    }

    #[test]
    fn what_can_change_between_identical_requests_is_never_cached() {
        for text in [
            "decision if time.now_ns() > 0",
            "decision if time.now_ns ( ) > 0",
            "decision if time[\"now_ns\"]() > 0",
            "decision if time[\"now\\u005fns\"]() > 0",
            "decision if time.now_ns #x\n() > 0",
            "decision if rand.intn(\"x\", 2) == 1",
            "decision if rand[\"intn\"](\"x\", 2) == 1",
            "decision if { f(1) with f as rand.intn }",
            "decision if { x := time; x }",
            // Code after a raw string spanning lines is still code.
            "s := `a\n`; decision if time.now_ns() > 0",
            "s := \"a\\\"#\"; decision if time.now_ns() > 0",
        ] {
            let e = Reuse::plan(&cfg_of(&[(
                "p.rego",
                &format!("package p\nimport rego.v1\n{text}"),
            )]))
            .err()
            .unwrap_or_else(|| panic!("{text}: cached"));
            assert!(e.contains("could change"), "{text}: {e}");
        }
        let clock = "package p\nimport rego.v1\ndecision if time.clock([input.time.now_ns, \"UTC\"])[0] > 9";
        let e = Reuse::plan(&cfg_of(&[("p.rego", clock)])).err().unwrap();
        assert!(e.contains("set policy.time_resolution_s"), "{e}");
        let mut c = cfg_of(&[("p.rego", clock)]);
        c.time_resolution_s = Some(1);
        assert_eq!(Reuse::plan(&c).unwrap().describe(), ["input.time.now_ns"]);
        // Words in strings and comments are not code.
        let quiet = "package p\nimport rego.v1\n# time.now_ns() and rand\ndeny contains \"time.outside\" if input.x\ndecision := count(deny) == 0";
        assert_eq!(key_of(&[("p.rego", quiet)]), ["input.x"]);
        let mut c = cfg_of(&[("p.rego", "package p\ndefault decision := true")]);
        c.decision_cache_entries = 0;
        assert!(Reuse::plan(&c).is_err());
    }

    #[test]
    fn keys_tell_apart_every_form_a_policy_can_observe() {
        use crate::policy::to_rego;
        let key = |v: serde_json::Value| {
            let mut out = Vec::new();
            encode(&to_rego(&v), &mut out);
            out
        };
        let distinct = [
            serde_json::json!(null),
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!(0.5),
            serde_json::json!(""),
            serde_json::json!("0"),
            serde_json::json!([]),
            serde_json::json!([[]]),
            serde_json::json!({}),
            serde_json::json!({"a": ""}),
            serde_json::json!({"": "a"}),
            serde_json::json!(["a", "b"]),
            serde_json::json!(["ab"]),
            serde_json::json!(1.5),
            serde_json::json!(-1),
            serde_json::json!(u64::MAX),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(key(a.clone()), key(b.clone()), "{a} vs {b}");
            }
        }
        // One number, one form: the policy sees `1.0` as `1` and `-0.0` as `0`.
        assert_eq!(
            to_rego(&serde_json::json!(1.0)),
            to_rego(&serde_json::json!(1))
        );
        assert_eq!(key(serde_json::json!(1.0)), key(serde_json::json!(1)));
        assert_eq!(key(serde_json::json!(-0.0)), key(serde_json::json!(0)));
        // Beyond 2^53 too: `1e16` is the integer, as `10000000000000000` is.
        let big: serde_json::Value = serde_json::from_str("1e16").unwrap();
        assert!(big.is_f64());
        assert_eq!(
            to_rego(&big),
            to_rego(&serde_json::json!(10_000_000_000_000_000u64))
        );
        assert_eq!(key(big), key(serde_json::json!(10_000_000_000_000_000u64)));
        let top: serde_json::Value = serde_json::from_str("18446744073709551615.0").unwrap();
        assert!(
            top.is_f64(),
            "rounds to 2^64: no integer of that value exists"
        );
        let neg: serde_json::Value = serde_json::from_str("-9.2e18").unwrap();
        assert_eq!(
            to_rego(&neg),
            to_rego(&serde_json::json!(-9_200_000_000_000_000_000i64))
        );
        let mut undefined = Vec::new();
        encode(&Value::Undefined, &mut undefined);
        assert_ne!(undefined, key(serde_json::json!(null)));
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
        let s = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let got = members(vec![
            s(&["agent", "tenant"]),
            s(&["agent"]),
            s(&["request", "segments"]),
            s(&["request", "path"]),
            s(&["chain"]),
            s(&["chain", "sub"]),
            s(&["chain"]),
        ]);
        assert_eq!(
            got,
            vec![
                s(&["agent"]),
                s(&["chain"]),
                s(&["request", "path"]),
                s(&["request", "segments"])
            ]
        );
    }

    #[test]
    fn oversized_keys_are_never_kept_and_the_cache_is_bounded() {
        let c = cfg_of(&[("p.rego", "package p\ndecision := input.x == 1")]);
        let r = Reuse::plan(&c).unwrap();
        let allow = || Verdict::Allow { headers: vec![] };
        let big = crate::policy::to_rego(&serde_json::json!({"x": "y".repeat(MAX_KEY_BYTES)}));
        r.decide(big.clone(), |_| allow());
        r.decide(big, |_| allow());
        assert_eq!(r.hits(), 0, "an oversized key is decided every time");
        for n in 0..40 {
            let v = crate::policy::to_rego(&serde_json::json!({"x": n}));
            r.decide(v, |_| allow());
        }
        assert!(r.entries.borrow().len() <= 16);
        let errors = crate::policy::to_rego(&serde_json::json!({"x": "e"}));
        r.decide(errors.clone(), |_| Verdict::Error("x".into()));
        let again = r.decide(errors, |_| Verdict::Limit);
        assert_eq!(again, Verdict::Limit, "errors are decided again");
    }
}
