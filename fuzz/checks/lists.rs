// The MCP list-response filter on any bytes, as a `text/event-stream` and as JSON (the
// first byte picks the list kind and whether the request id is `1` or `"1"`). Never a
// panic; an accepted body is within its bound, and it is a fixed point: filtering it again
// accepts it, changes nothing, keeps as many entries and removes none (so no entry the
// predicate refuses was kept).
// (Shared by the libFuzzer target `fuzz/fuzz_targets/lists.rs` and the corpus replay in
// `tests/fuzz_corpus.rs`.)

use agent_iam::mcp::{filter_json, filter_sse, Filtered, ListError, ListKind, OUTPUT_SLACK};
use serde_json::{json, Value};

/// The smoke run's `-max_len`.
const MAX: usize = 16384;

type Filter =
    fn(&[u8], &Value, ListKind, &dyn Fn(&str) -> bool, usize) -> Result<Filtered, ListError>;

/// The target's check on one input (panics on a finding).
pub fn check(data: &[u8]) {
    let (sel, body) = data.split_first().map_or((0, data), |(s, b)| (*s, b));
    let kind = [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ][usize::from(sel % 4)];
    let id = if sel & 4 == 0 { json!(1) } else { json!("1") };
    let allowed = |k: &str| k.len() % 2 == 1;
    for (name, filter) in [
        ("sse", filter_sse as Filter),
        ("json", filter_json as Filter),
    ] {
        let Ok(once) = filter(body, &id, kind, &allowed, MAX) else {
            continue;
        };
        assert!(
            once.body.len() <= MAX + OUTPUT_SLACK,
            "{name}: output over its bound"
        );
        let twice = filter(&once.body, &id, kind, &allowed, MAX + OUTPUT_SLACK)
            .unwrap_or_else(|e| panic!("{name}: its own output refused: {e}"));
        assert_eq!(twice.body, once.body, "{name}: not a fixed point");
        assert_eq!(
            (twice.kept, twice.removed),
            (once.kept, 0),
            "{name}: kept a refused entry"
        );
    }
}
