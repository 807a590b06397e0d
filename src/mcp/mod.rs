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
