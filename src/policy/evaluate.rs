//! Evaluation: the RVM (regorus's bytecode VM, the gateway's engine) with its instruction
//! and wall-clock budgets, and the tree-walking interpreter as the fallback for a policy
//! the RVM compiler cannot lower. A budget that runs out is [`Verdict::Limit`].

use std::cell::RefCell;
use std::sync::Arc;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{CompiledPolicy, Value};

use super::verdict::{interpret, Verdict};
use super::{first_line, Policy};

/// Whether the target has a monotonic clock for `max_eval_ms`. The browser build
/// (wasm32-unknown-unknown) has none: `std::time::Instant` would trap there, so the
/// playground bounds policies by `max_instructions` alone.
pub(super) const WALL_CLOCK: bool = !cfg!(browser);

/// The policy lowered to RVM bytecode, with the VM that runs it (one per filter instance:
/// proxy-wasm workers are single-threaded, so a `RefCell` is enough).
pub(super) struct Rvm {
    program: Arc<Program>,
    data: Value,
    timer: ExecutionTimerConfig,
    max_instructions: usize,
    vm: RefCell<RegoVM>,
}

impl Rvm {
    pub(super) fn new(
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

    pub(super) fn evaluate(&self, input: Value) -> Result<Value, VmError> {
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

impl Policy {
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
