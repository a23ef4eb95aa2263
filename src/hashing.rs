//! Hash maps read on the request path, and short digests for object names
//! ([`short_digest`]).
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

/// The first ten bytes of `input`'s SHA-256, in hex (20 characters): a
/// short name part for what could be too long or ambiguous as a
/// Kubernetes object name.
pub fn short_digest(input: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, input);
    digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
