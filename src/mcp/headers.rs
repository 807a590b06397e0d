//! The request headers MCP 2026-07-28 mirrors from the body (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`), checked against the message. A header is compared, never
//! believed: present headers must equal the body (after `=?base64?…?=` decoding), a
//! 2026-07-28 request must carry them, and a repeated one is a mismatch. `Mcp-Param-*`
//! headers are the server's to check.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::message::{named, Message};
use super::REVISION_2026_07_28;

/// A header that is missing, repeated or does not mirror the body (HTTP 400, JSON-RPC
/// `-32020`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Header mismatch: {0}")]
pub struct HeaderMismatch(pub String);

const VERSION: &str = "mcp-protocol-version";
const METHOD: &str = "mcp-method";
const NAME: &str = "mcp-name";

/// A header value as an MCP 2026-07-28 client sends it: as it is when it is plain visible
/// ASCII (and space) without edge spaces and not itself shaped like the encoding;
/// otherwise `=?base64?<standard base64 of the UTF-8>?=` (what [`decode_header_value`]
/// reads back).
pub fn encode_header_value(value: &str) -> String {
    let visible = value.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let edge_space = value.starts_with(' ') || value.ends_with(' ');
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    if visible && !edge_space && !sentinel {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value.as_bytes()))
    }
}

/// A mirrored header value as the client meant it: `=?base64?<standard base64 of UTF-8>?=`
/// decoded (canonical encodings only), a plain value as it is (visible ASCII and space).
/// `None`: a value that cannot match anything.
pub fn decode_header_value(raw: &str) -> Option<String> {
    if let Some(b64) = raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        let bytes = STANDARD.decode(b64).ok()?;
        // One spelling per value: a non-canonical encoding could hide a second reading.
        if STANDARD.encode(&bytes) != b64 {
            return None;
        }
        return String::from_utf8(bytes).ok();
    }
    raw.bytes()
        .all(|b| (0x20..=0x7e).contains(&b))
        .then(|| raw.to_owned())
}

/// The one value of header `name` (lower case) among `headers`; a repeated header is a
/// mismatch.
fn one<'a>(headers: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, HeaderMismatch> {
    let mut found = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(HeaderMismatch(format!("{name} appears more than once")));
    }
    Ok(first)
}

fn compare(
    header: &str,
    value: Option<&str>,
    body: &str,
    decode: bool,
) -> Result<(), HeaderMismatch> {
    let Some(raw) = value else {
        return Ok(());
    };
    let got = if decode {
        decode_header_value(raw)
    } else {
        Some(raw.to_owned())
    };
    if got.as_deref() == Some(body) {
        Ok(())
    } else {
        Err(HeaderMismatch(format!(
            "{header} header value {raw:?} does not match body value {body:?}"
        )))
    }
}

/// Checks the mirrored headers of `headers` (names in any case) against `msg`.
pub fn check_headers(msg: &Message, headers: &[(String, String)]) -> Result<(), HeaderMismatch> {
    let version = one(headers, VERSION)?;
    let method = one(headers, METHOD)?;
    let name = one(headers, NAME)?;
    let body_version = msg.protocol_version.as_deref();
    let modern = version == Some(REVISION_2026_07_28) || body_version == Some(REVISION_2026_07_28);
    if modern {
        let missing = |h: &str| HeaderMismatch(format!("{h} is required by {REVISION_2026_07_28}"));
        if version.is_none() {
            return Err(missing("MCP-Protocol-Version"));
        }
        if body_version.is_none() {
            return Err(HeaderMismatch(format!(
                "MCP-Protocol-Version {REVISION_2026_07_28} but the body carries no protocol version"
            )));
        }
        if method.is_none() {
            return Err(missing("Mcp-Method"));
        }
        if named(&msg.method).is_some() && name.is_none() {
            return Err(missing("Mcp-Name"));
        }
    }
    if let Some(b) = body_version {
        compare("MCP-Protocol-Version", version, b, false)?;
    }
    compare("Mcp-Method", method, &msg.method, false)?;
    match msg.name.as_deref() {
        Some(n) => compare("Mcp-Name", name, n, true),
        None if name.is_some() => Err(HeaderMismatch(format!(
            "Mcp-Name sent for {}, which names nothing",
            msg.method
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::parse_message;
    use serde_json::json;

    fn call(name: &str, version: Option<&str>) -> Message {
        let mut params = json!({"name": name, "arguments": {}});
        if let Some(v) = version {
            params["_meta"] = json!({crate::mcp::META_PROTOCOL_VERSION: v});
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params});
        parse_message(body.to_string().as_bytes()).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn base64_values_decode_canonically_or_not_at_all() {
        assert_eq!(
            decode_header_value("=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
            Some("Hello, 世界")
        );
        assert_eq!(
            decode_header_value("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").as_deref(),
            Some("=?base64?literal?=")
        );
        assert_eq!(
            decode_header_value("search_tickets").as_deref(),
            Some("search_tickets")
        );
        for bad in [
            "=?base64?SGVsbG8?=",
            "=?base64?SGVsbG9=?=",
            "=?base64?***?=",
            "=?base64?/w==?=",
            "caf\u{e9}",
            "a\tb",
        ] {
            assert_eq!(decode_header_value(bad), None, "{bad}");
        }
        // Upper-case markers are not the encoding: a plain value that cannot equal a name.
        assert_eq!(
            decode_header_value("=?BASE64?YQ==?=").as_deref(),
            Some("=?BASE64?YQ==?=")
        );
    }

    #[test]
    fn a_2026_07_28_request_must_mirror_its_body() {
        let m = call("create_ticket", Some("2026-07-28"));
        let good = [
            ("MCP-Protocol-Version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("Mcp-Name", "create_ticket"),
        ];
        assert_eq!(check_headers(&m, &h(&good)), Ok(()));
        let encoded = [
            ("MCP-Protocol-Version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("Mcp-Name", "=?base64?Y3JlYXRlX3RpY2tldA==?="),
        ];
        assert_eq!(check_headers(&m, &h(&encoded)), Ok(()));
        for bad in [
            &good[..2],
            &[good[0], good[2]][..],
            &good[1..],
            &[good[0], good[1], ("Mcp-Name", "search_tickets")][..],
            &[good[0], ("Mcp-Method", "tools/list"), good[2]][..],
            &[good[0], good[1], good[2], ("mcp-name", "search_tickets")][..],
            &[("MCP-Protocol-Version", "2025-11-25"), good[1], good[2]][..],
        ] {
            assert!(check_headers(&m, &h(bad)).is_err(), "{bad:?}");
        }
        // The header claims the new revision, the body does not carry it.
        let old_body = call("create_ticket", None);
        assert!(check_headers(&old_body, &h(&good)).is_err());
    }

    #[test]
    fn older_clients_need_no_headers_but_what_they_send_must_match() {
        let m = call("create_ticket", None);
        assert_eq!(check_headers(&m, &[]), Ok(()));
        assert_eq!(
            check_headers(
                &m,
                &h(&[
                    ("MCP-Protocol-Version", "2025-11-25"),
                    ("Mcp-Name", "create_ticket")
                ])
            ),
            Ok(())
        );
        assert!(check_headers(&m, &h(&[("Mcp-Name", "search_tickets")])).is_err());
        assert!(check_headers(&m, &h(&[("Mcp-Method", "tools/list")])).is_err());
        let list = parse_message(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap();
        assert!(check_headers(&list, &h(&[("Mcp-Name", "create_ticket")])).is_err());
    }
}
