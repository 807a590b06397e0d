//! Token parser and verifier: any bytes as the bearer token, against the shipped config.
//! Never a panic; never an allow for anything but a token the demo key really signed.
#![no_main]

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::token::verify_token;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CONFIG: Config =
        Config::from_json(include_bytes!("../../envoy/plugin.json")).expect("shipped config");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        CONFIG.with(|cfg| {
            if let Ok((t, _)) = verify_token(token, &cfg.token_rules(), &PureRust, None, 1_800_000_000.0) {
                // Only a token the demo key really signed verifies.
                assert!(!t.subject.is_empty());
            }
        });
    }
});
