//! `agent-iam-bindgen INPUT.wasm OUT_DIR`: what `wasm-bindgen --target web --no-typescript`
//! does (the default module path included), through the same library at the version the playground crate pins (so the build
//! needs no separately installed CLI, and Cargo.lock pins all of it).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, out_dir] = args.as_slice() else {
        eprintln!("usage: agent-iam-bindgen INPUT.wasm OUT_DIR");
        return ExitCode::from(2);
    };
    let mut bindgen = wasm_bindgen_cli_support::Bindgen::new();
    let generated = bindgen
        .web(true)
        .map(|b| {
            b.input_path(input)
                .typescript(false)
                .omit_default_module_path(false)
        })
        .and_then(|b| b.generate(out_dir));
    match generated {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-iam-bindgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
