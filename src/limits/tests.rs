use std::cell::Cell;

use super::*;
use crate::shared::{HostError, Memory};

fn limit(json: serde_json::Value) -> LimitConfig {
    serde_json::from_value(json).unwrap()
}

fn rate(per_s: f64, burst: u64) -> LimitConfig {
    limit(
        serde_json::json!({"name": "r", "key": ["agent"], "rate": {"per_s": per_s, "burst": burst}}),
    )
}

fn budget(count: u64, window_s: u64, sliding: bool) -> LimitConfig {
    limit(serde_json::json!({"name": "b", "key": ["agent"],
        "budget": {"count": count, "window_s": window_s, "sliding": sliding}}))
}

fn store(l: &LimitConfig, max_keys: usize) -> (LimitStore, Memory) {
    let s = LimitStore::new(l, max_keys);
    let m = Memory::default();
    s.prepare(&m).unwrap();
    (s, m)
}

fn admitted(t: Result<Taken, Reason>) -> bool {
    matches!(t, Ok(Taken::Admitted { .. }))
}

fn retry(t: Result<Taken, Reason>) -> u64 {
    match t {
        Ok(Taken::Refused { retry_after_s }) => retry_after_s,
        other => panic!("not refused: {other:?}"),
    }
}

const ID: [u8; 16] = [9; 16];

#[test]
fn a_bucket_gives_its_burst_then_its_rate() {
    let l = rate(2.0, 5);
    let (s, m) = store(&l, 16);
    let t0 = 1_800_000_000_000u64;
    for _ in 0..5 {
        assert!(admitted(s.take(&m, &ID, t0)));
    }
    assert_eq!(retry(s.take(&m, &ID, t0)), 1);
    // Half a second refills one unit at 2/s.
    assert!(admitted(s.take(&m, &ID, t0 + 500)));
    assert!(!admitted(s.take(&m, &ID, t0 + 500)));
    // Another key has its own bucket.
    assert!(admitted(s.take(&m, &[1; 16], t0)));
}

#[test]
fn a_clock_going_back_refills_nothing_and_a_huge_gap_refills_only_the_burst() {
    let l = rate(1.0, 3);
    let (s, m) = store(&l, 16);
    let t0 = 1_800_000_000_000u64;
    for _ in 0..3 {
        assert!(admitted(s.take(&m, &ID, t0)));
    }
    // Ten seconds back: still empty, and coming back to t0 refills nothing either.
    assert!(!admitted(s.take(&m, &ID, t0 - 10_000)));
    assert!(!admitted(s.take(&m, &ID, t0)));
    assert!(admitted(s.take(&m, &ID, t0 + 1000)));
    // A year later: the burst, no more.
    let later = t0 + 365 * 86_400_000;
    for _ in 0..3 {
        assert!(admitted(s.take(&m, &ID, later)));
    }
    assert!(!admitted(s.take(&m, &ID, later)));
}

#[test]
fn a_fixed_window_counts_per_window_and_says_when_it_ends() {
    let l = budget(3, 3600, false);
    let (s, m) = store(&l, 16);
    let hour = 3_600_000u64;
    let t0 = 500_000 * hour + 600_000; // ten minutes into an hour
    for _ in 0..3 {
        assert!(admitted(s.take(&m, &ID, t0)));
    }
    assert_eq!(retry(s.take(&m, &ID, t0)), 3000);
    // Back in time: the later window still holds.
    assert!(!admitted(s.take(&m, &ID, t0 - hour)));
    // The next hour opens a new window.
    assert!(admitted(s.take(&m, &ID, t0 - 600_000 + hour)));
}

#[test]
fn a_sliding_window_never_admits_more_than_its_count_in_any_window() {
    let window_s = 150u64; // steps of 10 s
    let l = budget(5, window_s, true);
    let (s, m) = store(&l, 16);
    let t0 = 1_800_000_000_000u64;
    let mut admits = Vec::new();
    // A request every 3 s for 20 minutes.
    for i in 0..400u64 {
        let now = t0 + i * 3000;
        if admitted(s.take(&m, &ID, now)) {
            admits.push(now);
        }
    }
    for (i, start) in admits.iter().enumerate() {
        let within = admits[i..]
            .iter()
            .filter(|t| **t < start + window_s * 1000)
            .count();
        assert!(within <= 5, "{within} admits in the window from {start}");
    }
    // And it does admit again after a window: about 5 per 160 s over 1200 s.
    assert!(admits.len() >= 5 * (1200 / 160), "{}", admits.len());
    let full = retry(s.take(&m, &ID, *admits.last().unwrap()));
    assert!((1..=window_s).contains(&full), "{full}");
}

#[test]
fn a_sliding_window_holds_for_bursty_arrivals_too() {
    for (count, window_s) in [(1u64, 1u64), (3, 7), (10, 60), (7, 3600)] {
        let l = budget(count, window_s, true);
        let (s, m) = store(&l, 16);
        let (mut now, mut seed) = (1_800_000_000_123u64, 0x2545_f491u64);
        let mut admits = Vec::new();
        for _ in 0..3000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            // Bursts (same millisecond) and gaps up to a third of the window.
            now += (seed >> 33) % (window_s * 1000 / 3 + 1) * u64::from(seed % 4 == 0);
            if admitted(s.take(&m, &ID, now)) {
                admits.push(now);
            }
        }
        for (i, start) in admits.iter().enumerate() {
            let within = admits[i..]
                .iter()
                .filter(|t| **t < start + window_s * 1000)
                .count() as u64;
            assert!(
                within <= count,
                "{count}/{window_s}s: {within} admits from {start}"
            );
        }
        assert!(!admits.is_empty());
    }
}

#[test]
fn a_full_slot_forgets_an_idle_entry_first_then_the_oldest_and_says_so() {
    let l = rate(1.0, 1);
    // One slot: every key lands in it.
    let (s, m) = store(&l, 1);
    let t0 = 1_800_000_000_000u64;
    for k in 0..PER_SLOT as u8 {
        assert_eq!(
            s.take(&m, &[k; 16], t0 + u64::from(k)),
            Ok(Taken::Admitted {
                evicted_live: false
            })
        );
    }
    // All live (empty buckets): a new key evicts the oldest, counted.
    assert_eq!(
        s.take(&m, &[200; 16], t0 + 100),
        Ok(Taken::Admitted { evicted_live: true })
    );
    // Key 0 was forgotten: it starts afresh.
    assert_eq!(
        s.take(&m, &[0; 16], t0 + 200),
        Ok(Taken::Admitted { evicted_live: true })
    );
    // Two seconds later every bucket refilled: room is made without forgetting anything live.
    assert_eq!(
        s.take(&m, &[201; 16], t0 + 3000),
        Ok(Taken::Admitted {
            evicted_live: false
        })
    );
}

#[test]
fn a_spent_counter_is_forgotten_last_however_long_ago_it_was_touched() {
    let l = rate(0.001, 10);
    let (s, m) = store(&l, 1);
    let t0 = 1_800_000_000_000u64;
    // The oldest entry is a key that spent its burst (and keeps being refused: no write).
    for _ in 0..10 {
        assert!(admitted(s.take(&m, &[0; 16], t0)));
    }
    for k in 1..PER_SLOT as u8 {
        assert!(admitted(s.take(&m, &[k; 16], t0 + 1000)));
    }
    assert!(!admitted(s.take(&m, &[0; 16], t0 + 2000)));
    assert_eq!(
        s.take(&m, &[99; 16], t0 + 3000),
        Ok(Taken::Admitted { evicted_live: true })
    );
    // Still spent: evicting it would have handed it a fresh burst.
    assert!(!admitted(s.take(&m, &[0; 16], t0 + 3000)));
}

#[test]
fn a_missing_slot_refuses_rather_than_creating_it() {
    let l = rate(1.0, 1);
    let s = LimitStore::new(&l, 16);
    assert_eq!(
        s.take(&Memory::default(), &ID, 1),
        Err(Reason::LimitUnavailable)
    );
}

/// A host whose first write loses the race: another worker takes the last unit first.
struct Racing<'a> {
    inner: Memory,
    raced: Cell<bool>,
    other: &'a LimitStore,
}

impl SharedData for Racing<'_> {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        if cas.is_some() && !self.raced.replace(true) {
            assert!(admitted(self.other.take(&self.inner, &ID, 1_000)));
        }
        self.inner.set(key, value, cas)
    }
}

#[test]
fn two_workers_racing_for_the_last_unit_get_it_once() {
    let l = budget(1, 60, false);
    let other = LimitStore::new(&l, 16);
    let racing = Racing {
        inner: Memory::default(),
        raced: Cell::new(false),
        other: &other,
    };
    other.prepare(&racing.inner).unwrap();
    let s = LimitStore::new(&l, 16);
    assert!(!admitted(s.take(&racing, &ID, 1_000)));
}

#[test]
fn a_changed_limit_starts_with_fresh_counters() {
    let m = Memory::default();
    let a = LimitStore::new(&budget(1, 60, false), 16);
    let b = LimitStore::new(&budget(2, 60, false), 16);
    a.prepare(&m).unwrap();
    b.prepare(&m).unwrap();
    assert!(admitted(a.take(&m, &ID, 1_000)));
    assert!(!admitted(a.take(&m, &ID, 1_000)));
    assert!(admitted(b.take(&m, &ID, 1_000)));
}

#[test]
fn keys_are_what_the_config_names_and_values_are_checked() {
    let l = limit(
        serde_json::json!({"name": "k", "key": ["agent", "claim.tenant"], "rate": {"per_s": 1, "burst": 1}}),
    );
    let claims = serde_json::json!({"tenant": "acme"});
    let other = serde_json::json!({"tenant": "globex"});
    let f = |agent, claims: &'static serde_json::Value| Facts {
        agent,
        principal: "user:alice",
        chain: &[],
        route: None,
        method: "GET",
        mcp: None,
        tenant: None,
        client: None,
        agent_type: None,
        claims: claims.as_object().unwrap(),
    };
    let claims: &'static serde_json::Value = Box::leak(Box::new(claims));
    let other: &'static serde_json::Value = Box::leak(Box::new(other));
    assert_eq!(l.id(&f("agent:a", claims)), l.id(&f("agent:a", claims)));
    assert_ne!(l.id(&f("agent:a", claims)), l.id(&f("agent:b", claims)));
    assert_ne!(l.id(&f("agent:a", claims)), l.id(&f("agent:a", other)));
    // The model's tenant: one counter per tenant whichever claim the profile read it from;
    // a token without one shares the counter of every token without one.
    let by_tenant = limit(
        serde_json::json!({"name": "t", "key": ["tenant"], "rate": {"per_s": 1, "burst": 1}}),
    );
    let empty: &'static serde_json::Value = Box::leak(Box::new(serde_json::json!({})));
    let t = |tenant| Facts {
        tenant,
        ..f("agent:a", empty)
    };
    assert_eq!(
        by_tenant.id(&t(Some("acme"))),
        by_tenant.id(&Facts {
            agent: "agent:b",
            ..t(Some("acme"))
        })
    );
    assert_ne!(
        by_tenant.id(&t(Some("acme"))),
        by_tenant.id(&t(Some("globex")))
    );
    assert_ne!(by_tenant.id(&t(None)), by_tenant.id(&t(Some(""))));
    let by_client = limit(
        serde_json::json!({"name": "t", "key": ["client"], "rate": {"per_s": 1, "burst": 1}}),
    );
    assert_ne!(
        by_client.id(&Facts {
            client: Some("acme"),
            ..t(None)
        }),
        by_client.id(&t(Some("acme")))
    );
    let mut problems = Vec::new();
    limit(
        serde_json::json!({"name": "Bad Name", "key": ["agnet", "agent", "agent"],
        "match": {"methods": ["get"], "routes": ["nowhere"]},
        "rate": {"per_s": 0, "burst": 1}, "budget": {"count": 1, "window_s": 1}}),
    )
    .validate("$.limits[0]", &["tickets-read"], &mut problems);
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.limits[0].name",
            "$.limits[0].key[0]",
            "$.limits[0].key[2]",
            "$.limits[0].match.methods[0]",
            "$.limits[0].match.routes[0]",
            "$.limits[0]"
        ]
    );
    // An mcp.name key applies to MCP calls only; mcp_tools to tools/call of those tools.
    let tool = limit(
        serde_json::json!({"name": "t", "key": ["agent", "mcp.name"],
        "match": {"mcp_tools": ["create_ticket"]}, "rate": {"per_s": 1, "burst": 1}}),
    );
    let mut call = f("agent:a", claims);
    assert!(!tool.applies(&call));
    call.mcp = Some(("tools/call", "create_ticket"));
    assert!(tool.applies(&call));
    call.mcp = Some(("prompts/get", "create_ticket"));
    assert!(!tool.applies(&call));
}
