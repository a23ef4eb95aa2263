//! Parsing the certificates and keys of listener Secrets for a compile:
//! distinct Secrets are parsed in parallel across the available cores, and
//! the results are kept between compiles ([`CertCache`]) so a reload parses
//! only the Secrets whose bytes changed.
//!
//! Parsing a private key is the dominant cost of compiling many HTTPS
//! listeners (ring derives the public key from the private scalar to check
//! the pair), so 10,000 certificates are parsed once, not on every reload.
//! Entries are keyed by a SHA-256 digest of the certificate and key bytes:
//! the result of parsing is a pure function of them, so an entry can never
//! be stale. Which Secret a listener references, and whether it may, is
//! `super::listeners`'s; this module only turns bytes into
//! [`CertifiedKey`]s. Compile-side only: the data plane gets the `Arc`s, the
//! cache is never touched per handshake.

use crate::model::ObjectKey;
use crate::tls::certs;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Fewest parses worth a thread of their own (a P-256 key takes tens of
/// microseconds; a thread costs about as much to start).
const MIN_PER_THREAD: usize = 16;

/// Chunks per thread: enough that threads finish together when one is
/// slowed down, few enough that taking a chunk costs nothing.
const CHUNKS_PER_THREAD: usize = 16;

/// A usable certificate parsed from a Secret.
pub(crate) type Parsed = crate::dataplane::ParsedCertificate;

/// The outcome of parsing one `tls.crt` / `tls.key` pair.
pub(crate) type Outcome = Result<Arc<Parsed>, certs::Error>;

/// SHA-256 over the length-prefixed certificate bytes and the key bytes.
type Digest = [u8; 32];

/// Parsed Secrets kept from one compile to the next, keyed by a digest of
/// their bytes. Holds only what the last compile used: entries of Secrets
/// that disappeared or changed are dropped.
///
/// It also remembers, per Secret, the last certificate
/// that Secret gave which could be served ([`CertCache::last_good`]): when
/// the Secret's content turns bad (garbage, a key that does not match, an
/// expired certificate), the listener keeps serving that one instead of
/// nothing, while its status says the reference is invalid.
#[derive(Default)]
pub struct CertCache {
    entries: HashMap<Digest, Outcome>,
    misses: usize,
    last_good: HashMap<ObjectKey, Arc<Parsed>>,
}

impl std::fmt::Debug for CertCache {
    // Entries hold private keys: show only counts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertCache")
            .field("entries", &self.entries.len())
            .field("misses", &self.misses)
            .finish()
    }
}

impl CertCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct certificate/key pairs are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many pairs the last compile had to parse (cache misses).
    pub fn misses(&self) -> usize {
        self.misses
    }

    /// The last servable certificate Secret `name` gave in an earlier
    /// compile, if it was referenced since.
    pub(crate) fn last_good(&self, name: &ObjectKey) -> Option<Arc<Parsed>> {
        self.last_good.get(name).cloned()
    }

    /// Replaces the remembered certificates by those a compile served:
    /// Secrets no longer referenced are forgotten.
    pub(crate) fn set_last_good(&mut self, good: HashMap<ObjectKey, Arc<Parsed>>) {
        self.last_good = good;
    }

    /// Parses every `(tls.crt, tls.key)` pair of `pairs`, reusing what the
    /// previous call parsed, and returns the outcomes in input order. The
    /// cache then holds exactly the pairs of this call.
    pub(crate) fn resolve(&mut self, pairs: &[(&[u8], &[u8])]) -> Vec<Outcome> {
        let digests = parallel_map(pairs, |(cert, key)| digest(cert, key));
        let mut next: HashMap<Digest, Outcome> = HashMap::with_capacity(pairs.len());
        // The first index of each digest neither cached nor already queued.
        let mut missing: Vec<usize> = Vec::new();
        let mut queued: HashSet<&Digest> = HashSet::new();
        for (i, d) in digests.iter().enumerate() {
            if next.contains_key(d) || queued.contains(d) {
                continue;
            }
            match self.entries.remove(d) {
                Some(outcome) => {
                    next.insert(*d, outcome);
                }
                None => {
                    queued.insert(d);
                    missing.push(i);
                }
            }
        }
        let parsed = parallel_map(&missing, |&i| parse(pairs[i].0, pairs[i].1));
        self.misses = missing.len();
        for (i, outcome) in missing.into_iter().zip(parsed) {
            next.insert(digests[i], outcome);
        }
        self.entries = next;
        digests
            .iter()
            .map(|d| {
                self.entries
                    .get(d)
                    .expect("every digest of this call was cached or parsed above")
                    .clone()
            })
            .collect()
    }
}

fn parse(cert: &[u8], key: &[u8]) -> Outcome {
    certs::load_certified(cert, key).map(|l| {
        Arc::new(Parsed {
            key: Arc::new(l.key),
            leaf: l.leaf,
            intermediates: l.intermediates,
        })
    })
}

fn digest(cert: &[u8], key: &[u8]) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // The length keeps (cert, key) splits of the same bytes apart.
    ctx.update(&(cert.len() as u64).to_le_bytes());
    ctx.update(cert);
    ctx.update(key);
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `items.iter().map(f).collect()`, run on up to `available_parallelism`
/// threads (the caller's among them). Threads take small chunks from a
/// shared counter, so a thread the scheduler delays (the cores are shared
/// with the proxy) holds up little; results are put back in input order. A
/// panic in `f` propagates as it would serially.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(items.len() / MIN_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = (items.len() / (threads * CHUNKS_PER_THREAD)).max(1);
    let chunks: Vec<&[T]> = items.chunks(chunk).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(c) = chunks.get(i) else {
                return done;
            };
            done.push((i, c.iter().map(&f).collect()));
        }
    };
    let mut parts = std::thread::scope(|scope| {
        let workers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = work();
        for w in workers {
            match w.join() {
                Ok(more) => parts.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        parts
    });
    parts.sort_unstable_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(items.len());
    for (_, part) in parts {
        out.extend(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key generation");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("valid name")
            .self_signed(&key)
            .expect("self-signed");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    /// Good pairs interleaved with every kind of broken one: garbage
    /// certificate, garbage key, and a key of another certificate.
    fn mixed(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let good: Vec<_> = (0..n).map(|i| pair(&format!("h{i}.test"))).collect();
        good.iter()
            .enumerate()
            .map(|(i, (cert, key))| match i % 7 {
                3 => (b"not a certificate".to_vec(), key.clone()),
                4 => (cert.clone(), b"not a key".to_vec()),
                5 => (cert.clone(), good[(i + 1) % n].1.clone()),
                _ => (cert.clone(), key.clone()),
            })
            .collect()
    }

    fn borrowed(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
        pairs
            .iter()
            .map(|(c, k)| (c.as_slice(), k.as_slice()))
            .collect()
    }

    /// What an outcome says, comparable across parses.
    fn summary(o: &Outcome) -> Result<(Vec<Vec<u8>>, Vec<String>), certs::Error> {
        o.as_ref()
            .map(|p| {
                (
                    p.key.cert.iter().map(|c| c.to_vec()).collect(),
                    p.leaf.sans.clone(),
                )
            })
            .map_err(Clone::clone)
    }

    #[test]
    fn parallel_results_equal_serial_parsing_in_input_order() {
        let pairs = mixed(70);
        let serial: Vec<_> = pairs.iter().map(|(c, k)| summary(&parse(c, k))).collect();
        let mut cache = CertCache::new();
        let cached: Vec<_> = cache
            .resolve(&borrowed(&pairs))
            .iter()
            .map(summary)
            .collect();
        assert_eq!(cached, serial);
        assert!(serial.contains(&Err(certs::Error::NoCertificate)));
        assert!(serial
            .iter()
            .any(|o| matches!(o, Err(certs::Error::KeyPem(_)))));
        assert!(serial.contains(&Err(certs::Error::KeyMismatch)));
        assert_eq!(cache.misses(), 70);
    }

    #[test]
    fn parallel_map_keeps_input_order() {
        let items: Vec<usize> = (0..1000).collect();
        assert_eq!(
            parallel_map(&items, |i| i * 2),
            (0..2000).step_by(2).collect::<Vec<_>>()
        );
        assert_eq!(parallel_map(&items[..3], |i| i + 1), vec![1, 2, 3]);
        assert!(parallel_map(&items[..0], |i| *i).is_empty());
        let odd: Vec<usize> = (0..1013).collect();
        assert_eq!(parallel_map(&odd, |i| *i), odd);
    }

    #[test]
    fn unchanged_pairs_are_not_parsed_again() {
        let pairs = mixed(40);
        let mut cache = CertCache::new();
        let first = cache.resolve(&borrowed(&pairs));
        let again = cache.resolve(&borrowed(&pairs));
        assert_eq!(cache.misses(), 0);
        for (a, b) in first.iter().zip(&again) {
            if let (Ok(a), Ok(b)) = (a, b) {
                assert!(Arc::ptr_eq(&a.key, &b.key), "the same parsed key is served");
            }
        }
        assert_eq!(
            again.iter().map(summary).collect::<Vec<_>>(),
            first.iter().map(summary).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_changed_secret_is_parsed_again() {
        let mut pairs = mixed(30);
        let mut cache = CertCache::new();
        cache.resolve(&borrowed(&pairs));
        pairs[10] = pair("renewed.test");
        pairs[20].0.extend_from_slice(b"\n");
        let out = cache.resolve(&borrowed(&pairs));
        assert_eq!(cache.misses(), 2);
        let renewed = out[10].as_ref().expect("renewed pair loads");
        assert_eq!(renewed.leaf.sans, vec!["renewed.test"]);
    }

    #[test]
    fn entries_of_secrets_that_disappeared_are_dropped() {
        let pairs = mixed(30);
        let mut cache = CertCache::new();
        cache.resolve(&borrowed(&pairs));
        assert_eq!(cache.len(), 30);
        cache.resolve(&borrowed(&pairs[..12]));
        assert_eq!((cache.len(), cache.misses()), (12, 0));
        cache.resolve(&borrowed(&pairs));
        assert_eq!(cache.misses(), 18, "dropped entries are parsed again");
        cache.resolve(&[]);
        assert!(cache.is_empty());
    }

    #[test]
    fn identical_secrets_share_one_parse() {
        let (cert, key) = pair("shared.test");
        let pairs = vec![(cert.as_slice(), key.as_slice()); 40];
        let mut cache = CertCache::new();
        let out = cache.resolve(&pairs);
        assert_eq!((cache.len(), cache.misses()), (1, 1));
        assert_eq!(out.len(), 40);
    }

    /// A Gateway with one HTTPS listener `l{i}` per pair, each referencing
    /// the Secret `default/c{i}` that holds the pair.
    fn gateway_with(pairs: &[(Vec<u8>, Vec<u8>)]) -> crate::model::Resources {
        let mut yaml = String::from(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pc}\nspec: {controllerName: portcullis.dev/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: default}\nspec:\n  gatewayClassName: pc\n  listeners:\n",
        );
        for i in 0..pairs.len() {
            yaml.push_str(&format!(
                "  - {{name: l{i}, port: 443, protocol: HTTPS, hostname: h{i}.test, tls: {{certificateRefs: [{{name: c{i}}}]}}}}\n"
            ));
        }
        let mut resources = crate::model::Resources::from_objects(
            crate::model::load::parse_documents(&yaml, "t.yaml")
                .expect("fixture parses")
                .objects,
        );
        for (i, (cert, key)) in pairs.iter().enumerate() {
            let data = [("tls.crt", cert), ("tls.key", key)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            resources.push(crate::model::Object::Secret(std::sync::Arc::new(
                crate::model::Secret {
                    metadata: crate::model::ObjectMeta {
                        name: format!("c{i}"),
                        namespace: "default".into(),
                        ..Default::default()
                    },
                    kind: "kubernetes.io/tls".into(),
                    data,
                },
            )));
        }
        resources
    }

    /// `(listener, ResolvedRefs is True, message)` of every listener of `gw`.
    fn resolved_refs(c: &crate::compile::Compiled) -> Vec<(String, bool, String)> {
        let gw = c
            .status
            .find("Gateway", "default", "gw")
            .expect("the Gateway has a status");
        gw.listeners
            .iter()
            .map(|l| {
                let cond = l
                    .conditions
                    .iter()
                    .find(|c| c.kind == crate::status::ConditionType::ResolvedRefs)
                    .expect("every listener reports ResolvedRefs");
                (
                    l.name.clone(),
                    cond.status == crate::status::ConditionStatus::True,
                    cond.message.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn compile_reports_each_listeners_own_parse_error_in_listener_order() {
        let pairs = mixed(50);
        let compiled = crate::compile::compile(&gateway_with(&pairs), &Default::default());
        let got = resolved_refs(&compiled);
        assert_eq!(got.len(), 50);
        for (i, ((cert, key), (name, ok, message))) in pairs.iter().zip(&got).enumerate() {
            assert_eq!(name, &format!("l{i}"));
            match certs::load_certified_key(cert, key) {
                Ok(_) => assert!(ok, "{name}: {message}"),
                Err(e) => {
                    assert!(!ok, "{name} resolved with a broken Secret");
                    assert_eq!(message, &format!("Secret default/c{i}: {e}"));
                }
            }
        }
    }

    /// The certificates the data plane serves on listener `l0`.
    fn served(c: &crate::compile::Compiled) -> Vec<Arc<rustls::sign::CertifiedKey>> {
        c.dataplane
            .binds
            .iter()
            .flat_map(|b| &b.listeners)
            .filter(|l| l.key.name == "l0")
            .flat_map(|l| l.certificates.iter().map(|c| c.parsed.key.clone()))
            .collect()
    }

    #[test]
    fn a_secret_turned_bad_keeps_its_last_good_certificate_served() {
        let options = crate::compile::CompileOptions::default();
        let good = pair("h0.test");
        let mut cache = CertCache::new();
        let first = crate::compile::compile_cached(
            &gateway_with(std::slice::from_ref(&good)),
            &options,
            &mut cache,
        );
        assert!(resolved_refs(&first)[0].1);
        let before = served(&first);
        assert_eq!(before.len(), 1);

        // Garbage in tls.crt: said in status, the last good one served on.
        let bad = (b"this is not a certificate".to_vec(), good.1.clone());
        let resources = gateway_with(std::slice::from_ref(&bad));
        let kept = crate::compile::compile_cached(&resources, &options, &mut cache);
        let (_, ok, message) = &resolved_refs(&kept)[0];
        assert!(!ok, "the reference is reported invalid");
        assert!(
            message.starts_with("Secret default/c0: ")
                && message.ends_with("; still serving its last valid certificate"),
            "{message}"
        );
        let after = served(&kept);
        assert_eq!(after.len(), 1, "the listener still serves");
        assert!(Arc::ptr_eq(&before[0], &after[0]), "the same certificate");
        // And again on the next reload while the Secret stays bad.
        let again = crate::compile::compile_cached(&resources, &options, &mut cache);
        assert_eq!(served(&again).len(), 1);

        // Without a history (a fresh start) there is nothing to serve.
        let fresh = crate::compile::compile(&resources, &options);
        assert!(served(&fresh).is_empty());
        assert!(!resolved_refs(&fresh)[0].1);

        // Once the Secret is no longer referenced it is forgotten.
        crate::compile::compile_cached(&gateway_with(&[]), &options, &mut cache);
        let forgotten = crate::compile::compile_cached(&resources, &options, &mut cache);
        assert!(served(&forgotten).is_empty());
    }

    #[test]
    fn reload_with_the_cache_compiles_the_same_and_parses_only_changed_secrets() {
        let options = crate::compile::CompileOptions::default();
        let mut pairs = mixed(50);
        let resources = gateway_with(&pairs);
        let cold = crate::compile::compile(&resources, &options);
        let mut cache = CertCache::new();
        crate::compile::compile_cached(&resources, &options, &mut cache);
        assert_eq!((cache.len(), cache.misses()), (50, 50));
        let warm = crate::compile::compile_cached(&resources, &options, &mut cache);
        assert_eq!(cache.misses(), 0);
        assert_eq!(warm.status, cold.status);

        pairs[7] = pair("renewed.test");
        let renewed = crate::compile::compile_cached(&gateway_with(&pairs), &options, &mut cache);
        assert_eq!(cache.misses(), 1);
        assert!(resolved_refs(&renewed)[7].1, "the renewed Secret loads");

        crate::compile::compile_cached(&gateway_with(&pairs[..20]), &options, &mut cache);
        assert_eq!((cache.len(), cache.misses()), (20, 0));
    }
}
