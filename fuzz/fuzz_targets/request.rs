//! libFuzzer target `request`: see `fuzz/checks/request.rs` (the check, also replayed over the
//! committed corpus by `cargo test --test fuzz_corpus`).
#![no_main]

include!("../checks/request.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
