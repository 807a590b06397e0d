//! Generators for gateway teams: an Envoy bootstrap that loads the filter.

use serde_json::Value;

/// Options for [`envoy_bootstrap`].
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub wasm_path: String,
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
    /// Leave out the connection manager's request hygiene (path normalisation, escaped
    /// slashes, underscores in header names, the peer address as the client address): only
    /// for tests of the filter's own defences.
    pub raw_hcm: bool,
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
            listen_port: 10000,
            admin_port: 9901,
            upstream_port: 18080,
            direct_response: false,
            no_filter: false,
            control_plane_port: 18081,
            audit_access_log: None,
            failure_policy: FailurePolicy::Closed,
            header_guard: false,
            raw_hcm: false,
        }
    }
}

/// A complete static Envoy bootstrap (YAML) with agent-iam in front of one upstream.
pub fn envoy_bootstrap(plugin_config: &Value, o: &EnvoyOptions) -> String {
    let mut plugin_config = plugin_config.clone();
    if o.audit_access_log.is_some() {
        if let Some(obj) = plugin_config.as_object_mut() {
            let audit = obj
                .entry("audit")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = audit.as_object_mut() {
                a.insert("filter_state".into(), Value::Bool(true));
            }
        }
    }
    // The generated connection manager replaces every client's `x-request-id` (no address
    // counts as internal, `preserve_external_request_id` is off): the audit trail says so.
    if !o.raw_hcm {
        if let Some(obj) = plugin_config.as_object_mut() {
            let audit = obj
                .entry("audit")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = audit.as_object_mut() {
                a.entry("request_id_from")
                    .or_insert_with(|| Value::String("envoy".into()));
            }
        }
    }
    let plugin_config = &plugin_config;
    let pretty = serde_json::to_string_pretty(plugin_config).unwrap_or_default();
    let indent = " ".repeat(20);
    let config_block: String = pretty.lines().map(|l| format!("{indent}{l}\n")).collect();
    let route = if o.direct_response {
        "direct_response: {status: 200, body: {inline_string: \"ok\\n\"}}"
    } else {
        "route: {cluster: upstream}"
    };
    // Every feed (agent registry, revocation, remote JWKS) reaches the local control plane.
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
    let feed_cluster: String = names
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
"#,
                port = o.control_plane_port
            )
        })
        .collect();
    // Access logs run when the request ends, after the filter has set its filter state.
    let access_log = match &o.audit_access_log {
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
    };
    let guard = if o.header_guard {
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
    } else {
        String::new()
    };
    // The request the filter decides on is the one the upstream executes: Envoy normalises
    // the path before any filter (the filter canonicalises again and refuses what it would
    // have to change ambiguously), refuses escaped slashes and underscores in header names
    // (CGI/WSGI upstreams read `x_agent_id` as `x-agent-id`), and takes the client address
    // from the connection, never from a client's X-Forwarded-For (behind N trusted proxies,
    // set `xff_num_trusted_hops: N`). Envoy 1.40 counts no address as internal unless
    // `internal_address_config` names it, so it replaces every client's `x-request-id`.
    let hygiene = if o.raw_hcm {
        String::new()
    } else {
        r#"          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          use_remote_address: true
          xff_num_trusted_hops: 0
          preserve_external_request_id: false
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
"#
        .to_owned()
    };
    let text = format!(
        r#"# Generated by `agent-iam generate envoy`; edit the plugin JSON, then regenerate.
admin:
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
              routes:
              - match: {{prefix: "/"}}
                {route}
          http_filters:
{guard}          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: agent_iam
                root_id: agent_iam
                failure_policy: {failure_policy}
                vm_config:
                  vm_id: agent_iam
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
{config_block}          - name: envoy.filters.http.router
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
        wasm = o.wasm_path,
        route = route,
        config_block = config_block,
        access_log = access_log,
        failure_policy = o.failure_policy.as_envoy(),
        guard = guard,
        hygiene = hygiene,
    ) + &feed_cluster;
    if o.no_filter {
        strip_filter(&text)
    } else {
        text
    }
}

/// The same bootstrap without the Wasm filter (a control for benchmarks and tests).
fn strip_filter(text: &str) -> String {
    let start = text.find("          - name: envoy.filters.http.wasm");
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
