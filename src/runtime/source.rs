//! Where configuration comes from: a directory of manifests
//! ([`DirSource`], standalone mode) or the API server
//! ([`crate::cluster::source::ClusterSource`], Kubernetes mode). Either
//! gives a [`Loaded`] snapshot of [`Resources`] and says when it changed;
//! everything after that (the issuer's references, compile, the swap,
//! sockets, metrics, `/status`) is one code path in [`super`].

use super::report::ProblemReport;
use crate::cluster::cache::Live;
use crate::cluster::kinds::Watched;
use crate::cluster::source::ClusterSource;
use crate::model::load::{self, DirLoader, LoadProblem};
use crate::model::{ObjectKey, Resources};
use crate::store::{StoreKey, StoredCert};
use crate::watch::DirWatch;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// Why a snapshot could not be taken (the current configuration stays).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration directory could not be read.
    #[error("cannot load configuration")]
    Load(#[source] load::Error),
    /// The loading task panicked.
    #[error("configuration load task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// One snapshot, before compile.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every object read.
    pub resources: Resources,
    /// What could not be read, for the log and `/status`.
    pub problems: Vec<Problem>,
    /// Documents of kinds portcullis does not read.
    pub ignored: Vec<String>,
    /// Certificates the issuer stored outside the source (standalone: the
    /// state directory); they become Secrets before compile. Empty in
    /// Kubernetes mode, where issued Secrets arrive through the source.
    pub stored: BTreeMap<StoreKey, StoredCert>,
    /// Kubernetes mode: what status writing needs of each live object.
    pub live: Option<Arc<BTreeMap<(Watched, ObjectKey), Live>>>,
    /// Kubernetes mode: equal for two loads of the same configuration
    /// ([`crate::cluster::source::Snapshot::config_stamp`]).
    pub config_stamp: Option<u64>,
}

/// Something a load could not read.
#[derive(Debug, Clone)]
pub enum Problem {
    /// A manifest file (standalone).
    File(LoadProblem),
    /// An object the API server accepted but portcullis refuses.
    Object(crate::cluster::source::Refusal),
}

impl Problem {
    /// Logs the problem: an error when nothing of it is served, else a
    /// warning.
    pub fn log(&self) {
        match self {
            Problem::File(p) => {
                let file = p.path.display();
                if p.lost_content() {
                    tracing::error!(%file, error = %p.error, "{}", p.outcome());
                } else {
                    tracing::warn!(%file, error = %p.error, "{}", p.outcome());
                }
            }
            Problem::Object(r) => {
                let kind = r.kind.kind();
                if r.kept_previous {
                    tracing::warn!(kind, object = %r.key, error = %r.message, "object refused; its previous version is still served");
                } else {
                    tracing::error!(kind, object = %r.key, error = %r.message, "object refused; it is not served");
                }
            }
        }
    }

    /// The `/status` entry.
    pub fn report(&self) -> ProblemReport {
        match self {
            Problem::File(p) => ProblemReport::from(p),
            Problem::Object(r) => ProblemReport {
                file: None,
                object: Some(format!("{} {}", r.kind.kind(), r.key)),
                message: r.message.clone(),
                kept_previous: r.kept_previous,
            },
        }
    }
}

/// Standalone mode's source: the configuration directory, watched, plus the
/// certificates the issuer keeps in the state directory.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
    loader: Option<DirLoader>,
    watch: DirWatch,
    /// Bumped by the issuer whenever it stored a certificate.
    stored_changes: Option<watch::Receiver<u64>>,
    issuer: Option<Arc<crate::issuer::manager::Manager>>,
    /// The directory's last load, reused when only a certificate changed.
    last: Option<load::Loaded>,
    dir_changed: bool,
}

impl DirSource {
    /// Watches `dir`. Start watching before the first load so no change
    /// made during it is missed.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            watch: DirWatch::new(dir.clone()),
            dir,
            loader: Some(DirLoader::new()),
            stored_changes: None,
            issuer: None,
            last: None,
            dir_changed: true,
        }
    }

    /// Adds the certificates `issuer` stores to every snapshot, and takes
    /// a new snapshot when it stores one (without reading the directory
    /// again).
    pub fn with_issuer(mut self, issuer: Arc<crate::issuer::manager::Manager>) -> Self {
        self.stored_changes = Some(issuer.stored_changes());
        self.issuer = Some(issuer);
        self
    }

    /// Waits until the directory changed or a certificate was stored.
    /// Cancel-safe.
    pub async fn changed(&mut self) {
        let stored = async {
            match &mut self.stored_changes {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            trigger = self.watch.next() => {
                tracing::debug!(?trigger, "configuration changed");
                self.dir_changed = true;
            }
            () = stored => tracing::debug!("certificate stored"),
        }
    }

    /// Whether the issuer stored a certificate since the last call (the
    /// change is consumed).
    pub fn take_stored_change(&mut self) -> bool {
        match &mut self.stored_changes {
            Some(rx) if rx.has_changed().unwrap_or(false) => {
                rx.mark_unchanged();
                true
            }
            _ => false,
        }
    }

    /// Forces the next load to read the directory (SIGHUP).
    pub fn mark_dir_changed(&mut self) {
        self.dir_changed = true;
    }

    /// Reads the directory (only if it changed since the last load) and the
    /// stored certificates, on a blocking thread.
    pub async fn load(&mut self) -> Result<Loaded, Error> {
        let Some(mut loader) = self.loader.take() else {
            return Err(Error::Load(load::Error::Read {
                path: self.dir.display().to_string(),
                message: "a load is already running".into(),
            }));
        };
        let dir = self.dir.clone();
        let reuse = (!self.dir_changed).then(|| self.last.clone()).flatten();
        let issuer = self.issuer.clone();
        let (loader, result) = tokio::task::spawn_blocking(move || {
            let loaded = match reuse {
                Some(l) => Ok(l),
                None => loader.load(&dir),
            };
            let result = loaded.map(|loaded| {
                let stored = issuer
                    .as_ref()
                    .map(|i| i.stored_for(&loaded.resources))
                    .unwrap_or_default();
                (loaded, stored)
            });
            (loader, result)
        })
        .await
        .map_err(Error::Task)?;
        self.loader = Some(loader);
        let (loaded, stored) = result.map_err(Error::Load)?;
        self.dir_changed = false;
        self.last = Some(loaded.clone());
        Ok(Loaded {
            resources: loaded.resources,
            problems: loaded.problems.into_iter().map(Problem::File).collect(),
            ignored: loaded.ignored,
            stored,
            live: None,
            config_stamp: None,
        })
    }
}

/// The source of the running mode.
#[derive(Debug)]
pub enum Source {
    /// Standalone: a directory of manifests.
    Dir(Box<DirSource>),
    /// Kubernetes: the API server.
    Cluster(Box<ClusterSource>),
}

impl Source {
    /// Waits until the source changed. Cancel-safe.
    pub async fn changed(&mut self) {
        match self {
            Source::Dir(d) => d.changed().await,
            Source::Cluster(c) => c.changed().await,
        }
    }

    /// Takes a snapshot.
    pub async fn load(&mut self) -> Result<Loaded, Error> {
        match self {
            Source::Dir(d) => d.load().await,
            Source::Cluster(c) => {
                let snapshot = c.load().await;
                Ok(Loaded {
                    resources: snapshot.resources,
                    problems: snapshot.refusals.into_iter().map(Problem::Object).collect(),
                    ignored: Vec::new(),
                    stored: BTreeMap::new(),
                    live: Some(Arc::new(snapshot.live)),
                    config_stamp: Some(snapshot.config_stamp),
                })
            }
        }
    }
}
