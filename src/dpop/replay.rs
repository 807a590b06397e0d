//! The DPoP replay cache every worker of one host shares (RFC 9449 §11.1): each proof's
//! `jti`, scoped by its key's thumbprint, is used once within the proof's lifetime.
//!
//! Entries live in a fixed set of shared-data slots, each a bucket of at most
//! [`PER_SLOT`] entries (`16-byte key hash || 8-byte expiry ms`, little-endian) after one
//! format byte (proxy-wasm reads an empty value as no value at all); an entry is
//! the first 16 bytes of SHA-256(`jkt` || 0x00 || `jti`), so a long `jti` costs no more and
//! another key cannot use up a client's `jti`. A bucket is updated with compare-and-swap and
//! retried when another worker wrote it first. Proxy-wasm's CAS does not guard a key's
//! creation, so every slot is created empty at configure time ([`ReplayCache::prepare`]) and
//! a missing slot on the request path is refused, never created. A full bucket refuses the
//! proof (`dpop.replay_full`): a live entry is never evicted.

use sha2::{Digest, Sha256};

use crate::reason::Reason;
use crate::shared::SharedData;

/// Entries per slot.
pub const PER_SLOT: usize = 16;
const ENTRY: usize = 24;
/// The first byte of every bucket.
const FORMAT: u8 = 1;
/// CAS attempts before the cache counts as unavailable.
const ATTEMPTS: usize = 4;

/// The cache's geometry (the same in every worker of a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayCache {
    slots: u32,
}

impl ReplayCache {
    /// A cache holding at least `max_entries` live entries (rounded up to whole slots).
    pub fn new(max_entries: usize) -> ReplayCache {
        let slots = max_entries.div_ceil(PER_SLOT).max(1);
        ReplayCache {
            slots: u32::try_from(slots).unwrap_or(u32::MAX),
        }
    }

    fn key(slot: u32) -> String {
        format!("agent_iam/dpop/jti/{slot}")
    }

    /// Creates every slot that does not exist yet (empty). Run once per host before any
    /// request is decided: the root context's configure does it.
    pub fn prepare(&self, shared: &dyn SharedData) -> Result<(), Reason> {
        crate::shared::create_slots(shared, (0..self.slots).map(Self::key), FORMAT)
            .map_err(|_| Reason::DpopReplayUnavailable)
    }

    /// Records the proof `jti` of key `jkt`, valid until `expires_ms`; refuses one already
    /// recorded and not yet expired.
    pub fn first_use(
        &self,
        shared: &dyn SharedData,
        jkt: &[u8; 32],
        jti: &str,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), Reason> {
        let mut h = Sha256::new();
        h.update(jkt);
        h.update([0u8]);
        h.update(jti.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let id = digest.get(..16).ok_or(Reason::InternalError)?;
        let word = digest
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let key = Self::key(word % self.slots);
        for _ in 0..ATTEMPTS {
            let (Some(bucket), Some(cas)) = shared
                .get(&key)
                .map_err(|_| Reason::DpopReplayUnavailable)?
            else {
                return Err(Reason::DpopReplayUnavailable);
            };
            let Some((&FORMAT, entries)) = bucket.split_first() else {
                return Err(Reason::DpopReplayUnavailable);
            };
            let mut live = Vec::with_capacity(bucket.len() + ENTRY);
            live.push(FORMAT);
            for entry in entries.chunks_exact(ENTRY) {
                let (entry_id, expiry) = entry.split_at(16);
                let expiry = <[u8; 8]>::try_from(expiry).map_or(0, u64::from_le_bytes);
                if expiry <= now_ms {
                    continue;
                }
                if entry_id == id {
                    return Err(Reason::DpopReplay);
                }
                live.extend_from_slice(entry);
            }
            if (live.len() - 1) / ENTRY >= PER_SLOT {
                return Err(Reason::DpopReplayFull);
            }
            live.extend_from_slice(id);
            live.extend_from_slice(&expires_ms.to_le_bytes());
            if shared.set(&key, &live, Some(cas)).is_ok() {
                return Ok(());
            }
        }
        Err(Reason::DpopReplayUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{HostError, Memory};
    use std::cell::Cell;

    #[test]
    fn a_jti_is_used_once_per_key_within_its_lifetime() {
        let shared = Memory::default();
        let cache = ReplayCache::new(64);
        cache.prepare(&shared).unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(cache.first_use(&shared, &a, "j1", 2_000, 1_000), Ok(()));
        assert_eq!(
            cache.first_use(&shared, &a, "j1", 2_000, 1_500),
            Err(Reason::DpopReplay)
        );
        // Another key's proof with the same jti is its own.
        assert_eq!(cache.first_use(&shared, &b, "j1", 2_000, 1_500), Ok(()));
        // Once expired, the entry is gone.
        assert_eq!(cache.first_use(&shared, &a, "j1", 4_000, 2_000), Ok(()));
    }

    #[test]
    fn a_missing_slot_or_a_full_bucket_refuses() {
        let shared = Memory::default();
        let cache = ReplayCache::new(1);
        assert_eq!(
            cache.first_use(&shared, &[0; 32], "j", 10, 1),
            Err(Reason::DpopReplayUnavailable)
        );
        cache.prepare(&shared).unwrap();
        for i in 0..PER_SLOT {
            assert_eq!(
                cache.first_use(&shared, &[0; 32], &i.to_string(), 10, 1),
                Ok(())
            );
        }
        assert_eq!(
            cache.first_use(&shared, &[0; 32], "one more", 10, 1),
            Err(Reason::DpopReplayFull)
        );
        // Expiry frees room.
        assert_eq!(cache.first_use(&shared, &[0; 32], "later", 100, 50), Ok(()));
    }

    /// A host whose every write loses the race once: the retry re-reads and decides on
    /// what the other worker wrote.
    struct Racing {
        inner: Memory,
        raced: Cell<bool>,
        other: [u8; 32],
    }

    impl SharedData for Racing {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            if cas.is_some() && !self.raced.replace(true) {
                // Another worker records the same proof first.
                ReplayCache::new(1)
                    .first_use(&self.inner, &self.other, "same", 10, 1)
                    .unwrap();
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn two_workers_racing_on_one_proof_admit_it_once() {
        let racing = Racing {
            inner: Memory::default(),
            raced: Cell::new(false),
            other: [7; 32],
        };
        let cache = ReplayCache::new(1);
        cache.prepare(&racing.inner).unwrap();
        assert_eq!(
            cache.first_use(&racing, &[7; 32], "same", 10, 1),
            Err(Reason::DpopReplay)
        );
    }
}
