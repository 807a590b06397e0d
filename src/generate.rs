//! Generators for gateway teams: an Envoy bootstrap that loads the filter.

use serde_json::Value;

/// Options for [`envoy_bootstrap`].
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub wasm_path: String,
    /// The dynamic module (`libagent_iam.so`) Envoy loads instead of the Wasm filter: the
    /// same configuration, through `envoy.filters.http.dynamic_modules`.
    pub dynamic_module: Option<String>,
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream_port: u16,
    /// Answer 200 from Envoy itself instead of routing upstream (benchmarks).
    pub direct_response: bool,
    /// Leave the filter out: the control configuration for comparisons.
    pub no_filter: bool,
    /// Port of the local control plane serving `agents.feed` and `revocation.feed` (a cluster
    /// is added for each).
    pub control_plane_port: u16,
    /// Write each audit event to this file through Envoy's own access log
    /// (`%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%`); turns on `audit.filter_state`.
    pub audit_access_log: Option<String>,
    /// `FAIL_CLOSED` (default: a trapped VM denies every later request of its worker) or
    /// `FAIL_RELOAD` (denies too, then Envoy starts a fresh VM after a backoff).
    pub failure_policy: FailurePolicy,
    /// Put Envoy's own `header_mutation` filter before ours, removing every identity header
    /// the client sent: a second line of defence if the filter were ever misconfigured.
    pub header_guard: bool,
    /// Envoy's global rate limiting after the filter, its descriptors from the identity
    /// headers the filter verified, against a gRPC rate-limit service on 127.0.0.1:PORT.
    pub rate_limit_service: Option<u16>,
    /// Envoy's local rate limiting after the filter: this many requests a minute per
    /// verified agent, on each Envoy.
    pub local_rate_limit_per_agent: Option<u32>,
    /// Leave out the connection manager's request hygiene (path normalisation, escaped
    /// slashes, underscores in header names, the peer address as the client address): only
    /// for tests of the filter's own defences.
    pub raw_hcm: bool,
    /// A second listener for mutual TLS (certificate-bound tokens, RFC 8705).
    pub tls: Option<TlsListener>,
    /// The module's SHA-256 (hex), passed to the VM as `AGENT_IAM_MODULE_SHA256`: the
    /// filter names it in its start-up log line.
    pub module_sha256: Option<String>,
    /// Load the filter's configuration through ECDS from this file (a `DiscoveryResponse`
    /// as [`ecds_resource`] writes it), watched for changes: a new configuration applies
    /// without touching the listener.
    pub ecds_file: Option<String>,
}

/// A listener that requires client certificates, with the same filter and routes.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub port: u16,
    /// The server's certificate chain and private key (PEM files).
    pub cert_chain: String,
    pub private_key: String,
    /// The CA(s) that sign client certificates (PEM file).
    pub client_ca: String,
}

/// Envoy's `failure_policy` for the filter: both fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    #[default]
    Closed,
    Reload,
}

impl FailurePolicy {
    pub fn parse(s: &str) -> Option<FailurePolicy> {
        match s {
            "closed" => Some(FailurePolicy::Closed),
            "reload" => Some(FailurePolicy::Reload),
            _ => None,
        }
    }

    fn as_envoy(self) -> &'static str {
        match self {
            FailurePolicy::Closed => "FAIL_CLOSED",
            FailurePolicy::Reload => "FAIL_RELOAD",
        }
    }
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            wasm_path: "target/wasm32-wasip1/release/agent_iam.wasm".into(),
            dynamic_module: None,
            listen_port: 10000,
            admin_port: 9901,
            upstream_port: 18080,
            direct_response: false,
            no_filter: false,
            control_plane_port: 18081,
            audit_access_log: None,
            failure_policy: FailurePolicy::Closed,
            header_guard: false,
            rate_limit_service: None,
            local_rate_limit_per_agent: None,
            raw_hcm: false,
            tls: None,
            module_sha256: None,
            ecds_file: None,
        }
    }
}

/// A complete static Envoy bootstrap (YAML) with agent-iam in front of one upstream.
pub fn envoy_bootstrap(plugin_config: &Value, o: &EnvoyOptions) -> String {
    let plugin_config = &bootstrap_plugin(plugin_config, o);
    let pretty = serde_json::to_string_pretty(plugin_config).unwrap_or_default();
    let indent = " ".repeat(20);
    let config_block: String = pretty.lines().map(|l| format!("{indent}{l}\n")).collect();
    let route = if o.direct_response {
        "direct_response: {status: 200, body: {inline_string: \"ok\\n\"}}"
    } else {
        "route: {cluster: upstream}"
    };
    let feed_cluster = feed_clusters(plugin_config, o.control_plane_port);
    let access_log = access_log(o);
    let guard = if o.header_guard {
        header_guard(plugin_config)
    } else {
        String::new()
    };
    let hygiene = if o.raw_hcm { "" } else { HYGIENE };
    let (rate_limits, rate_limit_filter, rate_limit_cluster) = rate_limiting(
        plugin_config,
        o.rate_limit_service,
        o.local_rate_limit_per_agent,
    );
    let (node, filter) = match &o.ecds_file {
        // ECDS needs the node's identity; the resource is named after the filter.
        Some(path) => (
            "node: {id: agent-iam, cluster: agent-iam}\n".to_owned(),
            ecds_filter_block(path),
        ),
        None => (String::new(), static_filter_block(&config_block, o)),
    };
    let text = format!(
        r#"# Generated by `agent-iam generate envoy`; edit the plugin JSON, then regenerate.
{node}{stats}admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: agents
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: agents
{hygiene}{access_log}          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
{rate_limits}              routes:
              - match: {{prefix: "/"}}
                {route}
          http_filters:
{guard}{filter}{rate_limit_filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}
"#,
        admin = o.admin_port,
        listen = o.listen_port,
        upstream = o.upstream_port,
        route = route,
        access_log = access_log,
        guard = guard,
        stats = stats_config(),
        hygiene = hygiene,
    ) + &feed_cluster
        + &rate_limit_cluster;
    let text = match &o.tls {
        Some(tls) => with_tls_listener(&text, o.listen_port, tls),
        None => text,
    };
    if o.no_filter {
        strip_filter(&text)
    } else {
        text
    }
}

/// Envoy's rate limiting keyed on what the filter verified: the virtual host's `rate_limits`
/// (descriptors from the identity headers: the filter removes every client copy and sets
/// them only on an allowed request); with a service port, the `ratelimit` filter after ours
/// and its gRPC cluster on 127.0.0.1:`port`; with a per-agent rate, the `local_ratelimit`
/// filter, one bucket per agent (a descriptor entry without a value: one per value seen).
fn rate_limiting(
    plugin_config: &Value,
    service: Option<u16>,
    local_per_min: Option<u32>,
) -> (String, String, String) {
    if service.is_none() && local_per_min.is_none() {
        return (String::new(), String::new(), String::new());
    }
    let header = |name: &str, default: &str| {
        plugin_config
            .pointer(&format!("/upstream/headers/{name}"))
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let (agent, principal) = (
        header("agent", "x-agent-id"),
        header("principal", "x-agent-principal"),
    );
    let limits = format!(
        r#"              # Descriptors for Envoy's rate-limit service: the agent and the principal
              # the filter verified (it removes every client copy of these headers).
              rate_limits:
              - actions:
                - request_headers: {{header_name: {agent}, descriptor_key: agent}}
                - request_headers: {{header_name: {principal}, descriptor_key: principal}}
              - actions:
                - request_headers: {{header_name: {agent}, descriptor_key: agent}}
"#
    );
    let local = local_per_min.map(|n| format!(
        r#"          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: agent_iam_local
              # Requests without an agent descriptor (none reach here: the filter refused them).
              token_bucket: {{max_tokens: 4294967295, tokens_per_fill: 4294967295, fill_interval: 1s}}
              filter_enabled: {{runtime_key: agent_iam_local_enabled, default_value: {{numerator: 100, denominator: HUNDRED}}}}
              filter_enforced: {{runtime_key: agent_iam_local_enforced, default_value: {{numerator: 100, denominator: HUNDRED}}}}
              # One bucket per verified agent: {n} requests a minute.
              descriptors:
              - entries: [{{key: agent}}]
                token_bucket: {{max_tokens: {n}, tokens_per_fill: {n}, fill_interval: 60s}}
"#
    ));
    let Some(port) = service else {
        return (limits, local.unwrap_or_default(), String::new());
    };
    let filter = local.unwrap_or_default()
        + r#"          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: agent_iam
              # The service unreachable or failing: refuse (fail closed).
              failure_mode_deny: true
              timeout: 0.25s
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: agent_iam_ratelimit}}
"#;
    let cluster = format!(
        r#"  - name: agent_iam_ratelimit
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: agent_iam_ratelimit
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#
    );
    (limits, filter, cluster)
}

/// The filter's `http_filters` entry with its configuration inline (YAML, indented for a
/// connection manager's `http_filters`).
fn static_filter_block(config_block: &str, o: &EnvoyOptions) -> String {
    if let Some(path) = &o.dynamic_module {
        return dynamic_module_block(config_block, path);
    }
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: agent_iam
                root_id: agent_iam
                failure_policy: {failure_policy}
                # Hold the request headers while the filter reads an MCP POST's body (and a
                # list response's headers while it filters the list): Envoy 1.35+.
                allow_on_headers_stop_iteration: true
                vm_config:
                  vm_id: agent_iam
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
{environment}                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{config_block}"#,
        failure_policy = o.failure_policy.as_envoy(),
        wasm = o.wasm_path,
        environment = environment(o),
    )
}

/// The dynamic module's `http_filters` entry, its configuration inline. Its stats take the
/// Wasm filter's namespace (`wasmcustom.`), so one set of dashboards and `stats_tags`
/// reads both builds.
fn dynamic_module_block(config_block: &str, path: &str) -> String {
    format!(
        r#"          - name: {DYNAMIC_MODULE_FILTER}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                module: {{local: {{filename: {path}}}}}
                do_not_close: true
                metrics_namespace: wasmcustom
              filter_name: agent_iam
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: |
{config_block}"#
    )
}

/// The dynamic-module HTTP filter's name in `http_filters`.
pub const DYNAMIC_MODULE_FILTER: &str = "envoy.filters.http.dynamic_modules";

/// The filter's `http_filters` entry with its configuration from ECDS: the file `path`,
/// watched (Envoy reloads it when a new file is moved over it). Until a valid
/// configuration arrived, requests get 500 (Envoy's missing-configuration filter).
fn ecds_filter_block(path: &str) -> String {
    let dir = std::path::Path::new(path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_owned());
    format!(
        r#"          - name: {ECDS_NAME}
            config_discovery:
              config_source:
                path_config_source:
                  path: {path}
                  watched_directory: {{path: {dir}}}
              type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]
"#
    )
}

/// Envoy's tag extraction for the filter's stats: the decision, check, reason and route
/// (and the build's version and commit) become labels, so `/stats/prometheus` shows
/// `agent_iam_decisions_total{decision="deny",check="token",reason="token.missing",route="tickets-read"}`
/// (the regexes take the name with or without the `wasmcustom.` prefix Envoy gives Wasm stats).
/// Each regex's first group is cut from the name, its second is the label's value.
pub const STATS_TAGS: &[(&str, &str)] = &[
    (
        "decision",
        r"^(?:wasmcustom\.)?agent_iam\.decisions_total(\.decision\.([a-z_]+))\.",
    ),
    (
        "check",
        r"^(?:wasmcustom\.)?agent_iam\.(?:decisions_total\.decision\.[a-z_]+|shadow_denied_total)(\.check\.([a-z_]+))\.",
    ),
    (
        "reason",
        r"^(?:wasmcustom\.)?agent_iam\.(?:decisions_total\.decision\.[a-z_]+|shadow_denied_total)\.check\.[a-z_]+(\.reason\.(none|[a-z_]+\.[a-z0-9_-]+))\.route\.",
    ),
    (
        "route",
        r"^(?:wasmcustom\.)?agent_iam\.(?:decisions_total|shadow_denied_total)\..*(\.route\.([A-Za-z0-9_-]+))$",
    ),
    (
        "version",
        r"^(?:wasmcustom\.)?agent_iam\.build_info(\.version\.([0-9A-Za-z_-]+))\.commit\.",
    ),
    (
        "commit",
        r"^(?:wasmcustom\.)?agent_iam\.build_info\.version\.[0-9A-Za-z_-]+(\.commit\.([0-9A-Za-z_-]+))$",
    ),
];

/// [`STATS_TAGS`] as a bootstrap's `stats_config` (YAML).
fn stats_config() -> String {
    let mut out = String::from("stats_config:\n  stats_tags:\n");
    for (name, regex) in STATS_TAGS {
        out.push_str(&format!("  - tag_name: {name}\n    regex: '{regex}'\n"));
    }
    out
}

/// The ECDS resource's name (also the filter entry's name in `http_filters`).
pub const ECDS_NAME: &str = "agent_iam";

/// The filter's configuration as the `envoy.extensions.filters.http.wasm.v3.Wasm` message
/// (JSON): what the static bootstrap embeds and what ECDS delivers.
pub fn wasm_filter_config(plugin_config: &Value, o: &EnvoyOptions) -> Value {
    let plugin_config = bootstrap_plugin(plugin_config, o);
    let mut vm = serde_json::json!({
        "vm_id": "agent_iam",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": o.wasm_path}},
    });
    if let (Some(sha), Some(obj)) = (&o.module_sha256, vm.as_object_mut()) {
        obj.insert(
            "environment_variables".into(),
            serde_json::json!({"key_values": {crate::worker::MODULE_SHA256_ENV: sha}}),
        );
    }
    serde_json::json!({
        "name": "agent_iam",
        "root_id": "agent_iam",
        "failure_policy": o.failure_policy.as_envoy(),
        "allow_on_headers_stop_iteration": true,
        "vm_config": vm,
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": serde_json::to_string(&plugin_config).unwrap_or_default(),
        },
    })
}

/// An ECDS `DiscoveryResponse` (JSON) carrying the filter's configuration as one
/// `TypedExtensionConfig` named [`ECDS_NAME`], at `version`: the file a file-watched ECDS
/// source reads, and the resource an xDS control plane pushes.
pub fn ecds_resource(plugin_config: &Value, o: &EnvoyOptions, version: &str) -> String {
    let v = serde_json::json!({
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": ECDS_NAME,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": wasm_filter_config(plugin_config, o),
            },
        }],
    });
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// The filter's `http_filters` entry alone (YAML), for a connection manager of one's own:
/// put it before `envoy.filters.http.router`.
pub fn filter_snippet(plugin_config: &Value, o: &EnvoyOptions) -> String {
    let pretty =
        serde_json::to_string_pretty(&bootstrap_plugin(plugin_config, o)).unwrap_or_default();
    let indent = " ".repeat(20);
    let config_block: String = pretty.lines().map(|l| format!("{indent}{l}\n")).collect();
    let block = static_filter_block(&config_block, o);
    // The block is indented for the generated bootstrap; a snippet starts at column 0.
    let body: String = block
        .lines()
        .map(|l| l.get(10..).unwrap_or(l.trim_start()))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("# Generated by `agent-iam generate filter`: one entry of an HttpConnectionManager's\n# http_filters, before envoy.filters.http.router.\n{body}")
}

/// The plugin configuration as the bootstrap embeds it: the filter state on when the
/// access log writes the audit events, and `audit.request_id_from: "envoy"` when the
/// generated connection manager replaces every client's `x-request-id` (no address counts
/// as internal, `preserve_external_request_id` is off): the audit trail says so.
fn bootstrap_plugin(plugin_config: &Value, o: &EnvoyOptions) -> Value {
    let mut plugin_config = plugin_config.clone();
    let filter_state = o.audit_access_log.is_some();
    let request_id = !o.raw_hcm;
    if !filter_state && !request_id {
        return plugin_config;
    }
    if let Some(obj) = plugin_config.as_object_mut() {
        let audit = obj
            .entry("audit")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = audit.as_object_mut() {
            if filter_state {
                a.insert("filter_state".into(), Value::Bool(true));
            }
            if request_id {
                a.entry("request_id_from")
                    .or_insert_with(|| Value::String("envoy".into()));
            }
        }
    }
    plugin_config
}

/// One static cluster per feed (agent registry, revocation, audit collector, remote
/// JWKS), each reaching the local control plane.
fn feed_clusters(plugin_config: &Value, port: u16) -> String {
    let mut names: Vec<&str> = [
        "/agents/feed/cluster",
        "/revocation/feed/cluster",
        "/audit/collector/cluster",
    ]
    .iter()
    .filter_map(|p| plugin_config.pointer(p).and_then(Value::as_str))
    .collect();
    if let Some(issuers) = plugin_config.get("issuers").and_then(Value::as_array) {
        names.extend(
            issuers
                .iter()
                .filter_map(|i| i.pointer("/jwks_uri/cluster").and_then(Value::as_str)),
        );
    }
    names.sort_unstable();
    names.dedup();
    names
        .iter()
        .map(|name| {
            format!(
                r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#
            )
        })
        .collect()
}

/// The VM's environment: the module's SHA-256, when known.
fn environment(o: &EnvoyOptions) -> String {
    match &o.module_sha256 {
        Some(sha) => format!(
            "                  environment_variables:\n                    key_values: {{{}: \"{sha}\"}}\n",
            crate::worker::MODULE_SHA256_ENV
        ),
        None => String::new(),
    }
}

/// The audit access log: access logs run when the request ends, after the filter has set
/// its filter state.
fn access_log(o: &EnvoyOptions) -> String {
    match &o.audit_access_log {
        Some(path) => format!(
            r#"          access_log:
          - name: agent_iam_audit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {path}
              log_format:
                text_format_source: {{inline_string: "%FILTER_STATE(wasm.agent_iam.audit:PLAIN)%\n"}}
"#
        ),
        None => String::new(),
    }
}

/// A header-mutation filter before the Wasm filter removing every header the filter owns
/// (a second line of defence if the Wasm filter is ever left out).
fn header_guard(plugin_config: &Value) -> String {
    let names = ["agent", "principal", "chain", "scopes", "decision_id"];
    let defaults = [
        "x-agent-id",
        "x-agent-principal",
        "x-agent-chain",
        "x-agent-scopes",
        "x-agent-decision-id",
    ];
    let declared = plugin_config
        .pointer("/policy/headers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    let removes: String = names
        .iter()
        .zip(defaults)
        .map(|(n, d)| {
            plugin_config
                .pointer(&format!("/upstream/headers/{n}"))
                .and_then(Value::as_str)
                .unwrap_or(d)
        })
        .chain(declared)
        .map(|name| format!("                - remove: {name}\n"))
        .collect();
    format!(
        r#"          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
{removes}"#
    )
}

/// The request the filter decides on is the one the upstream executes: Envoy normalises
/// the path before any filter (the filter canonicalises again and refuses what it would
/// have to change ambiguously), refuses escaped slashes and underscores in header names
/// (CGI/WSGI upstreams read `x_agent_id` as `x-agent-id`), and takes the client address
/// from the connection, never from a client's X-Forwarded-For (behind N trusted proxies,
/// set `xff_num_trusted_hops: N`). Envoy 1.40 counts no address as internal unless
/// `internal_address_config` names it, so it replaces every client's `x-request-id`.
const HYGIENE: &str = r#"          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          use_remote_address: true
          xff_num_trusted_hops: 0
          preserve_external_request_id: false
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
"#;

/// `text` with a copy of its `agents` listener that speaks TLS and requires a client
/// certificate signed by `tls.client_ca`. Envoy then reports the certificate's SHA-256 to
/// the filter (`connection.sha256_peer_certificate_digest`), sets `x-forwarded-proto:
/// https` (no trusted hops) and removes any client `x-forwarded-client-cert`.
fn with_tls_listener(text: &str, listen: u16, tls: &TlsListener) -> String {
    let (Some(start), Some(end)) = (text.find("  - name: agents\n"), text.find("  clusters:\n"))
    else {
        return text.to_owned();
    };
    let plain = text.get(start..end).unwrap_or_default();
    let socket = format!(
        r#"    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {{tls_minimum_protocol_version: TLSv1_2}}
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: {{filename: {cert}}}
              private_key: {{filename: {key}}}
            validation_context:
              trusted_ca: {{filename: {ca}}}
      filters:
"#,
        cert = tls.cert_chain,
        key = tls.private_key,
        ca = tls.client_ca,
    );
    let secure = plain
        .replacen("  - name: agents\n", "  - name: agents_mtls\n", 1)
        .replacen(
            &format!("port_value: {listen}}}"),
            &format!("port_value: {}}}", tls.port),
            1,
        )
        .replacen("    - filters:\n", &socket, 1)
        .replacen(
            "stat_prefix: agents\n",
            "stat_prefix: agents_mtls\n          forward_client_cert_details: SANITIZE\n",
            1,
        );
    format!(
        "{}{plain}{secure}{}",
        text.get(..start).unwrap_or_default(),
        text.get(end..).unwrap_or_default()
    )
}

/// The same bootstrap without the Wasm filter (a control for benchmarks and tests).
fn strip_filter(text: &str) -> String {
    let start = text
        .find("          - name: envoy.filters.http.wasm")
        .or_else(|| text.find(&format!("          - name: {DYNAMIC_MODULE_FILTER}")));
    let end = text.find("          - name: envoy.filters.http.router");
    match (start, end) {
        (Some(a), Some(b)) if a < b => {
            format!(
                "{}{}",
                text.get(..a).unwrap_or_default(),
                text.get(b..).unwrap_or_default()
            )
        }
        _ => text.to_owned(),
    }
}
