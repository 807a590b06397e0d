//! `agent-iam generate`: deployment files from the configuration types.

use agent_iam::generate::{
    ecds_resource, envoy_bootstrap, filter_snippet, EnvoyOptions, FailurePolicy, TlsListener,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::{self, Outcome};

/// Write a deployment file to standard output.
#[derive(clap::Subcommand)]
pub enum Command {
    /// JSON for Kong's agent_iam.meta.json (the configuration schema Kong validates with).
    #[command(
        name = "kong-meta",
        after_help = "Exit codes:\n  0  written\n  2  usage error"
    )]
    KongMeta,
    Envoy(Box<EnvoyArgs>),
    /// The filter's http_filters entry alone (YAML), for a connection manager of your own
    /// (the same options as `generate envoy`; the ports are not used).
    Filter(Box<EnvoyArgs>),
    /// The ECDS resource (a DiscoveryResponse, JSON) carrying the filter's configuration:
    /// move it over the file a bootstrap made with `generate envoy --ecds FILE` watches, or
    /// push it from an xDS control plane; Envoy applies it without draining a listener.
    Ecds(Box<EnvoyArgs>),
    #[command(name = "signing-key")]
    SigningKey(SigningKeyArgs),
}

/// A new signing key for `quarantine.report.signing_key`: the private JWK to FILE
/// (readable by its owner only), the public JWKS, for the transmitter, on standard output.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  written
  2  usage error, or a file that cannot be written (an existing one is never replaced)")]
pub struct SigningKeyArgs {
    /// The key's `kid` (the transmitter selects the public key by it).
    #[arg(long, value_name = "KID")]
    kid: String,
    /// ES256 (EC P-256) or EdDSA (Ed25519).
    #[arg(long, value_name = "ALG", default_value = "ES256")]
    alg: String,
    /// Where the private JWK is written; it must not exist yet.
    #[arg(long, value_name = "FILE")]
    private: String,
}

/// An Envoy bootstrap (YAML) with the filter in front of one upstream, with Envoy's own
/// path normalisation and header hygiene turned on.
#[derive(clap::Args)]
#[command(after_help = "\
Exit codes:
  0  written
  1  the configuration is invalid (its problems on standard error)
  2  usage error, or a file that cannot be read")]
pub struct EnvoyArgs {
    /// The plugin configuration (JSON; `-`: standard input).
    #[arg(long, value_name = "PLUGIN.json")]
    config: String,
    /// The filter module Envoy loads [default: target/wasm32-wasip1/release/agent_iam.wasm].
    #[arg(long, value_name = "PATH")]
    wasm: Option<String>,
    /// Load the dynamic module at PATH (`libagent_iam.so`, native code) instead of the Wasm
    /// filter: the same configuration, decisions, audit events and stats.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["wasm", "ecds"])]
    dynamic_module: Option<String>,
    /// Listener port [default: 10000].
    #[arg(long, value_name = "PORT")]
    listen: Option<u16>,
    /// Admin port [default: 9901].
    #[arg(long, value_name = "PORT")]
    admin: Option<u16>,
    /// Upstream port on 127.0.0.1 [default: 18080].
    #[arg(long, value_name = "PORT")]
    upstream: Option<u16>,
    /// Control plane (registry feed, JWKS, revocation, audit collector) port on 127.0.0.1
    /// [default: 18081].
    #[arg(long = "control-plane", value_name = "PORT")]
    control_plane: Option<u16>,
    /// Envoy answers 200 itself after the filter (benchmarks).
    #[arg(long = "direct-response")]
    direct_response: bool,
    /// Leave the filter out (a control configuration).
    #[arg(long = "no-filter")]
    no_filter: bool,
    /// An access log writing every audit event to FILE.
    #[arg(long = "audit-access-log", value_name = "FILE")]
    audit_access_log: Option<String>,
    /// Envoy's `failure_policy` when the module traps: `closed` (FAIL_CLOSED, the default)
    /// or `reload` (FAIL_RELOAD: denies too, then Envoy starts a fresh VM after a backoff).
    #[arg(long = "failure-policy", value_name = "POLICY", value_parser = ["closed", "reload"])]
    failure_policy: Option<String>,
    /// Envoy's global rate limiting (`envoy.filters.http.ratelimit`, after the filter) with
    /// descriptors from the identity headers the filter verified (agent, principal), against
    /// a rate-limit service (envoyproxy/ratelimit) speaking gRPC on 127.0.0.1:PORT.
    #[arg(long = "rate-limit-service", value_name = "PORT")]
    rate_limit_service: Option<u16>,
    /// Envoy's local rate limiting (`envoy.filters.http.local_ratelimit`, after the filter):
    /// N requests a minute per verified agent, on each Envoy.
    #[arg(long = "local-rate-limit-per-agent", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    local_rate_limit_per_agent: Option<u32>,
    /// Put Envoy's own header_mutation filter before ours, removing every identity header
    /// the client sent (a second line of defence).
    #[arg(long = "header-guard")]
    header_guard: bool,
    /// Leave out path normalisation and header hygiene (tests of the filter's own defences
    /// only).
    #[arg(long = "raw-hcm")]
    raw_hcm: bool,
    /// Add a listener on PORT that speaks TLS and requires client certificates (for
    /// certificate-bound tokens); needs --tls-cert, --tls-key and --client-ca.
    #[arg(long = "tls-listen", value_name = "PORT", requires_all = ["tls_cert", "tls_key", "client_ca"])]
    tls_listen: Option<u16>,
    /// The TLS listener's certificate chain (PEM).
    #[arg(long = "tls-cert", value_name = "PEM", requires = "tls_listen")]
    tls_cert: Option<String>,
    /// The TLS listener's private key (PEM).
    #[arg(long = "tls-key", value_name = "PEM", requires = "tls_listen")]
    tls_key: Option<String>,
    /// The CA certificate(s) client certificates must chain to (PEM).
    #[arg(long = "client-ca", value_name = "PEM", requires = "tls_listen")]
    client_ca: Option<String>,
    /// The module's SHA-256 (64 hex digits), passed to the VM as AGENT_IAM_MODULE_SHA256 for
    /// the filter's start-up log line [default: the SHA-256 of the --wasm file, when it
    /// exists here].
    #[arg(
        long = "module-sha256",
        value_name = "HEX",
        conflicts_with = "no_module_sha256"
    )]
    module_sha256: Option<String>,
    /// Leave AGENT_IAM_MODULE_SHA256 out (the filter then logs `unknown`): for a bootstrap
    /// that must not change whenever the module is rebuilt.
    #[arg(long = "no-module-sha256")]
    no_module_sha256: bool,
    /// The filter's configuration comes through ECDS from FILE, watched for changes (written
    /// with version 1 when absent; replace it with `agent-iam generate ecds`).
    #[arg(long = "ecds", value_name = "FILE")]
    ecds: Option<String>,
    /// The ECDS resource's version_info (what Envoy reports as the version in force)
    /// [default: 1].
    #[arg(long = "resource-version", value_name = "VERSION")]
    resource_version: Option<String>,
}

pub fn run(cmd: &Command) -> Outcome {
    match cmd {
        Command::KongMeta => common::print_json(&agent_iam::config::kong_meta()),
        Command::Envoy(a) => envoy(a, Output::Bootstrap),
        Command::Filter(a) => envoy(a, Output::Filter),
        Command::Ecds(a) => envoy(a, Output::Ecds),
        Command::SigningKey(a) => signing_key(a),
    }
}

fn signing_key(a: &SigningKeyArgs) -> Outcome {
    use std::io::Write;
    let jwk = agent_iam::quarantine::report::generate_key(&a.alg, &a.kid)?;
    let public = agent_iam::quarantine::report::public_jwks_of(&jwk)?;
    let text = serde_json::to_string_pretty(&jwk).map_err(|e| e.to_string())? + "\n";
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&a.private)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", a.private))?;
    common::print_json(&public)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Bootstrap,
    Filter,
    Ecds,
}

fn envoy(a: &EnvoyArgs, out: Output) -> Outcome {
    let (bytes, cfg) = common::load_config(&a.config)?;
    if let Err(code) = cfg {
        return Ok(code);
    }
    let plugin: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", a.config))?;
    let d = EnvoyOptions::default();
    let wasm_path = a.wasm.clone().unwrap_or(d.wasm_path);
    let module_sha256 = match (&a.module_sha256, a.no_module_sha256) {
        (_, true) => None,
        (Some(hex), false) => {
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("--module-sha256: `{hex}` is not 64 hex digits"));
            }
            Some(hex.to_ascii_lowercase())
        }
        (None, false) => match std::fs::read(&wasm_path) {
            Ok(bytes) => Some(hex::encode(Sha256::digest(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{wasm_path}: {e}")),
        },
    };
    let o = EnvoyOptions {
        module_sha256,
        wasm_path,
        dynamic_module: a.dynamic_module.clone(),
        listen_port: a.listen.unwrap_or(d.listen_port),
        admin_port: a.admin.unwrap_or(d.admin_port),
        upstream_port: a.upstream.unwrap_or(d.upstream_port),
        direct_response: a.direct_response,
        no_filter: a.no_filter,
        control_plane_port: a.control_plane.unwrap_or(d.control_plane_port),
        audit_access_log: a.audit_access_log.clone(),
        header_guard: a.header_guard,
        rate_limit_service: a.rate_limit_service,
        local_rate_limit_per_agent: a.local_rate_limit_per_agent,
        raw_hcm: a.raw_hcm,
        tls: match (a.tls_listen, &a.tls_cert, &a.tls_key, &a.client_ca) {
            (Some(port), Some(cert), Some(key), Some(ca)) => Some(TlsListener {
                port,
                cert_chain: cert.clone(),
                private_key: key.clone(),
                client_ca: ca.clone(),
            }),
            _ => None,
        },
        failure_policy: match a.failure_policy.as_deref() {
            None => FailurePolicy::Closed,
            Some(p) => FailurePolicy::parse(p)
                .ok_or_else(|| format!("--failure-policy: `{p}` is not `closed` or `reload`"))?,
        },
        ecds_file: a.ecds.clone(),
    };
    let version = a.resource_version.as_deref().unwrap_or("1");
    match out {
        Output::Filter => common::write_out(&filter_snippet(&plugin, &o)),
        Output::Ecds => common::write_out(&ecds_resource(&plugin, &o, version)),
        Output::Bootstrap => {
            if let Some(path) = &o.ecds_file {
                write_initial_resource(path, &ecds_resource(&plugin, &o, version))?;
            }
            common::write_out(&envoy_bootstrap(&plugin, &o))
        }
    }
}

/// Writes the ECDS file a new bootstrap watches, unless one is there (a live
/// configuration is replaced with `generate ecds`, never by regenerating the bootstrap).
fn write_initial_resource(path: &str, text: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if p.exists() {
        eprintln!(
            "agent-iam: {path} exists: left as it is (replace it with `agent-iam generate ecds`)"
        );
        return Ok(());
    }
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(p, text).map_err(|e| format!("{path}: {e}"))?;
    eprintln!("agent-iam: wrote {path} (the filter's configuration for ECDS)");
    Ok(())
}
