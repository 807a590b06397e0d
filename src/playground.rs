//! The policy playground's answers. The browser page (`playground/`, compiled with
//! wasm-bindgen) only edits text and draws what these functions return: the decision, the
//! delegation chain, the audit event, policy test results, token display and demo tokens
//! all come from the same core the gateway runs. Inputs and outputs are JSON documents so
//! that the JavaScript side needs no knowledge of our types.
//!
//! What differs from the gateway, and says so in `notes`: feeds are not polled (the inline
//! registry decides, revocation state is empty and fresh), remote JWKS are not fetched,
//! signatures are checked with the pure-Rust backend (same verdicts on every Wycheproof
//! vector), and the browser has no clock for `policy.max_eval_ms` (the instruction limit
//! still applies).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{Config, Problem};
use crate::crypto::PureRust;
use crate::dev::{DevKeys, Recipe};
use crate::pipeline::{Decision, DecisionIds, Request};
use crate::policy::{render_into, run_tests, PolicyFiles};
use crate::worker::local::LocalHost;
use crate::worker::{Checked, Worker};

/// Deepest JSON the playground's own documents may nest (the config has its own limit).
const MAX_DEPTH: usize = 64;

/// What the page sends to [`evaluate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// The plugin configuration's text (its `policy.modules` and `policy.data` come from
    /// `policy_files`).
    pub config: String,
    /// A policy directory's files: path → text (`*.rego`, `data.json`).
    #[serde(default)]
    pub policy_files: BTreeMap<String, String>,
    /// The request's text: `{"method", "path", "host", "headers"}`, as `agent-iam check`.
    pub request: String,
    /// A bearer token sent as `authorization` unless the request has one.
    #[serde(default)]
    pub token: String,
    /// Decision time, UNIX seconds.
    pub now: f64,
}

/// An error the page shows next to the editor it belongs to.
fn error(panel: &str, message: impl Into<String>) -> Value {
    let message = message.into();
    let (line, column) = line_col(&message);
    json!({"panel": panel, "message": message, "line": line, "column": column})
}

/// `line N column M` as serde_json reports it.
fn line_col(message: &str) -> (Option<u64>, Option<u64>) {
    let number_after = |word: &str| {
        message.rfind(word).and_then(|i| {
            let rest = message.get(i + word.len()..)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
    };
    (number_after("line "), number_after("column "))
}

/// A configuration problem: its JSON path; for a Rego module the file, line and column
/// regorus (or our pre-checks) reported as `file:line:col`; for the rest of the
/// configuration the line of that path in `config_text`, when given.
fn config_problem(p: &Problem, config_text: Option<&str>) -> Value {
    if let Some(name) = p
        .path
        .strip_prefix("$.policy.modules[\"")
        .and_then(|r| r.strip_suffix("\"]"))
    {
        let (line, column) = file_position(&p.message, name);
        return json!({"panel": "policy", "file": name, "line": line, "column": column,
                      "path": p.path, "message": p.message});
    }
    if p.path.starts_with("$.policy") {
        return json!({"panel": "policy", "path": p.path, "message": p.message});
    }
    let line = config_text.and_then(|t| line_of_path(t, &p.path));
    json!({"panel": "config", "path": p.path, "line": line, "message": p.message})
}

/// The first `name:LINE:COL` in `message`.
fn file_position(message: &str, name: &str) -> (Option<u64>, Option<u64>) {
    let needle = format!("{name}:");
    let mut from = 0;
    while let Some(i) = message.get(from..).and_then(|m| m.find(&needle)) {
        let start = from + i + needle.len();
        let rest = message.get(start..).unwrap_or_default();
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().and_then(|s| s.parse::<u64>().ok());
        let col = parts.next().and_then(|s| {
            let d: String = s.chars().take_while(char::is_ascii_digit).collect();
            d.parse::<u64>().ok()
        });
        if line.is_some() {
            return (line, col);
        }
        from = start;
    }
    (None, None)
}

/// One step of a JSON path: an object member or an array index.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `$.a.b[0]["c.d"]` → steps. `None` for anything else.
fn path_steps(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]")?;
            steps.push(Step::Key(r.get(..end)?.to_owned()));
            rest = r.get(end + 2..)?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            steps.push(Step::Index(r.get(..end)?.parse().ok()?));
            rest = r.get(end + 1..)?;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            steps.push(Step::Key(r.get(..end)?.to_owned()));
            rest = r.get(end..)?;
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The 1-based line of `path` in the JSON `text`: where its member's key (or its array
/// element) starts; for a path that names a missing member, the line of the deepest
/// existing parent. Lets the page jump to a configuration problem.
fn line_of_path(text: &str, path: &str) -> Option<u64> {
    let steps = path_steps(path)?;
    let mut scan = Scan {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    scan.ws();
    let mut best = scan.line;
    for step in &steps {
        match scan.find(step) {
            Some(line) => best = line,
            None => break,
        }
    }
    Some(best)
}

/// A forward-only scanner over JSON text that counts lines.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.bump();
        }
    }

    /// A string at the cursor (escapes kept simple: enough to compare member names).
    fn string(&mut self) -> Option<String> {
        if self.bump()? != b'"' {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match self.bump()? {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => out.push(self.bump()?),
                b => out.push(b),
            }
        }
    }

    /// Skips one value at the cursor.
    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                self.bump();
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.bump();
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.bump();
                }
                Some(())
            }
        }
    }

    /// With the cursor on an object or array, moves to the value `step` names and returns
    /// the line where its key (or element) starts.
    fn find(&mut self, step: &Step) -> Option<u64> {
        self.ws();
        let open = self.bump()?;
        let mut index = 0usize;
        loop {
            self.ws();
            if matches!(self.peek()?, b'}' | b']') {
                return None;
            }
            let line = self.line;
            let here = match (open, step) {
                (b'{', Step::Key(k)) => {
                    let key = self.string()?;
                    self.ws();
                    if self.bump()? != b':' {
                        return None;
                    }
                    key == *k
                }
                (b'[', Step::Index(i)) => {
                    index += 1;
                    index - 1 == *i
                }
                _ => return None,
            };
            if here {
                self.ws();
                return Some(line);
            }
            self.skip_value()?;
            self.ws();
            if self.peek()? == b',' {
                self.bump();
            }
        }
    }
}

fn failed(errors: Vec<Value>, notes: Vec<String>) -> Value {
    json!({"ok": false, "errors": errors, "notes": notes})
}

/// The plugin configuration the gateway would load: the config text with the policy
/// files' modules and data. `Err` holds the page errors.
fn build_config(inputs: &Inputs, notes: &mut Vec<String>) -> Result<(Config, Value), Vec<Value>> {
    let mut plugin = crate::json::parse_strict(inputs.config.as_bytes(), MAX_DEPTH)
        .map_err(|e| vec![error("config", e.to_string())])?;
    let pf = PolicyFiles::from_files(&inputs.policy_files, false)
        .map_err(|e| vec![json!({"panel": "policy", "file": e.split(':').next(), "line": line_col(&e).0, "message": e})])?;
    if pf.modules.is_empty() {
        notes.push("no Rego modules: the built-in checks decide alone".into());
    } else {
        render_into(&mut plugin, &pf.modules, pf.data).map_err(|e| vec![error("config", e)])?;
    }
    let config = Config::from_json(plugin.to_string().as_bytes()).map_err(|e| {
        e.0.iter()
            .map(|p| config_problem(p, Some(&inputs.config)))
            .collect::<Vec<_>>()
    })?;
    if config.issuers.iter().any(|i| i.remote.is_some()) {
        notes.push(
            "jwks_uri is not fetched in the playground: put the issuer's keys in `jwks`".into(),
        );
    }
    if config.feed.is_some() {
        notes.push(
            "agents.feed is not polled in the playground: the inline agents.registry decides"
                .into(),
        );
    }
    if config.revocation.is_some() {
        notes.push("the revocation feed is not polled in the playground: nothing is revoked and the state counts as fresh".into());
    }
    Ok((config, plugin))
}

/// Decides one request as the gateway would: the decision, the response the client and
/// upstream would see, the delegation chain, the audit event and notes.
pub fn evaluate(inputs_json: &str) -> Value {
    let inputs: Inputs = match serde_json::from_str(inputs_json) {
        Ok(i) => i,
        Err(e) => return failed(vec![error("page", e.to_string())], Vec::new()),
    };
    let mut notes = Vec::new();
    let (config, _) = match build_config(&inputs, &mut notes) {
        Ok(c) => c,
        Err(errors) => return failed(errors, notes),
    };
    let mut req = match crate::json::parse_strict(inputs.request.as_bytes(), MAX_DEPTH)
        .map_err(|e| e.to_string())
        .and_then(|v| Request::from_json(&v))
    {
        Ok(r) => r,
        Err(e) => return failed(vec![error("request", e)], notes),
    };
    let token = inputs.token.trim();
    if req.authorization.is_empty() && !token.is_empty() {
        req.authorization
            .push(format!("Bearer {token}").into_bytes());
    }
    if !inputs.now.is_finite() {
        return failed(vec![error("page", "`now` is not a number")], notes);
    }
    let names = config.headers.clone();
    // The filter's worker on a host in memory: no feeds answer here, so the revocation
    // state is taken as empty and fresh.
    let host = LocalHost::at(inputs.now);
    let mut worker = Worker::new(
        &host,
        config,
        Box::new(PureRust),
        DecisionIds::from_entropy(),
        None,
    );
    worker.assume_no_revocations(inputs.now);
    worker.engine_mut().keep_policy_inputs();
    let Checked {
        decision: d,
        mut events,
    } = worker.check(&req, inputs.now, || 0);
    let audit = events
        .pop()
        .and_then(|l| serde_json::from_str::<Value>(l.json()).ok())
        .unwrap_or(Value::Null);
    json!({
        "ok": true,
        "decision": d.to_json(),
        "response": response(&d, &names, worker.engine().resource_metadata_url(), worker.engine().dpop_algs()),
        "chain": chain(&d),
        "audit": audit,
        "input": d.policy_input.as_ref().and_then(|i| serde_json::to_value(i).ok()),
        "notes": notes,
    })
}

/// What the page sends to [`export_test`] and [`replay`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseInputs {
    pub config: String,
    #[serde(default)]
    pub policy_files: BTreeMap<String, String>,
    /// [`export_test`]: the `input` to pin (what [`evaluate`] or [`replay`] returned).
    #[serde(default)]
    pub input: Option<Value>,
    /// [`export_test`]: the module exported before, to append to.
    #[serde(default)]
    pub existing: Option<String>,
    /// [`replay`]: one decision event (JSON, or an `agent-iam audit {...}` log line).
    #[serde(default)]
    pub event: Option<String>,
}

/// The configuration with the policy files, and the modules and data (tests excluded).
fn case_policy(inputs: &CaseInputs) -> Result<(Config, PolicyFiles), Value> {
    let as_inputs = Inputs {
        config: inputs.config.clone(),
        policy_files: inputs.policy_files.clone(),
        request: String::new(),
        token: String::new(),
        now: 0.0,
    };
    let (config, _) =
        build_config(&as_inputs, &mut Vec::new()).map_err(|e| failed(e, Vec::new()))?;
    let pf = PolicyFiles::from_files(&inputs.policy_files, false)
        .map_err(|e| failed(vec![error("policy", e)], Vec::new()))?;
    if config.policy.is_none() {
        return Err(failed(
            vec![error(
                "policy",
                "no Rego modules: there is no policy verdict to pin or replay",
            )],
            Vec::new(),
        ));
    }
    Ok((config, pf))
}

/// A `_test.rego` module pinning the policy's current verdict on `input`
/// (`{"config", "policy_files", "input", "existing"}`): `{"ok", "file", "text"}`.
pub fn export_test(inputs_json: &str) -> Value {
    let inputs: CaseInputs = match serde_json::from_str(inputs_json) {
        Ok(i) => i,
        Err(e) => return failed(vec![error("page", e.to_string())], Vec::new()),
    };
    let Some(input) = inputs.input.as_ref().filter(|i| i.is_object()) else {
        return failed(
            vec![error(
                "page",
                "no policy input: evaluate a request the policy decides (or replay an event) first",
            )],
            Vec::new(),
        );
    };
    let (config, pf) = match case_policy(&inputs) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let entrypoint = config
        .policy
        .as_ref()
        .map(|p| p.entrypoint.clone())
        .unwrap_or_default();
    match crate::policy::test_module(
        &pf.modules,
        pf.data.as_ref(),
        &entrypoint,
        input,
        inputs.existing.as_deref(),
    ) {
        Ok(text) => json!({"ok": true, "file": EXPORTED_TESTS, "text": text}),
        Err(problems) => failed(
            problems.iter().map(|p| config_problem(p, None)).collect(),
            Vec::new(),
        ),
    }
}

/// Where [`export_test`]'s module goes among the policy files.
pub const EXPORTED_TESTS: &str = "agent_iam/playground_test.rego";

/// Re-decides one recorded decision event with the page's policy
/// (`{"config", "policy_files", "event"}`): `{"ok", "decision_id", "route", "agent",
/// "recorded", "now", "changed", "revision", "input"}`, as `agent-iam policy replay` does
/// for a whole trail.
pub fn replay(inputs_json: &str) -> Value {
    let inputs: CaseInputs = match serde_json::from_str(inputs_json) {
        Ok(i) => i,
        Err(e) => return failed(vec![error("page", e.to_string())], Vec::new()),
    };
    let text = inputs.event.as_deref().unwrap_or_default().trim();
    let text = crate::audit::event_text(text).unwrap_or(text);
    let event = match crate::json::parse_strict(text.as_bytes(), MAX_DEPTH) {
        Ok(e) => e,
        Err(e) => return failed(vec![error("event", e.to_string())], Vec::new()),
    };
    if event.get("kind").and_then(Value::as_str) != Some("decision") {
        return failed(
            vec![error(
                "event",
                "not a decision event (`kind` is not \"decision\")",
            )],
            Vec::new(),
        );
    }
    let Some(input) = event.pointer("/policy/input") else {
        let why = if event.pointer("/policy/input_sha256").is_some() {
            "the event holds only the input's hash: its route does not record the input (`audit_policy_input`)"
        } else {
            "the policy did not run on this decision: there is no input to replay"
        };
        return failed(vec![error("event", why)], Vec::new());
    };
    let (config, _) = match case_policy(&inputs) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(policy) = config.policy.as_ref() else {
        return failed(vec![error("policy", "no policy")], Vec::new());
    };
    let before = crate::policy::recorded_outcome(&event);
    let after = crate::policy::candidate_outcome(&policy.evaluate(crate::policy::to_rego(input)));
    json!({
        "ok": true,
        "decision_id": event.get("decision_id"),
        "route": event.get("route"),
        "agent": event.get("agent"),
        "recorded": crate::policy::outcome_text(&before),
        "now": crate::policy::outcome_text(&after),
        "changed": before != after,
        "revision": policy.revision,
        "input": input,
    })
}

/// What the client (deny) or the upstream (allow) would see.
fn response(
    d: &Decision,
    names: &crate::config::HeaderNames,
    resource_metadata: Option<&str>,
    dpop_algs: &str,
) -> Value {
    if d.allowed() {
        let headers: BTreeMap<String, String> = d.upstream_headers(names).into_iter().collect();
        json!({"status": d.status(), "upstream_headers": headers})
    } else {
        let body: Value = serde_json::from_str(&d.deny_body()).unwrap_or(Value::Null);
        json!({"status": d.status(), "www_authenticate": d.www_authenticate(resource_metadata, Some(dpop_algs)), "body": body})
    }
}

/// The delegation chain, principal first: who the request is for, then each actor in the
/// order they delegated, the acting agent last. Without delegation, one agent acting for
/// itself.
fn chain(d: &Decision) -> Value {
    let Some(t) = d.token.as_ref() else {
        return json!([]);
    };
    if t.chain.is_empty() && t.agent == t.subject {
        return json!([{"role": "agent", "id": t.agent, "for_itself": true}]);
    }
    let mut nodes = vec![json!({"role": "principal", "id": t.subject})];
    let actors: Vec<&str> = t.chain.iter().rev().map(|a| a.sub.as_str()).collect();
    let last = actors.len().saturating_sub(1);
    for (i, a) in actors.iter().enumerate() {
        let role = if i == last { "agent" } else { "actor" };
        nodes.push(json!({"role": role, "id": a}));
    }
    if actors.is_empty() && t.agent != t.subject {
        nodes.push(json!({"role": "agent", "id": t.agent}));
    }
    Value::Array(nodes)
}

/// What the page's MCP editor sends to [`mcp_request`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSpec {
    /// The JSON-RPC method (`tools/call`, `tools/list`, `server/discover`, …).
    pub method: String,
    /// The tool or prompt name, or the resource URI (for the methods that name one).
    #[serde(default)]
    pub name: String,
    /// JSON text: `params.arguments` of `tools/call` and `prompts/get`; for any other
    /// method an object whose members are added to `params`. Empty: none.
    #[serde(default)]
    pub arguments: String,
    /// `2026-07-28` (version in `params._meta`, mirrored headers) or an earlier revision
    /// such as `2025-11-25` (only `MCP-Protocol-Version`, and not on `initialize`).
    pub protocol_version: String,
}

/// The POST an MCP client would send for `spec`: its headers (`[name, value]` pairs) and
/// its body (JSON-RPC text, members in the usual order). The page puts both in editors the
/// user may change before [`evaluate`] decides them; nothing here decides anything.
pub fn mcp_request(spec_json: &str) -> Value {
    let spec: McpSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => return failed(vec![error("page", e.to_string())], Vec::new()),
    };
    let method = spec.method.trim();
    if method.is_empty() {
        return failed(
            vec![error("mcp-method", "the JSON-RPC method is empty")],
            Vec::new(),
        );
    }
    let arguments = if spec.arguments.trim().is_empty() {
        None
    } else {
        match crate::json::parse_strict(spec.arguments.as_bytes(), MAX_DEPTH) {
            Ok(v) => Some(v),
            Err(e) => return failed(vec![error("mcp-arguments", e.to_string())], Vec::new()),
        }
    };
    let modern = spec.protocol_version == crate::mcp::REVISION_2026_07_28;
    let mut params = serde_json::Map::new();
    if method == "initialize" {
        params.insert("protocolVersion".into(), json!(spec.protocol_version));
        params.insert("capabilities".into(), json!({}));
        params.insert(
            "clientInfo".into(),
            json!({"name": "agent-iam-playground", "version": crate::VERSION}),
        );
    }
    let named = crate::mcp::named(method);
    if let Some(member) = named {
        params.insert(member.into(), json!(spec.name));
    }
    match (arguments, method) {
        (None, _) => {}
        (Some(args), "tools/call" | "prompts/get") => {
            params.insert("arguments".into(), args);
        }
        (Some(Value::Object(extra)), _) => params.extend(extra),
        (Some(_), _) => {
            return failed(
                vec![error(
                    "mcp-arguments",
                    format!("{method} takes no arguments: give a JSON object of extra `params` members, or nothing"),
                )],
                Vec::new(),
            )
        }
    }
    if modern {
        params.insert(
            "_meta".into(),
            json!({
                crate::mcp::META_PROTOCOL_VERSION: spec.protocol_version,
                "io.modelcontextprotocol/clientCapabilities": {},
            }),
        );
    }
    // serde_json sorts members; a client writes jsonrpc, id, method, params.
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let params = pretty(&Value::Object(params)).replace('\n', "\n  ");
    let id = if method.starts_with("notifications/") {
        String::new()
    } else {
        "\n  \"id\": 1,".to_owned()
    };
    let body = format!(
        "{{\n  \"jsonrpc\": \"2.0\",{id}\n  \"method\": {},\n  \"params\": {params}\n}}",
        pretty(&json!(method))
    );
    let mut headers = vec![
        ["Content-Type".to_owned(), "application/json".to_owned()],
        [
            "Accept".to_owned(),
            "application/json, text/event-stream".to_owned(),
        ],
    ];
    if modern || method != "initialize" {
        headers.push(["MCP-Protocol-Version".into(), spec.protocol_version.clone()]);
    }
    if modern {
        headers.push(["Mcp-Method".into(), method.to_owned()]);
        if named.is_some() {
            headers.push([
                "Mcp-Name".into(),
                crate::mcp::encode_header_value(&spec.name),
            ]);
        }
    }
    json!({"ok": true, "headers": headers, "body": body})
}

/// Runs every `test_*` rule of the policy files' `*_test.rego` modules.
pub fn policy_tests(files_json: &str) -> Value {
    let files: BTreeMap<String, String> = match serde_json::from_str(files_json) {
        Ok(f) => f,
        Err(e) => return failed(vec![error("page", e.to_string())], Vec::new()),
    };
    let pf = match PolicyFiles::from_files(&files, true) {
        Ok(p) => p,
        Err(e) => return failed(vec![error("policy", e)], Vec::new()),
    };
    match run_tests(&pf.modules, pf.data.as_ref()) {
        Ok(results) => {
            let rows: Vec<Value> = results
                .iter()
                .map(|(rule, outcome)| match outcome {
                    Ok(pass) => {
                        json!({"test": rule, "result": if *pass { "pass" } else { "fail" }})
                    }
                    Err(e) => json!({"test": rule, "result": "error", "message": e}),
                })
                .collect();
            let passed = results.iter().filter(|(_, o)| o == &Ok(true)).count();
            json!({"ok": true, "results": rows, "passed": passed, "failed": results.len() - passed})
        }
        Err(problems) => failed(
            problems.iter().map(|p| config_problem(p, None)).collect(),
            Vec::new(),
        ),
    }
}

/// A token's header and claims for display. Nothing is verified here: [`evaluate`] does.
pub fn decode_token(token: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return failed(
            vec![error(
                "token",
                format!("a compact JWS has 3 segments, this has {}", parts.len()),
            )],
            Vec::new(),
        );
    };
    let segment = |name: &str, s: &str| -> Result<Value, Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| error("token", format!("{name}: {e}")))?;
        crate::json::parse_strict(&bytes, MAX_DEPTH)
            .map_err(|e| error("token", format!("{name}: {e}")))
    };
    let (h, c) = match (segment("header", header), segment("claims", claims)) {
        (Ok(h), Ok(c)) => (h, c),
        (h, c) => {
            return failed(
                [h.err(), c.err()].into_iter().flatten().collect(),
                Vec::new(),
            )
        }
    };
    let sig_bytes = URL_SAFE_NO_PAD.decode(signature).map(|b| b.len()).ok();
    json!({"ok": true, "header": h, "claims": c, "signature_bytes": sig_bytes})
}

/// Mints a demo token from a recipe (`agent-iam dev mint`'s format) with the demo keys.
pub fn mint(keys_json: &str, recipe_json: &str, now: f64) -> Value {
    let keys = serde_json::from_str::<Value>(keys_json)
        .map_err(|e| e.to_string())
        .and_then(|v| DevKeys::from_private_json(&v));
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return failed(vec![error("page", format!("demo keys: {e}"))], Vec::new()),
    };
    let recipe: Recipe = match serde_json::from_str(recipe_json) {
        Ok(r) => r,
        Err(e) => return failed(vec![error("recipe", e.to_string())], Vec::new()),
    };
    match crate::dev::mint(&keys, &recipe, now as i64) {
        Ok(token) => json!({"ok": true, "token": token}),
        Err(e) => failed(vec![error("recipe", e)], Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_790_000_000.0;

    fn keys() -> String {
        std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap()
    }

    fn policy_files() -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir("policies/agent_iam").unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(
                format!("agent_iam/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
        files
    }

    fn token(recipe: Value) -> String {
        let minted = mint(&keys(), &recipe.to_string(), NOW);
        minted["token"].as_str().unwrap().to_owned()
    }

    fn inputs(
        config: &str,
        files: &BTreeMap<String, String>,
        request: Value,
        token: &str,
    ) -> String {
        json!({"config": config, "policy_files": files, "request": request.to_string(),
               "token": token, "now": NOW})
        .to_string()
    }

    fn base_config() -> String {
        std::fs::read_to_string("envoy/plugin.base.json").unwrap()
    }

    fn playground_config() -> String {
        std::fs::read_to_string("playground/plugin.json").unwrap()
    }

    /// The request `agent-iam check` reads for the editor's headers and body.
    fn mcp_http(built: &Value, edit: &[(&str, &str)]) -> Value {
        let mut headers = serde_json::Map::new();
        for pair in built["headers"].as_array().unwrap() {
            headers.insert(pair[0].as_str().unwrap().to_owned(), pair[1].clone());
        }
        for (k, v) in edit {
            headers.insert((*k).to_owned(), json!(v));
        }
        json!({"method": "POST", "path": "/mcp", "host": "api.agent-iam.test",
               "headers": headers, "body": built["body"]})
    }

    fn spec(method: &str, name: &str, arguments: &str, version: &str) -> Value {
        mcp_request(
            &json!({"method": method, "name": name, "arguments": arguments,
                    "protocol_version": version})
            .to_string(),
        )
    }

    fn header<'a>(built: &'a Value, name: &str) -> Option<&'a str> {
        built["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == name)
            .and_then(|p| p[1].as_str())
    }

    #[test]
    fn the_mcp_editor_builds_the_post_a_client_sends() {
        let b = spec(
            "tools/call",
            "search_tickets",
            "{\"q\": \"printer\"}",
            "2026-07-28",
        );
        assert_eq!(b["ok"], true, "{b}");
        let body: Value = serde_json::from_str(b["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "search_tickets", "arguments": {"q": "printer"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}})
        );
        assert!(b["body"]
            .as_str()
            .unwrap()
            .starts_with("{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,"));
        assert_eq!(header(&b, "MCP-Protocol-Version"), Some("2026-07-28"));
        assert_eq!(header(&b, "Mcp-Method"), Some("tools/call"));
        assert_eq!(header(&b, "Mcp-Name"), Some("search_tickets"));
        // A resource's URI is its name; a method that names nothing has no Mcp-Name.
        let r = spec("resources/read", "tickets://42", "", "2026-07-28");
        assert_eq!(header(&r, "Mcp-Name"), Some("tickets://42"));
        let l = spec(
            "tools/list",
            "ignored",
            "{\"cursor\": \"c2\"}",
            "2026-07-28",
        );
        assert_eq!(header(&l, "Mcp-Name"), None);
        let body: Value = serde_json::from_str(l["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["params"]["cursor"], "c2");
        assert!(body["params"].get("name").is_none());
        // Values that are not plain visible ASCII go as =?base64?…?=, and decode back.
        for name in ["Hello, 世界", " padded", "=?base64?literal?=", "tab\there"] {
            let b = spec("tools/call", name, "", "2026-07-28");
            let sent = header(&b, "Mcp-Name").unwrap();
            assert!(sent.starts_with("=?base64?"), "{name}: {sent}");
            assert_eq!(crate::mcp::decode_header_value(sent).as_deref(), Some(name));
        }
        assert_eq!(
            crate::mcp::encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        // 2025-11-25: no mirrored method or name, no _meta; initialize has no version header.
        let old = spec("tools/call", "search_tickets", "", "2025-11-25");
        assert_eq!(header(&old, "MCP-Protocol-Version"), Some("2025-11-25"));
        assert_eq!(
            (header(&old, "Mcp-Method"), header(&old, "Mcp-Name")),
            (None, None)
        );
        assert!(!old["body"].as_str().unwrap().contains("_meta"));
        let init = spec("initialize", "", "", "2025-11-25");
        assert_eq!(header(&init, "MCP-Protocol-Version"), None);
        let body: Value = serde_json::from_str(init["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["params"]["protocolVersion"], "2025-11-25");
        // A notification has no id.
        let n = spec("notifications/initialized", "", "", "2025-11-25");
        let body: Value = serde_json::from_str(n["body"].as_str().unwrap()).unwrap();
        assert!(body.get("id").is_none(), "{body}");
        // Errors name the editor field.
        assert_eq!(
            spec("tools/call", "x", "{\"q\": ", "2026-07-28")["errors"][0]["panel"],
            "mcp-arguments"
        );
        assert_eq!(
            spec("tools/list", "", "[1]", "2026-07-28")["errors"][0]["panel"],
            "mcp-arguments"
        );
        assert_eq!(
            spec(" ", "", "", "2026-07-28")["errors"][0]["panel"],
            "mcp-method"
        );
        assert_eq!(mcp_request("{}")["errors"][0]["panel"], "page");
    }

    #[test]
    fn an_mcp_request_from_the_editor_is_decided_on_its_body() {
        // One actor: the shipped policy refuses POSTs (so MCP calls) from longer chains.
        let t = token(json!({"claims": {"sub": "user:alice", "act": {"sub": "agent:planner"}}}));
        let decide = |built: &Value, edit: &[(&str, &str)]| {
            evaluate(&inputs(
                &playground_config(),
                &policy_files(),
                mcp_http(built, edit),
                &t,
            ))
        };
        let read = decide(
            &spec(
                "tools/call",
                "search_tickets",
                "{\"q\": \"x\"}",
                "2026-07-28",
            ),
            &[],
        );
        assert_eq!(read["decision"]["decision"], "allow", "{read}");
        assert_eq!(read["audit"]["mcp"]["name"], "search_tickets");
        assert_eq!(read["audit"]["mcp"]["protocol_version"], "2026-07-28");
        assert_eq!(
            read["audit"]["mcp"]["arguments_sha256"]
                .as_str()
                .unwrap()
                .len(),
            64
        );

        let write = decide(
            &spec("tools/call", "create_ticket", "{}", "2026-07-28"),
            &[],
        );
        let d = &write["decision"];
        assert_eq!(
            (d["reason"].as_str(), d["status"].as_u64()),
            (Some("scope.insufficient"), Some(403)),
            "{write}"
        );
        let www = write["response"]["www_authenticate"].as_str().unwrap();
        assert!(
            www.contains("scope=\"tickets:read tickets:write\""),
            "{www}"
        );
        assert!(
            www.contains("resource_metadata=\"https://api.agent-iam.test/.well-known/oauth-protected-resource/mcp\""),
            "{www}"
        );
        let body = &write["response"]["body"];
        assert_eq!(
            (body["jsonrpc"].as_str(), body["id"].as_i64()),
            (Some("2.0"), Some(1))
        );
        assert_eq!(body["error"]["code"], -31403);
        assert_eq!(body["error"]["data"]["decision_id"], d["decision_id"]);
        assert_eq!(write["audit"]["mcp"]["name"], "create_ticket");

        // The header editor may disagree with the body: the body decides, the header is refused.
        let lie = decide(
            &spec("tools/call", "create_ticket", "{}", "2026-07-28"),
            &[("Mcp-Name", "search_tickets")],
        );
        assert_eq!(lie["decision"]["reason"], "mcp.header_mismatch", "{lie}");
        assert_eq!(lie["response"]["status"], 400);
        assert_eq!(lie["response"]["body"]["error"]["code"], -32020);

        // A 2025-11-25 client's call is decided on the same body rules.
        let old = decide(
            &spec("tools/call", "create_ticket", "{}", "2025-11-25"),
            &[],
        );
        assert_eq!(old["decision"]["reason"], "scope.insufficient", "{old}");
    }

    #[test]
    fn the_playground_config_is_the_shipped_one_with_an_mcp_server() {
        let mut mine: Value = serde_json::from_str(&playground_config()).unwrap();
        let base: Value = serde_json::from_str(&base_config()).unwrap();
        let obj = mine.as_object_mut().unwrap();
        assert!(obj.remove("protected_resource").is_some());
        assert!(obj.remove("scope_implies").is_some());
        let audiences = mine["issuers"][0]["audiences"].as_array_mut().unwrap();
        assert_eq!(
            audiences.pop(),
            Some(json!("https://api.agent-iam.test/mcp"))
        );
        let registry = mine["agents"]["registry"].as_array_mut().unwrap();
        assert_eq!(registry.pop().unwrap()["id"], "agent:ops");
        let routes = mine["routes"].as_array_mut().unwrap();
        assert_eq!(routes.pop().unwrap()["prefix"], "/mcp");
        assert_eq!(
            mine, base,
            "playground/plugin.json must follow envoy/plugin.base.json"
        );
    }

    #[test]
    fn delegated_read_is_allowed_with_chain_and_audit() {
        let t = token(
            json!({"claims": {"sub": "user:alice", "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}}),
        );
        let get = json!({"method": "GET", "path": "/tickets/42"});
        let r = evaluate(&inputs(&base_config(), &policy_files(), get, &t));
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["decision"]["decision"], "allow");
        assert_eq!(
            r["decision"]["scopes"]["effective"],
            json!(["tickets:read"])
        );
        let ids: Vec<&str> = r["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["user:alice", "agent:planner", "agent:tool-search"]);
        assert_eq!(r["chain"][2]["role"], "agent");
        assert_eq!(r["audit"]["kind"], "decision");
        assert_eq!(r["audit"]["decision_id"], r["decision"]["decision_id"]);
        assert_eq!(
            r["response"]["upstream_headers"]["x-agent-principal"],
            "user:alice"
        );
        assert!(r["notes"][0].as_str().unwrap().contains("agents.feed"));
        // The same token may not write: the route needs tickets:write.
        let post = json!({"method": "POST", "path": "/tickets/42"});
        let r = evaluate(&inputs(&base_config(), &policy_files(), post, &t));
        assert_eq!(r["decision"]["reason"], "scope.insufficient");
        assert_eq!(r["response"]["status"], 403);
    }

    #[test]
    fn a_policy_edit_denies_with_its_reason_and_a_new_revision() {
        let t = token(json!({}));
        let get = json!({"method": "GET", "path": "/tickets/1"});
        let before = evaluate(&inputs(&base_config(), &policy_files(), get.clone(), &t));
        let mut files = policy_files();
        files.get_mut("agent_iam/authz.rego").unwrap().push_str(
            "\ndeny contains \"bots.paused\" if startswith(input.agent.id, \"agent:build-bot\")\n",
        );
        let after = evaluate(&inputs(&base_config(), &files, get, &t));
        assert_eq!(before["decision"]["decision"], "allow", "{before}");
        assert_eq!(after["decision"]["reason"], "policy.denied", "{after}");
        assert_eq!(after["response"]["body"]["policy_reason"], "bots.paused");
        assert_ne!(
            before["decision"]["policy"]["revision"],
            after["decision"]["policy"]["revision"]
        );
        // A self-acting agent is one node.
        assert_eq!(
            before["chain"],
            json!([{"role": "agent", "id": "agent:build-bot-7", "for_itself": true}])
        );
    }

    /// The page shows the input the policy saw, exports it as a test that passes, and
    /// replays a recorded event: the loop of the authoring tools, in the browser.
    #[test]
    fn the_input_exports_as_a_passing_test_and_an_event_replays() {
        let t = token(json!({}));
        let get = json!({"method": "GET", "path": "/tickets/1"});
        let r = evaluate(&inputs(&base_config(), &policy_files(), get, &t));
        let input = &r["input"];
        assert_eq!(input["request"]["path"], "/tickets/1", "{r}");
        assert_eq!(input["agent"]["id"], "agent:build-bot-7");
        let case = |input: &Value, existing: Option<&str>| {
            export_test(
                &json!({"config": base_config(), "policy_files": policy_files(),
                        "input": input, "existing": existing})
                .to_string(),
            )
        };
        let one = case(input, None);
        assert_eq!(one["file"], EXPORTED_TESTS, "{one}");
        let text = one["text"].as_str().unwrap();
        assert!(
            text.contains("test_get_tickets_1_is_allowed if {"),
            "{text}"
        );
        // A second case appends to the first.
        let two = case(input, Some(text));
        let text = two["text"].as_str().unwrap().to_owned();
        assert!(
            text.contains("case_2 := ") && text.contains("_is_allowed_2 if {"),
            "{text}"
        );
        let mut files = policy_files();
        files.insert(EXPORTED_TESTS.into(), text);
        let tests = policy_tests(&serde_json::to_string(&files).unwrap());
        let ours: Vec<&Value> = tests["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["test"].as_str().unwrap().contains("playground_test"))
            .collect();
        assert_eq!(ours.len(), 2, "{tests}");
        assert!(ours.iter().all(|t| t["result"] == "pass"), "{tests}");
        // Without a request the policy saw, there is nothing to export.
        assert_eq!(case(&Value::Null, None)["ok"], false);

        // A recorded cross-tenant deny: unchanged with the shipped policy, allowed once the
        // tenant rule is gone.
        let trail = std::fs::read_to_string("examples/replay/audit.ndjson").unwrap();
        let event = trail
            .lines()
            .find(|l| l.contains("\"policy_reason\":\"tenant.mismatch\""))
            .unwrap();
        let replayed = |files: &BTreeMap<String, String>| {
            replay(
                &json!({"config": base_config(), "policy_files": files, "event": event})
                    .to_string(),
            )
        };
        let same = replayed(&policy_files());
        assert_eq!(
            (&same["recorded"], &same["now"], &same["changed"]),
            (
                &json!("policy.denied tenant.mismatch"),
                &json!("policy.denied tenant.mismatch"),
                &json!(false)
            ),
            "{same}"
        );
        let mut files = policy_files();
        let tenant = files.get_mut("agent_iam/tenant.rego").unwrap();
        *tenant = tenant.replace("deny contains \"tenant.mismatch\"", "unused contains \"x\"");
        let changed = replayed(&files);
        assert_eq!(
            (&changed["now"], &changed["changed"]),
            (&json!("allow"), &json!(true)),
            "{changed}"
        );
        assert_eq!(changed["input"]["request"]["segments"][0], "tenants");
        // An event without its input says why.
        let start = trail.lines().next().unwrap();
        let r = replay(
            &json!({"config": base_config(), "policy_files": policy_files(), "event": start})
                .to_string(),
        );
        assert_eq!(r["errors"][0]["panel"], "event", "{r}");
    }

    #[test]
    fn errors_point_at_the_editor_line_and_path() {
        let get = json!({"path": "/tickets/1"});
        let mut files = policy_files();
        files
            .get_mut("agent_iam/tenant.rego")
            .unwrap()
            .push_str("\nx := {\n");
        let r = evaluate(&inputs(&base_config(), &files, get.clone(), ""));
        assert_eq!(r["ok"], false);
        let e = &r["errors"][0];
        assert_eq!(
            (e["panel"].as_str(), e["file"].as_str()),
            (Some("policy"), Some("agent_iam/tenant.rego"))
        );
        let lines = policy_files()["agent_iam/tenant.rego"].lines().count() as u64;
        assert!(e["line"].as_u64().unwrap() > lines, "{e}");

        let bad = base_config().replacen("\"max_scopes\"", "\"max_scope\"", 1);
        let r = evaluate(&inputs(&bad, &policy_files(), get.clone(), ""));
        let errors = r["errors"].as_array().unwrap();
        let typo = errors
            .iter()
            .find(|e| e["path"] == "$.agents.registry[0].max_scope")
            .unwrap();
        let line = bad.split("\"max_scope\"").next().unwrap().lines().count() as u64;
        assert_eq!(typo["line"].as_u64(), Some(line), "{r}");
        assert!(errors.iter().all(|e| e["panel"] == "config"));

        let r = evaluate(&inputs(
            "{\n  \"issuers\": [,\n",
            &policy_files(),
            get.clone(),
            "",
        ));
        assert_eq!(
            (
                r["errors"][0]["panel"].as_str(),
                r["errors"][0]["line"].as_u64()
            ),
            (Some("config"), Some(2)),
            "{r}"
        );

        let mut files = policy_files();
        files.insert("agent_iam/data.json".into(), "{\"x\": }".into());
        let r = evaluate(&inputs(&base_config(), &files, get, ""));
        assert_eq!(r["errors"][0]["file"], "agent_iam/data.json", "{r}");

        let r = evaluate(&inputs(
            &base_config(),
            &policy_files(),
            json!({"verb": "GET"}),
            "",
        ));
        assert_eq!(r["errors"][0]["panel"], "request");
        assert_eq!(evaluate("not json")["errors"][0]["panel"], "page");
    }

    #[test]
    fn json_paths_map_to_lines() {
        let text = "{\n  \"a\": 1,\n  \"routes\": [\n    {\"x\": \"}]\\\"\"},\n    {\n      \"required_scope\": []\n    }\n  ],\n  \"m\": {\"k.j\": 2}\n}";
        assert_eq!(line_of_path(text, "$"), Some(1));
        assert_eq!(line_of_path(text, "$.a"), Some(2));
        assert_eq!(line_of_path(text, "$.routes[1]"), Some(5));
        assert_eq!(line_of_path(text, "$.routes[1].required_scope"), Some(6));
        assert_eq!(
            line_of_path(text, "$.routes[1].missing"),
            Some(5),
            "deepest parent"
        );
        assert_eq!(line_of_path(text, "$.m[\"k.j\"]"), Some(9));
        assert_eq!(line_of_path(text, "$.routes[7]"), Some(3));
        assert_eq!(line_of_path(text, "not a path"), None);
        assert_eq!(
            line_of_path("{\"a\": [", "$.a[0].b"),
            Some(1),
            "truncated text"
        );
    }

    #[test]
    fn without_a_token_the_gateway_answers_401() {
        let r = evaluate(&inputs(
            &base_config(),
            &policy_files(),
            json!({"path": "/tickets/1"}),
            "",
        ));
        assert_eq!(r["decision"]["reason"], "token.missing");
        assert_eq!(r["response"]["status"], 401);
        assert_eq!(r["chain"], json!([]));
    }

    #[test]
    fn policy_tests_report_each_rule() {
        let files = serde_json::to_string(&policy_files()).unwrap();
        let r = policy_tests(&files);
        assert_eq!(r["failed"], 0, "{r}");
        assert!(r["passed"].as_u64().unwrap() >= 10);
        let mut files = policy_files();
        files.insert(
            "agent_iam/extra_test.rego".into(),
            "package agent_iam.extra_test\n\ntest_fails if { 1 == 2 }\n".into(),
        );
        let r = policy_tests(&serde_json::to_string(&files).unwrap());
        assert_eq!(r["failed"], 1);
        assert!(r["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["test"] == "data.agent_iam.extra_test.test_fails" && t["result"] == "fail"));
    }

    #[test]
    fn tokens_decode_for_display_and_junk_is_an_error() {
        let t = token(json!({"alg": "RS256"}));
        let d = decode_token(&format!("Bearer {t}"));
        assert_eq!(d["header"]["alg"], "RS256");
        assert_eq!(d["claims"]["sub"], "agent:build-bot-7");
        assert_eq!(d["signature_bytes"], 256);
        assert_eq!(decode_token("a.b")["ok"], false);
        assert_eq!(decode_token("!!.e30.")["errors"][0]["panel"], "token");
        assert_eq!(
            mint(&keys(), "{\"alg\": \"HS512\"}", NOW)["errors"][0]["panel"],
            "recipe"
        );
        assert_eq!(mint("{}", "{}", NOW)["errors"][0]["panel"], "page");
    }
}
