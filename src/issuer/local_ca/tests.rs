//! Tests of the local CA: leaves verify against the root with a real
//! verifier, keys match, the root persists in the Store (one CA however
//! many creators race), files are private.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::RootCertStore;

use super::*;
use crate::store::DirStore;
use crate::tls::certs::{inspect, load_certified_key, parse_chain};

/// 2026-01-01T00:00:00Z.
const NOW_SECS: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn new_ca() -> LocalCa {
    LocalCa::generate(now()).expect("generate CA")
}

/// The CA kept in a directory store at `dir`.
async fn load_or_create(dir: &Path, at: SystemTime) -> Result<LocalCa, Error> {
    LocalCa::load_or_create(&DirStore::new(dir), at).await
}

/// Runs rustls' WebPKI server verification of `chain_pem` for `name` at
/// `at`, trusting only `root_pem`.
fn verify(root_pem: &str, chain_pem: &str, name: &str, at: SystemTime) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for cert in parse_chain(root_pem.as_bytes()).expect("root parses") {
        roots.add(cert).expect("root accepted");
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        crate::tls::provider::provider(),
    )
    .build()
    .expect("verifier builds");
    let chain = parse_chain(chain_pem.as_bytes()).expect("chain parses");
    let server_name = ServerName::try_from(name.to_owned()).expect("valid server name");
    let at = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).expect("after 1970"));
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], at)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn issued_leaf_verifies_for_its_names_only() {
    let ca = new_ca();
    let leaf = ca
        .issue(
            &names(&["localhost", "app.example.test"]),
            DEFAULT_LEAF_VALIDITY,
            now(),
        )
        .expect("issue");
    let inside = now() + Duration::from_secs(3600);
    verify(ca.root_pem(), &leaf.cert_chain_pem, "localhost", inside).expect("localhost verifies");
    verify(
        ca.root_pem(),
        &leaf.cert_chain_pem,
        "app.example.test",
        inside,
    )
    .expect("second SAN verifies");
    assert!(verify(
        ca.root_pem(),
        &leaf.cert_chain_pem,
        "other.example.test",
        inside
    )
    .is_err());
}

#[test]
fn issued_leaf_is_rejected_outside_its_validity() {
    let ca = new_ca();
    let leaf = ca
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    let after = now() + DEFAULT_LEAF_VALIDITY + Duration::from_secs(1);
    assert!(verify(ca.root_pem(), &leaf.cert_chain_pem, "localhost", after).is_err());
    let before = now() - Duration::from_secs(120);
    assert!(verify(ca.root_pem(), &leaf.cert_chain_pem, "localhost", before).is_err());
}

#[test]
fn leaf_from_another_ca_is_rejected() {
    let ca = new_ca();
    let other = new_ca();
    let leaf = other
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    assert!(verify(ca.root_pem(), &leaf.cert_chain_pem, "localhost", now()).is_err());
}

#[test]
fn leaf_starts_one_minute_early_and_lasts_the_validity() {
    let ca = new_ca();
    let leaf = ca
        .issue(&names(&["localhost"]), Duration::from_secs(3600), now())
        .expect("issue");
    let chain = parse_chain(leaf.cert_chain_pem.as_bytes()).expect("parse");
    assert_eq!(chain.len(), 2, "leaf then root");
    let info = inspect(&chain[0]).expect("inspect");
    let now = i64::try_from(NOW_SECS).expect("fits");
    assert_eq!(info.not_before, now - 60);
    assert_eq!(info.not_after, now + 3600);
    assert_eq!(info.sans, ["localhost"]);
    assert_eq!(info.subject_cn.as_deref(), Some("localhost"));
}

#[test]
fn leaf_never_outlives_the_root() {
    let ca = new_ca();
    let leaf = ca
        .issue(
            &names(&["localhost"]),
            Duration::from_secs(20 * 365 * 24 * 3600),
            now(),
        )
        .expect("issue");
    let chain = parse_chain(leaf.cert_chain_pem.as_bytes()).expect("parse");
    let leaf_info = inspect(&chain[0]).expect("inspect leaf");
    let root_info = inspect(&chain[1]).expect("inspect root");
    assert_eq!(leaf_info.not_after, root_info.not_after);
}

#[test]
fn issuing_after_the_root_expired_fails() {
    let ca = new_ca();
    let later = now() + ROOT_VALIDITY + Duration::from_secs(3600);
    assert!(matches!(
        ca.issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, later),
        Err(Error::EmptyValidity)
    ));
}

#[test]
fn issued_key_matches_certificate() {
    let ca = new_ca();
    let leaf = ca
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    load_certified_key(leaf.cert_chain_pem.as_bytes(), leaf.key_pem.as_bytes())
        .expect("key matches leaf");
}

#[test]
fn each_leaf_gets_a_fresh_key_and_serial() {
    let ca = new_ca();
    let a = ca
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    let b = ca
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    assert_ne!(a.key_pem, b.key_pem);
    let serial = |c: &StoredCert| {
        let chain = parse_chain(c.cert_chain_pem.as_bytes()).expect("parse");
        inspect(&chain[0]).expect("inspect").serial
    };
    assert_ne!(serial(&a), serial(&b));
}

#[test]
fn issue_without_names_is_rejected() {
    let ca = new_ca();
    assert!(matches!(
        ca.issue(&[], DEFAULT_LEAF_VALIDITY, now()),
        Err(Error::NoNames)
    ));
}

#[test]
fn root_is_a_ca_named_after_portcullis() {
    let ca = new_ca();
    let der = parse_chain(ca.root_pem().as_bytes()).expect("parse");
    let (_, x509) =
        x509_parser::certificate::X509Certificate::from_der(&der[0]).expect("valid X.509");
    let bc = x509
        .basic_constraints()
        .expect("well-formed")
        .expect("has basic constraints");
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let cn = inspect(&der[0])
        .expect("inspect")
        .subject_cn
        .expect("has CN");
    assert!(cn.starts_with("portcullis local CA "), "{cn}");
    assert_eq!(cn.len(), "portcullis local CA ".len() + 6);
}

#[tokio::test]
async fn load_or_create_twice_returns_the_same_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = load_or_create(dir.path(), now()).await.expect("create");
    let later = now() + Duration::from_secs(86_400);
    let second = load_or_create(dir.path(), later).await.expect("load");
    assert_eq!(first.root_pem(), second.root_pem());
    // The reloaded CA still signs leaves the original root trusts.
    let leaf = second
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, later)
        .expect("issue");
    verify(first.root_pem(), &leaf.cert_chain_pem, "localhost", later).expect("verifies");
    assert_eq!(
        LocalCa::read_root_pem(&DirStore::new(dir.path()))
            .await
            .expect("read")
            .as_deref(),
        Some(first.root_pem())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creators_racing_over_one_state_directory_share_one_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let path = dir.path().to_path_buf();
        tasks.spawn(async move { load_or_create(&path, now()).await.map(|ca| ca.root_pem) });
    }
    let mut roots = Vec::new();
    while let Some(root) = tasks.join_next().await {
        roots.push(root.expect("task").expect("load or create"));
    }
    roots.dedup();
    assert_eq!(roots.len(), 1, "more than one CA was created");
}

#[test]
fn issued_pairs_carry_the_root_as_their_ca() {
    let ca = new_ca();
    let leaf = ca
        .issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY, now())
        .expect("issue");
    assert_eq!(leaf.ca_pem.as_deref(), Some(ca.root_pem()));
}

#[tokio::test]
async fn ca_key_file_is_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    load_or_create(dir.path(), now()).await.expect("create");
    let mode = |name: &str| {
        fs::metadata(dir.path().join("local-ca").join(name))
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("ca.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    assert_eq!(mode(""), 0o700);
}

#[tokio::test]
async fn read_root_pem_does_not_create_a_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    assert_eq!(LocalCa::read_root_pem(&store).await.expect("read"), None);
    assert!(!dir.path().join("local-ca").exists());
}

#[tokio::test]
async fn crash_between_key_and_cert_reuses_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = load_or_create(dir.path(), now()).await.expect("create");
    let key_before = fs::read(dir.path().join("local-ca/ca.key")).expect("key");
    fs::remove_file(dir.path().join("local-ca/ca.crt")).expect("remove cert");
    let again = load_or_create(dir.path(), now()).await.expect("recover");
    assert_ne!(ca.root_pem(), again.root_pem(), "a new root certificate");
    assert_eq!(
        fs::read(dir.path().join("local-ca/ca.key")).expect("key"),
        key_before,
        "the key was kept"
    );
}

#[tokio::test]
async fn certificate_without_key_is_an_error_not_a_new_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    load_or_create(dir.path(), now()).await.expect("create");
    fs::remove_file(dir.path().join("local-ca/ca.key")).expect("remove key");
    assert!(matches!(
        load_or_create(dir.path(), now()).await,
        Err(Error::LoadCa(CaProblem::Incomplete(_)))
    ));
}

#[tokio::test]
async fn mismatched_key_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    load_or_create(dir.path(), now()).await.expect("create");
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("keygen");
    fs::write(dir.path().join("local-ca/ca.key"), other.serialize_pem()).expect("write");
    assert!(matches!(
        load_or_create(dir.path(), now()).await,
        Err(Error::LoadCa(CaProblem::KeyMismatch))
    ));
}

#[tokio::test]
async fn debug_does_not_print_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = load_or_create(dir.path(), now()).await.expect("create");
    let key = fs::read_to_string(dir.path().join("local-ca/ca.key")).expect("key");
    let body: String = key.lines().nth(1).expect("PEM body line").to_owned();
    assert!(!format!("{ca:?}").contains(&body));
}
