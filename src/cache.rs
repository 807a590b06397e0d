//! Per-worker cache of tokens whose signature already verified.
//!
//! Keyed by SHA-256 of the whole token, bounded (oldest entry evicted first). A hit only
//! skips the signature check: every claim, including expiry, is checked again on every
//! request, and an entry past its `exp` is dropped on sight.

use std::collections::{HashMap, VecDeque};

pub type TokenHash = [u8; 32];

/// Bounded FIFO set of verified token hashes with their `exp`.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    cap: usize,
    entries: HashMap<TokenHash, f64>,
    order: VecDeque<TokenHash>,
}

impl VerifiedCache {
    pub fn new(cap: usize) -> Self {
        VerifiedCache {
            cap,
            entries: HashMap::with_capacity(cap.min(4096)),
            order: VecDeque::new(),
        }
    }

    /// True when `hash` verified before and its `exp` (plus skew) has not passed.
    pub fn hit(&mut self, hash: &TokenHash, now: f64, skew: f64) -> bool {
        match self.entries.get(hash) {
            Some(&exp) if now <= exp + skew => true,
            Some(_) => {
                self.entries.remove(hash);
                false
            }
            None => false,
        }
    }

    pub fn insert(&mut self, hash: TokenHash, exp: f64) {
        if self.cap == 0 || self.entries.contains_key(&hash) {
            return;
        }
        while self.entries.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        // `order` may hold hashes already dropped as expired; keep it bounded too.
        if self.order.len() >= self.cap.saturating_mul(2) {
            self.order.retain(|h| self.entries.contains_key(h));
        }
        self.entries.insert(hash, exp);
        self.order.push_back(hash);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
