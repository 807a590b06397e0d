//! Compiling a policy once per configuration: the section's own checks, screening each
//! module before and after parsing ([`super::screen`]), then the regorus compile and the
//! lowering to the RVM. A bad policy is a configuration error with its file:line:col.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use regorus::utils::limits::{set_fallback_execution_timer_config, ExecutionTimerConfig};
use regorus::{Engine, Value};

use super::config::{revision, PolicyConfig};
use super::evaluate::{Rvm, WALL_CLOCK};
use super::reuse::Reuse;
use super::screen::{too_deep, unavailable_builtins, MAX_NESTING};
use super::value::to_rego;
use super::verdict::{is_header_name, RESERVED_HEADERS};
use super::{first_line, problem, Policy};
use crate::problem::Problem;

impl Policy {
    /// Parses and compiles; every problem carries its path and the Rego file:line:col.
    pub fn compile(cfg: &PolicyConfig) -> Result<Policy, Vec<Problem>> {
        let problems = section_problems(cfg);
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
        let (reuse, reuse_off) = match Reuse::plan(cfg) {
            Ok(r) => (Some(r), None),
            Err(why) => (None, Some(why)),
        };
        Ok(Policy {
            compiled,
            rvm,
            rvm_unavailable,
            revision: revision(cfg),
            entrypoint: cfg.entrypoint.clone(),
            headers: cfg.headers.clone(),
            time_resolution_s: cfg.time_resolution_s,
            reuse,
            reuse_off,
        })
    }
}

/// The section's values: modules present, budgets in range, a `data.` entry point and
/// header names a policy may set.
fn section_problems(cfg: &PolicyConfig) -> Vec<Problem> {
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
    if cfg.decision_cache_entries > 1_000_000 {
        problems.push(problem(
            "$.policy.decision_cache_entries",
            format!("{} is outside 0..=1000000", cfg.decision_cache_entries),
        ));
    }
    if let Some(r) = cfg.time_resolution_s.filter(|r| !(1..=3600).contains(r)) {
        problems.push(problem(
            "$.policy.time_resolution_s",
            format!("{r} is outside 1..=3600"),
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
    problems
}

pub(super) fn timer(max_eval_ms: u64) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: Duration::from_millis(max_eval_ms),
        check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
    }
}

/// A regorus engine with the modules (screened, then parsed), the data and the limits
/// loaded: what [`Policy::compile`] compiles and the test runner evaluates.
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
                format!("{name}:{line}:{col}: builtin `{builtin}` is not available in this build of agent-iam (see docs/POLICIES.md)"),
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
