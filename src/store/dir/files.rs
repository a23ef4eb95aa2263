//! Crash-safe file primitives of the directory store: [`write_atomic`] (a
//! whole file replaced in one rename), [`create_exclusive`] (a whole file
//! created only if absent, in one link), directory creation and fsync, and
//! tolerant reads. All blocking; the store calls them on the blocking pool.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::store::Error;

/// Mode of private key files and issuer state: owner read/write only.
pub(super) const PRIVATE_MODE: u32 = 0o600;
/// Mode of certificate files: public data.
pub(super) const PUBLIC_MODE: u32 = 0o644;
/// Mode of every directory the store creates.
pub(super) const DIR_MODE: u32 = 0o700;

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
    let (dir, temp) = temp_beside(path, true)?;
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

/// Creates `path` with `bytes` and `mode` only if it does not exist, in one
/// step: the content is written and fsynced under a temporary name, then
/// hard-linked to `path` (`link(2)` fails when `path` exists, so two writers
/// never both succeed). Returns whether this call created it.
///
/// Concurrent creators are expected, so unlike [`write_atomic`] it leaves
/// other temporary files alone (one a crash left between write and link is
/// hidden, private and harmless).
pub(super) fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<bool, Error> {
    let (dir, temp) = temp_beside(path, false)?;
    let result = write_new(&temp, bytes, mode).and_then(|()| match fs::hard_link(&temp, path) {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(write_err(path, source)),
    });
    // The temporary name is removed in every case (after a link the content
    // stays under `path`).
    let _ = fs::remove_file(&temp);
    result
}

/// The directory of `path` and a fresh temporary name beside it, after
/// removing temporary files of `path` an earlier crash left if
/// `remove_stale`.
fn temp_beside(path: &Path, remove_stale: bool) -> Result<(&Path, std::path::PathBuf), Error> {
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
    if remove_stale {
        for stale in read_dir_names(dir)? {
            if stale.starts_with(&temp_prefix) {
                let stale = dir.join(stale);
                fs::remove_file(&stale).map_err(|source| write_err(&stale, source))?;
            }
        }
    }
    Ok((dir, dir.join(format!("{temp_prefix}{}", random_hex()))))
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and
/// fsyncs it.
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
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

/// Creates `dir` and any missing parents with [`DIR_MODE`], then fsyncs each
/// of `parents` (outermost first) and `dir` so the new directory entries are
/// durable before anything is written into them.
pub(super) fn create_dir_synced(dir: &Path, parents: &[&Path]) -> Result<(), Error> {
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
pub(super) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| write_err(dir, source))
}

/// The names in `dir`, or none if it does not exist.
pub(super) fn read_dir_names(dir: &Path) -> Result<Vec<String>, Error> {
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
pub(super) fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// The text of `path`, or `None` if it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match read_text(path) {
        Ok(text) => Ok(Some(text)),
        Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `path`; a missing file is fine. fsyncs its directory.
pub(super) fn remove_file(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(write_err(path, source)),
    }
}

/// 16 random hex digits for temporary and version names.
pub(super) fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub(super) fn write_err(path: &Path, source: io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}
