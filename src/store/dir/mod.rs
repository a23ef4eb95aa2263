//! [`DirStore`]: the issuer's state as files in the state directory
//! (standalone mode), and [`write_atomic`], the crash-safe single-file
//! write.
//!
//! ```text
//! <state>/secrets/<namespace>/<name>/        issued pairs (secrets.rs: ..data swap)
//! <state>/local-ca/{ca.crt,ca.key}           the local CA (state.rs)
//! <state>/acme/<ns>/<secret>/account-<h>.pem ACME account keys
//! <state>/acme/orders/<ns>/<secret>.json     pending ACME orders
//! <state>/issuer/state.json                  per-certificate issuer records
//! ```
//!
//! This is the layout portcullis has always used, so existing state
//! directories keep working. Every operation runs its file I/O on tokio's
//! blocking pool. One process owns a state directory; the in-process locks
//! and exclusive creates keep concurrent tasks of that process (and a second
//! process creating the local CA at the same instant) from losing writes.

mod files;
mod secrets;
mod state;

pub use files::write_atomic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AccountId, CertMeta, Error, PendingOrder, Record, Store, StoreKey, StoredCert};
use secrets::Secrets;
use state::{LocalCaFiles, RecordsFile};

/// A [`Store`] on the local file system, under the state directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state_dir: PathBuf,
    secrets: Secrets,
    local_ca: LocalCaFiles,
    records: RecordsFile,
}

impl DirStore {
    /// A store in `state_dir`. Does no I/O; directories are created by the
    /// first write that needs them.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        let state_dir = state_dir.as_ref().to_path_buf();
        Self {
            inner: Arc::new(Inner {
                secrets: Secrets::new(state_dir.join("secrets")),
                local_ca: LocalCaFiles::new(state_dir.join("local-ca")),
                records: RecordsFile::new(state_dir.join("issuer").join("state.json")),
                state_dir,
            }),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Where `account`'s key is kept.
    pub fn account_path(&self, account: &AccountId) -> PathBuf {
        state::account_path(&self.inner.state_dir.join("acme"), account)
    }

    /// Where the pending order of `cert` is kept.
    pub fn order_path(&self, cert: &StoreKey) -> PathBuf {
        state::order_path(&self.inner.state_dir.join("acme").join("orders"), cert)
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|source| Error::Blocking { op, source })?
    }
}

#[async_trait::async_trait]
impl Store for DirStore {
    async fn get_cert(&self, key: &StoreKey) -> Result<Option<StoredCert>, Error> {
        let key = key.clone();
        self.blocking("get_cert", move |s| s.secrets.get(&key))
            .await
    }

    async fn put_cert(
        &self,
        key: &StoreKey,
        cert: &StoredCert,
        _meta: &CertMeta,
    ) -> Result<(), Error> {
        let (key, cert) = (key.clone(), cert.clone());
        self.blocking("put_cert", move |s| s.secrets.put(&key, &cert))
            .await
    }

    async fn list_certs(&self) -> Result<Vec<StoreKey>, Error> {
        self.blocking("list_certs", |s| s.secrets.list()).await
    }

    async fn account_key(&self, account: &AccountId) -> Result<Option<String>, Error> {
        let path = self.account_path(account);
        self.blocking("account_key", move |_| state::read_account(&path))
            .await
    }

    async fn put_account_key(&self, account: &AccountId, key_pem: &str) -> Result<(), Error> {
        let path = self.account_path(account);
        let key_pem = key_pem.to_owned();
        self.blocking("put_account_key", move |_| {
            state::write_account(&path, &key_pem)
        })
        .await
    }

    async fn pending_order(&self, cert: &StoreKey) -> Result<Option<PendingOrder>, Error> {
        let path = self.order_path(cert);
        self.blocking("pending_order", move |_| state::read_order(&path))
            .await
    }

    async fn put_pending_order(&self, cert: &StoreKey, order: &PendingOrder) -> Result<(), Error> {
        let path = self.order_path(cert);
        let order = order.clone();
        self.blocking("put_pending_order", move |_| {
            state::write_order(&path, &order)
        })
        .await
    }

    async fn remove_pending_order(&self, cert: &StoreKey) -> Result<(), Error> {
        let path = self.order_path(cert);
        self.blocking("remove_pending_order", move |_| state::remove_order(&path))
            .await
    }

    async fn local_ca(&self) -> Result<Option<StoredCert>, Error> {
        self.blocking("local_ca", |s| s.local_ca.load()).await
    }

    async fn create_local_ca(&self, ca: &StoredCert) -> Result<StoredCert, Error> {
        let ca = ca.clone();
        self.blocking("create_local_ca", move |s| s.local_ca.create(&ca))
            .await
    }

    async fn orphan_local_ca_key(&self) -> Result<Option<String>, Error> {
        self.blocking("orphan_local_ca_key", |s| s.local_ca.orphan_key())
            .await
    }

    async fn records(&self) -> Result<BTreeMap<StoreKey, Record>, Error> {
        self.blocking("records", |s| s.records.read()).await
    }

    async fn put_records(&self, changed: &BTreeMap<StoreKey, Record>) -> Result<(), Error> {
        let changed = changed.clone();
        self.blocking("put_records", move |s| s.records.merge(&changed))
            .await
    }
}

#[cfg(test)]
mod tests;
