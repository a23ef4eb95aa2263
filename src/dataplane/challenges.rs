//! Pending ACME challenges, as the data plane answers them: the board the
//! issuer publishes to (`crate::issuer::challenges` builds what goes on it)
//! and every dataplane snapshot carries ([`super::Dataplane::challenges`]),
//! so the TLS front and the proxy answer from the snapshot they serve
//! with.
//!
//! - HTTP-01 (RFC 8555 §8.3): the proxy answers
//!   `GET /.well-known/acme-challenge/<token>` with the key authorization,
//!   only for tokens on the board ([`ChallengeBoard::http01_for_path`]).
//! - TLS-ALPN-01 (RFC 8737): the TLS front completes an `acme-tls/1`
//!   handshake for a domain on the board with the challenge certificate
//!   ([`ChallengeBoard::tls_alpn01_for_hello`]) and closes.
//!
//! Readers take no lock: each map sits behind an `ArcSwap` and writers
//! replace it whole (`rcu`).

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 challenge requests (RFC 8555 §8.3).
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// A pending TLS-ALPN-01 challenge: the self-signed certificate carrying the
/// `acmeIdentifier` extension, and a TLS configuration serving only it.
#[derive(Debug)]
pub struct TlsAlpnChallenge {
    /// The challenge certificate and its key.
    pub certified_key: Arc<CertifiedKey>,
    /// A server configuration offering only `acme-tls/1` with that
    /// certificate.
    pub config: Arc<rustls::ServerConfig>,
}

/// Pending challenges, shared between the ACME client (writer) and the data
/// plane (readers).
#[derive(Debug, Default)]
pub struct ChallengeBoard {
    /// HTTP-01 tokens to key authorizations.
    http01: ArcSwap<HashMap<String, Arc<str>>>,
    /// TLS-ALPN-01 domains (lowercase, no trailing dot) to challenges.
    tls_alpn01: ArcSwap<HashMap<String, Arc<TlsAlpnChallenge>>>,
}

impl ChallengeBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key authorization to answer for HTTP-01 `token`, if a challenge
    /// with that token is pending.
    pub fn http01(&self, token: &str) -> Option<Arc<str>> {
        self.http01.load().get(token).cloned()
    }

    /// The HTTP-01 answer for a request path: the key authorization when
    /// `path` is `/.well-known/acme-challenge/<token>` for a pending token.
    pub fn http01_for_path(&self, path: &str) -> Option<Arc<str>> {
        let token = path.strip_prefix(HTTP01_PATH_PREFIX)?;
        if self.http01.load().is_empty() {
            return None;
        }
        self.http01(token)
    }

    /// The pending TLS-ALPN-01 challenge for `domain`, if any.
    pub fn tls_alpn01(&self, domain: &str) -> Option<Arc<TlsAlpnChallenge>> {
        let map = self.tls_alpn01.load();
        if map.is_empty() {
            return None;
        }
        map.get(&normalize_domain(domain)).cloned()
    }

    /// The TLS-ALPN-01 challenge a ClientHello asks for: its ALPN list is
    /// exactly `acme-tls/1` (RFC 8737 §3: validation handshakes offer only
    /// that protocol) and its SNI has a pending challenge.
    pub fn tls_alpn01_for_hello(
        &self,
        alpn: &[Vec<u8>],
        sni: Option<&str>,
    ) -> Option<Arc<TlsAlpnChallenge>> {
        match alpn {
            [only] if only.as_slice() == ACME_TLS_ALPN => self.tls_alpn01(sni?),
            _ => None,
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.http01.load().is_empty() && self.tls_alpn01.load().is_empty()
    }

    /// Publishes an HTTP-01 answer until the returned guard is dropped.
    pub fn publish_http01(self: &Arc<Self>, token: &str, key_authorization: &str) -> Published {
        let value: Arc<str> = Arc::from(key_authorization);
        let token = token.to_owned();
        self.http01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(token.clone(), value.clone());
            map
        });
        Published {
            board: self.clone(),
            entry: Entry::Http01 { token, value },
        }
    }

    /// Publishes the TLS-ALPN-01 `challenge` for `domain` (the issuer
    /// builds it) until the returned guard is dropped.
    pub fn publish_tls_alpn01(
        self: &Arc<Self>,
        domain: &str,
        challenge: Arc<TlsAlpnChallenge>,
    ) -> Published {
        let domain = normalize_domain(domain);
        self.tls_alpn01.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(domain.clone(), challenge.clone());
            map
        });
        Published {
            board: self.clone(),
            entry: Entry::TlsAlpn01 { domain, challenge },
        }
    }
}

/// A board is a place, not a value (its contents change under every
/// holder): two are equal when they are the same board, so options that
/// share one compare equal.
impl PartialEq for ChallengeBoard {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for ChallengeBoard {}

/// What a [`Published`] guard withdraws.
#[derive(Debug)]
enum Entry {
    Http01 {
        token: String,
        value: Arc<str>,
    },
    TlsAlpn01 {
        domain: String,
        challenge: Arc<TlsAlpnChallenge>,
    },
}

/// A challenge on the board; dropping it withdraws the challenge (unless
/// another order replaced it meanwhile, which then stays).
#[derive(Debug)]
pub struct Published {
    board: Arc<ChallengeBoard>,
    entry: Entry,
}

impl Drop for Published {
    fn drop(&mut self) {
        match &self.entry {
            Entry::Http01 { token, value } => {
                self.board.http01.rcu(|map| {
                    let mut map = HashMap::clone(map);
                    if map.get(token).is_some_and(|v| Arc::ptr_eq(v, value)) {
                        map.remove(token);
                    }
                    map
                });
            }
            Entry::TlsAlpn01 { domain, challenge } => {
                self.board.tls_alpn01.rcu(|map| {
                    let mut map = HashMap::clone(map);
                    if map.get(domain).is_some_and(|v| Arc::ptr_eq(v, challenge)) {
                        map.remove(domain);
                    }
                    map
                });
            }
        }
    }
}

/// Lowercase, without a trailing dot: the form domains are keyed by.
pub(crate) fn normalize_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_only_pending_tokens_until_withdrawn() {
        let board = Arc::new(ChallengeBoard::new());
        assert!(board
            .http01_for_path("/.well-known/acme-challenge/tok")
            .is_none());
        let guard = board.publish_http01("tok", "tok.thumb");
        assert_eq!(
            board
                .http01_for_path("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert!(board
            .http01_for_path("/.well-known/acme-challenge/other")
            .is_none());
        assert!(board.http01_for_path("/tok").is_none());
        drop(guard);
        assert!(board.http01("tok").is_none());
        assert!(board.is_empty());
    }

    #[test]
    fn withdrawing_a_replaced_challenge_keeps_the_replacement() {
        let board = Arc::new(ChallengeBoard::new());
        let first = board.publish_http01("tok", "one");
        let second = board.publish_http01("tok", "two");
        drop(first);
        assert_eq!(board.http01("tok").as_deref(), Some("two"));
        drop(second);
        assert!(board.http01("tok").is_none());
    }
}
