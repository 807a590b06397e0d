// Agent-registry feed documents: any bytes. Never a panic.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/registry_feed.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::agents::parse_feed;

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    let _ = parse_feed(data);
}
