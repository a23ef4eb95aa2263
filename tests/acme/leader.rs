//! Managers as leaders come and go: a manager over the rig's state
//! directory (its Store) fed the binary's manifests, run until its stop
//! token is cancelled, and a challenge publisher that never confirms (a
//! leader whose published challenge has not been seen yet when it loses
//! the Lease).

use super::rig::{binary_manifests, Rig};
use anyhow::Result;
use portcullis::compile::{compile, CompileOptions};
use portcullis::issuer::acme::AcmeContext;
use portcullis::issuer::challenges::{self, Challenge, ChallengePublisher, PublishedChallenge};
use portcullis::issuer::manager::{Input, Manager};
use portcullis::issuer::LocalCa;
use portcullis::store::{DirStore, Store};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// A publisher whose challenges never become answerable: `publish` says it
/// was reached, then waits forever.
#[derive(Debug, Default)]
pub struct Stalled {
    /// Notified when a challenge is being published.
    pub reached: Notify,
}

#[async_trait::async_trait]
impl ChallengePublisher for Stalled {
    async fn publish(
        &self,
        _challenge: &Challenge,
    ) -> Result<Box<dyn PublishedChallenge>, challenges::Error> {
        self.reached.notify_one();
        std::future::pending().await
    }
}

/// A running manager and the token that stops it.
pub struct Leader {
    /// The manager.
    pub manager: Arc<Manager>,
    /// Cancelled when the Lease is lost.
    pub stop: CancellationToken,
    /// The run; ends after `stop`.
    pub run: tokio::task::JoinHandle<()>,
    _input: watch::Sender<Option<Input>>,
}

impl Leader {
    /// Starts a manager over the rig's state directory publishing through
    /// `publisher`, serving the binary's manifests for `host`.
    pub async fn start(
        rig: &Rig,
        host: &str,
        publisher: Arc<dyn ChallengePublisher>,
    ) -> Result<Leader> {
        let store: Arc<dyn Store> = Arc::new(DirStore::new(rig.state.path()));
        let local_ca = LocalCa::load_or_create(store.as_ref(), SystemTime::now()).await?;
        let mut ctx = AcmeContext::new(store.clone(), publisher);
        ctx.timeouts.validation = Duration::from_secs(60);
        let manager = Arc::new(Manager::new(store, Arc::new(local_ca), Some(Arc::new(ctx))));
        let resources = super::resources(&binary_manifests(rig, host, ""))?;
        let status = compile(&resources, &CompileOptions::default()).status;
        let (input, rx) = watch::channel(Some(Input {
            resources: Arc::new(resources),
            status: Arc::new(status),
        }));
        let stop = CancellationToken::new();
        let run = tokio::spawn(manager.clone().run(rx, stop.clone()));
        Ok(Leader {
            manager,
            stop,
            run,
            _input: input,
        })
    }
}
