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
//! member (`nextCursor`, `ttlMs`, `_meta`, members this code does not know) is kept.
//! The rewrite changes nothing else: objects keep their members' order (tool input schemas
//! included) and every string, key and number is copied byte for byte; only whitespace
//! between tokens is dropped (so an event's data always fits one `data:` line).

use serde_json::Value;

use super::sse;

/// Nesting allowed in a list response (tool input schemas nest).
const MAX_DEPTH: usize = 64;

/// How much larger than the input bound the filtered output may be: room for the added
/// `cacheScope` member and a rewritten event's `data: ` prefix (a rewrite adds at most 32
/// bytes; the bound is checked all the same).
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
/// and sets `cacheScope`. The output is `bytes` re-joined without whitespace: members in
/// their order, every string and number byte for byte as the upstream wrote it.
fn rewrite(
    bytes: &[u8],
    kind: ListKind,
    allowed: &dyn Fn(&str) -> bool,
    bound: usize,
) -> Result<Filtered, ListError> {
    let mut root = Reader::read(bytes)?;
    let result = match member(&mut root, "result") {
        Some(Node::Object(members)) => members,
        _ => return Err(shape("`result` is not an object")),
    };
    let (kept, removed) = {
        let entries = match result.iter_mut().find(|(k, _)| is(k, kind.member())) {
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
        entries.retain(|e| key(e, kind.key()).is_some_and(|k| !k.is_empty() && allowed(&k)));
        (entries.len(), before.saturating_sub(entries.len()))
    };
    const PRIVATE: &[u8] = br#""private""#;
    match result.iter_mut().find(|(k, _)| is(k, "cacheScope")) {
        Some((_, v)) => *v = Node::Scalar(PRIVATE),
        None => result.push((br#""cacheScope""#, Node::Scalar(PRIVATE))),
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_add(32).min(bound));
    if !write(&root, &mut out, bound) {
        return Err(ListError::TooLarge(bound.saturating_sub(OUTPUT_SLACK)));
    }
    Ok(Filtered {
        body: out,
        kept,
        removed,
    })
}

fn member<'n, 'a>(node: &'n mut Node<'a>, name: &str) -> Option<&'n mut Node<'a>> {
    match node {
        Node::Object(members) => members
            .iter_mut()
            .find(|(k, _)| is(k, name))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The entry's `key` member, if the entry is an object and the member a string.
fn key(entry: &Node<'_>, key: &str) -> Option<String> {
    match entry {
        Node::Object(members) => match members.iter().find(|(k, _)| is(k, key)) {
            Some((_, Node::Scalar(raw))) if raw.first() == Some(&b'"') => text(raw),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the raw JSON string `raw` (quotes and escapes included) means `name`.
fn is(raw: &[u8], name: &str) -> bool {
    match raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
        Some(inner) if !inner.contains(&b'\\') => inner == name.as_bytes(),
        _ => text(raw).is_some_and(|t| t == name),
    }
}

/// The value of the raw JSON string `raw`.
fn text(raw: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(raw).ok()
}

/// A JSON value as spans of the document: objects keep their members in document order
/// (this crate's serde_json has no `preserve_order`: its `Map` sorts) and scalars are
/// their bytes as written (serde_json's float parser is not exact without
/// `float_roundtrip`, and a rewrite must not change what it does not filter). Object keys
/// are raw JSON strings, quotes included.
enum Node<'a> {
    Scalar(&'a [u8]),
    Array(Vec<Node<'a>>),
    Object(Vec<(&'a [u8], Node<'a>)>),
}

/// Reads a document `crate::json::parse_strict` has accepted (well formed, no duplicate
/// members, bounded depth) into spans. Still checks every step: anything unexpected is an
/// error, never a panic.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn read(bytes: &'a [u8]) -> Result<Node<'a>, ListError> {
        let mut r = Reader { b: bytes, i: 0 };
        let v = r.value(0);
        r.ws();
        match v {
            Some(v) if r.i == r.b.len() => Ok(v),
            _ => Err(ListError::NotJson(format!("unreadable at byte {}", r.i))),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) {
        self.i = self.i.saturating_add(1).min(self.b.len());
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(c)).then(|| self.bump())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn span(&self, from: usize) -> Option<&'a [u8]> {
        self.b.get(from..self.i)
    }

    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'{' => {
                self.bump();
                let mut members = Vec::new();
                if self.eat(b'}').is_some() {
                    return Some(Node::Object(members));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    members.push((k, self.value(depth.saturating_add(1))?));
                    if self.eat(b',').is_none() {
                        self.eat(b'}')?;
                        return Some(Node::Object(members));
                    }
                }
            }
            b'[' => {
                self.bump();
                let mut items = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Node::Array(items));
                }
                loop {
                    items.push(self.value(depth.saturating_add(1))?);
                    if self.eat(b',').is_none() {
                        self.eat(b']')?;
                        return Some(Node::Array(items));
                    }
                }
            }
            b'"' => self.string().map(Node::Scalar),
            _ => {
                let from = self.i;
                while let Some(c) = self.peek() {
                    if matches!(
                        c,
                        b',' | b']'
                            | b'}'
                            | b' '
                            | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'"'
                            | b'{'
                            | b'['
                            | b':'
                    ) {
                        break;
                    }
                    self.bump();
                }
                let s = self.span(from)?;
                (!s.is_empty()).then_some(Node::Scalar(s))
            }
        }
    }

    /// A string, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        let from = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        self.bump();
        loop {
            match self.peek()? {
                b'"' => {
                    self.bump();
                    return self.span(from);
                }
                b'\\' => {
                    self.bump();
                    self.peek()?;
                    self.bump();
                }
                _ => self.bump(),
            }
        }
    }
}

/// Writes `node` without whitespace; `false` if that would pass `bound` bytes.
fn write(node: &Node<'_>, out: &mut Vec<u8>, bound: usize) -> bool {
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        if bytes.len() > bound.saturating_sub(out.len()) {
            return false;
        }
        out.extend_from_slice(bytes);
        true
    };
    match node {
        Node::Scalar(raw) => put(out, raw),
        Node::Array(items) => {
            if !put(out, b"[") {
                return false;
            }
            for (i, item) in items.iter().enumerate() {
                if (i > 0 && !put(out, b",")) || !write(item, out, bound) {
                    return false;
                }
            }
            put(out, b"]")
        }
        Node::Object(members) => {
            if !put(out, b"{") {
                return false;
            }
            for (i, (k, v)) in members.iter().enumerate() {
                if (i > 0 && !put(out, b","))
                    || !put(out, k)
                    || !put(out, b":")
                    || !write(v, out, bound)
                {
                    return false;
                }
            }
            put(out, b"}")
        }
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
        // The added cacheScope may take the output past `max`, never past the slack; a
        // rewrite that would pass its bound stops.
        let small = tools(json!([{"name": "read_a"}])).to_string();
        let f = filter_json(
            small.as_bytes(),
            &json!(1),
            ListKind::Tools,
            &reads,
            small.len(),
        )
        .unwrap();
        assert!(f.body.len() > small.len() && f.body.len() <= small.len() + 32);
        assert!(matches!(
            rewrite(small.as_bytes(), ListKind::Tools, &reads, small.len()),
            Err(ListError::TooLarge(_))
        ));
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
    fn strings_and_numbers_are_copied_byte_for_byte_and_whitespace_dropped() {
        let body = "{ \"jsonrpc\" : \"2.0\",\n \"id\":1,\r\n\t\"result\":{\"tools\":[ {\"name\":\"read_\u{e9}\u{1F600}\", \"d\":\"a\u{2028}b\\u2028\\n\\/\\\"\", \"n\":[1e5, -0, 1.0555555555555558e66, 123456789012345678901234567890, 0.1E-2]} , {\"name\":\"write\"} ] } }\n";
        let f = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!(
            String::from_utf8(f.body).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"read_\u{e9}\u{1F600}\",\"d\":\"a\u{2028}b\\u2028\\n\\/\\\"\",\"n\":[1e5,-0,1.0555555555555558e66,123456789012345678901234567890,0.1E-2]}],\"cacheScope\":\"private\"}}"
        );
        let allowed = |k: &str| k == "read_\u{e9}\u{1F600}";
        let f = filter_json(body.as_bytes(), &json!(1), ListKind::Tools, &allowed, MAX).unwrap();
        assert_eq!(f.kept, 1, "the key is the decoded name");
    }

    #[test]
    fn escaped_member_names_mean_what_they_decode_to() {
        // `\u0063acheScope` is cacheScope: replaced, not duplicated; `\u006eame` is a name.
        let body = br#"{"jsonrpc":"2.0","id":1,"\u0072esult":{"t\u006fols":[{"\u006eame":"read_a"},{"n\u0061me":"write"}],"\u0063acheScope":"public"}}"#;
        let f = filter_json(body, &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!((f.kept, f.removed), (1, 1));
        assert_eq!(
            String::from_utf8(f.body).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"\u0072esult":{"t\u006fols":[{"\u006eame":"read_a"}],"\u0063acheScope":"private"}}"#
        );
        let escaped = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"\u0077rite"},{"name":"r\u0065ad_x"}]}}"#;
        let f = filter_json(escaped, &json!(1), ListKind::Tools, &reads, MAX).unwrap();
        assert_eq!(json_of(&f)["result"]["tools"], json!([{"name": "read_x"}]));
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
        let body = format!("data:{LIST}\n\n");
        let f = filter_sse(
            body.as_bytes(),
            &json!(1),
            ListKind::Tools,
            &reads,
            body.len(),
        )
        .unwrap();
        assert!(f.body.len() <= body.len() + 32);
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
