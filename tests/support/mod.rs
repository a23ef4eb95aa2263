//! Shared support for integration tests that drive the real `portcullis` binary:
//! certificates ([`pki`]), in-process echo backends ([`echo`], [`tcp_echo`]), the simulated
//! cluster environment written into a config directory ([`env`]), an HTTP/TLS/
//! WebSocket client ([`client`]), a guard around the spawned binary
//! ([`portcullis`]) and a real Kubernetes control plane, etcd and
//! kube-apiserver, optionally with kube-controller-manager, kube-scheduler and
//! the tests' stand-in kubelet ([`control_plane`]).
//!
//! Each integration test that uses it declares `mod support;`. Not every test
//! uses every helper, hence the crate-level `dead_code` allowance here.
#![allow(dead_code)]

pub mod api_status;
pub mod client;
pub mod control_plane;
pub mod echo;
pub mod env;
pub mod expect;
pub mod kube_mode;
pub mod pki;
pub mod portcullis;
pub mod ports;
pub mod scenarios;
pub mod status_checks;
pub mod tcp_echo;

use std::path::PathBuf;

/// The shared conformance data directory: `$PORTCULLIS_SHARED/conformance`, or
/// `CARGO_MANIFEST_DIR/../shared/conformance`.
pub fn conformance_dir() -> PathBuf {
    let shared = std::env::var_os("PORTCULLIS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("conformance")
}

/// Installs the ring crypto provider as the process default (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
