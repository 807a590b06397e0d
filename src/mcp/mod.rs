//! MCP (revision 2026-07-28, and 2025-11-25 clients): the one JSON-RPC message a POST on an
//! MCP route carries, read strictly, and the mirrored `Mcp-*` request headers checked
//! against it. The filter decides on the body the server will execute; headers are only
//! ever compared with it, never trusted.

mod headers;
mod lists;
mod message;
mod resource;
pub mod sse;

pub use headers::{check_headers, decode_header_value, encode_header_value, HeaderMismatch};
pub use lists::{filter_json, filter_sse, Filtered, ListError, ListKind, OUTPUT_SLACK};
pub use message::{named, parse_message, Message, MessageError};
pub use resource::{metadata_location, ProtectedResource};

/// The most the filter buffers of a body (an MCP request, a list response): well below
/// Envoy's default buffer limit (1 MiB, `per_connection_buffer_limit_bytes`), so the
/// filter's own audited refusal comes before Envoy's bare 413 or 500.
pub const MAX_BUFFERED_BYTES: usize = 768 * 1024;

/// The protocol revision that mirrors the method and name into headers.
pub const REVISION_2026_07_28: &str = "2026-07-28";

/// `params._meta` member carrying the protocol version in 2026-07-28 requests.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// JSON-RPC error code for a header that does not mirror the body (`HeaderMismatch`).
pub const HEADER_MISMATCH: i64 = -32020;

/// `s` with its `%XX` escapes decoded; `None` when an escape is malformed or the result is
/// not UTF-8.
pub fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn percent_escapes_decode_or_refuse() {
        assert_eq!(
            percent_decoded("tickets://%31").as_deref(),
            Some("tickets://1")
        );
        assert_eq!(percent_decoded("a%2Fb%2fc").as_deref(), Some("a/b/c"));
        assert_eq!(percent_decoded("%E2%82%AC").as_deref(), Some("€"));
        for bad in ["%", "%4", "%zz", "%+1", "%FF"] {
            assert_eq!(percent_decoded(bad), None, "{bad}");
        }
    }
}
