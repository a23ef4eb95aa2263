//! ACME accounts: created once per issuer and server, their key kept in the
//! state directory (`acme/<namespace>/<secret>/account-<server hash>.pem`,
//! written atomically, mode 0600) unless the user supplied one in the
//! `privateKeySecretRef` Secret, and reused on every later run.
//!
//! On start the stored key is presented again (`newAccount` returns the
//! existing account for a known key, RFC 8555 §7.3.1), which also
//! re-registers it with a CA that forgot it (Pebble restarted). Accounts are
//! cached per key in memory; the caller drops the cached one when the CA
//! says it does not know it.

use std::collections::HashMap;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use instant_acme::{Account, ExternalAccountKey, NewAccount};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::config::AcmeIssuer;
use super::http::{AcmeHttp, RetryAfterSlot};
use super::Error;

/// Mode of account key files.
const KEY_MODE: u32 = 0o600;
/// Mode of the directories holding them.
const DIR_MODE: u32 = 0o700;

/// Where an issuer's account key for its server lives under `state_dir`.
pub fn key_path(state_dir: &Path, issuer: &AcmeIssuer) -> PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, issuer.server.as_bytes());
    let hash: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    state_dir
        .join("acme")
        .join(&issuer.account_namespace)
        .join(&issuer.account_secret)
        .join(format!("account-{hash}.pem"))
}

/// PKCS#8 DER as PEM.
fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Accounts in use, by key file.
#[derive(Default)]
pub struct Accounts {
    /// Each account with the Retry-After slot its HTTP client writes (the
    /// client lives as long as the account, so the slot must too).
    cache: tokio::sync::Mutex<HashMap<PathBuf, (Account, RetryAfterSlot)>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    /// The account of `issuer`, from the cache, the stored key, or created,
    /// with the slot where its HTTP client records the CA's Retry-After.
    pub async fn get(
        &self,
        state_dir: &Path,
        issuer: &AcmeIssuer,
        metrics: Option<&std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Result<(Account, RetryAfterSlot), Error> {
        let path = key_path(state_dir, issuer);
        // Held across creation: two orders of one issuer never create two
        // accounts or race on the key file.
        let mut cache = self.cache.lock().await;
        if let Some((account, slot)) = cache.get(&path) {
            return Ok((account.clone(), slot.clone()));
        }
        let slot = RetryAfterSlot::default();
        let account = open_or_create(&path, issuer, &slot, metrics)
            .await
            .map_err(|e| super::order::with_retry_after(e, &slot))?;
        cache.insert(path, (account.clone(), slot.clone()));
        Ok((account, slot))
    }

    /// Forgets the cached account of `issuer` (the CA no longer knows it).
    pub async fn forget(&self, state_dir: &Path, issuer: &AcmeIssuer) {
        self.cache.lock().await.remove(&key_path(state_dir, issuer));
    }
}

async fn open_or_create(
    path: &Path,
    issuer: &AcmeIssuer,
    retry_after: &RetryAfterSlot,
    metrics: Option<&std::sync::Arc<crate::metrics::Metrics>>,
) -> Result<Account, Error> {
    let http = || -> Result<Box<AcmeHttp>, Error> {
        Ok(Box::new(AcmeHttp::new(
            issuer.ca_bundle_pem.as_deref(),
            retry_after.clone(),
            metrics.cloned(),
        )?))
    };
    let stored = match &issuer.account_key_pem {
        Some(pem) => Some(pem.clone()),
        None => match std::fs::read_to_string(path) {
            Ok(pem) => Some(pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::AccountKey {
                    path: path.to_owned(),
                    reason: source.to_string(),
                })
            }
        },
    };
    if let Some(pem) = stored {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::AccountKey {
                path: path.to_owned(),
                reason: format!("not a PKCS#8 PEM key: {e}"),
            })?;
        let key =
            instant_acme::Key::from_pkcs8_der(der.clone_key()).map_err(|e| Error::AccountKey {
                path: path.to_owned(),
                reason: format!("unusable account key (ECDSA P-256 expected): {e}"),
            })?;
        let found = Account::builder_with_http(http()?)
            .create_from_key((key, PrivateKeyDer::Pkcs8(der)), issuer.server.clone())
            .await;
        match found {
            Ok((account, _)) => {
                tracing::debug!(server = %issuer.server, "ACME account resumed");
                return Ok(account);
            }
            // The CA forgot the account and wants a binding to create it
            // again: a fresh account with the binding replaces the key
            // below (the CA has no account for the old key anyway).
            Err(instant_acme::Error::Api(p))
                if issuer.eab.is_some()
                    && issuer.account_key_pem.is_none()
                    && p.r#type.as_deref()
                        == Some("urn:ietf:params:acme:error:externalAccountRequired") => {}
            Err(source) => return Err(Error::from_acme(super::Phase::Account, source)),
        }
    }
    let contact = issuer.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = issuer
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.key_id.clone(), &e.hmac_key));
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            issuer.server.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| Error::from_acme(super::Phase::Account, e))?;
    let pem = pkcs8_pem(credentials.private_key().secret_pkcs8_der());
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|source| Error::AccountKey {
                path: dir.to_owned(),
                reason: source.to_string(),
            })?;
    }
    crate::store::write_atomic(path, pem.as_bytes(), KEY_MODE).map_err(|e| Error::AccountKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    tracing::info!(server = %issuer.server, key = %path.display(), "ACME account created");
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_pem_round_trips_through_pki_types() {
        let (_, der) = instant_acme::Key::generate_pkcs8().expect("generates");
        let pem = pkcs8_pem(der.secret_pkcs8_der());
        let back = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("parses");
        assert_eq!(back.secret_pkcs8_der(), der.secret_pkcs8_der());
        assert!(pem.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn key_path_differs_per_server_and_stays_in_state_dir() {
        let mut issuer = AcmeIssuer {
            server: "https://a.test/dir".into(),
            email: None,
            account_namespace: "web".into(),
            account_secret: "le-account".into(),
            account_key_pem: None,
            eab: None,
            profile: None,
            ca_bundle_pem: None,
            solvers: vec![],
        };
        let a = key_path(Path::new("/state"), &issuer);
        issuer.server = "https://b.test/dir".into();
        let b = key_path(Path::new("/state"), &issuer);
        assert_ne!(a, b);
        assert!(a.starts_with("/state/acme/web/le-account"));
    }
}
