// The request-target canonicaliser: any bytes as `:path`. Never a panic; an accepted
// target is canonical (a fixed point), starts with `/`, has no empty or dot segments,
// only RFC 3986 characters, and no escape of an unreserved character, `/`, `\` or a
// control character; the query is kept byte for byte.
// (Shared by the libFuzzer target `fuzz/fuzz_targets/target.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::target::{canonical, Semicolons};

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    for mode in [Semicolons::Reject, Semicolons::Allow] {
        let Ok(t) = canonical(&raw, mode) else { continue };
        let text = t.to_target();
        assert_eq!(canonical(&text, mode).as_ref(), Ok(&t), "not a fixed point: {raw:?}");
        assert!(t.path.starts_with('/'));
        let segments = t.segments();
        let last = segments.len().saturating_sub(1);
        for (i, s) in segments.iter().enumerate() {
            assert!(*s != "." && *s != "..", "dot segment in {text:?}");
            assert!(!s.is_empty() || i == last, "empty segment in {text:?}");
        }
        let upper = t.path.to_ascii_uppercase();
        for bad in ["%2F", "%5C", "%00", "%2E", "%7E", "%41", "%5F", "%2D"] {
            assert!(!upper.contains(bad), "{bad} left in {text:?}");
        }
        assert!(t.path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'?' && b != b'#'));
        if mode == Semicolons::Reject {
            assert!(!t.path.contains(';'));
        }
        if let Some((_, q)) = raw.split_once('?') {
            assert_eq!(t.query.as_deref(), Some(q));
        }
    }
}
