// Shared Signals: the poll response parser, then every SET in it through the verifier
// (the shipped issuer's keys as the transmitter's). Never a panic.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/set.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::crypto::PureRust;
use agent_iam::revocation::{parse_poll_response, verify_set, RevocationConfig};
use std::sync::OnceLock;

fn transmitter() -> &'static agent_iam::revocation::Revocation {
    static T: OnceLock<agent_iam::revocation::Revocation> = OnceLock::new();
    T.get_or_init(|| {
        let plugin: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../envoy/plugin.json")).expect("json");
        let cfg: RevocationConfig = serde_json::from_value(serde_json::json!({
            "feed": {"cluster": "c", "path": "/ssf/poll"},
            "transmitter": {"issuer": "https://ssf.agent-iam.test",
                            "audience": "https://api.agent-iam.test/ssf",
                            "jwks": plugin["issuers"][0]["jwks"]}
        }))
        .expect("revocation config");
        let mut problems = Vec::new();
        cfg.validate(&mut problems).expect("valid revocation config")
    })
}

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    let Ok((sets, _more)) = parse_poll_response(data) else {
        // Not a poll response: try the bytes as one SET.
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = verify_set(text, &transmitter().transmitter, &PureRust, 1_800_000_000.0, 30.0);
        }
        return;
    };
    for (_jti, set) in sets {
        let _ = verify_set(&set, &transmitter().transmitter, &PureRust, 1_800_000_000.0, 30.0);
    }
}
