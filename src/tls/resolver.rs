//! Listener and certificate selection: the listener a ClientHello's SNI
//! selects on one socket ([`select_listener`], after `Bind::select`'s rule),
//! and the certificate of that listener the client can verify
//! ([`choose_certificate`], used by [`ListenerCertificates`] during each
//! handshake).

use crate::dataplane::{Dataplane, Listener};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::net::SocketAddr;
use std::sync::Arc;

/// Chooses among one listener's certificates by the client's signature
/// schemes.
#[derive(Debug)]
pub struct ListenerCertificates(Vec<Arc<CertifiedKey>>);

impl ListenerCertificates {
    /// A resolver over `certificates`.
    pub fn new(certificates: Vec<Arc<CertifiedKey>>) -> Self {
        Self(certificates)
    }
}

impl ResolvesServerCert for ListenerCertificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = choose_certificate(&self.0, client_hello.signature_schemes());
        if chosen.is_none() {
            tracing::debug!("no certificate matches the client's signature schemes");
        }
        chosen
    }
}

/// The listener of the bind at `bind` that a raw SNI value selects: the SNI
/// is normalised first; without SNI, the bind's only (or catch-all) listener.
pub fn select_listener(
    dataplane: &Dataplane,
    bind: SocketAddr,
    sni: Option<&str>,
) -> Option<Arc<Listener>> {
    let bind = dataplane.bind(bind)?;
    let host = sni.and_then(crate::hostname::normalize_host);
    bind.select(host.as_deref()).cloned()
}

/// The first certificate whose key can sign with one of the schemes the
/// client offers (so an ECDSA certificate is only chosen for a client that
/// verifies ECDSA), or `None` when none fits.
pub fn choose_certificate(
    certificates: &[Arc<CertifiedKey>],
    schemes: &[SignatureScheme],
) -> Option<Arc<CertifiedKey>> {
    certificates
        .iter()
        .find(|c| c.key.choose_scheme(schemes).is_some())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{Bind, BindProtocol, ListenerKey, RouteTable};
    use crate::model::ObjectKey;

    /// ring cannot generate RSA keys, so the RSA test key is a fixture.
    const RSA_2048_KEY: &str = include_str!("testdata/rsa-2048.key");

    fn certified_key(key: rcgen::KeyPair) -> Arc<CertifiedKey> {
        let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
            .expect("valid SAN")
            .self_signed(&key)
            .expect("self-signing succeeds");
        let provider = (*crate::tls::provider::provider()).clone();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .expect("rcgen emits PKCS#8");
        let signing = provider
            .key_provider
            .load_private_key(der)
            .expect("ring loads rcgen keys");
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing))
    }

    fn ecdsa() -> Arc<CertifiedKey> {
        certified_key(
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("ring generates P-256 keys"),
        )
    }

    fn rsa() -> Arc<CertifiedKey> {
        certified_key(
            rcgen::KeyPair::from_pem_and_sign_algo(RSA_2048_KEY, &rcgen::PKCS_RSA_SHA256)
                .expect("fixture is a PKCS#8 RSA key"),
        )
    }

    const RSA_ONLY: &[SignatureScheme] = &[
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA256,
    ];
    const ECDSA_ONLY: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];

    #[test]
    fn rsa_only_client_gets_the_rsa_certificate() {
        let (e, r) = (ecdsa(), rsa());
        let chosen = choose_certificate(&[e, r.clone()], RSA_ONLY).expect("RSA fits");
        assert!(Arc::ptr_eq(&chosen, &r));
    }

    #[test]
    fn first_fitting_certificate_wins() {
        let (e, r) = (ecdsa(), rsa());
        let both: Vec<_> = ECDSA_ONLY.iter().chain(RSA_ONLY).copied().collect();
        let chosen = choose_certificate(&[e.clone(), r], &both).expect("both fit");
        assert!(Arc::ptr_eq(&chosen, &e));
    }

    #[test]
    fn no_fitting_certificate_fails_the_handshake() {
        assert!(choose_certificate(&[ecdsa()], RSA_ONLY).is_none());
        assert!(choose_certificate(&[], RSA_ONLY).is_none());
    }

    fn listener(name: &str, hostname: Option<&str>) -> Arc<Listener> {
        Arc::new(Listener {
            key: ListenerKey {
                gateway: ObjectKey::new("default", "gw"),
                listener_set: None,
                name: name.to_string(),
            },
            hostname: hostname.map(str::to_string),
            port: 443,
            protocol: BindProtocol::Https,
            certificates: Vec::new(),
            tls: None,
            client_auth: None,
            routes: RouteTable::default(),
            streams: None,
        })
    }

    fn dataplane(listeners: Vec<Arc<Listener>>) -> (Dataplane, SocketAddr) {
        let addr: SocketAddr = "0.0.0.0:443".parse().expect("literal address");
        let dp = Dataplane {
            binds: vec![Bind::new(addr, BindProtocol::Https, listeners)],
        };
        (dp, addr)
    }

    #[test]
    fn sni_is_normalised_before_selection() {
        let (dp, addr) = dataplane(vec![
            listener("a", Some("a.example.com")),
            listener("b", Some("b.example.com")),
        ]);
        let l = select_listener(&dp, addr, Some("B.Example.COM.")).expect("b matches");
        assert_eq!(l.key.name, "b");
    }

    #[test]
    fn missing_sni_needs_an_unambiguous_listener() {
        let (dp, addr) = dataplane(vec![
            listener("a", Some("a.example.com")),
            listener("b", Some("b.example.com")),
        ]);
        assert!(select_listener(&dp, addr, None).is_none());
        let (dp, addr) = dataplane(vec![listener("a", Some("a.example.com"))]);
        assert_eq!(
            select_listener(&dp, addr, None)
                .expect("single listener")
                .key
                .name,
            "a"
        );
    }

    #[test]
    fn unknown_bind_selects_nothing() {
        let (dp, _) = dataplane(vec![listener("a", None)]);
        let other: SocketAddr = "0.0.0.0:8443".parse().expect("literal address");
        assert!(select_listener(&dp, other, Some("a.example.com")).is_none());
    }
}
