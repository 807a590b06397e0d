//! Automatic quarantine (`quarantine`): an agent refused more than `denials` times within
//! `within_s` seconds is refused everything for `for_s` seconds on this Envoy, as the
//! acting agent or as any actor of a delegation chain (`agent.quarantined`).
//!
//! Two stores in the host's shared data, so every worker counts and enforces alike: the
//! denials of each agent, counted by a sliding-window budget of `denials` (the
//! [`crate::limits`] arithmetic: the denial that finds it spent starts the quarantine), and
//! the quarantines themselves, one 32-byte entry each (`16-byte agent id || since ms ||
//! until ms`) in slots of 16 written with compare-and-swap. A full slot forgets an ended
//! quarantine first, else the one that ends soonest. An operator lifts a quarantine from
//! the registry: a record's `released_at` (UNIX seconds) lifts every quarantine of that
//! agent that began at or before it.

pub mod report;

use sha2::{Digest, Sha256};

use serde::Deserialize;

#[cfg(tools)]
use schemars::JsonSchema;

use crate::limits::{LimitConfig, LimitStore, Taken, WindowConfig};
use crate::problem::Problem;
use crate::reason::Reason;
use crate::shared::SharedData;

/// The `quarantine` section.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuarantineConfig {
    /// Refusals of one agent tolerated within `within_s` (1..=100000): the next one
    /// quarantines it.
    pub denials: u64,
    /// The window the refusals are counted in, seconds (1..=86400).
    pub within_s: u64,
    /// How long a quarantine lasts, seconds (1..=2592000, 30 days).
    pub for_s: u64,
    /// Agents tracked (1..=1000000; default 10000).
    #[serde(default = "default_max_agents")]
    pub max_agents: u64,
    /// Report each quarantine to a Shared Signals transmitter (docs/limits.md).
    #[serde(default)]
    pub report: Option<report::ReportConfig>,
}

fn default_max_agents() -> u64 {
    10_000
}

impl QuarantineConfig {
    pub fn validate(&self, out: &mut Vec<Problem>) {
        let mut within = |path: &str, v: u64, lo: u64, hi: u64| {
            if !(lo..=hi).contains(&v) {
                out.push(Problem {
                    path: format!("$.quarantine.{path}"),
                    message: format!("{v} is outside {lo}..={hi}"),
                });
            }
        };
        within("denials", self.denials, 1, 100_000);
        within("within_s", self.within_s, 1, 86_400);
        within(
            "for_s",
            self.for_s,
            1,
            crate::revocation::MAX_QUARANTINE_S as u64,
        );
        within("max_agents", self.max_agents, 1, 1_000_000);
    }
}

/// A quarantine that began with this decision: what the audit event records.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub agent: String,
    /// The agent's issuer: the acting actor's `iss` when its `act` names one, else the
    /// token's.
    pub issuer: String,
    /// More than this many refusals within `within_s`.
    pub denials: u64,
    pub within_s: u64,
    /// UNIX seconds.
    pub since: f64,
    pub until: f64,
    /// The agent's last refused decisions this worker saw, oldest first (this one last).
    pub decision_ids: Vec<String>,
}

const PER_SLOT: usize = 16;
const ENTRY: usize = 32;
const FORMAT: u8 = 1;
const ATTEMPTS: usize = 8;
/// Decision ids kept per agent (per worker) as evidence.
const EVIDENCE: usize = 5;
/// Agents whose recent decision ids a worker keeps.
const EVIDENCE_AGENTS: usize = 1024;

/// Both stores' geometry, and this worker's recent refusals (evidence only).
#[derive(Debug)]
pub struct QuarantineStore {
    cfg: QuarantineConfig,
    counts: LimitStore,
    slots: u32,
    recent: std::collections::HashMap<String, std::collections::VecDeque<String>>,
}

fn agent_id(agent: &str) -> [u8; 16] {
    let digest: [u8; 32] = Sha256::digest(agent.as_bytes()).into();
    let mut id = [0u8; 16];
    id.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    id
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

impl QuarantineStore {
    pub fn new(cfg: &QuarantineConfig) -> QuarantineStore {
        let max = usize::try_from(cfg.max_agents).unwrap_or(usize::MAX);
        let counter = LimitConfig {
            name: "quarantine".into(),
            key: vec!["agent".into()],
            matches: Default::default(),
            rate: None,
            budget: Some(WindowConfig {
                count: cfg.denials,
                window_s: cfg.within_s,
                sliding: true,
            }),
        };
        QuarantineStore {
            cfg: cfg.clone(),
            counts: LimitStore::new(&counter, max),
            slots: u32::try_from(max.div_ceil(PER_SLOT).max(1)).unwrap_or(u32::MAX),
            recent: std::collections::HashMap::new(),
        }
    }

    fn key(&self, slot: u32) -> String {
        // The slot count in the key: another `max_agents` maps agents elsewhere.
        format!("agent_iam/quarantine/{}/{slot}", self.slots)
    }

    fn slot_of(&self, id: &[u8; 16]) -> String {
        let word = id
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        self.key(word % self.slots)
    }

    /// Creates both stores' slots (once per host, before requests).
    pub fn prepare(&self, shared: &dyn SharedData) -> Result<(), Reason> {
        self.counts
            .prepare(shared)
            .map_err(|_| Reason::AgentQuarantineUnavailable)?;
        crate::shared::create_slots(shared, (0..self.slots).map(|s| self.key(s)), FORMAT)
            .map_err(|_| Reason::AgentQuarantineUnavailable)
    }

    /// `agent`'s quarantine in force at `now_ms`: `(since_ms, until_ms)`.
    pub fn active(
        &self,
        shared: &dyn SharedData,
        agent: &str,
        now_ms: u64,
    ) -> Result<Option<(u64, u64)>, Reason> {
        let id = agent_id(agent);
        let (Some(bucket), _) = shared
            .get(&self.slot_of(&id))
            .map_err(|_| Reason::AgentQuarantineUnavailable)?
        else {
            return Err(Reason::AgentQuarantineUnavailable);
        };
        let Some((&FORMAT, body)) = bucket.split_first() else {
            return Err(Reason::AgentQuarantineUnavailable);
        };
        Ok(body
            .chunks_exact(ENTRY)
            .find(|e| e.get(..16) == Some(&id[..]))
            .map(|e| (u64_at(e, 16), u64_at(e, 24)))
            .filter(|(_, until)| *until > now_ms))
    }

    /// Counts one refusal of `agent` (decision `decision_id`) at `now_ms`. When it is one
    /// more than `denials` within `within_s` and the agent is not quarantined already (a
    /// quarantine that began at or before `released_ms`, the registry's release, is over),
    /// the agent is quarantined from now for `for_s`: the evidence is returned.
    pub fn count_denial(
        &mut self,
        shared: &dyn SharedData,
        agent: &str,
        issuer: &str,
        decision_id: &str,
        now_ms: u64,
        released_ms: Option<u64>,
    ) -> Result<Option<Evidence>, Reason> {
        if self.recent.len() >= EVIDENCE_AGENTS && !self.recent.contains_key(agent) {
            self.recent.clear();
        }
        let ids = self.recent.entry(agent.to_owned()).or_default();
        if ids.len() >= EVIDENCE {
            ids.pop_front();
        }
        ids.push_back(decision_id.to_owned());
        let id = agent_id(agent);
        match self
            .counts
            .take(shared, &id, now_ms)
            .map_err(|_| Reason::AgentQuarantineUnavailable)?
        {
            Taken::Admitted { .. } => return Ok(None),
            Taken::Refused { .. } => {}
        }
        let until_ms = now_ms.saturating_add(self.cfg.for_s.saturating_mul(1000));
        if !self.start(shared, &id, now_ms, until_ms, released_ms)? {
            return Ok(None);
        }
        Ok(Some(Evidence {
            agent: agent.to_owned(),
            issuer: issuer.to_owned(),
            denials: self.cfg.denials,
            within_s: self.cfg.within_s,
            since: now_ms as f64 / 1000.0,
            until: until_ms as f64 / 1000.0,
            decision_ids: self
                .recent
                .get(agent)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default(),
        }))
    }

    /// Writes the quarantine unless one is in force already (`false` then).
    fn start(
        &self,
        shared: &dyn SharedData,
        id: &[u8; 16],
        now_ms: u64,
        until_ms: u64,
        released_ms: Option<u64>,
    ) -> Result<bool, Reason> {
        let key = self.slot_of(id);
        for _ in 0..ATTEMPTS {
            let (Some(bucket), Some(cas)) = shared
                .get(&key)
                .map_err(|_| Reason::AgentQuarantineUnavailable)?
            else {
                return Err(Reason::AgentQuarantineUnavailable);
            };
            let Some((&FORMAT, body)) = bucket.split_first() else {
                return Err(Reason::AgentQuarantineUnavailable);
            };
            let mut entries: Vec<[u8; ENTRY]> = body
                .chunks_exact(ENTRY)
                .filter_map(|e| <[u8; ENTRY]>::try_from(e).ok())
                .collect();
            if let Some(e) = entries.iter().find(|e| e.get(..16) == Some(&id[..])) {
                let released = released_ms.is_some_and(|r| r >= u64_at(e, 16));
                if u64_at(e, 24) > now_ms && !released {
                    return Ok(false);
                }
            }
            entries.retain(|e| e.get(..16) != Some(&id[..]));
            if entries.len() >= PER_SLOT {
                // An ended quarantine first, else the one that ends soonest.
                let victim = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| u64_at(e.as_slice(), 24))
                    .map(|(i, _)| i);
                if let Some(v) = victim {
                    entries.swap_remove(v);
                }
            }
            let mut fresh = [0u8; ENTRY];
            fresh[..16].copy_from_slice(id);
            fresh[16..24].copy_from_slice(&now_ms.to_le_bytes());
            fresh[24..].copy_from_slice(&until_ms.to_le_bytes());
            entries.push(fresh);
            let mut out = Vec::with_capacity(1 + entries.len() * ENTRY);
            out.push(FORMAT);
            for e in &entries {
                out.extend_from_slice(e);
            }
            if shared.set(&key, &out, Some(cas)).is_ok() {
                return Ok(true);
            }
        }
        Err(Reason::AgentQuarantineUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::Memory;

    fn store(denials: u64) -> (QuarantineStore, Memory) {
        let s = QuarantineStore::new(&QuarantineConfig {
            denials,
            within_s: 60,
            for_s: 300,
            max_agents: 16,
            report: None,
        });
        let m = Memory::default();
        s.prepare(&m).unwrap();
        (s, m)
    }

    #[test]
    fn more_than_k_refusals_within_the_window_quarantine_the_agent_once() {
        let (mut s, m) = store(3);
        let t0 = 1_800_000_000_000u64;
        for i in 0..3 {
            assert_eq!(
                s.count_denial(
                    &m,
                    "agent:a",
                    "https://idp.test",
                    &format!("d{i}"),
                    t0 + i,
                    None
                )
                .unwrap(),
                None
            );
        }
        assert_eq!(s.active(&m, "agent:a", t0).unwrap(), None);
        let e = s
            .count_denial(&m, "agent:a", "https://idp.test", "d3", t0 + 10, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.agent.as_str(), e.denials, e.within_s),
            ("agent:a", 3, 60)
        );
        assert_eq!(e.decision_ids, ["d0", "d1", "d2", "d3"]);
        assert_eq!(e.until - e.since, 300.0);
        assert_eq!(
            s.active(&m, "agent:a", t0 + 11).unwrap(),
            Some((t0 + 10, t0 + 300_010))
        );
        // Further refusals while quarantined start nothing new; another agent is free.
        assert_eq!(
            s.count_denial(&m, "agent:a", "https://idp.test", "d4", t0 + 20, None)
                .unwrap(),
            None
        );
        assert_eq!(s.active(&m, "agent:b", t0 + 11).unwrap(), None);
        // It ends.
        assert_eq!(s.active(&m, "agent:a", t0 + 300_010).unwrap(), None);
        // Quarantined again at once after a release by the registry (released_ms after it
        // began), not before.
        let (mut s, m) = store(1);
        for i in 0..2 {
            let _ = s
                .count_denial(&m, "agent:a", "https://idp.test", "x", t0 + i, None)
                .unwrap();
        }
        assert!(s.active(&m, "agent:a", t0 + 2).unwrap().is_some());
        assert_eq!(
            s.count_denial(&m, "agent:a", "https://idp.test", "y", t0 + 3, None)
                .unwrap(),
            None
        );
        let again = s
            .count_denial(&m, "agent:a", "https://idp.test", "z", t0 + 4, Some(t0 + 2))
            .unwrap();
        assert_eq!(again.map(|e| e.since), Some((t0 + 4) as f64 / 1000.0));
    }

    #[test]
    fn refusals_spread_wider_than_the_window_never_quarantine() {
        let (mut s, m) = store(2);
        let t0 = 1_800_000_000_000u64;
        for i in 0..20u64 {
            assert_eq!(
                s.count_denial(
                    &m,
                    "agent:a",
                    "https://idp.test",
                    "d",
                    t0 + i * 40_000,
                    None
                )
                .unwrap(),
                None
            );
        }
    }

    #[test]
    fn a_missing_store_refuses() {
        let (s, _) = store(1);
        assert_eq!(
            s.active(&Memory::default(), "agent:a", 1),
            Err(Reason::AgentQuarantineUnavailable)
        );
    }
}
