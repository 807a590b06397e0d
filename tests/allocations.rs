//! Heap allocations per decision, counted natively with a counting global allocator: the hot
//! path of a repeated request (a cached token) with no policy, with the shipped policy, and
//! with the decision cache. Counts are deterministic: each bound is the measured count plus
//! headroom, so a change that allocates much more on the hot path fails here, and the counts
//! are printed for docs/BENCHMARKS.md (`cargo test --test allocations -- --nocapture`).
#![allow(unsafe_code)] // a global allocator is `unsafe impl` by definition; test code
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use agent_iam::config::Config;
use agent_iam::crypto::PureRust;
use agent_iam::dev::{mint, DevKeys, Recipe};
use agent_iam::pipeline::{DecisionIds, Engine, Request};
use serde_json::{json, Value};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above, i.e. from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The tests count a process-wide figure: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const NOW: i64 = 1_800_000_000;

fn engine(policy: bool, decision_cache: bool) -> Engine {
    let mut p: Value =
        serde_json::from_str(&std::fs::read_to_string("envoy/plugin.json").unwrap()).unwrap();
    p["agents"].as_object_mut().unwrap().remove("feed");
    if !policy {
        p.as_object_mut().unwrap().remove("policy");
    } else if decision_cache {
        p["policy"]["decision_cache_entries"] = json!(4096);
        p["policy"]["time_resolution_s"] = json!(1);
    }
    let cfg = Config::from_json(p.to_string().as_bytes()).unwrap();
    let mut e = Engine::new(cfg, Box::new(PureRust), DecisionIds::new(1));
    e.start_feed_clock(NOW as f64);
    e
}

/// A delegated read (user:alice through agent:tool-search and agent:planner) with the
/// headers a client sends.
fn request() -> Request {
    let keys: Value = serde_json::from_str(
        &std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap(),
    )
    .unwrap();
    let keys = DevKeys::from_private_json(&keys).unwrap();
    let recipe: Recipe = serde_json::from_value(json!({"exp": 300, "claims": {
        "sub": "user:alice", "tenant": "acme",
        "act": {"sub": "agent:tool-search", "act": {"sub": "agent:planner"}}}}))
    .unwrap();
    let token = mint(&keys, &recipe, NOW).unwrap();
    Request {
        method: "GET".into(),
        path: "/tenants/acme/tickets".into(),
        host: "api.agent-iam.test".into(),
        authorization: vec![format!("Bearer {token}").into_bytes()],
        headers: vec![
            ("user-agent".into(), "agent/1.0".into()),
            ("accept".into(), "application/json".into()),
            ("x-request-id".into(), "0f1e2d3c".into()),
        ],
        ..Request::default()
    }
}

/// (allocations, bytes) per decision of a repeated request, after warming every cache.
fn per_decision(mut e: Engine) -> (u64, u64) {
    let req = request();
    for i in 0..50 {
        let d = e.evaluate(&req, NOW as f64 + 1.0 + f64::from(i) * 0.01);
        assert!(d.allowed(), "{:?} {:?}", d.reason, d.policy_reason);
    }
    let n = 1_000u32;
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for i in 0..n {
        // Within one second: the decision cache's key (the floored clock) stays the same.
        let d = e.evaluate(&req, NOW as f64 + 2.0 + f64::from(i) * 0.0001);
        assert!(d.allowed());
    }
    let (a1, b1) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    ((a1 - a0) / u64::from(n), (b1 - b0) / u64::from(n))
}

fn check(label: &str, e: Engine, most: u64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let (allocations, bytes) = per_decision(e);
    println!("{label}: {allocations} allocations, {bytes} bytes per decision");
    assert!(
        allocations <= most,
        "{label}: {allocations} allocations per decision (at most {most})"
    );
}

#[test]
fn a_cached_token_without_policy() {
    check("token cached, no policy", engine(false, false), 40);
}

#[test]
fn the_full_pipeline_with_the_shipped_policy() {
    // Nearly all of it is regorus's RVM evaluating the policy (see the decision cache's count).
    check("full pipeline, shipped policy", engine(true, false), 2_400);
}

#[test]
fn the_full_pipeline_answered_by_the_decision_cache() {
    check("full pipeline, decision cache", engine(true, true), 125);
}
