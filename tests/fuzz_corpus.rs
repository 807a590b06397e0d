//! Every input of the committed fuzz corpora (`fuzz/corpus/<target>/`: what fuzzing runs
//! found and kept, crashers included once fixed) replayed through its target's check, on
//! stable Rust and without libFuzzer, in every `cargo test`. The checks are the fuzz
//! targets' own (`fuzz/checks/`); mutation fuzzing is `test-harness/fuzz.sh`.

// Test code: the checks assert by panicking, as libFuzzer needs them to.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                include!(concat!("../fuzz/checks/", stringify!($name), ".rs"));
            }

            #[test]
            fn $name() {
                replay(stringify!($name), $name::check);
            }
        )*
    };
}

targets!(token, config, set, registry_feed, request, target, lists);

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "fuzz target {target}: {} fails",
            path.display()
        );
        inputs += 1;
    }
    assert!(inputs > 0, "fuzz/corpus/{target} is empty");
}
