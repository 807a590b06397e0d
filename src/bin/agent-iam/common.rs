//! What the subcommands share: exit codes, `--format`, reading FILE arguments (`-` is
//! standard input), the clock and the plugin configuration.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use agent_iam::config::Config;
use serde_json::Value;

/// A subcommand's outcome (an error message instead is exit code 2, [`Code::Usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Done.
    Ok = 0,
    /// The check failed (invalid configuration, failed test, tampered trail, ...).
    Failed = 1,
    /// Usage error or unreadable file.
    Usage = 2,
}

impl Code {
    /// `policy test`'s status when a test fails, as `opa test`'s: 2.
    pub const TESTS_FAILED: Code = Code::Usage;

    pub fn failed_if(failed: bool) -> Code {
        if failed {
            Code::Failed
        } else {
            Code::Ok
        }
    }
}

/// What a subcommand returns: its code, or a message for standard error (exit code 2).
pub type Outcome = Result<Code, String>;

/// How a command whose output is data writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON (one document, or one per line for streams).
    Json,
    /// Lines for people.
    Text,
}

/// Set once standard input has been claimed by a FILE argument.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// Claims standard input for `what`; a second claim is a usage error.
pub fn take_stdin(what: &str) -> Result<std::io::Stdin, String> {
    if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(format!(
            "{what}: standard input (`-`) is already read by another argument"
        ));
    }
    Ok(std::io::stdin())
}

/// A usage error when more than one of a command's FILE arguments is `-`.
pub fn one_stdin(files: &[&str]) -> Result<(), String> {
    if files.iter().filter(|f| **f == "-").count() > 1 {
        return Err("only one FILE argument can be `-` (standard input)".into());
    }
    Ok(())
}

/// The bytes of a FILE argument (`-`: standard input).
pub fn read_bytes(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        take_stdin(path)?
            .lock()
            .read_to_end(&mut buf)
            .map_err(|e| format!("standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    }
}

/// The text of a FILE argument (`-`: standard input).
pub fn read_text(path: &str) -> Result<String, String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| format!("{path}: {e}"))
}

/// A FILE argument holding one JSON document.
pub fn read_json(path: &str) -> Result<Value, String> {
    serde_json::from_slice(&read_bytes(path)?).map_err(|e| format!("{path}: {e}"))
}

/// A FILE argument read line by line (`-`: standard input).
pub fn lines(path: &str) -> Result<Box<dyn std::io::BufRead>, String> {
    if path == "-" {
        Ok(Box::new(take_stdin(path)?.lock()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Box::new(std::io::BufReader::new(f)))
    }
}

/// `--now` or the current time, UNIX seconds.
pub fn now_or_clock(now: Option<i64>) -> i64 {
    now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })
}

/// The plugin configuration's bytes and the validated configuration; an invalid one has
/// its problems written to standard error and is [`Code::Failed`].
pub fn load_config(path: &str) -> Result<(Vec<u8>, Result<Config, Code>), String> {
    let bytes = read_bytes(path)?;
    let cfg = Config::from_json(&bytes).map_err(|e| {
        eprintln!("{e}");
        Code::Failed
    });
    Ok((bytes, cfg))
}

/// `text` on standard output (a closed pipe is an error, not a panic as with `print!`).
pub fn write_out(text: &str) -> Outcome {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("standard output: {e}"))?;
    Ok(Code::Ok)
}

/// Pretty JSON on standard output.
pub fn print_json(v: &Value) -> Outcome {
    write_out(&(serde_json::to_string_pretty(v).map_err(|e| e.to_string())? + "\n"))
}
