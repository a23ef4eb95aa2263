//! Managers as leaders come and go: a manager over the rig's state
//! directory (its Store) fed the binary's manifests, run until its stop
//! token is cancelled, and a challenge publisher that never confirms (a
//! leader whose published challenge has not been seen yet when it loses
//! the Lease).

use super::rig::{binary_manifests, Rig};
use anyhow::Result;
use portcullis::compile::{compile, CompileOptions};
use portcullis::issuer::acme::AcmeContext;
use portcullis::issuer::challenges::{self, Challenge, ChallengePublisher, PublishedChallenge};
use portcullis::issuer::manager::{Input, Manager};
use portcullis::issuer::LocalCa;
use portcullis::store::{
    self, AccountId, CertMeta, DirStore, PendingOrder, Record, Store, StoreKey, StoredCert,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// A publisher whose challenges never become answerable: `publish` says it
/// was reached, then waits forever.
#[derive(Debug, Default)]
pub struct Stalled {
    /// Notified when a challenge is being published.
    pub reached: Notify,
}

#[async_trait::async_trait]
impl ChallengePublisher for Stalled {
    async fn publish(
        &self,
        _challenge: &Challenge,
    ) -> Result<Box<dyn PublishedChallenge>, challenges::Error> {
        self.reached.notify_one();
        std::future::pending().await
    }
}

/// A store whose certificate writes fail (a process that dies after the CA
/// issued but before the certificate was kept), over the rig's directory.
#[derive(Debug)]
pub struct LosesCertificates {
    /// The real store.
    pub dir: DirStore,
    /// Notified when a certificate could not be kept.
    pub lost: Notify,
}

#[async_trait::async_trait]
impl Store for LosesCertificates {
    async fn get_cert(&self, key: &StoreKey) -> Result<Option<StoredCert>, store::Error> {
        self.dir.get_cert(key).await
    }
    async fn put_cert(
        &self,
        _: &StoreKey,
        _: &StoredCert,
        _: &CertMeta,
    ) -> Result<(), store::Error> {
        self.lost.notify_one();
        Err(store::Error::Incomplete {
            what: "the test's certificate store".into(),
            reason: "the process died before storing".into(),
        })
    }
    async fn list_certs(&self) -> Result<Vec<StoreKey>, store::Error> {
        self.dir.list_certs().await
    }
    async fn account_key(&self, a: &AccountId) -> Result<Option<String>, store::Error> {
        self.dir.account_key(a).await
    }
    async fn put_account_key(&self, a: &AccountId, pem: &str) -> Result<(), store::Error> {
        self.dir.put_account_key(a, pem).await
    }
    async fn pending_order(&self, c: &StoreKey) -> Result<Option<PendingOrder>, store::Error> {
        self.dir.pending_order(c).await
    }
    async fn put_pending_order(&self, c: &StoreKey, o: &PendingOrder) -> Result<(), store::Error> {
        self.dir.put_pending_order(c, o).await
    }
    async fn remove_pending_order(&self, c: &StoreKey) -> Result<(), store::Error> {
        self.dir.remove_pending_order(c).await
    }
    async fn local_ca(&self) -> Result<Option<StoredCert>, store::Error> {
        self.dir.local_ca().await
    }
    async fn create_local_ca(&self, ca: &StoredCert) -> Result<StoredCert, store::Error> {
        self.dir.create_local_ca(ca).await
    }
    async fn records(&self) -> Result<BTreeMap<StoreKey, Record>, store::Error> {
        self.dir.records().await
    }
    async fn put_records(&self, r: &BTreeMap<StoreKey, Record>) -> Result<(), store::Error> {
        self.dir.put_records(r).await
    }
}

/// A running manager and the token that stops it.
pub struct Leader {
    /// The manager.
    pub manager: Arc<Manager>,
    /// Cancelled when the Lease is lost.
    pub stop: CancellationToken,
    /// The run; ends after `stop`.
    pub run: tokio::task::JoinHandle<()>,
    _input: watch::Sender<Option<Input>>,
}

impl Leader {
    /// Starts a manager over the rig's state directory publishing through
    /// `publisher`, serving the binary's manifests for `host`.
    pub async fn start(
        rig: &Rig,
        host: &str,
        publisher: Arc<dyn ChallengePublisher>,
    ) -> Result<Leader> {
        let store: Arc<dyn Store> = Arc::new(DirStore::new(rig.state.path()));
        Self::start_with_store(rig, host, publisher, store).await
    }

    /// Like [`start`](Self::start), over `store`.
    pub async fn start_with_store(
        rig: &Rig,
        host: &str,
        publisher: Arc<dyn ChallengePublisher>,
        store: Arc<dyn Store>,
    ) -> Result<Leader> {
        let local_ca = LocalCa::load_or_create(store.as_ref(), SystemTime::now()).await?;
        let mut ctx = AcmeContext::new(store.clone(), publisher);
        ctx.timeouts.validation = Duration::from_secs(60);
        let manager = Arc::new(Manager::new(
            store,
            Arc::new(local_ca),
            Some(Arc::new(ctx)),
            Arc::new(portcullis::issuer::SystemClock),
        ));
        let resources = super::resources(&binary_manifests(rig, host, ""))?;
        let status = compile(&resources, &CompileOptions::default()).status;
        let (input, rx) = watch::channel(Some(Input {
            resources: Arc::new(resources),
            status: Arc::new(status),
        }));
        let stop = CancellationToken::new();
        let run = tokio::spawn(manager.clone().run(rx, stop.clone()));
        Ok(Leader {
            manager,
            stop,
            run,
            _input: input,
        })
    }
}
