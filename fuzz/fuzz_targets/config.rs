//! Plugin-configuration parser: any bytes. Never a panic; an accepted configuration
//! always has at least one issuer with at least one key source.
#![no_main]

use agent_iam::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = Config::from_json(data) {
        assert!(!cfg.issuers.is_empty());
    }
});
