//! `agent-iam`: the native command line around the same decision core the filter runs.
//!
//! One file per subcommand; this one parses the command line, dispatches and turns the
//! outcome into the exit code (see [`EXIT_CODES`]).

// The filter build (`cargo build --target wasm32-wasip1`) compiles every target of the
// package; the CLI is native only, so there it is an empty program.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod audit;
#[cfg(not(target_arch = "wasm32"))]
mod check;
#[cfg(not(target_arch = "wasm32"))]
mod common;
#[cfg(not(target_arch = "wasm32"))]
mod dev;
#[cfg(not(target_arch = "wasm32"))]
mod generate;
#[cfg(not(target_arch = "wasm32"))]
mod playground;
#[cfg(not(target_arch = "wasm32"))]
mod policy;
#[cfg(not(target_arch = "wasm32"))]
mod server;
#[cfg(not(target_arch = "wasm32"))]
mod validate;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(&a),
        Command::Validate(a) => validate::run(&a),
        Command::Reasons(a) => validate::reasons(&a),
        Command::Generate(c) => generate::run(&c),
        Command::Policy(c) => policy::run(&c),
        Command::Dev(c) => dev::run(&c),
        Command::Audit(c) => audit::run(&c),
        Command::Playground(a) => playground::run(&a),
        Command::Version => {
            println!("agent-iam {}", agent_iam::VERSION);
            Ok(common::Code::Ok)
        }
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code as u8),
        Err(msg) => {
            eprintln!("agent-iam: {msg}");
            std::process::ExitCode::from(common::Code::Usage as u8)
        }
    }
}

/// The exit codes, as every `--help` shows them.
#[cfg(not(target_arch = "wasm32"))]
const EXIT_CODES: &str = "\
Exit codes:
  0  done (for `check`: every line was decided, allowed or denied)
  1  the check failed: an invalid configuration, a request line that is not a request,
     a failed policy test, a tampered audit trail
  2  usage error, or a file that cannot be read or written

FILE arguments that are read accept `-` for standard input (at most one per command).";

/// The identity layer for autonomous AI agents: the filter's decision core on the command
/// line (pure-Rust signatures, the inline agent registry).
#[cfg(not(target_arch = "wasm32"))]
#[derive(clap::Parser)]
#[command(name = "agent-iam", version, after_help = EXIT_CODES, disable_version_flag = false)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(clap::Subcommand)]
enum Command {
    Check(check::Args),
    Validate(validate::Args),
    Reasons(validate::ReasonsArgs),
    #[command(subcommand)]
    Generate(generate::Command),
    #[command(subcommand)]
    Policy(policy::Command),
    #[command(subcommand)]
    Dev(dev::Command),
    #[command(subcommand)]
    Audit(audit::Command),
    Playground(playground::Args),
    /// Print the version (as `--version`).
    #[command(after_help = EXIT_CODES)]
    Version,
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
