//! The issuer's I/O loop ([`Manager`]): on every reload (and whenever the
//! plan's next time comes) it computes the demand, reads what the [`Store`]
//! holds, plans, issues (local CA, `selfSigned`, `ca` inline; `acme` as
//! bounded concurrent orders, one per Secret at a time), writes results
//! atomically through the Store, records per-certificate state in the
//! Store's issuer records, and tells the runtime to recompile so the next
//! handshake serves the new certificate.
//!
//! A failure only updates the record: the stored certificate is never
//! removed or replaced by nothing, so a valid one keeps being served.
//!
//! # Running and stopping
//!
//! [`Manager::run`] runs until its input closes or its `stop` token is
//! cancelled. Every task a run spawns (ACME orders, renewal-window checks)
//! belongs to that run and is aborted when it stops, so in Kubernetes mode
//! losing the Lease stops issuance at once. A stopped order leaves its
//! pending-order record in the Store, and the next run (on this replica or
//! the next leader) resumes it. A manager may be run again after it
//! stopped; each run reads the issuer records from the Store first.
//!
//! ACME orders go through the ACME module:
//! `crate::issuer::acme::issue_with_key(&AcmeIssuer, &AcmeContext, &CertRequest, key)`,
//! with the issuer resolved by `AcmeIssuer::resolve(spec, namespace, resources)`,
//! and windows refreshed by `crate::issuer::acme::renewal_window`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::acme::{AcmeContext, AcmeIssuer};
use super::demand::{demand, Demand, Demands, IssuerRef};
use super::inventory::Held;
use super::plan::{plan, Action, Record, Step};
use super::status::{certificate_statuses, CertStatus};
use super::{Clock, ErrorChain, Issued, LocalCa};
use crate::model::Resources;
use crate::status::Status;
use crate::store::{self, Store, StoreKey, StoredCert};

mod work;

/// Most ACME orders running at once.
pub const MAX_CONCURRENT_ORDERS: usize = 4;
/// Longest sleep between passes, so clock jumps and lost wake-ups heal.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How soon reading the issuer records is tried again after it failed.
const RETRY_READ: Duration = Duration::from_secs(5);

/// What one pass works from: the loaded resources and their compile status
/// (route attachment).
#[derive(Debug, Clone)]
pub struct Input {
    /// The resources as loaded (before [`super::augment()`]).
    pub resources: Arc<Resources>,
    /// The status of their compile.
    pub status: Arc<Status>,
}

/// Why the manager could not read its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The issuer records exist but cannot be read.
    #[error("reading the issuer records")]
    ReadRecords(#[source] store::Error),
}

/// Why one attempt to issue a certificate failed. Its chain
/// ([`ErrorChain`]) is the record's `last_error`, shown in status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The issuer the demand names is not among the resources.
    #[error("{0} not found")]
    IssuerNotFound(IssuerRef),
    /// The issuer sets none of the kinds portcullis issues with.
    #[error("{0} has no usable kind")]
    NoIssuerKind(IssuerRef),
    /// The `ca` issuer's Secret does not exist.
    #[error("CA Secret {namespace}/{name} not found")]
    CaSecretMissing {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The `ca` issuer's Secret lacks the certificate or the key.
    #[error("CA Secret {namespace}/{name} lacks tls.crt or tls.key")]
    CaSecretIncomplete {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Making the key or signing with a local issuer failed.
    #[error(transparent)]
    Sign(super::Error),
    /// The signing task ended without an answer (it panicked).
    #[error("issuing task failed")]
    SignTask(#[source] tokio::task::JoinError),
    /// The issued certificate could not be written to the Store.
    #[error("storing")]
    Store(#[source] store::Error),
    /// This manager was built without ACME.
    #[error("ACME issuer not available in this build")]
    AcmeUnavailable,
    /// The ACME issuer's configuration or the order failed.
    #[error(transparent)]
    Acme(super::acme::Error),
}

impl IssueError {
    /// When the CA asked us to come back, if it did.
    fn retry_after(&self) -> Option<SystemTime> {
        match self {
            Self::Acme(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The tasks one run spawned (ACME orders, renewal-window checks), aborted
/// together when the run stops.
type Tasks = JoinSet<()>;

/// The certificate manager. Share it in an `Arc`; run [`Manager::run`] (one
/// run at a time).
pub struct Manager {
    store: Arc<dyn Store>,
    local_ca: Arc<LocalCa>,
    acme: Option<Arc<AcmeContext>>,
    /// Where every time decision reads the time.
    clock: Arc<dyn Clock>,
    records: Mutex<BTreeMap<StoreKey, Record>>,
    /// The records as the Store holds them (last read or written): only
    /// what differs is written.
    persisted: tokio::sync::Mutex<BTreeMap<StoreKey, Record>>,
    in_flight: Mutex<BTreeSet<StoreKey>>,
    orders: Arc<Semaphore>,
    seed: u64,
    /// An ACME order finished, or a window changed: plan again.
    finished: Notify,
    /// Bumped whenever a certificate was stored: the runtime recompiles.
    stored: watch::Sender<u64>,
    /// The latest per-certificate report.
    certificates: watch::Sender<Arc<Vec<CertStatus>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager keeping certificates, records and ACME state in `store`.
    /// `acme` is `None` where ACME is not wired (then ACME issuers report an
    /// error per certificate). Plans, validity and records read the time
    /// from `clock` (which should be the one `acme` reads). Does no I/O:
    /// [`run`](Self::run) reads the records.
    pub fn new(
        store: Arc<dyn Store>,
        local_ca: Arc<LocalCa>,
        acme: Option<Arc<AcmeContext>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            local_ca,
            acme,
            clock,
            records: Mutex::new(BTreeMap::new()),
            persisted: tokio::sync::Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(BTreeSet::new()),
            orders: Arc::new(Semaphore::new(MAX_CONCURRENT_ORDERS)),
            seed: rand::random(),
            finished: Notify::new(),
            stored: watch::channel(0).0,
            certificates: watch::channel(Arc::new(Vec::new())).0,
        }
    }

    /// The Store it keeps everything in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Changes (a counter) each time a certificate is stored.
    pub fn stored_changes(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// The latest per-certificate report, and its changes.
    pub fn certificate_changes(&self) -> watch::Receiver<Arc<Vec<CertStatus>>> {
        self.certificates.subscribe()
    }

    /// The latest per-certificate report (for `/status` and metrics).
    pub fn certificates(&self) -> Arc<Vec<CertStatus>> {
        self.certificates.borrow().clone()
    }

    /// The stored certificates of every Secret a managed listener uses, for
    /// [`super::augment()`]; entries that cannot be read are left out and
    /// logged. Blocking: call it from a blocking thread of the runtime
    /// (`spawn_blocking`), never from an async task; [`stored_for`] is the
    /// async form.
    pub fn stored_for(&self, resources: &Resources) -> BTreeMap<StoreKey, StoredCert> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(stored_for(self.store.as_ref(), resources)),
            Err(error) => {
                tracing::error!(%error, "stored certificates read outside the runtime; none used");
                BTreeMap::new()
            }
        }
    }

    /// Replaces the records in memory with the Store's. A damaged record set
    /// is started afresh (records only tune timing; the Store's certificates
    /// still prevent duplicate orders); one that cannot be read is an error.
    pub async fn load_records(&self) -> Result<(), ManagerError> {
        let records = read_records(self.store.as_ref()).await?;
        *self.records.lock().unwrap_or_else(PoisonError::into_inner) = records.clone();
        *self.persisted.lock().await = records;
        Ok(())
    }

    /// Runs passes until `input` closes or `stop` is cancelled: after each
    /// new input, when the plan says something is due, and when an order
    /// finishes. Reads the records from the Store first (retrying until it
    /// can). When it returns, every order and check it started has been
    /// aborted and has ended; orders in progress stay recorded in the Store
    /// for the next run.
    pub async fn run(
        self: Arc<Self>,
        mut input: watch::Receiver<Option<Input>>,
        stop: CancellationToken,
    ) {
        let mut tasks = Tasks::new();
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                tracing::info!(orders = tasks.len(), "certificate manager stopped; orders in progress stay recorded");
            }
            () = self.serve(&mut input, &mut tasks) => {}
        }
        tasks.shutdown().await;
    }

    /// The body of [`run`](Self::run).
    async fn serve(
        self: &Arc<Self>,
        input: &mut watch::Receiver<Option<Input>>,
        tasks: &mut Tasks,
    ) {
        while let Err(error) = self.load_records().await {
            tracing::error!(error = %ErrorChain(&error), "cannot read the issuer records; retrying");
            tokio::time::sleep(RETRY_READ).await;
        }
        loop {
            let current = input.borrow_and_update().clone();
            let sleep = match current {
                Some(current) => self.pass(&current, tasks).await,
                None => MAX_SLEEP,
            };
            let wake = tokio::time::Instant::now() + sleep;
            loop {
                tokio::select! {
                    changed = input.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(wake) => break,
                    () = self.finished.notified() => break,
                    Some(joined) = tasks.join_next() => {
                        if let Err(error) = joined {
                            tracing::error!(%error, "an issuer task failed");
                        }
                    }
                }
            }
        }
    }

    /// One pass; returns how long to sleep before the next.
    async fn pass(self: &Arc<Self>, input: &Input, tasks: &mut Tasks) -> Duration {
        let demands = demand(&input.resources, &input.status);
        let (held, unreadable) = self.read_held(&demands.certificates).await;
        let now = self.clock.now();
        let records = self.records_snapshot();
        let actions = plan(&demands.certificates, &held, &records, now, self.seed);
        let mut stored_any = false;
        for (d, action) in demands.certificates.iter().zip(&actions) {
            let Step::Issue { why, replaces } = &action.step else {
                continue;
            };
            // A Store that cannot be read says nothing about what it holds:
            // wait rather than risk a duplicate order.
            if self.in_flight_contains(&d.secret) || unreadable.contains(&d.secret) {
                continue;
            }
            tracing::info!(secret = %d.secret, issuer = %d.issuer, names = ?d.dns_names, ?why, "issuing certificate");
            let req = d.request(replaces.clone());
            match self.acme_issuer(d, &input.resources) {
                None => {
                    let result = self.issue_local(d, req, &input.resources).await;
                    stored_any |= self.finish(d, result);
                }
                Some(acme_issuer) => self.spawn_acme(tasks, d.clone(), req, acme_issuer),
            }
        }
        if stored_any {
            self.stored.send_modify(|n| *n += 1);
        }
        self.refresh_windows(
            tasks,
            &demands.certificates,
            &actions,
            &held,
            &input.resources,
            now,
        );
        // Records first: a report says what the Store already holds.
        self.persist().await;
        self.publish(&demands, now).await;
        next_sleep(&actions, now)
    }

    /// Reads and parses what the store holds for `demands`.
    /// Also returns the Secrets the Store could not be read for.
    async fn read_held(
        &self,
        demands: &[Demand],
    ) -> (BTreeMap<StoreKey, Held>, BTreeSet<StoreKey>) {
        let mut held = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for d in demands {
            match self.store.get_cert(&d.secret).await {
                Ok(Some(stored)) => match Held::parse(&d.secret, &stored) {
                    Ok(h) => {
                        held.insert(d.secret.clone(), h);
                    }
                    Err(error) => {
                        tracing::warn!(secret = %d.secret, error = %ErrorChain(&error), "stored certificate unusable; issuing a new one")
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(secret = %d.secret, error = %ErrorChain(&error), "cannot read stored certificate");
                    unreadable.insert(d.secret.clone());
                }
            }
        }
        (held, unreadable)
    }

    /// The resolved ACME issuer of `d`, when its issuer is an ACME one.
    fn acme_issuer(
        &self,
        d: &Demand,
        resources: &Resources,
    ) -> Option<Result<AcmeIssuer, super::acme::Error>> {
        let spec = d.issuer.spec(resources)?.acme.as_ref()?;
        Some(AcmeIssuer::resolve(
            spec,
            d.issuer.secret_namespace(resources),
            resources,
        ))
    }

    fn update_record(&self, secret: &StoreKey, f: impl FnOnce(&mut Record)) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        f(records.entry(secret.clone()).or_default());
    }

    /// Records the outcome of an attempt; true when a certificate was stored.
    fn finish(&self, d: &Demand, result: Result<Issued, IssueError>) -> bool {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let r = records.entry(d.secret.clone()).or_default();
        match result {
            Ok(issued) => {
                let held = Held::parse(&d.secret, &issued.cert).ok();
                tracing::info!(secret = %d.secret, serial = ?held.as_ref().map(|h| &h.serial), "certificate stored");
                *r = success_record(d, &issued, held.as_ref(), self.clock.now());
                true
            }
            Err(error) => {
                let message = ErrorChain(&error).to_string();
                tracing::warn!(secret = %d.secret, attempts = r.attempts + 1, error = %message, "issuing failed; the current certificate (if any) stays");
                r.attempts = r.attempts.saturating_add(1);
                r.last_error = Some(message);
                r.last_failure = Some(self.clock.now());
                r.failed_for = Some(d.fingerprint());
                r.retry_after = error.retry_after();
                false
            }
        }
    }

    fn in_flight_contains(&self, secret: &StoreKey) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(secret)
    }

    fn records_snapshot(&self) -> BTreeMap<StoreKey, Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Recomputes the per-certificate report from the store and records.
    async fn publish(&self, demands: &Demands, now: SystemTime) {
        // Re-plan from what is stored now, so the report reflects this
        // pass's results rather than its starting point.
        let (held, _) = self.read_held(&demands.certificates).await;
        let records = self.records_snapshot();
        let actions = plan(&demands.certificates, &held, &records, now, self.seed);
        let in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let statuses = certificate_statuses(demands, &held, &records, &actions, &in_flight, now);
        self.certificates.send_replace(Arc::new(statuses));
    }

    /// Writes the records that changed since the Store last had them;
    /// failures are logged (the records are an optimisation: losing them
    /// never causes a duplicate order).
    async fn persist(&self) {
        let mut persisted = self.persisted.lock().await;
        let changed: BTreeMap<StoreKey, Record> = self
            .records_snapshot()
            .into_iter()
            .filter(|(k, v)| persisted.get(k) != Some(v))
            .collect();
        if changed.is_empty() {
            return;
        }
        match self.store.put_records(&changed).await {
            Ok(()) => persisted.extend(changed),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "cannot write the issuer records")
            }
        }
    }
}

/// The record of a certificate just stored (`held`, parsed): issued for
/// the demand, with the CA's renewal window (checked `now`) when it gave
/// one.
fn success_record(d: &Demand, issued: &Issued, held: Option<&Held>, now: SystemTime) -> Record {
    Record {
        issued_for: Some(d.fingerprint()),
        renewal_window: issued.renewal_window,
        window_checked: issued.renewal_window.map(|_| now),
        window_serial: issued.renewal_window.and(held.map(|h| h.serial.clone())),
        ..Record::default()
    }
}

/// How long until the earliest wait in `actions` ends (at most an hour).
fn next_sleep(actions: &[Action], now: SystemTime) -> Duration {
    actions
        .iter()
        .filter_map(|a| match a.step {
            Step::WaitUntil { at, .. } => Some(at.duration_since(now).unwrap_or_default()),
            Step::Issue { .. } => None,
        })
        .min()
        .unwrap_or(MAX_SLEEP)
        .clamp(Duration::from_millis(200), MAX_SLEEP)
}

/// The records in `store`; a damaged set is an empty one.
async fn read_records(store: &dyn Store) -> Result<BTreeMap<StoreKey, Record>, ManagerError> {
    match store.records().await {
        Ok(records) => Ok(records),
        Err(error @ store::Error::Decode { .. }) => {
            // Records only tune timing; a damaged set is started over (the
            // Store still prevents duplicate orders).
            tracing::warn!(error = %ErrorChain(&error), "issuer records unreadable; starting afresh");
            Ok(BTreeMap::new())
        }
        Err(error) => Err(ManagerError::ReadRecords(error)),
    }
}

/// The stored certificates of the Secrets managed listeners use.
pub async fn stored_for(
    store: &dyn Store,
    resources: &Resources,
) -> BTreeMap<StoreKey, StoredCert> {
    let mut out = BTreeMap::new();
    for m in super::demand::managed_listeners(resources) {
        if out.contains_key(&m.secret) {
            continue;
        }
        match store.get_cert(&m.secret).await {
            Ok(Some(cert)) => {
                out.insert(m.secret, cert);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(secret = %m.secret, error = %ErrorChain(&error), "cannot read stored certificate")
            }
        }
    }
    out
}

/// What `portcullis certs` shows: the report a manager would publish for
/// the configuration in `resources` (compiled with `status`), from what
/// `store` holds and its records. Never issues.
pub async fn snapshot(
    resources: &Resources,
    status: &Status,
    store: &dyn Store,
    now: SystemTime,
) -> Result<Vec<CertStatus>, ManagerError> {
    let demands = demand(resources, status);
    let records = read_records(store).await?;
    let mut held = BTreeMap::new();
    for d in &demands.certificates {
        if let Ok(Some(stored)) = store.get_cert(&d.secret).await {
            if let Ok(h) = Held::parse(&d.secret, &stored) {
                held.insert(d.secret.clone(), h);
            }
        }
    }
    let actions = plan(&demands.certificates, &held, &records, now, 0);
    Ok(certificate_statuses(
        &demands,
        &held,
        &records,
        &actions,
        &BTreeSet::new(),
        now,
    ))
}

#[cfg(test)]
mod tests;
