//! Identity values and patterns: what an agent id, a principal or a scope may look like
//! wherever it enters (token, registry, feed) and how patterns match. A leaf: it names
//! nothing else of the crate.

/// `value` matches `pattern`: equal, or `pattern` ends in `*` and `value` is the rest
/// followed by at least one character (`agent:summarizer-*` does not match
/// `agent:summarizer-`).
pub fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.len() > prefix.len() && value.starts_with(prefix),
        None => pattern == value,
    }
}

/// Longest identity value (`sub`, `act.sub`, registry ids and owners), in bytes.
/// OpenID Connect caps `sub` at 255 ASCII characters; SPIFFE ids in practice fit too.
pub const MAX_ID_BYTES: usize = 256;

/// Characters an identity value never contains: the separators of the identity headers
/// (`,` in `x-agent-chain`, space in `x-agent-scopes`), any Unicode whitespace, control
/// and invisible formatting characters (zero-width and bidirectional marks), `"` and `\`
/// (quoting in headers and logs), and `*` (so that a value never reads as a pattern).
fn forbidden_in_id(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, ',' | '"' | '\\' | '*')
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// An identity value as it may reach the identity headers and the audit trail: 1 to
/// [`MAX_ID_BYTES`] bytes, none of them [`forbidden_in_id`]. Checked where identities
/// enter: the token (`sub`, every `act.sub`) and the registry (ids, patterns, owners).
pub fn is_identity(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_BYTES && !s.chars().any(forbidden_in_id)
}

/// An RFC 6749 §3.3 scope token (printable ASCII except space, `"` and `\\`), without `,`:
/// effective scopes reach the upstream as one `x-agent-scopes` value, and an upstream that
/// splits it on commas too must not find a scope (`tickets:read,admin`) that passed a
/// ceiling (`tickets:*`) as one.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b == 0x21
                || (0x23..=0x2b).contains(&b)
                || (0x2d..=0x5b).contains(&b)
                || (0x5d..=0x7e).contains(&b)
        })
}
