//! Per-identity limits (`limits`): token-bucket rates and fixed or sliding-window budgets,
//! keyed on what the filter verified (the acting agent, the principal, the whole chain, the
//! route, the method, the MCP call's name, a token claim) and shared by every worker of a
//! host.
//!
//! Each limit's state lives in its own fixed set of shared-data slots, like the DPoP replay
//! cache: each slot
//! is one format byte then at most [`PER_SLOT`] entries of [`ENTRY`] bytes (`16-byte key
//! id || touched ms || state`), updated with compare-and-swap and retried when another
//! worker wrote first, so two workers never both take the last unit of a budget. Slots are
//! created at configure time ([`LimitStore::prepare`]); a missing slot on the request path
//! refuses (`limit.unavailable`). A key is the first 16 bytes of SHA-256 over the limit's
//! name and the key's parts.
//!
//! The key space is bounded (`limits_max_keys` per limit, rounded up to whole slots). A slot
//! that is full takes a new key by evicting, first, an entry whose state is back to "never
//! seen" (a bucket refilled, a window passed: forgetting it changes nothing), else the entry
//! with the most left (a spent counter is forgotten last, so hammering a key does not make
//! it the one forgotten); that forgets a live count (the key starts afresh) and is counted
//! (`agent_iam_limit_evictions_total`). The slot count is part of the slots' keys: another
//! `limits_max_keys` starts with fresh counters.
//!
//! Time comes from the caller (milliseconds). A clock going back refills nothing and opens
//! no new window; a huge gap refills a bucket to its burst and no further.

use sha2::{Digest, Sha256};

use serde::Deserialize;

#[cfg(tools)]
use schemars::JsonSchema;

use crate::problem::Problem;
use crate::reason::Reason;
use crate::shared::SharedData;

/// One entry of `limits`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Unique; the refusal's reason is `limit.<name>` (lower-case letters, digits, `-`,
    /// `_`; 1..=64).
    pub name: String,
    /// What one counter is kept for: `agent` (the acting agent), `principal` (the token's
    /// subject), `chain` (every actor, newest first), `route`, `method`, `mcp.name` (the
    /// MCP call's tool or prompt name or resource URI; the limit then applies to MCP calls
    /// only), `claim.<name>` (a claim of the verified token). At least one.
    pub key: Vec<String>,
    /// Which requests count (every condition given must hold; none: every request).
    #[serde(default, rename = "match")]
    pub matches: MatchConfig,
    /// A token bucket: `per_s` units refilled per second, up to `burst`.
    #[serde(default)]
    pub rate: Option<RateConfig>,
    /// At most `count` requests per `window_s` seconds.
    #[serde(default)]
    pub budget: Option<WindowConfig>,
}

/// `limits[].match`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Upper-case methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Route names (`routes[].name`).
    #[serde(default)]
    pub routes: Vec<String>,
    /// MCP tool names: the limit counts `tools/call` of these tools.
    #[serde(default)]
    pub mcp_tools: Vec<String>,
}

/// `limits[].rate`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Units refilled per second (0.0001..=100000).
    pub per_s: f64,
    /// Units at most, and at first (1..=1000000).
    pub burst: u64,
}

/// `limits[].budget`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Requests per window (1..=1000000000).
    pub count: u64,
    /// The window, seconds (1..=2678400, 31 days).
    pub window_s: u64,
    /// `false` (default): fixed windows from the UNIX epoch (`window_s` 3600: each clock
    /// hour). `true`: any `window_s` seconds, counted in steps of `window_s`/15 (a step
    /// that overlaps the window counts whole: never more than `count` in any window).
    #[serde(default)]
    pub sliding: bool,
}

/// The facts a limit's key may name, all verified.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub agent: &'a str,
    pub principal: &'a str,
    /// Actors, newest first.
    pub chain: &'a [crate::delegation::Actor],
    pub route: Option<&'a str>,
    pub method: &'a str,
    /// The MCP call's method and name, on an MCP route once its body was read.
    pub mcp: Option<(&'a str, &'a str)>,
    /// The identity profile's tenant, client and agent type (`None`: the token names none).
    pub tenant: Option<&'a str>,
    pub client: Option<&'a str>,
    pub agent_type: Option<&'a str>,
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
}

const KEYS: &[&str] = &[
    "agent",
    "principal",
    "chain",
    "route",
    "method",
    "mcp.name",
    "tenant",
    "client",
    "agent_type",
];

impl LimitConfig {
    /// Checks one entry (`at`: its JSON path).
    pub fn validate(&self, at: &str, routes: &[&str], problems: &mut Vec<Problem>) {
        let mut bad = |path: &str, message: String| {
            problems.push(Problem {
                path: format!("{at}{path}"),
                message,
            })
        };
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            bad(
                ".name",
                format!(
                    "{:?} is not a limit name (1 to 64 lower-case letters, digits, `-`, `_`)",
                    self.name
                ),
            );
        }
        if self.key.is_empty() {
            bad(".key", "at least one key part is required".into());
        }
        for (i, k) in self.key.iter().enumerate() {
            let claim = k
                .strip_prefix("claim.")
                .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_graphic()));
            if !KEYS.contains(&k.as_str()) && !claim {
                bad(
                    &format!(".key[{i}]"),
                    format!("{k:?} is not a key part (agent, principal, chain, route, method, mcp.name, tenant, client, agent_type, claim.<name>)"),
                );
            }
            if self.key.get(..i).is_some_and(|before| before.contains(k)) {
                bad(&format!(".key[{i}]"), format!("{k:?} is named twice"));
            }
        }
        for (i, m) in self.matches.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                bad(
                    &format!(".match.methods[{i}]"),
                    format!("{m:?} is not an upper-case method"),
                );
            }
        }
        for (i, r) in self.matches.routes.iter().enumerate() {
            if !routes.contains(&r.as_str()) {
                bad(
                    &format!(".match.routes[{i}]"),
                    format!("{r:?} is not the name of a configured route"),
                );
            }
        }
        for (i, t) in self.matches.mcp_tools.iter().enumerate() {
            if t.is_empty() {
                bad(&format!(".match.mcp_tools[{i}]"), "empty tool name".into());
            }
        }
        match (&self.rate, &self.budget) {
            (Some(r), None) => {
                if !(0.0001..=100_000.0).contains(&r.per_s) {
                    bad(
                        ".rate.per_s",
                        format!("{} is outside 0.0001..=100000", r.per_s),
                    );
                }
                if !(1..=1_000_000).contains(&r.burst) {
                    bad(".rate.burst", format!("{} is outside 1..=1000000", r.burst));
                }
            }
            (None, Some(b)) => {
                if !(1..=1_000_000_000).contains(&b.count) {
                    bad(
                        ".budget.count",
                        format!("{} is outside 1..=1000000000", b.count),
                    );
                }
                if !(1..=2_678_400).contains(&b.window_s) {
                    bad(
                        ".budget.window_s",
                        format!("{} is outside 1..=2678400", b.window_s),
                    );
                }
            }
            _ => bad("", "exactly one of `rate` and `budget` is required".into()),
        }
    }

    /// Whether the request counts against this limit.
    pub fn applies(&self, f: &Facts<'_>) -> bool {
        let m = &self.matches;
        (m.methods.is_empty() || m.methods.iter().any(|x| x == f.method))
            && (m.routes.is_empty() || f.route.is_some_and(|r| m.routes.iter().any(|x| x == r)))
            && (m.mcp_tools.is_empty()
                || f.mcp.is_some_and(|(method, name)| {
                    method == "tools/call" && m.mcp_tools.iter().any(|t| t == name)
                }))
            && (!self.key.iter().any(|k| k == "mcp.name")
                || f.mcp.is_some_and(|(_, name)| !name.is_empty()))
    }

    /// The counter's id for this request: SHA-256 over the name and each key part's value
    /// (a missing claim is its own value, shared by every token without it).
    pub fn id(&self, f: &Facts<'_>) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        for k in &self.key {
            h.update([0u8]);
            match k.as_str() {
                "agent" => h.update(f.agent.as_bytes()),
                "principal" => h.update(f.principal.as_bytes()),
                "chain" => {
                    for a in f.chain {
                        h.update(a.sub.as_bytes());
                        h.update([1u8]);
                    }
                }
                "route" => h.update(f.route.unwrap_or_default().as_bytes()),
                "method" => h.update(f.method.as_bytes()),
                "mcp.name" => h.update(f.mcp.map(|(_, n)| n).unwrap_or_default().as_bytes()),
                "tenant" => optional(&mut h, f.tenant),
                "client" => optional(&mut h, f.client),
                "agent_type" => optional(&mut h, f.agent_type),
                claim => {
                    let name = claim.strip_prefix("claim.").unwrap_or(claim);
                    match f.claims.get(name) {
                        None => h.update([2u8]),
                        Some(serde_json::Value::String(s)) => {
                            h.update([3u8]);
                            h.update(s.as_bytes());
                        }
                        Some(v) => {
                            h.update([4u8]);
                            h.update(v.to_string().as_bytes());
                        }
                    }
                }
            }
        }
        let digest: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
        id
    }
}

/// A model field in a counter id: absent is its own value, distinct from every string.
fn optional(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update([2u8]),
        Some(s) => {
            h.update([3u8]);
            h.update(s.as_bytes());
        }
    }
}

/// Entries per slot.
pub const PER_SLOT: usize = 16;
/// Steps of a sliding window.
pub const STEPS: usize = 16;
/// `id (16) || touched ms (8) || a (8) || b (8) || STEPS counts (4 each)`.
pub const ENTRY: usize = 16 + 8 + 8 + 8 + STEPS * 4;
const FORMAT: u8 = 1;
/// CAS attempts before the store counts as unavailable (`limit.unavailable`).
const ATTEMPTS: usize = 8;

/// What [`LimitStore::take`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Taken {
    /// Admitted and counted; `evicted_live`: a live entry was forgotten to make room.
    Admitted { evicted_live: bool },
    /// Refused: nothing was counted; retry after this many seconds (at least 1).
    Refused { retry_after_s: u64 },
}

/// One limit's counters: its slots (the same in every worker of a host) and its arithmetic.
#[derive(Debug, Clone)]
pub struct LimitStore {
    limit: LimitConfig,
    /// `agent_iam/limits/<name>/<definition hash>/`: a limit whose arithmetic changes
    /// starts with fresh counters, never reads the old ones another way.
    prefix: String,
    slots: u32,
}

/// One decoded entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: [u8; 16],
    touched_ms: u64,
    a: u64,
    b: u64,
    steps: [u32; STEPS],
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

impl Entry {
    fn decode(b: &[u8]) -> Option<Entry> {
        if b.len() != ENTRY {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(b.get(..16)?);
        let mut steps = [0u32; STEPS];
        for (i, s) in steps.iter_mut().enumerate() {
            let at = 40 + i * 4;
            *s = b
                .get(at..at + 4)
                .and_then(|x| <[u8; 4]>::try_from(x).ok())
                .map_or(0, u32::from_le_bytes);
        }
        Some(Entry {
            id,
            touched_ms: u64_at(b, 16),
            a: u64_at(b, 24),
            b: u64_at(b, 32),
            steps,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.touched_ms.to_le_bytes());
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        for s in self.steps {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

/// A limit's arithmetic on one entry. `None` for the entry: never seen.
trait Kind {
    /// Admit (and the new state) or refuse (and seconds to wait).
    fn take(&self, e: Option<&Entry>, now_ms: u64) -> Result<(u64, u64, [u32; STEPS]), u64>;
    /// Whether forgetting the entry changes no future answer.
    fn idle(&self, e: &Entry, now_ms: u64) -> bool;
    /// How much the key has left, 0 (spent) to 1 (untouched): forgetting the entry with the
    /// most left gives away the least (a spent counter is forgotten last).
    fn slack(&self, e: &Entry, now_ms: u64) -> f64;
}

/// Token bucket: `a` = units left × 1e6 (fixed point), `b` = when, ms.
impl Kind for RateConfig {
    fn take(&self, e: Option<&Entry>, now_ms: u64) -> Result<(u64, u64, [u32; STEPS]), u64> {
        let burst = self.burst as f64;
        let (left, at) = match e {
            Some(e) => (e.a as f64 / 1e6, e.b),
            None => (burst, now_ms),
        };
        // A clock going back refills nothing (and keeps the later time).
        let elapsed_s = now_ms.saturating_sub(at) as f64 / 1000.0;
        let left = (left + elapsed_s * self.per_s).min(burst);
        let at = at.max(now_ms);
        if left >= 1.0 {
            Ok((((left - 1.0) * 1e6) as u64, at, [0; STEPS]))
        } else {
            Err(((1.0 - left) / self.per_s).ceil().max(1.0) as u64)
        }
    }

    fn idle(&self, e: &Entry, now_ms: u64) -> bool {
        self.slack(e, now_ms) >= 1.0
    }

    fn slack(&self, e: &Entry, now_ms: u64) -> f64 {
        let left = e.a as f64 / 1e6 + now_ms.saturating_sub(e.b) as f64 / 1000.0 * self.per_s;
        (left / self.burst as f64).min(1.0)
    }
}

/// Fixed window: `a` = the window's index (ms / window), `b` = count in it.
/// Sliding: `a` = the newest step's index (ms / step), `steps` = counts of the last STEPS
/// steps, `steps[index % STEPS]`.
impl Kind for WindowConfig {
    fn take(&self, e: Option<&Entry>, now_ms: u64) -> Result<(u64, u64, [u32; STEPS]), u64> {
        let window_ms = self.window_s.saturating_mul(1000).max(1);
        if !self.sliding {
            let index = now_ms / window_ms;
            let (index, count) = match e {
                // A clock going back stays in the later window.
                Some(e) if e.a >= index => (e.a, e.b),
                _ => (index, 0),
            };
            if count < self.count {
                return Ok((index, count + 1, [0; STEPS]));
            }
            let ends_ms = (index + 1).saturating_mul(window_ms);
            return Err(ends_ms.saturating_sub(now_ms).div_ceil(1000).max(1));
        }
        let step_ms = sliding_step_ms(window_ms);
        let now_step = now_ms / step_ms;
        let (newest, mut steps) = match e {
            Some(e) => (e.a, e.steps),
            None => (now_step, [0; STEPS]),
        };
        let newest = if now_step > newest {
            // Steps that left the window count nothing any more.
            for s in newest + 1..=now_step.min(newest + STEPS as u64) {
                if let Some(c) = steps.get_mut((s % STEPS as u64) as usize) {
                    *c = 0;
                }
            }
            now_step
        } else {
            newest
        };
        let total: u64 = steps.iter().map(|c| u64::from(*c)).sum();
        if total < self.count {
            if let Some(c) = steps.get_mut((newest % STEPS as u64) as usize) {
                *c = c.saturating_add(1);
            }
            return Ok((newest, 0, steps));
        }
        // The oldest step that holds a count leaves the window first.
        let oldest = (0..STEPS as u64)
            .map(|back| newest.saturating_sub(STEPS as u64 - 1) + back)
            .find(|s| {
                steps
                    .get((s % STEPS as u64) as usize)
                    .is_some_and(|c| *c > 0)
            })
            .unwrap_or(newest);
        let frees_ms = (oldest + STEPS as u64).saturating_mul(step_ms);
        Err(frees_ms.saturating_sub(now_ms).div_ceil(1000).max(1))
    }

    fn idle(&self, e: &Entry, now_ms: u64) -> bool {
        let window_ms = self.window_s.saturating_mul(1000).max(1);
        if !self.sliding {
            return now_ms / window_ms > e.a;
        }
        now_ms / sliding_step_ms(window_ms) >= e.a + STEPS as u64
    }

    fn slack(&self, e: &Entry, now_ms: u64) -> f64 {
        if self.idle(e, now_ms) {
            return 1.0;
        }
        let used = if self.sliding {
            e.steps.iter().map(|c| u64::from(*c)).sum()
        } else {
            e.b
        };
        1.0 - (used as f64 / self.count as f64).min(1.0)
    }
}

/// A sliding window's step: the last [`STEPS`] steps, the current one partly elapsed,
/// always cover the whole window (so a count is never forgotten early).
fn sliding_step_ms(window_ms: u64) -> u64 {
    window_ms.div_ceil(STEPS as u64 - 1).max(1)
}

impl LimitStore {
    /// `limit`'s counters, at least `max_keys` of them (rounded up to whole slots).
    pub fn new(limit: &LimitConfig, max_keys: usize) -> LimitStore {
        let slots = max_keys.div_ceil(PER_SLOT).max(1);
        let arithmetic = format!(
            "{:?}|{:?}|{:?}|{slots}",
            limit.rate, limit.budget, limit.key
        );
        let digest = Sha256::digest(arithmetic.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        LimitStore {
            limit: limit.clone(),
            prefix: format!("agent_iam/limits/{}/{hash}/", limit.name),
            slots: u32::try_from(slots).unwrap_or(u32::MAX),
        }
    }

    pub fn limit(&self) -> &LimitConfig {
        &self.limit
    }

    fn key(&self, slot: u32) -> String {
        format!("{}{slot}", self.prefix)
    }

    /// Creates every slot that does not exist yet (empty). Run once per host before any
    /// request is decided.
    pub fn prepare(&self, shared: &dyn SharedData) -> Result<(), Reason> {
        crate::shared::create_slots(shared, (0..self.slots).map(|s| self.key(s)), FORMAT)
            .map_err(|_| Reason::LimitUnavailable)
    }

    /// Takes one unit for the counter `id` at `now_ms`.
    pub fn take(
        &self,
        shared: &dyn SharedData,
        id: &[u8; 16],
        now_ms: u64,
    ) -> Result<Taken, Reason> {
        let kind: &dyn Kind = match (&self.limit.rate, &self.limit.budget) {
            (Some(r), _) => r,
            (None, Some(b)) => b,
            (None, None) => return Err(Reason::InternalError),
        };
        let word = id
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let key = self.key(word % self.slots);
        for _ in 0..ATTEMPTS {
            let (Some(bucket), Some(cas)) =
                shared.get(&key).map_err(|_| Reason::LimitUnavailable)?
            else {
                return Err(Reason::LimitUnavailable);
            };
            let Some((&FORMAT, body)) = bucket.split_first() else {
                return Err(Reason::LimitUnavailable);
            };
            let mut entries: Vec<Entry> =
                body.chunks_exact(ENTRY).filter_map(Entry::decode).collect();
            let found = entries.iter().position(|e| &e.id == id);
            let (a, b, steps) = match kind.take(found.and_then(|i| entries.get(i)), now_ms) {
                Ok(state) => state,
                Err(retry_after_s) => return Ok(Taken::Refused { retry_after_s }),
            };
            let fresh = Entry {
                id: *id,
                touched_ms: now_ms,
                a,
                b,
                steps,
            };
            let mut evicted_live = false;
            match found.and_then(|i| entries.get_mut(i)) {
                Some(e) => *e = fresh,
                None => {
                    if entries.len() >= PER_SLOT {
                        let idle = entries.iter().position(|e| kind.idle(e, now_ms));
                        let victim = idle.or_else(|| {
                            evicted_live = true;
                            // The most left, then the oldest touched.
                            entries
                                .iter()
                                .enumerate()
                                .max_by(|(_, x), (_, y)| {
                                    kind.slack(x, now_ms)
                                        .total_cmp(&kind.slack(y, now_ms))
                                        .then(y.touched_ms.cmp(&x.touched_ms))
                                })
                                .map(|(i, _)| i)
                        });
                        if let Some(v) = victim {
                            entries.swap_remove(v);
                        }
                    }
                    entries.push(fresh);
                }
            }
            let mut out = Vec::with_capacity(1 + entries.len() * ENTRY);
            out.push(FORMAT);
            for e in &entries {
                e.encode(&mut out);
            }
            if shared.set(&key, &out, Some(cas)).is_ok() {
                return Ok(Taken::Admitted { evicted_live });
            }
        }
        Err(Reason::LimitUnavailable)
    }
}

#[cfg(test)]
mod tests;
