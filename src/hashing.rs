//! Hash maps read on the request path.
//!
//! std's `HashMap` hashes with SipHash-1-3, which showed as 2% of a
//! keep-alive request's instructions under callgrind, over the lookups a
//! request makes (hostname, path, metrics handles, upstream pools). These
//! maps hash with foldhash instead: several times cheaper on short keys and
//! still seeded at random per map, so whoever writes routes cannot choose
//! keys that collide. Maps keyed by what a client picks (UDP sessions by
//! source address) keep std's hasher.

/// A `HashMap` hashing with foldhash, randomly seeded.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
