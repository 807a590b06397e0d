//! Per-worker cache of tokens whose signature already verified, in two tiers.
//!
//! * Verified hashes: SHA-256 of the whole token → its `exp`, bounded (oldest entry evicted
//!   first). A hit only skips the signature check: the token is decoded and every claim
//!   rule runs again.
//! * Recent tokens, parsed: the last few hundred verified tokens by their exact text (the
//!   map's hasher is keyed per process, and a hit compares the whole text), with their
//!   verified facts. A hit skips decoding, hashing and every rule that cannot change for the
//!   same text under the same configuration and keys; the clock rules (`exp`, `nbf`, `iat`)
//!   run again on every request ([`crate::token::check_times`]).
//!
//! The engine drops both tiers when an issuer's keys change (a removed key must not keep
//! its tokens alive); a new configuration builds a new engine.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

pub use crate::token::TokenHash;
use crate::token::{check_times, VerifiedSignatures, VerifiedToken};

/// Most parsed tokens kept (fewer when `cache.max_entries` is smaller): agents reuse a
/// token for many requests, and a few hundred entries stay well under 1 MB.
pub const MAX_PARSED: usize = 256;

/// A map of at most `cap` entries that forgets the oldest insertion first (0: holds
/// nothing). Both tiers are one of these.
#[derive(Debug)]
struct Fifo<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    /// Insertion order; may hold keys already removed (kept bounded on insert).
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V> Fifo<K, V> {
    fn new(cap: usize) -> Self {
        Fifo {
            cap,
            map: HashMap::with_capacity(cap.min(4096)),
            order: VecDeque::new(),
        }
    }

    fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    fn remove<Q: Eq + Hash + ?Sized>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.map.remove(key);
    }

    fn insert(&mut self, key: K, value: V) {
        if self.cap == 0 || self.map.contains_key(&key) {
            return;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() >= self.cap.saturating_mul(2) {
            self.order.retain(|k| self.map.contains_key(k));
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Verified token hashes with their `exp`, and the parsed tier.
#[derive(Debug)]
pub struct VerifiedCache {
    hashes: Fifo<TokenHash, f64>,
    parsed: Fifo<Arc<str>, Arc<VerifiedToken>>,
}

impl VerifiedCache {
    pub fn new(cap: usize) -> Self {
        VerifiedCache {
            hashes: Fifo::new(cap),
            parsed: Fifo::new(cap.min(MAX_PARSED)),
        }
    }

    /// The parsed tier: `token` exactly as verified before, with its clock rules checked
    /// at `now`. `None` when unknown; an expired entry is dropped and answers its reason.
    pub fn recent(
        &mut self,
        token: &str,
        now: f64,
        skew: f64,
    ) -> Option<Result<Arc<VerifiedToken>, crate::reason::Reason>> {
        let t = self.parsed.get(token)?;
        Some(match check_times(t.exp, t.nbf, t.iat, now, skew) {
            Ok(()) => Ok(Arc::clone(t)),
            Err(reason) => {
                if reason == crate::reason::Reason::TokenExpired {
                    self.parsed.remove(token);
                }
                Err(reason)
            }
        })
    }

    /// Remembers a token that just verified, parsed (first in, first out).
    pub fn remember(&mut self, token: &str, verified: Arc<VerifiedToken>) {
        if self.parsed.get(token).is_none() {
            self.parsed.insert(Arc::from(token), verified);
        }
    }

    /// Parsed tokens held.
    pub fn parsed_len(&self) -> usize {
        self.parsed.len()
    }

    /// True when `hash` verified before and its `exp` (plus skew) has not passed.
    pub fn hit(&mut self, hash: &TokenHash, now: f64, skew: f64) -> bool {
        match self.hashes.get(hash) {
            Some(&exp) if now <= exp + skew => true,
            Some(_) => {
                self.hashes.remove(hash);
                false
            }
            None => false,
        }
    }

    pub fn insert(&mut self, hash: TokenHash, exp: f64) {
        self.hashes.insert(hash, exp);
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.len() == 0
    }
}

impl VerifiedSignatures for VerifiedCache {
    fn hit(&mut self, hash: &TokenHash, now: f64, skew: f64) -> bool {
        VerifiedCache::hit(self, hash, now, skew)
    }

    fn insert(&mut self, hash: TokenHash, exp: f64) {
        VerifiedCache::insert(self, hash, exp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiry_rechecked() {
        let mut c = VerifiedCache::new(2);
        c.insert([1; 32], 100.0);
        c.insert([2; 32], 100.0);
        c.insert([3; 32], 100.0);
        assert_eq!(c.len(), 2);
        assert!(!c.hit(&[1; 32], 0.0, 0.0), "oldest evicted");
        assert!(c.hit(&[3; 32], 100.0, 0.0));
        assert!(!c.hit(&[3; 32], 131.0, 30.0), "expired entries miss");
        assert_eq!(c.len(), 1);
        let mut off = VerifiedCache::new(0);
        off.insert([1; 32], 100.0);
        assert!(off.is_empty());
    }
}
