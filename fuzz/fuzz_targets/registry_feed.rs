//! Agent-registry feed documents: any bytes. Never a panic.
#![no_main]

use agent_iam::agents::parse_feed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_feed(data);
});
