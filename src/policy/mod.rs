//! Rego policies, evaluated in-process with regorus. The only module that names regorus.
//!
//! Policies are compiled once per configuration (a bad policy is a configuration error,
//! with file, line and column) and evaluated per request after the built-in checks passed.
//! Evaluation is bounded by an instruction budget and a wall-clock budget; a runaway policy
//! denies with `policy.limit`.
//!
//! Two regorus engines: the compiled policy is lowered to the RVM (regorus's bytecode VM),
//! which the gateway runs (~6x faster than the tree-walking interpreter here, see
//! docs/BENCHMARKS.md). The interpreter runs `agent-iam policy test` (the RVM has no
//! `with`) and any policy the RVM compiler cannot lower; `Policy::engine` says which.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::{set_fallback_execution_timer_config, ExecutionTimerConfig};
use regorus::{CompiledPolicy, Engine, Value};
// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

pub mod input;

/// Default entry point.
pub const DEFAULT_ENTRYPOINT: &str = "data.agent_iam.authz.decision";

/// The `policy` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rego modules by file name (`agent-iam policy render` fills this from `policies/`).
    pub modules: BTreeMap<String, String>,
    /// The data document (`data.*` besides the policies' rules).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// The rule whose value decides (bool or `{"allow", "reason", "status", "headers"}`).
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Wall-clock budget for one evaluation, in milliseconds (1..=1000): the backstop for
    /// expensive builtins. It counts real time, preemption included, so it is generous;
    /// `max_instructions` is the deterministic bound.
    #[serde(default = "default_eval_ms")]
    pub max_eval_ms: u64,
    /// RVM instruction budget for one evaluation (1000..=10000000). The shipped default
    /// policy executes a few hundred.
    #[serde(default = "default_max_instructions")]
    pub max_instructions: u64,
    /// Upstream headers the policy may set besides those under `upstream.reserved_prefix`
    /// (lower-case names). Every client copy of them is removed from every request; a
    /// decision that sets any other header is a `policy.error`.
    #[serde(default)]
    pub headers: Vec<String>,
}

fn default_entrypoint() -> String {
    DEFAULT_ENTRYPOINT.into()
}
fn default_eval_ms() -> u64 {
    50
}
fn default_max_instructions() -> u64 {
    100_000
}

/// The policy lowered to RVM bytecode, with the VM that runs it (one per filter instance:
/// proxy-wasm workers are single-threaded, so a `RefCell` is enough).
struct Rvm {
    program: Arc<Program>,
    data: Value,
    timer: ExecutionTimerConfig,
    max_instructions: usize,
    vm: RefCell<RegoVM>,
}

impl Rvm {
    fn new(
        compiled: &CompiledPolicy,
        entrypoint: &str,
        data: Value,
        timer: ExecutionTimerConfig,
        max_instructions: usize,
    ) -> Result<Rvm, String> {
        let program =
            Compiler::compile_from_policy(compiled, &[entrypoint]).map_err(|e| format!("{e}"))?;
        let vm = Self::fresh_vm(&program, &data, timer, max_instructions)?;
        Ok(Rvm {
            program,
            data,
            timer,
            max_instructions,
            vm: RefCell::new(vm),
        })
    }

    fn fresh_vm(
        program: &Arc<Program>,
        data: &Value,
        timer: ExecutionTimerConfig,
        max_instructions: usize,
    ) -> Result<RegoVM, String> {
        let mut vm = RegoVM::new();
        vm.load_program(program.clone());
        vm.set_data(data.clone()).map_err(|e| format!("{e}"))?;
        vm.set_strict_builtin_errors(true);
        vm.set_max_instructions(max_instructions);
        vm.set_execution_timer_config(WALL_CLOCK.then_some(timer));
        Ok(vm)
    }

    fn evaluate(&self, input: Value) -> Result<Value, VmError> {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            // Re-entrancy cannot happen on a proxy-wasm worker; if it ever did, run on a
            // throwaway VM rather than fail.
            let mut vm =
                Self::fresh_vm(&self.program, &self.data, self.timer, self.max_instructions)
                    .map_err(|e| VmError::Internal { message: e, pc: 0 })?;
            vm.set_input(input);
            return vm.execute();
        };
        vm.set_input(input);
        let out = vm.execute();
        // Do not keep the request's input alive until the next request.
        vm.set_input(Value::Null);
        if out.is_err() {
            // A failed run may leave state behind: start the next one on a clean VM.
            if let Ok(fresh) =
                Self::fresh_vm(&self.program, &self.data, self.timer, self.max_instructions)
            {
                *vm = fresh;
            }
        }
        out
    }
}

/// A compiled policy, ready to evaluate.
pub struct Policy {
    compiled: CompiledPolicy,
    rvm: Option<Rvm>,
    /// Why the RVM could not take this policy (it then runs on the interpreter).
    pub rvm_unavailable: Option<String>,
    /// Short hash of modules, data and entrypoint: goes into every decision.
    pub revision: String,
    pub entrypoint: String,
    /// `policy.headers`: names the policy may set besides the reserved prefix.
    pub headers: Vec<String>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("revision", &self.revision)
            .field("entrypoint", &self.entrypoint)
            .field("engine", &self.engine())
            .finish()
    }
}

/// What the policy said.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow {
        headers: Vec<(String, String)>,
    },
    Deny {
        reason: Option<String>,
        status: u16,
    },
    /// Undefined, wrong type or evaluation error: deny with `policy.error`.
    Error(String),
    /// The evaluation budget ran out: deny with `policy.limit`.
    Limit,
}

fn problem(path: &str, message: String) -> Problem {
    Problem {
        path: path.into(),
        message,
    }
}

/// Revision: SHA-256 over the sorted modules, the data and the entrypoint (12 hex chars).
pub fn revision(cfg: &PolicyConfig) -> String {
    let mut h = Sha256::new();
    for (name, text) in &cfg.modules {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    h.update(
        cfg.data
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update([0]);
    h.update(cfg.entrypoint.as_bytes());
    hex::encode(h.finalize()).chars().take(12).collect()
}

/// Whether the target has a monotonic clock for `max_eval_ms`. The browser build
/// (wasm32-unknown-unknown) has none: `std::time::Instant` would trap there, so the
/// playground bounds policies by `max_instructions` alone.
const WALL_CLOCK: bool = !cfg!(browser);

fn timer(max_eval_ms: u64) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: Duration::from_millis(max_eval_ms),
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    }
}

/// A regorus engine with our policy, data and limits loaded (also used by the CLI).
/// Deepest `(`/`[`/`{` nesting a Rego module may have. regorus's parser takes time
/// exponential in it (measured: 22 nested `[` took 3.9 s, 25 unclosed ones over a minute);
/// real policies stay far below.
pub const MAX_NESTING: usize = 16;

/// Line and column (1-based) where `text` first nests brackets deeper than
/// [`MAX_NESTING`], outside strings and comments.
fn too_deep(text: &str) -> Option<(usize, usize)> {
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

pub fn engine_for(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
    max_eval_ms: u64,
) -> Result<Engine, Vec<Problem>> {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(true);
    if WALL_CLOCK {
        let timer = timer(max_eval_ms);
        engine.set_execution_timer_config(timer);
        // Compiled policies evaluate on fresh engines that only see the process-wide
        // fallback. One configuration per VM (per process for the CLI): setting it
        // globally is exact.
        set_fallback_execution_timer_config(Some(timer));
    }
    let mut problems = Vec::new();
    for (name, text) in modules {
        let path = format!("$.policy.modules[\"{name}\"]");
        if let Some((line, col)) = too_deep(text) {
            problems.push(problem(
                &path,
                format!("{name}:{line}:{col}: brackets nested deeper than {MAX_NESTING} (refused before parsing: the Rego parser's time grows exponentially with nesting)"),
            ));
            continue;
        }
        if let Err(e) = engine.add_policy(name.clone(), text.clone()) {
            problems.push(problem(&path, e.to_string()));
            continue;
        }
        for (line, col, builtin) in unavailable_builtins(text) {
            problems.push(problem(
                &path,
                format!("{name}:{line}:{col}: builtin `{builtin}` is not available in this build of agent-iam (see policies/README.md)"),
            ));
        }
    }
    if let Some(d) = data {
        if !d.is_object() {
            problems.push(problem("$.policy.data", "must be a JSON object".into()));
        } else if let Err(e) = engine.add_data(to_rego(d)) {
            problems.push(problem("$.policy.data", e.to_string()));
        }
    }
    if problems.is_empty() {
        Ok(engine)
    } else {
        Err(problems)
    }
}

impl Policy {
    /// Parses and compiles; every problem carries its path and the Rego file:line:col.
    pub fn compile(cfg: &PolicyConfig) -> Result<Policy, Vec<Problem>> {
        let mut problems = Vec::new();
        if cfg.modules.is_empty() {
            problems.push(problem(
                "$.policy.modules",
                "at least one Rego module is required".into(),
            ));
        }
        if !(1..=1000).contains(&cfg.max_eval_ms) {
            problems.push(problem(
                "$.policy.max_eval_ms",
                format!("{} is outside 1..=1000", cfg.max_eval_ms),
            ));
        }
        if !(1_000..=10_000_000).contains(&cfg.max_instructions) {
            problems.push(problem(
                "$.policy.max_instructions",
                format!("{} is outside 1000..=10000000", cfg.max_instructions),
            ));
        }
        if !cfg.entrypoint.starts_with("data.") {
            problems.push(problem(
                "$.policy.entrypoint",
                format!(
                    "\"{}\" must be a rule path starting with `data.`",
                    cfg.entrypoint
                ),
            ));
        }
        for (j, h) in cfg.headers.iter().enumerate() {
            if !is_header_name(h) || RESERVED_HEADERS.contains(&h.as_str()) {
                problems.push(problem(
                    &format!("$.policy.headers[{j}]"),
                    format!("\"{h}\" is not a header name a policy may set (lower-case letters, digits and `-`; not a hop-by-hop, routing or credential header)"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut engine = engine_for(&cfg.modules, cfg.data.as_ref(), cfg.max_eval_ms)?;
        let entry: regorus::Rc<str> = cfg.entrypoint.as_str().into();
        let compiled = engine.compile_with_entrypoint(&entry).map_err(|e| {
            vec![problem(
                "$.policy",
                format!("cannot compile {}: {e}", cfg.entrypoint),
            )]
        })?;
        let data = cfg.data.as_ref().map_or_else(Value::new_object, to_rego);
        let max_instructions = usize::try_from(cfg.max_instructions).unwrap_or(usize::MAX);
        let (rvm, rvm_unavailable) = match Rvm::new(
            &compiled,
            &cfg.entrypoint,
            data,
            timer(cfg.max_eval_ms),
            max_instructions,
        ) {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(first_line(&e))),
        };
        Ok(Policy {
            compiled,
            rvm,
            rvm_unavailable,
            revision: revision(cfg),
            entrypoint: cfg.entrypoint.clone(),
            headers: cfg.headers.clone(),
        })
    }

    /// The engine that evaluates requests: `"rvm"` or `"interpreter"`.
    pub fn engine(&self) -> &'static str {
        if self.rvm.is_some() {
            "rvm"
        } else {
            "interpreter"
        }
    }

    /// Evaluates the entry point for `input` on the gateway's engine.
    pub fn evaluate(&self, input: Value) -> Verdict {
        match &self.rvm {
            Some(rvm) => match rvm.evaluate(input) {
                Ok(v) => interpret(&v),
                Err(
                    VmError::InstructionLimitExceeded { .. }
                    | VmError::TimeLimitExceeded { .. }
                    | VmError::MemoryLimitExceeded { .. }
                    | VmError::MemoryBudgetExceeded { .. },
                ) => Verdict::Limit,
                Err(e) => Verdict::Error(first_line(&e.to_string())),
            },
            None => self.evaluate_interpreted(input),
        }
    }

    /// Evaluates on the tree-walking interpreter (the fallback engine; also used to check
    /// that both engines agree).
    pub fn evaluate_interpreted(&self, input: Value) -> Verdict {
        match self.compiled.eval_with_input(input) {
            Ok(v) => interpret(&v),
            Err(e) => {
                let text = format!("{e:#}");
                if text.contains("execution exceeded")
                    || text.contains("time limit")
                    || text.contains("limit") && text.contains("exceed")
                {
                    Verdict::Limit
                } else {
                    Verdict::Error(first_line(&text))
                }
            }
        }
    }
}

/// A policy directory's contents: its Rego modules and its data document.
#[derive(Debug, Clone, Default)]
pub struct PolicyFiles {
    pub modules: BTreeMap<String, String>,
    pub data: Option<serde_json::Value>,
}

impl PolicyFiles {
    /// From a policy directory's files (relative path → text): every `.rego` module
    /// (`*_test.rego` only `with_tests`) and every `data.json`, merged in path order.
    /// Other files are ignored. Errors name the file (and line, for JSON).
    pub fn from_files(
        files: &BTreeMap<String, String>,
        with_tests: bool,
    ) -> Result<PolicyFiles, String> {
        let mut out = PolicyFiles::default();
        for (path, text) in files {
            let name = path.rsplit('/').next().unwrap_or(path);
            if name.ends_with(".rego") && (with_tests || !name.ends_with("_test.rego")) {
                out.modules.insert(path.clone(), text.clone());
            } else if name == "data.json" {
                let v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))?;
                match &mut out.data {
                    None => out.data = Some(v),
                    Some(d) => merge_json(d, v),
                }
            }
        }
        Ok(out)
    }
}

/// Deep-merges `from` into `into`: objects member by member, anything else replaces
/// (several `data.json` files make one policy data document).
pub fn merge_json(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge_json(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Puts `modules` and `data` into a plugin configuration's `policy` (what `agent-iam
/// policy render` and the playground do); the other `policy` members are kept.
pub fn render_into(
    plugin: &mut serde_json::Value,
    modules: &BTreeMap<String, String>,
    data: Option<serde_json::Value>,
) -> Result<(), String> {
    let obj = plugin
        .as_object_mut()
        .ok_or("the plugin configuration is not a JSON object")?;
    let mut policy = match obj.get("policy") {
        Some(serde_json::Value::Object(p)) => p.clone(),
        None => serde_json::Map::new(),
        Some(_) => return Err("`policy` must be an object".into()),
    };
    policy.insert(
        "modules".into(),
        serde_json::Value::Object(
            modules
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        ),
    );
    match data {
        Some(d) => {
            policy.insert("data".into(), d);
        }
        None => {
            policy.remove("data");
        }
    }
    obj.insert("policy".into(), serde_json::Value::Object(policy));
    Ok(())
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
                if called
                    && name.contains('.')
                    && OPA_NAMESPACES.contains(&ns)
                    && !regorus::unstable::BUILTINS.contains_key(name.as_str())
                {
                    out.push((ln + 1, start + 1, name));
                }
                continue;
            }
            i += 1;
        }
    }
    out
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// No `_`: CGI and WSGI upstreams read `x_a` and `x-a` as the same variable.
fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Headers a policy may never set: hop-by-hop, routing and credentials.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
];

/// The decision document → verdict. Anything unexpected is an error (deny).
pub fn interpret(v: &Value) -> Verdict {
    match v {
        Value::Bool(true) => Verdict::Allow {
            headers: Vec::new(),
        },
        Value::Bool(false) => Verdict::Deny {
            reason: None,
            status: 403,
        },
        Value::Undefined => Verdict::Error("decision is undefined".into()),
        Value::Object(obj) => {
            for k in obj.keys() {
                match k.as_string().map(|s| s.as_ref()) {
                    Ok("allow" | "reason" | "status" | "headers") => {}
                    _ => return Verdict::Error(format!("unknown decision member {k}")),
                }
            }
            let get = |name: &str| obj.get(&Value::from(name));
            let allow = match get("allow") {
                Some(Value::Bool(b)) => *b,
                _ => return Verdict::Error("decision.allow must be a boolean".into()),
            };
            let reason = match get("reason") {
                None => None,
                Some(Value::String(s))
                    if !s.is_empty()
                        && s.len() <= 128
                        && s.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
                {
                    Some(s.to_string())
                }
                Some(_) => {
                    return Verdict::Error(
                        "decision.reason must be a short printable string".into(),
                    )
                }
            };
            let status = match get("status") {
                None => 403,
                Some(n) => match n.as_u64() {
                    Ok(s) if (400..=599).contains(&s) => s as u16,
                    _ => {
                        return Verdict::Error(
                            "decision.status must be an integer in 400..=599".into(),
                        )
                    }
                },
            };
            let mut headers = Vec::new();
            match get("headers") {
                None => {}
                Some(Value::Object(h)) => {
                    for (k, val) in h.iter() {
                        let (Ok(name), Ok(value)) = (k.as_string(), val.as_string()) else {
                            return Verdict::Error(
                                "decision.headers must map strings to strings".into(),
                            );
                        };
                        if !is_header_name(name) || RESERVED_HEADERS.contains(&name.as_ref()) {
                            return Verdict::Error(format!(
                                "decision.headers: `{name}` cannot be set"
                            ));
                        }
                        if value.len() > 4096
                            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
                        {
                            return Verdict::Error(format!(
                                "decision.headers: bad value for `{name}`"
                            ));
                        }
                        headers.push((name.to_string(), value.to_string()));
                    }
                }
                Some(_) => return Verdict::Error("decision.headers must be an object".into()),
            }
            if allow {
                Verdict::Allow { headers }
            } else {
                Verdict::Deny { reason, status }
            }
        }
        other => Verdict::Error(format!(
            "decision must be a boolean or an object, got {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

/// serde_json → regorus without a text round trip.
pub fn to_rego(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(to_rego).collect::<Vec<_>>()),
        serde_json::Value::Object(m) => to_rego_object(m),
    }
}

/// A JSON object → regorus object, without cloning the source map first.
pub fn to_rego_object(m: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from(
        m.iter()
            .map(|(k, v)| (Value::from(k.as_str()), to_rego(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Builds a regorus object from `(key, value)` pairs.
pub fn object<I: IntoIterator<Item = (&'static str, Value)>>(pairs: I) -> Value {
    Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Strings → regorus array.
pub fn strings<'a, I: IntoIterator<Item = &'a str>>(items: I) -> Value {
    Value::from(items.into_iter().map(Value::from).collect::<Vec<_>>())
}

/// Optional string → regorus string or null.
pub fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

/// One Rego test: the rule path and pass (`Ok(true)`), fail (`Ok(false)`) or error.
pub type TestResult = (String, Result<bool, String>);

/// Test runner: every `test_*` rule of every package defined in a `*_test.rego` module.
pub fn run_tests(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
) -> Result<Vec<TestResult>, Vec<Problem>> {
    let mut engine = engine_for(modules, data, 5_000)?;
    let mut results = Vec::new();
    for (name, text) in modules.iter().filter(|(n, _)| n.ends_with("_test.rego")) {
        let Some(package) = text
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("package "))
            .map(str::trim)
        else {
            results.push((name.clone(), Err("no package line".into())));
            continue;
        };
        let mut tests: Vec<String> = Vec::new();
        for line in text.lines() {
            let l = line.trim_start();
            if let Some(rest) = l.strip_prefix("test_") {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let rule = format!("data.{package}.test_{ident}");
                if line.starts_with("test_") && !tests.contains(&rule) {
                    tests.push(rule);
                }
            }
        }
        for rule in tests {
            let outcome = match engine.eval_rule(rule.clone()) {
                Ok(Value::Bool(true)) => Ok(true),
                Ok(Value::Undefined) | Ok(Value::Bool(false)) => Ok(false),
                Ok(other) => Err(format!("test evaluated to {}", type_name(&other))),
                Err(e) => Err(first_line(&format!("{e:#}"))),
            };
            results.push((rule, outcome));
        }
    }
    Ok(results)
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rego: &str) -> PolicyConfig {
        PolicyConfig {
            modules: BTreeMap::from([("p.rego".to_string(), rego.to_string())]),
            data: Some(serde_json::json!({"limits": {"max": 2}})),
            entrypoint: DEFAULT_ENTRYPOINT.into(),
            max_eval_ms: 20,
            max_instructions: default_max_instructions(),
            headers: Vec::new(),
        }
    }

    /// Evaluates on the RVM (the gateway's engine) and checks the interpreter agrees.
    fn eval(rego: &str, input: serde_json::Value) -> Verdict {
        let p = Policy::compile(&cfg(rego)).unwrap();
        assert_eq!(p.engine(), "rvm", "{:?}", p.rvm_unavailable);
        let v = p.evaluate(to_rego(&input));
        let i = p.evaluate_interpreted(to_rego(&input));
        match (&v, &i) {
            // Error texts differ between the engines.
            (Verdict::Error(_), Verdict::Error(_)) => {}
            _ => assert_eq!(v, i, "RVM and interpreter disagree for {rego}"),
        }
        v
    }

    #[test]
    fn contract_bool_object_undefined_error() {
        let p = "package agent_iam.authz\ndecision := input.x";
        assert_eq!(
            eval(p, serde_json::json!({"x": true})),
            Verdict::Allow { headers: vec![] }
        );
        assert_eq!(
            eval(p, serde_json::json!({"x": false})),
            Verdict::Deny {
                reason: None,
                status: 403
            }
        );
        assert!(matches!(eval(p, serde_json::json!({})), Verdict::Error(_)));
        assert!(matches!(
            eval(p, serde_json::json!({"x": "yes"})),
            Verdict::Error(_)
        ));
        let obj =
            serde_json::json!({"x": {"allow": false, "reason": "tenant.mismatch", "status": 404}});
        assert_eq!(
            eval(p, obj),
            Verdict::Deny {
                reason: Some("tenant.mismatch".into()),
                status: 404
            }
        );
        let obj = serde_json::json!({"x": {"allow": true, "headers": {"x-tenant": "acme"}}});
        assert_eq!(
            eval(p, obj),
            Verdict::Allow {
                headers: vec![("x-tenant".into(), "acme".into())]
            }
        );
        for bad in [
            serde_json::json!({"allow": "true"}),
            serde_json::json!({"allow": true, "status": 200}),
            serde_json::json!({"allow": true, "headers": {"authorization": "x"}}),
            serde_json::json!({"allow": true, "headers": {"x-a": "a\r\nb: c"}}),
            serde_json::json!({"allow": true, "extra": 1}),
        ] {
            assert!(
                matches!(eval(p, serde_json::json!({"x": bad})), Verdict::Error(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn data_is_visible_and_errors_deny() {
        let p = "package agent_iam.authz\ndecision if { count(input.items) <= data.limits.max }";
        assert_eq!(
            eval(p, serde_json::json!({"items": [1, 2]})),
            Verdict::Allow { headers: vec![] }
        );
        assert!(matches!(
            eval(p, serde_json::json!({"items": [1, 2, 3]})),
            Verdict::Error(_)
        ));
        let div = "package agent_iam.authz\ndecision := 1 / input.zero";
        assert!(matches!(
            eval(div, serde_json::json!({"zero": 0})),
            Verdict::Error(_)
        ));
    }

    #[test]
    fn runaway_policy_hits_the_limit() {
        let p = "package agent_iam.authz\ndecision if { count([1 | some i in numbers.range(1, 20000); some j in numbers.range(1, 20000)]) > 0 }";
        let start = std::time::Instant::now();
        assert_eq!(eval(p, serde_json::json!({})), Verdict::Limit);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the limit must stop it early"
        );
    }

    #[test]
    fn wall_clock_budget_stops_what_the_instruction_budget_allows() {
        // 400M iterations: far beyond 5 ms, inside a 10M instruction budget for a while.
        let p = "package agent_iam.authz\ndecision := true if input.quick\nelse := false if { count([1 | some i in numbers.range(1, 20000); some j in numbers.range(1, 20000)]) > 0 }";
        let mut c = cfg(p);
        c.max_instructions = 10_000_000;
        c.max_eval_ms = 5;
        let policy = Policy::compile(&c).unwrap();
        let slow = to_rego(&serde_json::json!({"quick": false}));
        let quick = to_rego(&serde_json::json!({"quick": true}));
        assert_eq!(policy.evaluate(slow.clone()), Verdict::Limit);
        // The same policy's VM serves the next request normally, and limits again.
        assert_eq!(policy.evaluate(quick), Verdict::Allow { headers: vec![] });
        assert_eq!(policy.evaluate(slow), Verdict::Limit);
    }

    #[test]
    fn budgets_are_validated() {
        let mut c = cfg("package agent_iam.authz\ndecision := true");
        c.max_instructions = 10;
        c.max_eval_ms = 0;
        let e = Policy::compile(&c).unwrap_err();
        let paths: Vec<_> = e.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["$.policy.max_eval_ms", "$.policy.max_instructions"]);
    }

    #[test]
    fn syntax_errors_and_unknown_builtins_fail_at_load_with_position() {
        let e = Policy::compile(&cfg(
            "package agent_iam.authz\ndecision if {\n  input.x ==\n}",
        ))
        .unwrap_err();
        let text = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.contains("p.rego:") && text.contains("$.policy.modules"),
            "{text}"
        );
        let e = Policy::compile(&cfg(
            "package agent_iam.authz\ndecision if { net.cidr_contains(\"10.0.0.0/8\", input.ip) }",
        ))
        .unwrap_err();
        let text = e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("net.cidr_contains"), "{text}");
    }

    #[test]
    fn revision_changes_with_policy_or_data() {
        let a = cfg("package agent_iam.authz\ndecision := true");
        let mut b = cfg("package agent_iam.authz\ndecision := true");
        assert_eq!(revision(&a), revision(&b));
        b.data = Some(serde_json::json!({"limits": {"max": 3}}));
        assert_ne!(revision(&a), revision(&b));
    }
}
