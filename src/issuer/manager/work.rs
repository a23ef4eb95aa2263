//! The manager's units of work: issuing with a local issuer (signed on the
//! blocking pool, stored through the Store), ACME orders and renewal-window
//! checks spawned into the run's task set, and storing an issued
//! certificate with the metadata the Store keeps beside it.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use super::{success_record, IssueError, Manager, Tasks};
use crate::issuer::acme::{self, AcmeIssuer};
use crate::issuer::ca_issuer::CaSigner;
use crate::issuer::demand::{Demand, IssuerRef};
use crate::issuer::inventory::Held;
use crate::issuer::plan::{renewal_time, window_stale, Action, Step};
use crate::issuer::{CertRequest, ErrorChain, Issued, DEFAULT_LEAF_VALIDITY};
use crate::model::Resources;
use crate::store::{CertMeta, StoreKey};

/// Marks a Secret as having an order in flight until dropped (the order
/// ended, was aborted with its run, or panicked).
struct InFlight {
    manager: Arc<Manager>,
    secret: StoreKey,
}

impl InFlight {
    fn new(manager: &Arc<Manager>, secret: &StoreKey) -> Self {
        manager
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(secret.clone());
        Self {
            manager: manager.clone(),
            secret: secret.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.manager
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.secret);
    }
}

impl Manager {
    /// Issues `req` with a local issuer (local CA, `selfSigned`, `ca`) and
    /// stores it. Keys are made and signed on the blocking pool.
    pub(super) async fn issue_local(
        self: &Arc<Self>,
        d: &Demand,
        req: CertRequest,
        resources: &Arc<Resources>,
    ) -> Result<Issued, IssueError> {
        let key = self.reusable_key(d).await;
        let (me, d2, resources) = (self.clone(), d.clone(), resources.clone());
        let issued = tokio::task::spawn_blocking(move || me.sign_local(&d2, &req, &resources, key))
            .await
            .unwrap_or_else(|e| Err(IssueError::SignTask(e)))?;
        self.store_issued(d, &issued).await?;
        Ok(issued)
    }

    /// Signs `req` with `d`'s local issuer, with `key` or a new one.
    /// Blocking (RSA key generation takes a while).
    fn sign_local(
        &self,
        d: &Demand,
        req: &CertRequest,
        resources: &Resources,
        key: Option<rcgen::KeyPair>,
    ) -> Result<Issued, IssueError> {
        let key = match key {
            Some(key) => key,
            None => d.key.generate().map_err(IssueError::Sign)?,
        };
        let now = self.clock.now();
        match &d.issuer {
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
                    .ok_or_else(|| IssueError::IssuerNotFound(issuer.clone()))?;
                if spec.self_signed.is_some() {
                    crate::issuer::self_signed::issue(req, key, now)
                } else if let Some(ca) = &spec.ca {
                    let ns = issuer.secret_namespace(resources);
                    let secret = resources.secret(ns, &ca.secret_name).ok_or_else(|| {
                        IssueError::CaSecretMissing {
                            namespace: ns.to_owned(),
                            name: ca.secret_name.clone(),
                        }
                    })?;
                    let (Some(crt), Some(k)) =
                        (secret.data.get("tls.crt"), secret.data.get("tls.key"))
                    else {
                        return Err(IssueError::CaSecretIncomplete {
                            namespace: ns.to_owned(),
                            name: ca.secret_name.clone(),
                        });
                    };
                    CaSigner::from_pem(crt, k).and_then(|ca| ca.issue(req, key, now))
                } else {
                    return Err(IssueError::NoIssuerKind(issuer.clone()));
                }
            }
        }
        .map_err(IssueError::Sign)
    }

    /// The stored key, when the demand does not rotate keys and the stored
    /// key has the wanted algorithm; otherwise `None` (a new key is made).
    async fn reusable_key(&self, d: &Demand) -> Option<rcgen::KeyPair> {
        if d.rotate_key {
            return None;
        }
        let stored = self.store.get_cert(&d.secret).await.ok()??;
        let key = rcgen::KeyPair::from_pem(&stored.key_pem).ok()?;
        let held = Held::parse(&d.secret, &stored).ok()?;
        (held.key == Some(d.key)).then_some(key)
    }

    /// Stores `issued` for `d`, with what the Store keeps beside it.
    async fn store_issued(&self, d: &Demand, issued: &Issued) -> Result<(), IssueError> {
        let now = self.clock.now();
        let held = Held::parse(&d.secret, &issued.cert).ok();
        let record = success_record(d, issued, held.as_ref(), now);
        let meta = CertMeta {
            issuer_kind: d.issuer.kind().to_owned(),
            issuer_name: d.issuer.name().to_owned(),
            dns_names: d.dns_names.clone(),
            not_after: held.as_ref().map(|h| h.not_after),
            renewal_time: held
                .as_ref()
                .map(|h| renewal_time(d, h, &record, now, self.seed)),
        };
        self.store
            .put_cert(&d.secret, &issued.cert, &meta)
            .await
            .map_err(IssueError::Store)
    }

    /// Starts an ACME order in the run's task set (bounded by the
    /// semaphore).
    pub(super) fn spawn_acme(
        self: &Arc<Self>,
        tasks: &mut Tasks,
        d: Demand,
        req: CertRequest,
        issuer: Result<AcmeIssuer, acme::Error>,
    ) {
        let in_flight = InFlight::new(self, &d.secret);
        let me = self.clone();
        tasks.spawn(async move {
            let result = match (&me.acme, issuer) {
                (None, _) => Err(IssueError::AcmeUnavailable),
                (_, Err(e)) => Err(IssueError::Acme(e)),
                (Some(ctx), Ok(issuer)) => {
                    let _permit = me.orders.clone().acquire_owned().await;
                    // `private-key-rotation: Never` keeps the stored key.
                    let key = me.reusable_key(&d).await;
                    match acme::issue_with_key(&issuer, ctx, &req, key).await {
                        Ok(issued) => match me.store_issued(&d, &issued).await {
                            Ok(()) => {
                                acme::order_stored(ctx.store.as_ref(), &d.secret).await;
                                Ok(issued)
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(IssueError::Acme(e)),
                    }
                }
            };
            if me.finish(&d, result) {
                me.stored.send_modify(|n| *n += 1);
            }
            // No longer in flight before the loop is woken, so its next
            // pass plans this Secret again.
            drop(in_flight);
            me.persist().await;
            me.finished.notify_one();
        });
    }

    /// Asks the ACME CA again for the renewal window of every held ACME
    /// certificate that is not being renewed and whose window is stale
    /// ([`window_stale`]), in the run's task set; a changed window wakes
    /// the loop so the plan sees it.
    pub(super) fn refresh_windows(
        self: &Arc<Self>,
        tasks: &mut Tasks,
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
            if !window_stale(h, &record, now) || self.in_flight_contains(&d.secret) {
                continue;
            }
            let Some(Ok(issuer)) = self.acme_issuer(d, resources) else {
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
            tasks.spawn(async move {
                let Ok(Some(stored)) = me.store.get_cert(&secret).await else {
                    return;
                };
                match acme::renewal_window(&issuer, &ctx, &stored.cert_chain_pem).await {
                    Ok(window) => {
                        let mut changed = false;
                        me.update_record(&secret, |r| {
                            changed = r.renewal_window != window;
                            r.renewal_window = window;
                        });
                        if changed {
                            tracing::info!(%secret, ?window, "ACME renewal window changed");
                            me.persist().await;
                            me.finished.notify_one();
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%secret, error = %ErrorChain(&error), "renewal information unavailable")
                    }
                }
            });
        }
    }
}
