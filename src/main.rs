//! `agent-iam`: the native command line around the same decision core the filter runs.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    std::process::exit(cli::run(std::env::args().skip(1).collect()));
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::io::{BufRead, Write};

    use agent_iam::audit::EventContext;
    use agent_iam::config::{BackendChoice, Config};
    use agent_iam::crypto::PureRust;
    use agent_iam::dev::{self, DevKeys, Recipe};
    use agent_iam::pipeline::{DecisionIds, Engine, Request};
    use agent_iam::policy::PolicyFiles;
    use serde_json::{json, Value};

    const USAGE: &str = "\
usage:
  agent-iam check --config PLUGIN.json [--now UNIX_SECONDS] [--audit FILE]
      JSON lines {\"method\",\"path\",\"host\",\"headers\"} on stdin -> one decision per line
      (--audit: FILE gets the audit events exactly as the filter writes them, one stream
      from its start to its final checkpoint, for `agent-iam audit verify`)
  agent-iam validate --config PLUGIN.json
  agent-iam policy test [DIR]              run every test_* rule in DIR/**/*_test.rego (default: policies)
  agent-iam policy eval --input FILE [--data FILE] [--entrypoint RULE] [DIR]
                                          evaluate the decision for one input document
  agent-iam policy render --config PLUGIN.json [DIR]
                                          PLUGIN.json with DIR's Rego and data.json as its `policy`
  agent-iam generate kong-meta            JSON for agent_iam.meta.json (Kong)
  agent-iam generate envoy --config PLUGIN.json [--wasm PATH] [--listen PORT]
      [--admin PORT] [--upstream PORT] [--control-plane PORT] [--direct-response]
      [--no-filter] [--audit-access-log FILE] [--failure-policy closed|reload]
      [--header-guard] [--raw-hcm]
                                          Envoy bootstrap YAML (the access log writes
                                          every audit event to FILE; --raw-hcm leaves out
                                          path normalisation and header hygiene: tests only)
  agent-iam dev keys --private FILE       new demo keys (test only); public JWKS on stdout
  agent-iam dev config --keys FILE        demo plugin configuration for those keys
  agent-iam dev mint --keys FILE [--now UNIX_SECONDS]
      token recipes (JSON lines) on stdin -> one token per line
  agent-iam audit verify [--unordered] [--continued] [--now UNIX_SECONDS] FILE...
                                          check the audit chains in FILE(s) (log files,
                                          collector batches or access logs); exit 1 on
                                          a removed, reordered, modified or truncated event
  agent-iam playground [--config PLUGIN.json] [--keys FILE] [--listen PORT]
      [--site DIR] [--now UNIX_SECONDS] [DIR]
                                          serve the policy playground on 127.0.0.1
                                          (defaults: envoy/plugin.base.json, the demo
                                          keys, port 8181, target/playground/site,
                                          policies)
  agent-iam reasons                       the stable reason codes (Markdown table)
  agent-iam version";

    pub fn run(args: Vec<String>) -> i32 {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = match words.as_slice() {
            ["check", rest @ ..] => check(rest),
            ["validate", rest @ ..] => validate(rest),
            ["generate", "kong-meta"] => print_json(&agent_iam::config::kong_meta()),
            ["generate", "envoy", rest @ ..] => generate_envoy(rest),
            ["policy", "test", rest @ ..] => policy_test(rest),
            ["policy", "eval", rest @ ..] => policy_eval(rest),
            ["policy", "render", rest @ ..] => policy_render(rest),
            ["dev", "keys", rest @ ..] => dev_keys(rest),
            ["dev", "config", rest @ ..] => dev_config(rest),
            ["dev", "mint", rest @ ..] => dev_mint(rest),
            ["audit", "verify", rest @ ..] => audit_verify(rest),
            ["playground", rest @ ..] => playground(rest),
            ["reasons"] => {
                print!("{}", agent_iam::reason::markdown_table());
                Ok(0)
            }
            ["version"] | ["--version"] => {
                println!("agent-iam {}", agent_iam::VERSION);
                Ok(0)
            }
            ["help"] | ["--help"] | ["-h"] => {
                println!("{USAGE}");
                Ok(0)
            }
            _ => Err(format!("unknown command\n{USAGE}")),
        };
        match result {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("agent-iam: {msg}");
                2
            }
        }
    }

    fn flag<'a>(args: &[&'a str], name: &str) -> Result<Option<&'a str>, String> {
        let mut it = args.iter();
        let mut found = None;
        while let Some(a) = it.next() {
            if *a == "--direct-response"
                || *a == "--no-filter"
                || *a == "--header-guard"
                || *a == "--raw-hcm"
            {
                continue;
            }
            if *a == name {
                found = Some(*it.next().ok_or_else(|| format!("{name} needs a value"))?);
            } else if !a.starts_with("--")
                || ![
                    "--config",
                    "--now",
                    "--keys",
                    "--private",
                    "--wasm",
                    "--listen",
                    "--admin",
                    "--upstream",
                    "--control-plane",
                    "--audit-access-log",
                    "--failure-policy",
                    "--input",
                    "--data",
                    "--entrypoint",
                    "--site",
                    "--audit",
                ]
                .contains(a)
            {
                return Err(format!("unexpected argument `{a}`\n{USAGE}"));
            } else {
                it.next();
            }
        }
        Ok(found)
    }

    fn required<'a>(args: &[&'a str], name: &str) -> Result<&'a str, String> {
        flag(args, name)?.ok_or_else(|| format!("{name} is required\n{USAGE}"))
    }

    fn now_flag(args: &[&str]) -> Result<i64, String> {
        match flag(args, "--now")? {
            Some(n) => n
                .parse()
                .map_err(|_| format!("--now: `{n}` is not UNIX seconds")),
            None => Ok(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)),
        }
    }

    fn load_config(path: &str) -> Result<Result<Config, i32>, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Config::from_json(&bytes).map_err(|e| {
            eprintln!("{e}");
            1
        }))
    }

    fn validate(args: &[&str]) -> Result<i32, String> {
        let path = required(args, "--config")?;
        match load_config(path)? {
            Ok(cfg) => {
                let keys: usize = cfg.issuers.iter().map(|i| i.keys.len()).sum();
                println!(
                    "{path}: ok ({} issuer(s), {keys} key(s))",
                    cfg.issuers.len()
                );
                Ok(0)
            }
            Err(code) => Ok(code),
        }
    }

    fn check(args: &[&str]) -> Result<i32, String> {
        let path = required(args, "--config")?;
        let now = now_flag(args)?;
        let cfg = match load_config(path)? {
            Ok(c) => c,
            Err(code) => return Ok(code),
        };
        if cfg.signature_backend == BackendChoice::Host {
            eprintln!("agent-iam: signature_backend \"host\" exists only inside Envoy; the CLI verifies with pure Rust (same verdicts on every Wycheproof vector)");
        }
        if cfg.feed.is_some() {
            eprintln!("agent-iam: agents.feed is polled inside Envoy only; the CLI decides with the inline agents.registry");
        }
        let mut engine = Engine::new(cfg, Box::new(PureRust), DecisionIds::from_entropy());
        engine.start_feed_clock(now as f64);
        let mut audit_file = match flag(args, "--audit")? {
            Some(p) => Some((
                p,
                std::io::BufWriter::new(
                    std::fs::File::create(p).map_err(|e| format!("--audit {p}: {e}"))?,
                ),
            )),
            None => None,
        };
        let stdin = std::io::stdin();
        let mut out = std::io::stdout().lock();
        let mut failed = false;
        for (n, line) in stdin.lock().lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            let text = match request_from_line(&line) {
                Ok(req) => {
                    let started = std::time::Instant::now();
                    let d = engine.evaluate(&req, now as f64);
                    let ctx = EventContext {
                        now: now as f64,
                        latency_us: started.elapsed().as_micros() as u64,
                        request_id: req.request_id(),
                    };
                    // The stream's `start` event comes before the first decision's event.
                    let events = engine.audit(&d, &ctx);
                    if let Some((p, f)) = audit_file.as_mut() {
                        for e in &events {
                            writeln!(f, "{}", e.json()).map_err(|e| format!("--audit {p}: {e}"))?;
                        }
                    }
                    with_audit(d.to_json().to_string(), events.last().map(|e| e.json()))
                }
                Err(e) => {
                    failed = true;
                    json!({"error": format!("line {}: {e}", n + 1)}).to_string()
                }
            };
            writeln!(out, "{text}").map_err(|e| e.to_string())?;
        }
        if let Some((p, mut f)) = audit_file {
            // The filter ends a worker's stream with a final checkpoint.
            if let Some(last) = engine.audit_stream().finish(now as f64, 0) {
                writeln!(f, "{}", last.json()).map_err(|e| format!("--audit {p}: {e}"))?;
            }
            f.flush().map_err(|e| format!("--audit {p}: {e}"))?;
        }
        Ok(i32::from(failed))
    }

    /// A decision's JSON text with its audit event as the member `audit`, byte for byte
    /// as the filter writes it (re-serialising it would reorder its members, and the
    /// audit chain hashes the exact text).
    fn with_audit(mut decision: String, event: Option<&str>) -> String {
        if let (Some(event), true) = (event, decision.ends_with('}') && decision.len() > 2) {
            decision.pop();
            decision.push_str(",\"audit\":");
            decision.push_str(event);
            decision.push('}');
        }
        decision
    }

    fn audit_verify(args: &[&str]) -> Result<i32, String> {
        use agent_iam::audit::{verify, VerifyOptions};
        let mut opts = VerifyOptions::default();
        let mut files = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "--unordered" => opts.unordered = true,
                "--continued" => opts.continued = true,
                "--now" => {
                    let n = it.next().ok_or("--now needs a value")?;
                    opts.now = Some(
                        n.parse()
                            .map_err(|_| format!("--now: `{n}` is not UNIX seconds"))?,
                    );
                }
                f if f.starts_with("--") => {
                    return Err(format!("unexpected argument `{f}`\n{USAGE}"))
                }
                f => files.push(f),
            }
        }
        if files.is_empty() {
            return Err(format!("audit verify needs at least one FILE\n{USAGE}"));
        }
        let mut inputs = Vec::new();
        for f in files {
            let bytes = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
            inputs.push((f.to_owned(), String::from_utf8_lossy(&bytes).into_owned()));
        }
        let report = verify(&inputs, opts);
        for p in &report.problems {
            println!("FAIL {p}");
        }
        println!(
            "{}: {} event(s) ({} decision(s)) in {} stream(s); {} other line(s) skipped",
            if report.ok() { "ok" } else { "TAMPERED" },
            report.events,
            report.decisions,
            report.streams,
            report.skipped
        );
        Ok(i32::from(!report.ok()))
    }

    fn request_from_line(line: &str) -> Result<Request, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Request::from_json(&v)
    }

    fn port(args: &[&str], name: &str, default: u16) -> Result<u16, String> {
        match flag(args, name)? {
            Some(p) => p
                .parse()
                .map_err(|_| format!("{name}: `{p}` is not a port")),
            None => Ok(default),
        }
    }

    fn generate_envoy(args: &[&str]) -> Result<i32, String> {
        use agent_iam::generate::{envoy_bootstrap, EnvoyOptions, FailurePolicy};
        let path = required(args, "--config")?;
        if let Err(code) = load_config(path)? {
            return Ok(code);
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let plugin: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let d = EnvoyOptions::default();
        let o = EnvoyOptions {
            wasm_path: flag(args, "--wasm")?.map_or(d.wasm_path.clone(), str::to_owned),
            listen_port: port(args, "--listen", d.listen_port)?,
            admin_port: port(args, "--admin", d.admin_port)?,
            upstream_port: port(args, "--upstream", d.upstream_port)?,
            direct_response: args.contains(&"--direct-response"),
            no_filter: args.contains(&"--no-filter"),
            control_plane_port: port(args, "--control-plane", d.control_plane_port)?,
            audit_access_log: flag(args, "--audit-access-log")?.map(str::to_owned),
            header_guard: args.contains(&"--header-guard"),
            raw_hcm: args.contains(&"--raw-hcm"),
            failure_policy: match flag(args, "--failure-policy")? {
                None => FailurePolicy::Closed,
                Some(p) => FailurePolicy::parse(p).ok_or_else(|| {
                    format!("--failure-policy: `{p}` is not `closed` or `reload`")
                })?,
            },
        };
        print!("{}", envoy_bootstrap(&plugin, &o));
        Ok(0)
    }

    /// Splits the positional DIR argument (default `policies`) from the flags.
    fn positional_dir<'a>(args: &[&'a str]) -> Result<(&'a str, Vec<&'a str>), String> {
        let mut flags = Vec::new();
        let mut dir = None;
        let mut i = 0;
        while let Some(a) = args.get(i) {
            if a.starts_with("--") {
                flags.push(*a);
                if let Some(v) = args.get(i + 1) {
                    flags.push(*v);
                }
                i += 2;
            } else {
                if dir.replace(*a).is_some() {
                    return Err(format!("unexpected argument `{a}`\n{USAGE}"));
                }
                i += 1;
            }
        }
        Ok((dir.unwrap_or("policies"), flags))
    }

    /// A policy directory's files (path relative to `dir`, `/`-separated → text).
    fn read_policy_dir(dir: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
        let root = std::path::Path::new(dir);
        let mut paths = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
                let path = entry.map_err(|e| e.to_string())?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    paths.push(path);
                }
            }
        }
        let mut files = std::collections::BTreeMap::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(name.ends_with(".rego") || name == "data.json") {
                continue;
            }
            let rel: Vec<String> = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.insert(rel.join("/"), text);
        }
        Ok(files)
    }

    fn load_policy_dir(dir: &str, with_tests: bool) -> Result<PolicyFiles, String> {
        let files = read_policy_dir(dir)?;
        let pd = PolicyFiles::from_files(&files, with_tests).map_err(|e| format!("{dir}/{e}"))?;
        if pd.modules.is_empty() {
            return Err(format!("{dir}: no .rego files"));
        }
        Ok(pd)
    }

    fn report(problems: &[agent_iam::config::Problem]) -> i32 {
        for p in problems {
            eprintln!("{p}");
        }
        1
    }

    fn policy_test(args: &[&str]) -> Result<i32, String> {
        let (dir, flags) = positional_dir(args)?;
        if let Some(f) = flags.first() {
            return Err(format!("unexpected argument `{f}`\n{USAGE}"));
        }
        let pd = load_policy_dir(dir, true)?;
        let results = match agent_iam::policy::run_tests(&pd.modules, pd.data.as_ref()) {
            Ok(r) => r,
            Err(problems) => return Ok(report(&problems)),
        };
        let (mut pass, mut fail) = (0, 0);
        for (rule, outcome) in &results {
            match outcome {
                Ok(true) => {
                    pass += 1;
                    println!("PASS {rule}");
                }
                Ok(false) => {
                    fail += 1;
                    println!("FAIL {rule}");
                }
                Err(e) => {
                    fail += 1;
                    println!("ERROR {rule}: {e}");
                }
            }
        }
        println!(
            "{pass} passed, {fail} failed ({} test(s) in {dir})",
            results.len()
        );
        Ok(if fail > 0 || results.is_empty() { 1 } else { 0 })
    }

    fn policy_eval(args: &[&str]) -> Result<i32, String> {
        let (dir, flags) = positional_dir(args)?;
        let args = flags.as_slice();
        let pd = load_policy_dir(dir, false)?;
        let input_path = required(args, "--input")?;
        let input: Value = serde_json::from_str(
            &std::fs::read_to_string(input_path).map_err(|e| format!("{input_path}: {e}"))?,
        )
        .map_err(|e| format!("{input_path}: {e}"))?;
        let mut data = pd.data;
        if let Some(extra) = flag(args, "--data")? {
            let v: Value = serde_json::from_str(
                &std::fs::read_to_string(extra).map_err(|e| format!("{extra}: {e}"))?,
            )
            .map_err(|e| format!("{extra}: {e}"))?;
            match &mut data {
                None => data = Some(v),
                Some(d) => agent_iam::policy::merge_json(d, v),
            }
        }
        let cfg = agent_iam::policy::PolicyConfig {
            modules: pd.modules,
            data,
            entrypoint: flag(args, "--entrypoint")?
                .unwrap_or(agent_iam::policy::DEFAULT_ENTRYPOINT)
                .to_owned(),
            max_eval_ms: 1000,
            max_instructions: 10_000_000,
            headers: Vec::new(),
        };
        let policy = match agent_iam::policy::Policy::compile(&cfg) {
            Ok(p) => p,
            Err(problems) => return Ok(report(&problems)),
        };
        let input = agent_iam::policy::to_rego(&input);
        let verdict = policy.evaluate(input.clone());
        // The gateway's engine decides; the interpreter (which runs `policy test`) must agree.
        let cross_check = policy.evaluate_interpreted(input);
        let out = match &verdict {
            agent_iam::policy::Verdict::Allow { headers } => {
                json!({"decision": "allow", "headers": headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()})
            }
            agent_iam::policy::Verdict::Deny { reason, status } => {
                json!({"decision": "deny", "reason": "policy.denied", "policy_reason": reason, "status": status})
            }
            agent_iam::policy::Verdict::Error(e) => {
                json!({"decision": "deny", "reason": "policy.error", "error": e})
            }
            agent_iam::policy::Verdict::Limit => {
                json!({"decision": "deny", "reason": "policy.limit"})
            }
        };
        println!(
            "{}",
            json!({"revision": policy.revision, "entrypoint": policy.entrypoint, "engine": policy.engine(), "result": out})
        );
        if let Some(why) = &policy.rvm_unavailable {
            eprintln!(
                "note: the RVM cannot run this policy ({why}); the gateway uses the interpreter"
            );
        }
        if cross_check != verdict {
            eprintln!(
                "error: the interpreter disagrees with the gateway's engine: {cross_check:?}; please report this policy"
            );
            return Ok(1);
        }
        Ok(0)
    }

    fn policy_render(args: &[&str]) -> Result<i32, String> {
        let (dir, flags) = positional_dir(args)?;
        let args = flags.as_slice();
        let path = required(args, "--config")?;
        let pd = load_policy_dir(dir, false)?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut plugin: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        agent_iam::policy::render_into(&mut plugin, &pd.modules, pd.data)
            .map_err(|e| format!("{path}: {e}"))?;
        let rendered = serde_json::to_string_pretty(&plugin).map_err(|e| e.to_string())?;
        if let Err(e) = Config::from_json(rendered.as_bytes()) {
            eprintln!("{e}");
            return Ok(1);
        }
        println!("{rendered}");
        Ok(0)
    }

    /// The playground's first request and token recipe (the demo's two-hop delegation).
    const PLAYGROUND_REQUEST: &str =
        "{\"method\": \"GET\", \"path\": \"/tickets/42\", \"host\": \"api.agent-iam.test\"}";
    const PLAYGROUND_RECIPE: &str = "{\"alg\": \"ES256\", \"claims\": {\"sub\": \"user:alice\", \"act\": {\"sub\": \"agent:tool-search\", \"act\": {\"sub\": \"agent:planner\"}}}}";

    /// Serves the playground page and its defaults on 127.0.0.1 until interrupted.
    fn playground(args: &[&str]) -> Result<i32, String> {
        let (dir, flags) = positional_dir(args)?;
        let args = flags.as_slice();
        let config_path = flag(args, "--config")?.unwrap_or("envoy/plugin.base.json");
        let keys_path = flag(args, "--keys")?.unwrap_or("test-harness/keys/demo-private.json");
        let site =
            std::path::PathBuf::from(flag(args, "--site")?.unwrap_or("target/playground/site"));
        let listen = port(args, "--listen", 8181)?;
        let config =
            std::fs::read_to_string(config_path).map_err(|e| format!("{config_path}: {e}"))?;
        let keys: Value = serde_json::from_str(
            &std::fs::read_to_string(keys_path).map_err(|e| format!("{keys_path}: {e}"))?,
        )
        .map_err(|e| format!("{keys_path}: {e}"))?;
        DevKeys::from_private_json(&keys).map_err(|e| format!("{keys_path}: {e}"))?;
        let files = read_policy_dir(dir)?;
        if !site.join("index.html").is_file()
            || !site.join("agent_iam_playground_bg.wasm").is_file()
        {
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
        if flag(args, "--now")?.is_some() {
            if let Some(obj) = defaults.as_object_mut() {
                obj.insert("now".into(), json!(now_flag(args)?));
            }
        }
        let defaults = defaults.to_string();
        let listener = std::net::TcpListener::bind(("127.0.0.1", listen))
            .map_err(|e| format!("127.0.0.1:{listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("agent-iam playground: http://{addr}/  (policies from {dir}, config {config_path}; Ctrl-C stops it)");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let site = std::sync::Arc::new(site);
        let defaults = std::sync::Arc::new(defaults);
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (site, defaults) = (site.clone(), defaults.clone());
            let port = addr.port();
            std::thread::spawn(move || serve_one(stream, &site, &defaults, port));
        }
        Ok(0)
    }

    /// Answers one HTTP/1.1 request for `127.0.0.1:PORT` or `localhost:PORT`: `GET /` (the
    /// page), `/defaults.json`, or a file of the site directory by its plain name; nothing
    /// else.
    fn serve_one(
        mut stream: std::net::TcpStream,
        site: &std::path::Path,
        defaults: &str,
        port: u16,
    ) {
        use std::io::Read;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let host = single_host(&head);
        let mut words = head.lines().next().unwrap_or_default().split(' ');
        let (method, target) = (
            words.next().unwrap_or_default(),
            words.next().unwrap_or_default(),
        );
        let path = target.split('?').next().unwrap_or_default();
        let name = path.strip_prefix('/').unwrap_or_default();
        let name = if name.is_empty() { "index.html" } else { name };
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            && !name.starts_with('.');
        // Only the page's own origin: a foreign `Host` is a DNS-rebinding attempt by some
        // other web page to read the configuration.
        let host_ok = host.is_ok_and(|h| {
            [format!("127.0.0.1:{port}"), format!("localhost:{port}")]
                .contains(&h.to_ascii_lowercase())
        });
        let (status, kind, body): (&str, &str, Vec<u8>) = if let Err(why) = host {
            (
                "400 Bad Request",
                "text/plain",
                format!("{why}\n").into_bytes(),
            )
        } else if !host_ok {
            (
                "421 Misdirected Request",
                "text/plain",
                b"wrong host\n".to_vec(),
            )
        } else if method != "GET" && method != "HEAD" {
            (
                "405 Method Not Allowed",
                "text/plain",
                b"GET only\n".to_vec(),
            )
        } else if name == "defaults.json" {
            ("200 OK", "application/json", defaults.as_bytes().to_vec())
        } else if !plain {
            ("404 Not Found", "text/plain", b"not found\n".to_vec())
        } else {
            match std::fs::read(site.join(name)) {
                Ok(bytes) => ("200 OK", content_type(name), bytes),
                _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
            }
        };
        let header = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(header.as_bytes());
        if method != "HEAD" {
            let _ = stream.write_all(&body);
        }
    }

    /// The one `Host` of a request head (RFC 9112 §3.2: a request without one, or with
    /// more than one, is answered 400; so is a header line a server could read in two
    /// ways: a folded line, or whitespace before the colon, §5.1–5.2).
    pub(super) fn single_host(head: &str) -> Result<&str, &'static str> {
        let mut host = None;
        for line in head.split("\r\n").skip(1) {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) || line.contains(['\r', '\n']) {
                return Err("malformed header line");
            }
            let (name, value) = line.split_once(':').ok_or("malformed header line")?;
            if name.is_empty() || name.contains([' ', '\t']) {
                return Err("malformed header line");
            }
            if name.eq_ignore_ascii_case("host")
                && host.replace(value.trim_matches([' ', '\t'])).is_some()
            {
                return Err("more than one Host header");
            }
        }
        host.ok_or("no Host header")
    }

    fn content_type(name: &str) -> &'static str {
        match name.rsplit('.').next() {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("wasm") => "application/wasm",
            Some("json") => "application/json",
            Some("png") => "image/png",
            _ => "application/octet-stream",
        }
    }

    fn print_json(v: &Value) -> Result<i32, String> {
        println!(
            "{}",
            serde_json::to_string_pretty(v).map_err(|e| e.to_string())?
        );
        Ok(0)
    }

    fn read_keys(args: &[&str]) -> Result<DevKeys, String> {
        let path = required(args, "--keys")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        DevKeys::from_private_json(&v).map_err(|e| format!("{path}: {e}"))
    }

    fn dev_keys(args: &[&str]) -> Result<i32, String> {
        let path = required(args, "--private")?;
        let keys = DevKeys::generate()?;
        let text =
            serde_json::to_string_pretty(&keys.to_private_json()).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}"))?;
        print_json(&keys.public_jwks())
    }

    fn dev_config(args: &[&str]) -> Result<i32, String> {
        print_json(&dev::demo_plugin_config(&read_keys(args)?))
    }

    fn dev_mint(args: &[&str]) -> Result<i32, String> {
        let keys = read_keys(args)?;
        let now = now_flag(args)?;
        let mut out = std::io::stdout().lock();
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.map_err(|e| e.to_string())?;
            if line.trim().is_empty() {
                continue;
            }
            let recipe: Recipe =
                serde_json::from_str(&line).map_err(|e| format!("recipe line {}: {e}", n + 1))?;
            let token = dev::mint(&keys, &recipe, now)
                .map_err(|e| format!("recipe line {}: {e}", n + 1))?;
            writeln!(out, "{token}").map_err(|e| e.to_string())?;
        }
        Ok(0)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::cli::single_host;

    #[test]
    fn the_playground_reads_exactly_one_host() {
        let head = |headers: &str| format!("GET / HTTP/1.1\r\n{headers}\r\n\r\nbody: x\r\n");
        assert_eq!(
            single_host(&head("Host: 127.0.0.1:8181")),
            Ok("127.0.0.1:8181")
        );
        assert_eq!(
            single_host(&head("x-a: 1\r\nhOsT:localhost:1  ")),
            Ok("localhost:1")
        );
        for bad in [
            "host: attacker.example:8181\r\nhost: 127.0.0.1:8181",
            "host: 127.0.0.1:8181\r\nHost: attacker.example:8181",
            "x-a: 1\r\n host: 127.0.0.1:8181",
            "host : 127.0.0.1:8181",
            "x-a: 1\r\nhost: a\nhost: 127.0.0.1:8181",
            "no colon",
            "x-a: 1",
        ] {
            assert!(single_host(&head(bad)).is_err(), "{bad:?}");
        }
        // A `Host` after the head (in the body) is not a header.
        assert_eq!(single_host(&head("x-a: 1")), Err("no Host header"));
    }
}
