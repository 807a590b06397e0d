//! Screening Rego modules: before parsing, bracket nesting (regorus's parser is
//! exponential in it); after parsing, calls to OPA builtins this build lacks (they would
//! only fail at request time).

/// Deepest `(`/`[`/`{` nesting a Rego module may have. regorus's parser takes time
/// exponential in it (measured: 22 nested `[` took 3.9 s, 25 unclosed ones over a minute);
/// real policies stay far below.
pub const MAX_NESTING: usize = 16;

/// Line and column (1-based) where `text` first nests brackets deeper than
/// [`MAX_NESTING`], outside strings and comments.
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut chars = text.chars();
    let mut in_string = None::<char>;
    let mut in_comment = false;
    while let Some(c) = chars.next() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            in_comment = false;
            continue;
        }
        if in_comment {
            continue;
        }
        match (in_string, c) {
            (Some('"'), '\\') => {
                // An escaped character never ends the string.
                chars.next();
                col += 1;
            }
            (Some(q), c) if c == q => in_string = None,
            (Some(_), _) => {}
            (None, '"' | '`') => in_string = Some(c),
            (None, '#') => in_comment = true,
            (None, '(' | '[' | '{') => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some((line, col));
                }
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    None
}
/// Namespaces of OPA's builtins. A call into one of them must resolve to a builtin that this
/// build of regorus has; otherwise the policy would only fail at request time.
const OPA_NAMESPACES: &[&str] = &[
    "array",
    "base64",
    "base64url",
    "bits",
    "crypto",
    "glob",
    "graph",
    "hex",
    "http",
    "io",
    "json",
    "net",
    "numbers",
    "object",
    "opa",
    "providers",
    "rand",
    "regex",
    "rego",
    "semver",
    "strings",
    "time",
    "trace",
    "units",
    "urlquery",
    "uuid",
    "yaml",
];

/// `(line, column, name)` of every call to an OPA builtin this build lacks. Comments and
/// string literals are skipped.
pub fn unavailable_builtins(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = opa_calls(text);
    out.retain(|(_, _, name)| !regorus::unstable::BUILTINS.contains_key(name.as_str()));
    out
}

/// The families of builtins the default build has besides the core ones, by name prefix,
/// with the cargo feature that brings each.
pub const FAMILIES: &[(&str, &str)] = &[
    ("glob.", "builtins-glob"),
    ("regex.", "builtins-regex"),
    ("time.", "builtins-time"),
    ("semver.", "builtins-semver"),
    ("urlquery.", "builtins-urlquery"),
    ("base64.", "builtins-encoding"),
    ("base64url.", "builtins-encoding"),
    ("hex.", "builtins-encoding"),
];

/// The families the `slim` build keeps (`slim` in Cargo.toml: none).
pub const SLIM_FAMILIES: &[&str] = &[];

/// `(line, column, name, feature)` of every call into a builtin family the `slim` build
/// lacks: a policy with none runs on both builds.
pub fn calls_beyond_slim(text: &str) -> Vec<(usize, usize, String, &'static str)> {
    opa_calls(text)
        .into_iter()
        .filter_map(|(line, col, name)| {
            let (_, feature) = FAMILIES.iter().find(|(p, _)| name.starts_with(p))?;
            (!SLIM_FAMILIES.contains(feature)).then_some((line, col, name, *feature))
        })
        .collect()
}

/// `(line, column, name)` of every call of a dotted name in an OPA builtin namespace.
/// Comments and string literals are skipped.
fn opa_calls(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0usize;
        let mut in_str: Option<char> = None;
        while let Some(&c) = chars.get(i) {
            if let Some(q) = in_str {
                if c == '\\' && q == '"' {
                    i += 2;
                    continue;
                }
                if c == q {
                    in_str = None;
                }
                i += 1;
                continue;
            }
            if c == '#' {
                break;
            }
            if c == '"' || c == '`' {
                in_str = Some(c);
                i += 1;
                continue;
            }
            let prev_ok = i == 0
                || chars
                    .get(i - 1)
                    .is_some_and(|p| !(p.is_alphanumeric() || *p == '_' || *p == '.'));
            if (c.is_ascii_alphabetic() || c == '_') && prev_ok {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '.')
                {
                    i += 1;
                }
                let name: String = chars
                    .get(start..i)
                    .map(|s| s.iter().collect())
                    .unwrap_or_default();
                let mut j = i;
                while chars.get(j).is_some_and(|ch| *ch == ' ') {
                    j += 1;
                }
                let called = chars.get(j) == Some(&'(');
                let ns = name.split('.').next().unwrap_or_default();
                if called && name.contains('.') && OPA_NAMESPACES.contains(&ns) {
                    out.push((ln + 1, start + 1, name));
                }
                continue;
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::engine_for;

    #[test]
    fn calls_beyond_the_slim_build_are_found_by_family() {
        let text = "package p\n# regex.match(x)\nok if { regex.match(`a`, input.x); s := \"time.clock(1)\" }\nt := time.clock([input.time.now_ns, \"UTC\"])\nu := upper(\"x\")\nh := hex.encode(\"x\")";
        let found: Vec<_> = calls_beyond_slim(text)
            .into_iter()
            .map(|(l, c, n, f)| format!("{l}:{c} {n} {f}"))
            .collect();
        assert_eq!(
            found,
            [
                "3:9 regex.match builtins-regex",
                "4:6 time.clock builtins-time",
                "6:6 hex.encode builtins-encoding"
            ]
        );
    }

    /// The families named here are the crate's `builtins-*` features, and `slim` keeps
    /// exactly `SLIM_FAMILIES` of them.
    #[test]
    fn the_families_are_the_manifests_features() {
        let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
        for (_, feature) in FAMILIES {
            assert!(
                manifest.contains(&format!("\n{feature} = [\"regorus/")),
                "{feature}"
            );
        }
        let slim = manifest
            .lines()
            .find_map(|l| l.strip_prefix("slim = "))
            .unwrap();
        let listed: Vec<String> = SLIM_FAMILIES.iter().map(|f| format!("\"{f}\"")).collect();
        assert_eq!(slim, format!("[{}]", listed.join(", ")));
    }

    /// Found by the `config` fuzz target: a module with ~100 nested `[` kept the parser
    /// busy for minutes (a configuration that hangs Envoy's configure step).
    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("package p\n\nx := {}1\n", "[".repeat(100));
        let started = std::time::Instant::now();
        let problems = engine_for(&BTreeMap::from([("p.rego".to_owned(), deep)]), None, 50)
            .err()
            .unwrap();
        assert!(started.elapsed().as_secs() < 5);
        assert!(
            problems[0]
                .message
                .contains("p.rego:3:22: brackets nested deeper than 16"),
            "{problems:?}"
        );
        // Brackets in strings and comments do not count; 16 levels are fine.
        let ok = format!(
            "package p\n\n# {}\ns := \"{}\"\nx := {}1{}\n",
            "[".repeat(40),
            "[".repeat(40),
            "[".repeat(16),
            "]".repeat(16)
        );
        assert!(too_deep(&ok).is_none());
        assert!(engine_for(&BTreeMap::from([("p.rego".to_owned(), ok)]), None, 50).is_ok());
    }
}
