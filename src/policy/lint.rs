//! `agent-iam policy check`: what can be known about a policy without evaluating it.
//!
//! From regorus's syntax tree: the rules the entrypoint can reach (a reference reaches every
//! rule its path names or contains; a dynamic segment reaches them all), the `input` paths
//! each rule reads, checked against the published input schema
//! (`schemas/policy-input.schema.json`), and whether a rule reads the clock (`input.time`).
//! Only paths written out from `input` (or an `import input…` alias) are seen: a value passed
//! through a local variable is not followed. Parse, compile and builtin errors come first:
//! a policy that does not compile has nothing else to check.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead};

use super::compile::engine_for;
use crate::problem::Problem;

/// The published JSON Schema of `input`.
pub const INPUT_SCHEMA: &str = include_str!("../../schemas/policy-input.schema.json");

/// Deepest expression nesting the checker walks (the Rego parser accepts deeper chains of
/// operators without brackets; they are an error here rather than a stack overflow).
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding: where (the module's path, 1-based line and column; none for a problem of
/// the whole policy), how bad, a stable code and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: Option<String>,
    pub line: u32,
    pub col: u32,
    pub severity: Severity,
    /// `compile`, `unreachable`, `input.unknown`, `input.time`.
    pub code: &'static str,
    pub message: String,
}

/// What `policy check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// The `input` paths the rules the entrypoint reaches read (`[_]` for a dynamic
    /// segment): what the decision can depend on besides `data`.
    pub reads: BTreeSet<String>,
    /// Whether a reachable rule reads `input.time`.
    pub reads_time: bool,
    /// Rules defined, and how many of them the entrypoint reaches.
    pub rules: usize,
    pub reachable: usize,
    /// Every rule (its first definition), in module order.
    pub definitions: Vec<RuleInfo>,
}

/// A rule of the policy: its full name, where it is first defined, whether it is a function
/// and whether the entrypoint reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub name: String,
    pub file: String,
    pub line: u32,
    pub function: bool,
    pub reachable: bool,
    /// Whether a definition has conditions (`if …`): not only a value or a default.
    pub conditional: bool,
    /// A set rule's definitions with a literal member (`deny contains "reason" if …`):
    /// the member, the file and the line of each.
    pub emitters: Vec<(String, String, u32)>,
}

impl CheckReport {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Any,
}

fn render(root: &str, segs: &[Seg]) -> String {
    let mut s = root.to_owned();
    for seg in segs {
        match seg {
            Seg::Key(k) if is_ident(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => s.push_str(&format!("[{}]", serde_json::Value::from(k.as_str()))),
            Seg::Any => s.push_str("[_]"),
        }
    }
    s
}

fn is_ident(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A reference as written: its root variable, its segments, where it is.
struct RefUse {
    root: String,
    segs: Vec<Seg>,
    line: u32,
    col: u32,
}

/// The root variable and segments of a reference expression (`None`: not rooted at a
/// variable, e.g. a call's result).
fn ref_path(e: &Expr) -> Option<(String, Vec<Seg>)> {
    ref_at(e).map(|(root, segs, _)| (root, segs))
}

/// [`ref_path`] and the root variable's position (where the reference starts).
fn ref_at(e: &Expr) -> Option<(String, Vec<Seg>, (u32, u32))> {
    let mut segs = Vec::new();
    let mut at = e;
    loop {
        match at {
            Expr::Var { value, span, .. } => {
                let root = value.as_string().ok()?.to_string();
                segs.reverse();
                return Some((root, segs, (span.line, span.col)));
            }
            Expr::RefDot { refr, field, .. } => {
                segs.push(Seg::Key(field.1.as_string().ok()?.to_string()));
                at = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                segs.push(match &**index {
                    Expr::String { value, .. } | Expr::RawString { value, .. } => {
                        Seg::Key(value.as_string().ok()?.to_string())
                    }
                    _ => Seg::Any,
                });
                at = refr;
            }
            _ => return None,
        }
    }
}

/// Collects every reference in an expression (the longest chain, not its prefixes).
struct Walker {
    uses: Vec<RefUse>,
    too_deep: Option<(u32, u32)>,
}

impl Walker {
    fn new() -> Walker {
        Walker {
            uses: Vec::new(),
            too_deep: None,
        }
    }

    fn record(&mut self, e: &Expr) {
        if let Some((root, segs, (line, col))) = ref_at(e) {
            self.uses.push(RefUse {
                root,
                segs,
                line,
                col,
            });
        }
    }

    fn expr(&mut self, e: &Expr, depth: usize) {
        if depth > MAX_DEPTH {
            let s = e.span();
            self.too_deep.get_or_insert((s.line, s.col));
            return;
        }
        let d = depth + 1;
        match e {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { .. } => self.record(e),
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                self.record(e);
                // The indexes along the chain, and a root that is not a variable.
                let mut at = e;
                loop {
                    match at {
                        Expr::RefDot { refr, .. } => at = refr,
                        Expr::RefBrack { refr, index, .. } => {
                            self.expr(index, d);
                            at = refr;
                        }
                        Expr::Var { .. } => break,
                        other => {
                            self.expr(other, d);
                            break;
                        }
                    }
                }
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for i in items {
                    self.expr(i, d);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k, d);
                    self.expr(v, d);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term, d);
                self.query(query, d);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key, d);
                self.expr(value, d);
                self.query(query, d);
            }
            Expr::Call { fcn, params, .. } => {
                // The function's name is a reference too (a rule, or a builtin).
                self.record(fcn);
                for p in params {
                    self.expr(p, d);
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr, d),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs, d);
                self.expr(rhs, d);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.expr(k, d);
                }
                self.expr(value, d);
                self.expr(collection, d);
            }
        }
    }

    fn query(&mut self, q: &Query, depth: usize) {
        let d = depth + 1;
        for stmt in &q.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(k) = key {
                        self.expr(k, d);
                    }
                    self.expr(value, d);
                    self.expr(collection, d);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr, d),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain, d);
                    self.query(query, d);
                }
            }
            // `with x as v`: `x` is replaced, not read; `v` is read.
            for w in &stmt.with_mods {
                self.expr(&w.r#as, d);
            }
        }
    }
}

/// A rule definition: its module, its name (below `data`), where, what it references.
struct RuleDef {
    module: usize,
    name: Vec<String>,
    function: bool,
    conditional: bool,
    /// A set head's literal member.
    member: Option<String>,
    line: u32,
    col: u32,
    uses: Vec<RefUse>,
    /// Where an expression nests deeper than the walker follows.
    too_deep: Option<(u32, u32)>,
}

/// The head's name: the static part of its reference (`deny`, `a.b`, `p` of `p[x]`).
fn head_name(refr: &Expr) -> Vec<String> {
    ref_path(refr)
        .map(|(root, segs)| {
            std::iter::once(root)
                .chain(segs.into_iter().map_while(|s| match s {
                    Seg::Key(k) => Some(k),
                    Seg::Any => None,
                }))
                .collect()
        })
        .unwrap_or_default()
}

fn rule_def(module: usize, rule: &Rule) -> RuleDef {
    let mut w = Walker::new();
    let function = matches!(
        rule,
        Rule::Spec {
            head: RuleHead::Func { .. },
            ..
        }
    ) || matches!(rule, Rule::Default { args, .. } if !args.is_empty());
    let conditional = matches!(rule, Rule::Spec { bodies, .. }
        if bodies.iter().any(|b| !b.query.stmts.is_empty()));
    let member = match rule {
        Rule::Spec {
            head: RuleHead::Set { key: Some(k), .. },
            ..
        } => match &**k {
            Expr::String { value, .. } | Expr::RawString { value, .. } => {
                value.as_string().ok().map(|s| s.to_string())
            }
            _ => None,
        },
        _ => None,
    };
    let (refr, span) = match rule {
        Rule::Spec { span, head, bodies } => {
            let refr = match head {
                RuleHead::Compr { refr, assign, .. } | RuleHead::Func { refr, assign, .. } => {
                    if let Some(a) = assign {
                        w.expr(&a.value, 0);
                    }
                    refr
                }
                RuleHead::Set { refr, key, .. } => {
                    if let Some(k) = key {
                        w.expr(k, 0);
                    }
                    refr
                }
            };
            // A rule head `p[x]` reads `x` from its body; a partial head's indexes are
            // walked as expressions.
            if let Expr::RefBrack { index, .. } = &**refr {
                w.expr(index, 0);
            }
            for b in bodies {
                if let Some(a) = &b.assign {
                    w.expr(&a.value, 0);
                }
                w.query(&b.query, 0);
            }
            (refr, span)
        }
        Rule::Default {
            span, refr, value, ..
        } => {
            w.expr(value, 0);
            (refr, span)
        }
    };
    RuleDef {
        module,
        name: head_name(refr),
        function,
        conditional,
        member,
        line: span.line,
        col: span.col,
        uses: w.uses,
        too_deep: w.too_deep,
    }
}

/// What a name means in a module: `data.…` or `input.…` (with its prefix), or nothing we
/// follow (a local variable, a builtin).
enum Root {
    Data(Vec<Seg>),
    Input(Vec<Seg>),
}

struct Scope {
    package: Vec<String>,
    imports: HashMap<String, Root>,
    rules: BTreeSet<String>,
}

impl Scope {
    fn resolve(&self, u: &RefUse) -> Option<Root> {
        let mut segs = match u.root.as_str() {
            "input" => return Some(Root::Input(u.segs.clone())),
            "data" => return Some(Root::Data(u.segs.clone())),
            r => match self.imports.get(r) {
                Some(Root::Data(p)) => Root::Data(p.clone()),
                Some(Root::Input(p)) => Root::Input(p.clone()),
                None if self.rules.contains(r) => Root::Data(
                    self.package
                        .iter()
                        .cloned()
                        .chain(std::iter::once(r.to_owned()))
                        .map(Seg::Key)
                        .collect(),
                ),
                None => return None,
            },
        };
        match &mut segs {
            Root::Data(p) | Root::Input(p) => p.extend(u.segs.iter().cloned()),
        }
        Some(segs)
    }
}

fn package_of(module: &Module) -> Vec<String> {
    ref_path(&module.package.refr)
        .map(|(root, segs)| {
            std::iter::once(root)
                .chain(segs.into_iter().filter_map(|s| match s {
                    Seg::Key(k) => Some(k),
                    Seg::Any => None,
                }))
                .collect()
        })
        .unwrap_or_default()
}

/// A module's names: its imports, and the rules of its package (in any module).
fn scope(module: &Module, rules: &[RuleDef], packages: &[Vec<String>]) -> Scope {
    let package = package_of(module);
    let mut imports = HashMap::new();
    for imp in &module.imports {
        let Some((root, segs)) = ref_path(&imp.refr) else {
            continue;
        };
        let alias = match (&imp.r#as, segs.last()) {
            (Some(a), _) => a.text().to_owned(),
            (None, Some(Seg::Key(k))) => k.clone(),
            (None, _) => root.clone(),
        };
        match root.as_str() {
            "data" => {
                imports.insert(alias, Root::Data(segs));
            }
            "input" => {
                imports.insert(alias, Root::Input(segs));
            }
            _ => {}
        }
    }
    let rules = rules
        .iter()
        .filter(|r| packages.get(r.module) == Some(&package))
        .filter_map(|r| r.name.first().cloned())
        .collect();
    Scope {
        package,
        imports,
        rules,
    }
}

/// A finding at the start of a module (a problem whose message starts with
/// `file:line:col:` is placed there).
fn compile_finding(p: &Problem, modules: &BTreeMap<String, String>) -> Finding {
    let mut f = Finding {
        file: None,
        line: 0,
        col: 0,
        severity: Severity::Error,
        code: "compile",
        message: p.message.clone(),
    };
    // regorus's parse errors: `--> file:line:col`, the line with a caret, `error: why`.
    if let Some(at) = p
        .message
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
    {
        let why = p
            .message
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(&p.message);
        let (head, why) = (at.to_owned(), why.to_owned());
        let mut parts = head.rsplitn(3, ':');
        if let (Some(c), Some(l), Some(file)) = (parts.next(), parts.next(), parts.next()) {
            if let (Ok(line), Ok(col)) = (l.parse(), c.parse()) {
                f.file = Some(file.to_owned());
                f.line = line;
                f.col = col;
                f.message = why;
                return f;
            }
        }
    }
    for name in modules.keys() {
        let Some(rest) = p.message.strip_prefix(&format!("{name}:")) else {
            continue;
        };
        let mut parts = rest.splitn(3, ':');
        if let (Some(l), Some(c), Some(msg)) = (parts.next(), parts.next(), parts.next()) {
            if let (Ok(line), Ok(col)) = (l.trim().parse(), c.trim().parse()) {
                f.file = Some(name.clone());
                f.line = line;
                f.col = col;
                f.message = msg.trim().to_owned();
            }
        }
    }
    f
}

/// Does a reference (`data` + segments) name or contain this rule (or the other way round)?
fn reaches(path: &[Seg], package: &[String], name: &[String]) -> bool {
    let full = package.iter().chain(name.iter());
    path.iter().zip(full).all(|(seg, key)| match seg {
        Seg::Key(k) => k == key,
        Seg::Any => true,
    })
}

/// Checks `modules` (no tests) with `data` against the entrypoint, without evaluating.
pub fn check(
    modules: &BTreeMap<String, String>,
    data: Option<&serde_json::Value>,
    entrypoint: &str,
) -> CheckReport {
    let mut report = CheckReport::default();
    let mut engine = match engine_for(modules, data, 50) {
        Ok(e) => e,
        Err(problems) => {
            report.findings = problems
                .iter()
                .map(|p| compile_finding(p, modules))
                .collect();
            return report;
        }
    };
    let entry: regorus::Rc<str> = entrypoint.into();
    if let Err(e) = engine.compile_with_entrypoint(&entry) {
        let p = Problem {
            path: "$.policy".into(),
            message: format!("cannot compile {entrypoint}: {e}"),
        };
        report.findings.push(compile_finding(&p, modules));
        return report;
    }
    let parsed: Vec<regorus::unstable::Ref<Module>> = engine.get_modules().clone();
    let files: Vec<String> = parsed
        .iter()
        .map(|m| m.package.span.source.file().clone())
        .collect();
    let mut defs = Vec::new();
    for (i, m) in parsed.iter().enumerate() {
        for r in &m.policy {
            defs.push(rule_def(i, r));
        }
    }
    let packages: Vec<Vec<String>> = parsed.iter().map(|m| package_of(m)).collect();
    let scopes: Vec<Scope> = parsed.iter().map(|m| scope(m, &defs, &packages)).collect();
    let schema: serde_json::Value = serde_json::from_str(INPUT_SCHEMA).unwrap_or_default();

    // Reachability from the entrypoint (`data.a.b.rule`).
    let entry_path: Vec<Seg> = entrypoint
        .strip_prefix("data.")
        .unwrap_or(entrypoint)
        .split('.')
        .map(|k| Seg::Key(k.to_owned()))
        .collect();
    let mut reached = vec![false; defs.len()];
    let mut pending = vec![entry_path];
    while let Some(path) = pending.pop() {
        for (j, d) in defs.iter().enumerate() {
            let package = scopes.get(d.module).map(|s| &s.package[..]).unwrap_or(&[]);
            if reached.get(j) == Some(&false) && reaches(&path, package, &d.name) {
                if let Some(r) = reached.get_mut(j) {
                    *r = true;
                }
                for u in &d.uses {
                    if let Some(Root::Data(p)) = scopes.get(d.module).and_then(|s| s.resolve(u)) {
                        pending.push(p);
                    }
                }
            }
        }
    }
    report.rules = defs.len();
    report.reachable = reached.iter().filter(|r| **r).count();

    let mut seen_unreachable = BTreeSet::new();
    for (j, d) in defs.iter().enumerate() {
        let file = files.get(d.module).cloned();
        let Some(scope) = scopes.get(d.module) else {
            continue;
        };
        let full = format!(
            "data.{}",
            scope
                .package
                .iter()
                .chain(&d.name)
                .cloned()
                .collect::<Vec<_>>()
                .join(".")
        );
        let live = reached.get(j) == Some(&true);
        let emitter = d
            .member
            .clone()
            .map(|m| (m, file.clone().unwrap_or_default(), d.line));
        match report.definitions.iter_mut().find(|r| r.name == full) {
            Some(r) => {
                r.conditional |= d.conditional;
                r.emitters.extend(emitter);
            }
            None => report.definitions.push(RuleInfo {
                name: full.clone(),
                file: file.clone().unwrap_or_default(),
                line: d.line,
                function: d.function,
                reachable: live,
                conditional: d.conditional,
                emitters: emitter.into_iter().collect(),
            }),
        }
        if !live && seen_unreachable.insert(full.clone()) {
            report.findings.push(Finding {
                file: file.clone(),
                line: d.line,
                col: d.col,
                severity: Severity::Warning,
                code: "unreachable",
                message: format!("rule {full} is never evaluated by the entrypoint {entrypoint}"),
            });
        }
        if let Some((line, col)) = d.too_deep {
            report.findings.push(Finding {
                file: file.clone(),
                line,
                col,
                severity: Severity::Error,
                code: "compile",
                message: format!("expression nested deeper than {MAX_DEPTH}"),
            });
        }
        for u in &d.uses {
            let Some(Root::Input(segs)) = scope.resolve(u) else {
                continue;
            };
            let path = render("input", &segs);
            if let Some(why) = unknown_input(&schema, &segs) {
                report.findings.push(Finding {
                    file: file.clone(),
                    line: u.line,
                    col: u.col,
                    severity: Severity::Error,
                    code: "input.unknown",
                    message: format!("{path}: {why}"),
                });
            }
            let time = matches!(segs.first(), Some(Seg::Key(k)) if k == "time");
            if live {
                report.reads.insert(path.clone());
                report.reads_time |= time;
            }
            if time {
                report.findings.push(Finding {
                    file: file.clone(),
                    line: u.line,
                    col: u.col,
                    severity: Severity::Warning,
                    code: "input.time",
                    message: format!("{path}: the decision depends on the clock, not only on the request (replay decides at the recorded time)"),
                });
            }
        }
    }
    report
        .findings
        .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
    report.findings.dedup();
    report
}

/// Why the input schema has no such path (`None`: it may be set).
fn unknown_input(schema: &serde_json::Value, segs: &[Seg]) -> Option<String> {
    let mut node = schema;
    let mut at = "input".to_owned();
    for seg in segs {
        node = concrete(schema, node);
        let types = types_of(node);
        match seg {
            Seg::Key(k) if types.contains(&"object") => {
                match node.get("properties").and_then(|p| p.get(k)) {
                    Some(next) => node = next,
                    None => match node.get("additionalProperties") {
                        Some(serde_json::Value::Bool(false)) => {
                            let members: Vec<&str> = node
                                .get("properties")
                                .and_then(|p| p.as_object())
                                .map(|o| o.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            return Some(format!(
                                "the gateway never sets this ({at} has: {})",
                                members.join(", ")
                            ));
                        }
                        Some(next @ serde_json::Value::Object(_)) => node = next,
                        _ => return None,
                    },
                }
            }
            Seg::Any if types.contains(&"array") => {
                node = node.get("items")?;
            }
            Seg::Any if types.contains(&"object") => {
                match node.get("additionalProperties") {
                    Some(next @ serde_json::Value::Object(_)) => node = next,
                    // Any member of a closed object: cannot tell which.
                    _ => return None,
                }
            }
            _ if types.is_empty() => return None,
            _ => {
                return Some(format!(
                    "{at} is {}, which has no members",
                    types
                        .iter()
                        .map(|t| format!(
                            "{} {t}",
                            if t.starts_with(['a', 'o']) { "an" } else { "a" }
                        ))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            }
        }
        at = render(&at, std::slice::from_ref(seg));
    }
    None
}

/// A schema node with `$ref` followed and `oneOf` narrowed to its non-null member.
fn concrete<'a>(
    root: &'a serde_json::Value,
    mut node: &'a serde_json::Value,
) -> &'a serde_json::Value {
    for _ in 0..8 {
        if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
            match r
                .strip_prefix("#/$defs/")
                .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
            {
                Some(next) => node = next,
                None => return node,
            }
        } else if let Some(alts) = node.get("oneOf").and_then(|a| a.as_array()) {
            match alts
                .iter()
                .find(|a| a.get("type").and_then(|t| t.as_str()) != Some("null"))
            {
                Some(next) => node = next,
                None => return node,
            }
        } else {
            return node;
        }
    }
    node
}

/// A schema node's types besides `null`.
fn types_of(node: &serde_json::Value) -> Vec<&str> {
    match node.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.as_str()],
        Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|t| *t != "null")
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> CheckReport {
        let modules = BTreeMap::from([("p.rego".to_owned(), text.to_owned())]);
        check(&modules, None, "data.p.decision")
    }

    fn codes(r: &CheckReport) -> Vec<(u32, &'static str, String)> {
        r.findings
            .iter()
            .map(|f| (f.line, f.code, f.message.clone()))
            .collect()
    }

    #[test]
    fn reachable_rules_and_their_input_paths() {
        let r = run(r#"package p
import rego.v1
import data.p.lib as l
import input.request as req

decision := {"allow": count(deny) == 0}
deny contains "m" if req.method == "DELETE"
deny contains "s" if not has(input.scopes.effective, "x")
has(set, s) if s in set
deny contains "t" if l.late
orphan if input.agent.registered
"#);
        assert_eq!(r.rules, 6, "{:?}", codes(&r));
        assert_eq!(r.reachable, 5);
        assert_eq!(
            codes(&r),
            vec![(
                11,
                "unreachable",
                "rule data.p.orphan is never evaluated by the entrypoint data.p.decision".into()
            )]
        );
        assert_eq!(
            r.reads.iter().cloned().collect::<Vec<_>>(),
            vec!["input.request.method", "input.scopes.effective"]
        );
        assert!(!r.reads_time);
    }

    #[test]
    fn input_paths_the_gateway_never_sets() {
        let r = run(r#"package p
import rego.v1
decision := {"allow": ok}
default ok := false
ok if {
	input.request.pth == "/"
	input.chain.sub == "a"
	input.chain[_].sub == "a"
	input.request.segments[0] == "x"
	input.request.path.x == 1
	input.token.any.claim == 1
	input.request.headers["x-a"] == "1"
	input.agent.record.status == "active"
	input.mcp.arguments.id == 1
	input["subjekt"].id == "u"
	input.time.now > 0
}
"#);
        let found = codes(&r);
        assert_eq!(
            found,
            vec![
                (6, "input.unknown", "input.request.pth: the gateway never sets this (input.request has: headers, host, method, path, query, segments)".into()),
                (7, "input.unknown", "input.chain.sub: input.chain is an array, which has no members".into()),
                (10, "input.unknown", "input.request.path.x: input.request.path is a string, which has no members".into()),
                (15, "input.unknown", "input.subjekt.id: the gateway never sets this (input has: agent, chain, mcp, proof, request, route, scopes, subject, time, token)".into()),
                (16, "input.time", "input.time.now: the decision depends on the clock, not only on the request (replay decides at the recorded time)".into()),
            ],
        );
        assert!(r.reads_time);
    }

    #[test]
    fn compile_errors_are_placed_in_their_file() {
        let r = run(
            "package p\nimport rego.v1\ndecision := {\"allow\": net.cidr_contains(\"a\", \"b\")}\n",
        );
        assert_eq!(r.findings.len(), 1);
        let f = &r.findings[0];
        assert_eq!(
            (f.file.as_deref(), f.line, f.code),
            (Some("p.rego"), 3, "compile")
        );
        assert!(f.message.contains("net.cidr_contains"), "{}", f.message);
        let r = run("package p\ndecision := {\n");
        let f = &r.findings[0];
        assert_eq!(
            (f.file.as_deref(), f.line, f.code),
            (Some("p.rego"), 3, "compile")
        );
        assert!(f.message.starts_with("expecting"), "{}", f.message);
        assert_eq!(r.findings[0].severity, Severity::Error);
    }

    #[test]
    fn deep_expressions_are_an_error_not_a_crash() {
        let long = vec!["1"; 5000].join(" + ");
        let r = run(&format!(
            "package p\ndecision := {{\"allow\": {long} > 0}}\n"
        ));
        assert!(
            r.findings.iter().any(|f| f.severity == Severity::Error),
            "{:?}",
            codes(&r)
        );
    }

    #[test]
    fn the_shipped_policies_are_clean() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/agent_iam");
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            files.insert(format!("agent_iam/{name}"), text);
        }
        let pd = super::super::PolicyFiles::from_files(&files, false).unwrap();
        let r = check(
            &pd.modules,
            pd.data.as_ref(),
            super::super::DEFAULT_ENTRYPOINT,
        );
        assert_eq!(r.count(Severity::Error), 0, "{:?}", r.findings);
        assert_eq!(r.reachable, r.rules, "{:?}", r.findings);
        assert!(r.reads_time);
    }
}
