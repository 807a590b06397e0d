//! Names for the builds this crate makes, and a stamp for the filter's start-up log line.
//!
//! - `filter`: the proxy-wasm filter Envoy and Kong load (wasm32-wasip1);
//! - `tools`: everything else (the native CLI and tests, the playground's browser build);
//! - `native`: the native CLI and tests only (no browser);
//! - `browser`: the playground's browser build (wasm32-unknown-unknown).
//!
//! `AGENT_IAM_COMMIT` (git commit, `-dirty` with uncommitted changes, `unknown` outside
//! git), `AGENT_IAM_FEATURES` and `AGENT_IAM_BUILD_ID` (SHA-256 prefix of the sources and
//! the manifest) go into the log line, so an operator can tell which build a VM runs.

use std::path::Path;
use std::process::Command;

use cfg_aliases::cfg_aliases;

fn main() {
    cfg_aliases! {
        filter: { all(target_arch = "wasm32", target_os = "wasi") },
        tools: { not(filter) },
        native: { not(target_arch = "wasm32") },
        browser: { all(target_arch = "wasm32", not(target_os = "wasi")) },
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{c}-dirty")
        }
        Some(c) => c,
        None => "unknown".into(),
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    let features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(",")
    };
    println!("cargo:rustc-env=AGENT_IAM_COMMIT={commit}");
    println!("cargo:rustc-env=AGENT_IAM_FEATURES={features}");
    println!(
        "cargo:rustc-env=AGENT_IAM_BUILD_ID={}",
        build_id(Path::new("src"), &features)
    );
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=Cargo.lock");
}

/// FNV-1a over every file under `src/` (sorted paths), the manifest, the lock file and the
/// features: changes with any source change, committed or not. Not a security measure.
fn build_id(src: &Path, features: &str) -> String {
    let mut files = Vec::new();
    collect(src, &mut files);
    files.sort();
    files.push("Cargo.toml".into());
    files.push("Cargo.lock".into());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in &files {
        eat(f.to_string_lossy().as_bytes());
        eat(&std::fs::read(f).unwrap_or_default());
    }
    eat(features.as_bytes());
    format!("{h:016x}")
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.push(p);
        }
    }
}
