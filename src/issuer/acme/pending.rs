//! Orders in progress, persisted so that a restart after a crash (`kill -9`
//! mid-order) resumes the pending order instead of placing a second one:
//! `<state>/acme/orders/<namespace>/<secret>.json` holds the order URL with
//! the server, names and profile it was placed for. Written atomically
//! (mode 0600) as soon as the CA has created the order, removed once the
//! order produced a certificate or can no longer produce one for us (it
//! became invalid, or a process whose key is lost already finalized it).
//!
//! Persisting is best effort: a file that cannot be written or read only
//! costs a new order (what happened before this existed), never a failure.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::store::StoreKey;

/// Mode of the order files.
const FILE_MODE: u32 = 0o600;
/// Mode of the directories holding them.
const DIR_MODE: u32 = 0o700;

/// An order the CA created for a certificate that has not been stored yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingOrder {
    /// The order URL (RFC 8555 §7.1.3), for POST-as-GET.
    pub url: String,
    /// The ACME directory URL it was placed with.
    pub server: String,
    /// The names ordered, as requested.
    pub names: Vec<String>,
    /// The profile ordered, if any.
    pub profile: Option<String>,
}

impl PendingOrder {
    /// Whether this order is for the same certificate on the same server:
    /// only then may it be resumed (the key is chosen at finalize, so a new
    /// key algorithm does not matter).
    pub fn serves(&self, server: &str, names: &[String], profile: Option<&str>) -> bool {
        self.server == server && self.names == names && self.profile.as_deref() == profile
    }
}

/// Where the pending order of `secret` is kept under `state_dir`.
pub fn path(state_dir: &Path, secret: &StoreKey) -> PathBuf {
    state_dir
        .join("acme")
        .join("orders")
        .join(secret.namespace())
        .join(format!("{}.json", secret.name()))
}

/// The pending order at `path`; `None` when there is none or it cannot be
/// read (logged: a new order is placed instead).
pub fn read(path: &Path) -> Option<PendingOrder> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot read the pending ACME order");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(order) => Some(order),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "pending ACME order unreadable; ignoring it");
            None
        }
    }
}

/// Records `order` at `path` atomically (failures are logged).
pub fn write(path: &Path, order: &PendingOrder) {
    let result = serde_json::to_vec_pretty(order)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            if let Some(dir) = path.parent() {
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(|e| e.to_string())?;
            }
            crate::store::write_atomic(path, &bytes, FILE_MODE).map_err(|e| e.to_string())
        });
    if let Err(error) = result {
        tracing::warn!(file = %path.display(), %error, "cannot record the pending ACME order; a restart would order again");
    }
}

/// Forgets the pending order at `path` (failures are logged).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "cannot remove the pending ACME order")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> PendingOrder {
        PendingOrder {
            url: "https://ca.test/order/1".into(),
            server: "https://ca.test/dir".into(),
            names: vec!["a.test".into(), "b.test".into()],
            profile: None,
        }
    }

    #[test]
    fn pending_order_resumes_only_for_the_same_server_names_and_profile() {
        let o = order();
        let names = o.names.clone();
        assert!(o.serves("https://ca.test/dir", &names, None));
        assert!(!o.serves("https://other.test/dir", &names, None));
        assert!(!o.serves("https://ca.test/dir", &names[..1], None));
        assert!(!o.serves("https://ca.test/dir", &names, Some("shortlived")));
    }

    #[test]
    fn pending_order_round_trips_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = StoreKey::new("web", "site-tls").expect("valid key");
        let p = path(dir.path(), &secret);
        assert!(p.starts_with(dir.path().join("acme/orders/web")));
        assert_eq!(read(&p), None);
        write(&p, &order());
        assert_eq!(read(&p), Some(order()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("written").permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        remove(&p);
        assert_eq!(read(&p), None);
        remove(&p);
    }

    #[test]
    fn damaged_pending_order_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.json");
        std::fs::write(&p, b"{not json").expect("written");
        assert_eq!(read(&p), None);
    }
}
