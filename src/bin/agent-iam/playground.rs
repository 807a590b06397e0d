//! `agent-iam playground`: serves the policy playground's page and its defaults.

use std::io::Write;

use serde_json::json;

use crate::common::{self, Code, Outcome};
use crate::server::{self, Site};

/// The playground's first request and token recipe (the demo's two-hop delegation).
const PLAYGROUND_REQUEST: &str =
    "{\"method\": \"GET\", \"path\": \"/tickets/42\", \"host\": \"api.agent-iam.test\"}";
const PLAYGROUND_RECIPE: &str = "{\"alg\": \"ES256\", \"claims\": {\"sub\": \"user:alice\", \"act\": {\"sub\": \"agent:tool-search\", \"act\": {\"sub\": \"agent:planner\"}}}}";

/// Serve the policy playground on 127.0.0.1 until interrupted: edit a token, a request,
/// the Rego and the registry, and see the decision the gateway would make.
///
/// The server answers only its own origin (a request needs exactly one Host header,
/// 127.0.0.1:PORT or localhost:PORT), GET and HEAD, and only the site's plain file names.
/// Build the page first: ./test-harness/playground.sh builds it and starts this command.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  stopped
  2  usage error, a file that cannot be read, the page not built, or the port taken")]
pub struct Args {
    /// The plugin configuration the page starts with (its `policy` comes from DIR;
    /// `-`: standard input). The default is the shipped one with an MCP server at /mcp.
    #[arg(
        long,
        value_name = "PLUGIN.json",
        default_value = "playground/plugin.json"
    )]
    config: String,
    /// The private keys the page mints demo tokens with (`-`: standard input).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "test-harness/keys/demo-private.json"
    )]
    keys: String,
    /// Port on 127.0.0.1 (0: any free port; the first output line names it).
    #[arg(long, value_name = "PORT", default_value_t = 8181)]
    listen: u16,
    /// The built page (index.html and the browser module).
    #[arg(long, value_name = "DIR", default_value = "target/playground/site")]
    site: String,
    /// The page's decision time, UNIX seconds (default: the browser's clock).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// The policy directory the page starts with (*.rego, data.json).
    #[arg(value_name = "DIR", default_value = "policies")]
    dir: String,
}

pub fn run(a: &Args) -> Outcome {
    common::one_stdin(&[&a.config, &a.keys])?;
    let config = common::read_text(&a.config)?;
    let keys = common::read_json(&a.keys)?;
    agent_iam::dev::DevKeys::from_private_json(&keys).map_err(|e| format!("{}: {e}", a.keys))?;
    let files = crate::policy::read_policy_dir(&a.dir)?;
    let site = std::path::PathBuf::from(&a.site);
    if !site.join("index.html").is_file() || !site.join("agent_iam_playground_bg.wasm").is_file() {
        return Err(format!(
            "{}: the page is not built; run ./test-harness/playground.sh (it builds and starts it)",
            site.display()
        ));
    }
    let mut defaults = json!({
        "config": config,
        "policy_files": files,
        "keys": keys,
        "recipe": PLAYGROUND_RECIPE,
        "request": PLAYGROUND_REQUEST,
    });
    if let (Some(now), Some(obj)) = (a.now, defaults.as_object_mut()) {
        obj.insert("now".into(), json!(now));
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", a.listen))
        .map_err(|e| format!("127.0.0.1:{}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "agent-iam playground: http://{addr}/  (policies from {}, config {}; Ctrl-C stops it)",
        a.dir, a.config
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    server::serve(
        listener,
        Site {
            dir: site,
            defaults: defaults.to_string(),
            port: addr.port(),
        },
    )?;
    Ok(Code::Ok)
}
