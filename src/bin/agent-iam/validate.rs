//! `agent-iam validate` (a plugin configuration) and `agent-iam reasons` (the reason codes).

use agent_iam::config::Config;
use agent_iam::reason::Reason;
use serde_json::json;

use crate::common::{self, Code, Format, Outcome};

/// Check a plugin configuration as the filter does at load time: every problem, each with
/// its JSON path.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  the configuration is valid
  1  it is not (every problem on standard error, or in the JSON with --format json)
  2  usage error, or a file that cannot be read")]
pub struct Args {
    /// The plugin configuration (JSON; `-`: standard input).
    #[arg(long, value_name = "PLUGIN.json")]
    config: String,
    /// `text`: `PATH: ok (...)` or the problems on standard error; `json`: one document
    /// {"config", "ok", "issuers", "keys"} or {"config", "ok": false, "problems": [{"path",
    /// "message"}]} on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: &Args) -> Outcome {
    let path = &args.config;
    let bytes = common::read_bytes(path)?;
    let result = Config::from_json(&bytes);
    match (args.format, result) {
        (Format::Text, Ok(cfg)) => {
            let (issuers, keys) = counts(&cfg);
            println!("{path}: ok ({issuers} issuer(s), {keys} key(s))");
            Ok(Code::Ok)
        }
        (Format::Text, Err(e)) => {
            eprintln!("{e}");
            Ok(Code::Failed)
        }
        (Format::Json, Ok(cfg)) => {
            let (issuers, keys) = counts(&cfg);
            println!(
                "{}",
                json!({"config": path, "ok": true, "issuers": issuers, "keys": keys})
            );
            Ok(Code::Ok)
        }
        (Format::Json, Err(e)) => {
            let problems: Vec<_> =
                e.0.iter()
                    .map(|p| json!({"path": p.path, "message": p.message}))
                    .collect();
            println!(
                "{}",
                json!({"config": path, "ok": false, "problems": problems})
            );
            Ok(Code::Failed)
        }
    }
}

fn counts(cfg: &Config) -> (usize, usize) {
    (
        cfg.issuers.len(),
        cfg.issuers.iter().map(|i| i.keys.len()).sum(),
    )
}

/// Print the stable reason codes a decision can carry, with HTTP status, OAuth `error` and
/// meaning.
#[derive(clap::Args)]
#[command(after_help = "Exit codes:\n  0  printed\n  2  usage error")]
pub struct ReasonsArgs {
    /// `text`: the Markdown table the README shows; `json`: [{"reason", "status", "error",
    /// "meaning"}].
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn reasons(args: &ReasonsArgs) -> Outcome {
    match args.format {
        Format::Text => common::write_out(&agent_iam::reason::markdown_table()),
        Format::Json => {
            let all: Vec<_> = Reason::ALL
                .iter()
                .map(|r| {
                    json!({"reason": r.as_str(), "status": r.status(),
                           "error": r.error_code(), "meaning": r.describe()})
                })
                .collect();
            common::print_json(&json!(all))
        }
    }
}
