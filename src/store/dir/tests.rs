//! Tests of the directory store: every operation round-trips, writes are
//! atomic with the right modes, crash leftovers are ignored and cleaned, a
//! state directory written by earlier versions is read, and the local CA is
//! created once however many creators race.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::files::{create_exclusive, read_dir_names};
use super::*;

fn cert(tag: &str) -> StoredCert {
    StoredCert {
        cert_chain_pem: format!("CERT {tag}\n"),
        key_pem: format!("KEY {tag}\n"),
        ca_pem: None,
    }
}

fn meta() -> CertMeta {
    CertMeta {
        issuer_kind: "local-ca".into(),
        issuer_name: "local-ca".into(),
        dns_names: vec!["a.test".into()],
        not_after: None,
        renewal_time: None,
    }
}

fn key(name: &str) -> StoreKey {
    StoreKey::new("default", name).expect("valid test name")
}

fn account(server: &str) -> AccountId {
    AccountId::new(
        StoreKey::new("web", "le-account").expect("valid"),
        server.to_owned(),
    )
}

fn order(n: u32) -> PendingOrder {
    PendingOrder {
        key_pem: None,
        url: format!("https://ca.test/order/{n}"),
        server: "https://ca.test/dir".into(),
        names: vec!["a.test".into()],
        profile: None,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

// ---- Issued pairs ----

#[tokio::test]
async fn put_then_get_roundtrips_and_replaces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    assert_eq!(store.get_cert(&key("a")).await.expect("get"), None);
    store
        .put_cert(&key("a"), &cert("1"), &meta())
        .await
        .expect("put");
    assert_eq!(
        store.get_cert(&key("a")).await.expect("get"),
        Some(cert("1"))
    );
    store
        .put_cert(&key("a"), &cert("2"), &meta())
        .await
        .expect("put again");
    assert_eq!(
        store.get_cert(&key("a")).await.expect("get"),
        Some(cert("2"))
    );
    // The stable paths read the current pair too.
    let entry = dir.path().join("secrets/default/a");
    assert_eq!(
        fs::read_to_string(entry.join("tls.key")).expect("read"),
        "KEY 2\n"
    );
    assert_eq!(
        fs::read_to_string(entry.join("tls.crt")).expect("read"),
        "CERT 2\n"
    );
}

#[tokio::test]
async fn ca_certificate_is_kept_beside_the_pair_while_the_current_version_has_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let entry = dir.path().join("secrets/default/a");
    let with_ca = StoredCert {
        ca_pem: Some("ROOT\n".into()),
        ..cert("1")
    };
    store
        .put_cert(&key("a"), &with_ca, &meta())
        .await
        .expect("put");
    assert_eq!(store.get_cert(&key("a")).await.expect("get"), Some(with_ca));
    assert_eq!(
        fs::read_to_string(entry.join("ca.crt")).expect("ca.crt"),
        "ROOT\n"
    );
    assert_eq!(mode(&entry.join("ca.crt")), 0o644);
    // A later pair without a CA drops the stable link (no dangling link).
    store
        .put_cert(&key("a"), &cert("2"), &meta())
        .await
        .expect("put");
    assert_eq!(
        store.get_cert(&key("a")).await.expect("get"),
        Some(cert("2"))
    );
    assert!(fs::symlink_metadata(entry.join("ca.crt")).is_err());
}

#[tokio::test]
async fn key_files_are_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    store
        .put_cert(&key("a"), &cert("1"), &meta())
        .await
        .expect("put");
    let entry = dir.path().join("secrets/default/a");
    assert_eq!(mode(&entry.join("tls.key")), 0o600);
    assert_eq!(mode(&entry.join("tls.crt")), 0o644);
    assert_eq!(mode(&entry), 0o700);
}

#[tokio::test]
async fn list_returns_stored_keys_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    assert!(store.list_certs().await.expect("list empty").is_empty());
    store
        .put_cert(&key("b"), &cert("b"), &meta())
        .await
        .expect("put");
    store
        .put_cert(&key("a"), &cert("a"), &meta())
        .await
        .expect("put");
    let other = StoreKey::new("other", "c").expect("valid");
    store
        .put_cert(&other, &cert("c"), &meta())
        .await
        .expect("put");
    assert_eq!(
        store.list_certs().await.expect("list"),
        vec![key("a"), key("b"), other]
    );
}

#[tokio::test]
async fn crash_leftovers_are_ignored_then_cleaned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    store
        .put_cert(&key("a"), &cert("1"), &meta())
        .await
        .expect("put");
    let entry = dir.path().join("secrets/default/a");
    // A put killed mid-way: a half-written version and a temp symlink.
    let half = entry.join("..00000000deadbeef");
    fs::create_dir(&half).expect("mkdir");
    fs::write(half.join("tls.key"), "KEY half").expect("write");
    symlink("..00000000deadbeef", entry.join("..data.tmp-1")).expect("symlink");
    assert_eq!(
        store.get_cert(&key("a")).await.expect("get"),
        Some(cert("1"))
    );
    assert_eq!(store.list_certs().await.expect("list"), vec![key("a")]);

    store
        .put_cert(&key("a"), &cert("2"), &meta())
        .await
        .expect("put");
    assert_eq!(
        store.get_cert(&key("a")).await.expect("get"),
        Some(cert("2"))
    );
    let names = read_dir_names(&entry).expect("read dir");
    assert_eq!(names.len(), 4, "{names:?}");
    for expected in ["..data", "tls.crt", "tls.key"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    assert!(!names
        .iter()
        .any(|n| n.contains("deadbeef") || n.contains("tmp")));
}

#[tokio::test]
async fn crash_before_first_switch_leaves_no_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let entry = dir.path().join("secrets/default/a");
    fs::create_dir_all(entry.join("..0000000000000001")).expect("mkdir");
    assert_eq!(store.get_cert(&key("a")).await.expect("get"), None);
    assert!(store.list_certs().await.expect("list").is_empty());
}

#[tokio::test]
async fn data_link_escaping_the_entry_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let entry = dir.path().join("secrets/default/a");
    fs::create_dir_all(&entry).expect("mkdir");
    symlink("../../../elsewhere", entry.join("..data")).expect("symlink");
    assert!(store.get_cert(&key("a")).await.is_err());
}

// ---- Single files ----

#[test]
fn write_atomic_replaces_content_and_sets_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.key");
    write_atomic(&path, b"one", 0o600).expect("write");
    write_atomic(&path, b"two", 0o600).expect("rewrite");
    assert_eq!(fs::read(&path).expect("read"), b"two");
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn write_atomic_removes_stale_temp_files_of_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = dir.path().join(".ca.key.tmp-0123");
    let unrelated = dir.path().join(".other.tmp-0123");
    fs::write(&stale, "partial").expect("write");
    fs::write(&unrelated, "keep").expect("write");
    write_atomic(&dir.path().join("ca.key"), b"key", 0o600).expect("write");
    assert!(!stale.exists());
    assert!(unrelated.exists());
    let mut names = read_dir_names(dir.path()).expect("read dir");
    names.sort();
    assert_eq!(names, [".other.tmp-0123", "ca.key"]);
}

#[test]
fn create_exclusive_creates_once_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ca.key");
    assert!(create_exclusive(&path, b"first", 0o600).expect("create"));
    assert!(!create_exclusive(&path, b"second", 0o600).expect("exists"));
    assert_eq!(fs::read(&path).expect("read"), b"first");
    assert_eq!(mode(&path), 0o600);
    // No temporary file is left either way.
    assert_eq!(read_dir_names(dir.path()).expect("read dir"), ["ca.key"]);
}

// ---- ACME accounts and pending orders ----

#[tokio::test]
async fn account_keys_round_trip_per_server_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let a = account("https://a.test/dir");
    let b = account("https://b.test/dir");
    assert_eq!(store.account_key(&a).await.expect("read"), None);
    store.put_account_key(&a, "KEY A\n").await.expect("put");
    assert_eq!(
        store.account_key(&a).await.expect("read").as_deref(),
        Some("KEY A\n")
    );
    assert_eq!(store.account_key(&b).await.expect("read"), None);
    let path = store.account_path(&a);
    assert!(path.starts_with(dir.path().join("acme/web/le-account")));
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(format!("account-{}.pem", a.server_hash()).as_str())
    );
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("dir")), 0o700);
    store
        .put_account_key(&a, "KEY A2\n")
        .await
        .expect("replace");
    assert_eq!(
        store.account_key(&a).await.expect("read").as_deref(),
        Some("KEY A2\n")
    );
}

#[tokio::test]
async fn pending_orders_round_trip_and_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let secret = StoreKey::new("web", "site-tls").expect("valid key");
    assert_eq!(store.pending_order(&secret).await.expect("read"), None);
    store
        .put_pending_order(&secret, &order(1))
        .await
        .expect("put");
    store
        .put_pending_order(&secret, &order(2))
        .await
        .expect("replace");
    assert_eq!(
        store.pending_order(&secret).await.expect("read"),
        Some(order(2))
    );
    let path = dir.path().join("acme/orders/web/site-tls.json");
    assert_eq!(store.order_path(&secret), path);
    assert_eq!(mode(&path), 0o600);
    store.remove_pending_order(&secret).await.expect("remove");
    assert_eq!(store.pending_order(&secret).await.expect("read"), None);
    store
        .remove_pending_order(&secret)
        .await
        .expect("removing nothing is fine");
}

#[tokio::test]
async fn damaged_pending_order_is_a_decode_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let secret = StoreKey::new("web", "site-tls").expect("valid key");
    let path = store.order_path(&secret);
    fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    fs::write(&path, b"{not json").expect("written");
    assert!(matches!(
        store.pending_order(&secret).await,
        Err(Error::Decode { .. })
    ));
}

// ---- Issuer records ----

fn record(attempts: u32) -> Record {
    Record {
        attempts,
        last_error: Some(format!("failure {attempts}")),
        last_failure: Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
        ..Record::default()
    }
}

#[tokio::test]
async fn records_merge_changes_and_keep_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    assert!(store.records().await.expect("none yet").is_empty());
    let first = BTreeMap::from([(key("a"), record(1)), (key("b"), record(1))]);
    store.put_records(&first).await.expect("put");
    let changed = BTreeMap::from([(key("b"), record(2))]);
    store.put_records(&changed).await.expect("put changes");
    assert_eq!(
        store.records().await.expect("read"),
        BTreeMap::from([(key("a"), record(1)), (key("b"), record(2))])
    );
    assert_eq!(mode(&dir.path().join("issuer/state.json")), 0o600);
}

#[tokio::test]
async fn damaged_records_are_a_decode_error_and_rewritten_by_the_next_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let path = dir.path().join("issuer/state.json");
    fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    fs::write(&path, "{broken").expect("write");
    assert!(matches!(store.records().await, Err(Error::Decode { .. })));
    let changed = BTreeMap::from([(key("a"), record(3))]);
    store.put_records(&changed).await.expect("put");
    assert_eq!(store.records().await.expect("read"), changed);
}

// ---- The local CA ----

#[tokio::test]
async fn local_ca_is_created_once_and_a_second_creator_gets_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    assert_eq!(store.local_ca().await.expect("read"), None);
    assert!(
        !dir.path().join("local-ca").exists(),
        "reading creates nothing"
    );
    let first = store.create_local_ca(&cert("ca-1")).await.expect("create");
    assert_eq!(first, cert("ca-1"));
    let second = store.create_local_ca(&cert("ca-2")).await.expect("compare");
    assert_eq!(second, cert("ca-1"), "the first CA stays");
    assert_eq!(store.local_ca().await.expect("read"), Some(cert("ca-1")));
    let ca_dir = dir.path().join("local-ca");
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert_eq!(mode(&ca_dir.join("ca.crt")), 0o644);
    assert_eq!(mode(&ca_dir), 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_in_two_stores_end_with_one_local_ca() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two stores over one directory: no shared lock, as two processes.
        let stores: Vec<DirStore> = (0..4).map(|_| DirStore::new(dir.path())).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, store) in stores.into_iter().enumerate() {
            tasks.spawn(async move { store.create_local_ca(&cert(&format!("ca-{i}"))).await });
        }
        let mut winners = Vec::new();
        while let Some(result) = tasks.join_next().await {
            winners.push(result.expect("task").expect("create"));
        }
        let stored = DirStore::new(dir.path())
            .local_ca()
            .await
            .expect("read")
            .expect("created");
        assert!(winners.iter().all(|w| *w == stored), "{winners:?}");
    }
}

#[tokio::test]
async fn local_ca_certificate_without_key_is_incomplete_not_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    store.create_local_ca(&cert("ca-1")).await.expect("create");
    fs::remove_file(dir.path().join("local-ca/ca.key")).expect("remove key");
    assert!(matches!(
        store.local_ca().await,
        Err(Error::Incomplete { .. })
    ));
    assert!(store.create_local_ca(&cert("ca-2")).await.is_err());
    assert_eq!(
        fs::read_to_string(dir.path().join("local-ca/ca.crt")).expect("cert"),
        "CERT ca-1\n"
    );
}

#[tokio::test]
async fn orphan_local_ca_key_is_offered_and_completed_with_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirStore::new(dir.path());
    let ca_dir = dir.path().join("local-ca");
    fs::create_dir_all(&ca_dir).expect("mkdir");
    fs::write(ca_dir.join("ca.key"), "KEY orphan\n").expect("write");
    assert_eq!(store.local_ca().await.expect("read"), None);
    assert_eq!(
        store
            .orphan_local_ca_key()
            .await
            .expect("orphan")
            .as_deref(),
        Some("KEY orphan\n")
    );
    let completed = StoredCert {
        cert_chain_pem: "CERT for orphan\n".into(),
        key_pem: "KEY orphan\n".into(),
        ca_pem: None,
    };
    assert_eq!(
        store.create_local_ca(&completed).await.expect("complete"),
        completed
    );
    assert_eq!(store.orphan_local_ca_key().await.expect("none"), None);
}

// ---- Old layouts ----

/// A state directory as portcullis wrote it before the async store: plain
/// files and the secrets' `..data` swap, no `ca.crt` beside the pair.
#[tokio::test]
async fn a_state_directory_of_the_old_layout_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let entry = state.join("secrets/apps/web-tls");
    let version = entry.join("..00000000000000aa");
    fs::create_dir_all(&version).expect("mkdir");
    fs::write(version.join("tls.crt"), "OLD CERT\n").expect("write");
    fs::write(version.join("tls.key"), "OLD KEY\n").expect("write");
    symlink("..00000000000000aa", entry.join("..data")).expect("symlink");
    symlink("..data/tls.crt", entry.join("tls.crt")).expect("symlink");
    symlink("..data/tls.key", entry.join("tls.key")).expect("symlink");
    fs::create_dir_all(state.join("local-ca")).expect("mkdir");
    fs::write(state.join("local-ca/ca.crt"), "OLD ROOT\n").expect("write");
    fs::write(state.join("local-ca/ca.key"), "OLD CA KEY\n").expect("write");
    let acct = account("https://acme.test/dir");
    let acct_file = state
        .join("acme/web/le-account")
        .join(format!("account-{}.pem", acct.server_hash()));
    fs::create_dir_all(acct_file.parent().expect("dir")).expect("mkdir");
    fs::write(&acct_file, "OLD ACCOUNT KEY\n").expect("write");
    fs::create_dir_all(state.join("acme/orders/apps")).expect("mkdir");
    fs::write(
        state.join("acme/orders/apps/web-tls.json"),
        r#"{"url": "https://acme.test/order/7", "server": "https://acme.test/dir",
            "names": ["web.test"], "profile": null}"#,
    )
    .expect("write");
    fs::create_dir_all(state.join("issuer")).expect("mkdir");
    fs::write(
        state.join("issuer/state.json"),
        r#"{"apps/web-tls": {"attempts": 2, "lastError": "rate limited",
            "lastFailure": 1767225600.0, "renewalWindow": [1767225600.0, 1767229200.0]},
           "not a key": {"attempts": 9}}"#,
    )
    .expect("write");

    let store = DirStore::new(state);
    let web = StoreKey::new("apps", "web-tls").expect("valid");
    assert_eq!(
        store.get_cert(&web).await.expect("pair"),
        Some(StoredCert {
            cert_chain_pem: "OLD CERT\n".into(),
            key_pem: "OLD KEY\n".into(),
            ca_pem: None,
        })
    );
    assert_eq!(store.list_certs().await.expect("list"), vec![web.clone()]);
    assert_eq!(
        store.local_ca().await.expect("ca"),
        Some(StoredCert {
            cert_chain_pem: "OLD ROOT\n".into(),
            key_pem: "OLD CA KEY\n".into(),
            ca_pem: None,
        })
    );
    assert_eq!(
        store.account_key(&acct).await.expect("account").as_deref(),
        Some("OLD ACCOUNT KEY\n")
    );
    let pending = store.pending_order(&web).await.expect("order");
    assert_eq!(
        pending.map(|o| o.url),
        Some("https://acme.test/order/7".to_string())
    );
    let records = store.records().await.expect("records");
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[&web];
    assert_eq!(r.attempts, 2);
    assert_eq!(r.last_error.as_deref(), Some("rate limited"));
    assert!(r.renewal_window.is_some());
}
