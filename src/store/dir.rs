//! [`DirStore`]: certificates kept as files in the state directory, and
//! [`write_atomic`], the crash-safe single-file write the rest of the crate
//! uses for keys and certificates.
//!
//! # Layout and crash safety
//!
//! Each entry lives in `<state>/secrets/<namespace>/<name>/`:
//!
//! ```text
//! ..7f3a…/tls.crt, tls.key   one complete version (dir 0700, key 0600)
//! ..data -> ..7f3a…          the current version: a symlink
//! tls.crt -> ..data/tls.crt  stable paths for people and tools
//! tls.key -> ..data/tls.key
//! ```
//!
//! This is the scheme the kubelet uses for Secret volumes. A `put` writes
//! both files into a fresh version directory and fsyncs them and the directory;
//! only then does it point `..data` at it, by creating a temporary symlink and
//! renaming it over `..data` (rename is atomic) and fsyncing the entry
//! directory. The certificate and key therefore change together in that one
//! rename: a crash before it leaves the old pair current, a crash after it
//! leaves the new pair current, and no moment exists where a reader could pair
//! a certificate with another version's key. Readers resolve `..data` once and
//! read both files from the version it names.
//!
//! Anything a crash can leave behind (a half-written version directory, a
//! temporary symlink) starts with `..` and is not `..data` or the version it
//! names, so readers never look at it and the next `put` of that entry removes
//! it. Entry names cannot start with `.` ([`StoreKey`] forbids it), so they
//! never collide with these internal names.
//!
//! One process writes a given entry at a time; concurrent readers are safe.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Error, Store, StoreKey, StoredCert};

/// File name of the certificate chain, as in a `kubernetes.io/tls` Secret.
const CERT_FILE: &str = "tls.crt";
/// File name of the private key, as in a `kubernetes.io/tls` Secret.
const KEY_FILE: &str = "tls.key";
/// The symlink naming the current version directory.
const DATA_LINK: &str = "..data";
/// Mode of private key files: owner read/write only.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files: public data.
const CERT_MODE: u32 = 0o644;
/// Mode of every directory the store creates.
const DIR_MODE: u32 = 0o700;
/// How often `get` retries when a concurrent `put` removed the version it was
/// reading.
const READ_ATTEMPTS: usize = 3;

/// A [`Store`] on the local file system, under `<state_dir>/secrets/`.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `<state_dir>/secrets`. Does no I/O; directories are
    /// created by the first [`put`](Store::put).
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        Self {
            root: state_dir.as_ref().join("secrets"),
        }
    }

    /// The directory holding `key`'s versions. [`StoreKey`] guarantees both
    /// parts are single, non-dot path components.
    fn entry_dir(&self, key: &StoreKey) -> PathBuf {
        self.root.join(key.namespace()).join(key.name())
    }

    /// Reads the current version of the entry in `entry`, if any.
    fn read_current(entry: &Path) -> Result<Option<StoredCert>, Error> {
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
            match (
                read_text(&version.join(CERT_FILE)),
                read_text(&version.join(KEY_FILE)),
            ) {
                (Ok(cert_chain_pem), Ok(key_pem)) => {
                    return Ok(Some(StoredCert {
                        cert_chain_pem,
                        key_pem,
                    }))
                }
                // A concurrent put replaced and removed this version between
                // the readlink and the reads: resolve `..data` again.
                (Err(Error::Read { source, path }), _) | (_, Err(Error::Read { source, path }))
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    last_err = Some(Error::Read { path, source });
                }
                (Err(e), _) | (_, Err(e)) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Read {
            path: link,
            source: io::Error::other("entry kept changing while being read"),
        }))
    }
}

impl Store for DirStore {
    fn get(&self, name: &StoreKey) -> Result<Option<StoredCert>, Error> {
        Self::read_current(&self.entry_dir(name))
    }

    fn put(&self, name: &StoreKey, value: &StoredCert) -> Result<(), Error> {
        let ns_dir = self.root.join(name.namespace());
        let entry = ns_dir.join(name.name());
        create_dir_synced(&entry, &[&self.root, &ns_dir])?;

        // 1. A complete, durable new version nobody points at yet.
        let version_name = format!("..{}", random_hex());
        let version = entry.join(&version_name);
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&version)
            .map_err(|source| write_err(&version, source))?;
        write_new(&version.join(KEY_FILE), value.key_pem.as_bytes(), KEY_MODE)?;
        write_new(
            &version.join(CERT_FILE),
            value.cert_chain_pem.as_bytes(),
            CERT_MODE,
        )?;
        sync_dir(&version)?;

        // 2. The switch: one rename moves `..data` to the new version.
        replace_symlink(&entry, DATA_LINK, Path::new(&version_name))?;

        // 3. Stable top-level paths (they point through `..data`, so they
        //    never change after the first put).
        for file in [CERT_FILE, KEY_FILE] {
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

    fn list(&self) -> Result<Vec<StoreKey>, Error> {
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

/// Writes `bytes` to `path` so that, even across a crash or `kill -9`, `path`
/// holds either its old content or all of `bytes`, never a mix, and a key file
/// is never readable by others for any instant.
///
/// Writes a temporary file `.<name>.tmp-<random>` in the same directory
/// (created with `mode`), fsyncs it, renames it over `path` and fsyncs the
/// directory so the rename itself is durable. Temporary files of `path` left
/// by an earlier crash are removed first; only one process may write a given
/// `path` at a time.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let (dir, file_name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name.to_string_lossy().into_owned()),
        _ => {
            return Err(write_err(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
            ))
        }
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let temp_prefix = format!(".{file_name}.tmp-");
    for stale in read_dir_names(dir)? {
        if stale.starts_with(&temp_prefix) {
            let stale = dir.join(stale);
            fs::remove_file(&stale).map_err(|source| write_err(&stale, source))?;
        }
    }
    let temp = dir.join(format!("{temp_prefix}{}", random_hex()));
    let result = write_new(&temp, bytes, mode)
        .and_then(|()| fs::rename(&temp, path).map_err(|source| write_err(path, source)))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: the temp file may not exist, and the original error is
        // the one worth reporting.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and
/// fsyncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        // The umask may have cleared bits of `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| write_err(path, source))
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

/// Creates `dir` and any missing parents with [`DIR_MODE`], then fsyncs each
/// of `parents` (outermost first) and `dir` so the new directory entries are
/// durable before anything is written into them.
fn create_dir_synced(dir: &Path, parents: &[&Path]) -> Result<(), Error> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .recursive(true)
        .create(dir)
        .map_err(|source| write_err(dir, source))?;
    for parent in parents {
        if let Some(grand) = parent.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(grand)?;
        }
        sync_dir(parent)?;
    }
    sync_dir(dir)
}

/// fsyncs a directory, making renames and creations inside it durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| write_err(dir, source))
}

/// The names in `dir`, or none if it does not exist.
fn read_dir_names(dir: &Path) -> Result<Vec<String>, Error> {
    let read_err = |source| Error::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        // Names that are not UTF-8 were not written by us; skip them.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Reads a whole file as UTF-8 text.
fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        path: path.to_path_buf(),
    })
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

/// 16 random hex digits for temporary and version names.
fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn write_err(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(tag: &str) -> StoredCert {
        StoredCert {
            cert_chain_pem: format!("CERT {tag}\n"),
            key_pem: format!("KEY {tag}\n"),
        }
    }

    fn key(name: &str) -> StoreKey {
        StoreKey::new("default", name).expect("valid test name")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path)
            .expect("file exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn put_then_get_roundtrips_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        assert_eq!(store.get(&key("a")).expect("get"), None);
        store.put(&key("a"), &cert("1")).expect("put");
        assert_eq!(store.get(&key("a")).expect("get"), Some(cert("1")));
        store.put(&key("a"), &cert("2")).expect("put again");
        assert_eq!(store.get(&key("a")).expect("get"), Some(cert("2")));
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

    #[test]
    fn key_files_are_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        store.put(&key("a"), &cert("1")).expect("put");
        let entry = dir.path().join("secrets/default/a");
        assert_eq!(mode(&entry.join("tls.key")), 0o600);
        assert_eq!(mode(&entry.join("tls.crt")), 0o644);
        assert_eq!(mode(&entry), 0o700);
    }

    #[test]
    fn list_returns_stored_keys_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        assert!(store.list().expect("list empty").is_empty());
        store.put(&key("b"), &cert("b")).expect("put");
        store.put(&key("a"), &cert("a")).expect("put");
        let other = StoreKey::new("other", "c").expect("valid");
        store.put(&other, &cert("c")).expect("put");
        assert_eq!(store.list().expect("list"), vec![key("a"), key("b"), other]);
    }

    #[test]
    fn crash_leftovers_are_ignored_then_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        store.put(&key("a"), &cert("1")).expect("put");
        let entry = dir.path().join("secrets/default/a");
        // A put killed mid-way: a half-written version and a temp symlink.
        let half = entry.join("..00000000deadbeef");
        fs::create_dir(&half).expect("mkdir");
        fs::write(half.join("tls.key"), "KEY half").expect("write");
        symlink("..00000000deadbeef", entry.join("..data.tmp-1")).expect("symlink");
        assert_eq!(store.get(&key("a")).expect("get"), Some(cert("1")));
        assert_eq!(store.list().expect("list"), vec![key("a")]);

        store.put(&key("a"), &cert("2")).expect("put");
        assert_eq!(store.get(&key("a")).expect("get"), Some(cert("2")));
        let names = read_dir_names(&entry).expect("read dir");
        assert_eq!(names.len(), 4, "{names:?}");
        for expected in ["..data", "tls.crt", "tls.key"] {
            assert!(names.iter().any(|n| n == expected), "{names:?}");
        }
        assert!(!names
            .iter()
            .any(|n| n.contains("deadbeef") || n.contains("tmp")));
    }

    #[test]
    fn crash_before_first_switch_leaves_no_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let entry = dir.path().join("secrets/default/a");
        fs::create_dir_all(entry.join("..0000000000000001")).expect("mkdir");
        assert_eq!(store.get(&key("a")).expect("get"), None);
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn data_link_escaping_the_entry_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let entry = dir.path().join("secrets/default/a");
        fs::create_dir_all(&entry).expect("mkdir");
        symlink("../../../elsewhere", entry.join("..data")).expect("symlink");
        assert!(store.get(&key("a")).is_err());
    }

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
}
