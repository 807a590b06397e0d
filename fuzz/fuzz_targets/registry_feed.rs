//! libFuzzer target `registry_feed`: see `fuzz/checks/registry_feed.rs` (the check, also replayed over the
//! committed corpus by `cargo test --test fuzz_corpus`).
#![no_main]

include!("../checks/registry_feed.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
