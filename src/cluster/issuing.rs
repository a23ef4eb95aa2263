//! The issuer in Kubernetes mode ([`supervise`]): while this replica holds
//! the Lease it runs a certificate [`Manager`] over the API server
//! ([`KubeStore`], [`KubePublisher`]); when it loses the Lease the manager
//! stops at once, every order it spawned with it, and the next leader
//! resumes from what the store holds (the pending order, the account key,
//! the records). A replica that does not lead issues nothing and reports no
//! certificates.

use super::challenges::KubePublisher;
use super::source::SecretCache;
use super::store::KubeStore;
use crate::issuer::acme::AcmeContext;
use crate::issuer::manager::{Input, Manager};
use crate::issuer::status::CertStatus;
use crate::issuer::{Clock, LocalCa};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How soon a leader that could not load the local CA tries again.
const RETRY: Duration = Duration::from_secs(5);

/// What the issuer works with.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// The controller namespace.
    pub namespace: String,
    /// This replica's challenge board (filled by the challenge watch).
    pub board: Arc<crate::issuer::challenges::ChallengeBoard>,
    /// The source's Secrets, read instead of the API where current.
    pub secrets: SecretCache,
    /// ACME metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where the issuer reads the time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Runs the issuer while `leading`, publishing its per-certificate report on
/// `report` (empty while not leading). Returns when `leading` closes.
pub async fn supervise(
    ctx: Context,
    input: watch::Receiver<Option<Input>>,
    mut leading: watch::Receiver<bool>,
    report: watch::Sender<Arc<Vec<CertStatus>>>,
) {
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        let store = Arc::new(KubeStore::new(
            ctx.client.clone(),
            &ctx.namespace,
            Some(ctx.secrets.clone()),
        ));
        let ca = tokio::select! {
            ca = LocalCa::load_or_create(store.as_ref(), ctx.clock.now()) => ca,
            _ = leading.wait_for(|l| !*l) => continue,
        };
        let ca = match ca {
            Ok(ca) => ca,
            Err(error) => {
                tracing::error!(error = %crate::issuer::ErrorChain(&error), "cannot load or create the local CA; issuing waits");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let publisher = KubePublisher::new(ctx.client.clone(), &ctx.namespace, ctx.board.clone());
        let mut acme = AcmeContext::new(store.clone(), Arc::new(publisher));
        acme.metrics = Some(ctx.metrics.clone());
        acme.clock = ctx.clock.clone();
        let manager = Arc::new(Manager::new(
            store,
            Arc::new(ca),
            Some(Arc::new(acme)),
            ctx.clock.clone(),
        ));
        let stop = CancellationToken::new();
        let mut reports = manager.certificate_changes();
        let run = tokio::spawn(manager.clone().run(input.clone(), stop.clone()));
        tracing::info!("issuing as leader");
        loop {
            tokio::select! {
                changed = reports.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    report.send_replace(reports.borrow_and_update().clone());
                }
                _ = leading.wait_for(|l| !*l) => break,
            }
        }
        stop.cancel();
        if let Err(error) = run.await {
            tracing::warn!(%error, "the issuer task ended abnormally");
        }
        report.send_replace(Arc::new(Vec::new()));
        tracing::info!("stopped issuing");
    }
}
