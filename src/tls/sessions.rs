//! TLS session resumption: the server-side session store every terminating
//! listener shares, or none at all.
//!
//! rustls's own `ServerSessionMemoryCache` finds the entry to forget with a
//! linear scan of its insertion order on every resumption, which is a
//! `memcmp` per cached session (10% of a handshake's CPU with 4,096 entries,
//! measured with perf). [`SessionStore`] forgets lazily instead: the
//! insertion order holds `(sequence, key)` pairs and an entry is evicted only
//! if its sequence number still matches, so put, get and take are O(1).
//!
//! Every handshake on every core stores or takes a session, so the store is
//! split into [`SHARDS`] shards by a keyed hash of the session ID, each with
//! its own lock and an equal share of the capacity: two handshakes contend
//! only when their sessions fall in the same shard, and no lock is shared
//! by all cores. Oldest-first eviction holds within each shard.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

/// How many shards a store is split into (fewer when it holds fewer
/// sessions than this).
const SHARDS: usize = 16;

/// How TLS sessions are resumed: `entries` sessions are kept in memory and
/// TLS 1.3 tickets refer to them; with 0 entries no ticket is issued and
/// every handshake is a full one.
///
/// Clones share one store, so sessions survive reloads, which rebuild every
/// listener's rustls configuration.
#[derive(Clone)]
pub struct Resumption {
    store: Option<Arc<SessionStore>>,
}

/// Sessions kept unless told otherwise (`serve --tls-session-cache`).
pub const DEFAULT_SESSION_CACHE_ENTRIES: usize = 4096;

impl Resumption {
    /// A store for `entries` sessions, or no resumption when `entries` is 0.
    /// Memory is taken as sessions arrive, not up front.
    pub fn new(entries: usize) -> Self {
        Self {
            store: (entries > 0).then(|| Arc::new(SessionStore::new(entries))),
        }
    }

    /// Sets a freshly built `config` to store sessions here and to issue
    /// rustls's default TLS 1.3 tickets, or to neither.
    pub(crate) fn apply(&self, config: &mut rustls::ServerConfig) {
        match &self.store {
            Some(store) => config.session_storage = store.clone(),
            None => {
                config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
            }
        }
    }
}

impl Default for Resumption {
    fn default() -> Self {
        Self::new(DEFAULT_SESSION_CACHE_ENTRIES)
    }
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.store.as_ref().map_or(0, |s| s.capacity());
        f.debug_struct("Resumption")
            .field("entries", &entries)
            .finish()
    }
}

/// Two settings are equal when they resume into the same store (or both
/// resume nothing).
impl PartialEq for Resumption {
    fn eq(&self, other: &Self) -> bool {
        match (&self.store, &other.store) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for Resumption {}

/// A bounded map of session IDs to encoded sessions, in shards that each
/// forget their oldest insertion first.
struct SessionStore {
    /// Sessions each shard holds at most.
    max: usize,
    shards: Box<[Mutex<Entries>]>,
    /// Picks a key's shard; seeded per store, so a client cannot aim its
    /// session IDs at one shard.
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Entries {
    /// Key to (sequence number of its insertion, value).
    map: HashMap<Vec<u8>, (u64, Vec<u8>)>,
    /// Insertions, oldest first; an item whose sequence no longer matches
    /// the map (taken or overwritten since) is skipped when it comes up.
    order: VecDeque<(u64, Vec<u8>)>,
    next: u64,
}

impl SessionStore {
    /// An empty store holding about `max` sessions (each of its shards an
    /// equal share, rounded up).
    fn new(max: usize) -> Self {
        Self::with_shards(max, SHARDS.min(max).max(1))
    }

    /// An empty store of `shards` shards holding about `max` sessions.
    fn with_shards(max: usize, shards: usize) -> Self {
        Self {
            max: max.div_ceil(shards),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// How many sessions the store holds at most.
    fn capacity(&self) -> usize {
        self.max * self.shards.len()
    }

    /// The shard of `key`, locked.
    fn entries(&self, key: &[u8]) -> std::sync::MutexGuard<'_, Entries> {
        // `shards` is never empty, and the remainder is below its length.
        let shard = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // The lock guards plain collections that every operation leaves
        // consistent, so a panic elsewhere cannot leave them half-written.
        self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many sessions are held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }
}

impl Entries {
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>, max: usize) {
        let seq = self.next;
        self.next += 1;
        self.order.push_back((seq, key.clone()));
        self.map.insert(key, (seq, value));
        // Stale items (taken sessions) are bounded too: without the second
        // condition a store that is mostly taken from would grow its order
        // queue forever.
        while self.map.len() > max || self.order.len() > 2 * max {
            let Some((seq, key)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&key).is_some_and(|(s, _)| *s == seq) {
                self.map.remove(&key);
            }
        }
    }
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("capacity", &self.capacity())
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl rustls::server::StoresServerSessions for SessionStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.entries(&key).insert(key, value, self.max);
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries(key).map.get(key).map(|(_, v)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries(key).map.remove(key).map(|(_, v)| v)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::StoresServerSessions;

    fn key(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    #[test]
    fn a_session_is_taken_once() {
        let s = SessionStore::new(4);
        assert!(s.put(key(1), b"one".to_vec()));
        assert_eq!(s.get(&key(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(s.take(&key(1)).as_deref(), Some(&b"one"[..]));
        assert_eq!(s.take(&key(1)), None);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn the_oldest_session_goes_first() {
        let s = SessionStore::with_shards(3, 1);
        for i in 0..5 {
            s.put(key(i), key(i));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&key(0)), None);
        assert_eq!(s.get(&key(1)), None);
        for i in 2..5 {
            assert_eq!(s.get(&key(i)), Some(key(i)), "session {i}");
        }
    }

    #[test]
    fn an_overwritten_session_is_not_evicted_by_its_old_insertion() {
        let s = SessionStore::with_shards(2, 1);
        s.put(key(1), b"old".to_vec());
        s.put(key(2), key(2));
        s.put(key(1), b"new".to_vec());
        // Evicts key 2 (the oldest live insertion); key 1's first insertion
        // is stale and must not take the new value with it.
        s.put(key(3), key(3));
        assert_eq!(s.get(&key(1)).as_deref(), Some(&b"new"[..]));
        assert_eq!(s.get(&key(2)), None);
        assert_eq!(s.get(&key(3)), Some(key(3)));
    }

    #[test]
    fn taken_sessions_do_not_pile_up() {
        let s = SessionStore::with_shards(8, 1);
        for i in 0..10_000 {
            s.put(key(i), key(i));
            assert_eq!(s.take(&key(i)), Some(key(i)));
        }
        let e = s.entries(&key(0));
        assert!(e.map.is_empty());
        assert!(e.order.len() <= 16, "order queue holds {}", e.order.len());
    }

    #[test]
    fn shards_bound_the_store_and_find_every_session() {
        let s = SessionStore::new(4096);
        assert_eq!(s.shards.len(), SHARDS);
        assert_eq!(s.capacity(), 4096);
        for i in 0..4096 {
            s.put(key(i), key(i));
        }
        // Session IDs spread over the shards: almost all are still held (a
        // shard that drew more than its share forgot its oldest).
        let held = (0..4096).filter(|&i| s.get(&key(i)).is_some()).count();
        assert!(held > 3000, "only {held} of 4096 held");
        assert_eq!(s.len(), held);
        for i in 4096..20_000 {
            s.put(key(i), key(i));
        }
        assert!(s.len() <= s.capacity(), "{} held", s.len());
        assert_eq!(s.take(&key(19_999)), Some(key(19_999)));
        assert_eq!(s.get(&key(19_999)), None);
        // A small store has no more shards than sessions.
        assert_eq!(SessionStore::new(3).shards.len(), 3);
    }

    /// A server configuration as `listener_config` builds it, before
    /// resumption is applied.
    fn fresh_config() -> rustls::ServerConfig {
        rustls::ServerConfig::builder_with_provider(crate::tls::provider::provider())
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()))
    }

    #[test]
    fn zero_entries_turns_resumption_off() {
        let mut config = fresh_config();
        Resumption::new(0).apply(&mut config);
        assert_eq!(config.send_tls13_tickets, 0);
        assert!(!config.session_storage.can_cache());

        let on = Resumption::new(16);
        let mut config = fresh_config();
        on.apply(&mut config);
        assert!(config.send_tls13_tickets > 0);
        assert!(config.session_storage.can_cache());
        assert_eq!(on, on.clone());
        assert_ne!(on, Resumption::new(16));
    }
}
