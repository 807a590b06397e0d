//! `agent-iam dev`: demo keys, a demo configuration and test tokens (never for production).

use std::io::Write;

use agent_iam::dev::{self, DevKeys, Recipe};

use crate::common::{self, Code, Outcome};

/// Demo keys, configuration and tokens, for demos and tests only.
#[derive(clap::Subcommand)]
pub enum Command {
    Keys(KeysArgs),
    Config(ConfigArgs),
    Mint(MintArgs),
    Jkt(JktArgs),
    Proof(ProofArgs),
}

const EXIT: &str =
    "Exit codes:\n  0  done\n  2  usage error, or a file that cannot be read or written";

/// New demo signing keys (ES256, RS256, EdDSA): the private keys to FILE, the public JWKS
/// on standard output.
#[derive(clap::Args)]
#[command(after_help = EXIT)]
pub struct KeysArgs {
    /// Where the private keys are written (JSON).
    #[arg(long, value_name = "FILE")]
    private: String,
}

/// A demo plugin configuration trusting those keys.
#[derive(clap::Args)]
#[command(after_help = EXIT)]
pub struct ConfigArgs {
    /// The private keys (`dev keys --private`; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    keys: String,
}

/// Sign one token per recipe: each line of RECIPES is a JSON recipe {"alg", "claims",
/// ...} (including hostile ones; see src/dev.rs), each output line a token.
#[derive(clap::Args)]
#[command(after_help = EXIT)]
pub struct MintArgs {
    /// The private keys (`dev keys --private`; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    keys: String,
    /// Issue time, UNIX seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// JSON lines, one recipe each (`-`: standard input).
    #[arg(value_name = "RECIPES", default_value = "-")]
    recipes: String,
}

/// The RFC 7638 thumbprint of one demo key, for a token's `cnf.jkt` (a recipe's
/// `{"claims": {"cnf": {"jkt": "…"}}}`).
#[derive(clap::Args)]
#[command(after_help = EXIT)]
pub struct JktArgs {
    /// The private keys (`dev keys --private`; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    keys: String,
    /// Which key: ES256, EdDSA (or Ed25519), RS256.
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    alg: String,
}

/// A DPoP proof (RFC 9449) for one request, signed with a demo key: the `DPoP` header's value.
#[derive(clap::Args)]
#[command(after_help = EXIT)]
pub struct ProofArgs {
    /// The private keys (`dev keys --private`; `-`: standard input).
    #[arg(long, value_name = "FILE")]
    keys: String,
    /// Which key signs: ES256, EdDSA, Ed25519, RS256.
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    alg: String,
    /// The request method (`htm`).
    #[arg(long, value_name = "METHOD", default_value = "GET")]
    method: String,
    /// The request URI (`htu`), e.g. https://api.example.com/tickets/1.
    #[arg(long, value_name = "URL")]
    url: String,
    /// The access token the proof goes with (`ath`).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Issue time, UNIX seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    now: Option<i64>,
    /// The proof's `jti` (default: random).
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
}

pub fn run(cmd: &Command) -> Outcome {
    match cmd {
        Command::Keys(a) => keys(a),
        Command::Config(a) => common::print_json(&dev::demo_plugin_config(&read_keys(&a.keys)?)),
        Command::Mint(a) => mint(a),
        Command::Jkt(a) => {
            let jkt = dev::dpop_jkt(&read_keys(&a.keys)?, &a.alg)?;
            println!("{jkt}");
            Ok(Code::Ok)
        }
        Command::Proof(a) => proof(a),
    }
}

fn proof(a: &ProofArgs) -> Outcome {
    let keys = read_keys(&a.keys)?;
    let jti = match &a.jti {
        Some(j) => j.clone(),
        None => {
            let mut bytes = [0u8; 16];
            getrandom::getrandom(&mut bytes).map_err(|e| e.to_string())?;
            hex::encode(bytes)
        }
    };
    let now = common::now_or_clock(a.now);
    let proof = dev::dpop_proof(
        &keys,
        &a.alg,
        &a.method,
        &a.url,
        a.token.as_deref(),
        now,
        &jti,
    )?;
    println!("{proof}");
    Ok(Code::Ok)
}

/// The demo keys in a private key file.
pub fn read_keys(path: &str) -> Result<DevKeys, String> {
    DevKeys::from_private_json(&common::read_json(path)?).map_err(|e| format!("{path}: {e}"))
}

fn keys(a: &KeysArgs) -> Outcome {
    let keys = DevKeys::generate()?;
    let text = serde_json::to_string_pretty(&keys.to_private_json()).map_err(|e| e.to_string())?;
    std::fs::write(&a.private, text + "\n").map_err(|e| format!("{}: {e}", a.private))?;
    common::print_json(&keys.public_jwks())
}

fn mint(a: &MintArgs) -> Outcome {
    common::one_stdin(&[&a.keys, &a.recipes])?;
    let keys = read_keys(&a.keys)?;
    let now = common::now_or_clock(a.now);
    let input = common::lines(&a.recipes)?;
    let mut out = std::io::stdout().lock();
    for (n, line) in std::io::BufRead::lines(input).enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", a.recipes))?;
        if line.trim().is_empty() {
            continue;
        }
        let recipe: Recipe =
            serde_json::from_str(&line).map_err(|e| format!("recipe line {}: {e}", n + 1))?;
        let token =
            dev::mint(&keys, &recipe, now).map_err(|e| format!("recipe line {}: {e}", n + 1))?;
        writeln!(out, "{token}").map_err(|e| e.to_string())?;
    }
    Ok(Code::Ok)
}
