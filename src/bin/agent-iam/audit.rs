//! `agent-iam audit verify`: check the hash chains of an audit trail.

use agent_iam::audit::{verify, VerifyOptions};
use serde_json::json;

use crate::common::{self, Code, Format, Outcome};

/// Work with audit trails.
#[derive(clap::Subcommand)]
pub enum Command {
    Verify(VerifyArgs),
}

/// Check the audit chains in FILE(s): log files (lines holding `agent-iam audit {...}`;
/// other lines are skipped), collector batches or access logs. Names the first removed,
/// reordered, edited or cut-off event of each stream.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  every stream is intact
  1  an event was removed, reordered, modified or the trail truncated
  2  usage error, or a file that cannot be read")]
pub struct VerifyArgs {
    /// Sort each stream by sequence number first (access logs write events when requests
    /// end); removal and edits are still detected, order is not.
    #[arg(long)]
    unordered: bool,
    /// The files continue streams begun elsewhere (rotated logs): a stream may begin after
    /// sequence 1.
    #[arg(long)]
    continued: bool,
    /// Reference time for truncation, UNIX seconds (default: the newest event's time).
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<f64>,
    /// `text`: `FAIL ...` lines and a summary; `json`: {"ok", "events", "decisions",
    /// "streams", "skipped", "problems"}.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The trail (`-`: standard input).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
}

pub fn run(cmd: &Command) -> Outcome {
    match cmd {
        Command::Verify(a) => verify_files(a),
    }
}

fn verify_files(a: &VerifyArgs) -> Outcome {
    let opts = VerifyOptions {
        unordered: a.unordered,
        continued: a.continued,
        now: a.now,
    };
    let mut inputs = Vec::new();
    for f in &a.files {
        let bytes = common::read_bytes(f)?;
        inputs.push((f.clone(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    let report = verify(&inputs, opts);
    // Written at once: a closed pipe (`| head`) is then an error, not a panic.
    let text = match a.format {
        Format::Text => {
            let mut text: String = report
                .problems
                .iter()
                .map(|p| format!("FAIL {p}\n"))
                .collect();
            text.push_str(&format!(
                "{}: {} event(s) ({} decision(s)) in {} stream(s); {} other line(s) skipped\n",
                if report.ok() { "ok" } else { "TAMPERED" },
                report.events,
                report.decisions,
                report.streams,
                report.skipped
            ));
            text
        }
        Format::Json => format!(
            "{}\n",
            json!({"ok": report.ok(), "events": report.events, "decisions": report.decisions,
                   "streams": report.streams, "skipped": report.skipped,
                   "problems": report.problems})
        ),
    };
    common::write_out(&text)?;
    Ok(Code::failed_if(!report.ok()))
}
