//! `tools/list`, `resources/list`, `resources/templates/list` and `prompts/list` responses
//! with the entries the caller may not use taken out, as `application/json` or as a
//! `text/event-stream`.
//!
//! Fail closed: a response the filter cannot read completely and strictly (too large, not
//! JSON, duplicate members, too deep, not the answer to this request, a list of another
//! shape, an event stream that ends inside an event or carries no or two answers) is an
//! error, never passed through unfiltered. A JSON-RPC error answering the request carries no
//! list and passes unchanged.
//!
//! The filtered result says `"cacheScope": "private"` (MCP 2026-07-28, caching: a list that
//! varies per authorization must not be shared across authorization contexts); every other
//! member (`nextCursor`, `ttlMs`, `_meta`, members this code does not know) is kept, and
//! objects keep their members' order (tool input schemas included). Numbers are rewritten
//! the way serde_json writes them (`1e5` becomes `100000.0`; integers beyond 64 bits become
//! floats); strings keep their value, not their escapes, except that U+0085, U+2028 and
//! U+2029 are always written escaped (some event-stream readers split lines on them).

use std::io;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

use super::sse;

/// Nesting allowed in a list response (tool input schemas nest).
const MAX_DEPTH: usize = 64;

/// How much larger than the input bound the filtered output may be: room for the added
/// `cacheScope` member and a rewritten event's `data: ` prefix. A response whose rewrite
/// grows past it (numbers serde_json writes longer) is refused as too large.
pub const OUTPUT_SLACK: usize = 256;

/// The list methods, and where each keeps its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`.
    Tools,
    /// `resources/list`: `result.resources[].uri`.
    Resources,
    /// `resources/templates/list`: `result.resourceTemplates[].uriTemplate`.
    ResourceTemplates,
    /// `prompts/list`: `result.prompts[].name`.
    Prompts,
}

impl ListKind {
    /// The list a request `method` asks for, if it is one.
    pub fn of(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            "prompts/list" => Some(ListKind::Prompts),
            _ => None,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The member of `result` holding the entries.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The member of an entry that `allowed` is asked about.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// A filtered response body and what the filter did to its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    pub body: Vec<u8>,
    /// Entries kept and removed (both 0 for a JSON-RPC error passed unchanged).
    pub kept: usize,
    pub removed: usize,
}

/// Why a list response cannot be filtered (and so must not reach the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not the response to this request: {0}")]
    NotTheResponse(String),
    #[error("{0}")]
    Shape(String),
    #[error("event stream: {0}")]
    Sse(String),
}

fn shape(msg: impl Into<String>) -> ListError {
    ListError::Shape(msg.into())
}

/// Filters `body`, the upstream's `application/json` answer to the list request with id
/// `id`: an entry stays iff it is an object whose `kind.key()` member is a non-empty
/// string `allowed` accepts. `max` bounds the input; the output is bounded by
/// `max + OUTPUT_SLACK`.
pub fn filter_json(
    body: &[u8],
    id: &Value,
    kind: ListKind,
    allowed: &dyn Fn(&str) -> bool,
    max: usize,
) -> Result<Filtered, ListError> {
    if body.len() > max {
        return Err(ListError::TooLarge(max));
    }
    let message = strict(body).map_err(ListError::NotJson)?;
    match answer(&message, id)? {
        Answer::Error => Ok(Filtered {
            body: body.to_vec(),
            kept: 0,
            removed: 0,
        }),
        Answer::Result => rewrite(body, kind, allowed, max.saturating_add(OUTPUT_SLACK)),
    }
}

/// Filters `body`, the upstream's `text/event-stream` answer to the list request with id
/// `id`. The one event whose data is the response is rewritten (its data on one `data:`
/// line, its other lines kept); every other event passes byte for byte. Every event's data
/// must be empty or one JSON-RPC message object (anything else might be read as a response
/// by a laxer parser than ours); the stream must carry exactly one response, to `id`, and
/// may end inside an event only if that event holds nothing but comments. Bounds as
/// [`filter_json`], on the whole stream.
pub fn filter_sse(
    body: &[u8],
    id: &Value,
    kind: ListKind,
    allowed: &dyn Fn(&str) -> bool,
    max: usize,
) -> Result<Filtered, ListError> {
    if body.len() > max {
        return Err(ListError::TooLarge(max));
    }
    let bound = max.saturating_add(OUTPUT_SLACK);
    let stream = sse::parse(body);
    let mut out = Vec::with_capacity(body.len().saturating_add(64).min(bound));
    out.extend_from_slice(stream.bom);
    let mut answered: Option<(usize, usize)> = None;
    for (n, event) in stream.enumerate() {
        if !event.terminated {
            if event.is_inert() {
                out.extend_from_slice(event.raw);
                continue;
            }
            return Err(ListError::Sse(format!(
                "the stream ends inside event {n} (no blank line after it)"
            )));
        }
        let data = match event.data() {
            Some(d) if !d.is_empty() => d,
            _ => {
                out.extend_from_slice(event.raw);
                continue;
            }
        };
        let message = strict(&data).map_err(|e| ListError::NotJson(format!("event {n}: {e}")))?;
        let is_response = match &message {
            Value::Object(o) => o.contains_key("result") || o.contains_key("error"),
            Value::Array(_) => return Err(ListError::Sse(format!("event {n} carries a batch"))),
            _ => {
                return Err(ListError::Sse(format!(
                    "event {n} does not carry a JSON-RPC message"
                )))
            }
        };
        if !is_response {
            out.extend_from_slice(event.raw);
            continue;
        }
        if answered.is_some() {
            return Err(ListError::Sse(format!(
                "event {n} is a second response to the request"
            )));
        }
        match answer(&message, id)? {
            Answer::Error => {
                answered = Some((0, 0));
                out.extend_from_slice(event.raw);
            }
            Answer::Result => {
                let f = rewrite(&data, kind, allowed, bound)?;
                answered = Some((f.kept, f.removed));
                let mut data_written = false;
                for line in event.lines() {
                    match line.field() {
                        Some((b"data", _)) if data_written => {}
                        Some((b"data", _)) => {
                            out.extend_from_slice(b"data: ");
                            out.extend_from_slice(&f.body);
                            out.extend_from_slice(line.end);
                            data_written = true;
                        }
                        _ => {
                            out.extend_from_slice(line.content);
                            out.extend_from_slice(line.end);
                        }
                    }
                }
            }
        }
        if out.len() > bound {
            return Err(ListError::TooLarge(max));
        }
    }
    let Some((kept, removed)) = answered else {
        return Err(ListError::Sse(
            "no event carries the response to the request".into(),
        ));
    };
    if out.len() > bound {
        return Err(ListError::TooLarge(max));
    }
    Ok(Filtered {
        body: out,
        kept,
        removed,
    })
}

fn strict(bytes: &[u8]) -> Result<Value, String> {
    crate::json::parse_strict(bytes, MAX_DEPTH).map_err(|e| e.to_string())
}

enum Answer {
    Result,
    Error,
}

/// What `message` is, as the answer to the request with id `id`.
fn answer(message: &Value, id: &Value) -> Result<Answer, ListError> {
    let o = match message {
        Value::Object(o) => o,
        Value::Array(_) => return Err(shape("a JSON-RPC batch (an array), not one response")),
        _ => return Err(shape("not a JSON-RPC object")),
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(shape("`jsonrpc` is not \"2.0\""));
    }
    if o.contains_key("method") {
        return Err(shape("a request or notification, not a response"));
    }
    let kind = match (o.contains_key("result"), o.contains_key("error")) {
        (true, false) => Answer::Result,
        (false, true) => Answer::Error,
        (true, true) => return Err(shape("both `result` and `error`")),
        (false, false) => return Err(shape("neither `result` nor `error`")),
    };
    match o.get("id") {
        Some(got) if got == id => Ok(kind),
        Some(got) => Err(ListError::NotTheResponse(format!(
            "id {got}, the request's is {id}"
        ))),
        None => Err(ListError::NotTheResponse("no id".into())),
    }
}

/// Filters the list in `bytes` (a strictly valid JSON-RPC result answering the request)
/// and sets `cacheScope`, keeping the members' order.
fn rewrite(
    bytes: &[u8],
    kind: ListKind,
    allowed: &dyn Fn(&str) -> bool,
    bound: usize,
) -> Result<Filtered, ListError> {
    let mut root: Node =
        serde_json::from_slice(bytes).map_err(|e| ListError::NotJson(e.to_string()))?;
    let result = match member(&mut root, "result") {
        Some(Node::Object(members)) => members,
        _ => return Err(shape("`result` is not an object")),
    };
    let (kept, removed) = {
        let entries = match result.iter_mut().find(|(k, _)| k == kind.member()) {
            Some((_, Node::Array(entries))) => entries,
            _ => {
                return Err(shape(format!(
                    "{}: `result.{}` is not an array",
                    kind.method(),
                    kind.member()
                )))
            }
        };
        let before = entries.len();
        entries.retain(|e| key(e, kind.key()).is_some_and(|k| !k.is_empty() && allowed(k)));
        (entries.len(), before.saturating_sub(entries.len()))
    };
    let private = Node::Scalar(Value::String("private".into()));
    match result.iter_mut().find(|(k, _)| k == "cacheScope") {
        Some((_, v)) => *v = private,
        None => result.push(("cacheScope".into(), private)),
    }
    let mut out = Bounded {
        out: Vec::with_capacity(bytes.len().min(bound)),
        limit: bound,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, LineSafe);
    root.serialize(&mut ser).map_err(|e| {
        if e.is_io() {
            ListError::TooLarge(bound.saturating_sub(OUTPUT_SLACK))
        } else {
            ListError::NotJson(e.to_string())
        }
    })?;
    Ok(Filtered {
        body: out.out,
        kept,
        removed,
    })
}

fn member<'n>(node: &'n mut Node, name: &str) -> Option<&'n mut Node> {
    match node {
        Node::Object(members) => members.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v),
        _ => None,
    }
}

/// The entry's `key` member, if the entry is an object and the member a string.
fn key<'n>(entry: &'n Node, key: &str) -> Option<&'n str> {
    match entry {
        Node::Object(members) => match members.iter().find(|(k, _)| k == key) {
            Some((_, Node::Scalar(Value::String(s)))) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON value whose objects keep their members in document order (this crate's
/// serde_json has no `preserve_order`: its `Map` sorts). Only ever read from bytes that
/// `crate::json::parse_strict` accepted, so no duplicates and bounded depth.
enum Node {
    Scalar(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(|n| Node::Scalar(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Node>()? {
            out.push(v);
        }
        Ok(Node::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<Node>()?;
            out.push((k, v));
        }
        Ok(Node::Object(out))
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Scalar(v) => v.serialize(s),
            Node::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// serde_json's compact output, with U+0085, U+2028 and U+2029 escaped: JSON allows them
/// raw in strings, but line readers that split like Python's `str.splitlines` would cut an
/// event-stream `data:` line there.
struct LineSafe;

impl serde_json::ser::Formatter for LineSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(i) = rest.find(['\u{85}', '\u{2028}', '\u{2029}']) {
            let (head, tail) = rest.split_at(i);
            writer.write_all(head.as_bytes())?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                write!(writer, "\\u{:04x}", u32::from(c))?;
            }
            rest = chars.as_str();
        }
        writer.write_all(rest.as_bytes())
    }
}

/// A buffer that refuses to grow past `limit` (the serializer then stops with an I/O
/// error).
struct Bounded {
    out: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.limit.saturating_sub(self.out.len()) {
            return Err(io::Error::other("output bound reached"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const MAX: usize = 65536;

    fn reads(name: &str) -> bool {
        name.starts_with("read_") || name.starts_with("tickets://")
    }

    fn tools(entries: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": entries, "nextCursor": "c2"}})
    }

    fn json_of(f: &Filtered) -> Value {
        serde_json::from_slice(&f.body).unwrap()
    }

    fn filter(v: &Value) -> Result<Filtered, ListError> {
        filter_json(
            v.to_string().as_bytes(),
            &json!(1),
            ListKind::Tools,
            &reads,
            MAX,
        )
    }

    #[test]
    fn methods_name_their_lists() {
        for (m, member, key) in [
            ("tools/list", "tools", "name"),
            ("resources/list", "resources", "uri"),
            (
                "resources/templates/list",
                "resourceTemplates",
                "uriTemplate",
            ),
            ("prompts/list", "prompts", "name"),
        ] {
            let k = ListKind::of(m).unwrap();
            assert_eq!((k.method(), k.member(), k.key()), (m, member, key));
        }
        for other in [
            "tools/call",
            "Tools/list",
            "tools/list ",
            "resources/read",
            "",
        ] {
            assert_eq!(ListKind::of(other), None);
        }
    }

    #[test]
    fn keeps_only_allowed_entries_and_marks_the_result_private() {
        let body = tools(json!([
            {"name": "read_ticket", "inputSchema": {"type": "object"}},
            {"name": "create_ticket"},
            {"name": "read_comments", "title": "Comments"},
        ]));
        let f = filter(&body).unwrap();
        assert_eq!((f.kept, f.removed), (2, 1));
        assert_eq!(
            json_of(&f),
            json!({"jsonrpc": "2.0", "id": 1, "result": {
                "tools": [{"name": "read_ticket", "inputSchema": {"type": "object"}},
                          {"name": "read_comments", "title": "Comments"}],
                "nextCursor": "c2", "cacheScope": "private"}})
        );
    }

    #[test]
    fn every_other_member_is_kept_in_order_and_cache_scope_is_replaced_in_place() {
        let body = br#"{"result":{"ttlMs":60000,"cacheScope":"public","tools":[{"name":"read_x","z":1,"a":{"y":2,"b":3}},{"name":"write_x"}],"_meta":{"k":"v"},"unknown":[1,2],"nextCursor":"n"},"jsonrpc":"2.0","id":1}"#;
        let f = filter_json(body, &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!(
            String::from_utf8(f.body).unwrap(),
            r#"{"result":{"ttlMs":60000,"cacheScope":"private","tools":[{"name":"read_x","z":1,"a":{"y":2,"b":3}}],"_meta":{"k":"v"},"unknown":[1,2],"nextCursor":"n"},"jsonrpc":"2.0","id":1}"#
        );
        let odd = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [], "cacheScope": 7}});
        assert_eq!(
            json_of(&filter(&odd).unwrap())["result"]["cacheScope"],
            "private"
        );
    }

    #[test]
    fn each_kind_filters_on_its_own_key() {
        let allow = |k: &str| k == "keep";
        for (kind, member, key) in [
            (ListKind::Resources, "resources", "uri"),
            (
                ListKind::ResourceTemplates,
                "resourceTemplates",
                "uriTemplate",
            ),
            (ListKind::Prompts, "prompts", "name"),
        ] {
            let body = json!({"jsonrpc": "2.0", "id": "r", "result": {member: [
                {key: "keep"}, {key: "drop"}, {"name": "keep", "uri": "drop", "uriTemplate": "drop"}
            ]}});
            let f =
                filter_json(body.to_string().as_bytes(), &json!("r"), kind, &allow, MAX).unwrap();
            let kept = &json_of(&f)["result"][member];
            assert!(
                kept.as_array().unwrap().iter().all(|e| e[key] == "keep"),
                "{kind:?}"
            );
            assert_eq!(f.kept + f.removed, 3);
            // The wrong member for the kind is a shape error, not an empty list.
            let other = json!({"jsonrpc": "2.0", "id": "r", "result": {"tools": []}});
            assert!(matches!(
                filter_json(other.to_string().as_bytes(), &json!("r"), kind, &allow, MAX),
                Err(ListError::Shape(_))
            ));
        }
    }

    #[test]
    fn entries_without_a_string_key_are_removed() {
        let all = |_: &str| true;
        let body = tools(json!([
            "read_x", 7, null, [], {"title": "no name"}, {"name": 3}, {"name": null},
            {"name": ""}, {"name": {"read_x": 1}}, {"Name": "read_x"}, {"name": "read_ok"}
        ]));
        let f = filter_json(
            body.to_string().as_bytes(),
            &json!(1),
            ListKind::Tools,
            &all,
            MAX,
        )
        .unwrap();
        assert_eq!((f.kept, f.removed), (1, 10));
        assert_eq!(json_of(&f)["result"]["tools"], json!([{"name": "read_ok"}]));
    }

    #[test]
    fn a_json_rpc_error_answering_the_request_passes_unchanged() {
        let body = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope","data":{"tools":[{"name":"write"}]}}}"#;
        let f = filter_json(body, &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!((f.body.as_slice(), f.kept, f.removed), (&body[..], 0, 0));
        let other = br#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#;
        assert!(matches!(
            filter_json(other, &json!(1), ListKind::Tools, &reads, MAX),
            Err(ListError::NotTheResponse(_))
        ));
    }

    #[test]
    fn ids_must_be_equal_values_of_the_same_type() {
        let body = tools(json!([{"name": "write_x"}]));
        for id in [json!("1"), json!(1.0), json!(2), json!(null), json!([1])] {
            assert!(
                matches!(
                    filter_json(
                        body.to_string().as_bytes(),
                        &id,
                        ListKind::Tools,
                        &reads,
                        MAX
                    ),
                    Err(ListError::NotTheResponse(_))
                ),
                "{id}"
            );
        }
        let s = json!({"jsonrpc": "2.0", "id": "1", "result": {"tools": []}});
        assert!(filter_json(
            s.to_string().as_bytes(),
            &json!("1"),
            ListKind::Tools,
            &reads,
            MAX
        )
        .is_ok());
        assert!(matches!(
            filter_json(
                s.to_string().as_bytes(),
                &json!(1),
                ListKind::Tools,
                &reads,
                MAX
            ),
            Err(ListError::NotTheResponse(_))
        ));
        let no_id = json!({"jsonrpc": "2.0", "result": {"tools": []}});
        assert!(matches!(filter(&no_id), Err(ListError::NotTheResponse(_))));
    }

    #[test]
    fn anything_but_one_list_result_is_refused() {
        for bad in [
            json!({"jsonrpc": "2.0", "id": 1, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": {"name": "x"}}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": null}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": []}),
            json!({"jsonrpc": "2.0", "id": 1, "result": null}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}, "error": {}}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "result": {"tools": []}}),
            json!({"jsonrpc": "1.0", "id": 1, "result": {"tools": []}}),
            json!({"id": 1, "result": {"tools": []}}),
            json!([{"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}]),
            json!("tools"),
        ] {
            assert!(matches!(filter(&bad), Err(ListError::Shape(_))), "{bad}");
        }
    }

    #[test]
    fn not_strict_json_is_refused() {
        for bad in [
            &b""[..],
            b"not json",
            b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}",
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}} x"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"write"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a","name":"write"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a","inputSchema":{"a":1,"a":2}}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a","x":NaN}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a","x":1e400}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_\xff"}]}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],}}"#,
        ] {
            assert!(
                matches!(
                    filter_json(bad, &json!(1), ListKind::Tools, &reads, MAX),
                    Err(ListError::NotJson(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"read_a","s":{}1{}}}]}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(matches!(
            filter_json(deep.as_bytes(), &json!(1), ListKind::Tools, &reads, MAX),
            Err(ListError::NotJson(_))
        ));
        let fine = deep
            .replace(&"[".repeat(70), &"[".repeat(50))
            .replace(&"]".repeat(70), &"]".repeat(50));
        assert!(filter_json(fine.as_bytes(), &json!(1), ListKind::Tools, &reads, MAX).is_ok());
    }

    #[test]
    fn bounds_input_and_output() {
        let entries: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("read_{i}")}))
            .collect();
        let body = tools(Value::Array(entries)).to_string();
        let n = body.len();
        assert_eq!(
            filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &reads, n - 1),
            Err(ListError::TooLarge(n - 1))
        );
        let f = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &reads, n).unwrap();
        assert_eq!((f.kept, f.removed), (5000, 0));
        assert!(f.body.len() <= n + OUTPUT_SLACK);
        // Numbers serde_json writes longer can push the rewrite past the bound: refused.
        let grows = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"read_a","x":[{}1e15]}}]}}}}"#,
            "1e15,".repeat(200)
        );
        assert_eq!(
            filter_json(
                grows.as_bytes(),
                &json!(1),
                ListKind::Tools,
                &reads,
                grows.len()
            ),
            Err(ListError::TooLarge(grows.len()))
        );
        let huge = tools(Value::Array(vec![json!({"name": "write"}); 20000])).to_string();
        let f = filter_json(
            huge.as_bytes(),
            &json!(1),
            ListKind::Tools,
            &reads,
            huge.len(),
        )
        .unwrap();
        assert_eq!((f.kept, f.removed), (0, 20000));
    }

    #[test]
    fn unicode_survives_and_line_separators_are_escaped() {
        let body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_\u{e9}\u{1F600}\",\"description\":\"a\u{2028}b\u{2029}c\u{85}d\\u2028\\n\"}]}}";
        let f = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        let text = String::from_utf8(f.body.clone()).unwrap();
        assert!(
            !text.contains(['\u{2028}', '\u{2029}', '\u{85}', '\n']),
            "{text}"
        );
        assert!(text.contains("read_\u{e9}\u{1F600}"));
        assert_eq!(
            json_of(&f)["result"]["tools"][0]["description"],
            "a\u{2028}b\u{2029}c\u{85}d\u{2028}\n"
        );
        let allowed = |k: &str| k == "read_\u{e9}\u{1F600}";
        let f = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &allowed, MAX).unwrap();
        assert_eq!(f.kept, 1, "the key is the decoded name");
    }

    // ---- text/event-stream ----

    fn sse(body: &str) -> Result<Filtered, ListError> {
        filter_sse(body.as_bytes(), &json!(1), ListKind::Tools, &reads, MAX)
    }

    const LIST: &str =
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a"},{"name":"write_b"}]}}"#;
    const FILTERED: &str =
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_a"}],"cacheScope":"private"}}"#;

    fn text(f: &Filtered) -> &str {
        std::str::from_utf8(&f.body).unwrap()
    }

    #[test]
    fn sse_rewrites_the_response_event_and_passes_the_rest_byte_for_byte() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"x":{"b":1,"a":2}}}"#;
        let body = format!(
            "id: prime-1\ndata:\n\n: keep-alive\n\nevent: message\ndata: {note}\n\nevent: message\nid: 9\ndata: {LIST}\nretry: 100\n\n: bye\n"
        );
        let f = sse(&body).unwrap();
        assert_eq!((f.kept, f.removed), (1, 1));
        assert_eq!(
            text(&f),
            format!(
                "id: prime-1\ndata:\n\n: keep-alive\n\nevent: message\ndata: {note}\n\nevent: message\nid: 9\ndata: {FILTERED}\nretry: 100\n\n: bye\n"
            )
        );
    }

    #[test]
    fn sse_reads_every_line_ending_and_data_form() {
        let split = LIST.replacen(",", ",\ndata:", 3);
        for (body, end) in [
            (format!("data: {LIST}\r\n\r\n"), "\r\n"),
            (format!("data: {LIST}\r\r"), "\r"),
            (format!("data:{LIST}\n\n"), "\n"),
            (format!("data: {split}\n\n"), "\n"),
            (
                format!("data:{}\r\n\r\n", LIST.replacen(",", ",\r\ndata: ", 2)),
                "\r\n",
            ),
            (
                format!(": c\rdata:{}\r\r", LIST.replacen(",", ",\rdata:", 1)),
                "\r",
            ),
        ] {
            let f = sse(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            assert_eq!((f.kept, f.removed), (1, 1), "{body:?}");
            let out = text(&f);
            assert!(out.contains(&format!("data: {FILTERED}{end}")), "{out:?}");
            assert_eq!(out.matches("data:").count(), 1, "one data line: {out:?}");
            assert!(out.ends_with(&format!("{end}{end}")) || out.ends_with("\r\n\r\n"));
        }
        // `data:  x`: one space is removed, the second is part of the JSON (still valid).
        let f = sse(&format!("data:  {LIST}\n\n")).unwrap();
        assert_eq!(text(&f), format!("data: {FILTERED}\n\n"));
    }

    #[test]
    fn sse_keeps_a_leading_bom_and_the_event_type() {
        let body = format!("\u{feff}event: message\ndata: {LIST}\n\n");
        let f = sse(&body).unwrap();
        assert_eq!(
            text(&f),
            format!("\u{feff}event: message\ndata: {FILTERED}\n\n")
        );
        // A response under another event type is still the response: filtered.
        let f = sse(&format!("event: other\ndata: {LIST}\n\n")).unwrap();
        assert_eq!(text(&f), format!("event: other\ndata: {FILTERED}\n\n"));
    }

    #[test]
    fn sse_without_the_response_is_refused() {
        for body in [
            String::new(),
            ": only a comment\n\n".into(),
            "id: 1\ndata:\n\n".into(),
            r#"data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}"#.to_owned()
                + "\n\n",
            format!("Data: {LIST}\n\n"),
            format!("data : {LIST}\n\n"),
        ] {
            assert!(matches!(sse(&body), Err(ListError::Sse(_))), "{body:?}");
        }
    }

    #[test]
    fn sse_refuses_a_stream_ending_inside_an_event() {
        assert!(matches!(
            sse(&format!("data: {LIST}\n")),
            Err(ListError::Sse(_))
        ));
        assert!(matches!(
            sse(&format!("data: {LIST}")),
            Err(ListError::Sse(_))
        ));
        let done = format!("data: {LIST}\n\n");
        for tail in [
            "data: x",
            "id: 4\n",
            "event: message",
            "data: {}\n",
            "retry: 1",
        ] {
            assert!(
                matches!(sse(&format!("{done}{tail}")), Err(ListError::Sse(_))),
                "{tail:?}"
            );
        }
        for tail in [": keep-alive", ": a\n: b\n", "   ", " \t \n:x"] {
            let f = sse(&format!("{done}{tail}")).unwrap();
            assert_eq!(text(&f), format!("data: {FILTERED}\n\n{tail}"));
        }
    }

    #[test]
    fn sse_refuses_two_responses_and_responses_to_other_requests() {
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#;
        for body in [
            format!("data: {LIST}\n\ndata: {LIST}\n\n"),
            format!("data: {err}\n\ndata: {LIST}\n\n"),
            format!("data: {LIST}\n\ndata: {err}\n\n"),
        ] {
            assert!(matches!(sse(&body), Err(ListError::Sse(_))), "{body}");
        }
        let other = LIST.replace(r#""id":1"#, r#""id":"1""#);
        assert!(matches!(
            sse(&format!("data: {other}\n\ndata: {LIST}\n\n")),
            Err(ListError::NotTheResponse(_))
        ));
        assert!(matches!(
            sse(&format!("data: {other}\n\n")),
            Err(ListError::NotTheResponse(_))
        ));
        let f = filter_sse(
            format!("data: {other}\n\n").as_bytes(),
            &json!("1"),
            ListKind::Tools,
            &reads,
            MAX,
        )
        .unwrap();
        assert_eq!(f.kept, 1);
    }

    #[test]
    fn sse_passes_an_error_answer_unchanged_and_events_after_the_response() {
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#;
        let body = format!("data: {err}\r\n\r\n");
        assert_eq!(sse(&body).unwrap().body, body.as_bytes());
        let req = r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#;
        let body = format!("data: {LIST}\n\ndata: {req}\n\n: end\n\n");
        assert_eq!(
            text(&sse(&body).unwrap()),
            format!("data: {FILTERED}\n\ndata: {req}\n\n: end\n\n")
        );
    }

    #[test]
    fn sse_refuses_data_a_laxer_reader_might_take_for_a_response() {
        for data in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"write"}]},"id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"write","x":NaN}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"write"}]},}"#,
            "hello",
        ] {
            let body = format!("data: {LIST}\n\ndata: {data}\n\n");
            assert!(matches!(sse(&body), Err(ListError::NotJson(_))), "{data}");
        }
        for data in ["42", "\"x\"", "null", &format!("[{LIST}]")] {
            let body = format!("data: {LIST}\n\ndata: {data}\n\n");
            assert!(matches!(sse(&body), Err(ListError::Sse(_))), "{data}");
        }
        let bad_utf8 = [
            b"data: ".as_slice(),
            LIST.as_bytes(),
            b"\n\ndata: \"\xff\"\n\n",
        ]
        .concat();
        assert!(filter_sse(&bad_utf8, &json!(1), ListKind::Tools, &reads, MAX).is_err());
    }

    #[test]
    fn sse_bounds_input_and_output() {
        let body = format!(": {}\n\ndata: {LIST}\n\n", "x".repeat(1000));
        let n = body.len();
        assert_eq!(
            filter_sse(body.as_bytes(), &json!(1), ListKind::Tools, &reads, n - 1),
            Err(ListError::TooLarge(n - 1))
        );
        assert!(filter_sse(body.as_bytes(), &json!(1), ListKind::Tools, &reads, n).is_ok());
        let grows = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"read_a","x":[{}1e15]}}]}}}}"#,
            "1e15,".repeat(200)
        );
        let body = format!("data: {grows}\n\n");
        assert!(matches!(
            filter_sse(
                body.as_bytes(),
                &json!(1),
                ListKind::Tools,
                &reads,
                body.len()
            ),
            Err(ListError::TooLarge(_))
        ));
        // Many tiny events (a stream of blank lines) are fine and cost no memory per event.
        let body = format!("{}data: {LIST}\n\n", "\n".repeat(100_000));
        let f = filter_sse(
            body.as_bytes(),
            &json!(1),
            ListKind::Tools,
            &reads,
            body.len(),
        )
        .unwrap();
        assert_eq!(f.kept, 1);
    }

    #[test]
    fn sse_output_is_a_fixed_point() {
        let body = format!(
            "event: message\r\ndata: {}\r\n\r\n",
            LIST.replace(',', ",\r\ndata:")
        );
        let once = sse(&body).unwrap();
        let twice = filter_sse(&once.body, &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!(once.body, twice.body);
        assert_eq!((twice.kept, twice.removed), (1, 0));
    }

    // ---- properties ----

    fn entry() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => ("[a-z_\u{e9}]{0,6}", any::<u8>()).prop_map(|(n, x)| json!({"name": n, "x": x, "z": {"b": 1, "a": [x]}})),
            1 => any::<i64>().prop_map(|n| json!({"name": n})),
            1 => Just(json!("read_bare")),
            1 => Just(json!({"title": "nameless"})),
        ]
    }

    /// A stream carrying `response`: framing chosen by `style` (line ends, data split,
    /// space after `data:`, notifications and comments around it).
    fn stream(response: &str, style: (u8, u8, bool, bool)) -> String {
        let (end_kind, split, space, extras) = style;
        let end = ["\n", "\r\n", "\r"][usize::from(end_kind % 3)];
        let sp = if space { " " } else { "" };
        let mut data = String::new();
        for (i, chunk) in response.split_inclusive(',').enumerate() {
            if i == 0 || split == 0 || i % usize::from(split) != 0 {
                if i == 0 {
                    data.push_str(&format!("data:{sp}"));
                }
                data.push_str(chunk);
            } else {
                data.push_str(&format!("{end}data:{sp}{chunk}"));
            }
        }
        let note = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"p":1}}"#;
        let mut s = String::new();
        if extras {
            s.push_str(&format!(
                "id: p{end}data:{end}{end}:c{end}{end}data: {note}{end}{end}"
            ));
        }
        s.push_str(&format!("event: message{end}{data}{end}{end}"));
        if extras {
            s.push_str(&format!("data: {note}{end}{end}: tail"));
        }
        s
    }

    proptest! {
        #[test]
        fn never_keeps_what_allowed_rejects(
            entries in proptest::collection::vec(entry(), 0..40),
            style in (any::<u8>(), 0u8..4, any::<bool>(), any::<bool>()),
            allow_e in any::<bool>(),
        ) {
            let allowed = move |k: &str| k.starts_with('r') || (allow_e && k.contains('\u{e9}'));
            let body = tools(Value::Array(entries.clone())).to_string();
            let j = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &allowed, MAX).unwrap();
            prop_assert_eq!(j.kept + j.removed, entries.len());
            let kept = json_of(&j)["result"]["tools"].as_array().unwrap().clone();
            prop_assert_eq!(kept.len(), j.kept);
            for e in &kept {
                let name = e["name"].as_str().unwrap();
                prop_assert!(allowed(name) && !name.is_empty());
            }
            let expect: Vec<&Value> = entries.iter()
                .filter(|e| e["name"].as_str().is_some_and(|n| !n.is_empty() && allowed(n)))
                .collect();
            prop_assert_eq!(kept.iter().collect::<Vec<_>>(), expect);

            let s = filter_sse(stream(&body, style).as_bytes(), &json!(1), ListKind::Tools, &allowed, MAX).unwrap();
            prop_assert_eq!((s.kept, s.removed), (j.kept, j.removed));
            let again = filter_sse(&s.body, &json!(1), ListKind::Tools, &allowed, MAX).unwrap();
            prop_assert_eq!(&again.body, &s.body);
            prop_assert_eq!(again.removed, 0);
        }

        #[test]
        fn allowing_everything_changes_only_the_cache_scope(
            entries in proptest::collection::vec(entry(), 0..40),
            scope in proptest::option::of("[a-z]{0,8}"),
        ) {
            let mut result = json!({"tools": entries, "ttlMs": 5, "_meta": {"m": [1, {"k": null}]}});
            if let Some(s) = &scope {
                result["cacheScope"] = json!(s);
            }
            let input = json!({"jsonrpc": "2.0", "id": 1, "result": result});
            let all = |_: &str| true;
            let f = filter_json(input.to_string().as_bytes(), &json!(1), ListKind::Tools, &all, MAX).unwrap();
            let mut expect = input.clone();
            let tools = expect["result"]["tools"].as_array().unwrap().iter()
                .filter(|e| e["name"].as_str().is_some_and(|n| !n.is_empty()))
                .cloned().collect::<Vec<_>>();
            expect["result"]["tools"] = Value::Array(tools);
            expect["result"]["cacheScope"] = json!("private");
            prop_assert_eq!(json_of(&f), expect);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = filter_json(&body, &json!(1), ListKind::Tools, &reads, MAX);
            let _ = filter_sse(&body, &json!(1), ListKind::Tools, &reads, MAX);
        }
    }
}
