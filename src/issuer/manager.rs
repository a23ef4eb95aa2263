//! The issuer's I/O loop ([`Manager`]): on every reload (and whenever the
//! plan's next time comes) it computes the demand, reads what the [`Store`]
//! holds, plans, issues (local CA, `selfSigned`, `ca` inline; `acme` as
//! bounded concurrent orders, one per Secret at a time), writes results
//! atomically through the Store, records per-certificate state in
//! `<state>/issuer/state.json`, and tells the runtime to recompile so the
//! next handshake serves the new certificate.
//!
//! A failure only updates the record: the stored certificate is never
//! removed or replaced by nothing, so a valid one keeps being served.
//!
//! ACME orders go through the ACME module:
//! `crate::issuer::acme::issue(&AcmeIssuer, &AcmeContext, &CertRequest) -> Result<Issued, acme::Error>`,
//! with the issuer resolved by `AcmeIssuer::resolve(spec, namespace, resources)`,
//! and windows refreshed by `crate::issuer::acme::renewal_window`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Notify, Semaphore};

use super::acme::{self, AcmeContext, AcmeIssuer};
use super::ca_issuer::CaSigner;
use super::demand::{demand, Demand, Demands, IssuerRef};
use super::inventory::Held;
use super::plan::{plan, Action, Record, Step};
use super::status::{certificate_statuses, CertStatus};
use super::{Error, Issued, LocalCa, DEFAULT_LEAF_VALIDITY};
use crate::model::Resources;
use crate::status::Status;
use crate::store::{write_atomic, Store, StoreKey, StoredCert};

/// Most ACME orders running at once.
pub const MAX_CONCURRENT_ORDERS: usize = 4;
/// Longest sleep between passes, so clock jumps and lost wake-ups heal.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How soon a pass is retried when the Store could not be read at all.
const RETRY_READ: Duration = Duration::from_secs(5);
/// The state file, under the state directory.
const STATE_FILE: &str = "issuer/state.json";

/// What one pass works from: the loaded resources and their compile status
/// (route attachment).
#[derive(Debug, Clone)]
pub struct Input {
    /// The resources as loaded (before [`super::augment()`]).
    pub resources: Arc<Resources>,
    /// The status of their compile.
    pub status: Arc<Status>,
}

/// Why the manager could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The state file exists but cannot be read or parsed.
    #[error("issuer state file {path}: {reason}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The certificate manager. Share it in an `Arc`; run [`Manager::run`] once.
pub struct Manager {
    store: Arc<dyn Store>,
    state_file: PathBuf,
    local_ca: Arc<LocalCa>,
    acme: Option<Arc<AcmeContext>>,
    records: Mutex<BTreeMap<StoreKey, Record>>,
    in_flight: Mutex<BTreeSet<StoreKey>>,
    orders: Arc<Semaphore>,
    seed: u64,
    /// An ACME order finished: plan again.
    finished: Notify,
    /// Bumped whenever a certificate was stored: the runtime recompiles.
    stored: watch::Sender<u64>,
    /// The latest per-certificate report.
    certificates: watch::Sender<Arc<Vec<CertStatus>>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// A manager keeping certificates in `store` and its records under
    /// `state_dir`. `acme` is `None` where ACME is not wired (then ACME
    /// issuers report an error per certificate).
    pub fn new(
        state_dir: &Path,
        store: Arc<dyn Store>,
        local_ca: Arc<LocalCa>,
        acme: Option<Arc<AcmeContext>>,
    ) -> Result<Self, ManagerError> {
        let state_file = state_dir.join(STATE_FILE);
        let records = read_records(&state_file)?;
        Ok(Self {
            store,
            state_file,
            local_ca,
            acme,
            records: Mutex::new(records),
            in_flight: Mutex::new(BTreeSet::new()),
            orders: Arc::new(Semaphore::new(MAX_CONCURRENT_ORDERS)),
            seed: rand::random(),
            finished: Notify::new(),
            stored: watch::channel(0).0,
            certificates: watch::channel(Arc::new(Vec::new())).0,
        })
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
    /// [`super::augment()`]. Blocking (reads the Store); entries that cannot
    /// be read are left out and logged.
    pub fn stored_for(&self, resources: &Resources) -> BTreeMap<StoreKey, StoredCert> {
        stored_for(self.store.as_ref(), resources)
    }

    /// Runs passes until `input` closes: after each new input, when the plan
    /// says something is due, and when an order finishes.
    pub async fn run(self: Arc<Self>, mut input: watch::Receiver<Option<Input>>) {
        loop {
            let current = input.borrow_and_update().clone();
            let sleep = match current {
                Some(current) => self.clone().pass(&current).await,
                None => MAX_SLEEP,
            };
            tokio::select! {
                changed = input.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(sleep) => {}
                _ = self.finished.notified() => {}
            }
        }
    }

    /// One pass; returns how long to sleep before the next.
    pub async fn pass(self: Arc<Self>, input: &Input) -> Duration {
        let demands = demand(&input.resources, &input.status);
        let me = self.clone();
        let certs = demands.certificates.clone();
        let (held, unreadable) =
            match tokio::task::spawn_blocking(move || me.read_held(&certs)).await {
                Ok(read) => read,
                Err(error) => {
                    // Planning without the inventory would order duplicates.
                    tracing::error!(%error, "reading stored certificates failed; retrying shortly");
                    return RETRY_READ;
                }
            };
        let now = SystemTime::now();
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
                    let me = self.clone();
                    let d2 = d.clone();
                    let resources = input.resources.clone();
                    let result =
                        tokio::task::spawn_blocking(move || me.issue_local(&d2, &req, &resources))
                            .await
                            .unwrap_or_else(|e| Err(format!("issuing task failed: {e}")));
                    stored_any |= self.finish(d, result.map_err(|e| (e, None)));
                }
                Some(acme_issuer) => self.clone().spawn_acme(d.clone(), req, acme_issuer),
            }
        }
        if stored_any {
            self.stored.send_modify(|n| *n += 1);
        }
        self.refresh_windows(
            &demands.certificates,
            &actions,
            &held,
            &input.resources,
            now,
        );
        self.publish(&demands, now);
        self.persist();
        next_sleep(&actions, now)
    }

    /// Reads and parses what the store holds for `demands`.
    /// Also returns the Secrets the Store could not be read for.
    fn read_held(&self, demands: &[Demand]) -> (BTreeMap<StoreKey, Held>, BTreeSet<StoreKey>) {
        let mut held = BTreeMap::new();
        let mut unreadable = BTreeSet::new();
        for d in demands {
            match self.store.get(&d.secret) {
                Ok(Some(stored)) => match Held::parse(&d.secret, &stored) {
                    Ok(h) => {
                        held.insert(d.secret.clone(), h);
                    }
                    Err(error) => {
                        tracing::warn!(secret = %d.secret, %error, "stored certificate unusable; issuing a new one")
                    }
                },
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(secret = %d.secret, error = chain(&error), "cannot read stored certificate");
                    unreadable.insert(d.secret.clone());
                }
            }
        }
        (held, unreadable)
    }

    /// The resolved ACME issuer of `d`, when its issuer is an ACME one.
    fn acme_issuer(&self, d: &Demand, resources: &Resources) -> Option<Result<AcmeIssuer, String>> {
        let spec = d.issuer.spec(resources)?.acme.as_ref()?;
        Some(
            AcmeIssuer::resolve(spec, d.issuer.secret_namespace(), resources)
                .map_err(|e| e.to_string()),
        )
    }

    /// Issues `req` with a local issuer (local CA, `selfSigned`, `ca`) and
    /// stores it. Blocking.
    fn issue_local(
        &self,
        d: &Demand,
        req: &super::CertRequest,
        resources: &Resources,
    ) -> Result<Issued, String> {
        let key = self.key_for(d).map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        let issued = match &d.issuer {
            IssuerRef::LocalCa => self
                .local_ca
                .issue_with_key(
                    &req.dns_names,
                    req.duration.unwrap_or(DEFAULT_LEAF_VALIDITY),
                    now,
                    key,
                )
                .map(|cert| Issued {
                    cert,
                    renewal_window: None,
                }),
            issuer => {
                let spec = issuer
                    .spec(resources)
                    .ok_or_else(|| format!("{issuer} not found"))?;
                if spec.self_signed.is_some() {
                    super::self_signed::issue(req, key, now)
                } else if let Some(ca) = &spec.ca {
                    let ns = issuer.secret_namespace();
                    let secret = resources
                        .secret(ns, &ca.secret_name)
                        .ok_or_else(|| format!("CA Secret {ns}/{} not found", ca.secret_name))?;
                    let (Some(crt), Some(k)) =
                        (secret.data.get("tls.crt"), secret.data.get("tls.key"))
                    else {
                        return Err(format!(
                            "CA Secret {ns}/{} lacks tls.crt or tls.key",
                            ca.secret_name
                        ));
                    };
                    CaSigner::from_pem(crt, k).and_then(|ca| ca.issue(req, key, now))
                } else {
                    return Err(format!("{issuer} has no usable kind"));
                }
            }
        }
        .map_err(|e| chain(&e))?;
        self.store
            .put(&d.secret, &issued.cert)
            .map_err(|e| format!("storing: {}", chain(&e)))?;
        Ok(issued)
    }

    /// A new key, or the stored one when the demand does not rotate keys
    /// and the stored key has the wanted algorithm.
    fn key_for(&self, d: &Demand) -> Result<rcgen::KeyPair, Error> {
        if !d.rotate_key {
            if let Ok(Some(stored)) = self.store.get(&d.secret) {
                if let Ok(key) = rcgen::KeyPair::from_pem(&stored.key_pem) {
                    let held = Held::parse(&d.secret, &stored).ok();
                    if held.and_then(|h| h.key) == Some(d.key) {
                        return Ok(key);
                    }
                }
            }
        }
        d.key.generate()
    }

    /// Starts an ACME order in the background (bounded by the semaphore).
    fn spawn_acme(
        self: Arc<Self>,
        d: Demand,
        req: super::CertRequest,
        issuer: Result<AcmeIssuer, String>,
    ) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(d.secret.clone());
        tokio::spawn(async move {
            let result = match (&self.acme, issuer) {
                (None, _) => Err(("ACME issuer not available in this build".to_string(), None)),
                (_, Err(e)) => Err((e, None)),
                (Some(ctx), Ok(issuer)) => {
                    let _permit = self.orders.clone().acquire_owned().await;
                    // `private-key-rotation: Never` keeps the stored key.
                    let key = (!d.rotate_key).then(|| self.key_for(&d).ok()).flatten();
                    match acme::issue_with_key(&issuer, ctx, &req, key).await {
                        Ok(issued) => {
                            let store = self.store.clone();
                            let secret = d.secret.clone();
                            let cert = issued.cert.clone();
                            match tokio::task::spawn_blocking(move || store.put(&secret, &cert))
                                .await
                            {
                                Ok(Ok(())) => Ok(issued),
                                Ok(Err(e)) => Err((format!("storing: {}", chain(&e)), None)),
                                Err(e) => Err((format!("storing task failed: {e}"), None)),
                            }
                        }
                        Err(e) => Err((chain(&e), e.retry_after())),
                    }
                }
            };
            if self.finish(&d, result) {
                self.stored.send_modify(|n| *n += 1);
            }
            self.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&d.secret);
            self.persist();
            self.finished.notify_one();
        });
    }

    /// Asks the ACME CA again for the renewal window of every held ACME
    /// certificate that is not being renewed and whose window is stale
    /// ([`super::plan::window_stale`]), in the background; a changed window
    /// wakes the loop so the plan sees it.
    fn refresh_windows(
        self: &Arc<Self>,
        demands: &[Demand],
        actions: &[Action],
        held: &BTreeMap<StoreKey, Held>,
        resources: &Resources,
        now: SystemTime,
    ) {
        let Some(ctx) = self.acme.clone() else {
            return;
        };
        let records = self.records_snapshot();
        for (d, a) in demands.iter().zip(actions) {
            let (Some(h), Step::WaitUntil { .. }) = (held.get(&d.secret), &a.step) else {
                continue;
            };
            let record = records.get(&d.secret).cloned().unwrap_or_default();
            if !super::plan::window_stale(h, &record, now) || self.in_flight_contains(&d.secret) {
                continue;
            }
            let Some(Ok(issuer)) = self.acme_issuer(d, resources) else {
                continue;
            };
            let Ok(Some(stored)) = self.store.get(&d.secret) else {
                continue;
            };
            // Marked now so a slow answer is not asked for twice.
            self.update_record(&d.secret, |r| {
                r.window_checked = Some(now);
                if r.window_serial.as_deref() != Some(h.serial.as_str()) {
                    r.renewal_window = None;
                }
                r.window_serial = Some(h.serial.clone());
            });
            let me = self.clone();
            let ctx = ctx.clone();
            let secret = d.secret.clone();
            tokio::spawn(async move {
                match acme::renewal_window(&issuer, &ctx, &stored.cert_chain_pem).await {
                    Ok(window) => {
                        let mut changed = false;
                        me.update_record(&secret, |r| {
                            changed = r.renewal_window != window;
                            r.renewal_window = window;
                        });
                        if changed {
                            tracing::info!(%secret, ?window, "ACME renewal window changed");
                            me.persist();
                            me.finished.notify_one();
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%secret, error = %chain(&error), "renewal information unavailable")
                    }
                }
            });
        }
    }

    fn update_record(&self, secret: &StoreKey, f: impl FnOnce(&mut Record)) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        f(records.entry(secret.clone()).or_default());
    }

    /// Records the outcome of an attempt; true when a certificate was stored.
    fn finish(&self, d: &Demand, result: Result<Issued, (String, Option<SystemTime>)>) -> bool {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let r = records.entry(d.secret.clone()).or_default();
        match result {
            Ok(issued) => {
                let serial = Held::parse(&d.secret, &issued.cert).ok().map(|h| h.serial);
                tracing::info!(secret = %d.secret, ?serial, "certificate stored");
                *r = Record {
                    issued_for: Some(d.fingerprint()),
                    renewal_window: issued.renewal_window,
                    window_checked: issued.renewal_window.map(|_| SystemTime::now()),
                    window_serial: issued.renewal_window.and(serial),
                    ..Record::default()
                };
                true
            }
            Err((error, retry_after)) => {
                tracing::warn!(secret = %d.secret, attempts = r.attempts + 1, %error, "issuing failed; the current certificate (if any) stays");
                r.attempts = r.attempts.saturating_add(1);
                r.last_error = Some(error);
                r.last_failure = Some(SystemTime::now());
                r.failed_for = Some(d.fingerprint());
                r.retry_after = retry_after;
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
    fn publish(&self, demands: &Demands, now: SystemTime) {
        // Re-plan from what is stored now, so the report reflects this
        // pass's results rather than its starting point.
        let (held, _) = self.read_held(&demands.certificates);
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

    /// Writes the records atomically; failures are logged (the records are
    /// an optimisation: losing them never causes a duplicate order).
    fn persist(&self) {
        let records = self.records_snapshot();
        let by_name: BTreeMap<String, Record> = records
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let result = serde_json::to_vec_pretty(&by_name)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                if let Some(dir) = self.state_file.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                write_atomic(&self.state_file, &bytes, 0o600).map_err(|e| e.to_string())
            });
        if let Err(error) = result {
            tracing::warn!(file = %self.state_file.display(), %error, "cannot write issuer state");
        }
    }
}

/// An error with its sources, `a: b: c`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

/// Reads the records file; a missing file is an empty record set.
fn read_records(path: &Path) -> Result<BTreeMap<StoreKey, Record>, ManagerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(ManagerError::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let by_name: BTreeMap<String, Record> = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(error) => {
            // Records only tune timing; a damaged file is started over
            // (the Store still prevents duplicate orders).
            tracing::warn!(file = %path.display(), %error, "issuer state unreadable; starting afresh");
            return Ok(BTreeMap::new());
        }
    };
    Ok(by_name
        .into_iter()
        .filter_map(|(k, v)| {
            let (ns, name) = k.split_once('/')?;
            Some((StoreKey::new(ns, name).ok()?, v))
        })
        .collect())
}

/// The stored certificates of the Secrets managed listeners use.
pub fn stored_for(store: &dyn Store, resources: &Resources) -> BTreeMap<StoreKey, StoredCert> {
    let mut out = BTreeMap::new();
    for m in super::demand::managed_listeners(resources) {
        if out.contains_key(&m.secret) {
            continue;
        }
        match store.get(&m.secret) {
            Ok(Some(cert)) => {
                out.insert(m.secret, cert);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(secret = %m.secret, error = chain(&error), "cannot read stored certificate")
            }
        }
    }
    out
}

/// What `portcullis certs` shows: the report a manager would publish for
/// the configuration in `resources` (compiled with `status`), from what
/// `store` holds and the records in `state_dir`. Blocking; never issues.
pub fn snapshot(
    resources: &Resources,
    status: &Status,
    store: &dyn Store,
    state_dir: &Path,
    now: SystemTime,
) -> Result<Vec<CertStatus>, ManagerError> {
    let demands = demand(resources, status);
    let records = read_records(&state_dir.join(STATE_FILE))?;
    let mut held = BTreeMap::new();
    for d in &demands.certificates {
        if let Ok(Some(stored)) = store.get(&d.secret) {
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
