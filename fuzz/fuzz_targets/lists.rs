//! libFuzzer target `lists`: see `fuzz/checks/lists.rs` (the check, also replayed over the
//! committed corpus by `cargo test --test fuzz_corpus`).
#![no_main]

include!("../checks/lists.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
