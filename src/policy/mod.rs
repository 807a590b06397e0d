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
//!
//! Files by purpose: `config` (the section, its revision), `compile` (the section's
//! checks, screening modules in `screen`, compiling), `evaluate` (RVM and interpreter),
//! `verdict` (the decision document), `value` (regorus values), [`input`] (the policy
//! input); `tools` (the CLI's and the playground's authoring helpers), `case` (replaying one
//! decision, exporting it as a test) and `lint` (`policy check`) are not compiled into the
//! filter.

use regorus::CompiledPolicy;

use crate::problem::Problem;

#[cfg(tools)]
mod case;
mod compile;
mod config;
mod evaluate;
pub mod input;
#[cfg(tools)]
pub mod lint;
mod reuse;
mod screen;
#[cfg(tools)]
mod tools;
mod value;
mod verdict;

#[cfg(tools)]
pub use case::{
    candidate_outcome, outcome_text, recorded_outcome, test_module, Outcome as CaseOutcome,
};
pub use compile::engine_for;
pub use config::{revision, PolicyConfig, DEFAULT_ENTRYPOINT};
pub use screen::{calls_beyond_slim, unavailable_builtins, MAX_NESTING};
#[cfg(tools)]
pub use tools::{
    eval_query, explain_rules, merge_json, render_into, run_tests, run_tests_with, FileCoverage,
    PolicyFiles, QueryValue, RuleValue, TestCase, TestOptions, TestResult, TestRun,
};
pub use value::{object, opt_str, strings, to_rego, to_rego_object};
pub use verdict::{interpret, Verdict};

/// A compiled policy, ready to evaluate.
pub struct Policy {
    compiled: CompiledPolicy,
    rvm: Option<evaluate::Rvm>,
    /// Why the RVM could not take this policy (it then runs on the interpreter).
    pub rvm_unavailable: Option<String>,
    /// Short hash of modules, data and entrypoint: goes into every decision.
    pub revision: String,
    pub entrypoint: String,
    /// `policy.headers`: names the policy may set besides the reserved prefix.
    pub headers: Vec<String>,
    /// `policy.time_resolution_s`: the clock the policy sees is floored to it.
    pub time_resolution_s: Option<u64>,
    /// The decision cache, when this policy can have one ([`reuse`]).
    reuse: Option<reuse::Reuse>,
    /// Why it has none.
    pub reuse_off: Option<String>,
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

fn problem(path: &str, message: String) -> Problem {
    Problem {
        path: path.into(),
        message,
    }
}

/// An error's first line, clipped: what goes into a verdict, a log line or a problem.
fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

impl Policy {
    /// The time the policy sees at `now`: floored to `policy.time_resolution_s`.
    pub fn policy_time(&self, now: f64) -> f64 {
        match self.time_resolution_s {
            Some(r) if r > 0 => {
                let r = r as f64;
                (now / r).floor() * r
            }
            _ => now,
        }
    }

    /// The verdict for `input`, from the decision cache where the policy has one.
    pub fn decide(&self, input: regorus::Value) -> Verdict {
        match &self.reuse {
            Some(r) => r.decide(input, |i| self.evaluate(i)),
            None => self.evaluate(input),
        }
    }

    /// The `input` paths the decision cache keys on (`None`: no cache, see `reuse_off`).
    pub fn cache_key_paths(&self) -> Option<Vec<String>> {
        self.reuse.as_ref().map(reuse::Reuse::describe)
    }

    /// Verdicts the decision cache answered.
    pub fn cache_hits(&self) -> u64 {
        self.reuse.as_ref().map_or(0, reuse::Reuse::hits)
    }
}

#[cfg(test)]
mod tests;
