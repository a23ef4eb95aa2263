//! The directory store's single-file state: the local CA
//! (`local-ca/{ca.crt,ca.key}`), ACME account keys
//! (`acme/<namespace>/<secret>/account-<server hash>.pem`), pending orders
//! (`acme/orders/<namespace>/<secret>.json`) and the issuer records
//! (`issuer/state.json`). Each file is replaced whole ([`write_atomic`]) or
//! created only if absent ([`create_exclusive`]); keys are 0600 in 0700
//! directories.
//!
//! The local CA is two files, so creating it is two steps: the key, then the
//! certificate, each created only if absent. The certificate is the commit
//! point: a key without a certificate is what a crash between the two
//! leaves, and the next creator signs a root for that key
//! ([`LocalCaFiles::orphan_key`]) instead of replacing it. A certificate
//! without a key is refused, never replaced by a new CA.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::files::{
    create_exclusive, read_optional, read_text, remove_file, sync_dir, write_atomic, write_err,
    DIR_MODE, PRIVATE_MODE, PUBLIC_MODE,
};
use crate::store::{AccountId, Error, PendingOrder, Record, StoreKey, StoredCert};

/// The CA's root certificate file.
const CA_CERT_FILE: &str = "ca.crt";
/// The CA's private key file.
const CA_KEY_FILE: &str = "ca.key";
/// How long a creator that lost the race for the CA key waits for the
/// winner's certificate.
const CA_CERT_WAIT: Duration = Duration::from_secs(2);
/// How often it looks while waiting.
const CA_CERT_POLL: Duration = Duration::from_millis(50);

/// The local CA's two files.
#[derive(Debug)]
pub(super) struct LocalCaFiles {
    dir: PathBuf,
    /// Serialises creation within this process (other processes are handled
    /// by the exclusive creates).
    creating: Mutex<()>,
}

impl LocalCaFiles {
    /// The CA in `dir` (`<state>/local-ca`).
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            creating: Mutex::new(()),
        }
    }

    /// The complete CA, if there is one.
    pub(super) fn load(&self) -> Result<Option<StoredCert>, Error> {
        let cert = read_optional(&self.dir.join(CA_CERT_FILE))?;
        let key = read_optional(&self.dir.join(CA_KEY_FILE))?;
        match (cert, key) {
            (Some(cert_chain_pem), Some(key_pem)) => Ok(Some(StoredCert {
                cert_chain_pem,
                key_pem,
                ca_pem: None,
            })),
            (Some(_), None) => Err(Error::Incomplete {
                what: self.dir.display().to_string(),
                reason: format!("{CA_CERT_FILE} exists without {CA_KEY_FILE}"),
            }),
            (None, _) => Ok(None),
        }
    }

    /// A key without its certificate (a crash between the two writes).
    pub(super) fn orphan_key(&self) -> Result<Option<String>, Error> {
        if read_optional(&self.dir.join(CA_CERT_FILE))?.is_some() {
            return Ok(None);
        }
        read_optional(&self.dir.join(CA_KEY_FILE))
    }

    /// Stores `ca` unless a CA exists; returns the CA stored afterwards.
    pub(super) fn create(&self, ca: &StoredCert) -> Result<StoredCert, Error> {
        let _creating = self.creating.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = self.load()? {
            return Ok(existing);
        }
        create_private_dir(&self.dir)?;
        let key_path = self.dir.join(CA_KEY_FILE);
        if !create_exclusive(&key_path, ca.key_pem.as_bytes(), PRIVATE_MODE)?
            && read_text(&key_path)? != ca.key_pem
        {
            // Another process created its key first: its certificate follows
            // within moments, unless it crashed (then the next start signs a
            // root for that key).
            return self.wait_for_certificate();
        }
        // A certificate created meanwhile by another creator of the same
        // (orphan) key wins; `load` returns whichever is there.
        create_exclusive(
            &self.dir.join(CA_CERT_FILE),
            ca.cert_chain_pem.as_bytes(),
            PUBLIC_MODE,
        )?;
        self.load()?.ok_or_else(|| Error::Incomplete {
            what: self.dir.display().to_string(),
            reason: format!("{CA_CERT_FILE} vanished after it was created"),
        })
    }

    /// Waits (blocking) for the certificate of a key another process
    /// created.
    fn wait_for_certificate(&self) -> Result<StoredCert, Error> {
        let deadline = std::time::Instant::now() + CA_CERT_WAIT;
        loop {
            if let Some(existing) = self.load()? {
                return Ok(existing);
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Incomplete {
                    what: self.dir.display().to_string(),
                    reason: format!(
                        "another process created {CA_KEY_FILE} but not {CA_CERT_FILE}; \
                         the next start completes the CA with that key"
                    ),
                });
            }
            std::thread::sleep(CA_CERT_POLL);
        }
    }
}

/// Where account keys live: `<state>/acme`.
pub(super) fn account_path(acme_dir: &Path, account: &AccountId) -> PathBuf {
    acme_dir
        .join(account.secret().namespace())
        .join(account.secret().name())
        .join(format!("account-{}.pem", account.server_hash()))
}

/// The stored key of an account.
pub(super) fn read_account(path: &Path) -> Result<Option<String>, Error> {
    read_optional(path)
}

/// Stores an account key (0600, directories 0700).
pub(super) fn write_account(path: &Path, key_pem: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    write_atomic(path, key_pem.as_bytes(), PRIVATE_MODE)
}

/// Where the pending order of `cert` lives under `<state>/acme/orders`.
pub(super) fn order_path(orders_dir: &Path, cert: &StoreKey) -> PathBuf {
    orders_dir
        .join(cert.namespace())
        .join(format!("{}.json", cert.name()))
}

/// The pending order at `path`.
pub(super) fn read_order(path: &Path) -> Result<Option<PendingOrder>, Error> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Decode {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// Records a pending order at `path` (0600, directories 0700).
pub(super) fn write_order(path: &Path, order: &PendingOrder) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(order).map_err(|source| Error::Encode {
        what: path.display().to_string(),
        source,
    })?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    write_atomic(path, &bytes, PRIVATE_MODE)
}

/// Forgets the pending order at `path`.
pub(super) fn remove_order(path: &Path) -> Result<(), Error> {
    remove_file(path)
}

/// The issuer records file: a JSON object from `namespace/name` to a
/// [`Record`].
#[derive(Debug)]
pub(super) struct RecordsFile {
    path: PathBuf,
    /// Serialises read-merge-write within this process.
    writing: Mutex<()>,
}

impl RecordsFile {
    /// The records in `path` (`<state>/issuer/state.json`).
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            writing: Mutex::new(()),
        }
    }

    /// Every record; entries whose key is not a valid Secret name are left
    /// out.
    pub(super) fn read(&self) -> Result<BTreeMap<StoreKey, Record>, Error> {
        Ok(self
            .read_raw()?
            .into_iter()
            .filter_map(|(k, v)| {
                let (ns, name) = k.split_once('/')?;
                Some((StoreKey::new(ns, name).ok()?, v))
            })
            .collect())
    }

    /// Merges `changed` into the file. A damaged file is started over (the
    /// records only tune timing).
    pub(super) fn merge(&self, changed: &BTreeMap<StoreKey, Record>) -> Result<(), Error> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all = match self.read_raw() {
            Ok(all) => all,
            Err(Error::Decode { what, reason }) => {
                tracing::warn!(file = %what, %reason, "issuer records unreadable; writing them afresh");
                BTreeMap::new()
            }
            Err(e) => return Err(e),
        };
        for (key, record) in changed {
            all.insert(key.to_string(), record.clone());
        }
        let bytes = serde_json::to_vec_pretty(&all).map_err(|source| Error::Encode {
            what: self.path.display().to_string(),
            source,
        })?;
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|source| write_err(dir, source))?;
        }
        write_atomic(&self.path, &bytes, PRIVATE_MODE)
    }

    fn read_raw(&self) -> Result<BTreeMap<String, Record>, Error> {
        let Some(text) = read_optional(&self.path)? else {
            return Ok(BTreeMap::new());
        };
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            what: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// Creates `dir` (mode 0700) if missing and fsyncs its parent so the new
/// entry survives a crash.
fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .recursive(true)
        .create(dir)
        .map_err(|e| write_err(dir, e))?;
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}
