// Plugin-configuration parser: any bytes. Never a panic; an accepted configuration
// always has at least one issuer with at least one key source.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/config.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::config::Config;

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    if let Ok(cfg) = Config::from_json(data) {
        assert!(!cfg.issuers.is_empty());
    }
}
