//! The request target the filter decides on, and the one the upstream receives: one
//! canonical form of `:path` (RFC 3986 §6.2.2 syntax-based normalisation) and of
//! `:method` (RFC 9110 §9.1 tokens).
//!
//! - The target is origin-form (`/path?query`): absolute-form, authority-form, `*` and a
//!   fragment are refused.
//! - Percent-encoded unreserved characters are decoded, every other escape is kept with
//!   upper-case hex; an escape that decodes to `/`, `\`, NUL or another control character
//!   is refused (upstreams disagree on whether `%2F` separates segments).
//! - Raw bytes outside RFC 3986 `pchar` (space, `\`, `"`, `<`, `>`, `^`, `` ` ``, `{`,
//!   `|`, `}`, controls, non-ASCII) are refused.
//! - `;` is refused in the path unless configured (servlet containers strip `;params`
//!   from segments, so `/admin;x` would run `/admin` there).
//! - Empty segments are merged (`//` → `/`) and dot segments are removed
//!   (RFC 3986 §5.2.4; `..` above the root stays at the root).
//! - The query is kept as sent (bytes checked as above, `#` refused) and never matched.
//!
//! The upstream receives exactly the canonical target: the filter rewrites `:path` when
//! it differs from what the client sent.

use crate::reason::Reason;

/// What the filter does with a `;` in the path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Semicolons {
    /// Refuse the request (`request.target`).
    #[default]
    Reject,
    /// Treat `;` as an ordinary path character (for upstreams that never strip `;params`).
    Allow,
}

/// A request target in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The canonical path: starts with `/`, no empty or dot segments, no query.
    pub path: String,
    /// The query after `?`, as sent (`None`: no `?`).
    pub query: Option<String>,
}

impl Target {
    /// The canonical `:path`: path and query.
    pub fn to_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// The path's segments (`/a/b/` → `["a", "b", ""]`; `/` → `[]`).
    pub fn segments(&self) -> Vec<&str> {
        match self.path.strip_prefix('/') {
            Some("") | None => Vec::new(),
            Some(rest) => rest.split('/').collect(),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` without `%` (escapes are handled separately).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Longest target accepted (Envoy's own default header limit is 60 KiB for all headers).
pub const MAX_TARGET_BYTES: usize = 8192;

/// The canonical form of a raw `:path`, or `request.target`.
pub fn canonical(raw: &str, semicolons: Semicolons) -> Result<Target, Reason> {
    let bad = Reason::RequestTarget;
    if raw.len() > MAX_TARGET_BYTES || !raw.starts_with('/') {
        return Err(bad);
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    if let Some(q) = query {
        // Query: pchar, `/`, `?` and escapes (RFC 3986 §3.4); never matched, kept as sent.
        let ok = q
            .bytes()
            .all(|b| is_pchar(b) || matches!(b, b'/' | b'?' | b'%'));
        if !ok {
            return Err(bad);
        }
    }
    // Decode what must be decoded, refuse what is ambiguous, then split into segments.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(bad);
                };
                let v = h * 16 + l;
                if is_unreserved(v) {
                    decoded.push(char::from(v));
                } else if v == b'/' || v == b'\\' || v.is_ascii_control() {
                    return Err(bad);
                } else {
                    decoded.push_str(&format!("%{v:02X}"));
                }
                i += 3;
            }
            b';' if semicolons == Semicolons::Reject => return Err(bad),
            b'/' => {
                decoded.push('/');
                i += 1;
            }
            _ if is_pchar(b) => {
                decoded.push(char::from(b));
                i += 1;
            }
            _ => return Err(bad),
        }
    }
    // RFC 3986 §5.2.4 over segments, with empty segments merged.
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split('/').skip(1) {
        trailing = false;
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                out.pop();
                trailing = true;
            }
            s => out.push(s),
        }
    }
    let mut canonical = String::with_capacity(decoded.len());
    for seg in &out {
        canonical.push('/');
        canonical.push_str(seg);
    }
    if canonical.is_empty() || trailing {
        canonical.push('/');
    }
    Ok(Target {
        path: canonical,
        query: query.map(str::to_owned),
    })
}

/// The canonical `:authority`: host names are case-insensitive (RFC 3986 §3.2.2) and a
/// trailing `.` names the same host, so `API.Example.` and `api.example` are one host for
/// policies and the audit trail (Envoy's own domain matching ignores case too).
pub fn canonical_host(raw: &str) -> String {
    let lower = raw.to_ascii_lowercase();
    let (name, port) = match lower.rsplit_once(':') {
        Some((n, p))
            if !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (n.ends_with(']') || !n.contains(':')) =>
        {
            (n, Some(p))
        }
        _ => (lower.as_str(), None),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    }
}

/// The methods every configuration knows (RFC 9110 §9 and RFC 5789 `PATCH`).
pub const STANDARD_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A method name as configuration may write it: an upper-case RFC 9110 token.
pub fn is_method_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `path` is covered by the segment-aware prefix `prefix` (both canonical): `/tickets`
/// covers `/tickets` and `/tickets/1`, not `/ticketsX`.
pub fn prefix_covers(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(raw: &str) -> Result<String, Reason> {
        canonical(raw, Semicolons::Reject).map(|t| t.to_target())
    }

    #[test]
    fn dot_segments_and_slashes() {
        for (raw, want) in [
            ("/", "/"),
            ("/tickets", "/tickets"),
            ("/tickets/", "/tickets/"),
            ("/tickets/../mail/send", "/mail/send"),
            ("/tickets/%2e%2e/mail/send", "/mail/send"),
            ("/tickets/%2E%2E/mail", "/mail"),
            ("/tickets/.%2e/mail", "/mail"),
            ("//mail//send", "/mail/send"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("/..", "/"),
            ("/tenants//globex", "/tenants/globex"),
            ("/ticketsX/../tickets", "/tickets"),
            ("/a?x=1&y=/..", "/a?x=1&y=/.."),
            ("/a/../b?", "/b?"),
            ("/%7Euser/%41", "/~user/A"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%3ab", "/a%3Ab"),
            ("/a%252e%252e/b", "/a%252e%252e/b"),
            ("/.../x", "/.../x"),
        ] {
            assert_eq!(c(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for raw in [
            "",
            "*",
            "tickets",
            "http://evil/tickets",
            "/a%2Fb",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%0ab",
            "/a%",
            "/a%g0",
            "/a%2",
            "/a b",
            "/a#frag",
            "/a?b#frag",
            "/a\u{e9}",
            "/admin;x",
            "/a;/../admin",
            "/a?x=\"",
            "/a\t",
        ] {
            assert_eq!(c(raw), Err(Reason::RequestTarget), "{raw:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(c(&long), Err(Reason::RequestTarget));
    }

    #[test]
    fn semicolons_can_be_allowed() {
        let t = canonical("/a;v=1/../b;x", Semicolons::Allow).unwrap();
        assert_eq!(t.path, "/b;x");
    }

    #[test]
    fn canonical_is_idempotent() {
        for raw in ["/a/../b/./c//d/", "/%7e%41/%c3%a9?q=%2F", "/x/.."] {
            let once = c(raw).unwrap();
            assert_eq!(c(&once).unwrap(), once);
        }
    }

    #[test]
    fn segments() {
        let seg = |raw: &str| {
            canonical(raw, Semicolons::Reject)
                .unwrap()
                .segments()
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        assert!(seg("/").is_empty());
        assert_eq!(seg("/a/b"), ["a", "b"]);
        assert_eq!(seg("/a/b/"), ["a", "b", ""]);
    }

    #[test]
    fn prefixes_are_segment_aware() {
        assert!(prefix_covers("/tickets", "/tickets"));
        assert!(prefix_covers("/tickets", "/tickets/1"));
        assert!(prefix_covers("/tickets", "/tickets/"));
        assert!(!prefix_covers("/tickets", "/ticketsX"));
        assert!(!prefix_covers("/tickets", "/ticket"));
        assert!(prefix_covers("/tickets/", "/tickets/1"));
        assert!(!prefix_covers("/tickets/", "/tickets"));
        assert!(prefix_covers("/", "/anything"));
    }

    #[test]
    fn hosts() {
        assert_eq!(canonical_host("API.Example.TEST"), "api.example.test");
        assert_eq!(
            canonical_host("api.example.test.:8443"),
            "api.example.test:8443"
        );
        assert_eq!(canonical_host("[::1]:80"), "[::1]:80");
        assert_eq!(canonical_host("[::1]"), "[::1]");
        assert_eq!(canonical_host(""), "");
    }

    #[test]
    fn method_names() {
        assert!(is_method_name("GET") && is_method_name("M-SEARCH"));
        assert!(!is_method_name("get") && !is_method_name("") && !is_method_name("G ET"));
    }
}
