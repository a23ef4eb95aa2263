//! ACME accounts: created once per issuer and server, their key kept in the
//! [`Store`] under the issuer's `privateKeySecretRef` and server
//! ([`AccountId`]) unless the user supplied one in that Secret, and reused on
//! every later run (and by the next leader).
//!
//! On start the stored key is presented again (`newAccount` returns the
//! existing account for a known key, RFC 8555 §7.3.1), which also
//! re-registers it with a CA that forgot it (Pebble restarted). Accounts are
//! cached per account id in memory; the caller drops the cached one when the
//! CA says it does not know it.

use std::collections::HashMap;

use base64::Engine;
use instant_acme::{Account, ExternalAccountKey, NewAccount};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::config::AcmeIssuer;
use super::http::{AcmeHttp, RetryAfterSlot};
use super::{AccountKeyProblem, AcmeContext, Error};
use crate::store::AccountId;

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

/// Accounts in use, by account id.
#[derive(Default)]
pub struct Accounts {
    /// Each account with the Retry-After slot its HTTP client writes (the
    /// client lives as long as the account, so the slot must too).
    cache: tokio::sync::Mutex<HashMap<AccountId, (Account, RetryAfterSlot)>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    /// The account of `issuer`, from the cache, the stored key, or created,
    /// with the slot where its HTTP client records the CA's Retry-After.
    /// Accounts are kept in `ctx.store`; their HTTP clients count into
    /// `ctx.metrics` and date Retry-After by `ctx.clock`.
    pub async fn get(
        &self,
        ctx: &AcmeContext,
        issuer: &AcmeIssuer,
    ) -> Result<(Account, RetryAfterSlot), Error> {
        let id = issuer.account_id()?;
        // Held across creation: two orders of one issuer never create two
        // accounts or race on the stored key.
        let mut cache = self.cache.lock().await;
        if let Some((account, slot)) = cache.get(&id) {
            return Ok((account.clone(), slot.clone()));
        }
        let slot = RetryAfterSlot::default();
        let account = open_or_create(ctx, &id, issuer, &slot)
            .await
            .map_err(|e| super::order::with_retry_after(e, &slot))?;
        cache.insert(id, (account.clone(), slot.clone()));
        Ok((account, slot))
    }

    /// Forgets the cached account of `issuer` (the CA no longer knows it).
    pub async fn forget(&self, issuer: &AcmeIssuer) {
        if let Ok(id) = issuer.account_id() {
            self.cache.lock().await.remove(&id);
        }
    }
}

async fn open_or_create(
    ctx: &AcmeContext,
    id: &AccountId,
    issuer: &AcmeIssuer,
    retry_after: &RetryAfterSlot,
) -> Result<Account, Error> {
    let store = ctx.store.as_ref();
    let http = || -> Result<Box<AcmeHttp>, Error> {
        Ok(Box::new(AcmeHttp::new(
            issuer.ca_bundle_pem.as_deref(),
            retry_after.clone(),
            ctx.metrics.clone(),
            ctx.clock.clone(),
        )?))
    };
    let stored = match &issuer.account_key_pem {
        Some(pem) => Some(pem.clone()),
        None => store
            .account_key(id)
            .await
            .map_err(|source| Error::StoreAccountKey {
                account: Box::new(id.clone()),
                source,
            })?,
    };
    if let Some(pem) = stored {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::AccountKey {
                account: Box::new(id.clone()),
                problem: AccountKeyProblem::NotPkcs8Pem(e),
            })?;
        let key =
            instant_acme::Key::from_pkcs8_der(der.clone_key()).map_err(|e| Error::AccountKey {
                account: Box::new(id.clone()),
                problem: AccountKeyProblem::Unusable(e),
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
    if issuer.eab.is_none() && issuer.account_key_pem.is_none() {
        // The key is stored before the CA hears of it: a process stopped
        // between the two leaves a key the next one registers (the CA
        // returns the account of a known key), never an account at the CA
        // whose key nobody kept.
        let (key, der) = instant_acme::Key::generate_pkcs8()
            .map_err(|e| Error::from_acme(super::Phase::Account, e))?;
        let pem = pkcs8_pem(der.secret_pkcs8_der());
        store
            .put_account_key(id, &pem)
            .await
            .map_err(|source| Error::StoreAccountKey {
                account: Box::new(id.clone()),
                source,
            })?;
        let (account, _) = Account::builder_with_http(http()?)
            .create_from_key((key, PrivateKeyDer::Pkcs8(der)), issuer.server.clone())
            .await
            .map_err(|e| Error::from_acme(super::Phase::Account, e))?;
        if !contacts.is_empty() {
            if let Err(error) = account.update_contacts(&contacts).await {
                tracing::warn!(server = %issuer.server, %error, "ACME account created without its contact address");
            }
        }
        tracing::info!(server = %issuer.server, account = %id, "ACME account created");
        return Ok(account);
    }
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
    store
        .put_account_key(id, &pem)
        .await
        .map_err(|source| Error::StoreAccountKey {
            account: Box::new(id.clone()),
            source,
        })?;
    tracing::info!(server = %issuer.server, account = %id, "ACME account created");
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
    fn account_id_is_the_key_secret_on_the_server() {
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
        let a = issuer.account_id().expect("valid");
        assert_eq!(a.secret().to_string(), "web/le-account");
        assert_eq!(a.server(), "https://a.test/dir");
        issuer.server = "https://b.test/dir".into();
        assert_ne!(issuer.account_id().expect("valid"), a);
        issuer.account_secret = "Not/A/Name".into();
        assert!(matches!(
            issuer.account_id(),
            Err(Error::InvalidIssuer { .. })
        ));
    }
}
