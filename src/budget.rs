//! A per-client budget of failed signature checks (`verify_budget`), against floods of
//! forged tokens.
//!
//! A forged token with a well-formed header and claims costs a full signature check, the
//! dearest refusal the filter makes. Each client (the downstream address the host reports)
//! may cause `burst` failed checks, refilled at `per_client_per_s`; once its bucket is
//! empty, its tokens that no cache tier can answer are refused with `token.verify_budget`
//! (429) *without* verifying. Tokens that verified before keep working from the cache, so
//! agents already at work are not affected by a flood from their own address.
//!
//! Keyed by address, the budget trusts nothing the client sends (no `x-forwarded-for`):
//! behind a load balancer every client shares its address, so enable it only where the
//! gateway sees real client addresses (docs/SECURITY.md, "Floods of forged tokens").

use std::collections::HashMap;

use serde::Deserialize;

#[cfg(tools)]
use schemars::JsonSchema;

/// The `verify_budget` section of the plugin configuration.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Failed signature checks refilled per client per second (0.01..=10000).
    pub per_client_per_s: f64,
    /// Failed signature checks a client may cause at once (1..=100000; default 20).
    #[serde(default = "default_burst")]
    pub burst: u64,
    /// Clients tracked per worker (1..=1000000; default 10000); when full, clients whose
    /// budget has refilled are forgotten first.
    #[serde(default = "default_max_clients")]
    pub max_clients: u64,
}

fn default_burst() -> u64 {
    20
}

fn default_max_clients() -> u64 {
    10_000
}

impl BudgetConfig {
    /// Checks value ranges, naming each problem's JSON path.
    pub fn validate(&self, problems: &mut Vec<crate::problem::Problem>) {
        let mut bad = |path: &str, message: String| {
            problems.push(crate::problem::Problem {
                path: format!("$.verify_budget.{path}"),
                message,
            })
        };
        if !(0.01..=10_000.0).contains(&self.per_client_per_s) {
            bad(
                "per_client_per_s",
                format!("{} is outside 0.01..=10000", self.per_client_per_s),
            );
        }
        if !(1..=100_000).contains(&self.burst) {
            bad("burst", format!("{} is outside 1..=100000", self.burst));
        }
        if !(1..=1_000_000).contains(&self.max_clients) {
            bad(
                "max_clients",
                format!("{} is outside 1..=1000000", self.max_clients),
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failed checks still allowed (fractional while refilling).
    left: f64,
    /// When `left` was last brought up to date (UNIX seconds).
    at: f64,
}

impl Bucket {
    /// Checks left at `now`, refilled at `rate` up to `burst` (a clock going back refills
    /// nothing).
    fn refilled(self, now: f64, rate: f64, burst: f64) -> f64 {
        (self.left + (now - self.at).max(0.0) * rate).min(burst)
    }
}

/// One worker's budgets, by client address.
#[derive(Debug)]
pub struct VerifyBudget {
    rate: f64,
    burst: f64,
    max_clients: usize,
    clients: HashMap<String, Bucket>,
}

impl VerifyBudget {
    pub fn new(cfg: &BudgetConfig) -> Self {
        VerifyBudget {
            rate: cfg.per_client_per_s,
            burst: cfg.burst as f64,
            max_clients: usize::try_from(cfg.max_clients).unwrap_or(usize::MAX),
            clients: HashMap::new(),
        }
    }

    /// Whether `client` has no failed check left at `now`.
    pub fn exhausted(&self, client: &str, now: f64) -> bool {
        self.clients
            .get(client)
            .is_some_and(|b| b.refilled(now, self.rate, self.burst) < 1.0)
    }

    /// Charges one failed signature check to `client`.
    pub fn charge(&mut self, client: &str, now: f64) {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(b) = self.clients.get_mut(client) {
            *b = Bucket {
                left: (b.refilled(now, rate, burst) - 1.0).max(0.0),
                at: now,
            };
            return;
        }
        if self.clients.len() >= self.max_clients {
            // Forget the clients whose budget is whole again; if that frees nothing, start
            // over (bounded memory beats remembering an address-rotating flooder).
            self.clients
                .retain(|_, b| b.refilled(now, rate, burst) < burst);
            if self.clients.len() >= self.max_clients {
                self.clients.clear();
            }
        }
        self.clients.insert(
            client.to_owned(),
            Bucket {
                left: self.burst - 1.0,
                at: now,
            },
        );
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// The client part of a host address (`10.0.0.1:5555` → `10.0.0.1`, `[::1]:5555` →
/// `::1`); the port changes with every connection and must not reset a budget.
pub fn client_key(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(rate: f64, burst: u64, max_clients: u64) -> VerifyBudget {
        VerifyBudget::new(&BudgetConfig {
            per_client_per_s: rate,
            burst,
            max_clients,
        })
    }

    #[test]
    fn burst_then_refill_per_client() {
        let mut b = budget(2.0, 3, 10);
        for _ in 0..3 {
            assert!(!b.exhausted("a", 100.0));
            b.charge("a", 100.0);
        }
        assert!(b.exhausted("a", 100.0), "burst spent");
        assert!(!b.exhausted("b", 100.0), "another client is not affected");
        assert!(b.exhausted("a", 100.4), "0.8 of a check refilled");
        assert!(!b.exhausted("a", 100.5), "one check back after 1/rate s");
        b.charge("a", 100.5);
        assert!(b.exhausted("a", 100.5));
        assert!(!b.exhausted("a", 200.0));
        b.charge("a", 200.0);
        b.charge("a", 200.0);
        assert!(!b.exhausted("a", 200.0), "refill caps at burst");
        b.charge("a", 200.0);
        assert!(b.exhausted("a", 200.0));
        // A clock going backwards refills nothing and spends nothing.
        assert!(b.exhausted("a", 150.0));
    }

    #[test]
    fn bounded_clients() {
        let mut b = budget(1.0, 3, 3);
        for c in ["a", "b", "c"] {
            b.charge(c, 10.0);
        }
        b.charge("a", 10.0);
        b.charge("a", 10.0);
        assert!(b.exhausted("a", 10.0));
        // A second later b and c are whole again: forgotten to make room for d; a, still
        // short, is kept (one check refilled, then spent).
        b.charge("d", 11.0);
        assert_eq!(b.len(), 2);
        b.charge("a", 11.0);
        assert!(b.exhausted("a", 11.0));
        // Nobody refilled: start over rather than grow.
        let mut full = budget(0.01, 1, 2);
        full.charge("x", 0.0);
        full.charge("y", 0.0);
        full.charge("z", 0.0);
        assert_eq!(full.len(), 1);
    }

    #[test]
    fn client_key_drops_the_port() {
        assert_eq!(client_key("10.0.0.1:5555"), "10.0.0.1");
        assert_eq!(client_key("[::1]:5555"), "::1");
        assert_eq!(client_key("::1"), "::1");
        assert_eq!(client_key("10.0.0.1"), "10.0.0.1");
        assert_eq!(client_key(""), "");
    }
}
