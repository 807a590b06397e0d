// Token parser and verifier: any bytes as the bearer token, against the shipped config.
// Never a panic; never an allow for anything but a token the demo key really signed.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/token.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::token::verify_token;

thread_local! {
    static CONFIG: Config =
        Config::from_json(include_bytes!("../../envoy/plugin.json")).expect("shipped config");
}

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        CONFIG.with(|cfg| {
            if let Ok((t, _)) = verify_token(token, &cfg.token_rules(), &PureRust, None, 1_800_000_000.0) {
                // Only a token the demo key really signed verifies.
                assert!(!t.subject.is_empty());
            }
        });
    }
}
