//! Issued certificates in `<state>/secrets/<namespace>/<name>/`, switched
//! whole by one symlink rename.
//!
//! # Layout and crash safety
//!
//! ```text
//! ..7f3a…/tls.crt, tls.key[, ca.crt]   one complete version (dir 0700, key 0600)
//! ..data -> ..7f3a…                    the current version: a symlink
//! tls.crt -> ..data/tls.crt            stable paths for people and tools
//! tls.key -> ..data/tls.key
//! ca.crt -> ..data/ca.crt              only while the current version has one
//! ```
//!
//! This is the scheme the kubelet uses for Secret volumes. A `put` writes
//! every file into a fresh version directory and fsyncs them and the
//! directory; only then does it point `..data` at it, by creating a temporary
//! symlink and renaming it over `..data` (rename is atomic) and fsyncing the
//! entry directory. The certificate and key therefore change together in that
//! one rename: a crash before it leaves the old pair current, a crash after it
//! leaves the new pair current, and no moment exists where a reader could pair
//! a certificate with another version's key. Readers resolve `..data` once and
//! read the files of the version it names. Versions written before `ca.crt`
//! existed simply have none.
//!
//! Anything a crash can leave behind (a half-written version directory, a
//! temporary symlink) starts with `..` and is not `..data` or the version it
//! names, so readers never look at it and the next `put` of that entry removes
//! it. Entry names cannot start with `.` ([`StoreKey`] forbids it), so they
//! never collide with these internal names.
//!
//! One process writes a given entry at a time; concurrent readers are safe.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};

use super::files::{
    create_dir_synced, random_hex, read_dir_names, read_optional, read_text, sync_dir, write_err,
    write_new, DIR_MODE, PRIVATE_MODE, PUBLIC_MODE,
};
use crate::store::{Error, StoreKey, StoredCert};

/// File name of the certificate chain, as in a `kubernetes.io/tls` Secret.
const CERT_FILE: &str = "tls.crt";
/// File name of the private key, as in a `kubernetes.io/tls` Secret.
const KEY_FILE: &str = "tls.key";
/// File name of the issuing CA's certificate, as in cert-manager's Secrets.
const CA_FILE: &str = "ca.crt";
/// The symlink naming the current version directory.
const DATA_LINK: &str = "..data";
/// How often `get` retries when a concurrent `put` removed the version it was
/// reading.
const READ_ATTEMPTS: usize = 3;

/// The certificates under `<state>/secrets`.
#[derive(Debug, Clone)]
pub(super) struct Secrets {
    root: PathBuf,
}

impl Secrets {
    /// The certificates under `root` (`<state>/secrets`).
    pub(super) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The directory holding `key`'s versions. [`StoreKey`] guarantees both
    /// parts are single, non-dot path components.
    fn entry_dir(&self, key: &StoreKey) -> PathBuf {
        self.root.join(key.namespace()).join(key.name())
    }

    /// The current version of `key`, if any.
    pub(super) fn get(&self, key: &StoreKey) -> Result<Option<StoredCert>, Error> {
        let entry = self.entry_dir(key);
        let link = entry.join(DATA_LINK);
        let mut last_err = None;
        for _ in 0..READ_ATTEMPTS {
            let target = match fs::read_link(&link) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(Error::Read { path: link, source }),
            };
            if !is_version_name(&target) {
                return Err(Error::Read {
                    path: link,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{DATA_LINK} points outside the entry: {}", target.display()),
                    ),
                });
            }
            let version = entry.join(&target);
            match read_version(&version) {
                Ok(cert) => return Ok(Some(cert)),
                // A concurrent put replaced and removed this version between
                // the readlink and the reads: resolve `..data` again.
                Err(Error::Read { source, path }) if source.kind() == io::ErrorKind::NotFound => {
                    last_err = Some(Error::Read { path, source });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Read {
            path: link,
            source: io::Error::other("entry kept changing while being read"),
        }))
    }

    /// Stores `value` as the new current version of `key`.
    pub(super) fn put(&self, key: &StoreKey, value: &StoredCert) -> Result<(), Error> {
        let ns_dir = self.root.join(key.namespace());
        let entry = ns_dir.join(key.name());
        create_dir_synced(&entry, &[&self.root, &ns_dir])?;

        // 1. A complete, durable new version nobody points at yet.
        let version_name = format!("..{}", random_hex());
        let version = entry.join(&version_name);
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&version)
            .map_err(|source| write_err(&version, source))?;
        write_new(
            &version.join(KEY_FILE),
            value.key_pem.as_bytes(),
            PRIVATE_MODE,
        )?;
        write_new(
            &version.join(CERT_FILE),
            value.cert_chain_pem.as_bytes(),
            PUBLIC_MODE,
        )?;
        if let Some(ca) = &value.ca_pem {
            write_new(&version.join(CA_FILE), ca.as_bytes(), PUBLIC_MODE)?;
        }
        sync_dir(&version)?;

        // 2. The switch: one rename moves `..data` to the new version.
        replace_symlink(&entry, DATA_LINK, Path::new(&version_name))?;

        // 3. Stable top-level paths (they point through `..data`, so they
        //    never change after the first put; `ca.crt` exists only while the
        //    current version has one).
        let mut stable = vec![CERT_FILE, KEY_FILE];
        if value.ca_pem.is_some() {
            stable.push(CA_FILE);
        } else if fs::symlink_metadata(entry.join(CA_FILE)).is_ok() {
            let path = entry.join(CA_FILE);
            fs::remove_file(&path).map_err(|source| write_err(&path, source))?;
        }
        for file in stable {
            let target = Path::new(DATA_LINK).join(file);
            if fs::read_link(entry.join(file)).ok().as_deref() != Some(target.as_path()) {
                replace_symlink(&entry, file, &target)?;
            }
        }
        sync_dir(&entry)?;

        // 4. Old versions and crash leftovers.
        remove_stale(&entry, &version_name)?;
        Ok(())
    }

    /// Every key with a current version, sorted.
    pub(super) fn list(&self) -> Result<Vec<StoreKey>, Error> {
        let mut keys = Vec::new();
        for namespace in read_dir_names(&self.root)? {
            let ns_dir = self.root.join(&namespace);
            for name in read_dir_names(&ns_dir)? {
                let Ok(key) = StoreKey::new(namespace.clone(), name) else {
                    continue;
                };
                let link = self.entry_dir(&key).join(DATA_LINK);
                if fs::symlink_metadata(&link).is_ok() {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// The files of one version directory.
fn read_version(version: &Path) -> Result<StoredCert, Error> {
    Ok(StoredCert {
        cert_chain_pem: read_text(&version.join(CERT_FILE))?,
        key_pem: read_text(&version.join(KEY_FILE))?,
        ca_pem: read_optional(&version.join(CA_FILE))?,
    })
}

/// Points `dir/name` at `target` atomically: a temporary symlink renamed over
/// `name`. The caller fsyncs `dir`.
fn replace_symlink(dir: &Path, name: &str, target: &Path) -> Result<(), Error> {
    let temp = dir.join(format!("{DATA_LINK}.tmp-{}", random_hex()));
    symlink(target, &temp).map_err(|source| write_err(&temp, source))?;
    let dest = dir.join(name);
    if let Err(source) = fs::rename(&temp, &dest) {
        let _ = fs::remove_file(&temp);
        return Err(write_err(&dest, source));
    }
    sync_dir(dir)
}

/// Removes every internal (`..`-prefixed) entry of `entry` except `..data`
/// and the `current` version: old versions, half-written versions and
/// temporary symlinks left by a crash.
fn remove_stale(entry: &Path, current: &str) -> Result<(), Error> {
    let mut removed = false;
    for name in read_dir_names(entry)? {
        if !name.starts_with("..") || name == DATA_LINK || name == current {
            continue;
        }
        let path = entry.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|source| write_err(&path, source))?;
        let result = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|source| write_err(&path, source))?;
        removed = true;
    }
    if removed {
        sync_dir(entry)?;
    }
    Ok(())
}

/// Whether a `..data` target names a version directory of the same entry
/// (`..<hex>`, one path component) rather than something elsewhere.
fn is_version_name(target: &Path) -> bool {
    let mut parts = target.components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(name)), None)
            if name.to_str().is_some_and(|n| n.len() > 2 && n.starts_with("..") && n != DATA_LINK)
    )
}
