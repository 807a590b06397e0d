//! One JSON-RPC message, read strictly: one object (a batch array is refused), no duplicate
//! members anywhere (the server's parser might keep another copy than ours), bounded depth.

use serde_json::Value;

use super::META_PROTOCOL_VERSION;

/// Nesting allowed in a message (arguments included).
const MAX_DEPTH: usize = 32;

/// What the filter decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `None`: a notification.
    pub id: Option<Value>,
    pub method: String,
    /// `params.name` (`tools/call`, `prompts/get`) or `params.uri` (`resources/read`).
    pub name: Option<String>,
    /// `params.arguments` of `tools/call` / `prompts/get`.
    pub arguments: Option<Value>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28 requests).
    pub protocol_version: Option<String>,
}

/// Why a body is not one MCP request the filter can decide on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("a JSON-RPC batch (an array): MCP carries one message per POST")]
    Batch,
    /// A JSON-RPC response (a 2025-11-25 client answering a server's request, e.g.
    /// sampling): it runs nothing on the server. 2026-07-28 clients must not send one.
    #[error("a JSON-RPC response: 2026-07-28 clients send requests only")]
    Response { id: Value },
    #[error("{0}")]
    Shape(String),
}

/// The methods whose name (or URI) selects what runs.
pub fn named(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// The `params` member naming what a call uses, for every method the filter decides by
/// name: those that mirror it in `Mcp-Name`, and the 2025-11-25 resource subscriptions.
fn name_member(method: &str) -> Option<&'static str> {
    named(method).or(match method {
        "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    })
}

fn shape(msg: impl Into<String>) -> MessageError {
    MessageError::Shape(msg.into())
}

/// Reads `body` as one JSON-RPC 2.0 request or notification.
pub fn parse_message(body: &[u8]) -> Result<Message, MessageError> {
    let v = crate::json::parse_strict(body, MAX_DEPTH)
        .map_err(|e| MessageError::Json(e.to_string()))?;
    let obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => return Err(MessageError::Batch),
        _ => return Err(shape("the body is not a JSON-RPC object")),
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(shape("`jsonrpc` is not \"2.0\""));
    }
    if obj.contains_key("result") || obj.contains_key("error") {
        let one_of = obj.contains_key("result") != obj.contains_key("error");
        return match obj.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_)))
                if one_of && !obj.contains_key("method") && obj.len() == 3 =>
            {
                Err(MessageError::Response { id: id.clone() })
            }
            _ => Err(shape("neither a JSON-RPC request nor a response")),
        };
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => return Err(shape("`method` is not a non-empty string")),
    };
    let id = match obj.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        Some(_) => return Err(shape("`id` is not a string or a number")),
    };
    let params = match obj.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(shape("`params` is not an object")),
    };
    let name = match name_member(&method) {
        None => None,
        Some(field) => match params.and_then(|p| p.get(field)) {
            Some(Value::String(n)) if !n.is_empty() => Some(n.clone()),
            _ => {
                return Err(shape(format!(
                    "{method}: `params.{field}` is not a non-empty string"
                )))
            }
        },
    };
    let arguments = match params.and_then(|p| p.get("arguments")) {
        None => None,
        Some(a @ Value::Object(_)) => Some(a.clone()),
        Some(_) => return Err(shape("`params.arguments` is not an object")),
    };
    let protocol_version = match params
        .and_then(|p| p.get("_meta"))
        .map(|m| m.get(META_PROTOCOL_VERSION))
    {
        None | Some(None) => None,
        Some(Some(Value::String(v))) => Some(v.clone()),
        Some(Some(_)) => return Err(shape("the protocol version in `_meta` is not a string")),
    };
    Ok(Message {
        id,
        method,
        name,
        arguments,
        protocol_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Message, MessageError> {
        parse_message(v.to_string().as_bytes())
    }

    #[test]
    fn a_tool_call_yields_method_name_arguments_and_version() {
        let m = parse(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "create_ticket", "arguments": {"title": "x"},
                       "_meta": {META_PROTOCOL_VERSION: "2026-07-28"}}}))
        .unwrap();
        assert_eq!(m.method, "tools/call");
        assert_eq!(m.name.as_deref(), Some("create_ticket"));
        assert_eq!(m.arguments, Some(json!({"title": "x"})));
        assert_eq!(m.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(m.id, Some(json!(7)));
        let r = parse(
            json!({"jsonrpc": "2.0", "id": "a", "method": "resources/read",
            "params": {"uri": "tickets://1"}}),
        )
        .unwrap();
        assert_eq!(r.name.as_deref(), Some("tickets://1"));
        let n = parse(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).unwrap();
        assert_eq!((n.id, n.name), (None, None));
    }

    #[test]
    fn a_response_is_told_apart_from_a_request() {
        assert_eq!(
            parse(json!({"jsonrpc": "2.0", "id": 1, "result": {"model": "m"}})),
            Err(MessageError::Response { id: json!(1) })
        );
        assert_eq!(
            parse(json!({"jsonrpc": "2.0", "id": "s", "error": {"code": 1, "message": "no"}})),
            Err(MessageError::Response { id: json!("s") })
        );
    }

    #[test]
    fn anything_but_one_well_formed_request_is_refused() {
        let dup = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","name":"delete_all"}}"#;
        assert!(matches!(parse_message(dup), Err(MessageError::Json(_))));
        assert_eq!(
            parse(json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}])),
            Err(MessageError::Batch)
        );
        for bad in [
            json!({"id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "method": ""}),
            json!({"jsonrpc": "2.0", "id": {}, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 3}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"name": "x"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "a", "arguments": "rm -rf"}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {}, "method": "tools/call"}),
            json!({"jsonrpc": "2.0", "result": {}}),
            json!("tools/call"),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(MessageError::Shape(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_message(b"not json"),
            Err(MessageError::Json(_))
        ));
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(matches!(
            parse_message(deep.as_bytes()),
            Err(MessageError::Json(_))
        ));
    }
}
