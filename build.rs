//! Names for the builds this crate makes, and a stamp for the filter's start-up log line.
//!
//! - `filter`: the proxy-wasm filter Envoy and Kong load (wasm32-wasip1);
//! - `tools`: everything else (the native CLI and tests, the playground's browser build);
//! - `native`: the native CLI and tests only (no browser);
//! - `browser`: the playground's browser build (wasm32-unknown-unknown).
//!
//! `AGENT_IAM_COMMIT` (git commit, `-dirty` with uncommitted changes, `unknown` outside
//! git), `AGENT_IAM_FEATURES` (the cargo features beyond the default build's: `none`,
//! `test-hooks`, `slim`, or the builtin families of a build without some of them) and
//! `AGENT_IAM_BUILD_ID` (an FNV-1a hash of the sources and the manifest) go into the log
//! line, so an operator can tell which build a VM runs.

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
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&manifest_dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // Only this crate's own repository counts: sources unpacked inside some other
    // repository are "outside git" too.
    let same_dir =
        |a: &str, b: &str| match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
    let in_repo =
        git(&["rev-parse", "--show-toplevel"]).is_some_and(|top| same_dir(&top, &manifest_dir));
    let git = |args: &[&str]| if in_repo { git(args) } else { None };
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
    // A new commit moves the branch (a loose or a packed ref), not HEAD; a changed file
    // changes the index. A missing file would rerun this script on every build: only
    // existing ones are named.
    let mut watched = vec!["HEAD".to_owned(), "index".into(), "packed-refs".into()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in &watched {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    // The default build has every builtin family: name them only when some are missing
    // (the slim build says `slim`).
    const FAMILIES: [&str; 6] = [
        "builtins-encoding",
        "builtins-glob",
        "builtins-regex",
        "builtins-semver",
        "builtins-time",
        "builtins-urlquery",
    ];
    if FAMILIES.iter().all(|f| features.iter().any(|g| g == f)) {
        features.retain(|f| !FAMILIES.contains(&f.as_str()));
    }
    features.sort();
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
