//! The release module loads and runs on Kong: it is standard WebAssembly 2.0 (Kong runs
//! filters on Wasmtime, the Envoy the harness boots only on V8), and every host function it
//! imports is one Kong's Wasm engine (ngx_wasm_module) provides, with the same signature.
//! Kong's functions, per release, are `tests/data/kong_host_functions.txt`, taken from
//! ngx_wasm_module's own host-function tables.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::collections::BTreeMap;

use wasmparser::{Parser, Payload, TypeRef, Validator, WasmFeatures};

const WASM: &str = "target/wasm32-wasip1/release/agent_iam.wasm";
const KONG: &str = "tests/data/kong_host_functions.txt";

/// The oldest Kong release the filter runs on: the newest `since` among the functions it
/// calls on Kong (the metric calls, 3.8).
const SUPPORTED_KONG: &str = "3.8";

/// The SDK's stand-in root context, whose default methods reach these; it exists only when a
/// filter sets no root context, and the filter sets one (`proxy_wasm::main!` in src/host/).
const SDK_NOOP_ROOT: &str = "the SDK's NoopRoot only (never created)";

/// Imports Kong links but does not implement (calling one traps there), and why the module
/// never calls them on Kong.
const LINKED_NOT_CALLED: &[(&str, &str)] = &[
    (
        "env.proxy_call_foreign_function",
        "Envoy's verify_signature, called only on a host identified as Envoy (xds.node; src/worker/tests.rs shows other hosts are never asked)",
    ),
    ("env.proxy_done", SDK_NOOP_ROOT),
    ("env.proxy_resolve_shared_queue", SDK_NOOP_ROOT),
    ("env.proxy_get_status", SDK_NOOP_ROOT),
    ("env.proxy_grpc_call", SDK_NOOP_ROOT),
    ("env.proxy_grpc_stream", SDK_NOOP_ROOT),
    ("env.proxy_grpc_send", SDK_NOOP_ROOT),
    ("env.proxy_grpc_cancel", SDK_NOOP_ROOT),
    ("env.proxy_grpc_close", SDK_NOOP_ROOT),
];

/// The release module, or a failure that says how to build it.
fn module() -> Vec<u8> {
    std::fs::read(WASM).unwrap_or_else(|e| {
        panic!("{WASM}: {e}: build the release module first (test-harness/build.sh)")
    })
}

/// One host function Kong provides.
struct Provided {
    signature: String,
    /// The first Kong release implementing it (`None`: it links, but calling it traps).
    since: Option<(u32, u32)>,
}

fn release(text: &str) -> (u32, u32) {
    let (major, minor) = text.split_once('.').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

fn kong() -> BTreeMap<String, Provided> {
    let text = std::fs::read_to_string(KONG).unwrap();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, signature, since] = fields[..] else {
            panic!("{KONG}: not `name signature since`: {line}");
        };
        let since = (since != "nyi").then(|| release(since));
        let provided = Provided {
            signature: signature.to_owned(),
            since,
        };
        assert!(
            out.insert(name.to_owned(), provided).is_none(),
            "{name} twice"
        );
    }
    out
}

/// Every import of the module: `module.name` and its signature, as the list writes them.
fn imports(bytes: &[u8]) -> Vec<(String, String)> {
    let mut types = Vec::new();
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.unwrap() {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    let ty = ty.unwrap();
                    let list = |v: &[wasmparser::ValType]| {
                        v.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    types.push(format!("({})->({})", list(ty.params()), list(ty.results())));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.unwrap();
                    let name = format!("{}.{}", import.module, import.name);
                    let TypeRef::Func(index) = import.ty else {
                        panic!("{name}: the module imports something other than a function");
                    };
                    let signature = types[usize::try_from(index).unwrap()].clone();
                    out.push((name, signature));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_release_module_is_standard_webassembly_2_0() {
    // WebAssembly 2.0 (W3C): the MVP with mutable globals, bulk memory, reference types,
    // sign extension, non-trapping float-to-int, multi-value and 128-bit SIMD. No proposal
    // (threads, GC, tail calls, exceptions, memory64, ...), which a runtime may lack.
    let bytes = module();
    Validator::new_with_features(WasmFeatures::WASM2)
        .validate_all(&bytes)
        .unwrap_or_else(|e| panic!("{WASM} is not standard WebAssembly 2.0: {e}"));
    let abi = Parser::new(0).parse_all(&bytes).any(|p| match p {
        Ok(Payload::ExportSection(reader)) => reader
            .into_iter()
            .any(|e| e.is_ok_and(|e| e.name == "proxy_abi_version_0_2_1")),
        _ => false,
    });
    assert!(
        abi,
        "the module must export proxy_abi_version_0_2_1 (Kong checks the ABI)"
    );
}

#[test]
fn every_import_is_a_host_function_kong_provides() {
    let kong = kong();
    let imported = imports(&module());
    assert!(!imported.is_empty());
    let mut problems = Vec::new();
    let mut newest = (0, 0);
    for (name, signature) in &imported {
        let Some(provided) = kong.get(name) else {
            problems.push(format!(
                "{name}: Kong has no such host function (it refuses to link the module)"
            ));
            continue;
        };
        if &provided.signature != signature {
            problems.push(format!(
                "{name}: imported as {signature}, Kong's is {}",
                provided.signature
            ));
        }
        match provided.since {
            Some(since) => newest = newest.max(since),
            None if LINKED_NOT_CALLED.iter().any(|(n, _)| n == name) => {}
            None => problems.push(format!(
                "{name}: Kong does not implement it (calling it traps): import it no more, or call it only on Envoy and say so in LINKED_NOT_CALLED"
            )),
        }
    }
    for (name, why) in LINKED_NOT_CALLED {
        if !imported.iter().any(|(n, _)| n == name) {
            problems.push(format!(
                "LINKED_NOT_CALLED lists {name} ({why}), which the module no longer imports"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        newest,
        release(SUPPORTED_KONG),
        "the oldest Kong release implementing every import the filter calls there is {}.{}; SUPPORTED_KONG and the docs say {SUPPORTED_KONG}",
        newest.0,
        newest.1
    );
}

#[test]
fn the_docs_name_the_supported_kong_release() {
    let wanted = format!("Kong {SUPPORTED_KONG}+");
    for path in ["README.md", "docs/operations.md", "kong/kong.yaml"] {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(&wanted), "{path} does not say {wanted}");
        // Any other "Kong 3.N+" is a stale claim.
        for (at, m) in text.match_indices("Kong 3.") {
            let rest = &text[at + m.len()..];
            let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if rest[minor.len()..].starts_with('+') {
                assert_eq!(format!("{m}{minor}+"), wanted, "{path}");
            }
        }
    }
}
