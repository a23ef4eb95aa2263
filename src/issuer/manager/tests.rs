//! Tests of the manager's loop over a real directory store: a local-CA
//! certificate is issued, stored with its `ca.crt` and metadata, and
//! recorded; a short-lived one is renewed at its renewal time (on paused
//! tokio time); records are written only when they change; stopping a run
//! aborts the orders it started and a new run reads the records again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::compile::{compile, CompileOptions};
use crate::issuer::acme::AcmeContext;
use crate::issuer::challenges::{ChallengeBoard, LocalPublisher};
use crate::issuer::clock::{SystemClock, TokioClock};
use crate::store::{
    AccountId, CertMeta, DirStore, Error as StoreError, PendingOrder, Store, StoreKey, StoredCert,
};

/// A directory store that also remembers the metadata of every put and
/// counts record writes (what the directory store itself has no place for).
#[derive(Debug)]
struct Observed {
    dir: DirStore,
    metas: Mutex<Vec<(StoreKey, CertMeta)>>,
    record_writes: Mutex<usize>,
}

impl Observed {
    fn new(path: &std::path::Path) -> Self {
        Self {
            dir: DirStore::new(path),
            metas: Mutex::new(Vec::new()),
            record_writes: Mutex::new(0),
        }
    }

    fn record_writes(&self) -> usize {
        *self.record_writes.lock().expect("not poisoned")
    }
}

#[async_trait::async_trait]
impl Store for Observed {
    async fn get_cert(&self, key: &StoreKey) -> Result<Option<StoredCert>, StoreError> {
        self.dir.get_cert(key).await
    }
    async fn put_cert(
        &self,
        key: &StoreKey,
        cert: &StoredCert,
        meta: &CertMeta,
    ) -> Result<(), StoreError> {
        self.metas
            .lock()
            .expect("not poisoned")
            .push((key.clone(), meta.clone()));
        self.dir.put_cert(key, cert, meta).await
    }
    async fn list_certs(&self) -> Result<Vec<StoreKey>, StoreError> {
        self.dir.list_certs().await
    }
    async fn account_key(&self, account: &AccountId) -> Result<Option<String>, StoreError> {
        self.dir.account_key(account).await
    }
    async fn put_account_key(&self, account: &AccountId, pem: &str) -> Result<(), StoreError> {
        self.dir.put_account_key(account, pem).await
    }
    async fn pending_order(&self, cert: &StoreKey) -> Result<Option<PendingOrder>, StoreError> {
        self.dir.pending_order(cert).await
    }
    async fn put_pending_order(
        &self,
        cert: &StoreKey,
        order: &PendingOrder,
    ) -> Result<(), StoreError> {
        self.dir.put_pending_order(cert, order).await
    }
    async fn remove_pending_order(&self, cert: &StoreKey) -> Result<(), StoreError> {
        self.dir.remove_pending_order(cert).await
    }
    async fn local_ca(&self) -> Result<Option<StoredCert>, StoreError> {
        self.dir.local_ca().await
    }
    async fn create_local_ca(&self, ca: &StoredCert) -> Result<StoredCert, StoreError> {
        self.dir.create_local_ca(ca).await
    }
    async fn records(&self) -> Result<BTreeMap<StoreKey, Record>, StoreError> {
        self.dir.records().await
    }
    async fn put_records(&self, changed: &BTreeMap<StoreKey, Record>) -> Result<(), StoreError> {
        *self.record_writes.lock().expect("not poisoned") += 1;
        self.dir.put_records(changed).await
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// A Gateway whose HTTPS listener for `app.test` names no Secret, with
/// `annotations` (YAML flow-map entries), plus `extra` manifests.
fn input(annotations: &str, extra: &str) -> Input {
    let yaml = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{{annotations}}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: web, protocol: HTTPS, port: 443, hostname: app.test}}
{extra}"#
    );
    let parsed = crate::model::load::parse_documents(&yaml, "t.yaml").expect("parses");
    let resources = Resources::from_objects(parsed.objects);
    let status = compile(&resources, &CompileOptions::default()).status;
    Input {
        resources: Arc::new(resources),
        status: Arc::new(status),
    }
}

fn web_key() -> StoreKey {
    StoreKey::new("default", "gw-web-tls").expect("valid")
}

/// A manager over `store` with a local CA and, if given, ACME publishing on
/// `board`, reading the system clock.
async fn manager(store: Arc<Observed>, board: Option<Arc<ChallengeBoard>>) -> Arc<Manager> {
    manager_with_clock(store, board, Arc::new(SystemClock)).await
}

/// [`manager`] reading the time from `clock`.
async fn manager_with_clock(
    store: Arc<Observed>,
    board: Option<Arc<ChallengeBoard>>,
    clock: Arc<dyn Clock>,
) -> Arc<Manager> {
    let ca = LocalCa::load_or_create(store.as_ref(), clock.now())
        .await
        .expect("local CA");
    let acme = board.map(|board| {
        Arc::new(AcmeContext::new(
            store.clone(),
            Arc::new(LocalPublisher::new(board)),
        ))
    });
    Arc::new(Manager::new(store, Arc::new(ca), acme, clock))
}

/// Waits until the report has an entry for `web_key()` satisfying `done`.
async fn wait_report(manager: &Manager, done: impl Fn(&CertStatus) -> bool) -> CertStatus {
    wait_report_for(manager, WAIT, done).await
}

/// [`wait_report`] waiting at most `wait`.
async fn wait_report_for(
    manager: &Manager,
    wait: Duration,
    done: impl Fn(&CertStatus) -> bool,
) -> CertStatus {
    let mut changes = manager.certificate_changes();
    tokio::time::timeout(wait, async {
        loop {
            let found = changes
                .borrow_and_update()
                .iter()
                .find(|c| c.secret == web_key().to_string() && done(c))
                .cloned();
            if let Some(found) = found {
                return found;
            }
            changes.changed().await.expect("manager alive");
        }
    })
    .await
    .expect("report in time")
}

#[tokio::test]
async fn local_ca_certificate_is_stored_with_its_ca_and_metadata_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Observed::new(dir.path()));
    let manager = manager(store.clone(), None).await;
    let (_input, rx) = watch::channel(Some(input("", "")));
    let stop = CancellationToken::new();
    let run = tokio::spawn(manager.clone().run(rx, stop.clone()));
    let report = wait_report(&manager, |c| c.ready).await;
    assert_eq!(report.issuer_kind, "local-ca");

    let cert = store
        .get_cert(&web_key())
        .await
        .expect("read")
        .expect("stored");
    let root = LocalCa::read_root_pem(store.as_ref())
        .await
        .expect("read")
        .expect("CA exists");
    assert_eq!(cert.ca_pem.as_deref(), Some(root.as_str()));
    let held = Held::parse(&web_key(), &cert).expect("usable");
    let metas = store.metas.lock().expect("not poisoned").clone();
    let (key, meta) = metas.last().expect("one put");
    assert_eq!(key, &web_key());
    assert_eq!(
        (meta.issuer_kind.as_str(), meta.issuer_name.as_str()),
        ("local-ca", "local-ca")
    );
    assert_eq!(meta.dns_names, ["app.test"]);
    assert_eq!(meta.not_after, Some(held.not_after));
    let renew = meta.renewal_time.expect("renewal time");
    assert!(
        held.not_before < renew && renew < held.not_after,
        "{meta:?}"
    );

    let records = store.records().await.expect("records");
    assert!(records[&web_key()].issued_for.is_some(), "{records:?}");
    stop.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("no panic");
}

#[tokio::test(start_paused = true)]
async fn short_lived_certificate_is_renewed_at_its_renewal_time_before_it_expires() {
    // The clock follows tokio's paused time: the manager's sleep until the
    // renewal time passes in an instant, and so does the certificate's
    // lifetime as the issuer sees it.
    let clock = Arc::new(TokioClock::starting_at(SystemTime::now()));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Observed::new(dir.path()));
    let manager = manager_with_clock(store.clone(), None, clock.clone()).await;
    let annotations = "portcullis.dev/duration: 1h, portcullis.dev/renew-before-percentage: '50'";
    let (input_tx, rx) = watch::channel(Some(input(annotations, "")));
    let stop = CancellationToken::new();
    let run = tokio::spawn(manager.clone().run(rx, stop.clone()));
    // As the runtime does: a stored certificate means a new compile, so a
    // new input and a pass that plans the next renewal.
    let mut stored = manager.stored_changes();
    tokio::spawn(async move {
        while stored.changed().await.is_ok() {
            input_tx.send_replace(Some(input(annotations, "")));
        }
    });

    let first = wait_report(&manager, |c| c.ready).await;
    let first_serial = first.serial.clone().expect("held");
    let renew_at = UNIX_EPOCH + Duration::from_secs(first.renewal_time.expect("renewal time"));
    let expires = UNIX_EPOCH + Duration::from_secs(first.not_after.expect("held"));
    let issued_at = clock.now();
    assert!(
        renew_at > issued_at + Duration::from_secs(25 * 60) && renew_at < expires,
        "{first:?}"
    );

    // Waits at most until the first certificate expires (in paused time).
    let lifetime_left = expires.duration_since(issued_at).expect("not expired");
    let second = wait_report_for(&manager, lifetime_left, |c| {
        c.ready && c.serial.as_ref() != Some(&first_serial)
    })
    .await;
    let renewed_at = clock.now();
    assert!(renewed_at >= renew_at, "renewed early: {second:?}");
    assert!(renewed_at < expires, "renewed after expiry: {second:?}");
    let stored = store
        .get_cert(&web_key())
        .await
        .expect("read")
        .expect("stored");
    let held = Held::parse(&web_key(), &stored).expect("usable");
    assert_eq!(second.serial.as_ref(), Some(&held.serial));
    assert!(held.not_after > expires, "{held:?}");
    stop.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("no panic");
}

#[tokio::test]
async fn records_are_written_only_when_they_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Observed::new(dir.path()));
    let manager = manager(store.clone(), None).await;
    let (input_tx, rx) = watch::channel(Some(input("", "")));
    let stop = CancellationToken::new();
    let _run = tokio::spawn(manager.clone().run(rx, stop.clone()));
    wait_report(&manager, |c| c.ready).await;
    let mut changes = manager.certificate_changes();
    changes.mark_unchanged();
    // Two more passes over the same input: each persists, then publishes
    // its report.
    let before = store.record_writes();
    assert!(before > 0, "the issuance was recorded");
    for _ in 0..2 {
        input_tx.send_replace(Some(input("", "")));
        tokio::time::timeout(WAIT, changes.changed())
            .await
            .expect("a pass in time")
            .expect("manager alive");
        assert_eq!(store.record_writes(), before, "unchanged records written");
    }
    stop.cancel();
}

#[tokio::test]
async fn a_new_run_reads_the_records_another_run_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Observed::new(dir.path()));
    let manager = manager(store.clone(), None).await;
    let (_input, rx) = watch::channel(Some(input("", "")));
    let stop = CancellationToken::new();
    let run = tokio::spawn(manager.clone().run(rx.clone(), stop.clone()));
    wait_report(&manager, |c| c.ready).await;
    stop.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("stops")
        .expect("no panic");

    // Another leader's record for the same certificate.
    let mut record = store.records().await.expect("records")[&web_key()].clone();
    record.attempts = 5;
    record.last_error = Some("seen by the other leader".into());
    store
        .put_records(&BTreeMap::from([(web_key(), record)]))
        .await
        .expect("written");

    let stop = CancellationToken::new();
    let _run = tokio::spawn(manager.clone().run(rx, stop.clone()));
    let report = wait_report(&manager, |c| c.attempts == 5).await;
    assert_eq!(
        report.last_error.as_deref(),
        Some("seen by the other leader")
    );
    stop.cancel();
}

#[tokio::test]
async fn stopping_a_run_aborts_its_acme_orders_at_once() {
    // An ACME server that accepts connections and never answers: the
    // order waits on it until the run stops.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let issuer = format!(
        "---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: silent, namespace: default}}
spec:
  acme:
    server: https://127.0.0.1:{port}/dir
    privateKeySecretRef: {{name: silent-account}}
    solvers: [{{http01: {{}}}}]
"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Observed::new(dir.path()));
    let manager = manager(store.clone(), Some(Arc::default())).await;
    let (_input, rx) = watch::channel(Some(input("portcullis.dev/issuer: silent", &issuer)));
    let stop = CancellationToken::new();
    let run = tokio::spawn(manager.clone().run(rx, stop.clone()));

    let (mut conn, _) = tokio::time::timeout(WAIT, silent.accept())
        .await
        .expect("the order connects")
        .expect("accepted");
    wait_report(&manager, |c| c.status == "Issuing").await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .expect("the run stops at once")
        .expect("no panic");
    // The order's connection was dropped with its task.
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the order's connection outlived the run");
    assert!(
        !manager.in_flight_contains(&web_key()),
        "the aborted order is still in flight"
    );
    assert_eq!(store.get_cert(&web_key()).await.expect("read"), None);
}
