//! The `serve` runtime: shared state ([`Shared`]), reloading (a snapshot
//! from the [`source`] — the configuration directory or the API server —
//! compiled by [`Compiler`] on the [`crate::control_thread`], swapped in, sockets
//! reconciled), the main loop reacting to source changes and signals
//! ([`serve`]), and `portcullis check` ([`check`]).
//!
//! Gateway API semantics are `crate::compile`'s; sockets are
//! `crate::server`'s; this module wires them together.

pub mod admin;
pub mod certs;
pub mod check;
mod compiler;
pub mod limits;
pub mod logging;
pub mod refused;
pub mod report;
pub mod source;

use crate::compile::{CompileOptions, Compiled};
use crate::control_thread::ControlThread;
use crate::dataplane::Dataplane;
use crate::server::shutdown::{Event, Signals};
use crate::server::{ConnContext, Sockets};
use arc_swap::ArcSwap;
pub use compiler::{Compiler, Reloaded};
use report::{Counts, Report};
use source::{DirSource, Source};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Why `serve` could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory could not be created.
    #[error("cannot create state directory {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The admin address could not be bound.
    #[error("cannot bind admin address {addr}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The source could not give a snapshot.
    #[error("cannot load configuration")]
    Source(#[source] source::Error),
    /// The compile panicked (the compiler starts afresh for the next).
    #[error("configuration reload task failed")]
    ReloadTask(#[source] crate::control_thread::Gone),
    /// The control thread could not be started.
    #[error("cannot start the control thread")]
    ControlThread(#[source] std::io::Error),
    /// The local CA could not be loaded or created.
    #[error("cannot load the local CA")]
    LocalCa(#[source] crate::issuer::Error),
    /// The certificate manager could not start.
    #[error("cannot start the certificate manager")]
    Issuer(#[source] crate::issuer::manager::ManagerError),
    /// Kubernetes mode could not start.
    #[error("cannot start Kubernetes mode")]
    Cluster(#[source] crate::cluster::Error),
}

/// What `portcullis serve` is told on the command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Directory of manifests.
    pub config_dir: PathBuf,
    /// Directory for state kept across restarts (created if missing).
    pub state_dir: PathBuf,
    /// Where the admin endpoint listens.
    pub admin_addr: SocketAddr,
    /// Compile settings (controller name, listen address, port offset).
    pub compile: CompileOptions,
    /// Most concurrent client connections across all sockets.
    pub max_connections: usize,
    /// How long in-flight connections may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// How long a client may take to send its ClientHello, and then to
    /// finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Also export certificates under cert-manager's metric names.
    pub metrics_cert_manager_compat: bool,
    /// Kubernetes mode, when set: objects come from the API server instead
    /// of `config_dir`.
    pub kubernetes: Option<crate::cluster::ClusterOptions>,
}

/// State shared by the proxy, the TLS resolver and the admin endpoint.
#[derive(Debug)]
pub struct Shared {
    /// The dataplane being served, swapped whole on each reload.
    pub dataplane: Arc<ArcSwap<Dataplane>>,
    /// What `/status` reports.
    pub report: ArcSwap<Report>,
    /// Every metric `/metrics` serves.
    pub metrics: Arc<crate::metrics::Metrics>,
    ready: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

impl Shared {
    /// An empty dataplane, an empty report, not ready.
    pub fn new() -> Self {
        Self {
            dataplane: Arc::new(ArcSwap::from_pointee(Dataplane::default())),
            report: ArcSwap::from_pointee(Report::default()),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether a configuration has been programmed and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the first configuration programmed.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the process as going away (readiness fails while draining).
    pub fn mark_stopping(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often sockets that failed to bind are tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// The serve loop's moving parts.
struct Runtime {
    shared: Arc<Shared>,
    sockets: Sockets,
    source: Source,
    /// `None` only while a compile runs on the control thread.
    compiler: Option<Compiler>,
    /// Where compiles run and replaced dataplanes are freed.
    control: ControlThread,
    /// For a fresh compiler when a compile panicked.
    compile_options: CompileOptions,
    generation: u64,
    /// The issuer's input (each reload) and its per-certificate report.
    issuer: Option<IssuerLink>,
    /// Kubernetes mode: what the leader's writer gets after each reload,
    /// and the last snapshot sent (re-sent with new certificate conditions
    /// when the issuer's report changes).
    controller: Option<watch::Sender<Option<crate::cluster::controller::Input>>>,
    last_controller_input: Option<crate::cluster::controller::Input>,
    /// Kubernetes mode: the configuration stamp of the last snapshot
    /// compiled; a snapshot with the same stamp brought only new status.
    last_config_stamp: Option<u64>,
    /// What compile refused at the last reload (logged when it changes).
    refused: refused::RefusedLog,
    /// An address a Gateway names turned bindable or stopped being so: the
    /// next snapshot is compiled even if only its status is new.
    bindability_moved: bool,
}

/// The runtime's side of the certificate manager: standalone, the manager
/// itself; Kubernetes mode, whichever manager the Lease holder runs.
struct IssuerLink {
    input: watch::Sender<Option<crate::issuer::manager::Input>>,
    certificates: watch::Receiver<Arc<Vec<crate::issuer::status::CertStatus>>>,
}

impl Runtime {
    /// Takes a snapshot from the source, compiles it, swaps the dataplane
    /// in and reconciles sockets. A snapshot that cannot be taken keeps the
    /// current configuration and is returned.
    async fn apply(&mut self) -> Result<(), Error> {
        let Some(mut compiler) = self.compiler.take() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let loaded = match self.source.load().await {
            Ok(l) => l,
            Err(e) => {
                self.compiler = Some(compiler);
                return Err(Error::Source(e));
            }
        };
        let forced = std::mem::take(&mut self.bindability_moved);
        if !forced && !compiler.addresses_moved(&loaded) && self.only_status_changed(&loaded) {
            self.compiler = Some(compiler);
            return Ok(());
        }
        let config_stamp = loaded.config_stamp;
        let compiled = self
            .control
            .run(move || {
                let reloaded = compiler.compile(loaded);
                (compiler, reloaded)
            })
            .await;
        let (compiler, reloaded) = match compiled {
            Ok(done) => done,
            Err(gone) => {
                // The panicking compile took the compiler (its certificate
                // cache, pool assignments) with it; the next starts afresh.
                self.compiler = Some(Compiler::new(self.compile_options.clone()));
                return Err(Error::ReloadTask(gone));
            }
        };
        self.compiler = Some(compiler);
        self.last_config_stamp = config_stamp;
        for p in &reloaded.problems {
            p.log();
        }
        if reloaded.live.is_some() {
            let refused = reloaded
                .problems
                .iter()
                .filter(|p| matches!(p, source::Problem::Object(_)))
                .count();
            self.shared.metrics.cluster().set_refused(refused);
        }
        let Compiled {
            dataplane, status, ..
        } = reloaded.compiled;
        for r in self.refused.changed(&status) {
            r.log();
        }
        let counts = Counts::of(&dataplane, &status);
        let dataplane = Arc::new(dataplane);
        self.shared.metrics.publish(&dataplane);
        // The previous snapshot is freed off the async workers (at 10k
        // listeners dropping it takes tens of milliseconds), on the thread
        // whose arena it was built in.
        let previous = self.shared.dataplane.swap(dataplane.clone());
        self.control.drop_later(previous);
        let bind_errors = self.sockets.reconcile(&dataplane).await;
        self.generation += 1;
        tracing::info!(
            generation = self.generation,
            objects = counts.objects,
            binds = counts.binds,
            listeners = counts.listeners,
            routes = counts.routes,
            problems = reloaded.problems.len(),
            bind_errors = bind_errors.len(),
            "configuration programmed"
        );
        self.shared.metrics.reloaded(
            started.elapsed(),
            &status,
            reloaded.problems.len(),
            bind_errors.len(),
            unix_now(),
        );
        // One copy of the compiled status for the issuer, the status writer
        // and `/status` (at 5,000 routes a copy is about 9 MiB); the
        // certificates' conditions are added where each is read.
        let compiled_status = Arc::new(status);
        if let Some(issuer) = &self.issuer {
            issuer
                .input
                .send_replace(Some(crate::issuer::manager::Input {
                    resources: reloaded.resources.clone(),
                    status: compiled_status.clone(),
                }));
        }
        let certificates = self
            .issuer
            .as_ref()
            .map(|i| i.certificates.borrow().clone())
            .unwrap_or_default();
        self.shared
            .metrics
            .set_managed(managed_metrics(&certificates));
        if let Some(live) = &reloaded.live {
            self.last_controller_input = Some(crate::cluster::controller::Input {
                resources: reloaded.resources.clone(),
                status: compiled_status.clone(),
                live: live.clone(),
                certificates: certificates.clone(),
            });
            self.send_to_controller(&certificates);
        }
        self.shared.report.store(Arc::new(Report {
            certificates,
            status: compiled_status,
            problems: reloaded
                .problems
                .iter()
                .map(source::Problem::report)
                .collect(),
            ignored: reloaded.ignored,
            bind_errors,
            generation: self.generation,
            last_reload: unix_now(),
        }));
        Ok(())
    }

    /// Whether `loaded` is the configuration last compiled with only the
    /// live objects' status changed (the watch bringing back the leader's
    /// own status writes, or another controller's). Then the status writer
    /// gets the new live objects and nothing is compiled: at 5,000 routes a
    /// compile takes about a second, and a real change arriving behind one
    /// waited for it.
    fn only_status_changed(&mut self, loaded: &source::Loaded) -> bool {
        let (Some(stamp), Some(live)) = (loaded.config_stamp, &loaded.live) else {
            return false;
        };
        if self.last_config_stamp != Some(stamp) {
            return false;
        }
        let Some(input) = &mut self.last_controller_input else {
            return false;
        };
        input.live = live.clone();
        let certificates = self
            .issuer
            .as_ref()
            .map(|i| i.certificates.borrow().clone())
            .unwrap_or_default();
        self.send_to_controller(&certificates);
        tracing::debug!("only status changed; not compiling again");
        true
    }

    /// Gives the leader's writer the last snapshot with `certificates`
    /// (the listeners' `CertificateReady` conditions).
    fn send_to_controller(&self, certificates: &Arc<Vec<crate::issuer::status::CertStatus>>) {
        let (Some(controller), Some(input)) = (&self.controller, &self.last_controller_input)
        else {
            return;
        };
        controller.send_replace(Some(crate::cluster::controller::Input {
            certificates: certificates.clone(),
            ..input.clone()
        }));
    }

    /// Whether some socket of the current configuration is not bound.
    fn has_bind_errors(&self) -> bool {
        !self.shared.report.load().bind_errors.is_empty()
    }

    /// Whether a Gateway names an address this node could not bind at the
    /// last compile ([`Compiler::waits_for_addresses`]).
    fn waits_for_addresses(&self) -> bool {
        self.compiler
            .as_ref()
            .is_some_and(Compiler::waits_for_addresses)
    }

    /// Whether such an address turned bindable (or another stopped being
    /// so) since ([`Compiler::bindability_changed`]).
    fn bindability_changed(&self) -> bool {
        self.compiler
            .as_ref()
            .is_some_and(Compiler::bindability_changed)
    }

    /// Tries again to bind the sockets that failed, without reloading.
    async fn retry_binds(&mut self) {
        let dataplane = self.shared.dataplane.load_full();
        let bind_errors = self.sockets.reconcile(&dataplane).await;
        let report = self.shared.report.load_full();
        if bind_errors != report.bind_errors {
            tracing::info!(bind_errors = bind_errors.len(), "retried binding sockets");
            self.shared.metrics.set_bind_errors(bind_errors.len());
            let mut report = Report::clone(&report);
            report.bind_errors = bind_errors;
            self.shared.report.store(Arc::new(report));
        }
    }
}

/// Runs `portcullis serve` until SIGTERM or SIGINT, then drains connections
/// for at most the grace period.
pub async fn serve(options: ServeOptions) -> Result<(), Error> {
    let mut signals = Signals::register().map_err(Error::Signals)?;
    let admin = tokio::net::TcpListener::bind(options.admin_addr)
        .await
        .map_err(|source| Error::AdminBind {
            addr: options.admin_addr,
            source,
        })?;
    tracing::info!(addr = %options.admin_addr, "admin listening");
    let shared = Arc::new(Shared::new());
    shared
        .metrics
        .set_cert_manager_compat(options.metrics_cert_manager_compat);
    shared.metrics.set_connection_limit(options.max_connections);
    let (admin_stop, admin_stop_rx) = watch::channel(());
    let admin_task = tokio::spawn(admin::serve(admin, shared.clone(), admin_stop_rx));

    let proxy = crate::proxy::Proxy::with_metrics(shared.dataplane.clone(), shared.metrics.clone());
    let mut ctx = ConnContext::new(shared.dataplane.clone(), proxy, options.max_connections);
    ctx.handshake_timeout = options.handshake_timeout;
    ctx.metrics = shared.metrics.clone();

    let control = ControlThread::spawn().map_err(Error::ControlThread)?;
    // Kubernetes mode: set while the process runs, dropped at shutdown to
    // release the Lease.
    let mut cluster_tasks = None;
    let (source, issuer, controller) = match &options.kubernetes {
        None => {
            std::fs::create_dir_all(&options.state_dir).map_err(|source| Error::StateDir {
                path: options.state_dir.clone(),
                source,
            })?;
            let manager = start_issuer(&options, &shared).await?;
            let (input, input_rx) = watch::channel(None);
            // Standalone mode issues for as long as it serves: nothing
            // stops it.
            let stop = tokio_util::sync::CancellationToken::new();
            tokio::spawn(manager.clone().run(input_rx, stop));
            let link = IssuerLink {
                input,
                certificates: manager.certificate_changes(),
            };
            let source = DirSource::new(options.config_dir.clone()).with_issuer(manager);
            (Source::Dir(Box::new(source)), Some(link), None)
        }
        Some(cluster) => {
            let client = cluster.client().await.map_err(Error::Cluster)?;
            let mut source = crate::cluster::source::ClusterSource::start(
                client,
                &cluster.namespace,
                shared.metrics.clone(),
            );
            tracing::info!("waiting for every watch to list its kind");
            tokio::select! {
                () = source.wait_synced() => tracing::info!("cluster state listed"),
                event = signals.next() => if let Event::Stop(stop) = event {
                    tracing::info!(signal = ?stop, "stopped before the cluster was listed");
                    drop(admin_stop);
                    let _ = admin_task.await;
                    return Ok(());
                },
            }
            let (leading_tx, leading) = watch::channel(false);
            let (stop_tx, stop) = watch::channel(false);
            let elector = crate::cluster::lease::Elector::new(
                source.client(),
                &cluster.namespace,
                &cluster.lease_name,
                &cluster.identity,
                cluster.lease,
            );
            let election = tokio::spawn(elector.run(leading_tx, stop));
            let (input, input_rx) = watch::channel(None);
            let controller = crate::cluster::controller::Controller::new(
                source.client(),
                cluster,
                &options.compile,
                shared.metrics.clone(),
            );
            let metrics = shared.metrics.clone();
            let mut leads = leading.clone();
            let lease = cluster.lease_name.clone();
            tokio::spawn(async move {
                loop {
                    metrics
                        .cluster()
                        .set_leader(&lease, *leads.borrow_and_update());
                    if leads.changed().await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(controller.run(input_rx, leading.clone(), control.clone()));
            // Every replica answers the challenges the leader publishes.
            tokio::spawn(crate::cluster::challenges::watch_challenges(
                source.client(),
                cluster.namespace.clone(),
                options.compile.challenges.clone(),
            ));
            let (issuer_input, issuer_input_rx) = watch::channel(None);
            let (report, certificates) = watch::channel(Arc::new(Vec::new()));
            let issuing = crate::cluster::issuing::Context {
                client: source.client(),
                namespace: cluster.namespace.clone(),
                board: options.compile.challenges.clone(),
                secrets: source.secret_cache(),
                metrics: shared.metrics.clone(),
                clock: Arc::new(crate::issuer::SystemClock),
            };
            tokio::spawn(crate::cluster::issuing::supervise(
                issuing,
                issuer_input_rx,
                leading,
                report,
            ));
            cluster_tasks = Some((stop_tx, election));
            let link = IssuerLink {
                input: issuer_input,
                certificates,
            };
            (Source::Cluster(Box::new(source)), Some(link), Some(input))
        }
    };
    let mut certificate_changes = issuer.as_ref().map(|i| i.certificates.clone());
    let mut runtime = Runtime {
        shared: shared.clone(),
        sockets: Sockets::new(Arc::new(ctx)),
        source,
        compiler: Some(Compiler::new(options.compile.clone())),
        control,
        compile_options: options.compile.clone(),
        generation: 0,
        issuer,
        controller,
        last_controller_input: None,
        last_config_stamp: None,
        refused: refused::RefusedLog::default(),
        bindability_moved: false,
    };
    runtime.apply().await?;
    if let (Some(changes), Source::Dir(dir)) = (&mut certificate_changes, &mut runtime.source) {
        // Give the issuer's first pass (local issuers answer in
        // milliseconds) a moment, so listeners it fills are served from
        // the start.
        let _ = tokio::time::timeout(FIRST_ISSUE_WAIT, changes.changed()).await;
        if dir.take_stored_change() {
            runtime.apply().await?;
        }
    }
    shared.mark_ready();

    let mut bind_retry = tokio::time::interval(BIND_RETRY);
    bind_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = loop {
        let has_bind_errors = runtime.has_bind_errors();
        let waits_for_addresses = runtime.waits_for_addresses();
        tokio::select! {
            _ = bind_retry.tick(), if has_bind_errors || waits_for_addresses => {
                if has_bind_errors {
                    runtime.retry_binds().await;
                }
                // A Gateway's unbindable address may have turned local.
                if !(waits_for_addresses && runtime.bindability_changed()) {
                    continue;
                }
                runtime.bindability_moved = true;
            }
            () = runtime.source.changed() => {}
            Some(certificates) = certificates_changed(&mut certificate_changes) => {
                shared.metrics.set_managed(managed_metrics(&certificates));
                runtime.send_to_controller(&certificates);
                shared.report.rcu(|r| {
                    let mut r = Report::clone(r);
                    r.certificates = certificates.clone();
                    r
                });
                continue;
            }
            event = signals.next() => match event {
                Event::Stop(stop) => break stop,
                Event::Reload => {
                    tracing::info!("SIGHUP: reloading configuration");
                    runtime.last_config_stamp = None;
                    if let Source::Dir(d) = &mut runtime.source {
                        d.mark_dir_changed();
                    }
                }
            },
        }
        let started = std::time::Instant::now();
        if let Err(error) = runtime.apply().await {
            shared.metrics.reload_failed(started.elapsed());
            tracing::error!(error = %ErrorChain(&error), "reload failed; keeping the current configuration");
        }
    };
    tracing::info!(signal = ?stop, "shutting down");
    shared.mark_stopping();
    if let Some((stop, election)) = cluster_tasks {
        // Stop leading first and release the Lease, so another replica
        // takes over while this one drains.
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    }
    let drained = runtime.sockets.shutdown(options.shutdown_grace).await;
    drop(admin_stop);
    let _ = admin_task.await;
    tracing::info!(drained, "stopped");
    Ok(())
}

/// The issuer's next per-certificate report; never resolves without an
/// issuer.
async fn certificates_changed(
    changes: &mut Option<watch::Receiver<Arc<Vec<crate::issuer::status::CertStatus>>>>,
) -> Option<Arc<Vec<crate::issuer::status::CertStatus>>> {
    match changes {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// How long start-up waits for the issuer's first pass before serving.
const FIRST_ISSUE_WAIT: Duration = Duration::from_secs(10);

/// Loads the local CA and the certificate manager's records from the state
/// directory's store, and builds the manager (challenges go on the local
/// board).
async fn start_issuer(
    options: &ServeOptions,
    shared: &Arc<Shared>,
) -> Result<Arc<crate::issuer::manager::Manager>, Error> {
    let store: Arc<dyn crate::store::Store> =
        Arc::new(crate::store::DirStore::new(&options.state_dir));
    let clock: Arc<dyn crate::issuer::Clock> = Arc::new(crate::issuer::SystemClock);
    let local_ca = crate::issuer::LocalCa::load_or_create(store.as_ref(), clock.now())
        .await
        .map_err(Error::LocalCa)?;
    let publisher =
        crate::issuer::challenges::LocalPublisher::new(options.compile.challenges.clone());
    let mut acme = crate::issuer::acme::AcmeContext::new(store.clone(), Arc::new(publisher));
    acme.metrics = Some(shared.metrics.clone());
    acme.clock = clock.clone();
    let manager = crate::issuer::manager::Manager::new(
        store,
        Arc::new(local_ca),
        Some(Arc::new(acme)),
        clock,
    );
    manager.load_records().await.map_err(Error::Issuer)?;
    Ok(Arc::new(manager))
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// The managed-certificate series of the metrics, from the issuer's view of
/// each certificate (Unix seconds throughout).
fn managed_metrics(
    certificates: &[crate::issuer::status::CertStatus],
) -> Vec<crate::metrics::ManagedCertificate> {
    let secs = |t: Option<u64>| t.and_then(|t| i64::try_from(t).ok());
    certificates
        .iter()
        .map(|c| {
            let (namespace, secret) = c.secret.split_once('/').unwrap_or(("", c.secret.as_str()));
            crate::metrics::ManagedCertificate {
                namespace: namespace.to_string(),
                secret: secret.to_string(),
                issuer_kind: c.issuer_kind.clone(),
                issuer_name: c.issuer_name.clone(),
                not_before: secs(c.not_before),
                not_after: secs(c.not_after),
                renewal_time: secs(c.renewal_time),
                ready: Some(c.ready),
                ari_window: c.ari_window.and_then(|(start, end)| {
                    Some((i64::try_from(start).ok()?, i64::try_from(end).ok()?))
                }),
                profile: c.profile.clone(),
                failed_attempts: c.attempts,
                next_retry: secs(c.next_attempt),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::managed_metrics;
    use crate::issuer::status::CertStatus;

    #[test]
    fn managed_metrics_carry_the_issuer_state_of_each_certificate() {
        let cert = CertStatus {
            secret: "apps/web-tls".into(),
            dns_names: vec!["a.test".into()],
            issuer_kind: "Issuer".into(),
            issuer_name: "apps/le".into(),
            listeners: vec![],
            not_before: Some(100),
            not_after: Some(1_000),
            serial: Some("0a".into()),
            renewal_time: Some(700),
            ready: false,
            status: "Waiting".into(),
            reason: crate::issuer::plan::Why::NotDue,
            attempts: 3,
            last_error: Some("rate limited".into()),
            next_attempt: Some(800),
            problems: vec![],
            ari_window: Some((650, 750)),
            profile: Some("shortlived".into()),
        };
        let m = managed_metrics(&[cert]);
        assert_eq!(m.len(), 1);
        let m = &m[0];
        assert_eq!(
            (m.namespace.as_str(), m.secret.as_str()),
            ("apps", "web-tls")
        );
        assert_eq!(
            (m.not_before, m.not_after, m.renewal_time),
            (Some(100), Some(1_000), Some(700))
        );
        assert_eq!(m.ready, Some(false));
        assert_eq!(m.ari_window, Some((650, 750)));
        assert_eq!(m.profile.as_deref(), Some("shortlived"));
        assert_eq!((m.failed_attempts, m.next_retry), (3, Some(800)));
    }
}
