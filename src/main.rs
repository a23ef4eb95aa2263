//! The `portcullis` command: parses the command line, sets up logging and the
//! tokio runtime, and hands over to `portcullis::runtime`.
//!
//! - `portcullis serve --config DIR`: serve the manifests in DIR, reloading
//!   on change, until SIGTERM or SIGINT.
//! - `portcullis check --config DIR`: print the status every object would get
//!   and exit 1 if any is unhealthy or a file does not load.
//! - `portcullis ca export [--state DIR]`: print the local CA's root certificate.
//! - `portcullis certs --config DIR [--state DIR]`: print every managed
//!   certificate's state as a table.
//! - `portcullis crds`: print portcullis's own CustomResourceDefinitions.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use portcullis::cluster::ClusterOptions;
use portcullis::compile::{CompileOptions, DEFAULT_CONTROLLER_NAME};
use portcullis::runtime::check::{check, format_report};
use portcullis::runtime::logging::{self, LogFormat};
use portcullis::runtime::{serve, ServeOptions};
use portcullis::store::DirStore;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit status for a command line or configuration directory that cannot be
/// used at all.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about = "Gateway API TLS edge service")]
struct Cli {
    /// Log line format (filter with RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the manifests of a directory, reloading when it changes.
    Serve(Box<ServeArgs>),
    /// Load and compile a directory once and print every object's status.
    Check(CheckArgs),
    /// Manage the built-in local CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Print every managed certificate: Secret, hostnames, issuer, expiry,
    /// renewal time, status and last error.
    Certs(CertsArgs),
    /// Print portcullis's CustomResourceDefinitions (Issuer, ClusterIssuer,
    /// StaticResponse) as YAML, for `kubectl apply --server-side -f -`.
    Crds,
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory of Gateway API manifests (read recursively).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// State directory (as given to `serve --state`).
    #[arg(long, value_name = "DIR", default_value = "./portcullis-state")]
    state: PathBuf,
    /// GatewayClasses with this controllerName are served.
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
}

/// `portcullis ca ...`: the built-in local CA of standalone mode.
#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Print the local CA's root certificate (PEM) to stdout, for a trust store.
    Export(CaExportArgs),
}

#[derive(Debug, Args)]
struct CaExportArgs {
    /// State directory the CA was created in (as given to `serve --state`).
    #[arg(long, value_name = "DIR", default_value = "./portcullis-state")]
    state: PathBuf,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory of Gateway API manifests (read recursively); standalone
    /// mode.
    #[arg(long, value_name = "DIR", required_unless_present = "kubernetes")]
    config: Option<PathBuf>,
    /// Kubernetes mode: objects come from the API server (in-cluster
    /// configuration, else KUBECONFIG or ~/.kube/config), status and
    /// certificates are written back, replicas share work through a Lease.
    #[arg(long, conflicts_with = "config")]
    kubernetes: bool,
    /// Kubernetes mode: the controller's own namespace (its Lease, local
    /// CA, challenges and issuer records; ClusterIssuers' Secrets).
    #[arg(
        long,
        env = "POD_NAMESPACE",
        value_name = "NS",
        default_value = "portcullis-system"
    )]
    namespace: String,
    /// Kubernetes mode: this replica's identity as a Lease holder
    /// (default: the host name).
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    identity: Option<String>,
    /// Kubernetes mode: the leader Lease (in --namespace).
    #[arg(long, value_name = "NAME", default_value = "portcullis-leader")]
    lease_name: String,
    /// Kubernetes mode: seconds a leader's Lease stays valid without
    /// renewal (another replica takes over after that).
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    lease_duration: u64,
    /// Kubernetes mode: a LoadBalancer Service in --namespace whose ingress
    /// addresses Gateways report in their status.
    #[arg(long, value_name = "NAME")]
    gateway_service: Option<String>,
    /// Kubernetes mode: an address Gateways report when neither their spec
    /// nor --gateway-service gives one (repeatable).
    #[arg(long, value_name = "ADDRESS")]
    gateway_address: Vec<String>,
    /// Kubernetes mode: make a Service of this type (ClusterIP, NodePort
    /// or LoadBalancer) for each Gateway of our classes, in the Gateway's
    /// namespace: its listener ports, sent to the pods
    /// --per-gateway-service-selector selects, labelled and annotated as
    /// the Gateway's spec.infrastructure says, owned by the Gateway.
    /// Without it no Gateway gets one, and those made earlier are deleted.
    #[arg(long, value_name = "TYPE", requires = "per_gateway_service_selector")]
    per_gateway_service: Option<portcullis::cluster::gateway_services::ServiceType>,
    /// Kubernetes mode: the labels of portcullis's own pods, as the
    /// selector of every --per-gateway-service Service (KEY=VALUE,
    /// comma-separated or repeated).
    #[arg(
        long,
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        requires = "per_gateway_service"
    )]
    per_gateway_service_selector: Vec<portcullis::cluster::gateway_services::Label>,
    /// Kubernetes mode: do not write the certificateRefs portcullis fills
    /// back into Gateways and ListenerSets (they are still served).
    #[arg(long)]
    no_certificate_refs_writeback: bool,
    /// Directory for state kept across restarts (created if missing).
    #[arg(long, value_name = "DIR", default_value = "./portcullis-state")]
    state: PathBuf,
    /// Address of the admin endpoint (/healthz, /readyz, /status, /metrics).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin_addr: SocketAddr,
    /// Address Gateways listen on unless they ask for one (or get one
    /// from --gateway-address-pool).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    listen_address: IpAddr,
    /// A prefix (CIDR, or one address) from which each Gateway whose
    /// spec.addresses names no IP address gets an address of its own: its
    /// listeners bind there on their own ports and its status reports it
    /// (repeatable; handed out lowest first, prefixes in the order given).
    /// The addresses must be local to the node, e.g. `ip route add local
    /// 198.18.4.0/24 dev lo`.
    #[arg(long, value_name = "CIDR")]
    gateway_address_pool: Vec<portcullis::address_pool::Prefix>,
    /// Added to every listener port (serve port 443 manifests on 10443).
    #[arg(long, value_name = "N", default_value_t = 0)]
    port_offset: u16,
    /// GatewayClasses with this controllerName are served.
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Tokio worker threads (default: one per core; 1 runs everything on
    /// the main thread).
    #[arg(long, value_name = "N")]
    worker_threads: Option<usize>,
    /// Seconds in-flight connections get to finish at shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    shutdown_grace: u64,
    /// Most concurrent client connections.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Seconds a client gets to send its ClientHello, and again to finish
    /// the TLS handshake, before it is cut off.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    handshake_timeout: u64,
    /// TLS sessions kept for resumption (TLS 1.3 tickets refer to them);
    /// 0 turns resumption off, so every handshake is a full one.
    #[arg(long, value_name = "N", default_value_t = portcullis::tls::sessions::DEFAULT_SESSION_CACHE_ENTRIES)]
    tls_session_cache: usize,
    /// Also export certificate metrics under cert-manager's names and labels
    /// (certmanager_certificate_*), for existing dashboards and alerts.
    #[arg(long)]
    metrics_cert_manager_compat: bool,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Directory of Gateway API manifests (read recursively).
    #[arg(long, value_name = "DIR")]
    config: PathBuf,
    /// GatewayClasses with this controllerName are checked.
    #[arg(long, default_value = DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    });
    let result = match cli.command {
        Command::Serve(args) => run_serve(*args),
        Command::Check(args) => run_check(args),
        Command::Ca(CaCommand::Export(args)) => run_ca_export(args),
        Command::Certs(args) => run_certs(args),
        Command::Crds => run_crds(),
    };
    result.unwrap_or_else(|error| {
        tracing::error!("{error:#}");
        eprintln!("portcullis: {error:#}");
        ExitCode::FAILURE
    })
}

/// Fails with a clear message when `dir` is not a readable directory.
fn require_dir(dir: &Path) -> Result<(), ExitCode> {
    if dir.is_dir() {
        Ok(())
    } else {
        eprintln!(
            "portcullis: configuration directory {} does not exist or is not a directory",
            dir.display()
        );
        Err(ExitCode::from(EXIT_USAGE))
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config_dir = args.config.clone().unwrap_or_default();
    if !args.kubernetes {
        if let Err(code) = require_dir(&config_dir) {
            return Ok(code);
        }
    }
    // One worker: a current-thread runtime does the same work without the
    // work-stealing scheduler's cross-thread bookkeeping (measured in bench/).
    let mut builder = match args.worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all();
    if let Some(n) = args.worker_threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let runtime = builder.build().context("cannot start the tokio runtime")?;
    if !args.kubernetes {
        // The built-in local CA exists from the first start, so `portcullis
        // ca export` can hand its root out before any listener needs it.
        std::fs::create_dir_all(&args.state)
            .with_context(|| format!("cannot create state directory {}", args.state.display()))?;
        let store = DirStore::new(&args.state);
        runtime
            .block_on(portcullis::issuer::LocalCa::load_or_create(
                &store,
                SystemTime::now(),
            ))
            .with_context(|| format!("cannot load the local CA in {}", args.state.display()))?;
    }
    if let Some((before, after)) = portcullis::runtime::limits::raise_open_files() {
        tracing::info!(before, after, "open-file limit (soft)");
    }
    tracing::info!(
        provider = portcullis::tls::provider::NAME,
        session_cache = args.tls_session_cache,
        "TLS crypto provider and resumption sessions kept"
    );
    if !args.kubernetes {
        tracing::info!(
            state = %args.state.display(),
            "local CA ready; `portcullis ca export --state {}` prints its root",
            args.state.display()
        );
    }
    let kubernetes = args.kubernetes.then(|| ClusterOptions {
        namespace: args.namespace.clone(),
        identity: args.identity.clone().unwrap_or_else(host_name),
        lease_name: args.lease_name.clone(),
        lease: portcullis::cluster::lease::LeaseConfig::with_duration(Duration::from_secs(
            args.lease_duration,
        )),
        write_certificate_refs: !args.no_certificate_refs_writeback,
        gateway_service: args.gateway_service.clone(),
        gateway_addresses: args.gateway_address.clone(),
        per_gateway_service: args.per_gateway_service.map(|service_type| {
            portcullis::cluster::gateway_services::ServiceOptions {
                service_type,
                selector: args
                    .per_gateway_service_selector
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect(),
            }
        }),
    });
    let options = ServeOptions {
        config_dir,
        state_dir: args.state,
        admin_addr: args.admin_addr,
        compile: CompileOptions {
            controller_name: args.controller_name,
            listen_address: args.listen_address,
            port_offset: args.port_offset,
            now: None,
            resumption: portcullis::tls::sessions::Resumption::new(args.tls_session_cache),
            address_pool: portcullis::address_pool::AddressPool::new(args.gateway_address_pool),
            held_addresses: Default::default(),
            unbindable_addresses: Default::default(),
            challenges: Default::default(),
        },
        max_connections: args.max_connections.max(1),
        handshake_timeout: std::time::Duration::from_secs(args.handshake_timeout.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        metrics_cert_manager_compat: args.metrics_cert_manager_compat,
        kubernetes,
    };
    runtime
        .block_on(serve(options))
        .context("portcullis serve failed")?;
    // Connections still open after the grace period end with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Err(code) = require_dir(&args.config) {
        return Ok(code);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let options = CompileOptions {
        controller_name: args.controller_name,
        now: Some(i64::try_from(now).unwrap_or(i64::MAX)),
        ..CompileOptions::default()
    };
    let checked = check(&args.config, &options)
        .with_context(|| format!("cannot load {}", args.config.display()))?;
    print!("{}", format_report(&checked));
    Ok(if checked.is_healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `portcullis certs`: prints the certificate table.
fn run_certs(args: CertsArgs) -> anyhow::Result<ExitCode> {
    if let Err(code) = require_dir(&args.config) {
        return Ok(code);
    }
    let options = CompileOptions {
        controller_name: args.controller_name,
        ..CompileOptions::default()
    };
    let store = DirStore::new(&args.state);
    let certs = small_runtime()?
        .block_on(portcullis::runtime::certs::certificates(
            &args.config,
            &store,
            &options,
        ))
        .with_context(|| format!("cannot list certificates of {}", args.config.display()))?;
    print!(
        "{}",
        portcullis::issuer::status::format_table(&certs, SystemTime::now())
    );
    Ok(ExitCode::SUCCESS)
}

/// The host name (a Pod's name in a cluster), for the Lease identity.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("portcullis-{}", std::process::id()))
}

/// `portcullis crds`: prints the CustomResourceDefinitions.
fn run_crds() -> anyhow::Result<ExitCode> {
    let yaml = portcullis::crds::to_yaml().context("cannot build the CustomResourceDefinitions")?;
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

/// `portcullis ca export`: prints the root PEM, or exits 1 if no CA exists yet.
fn run_ca_export(args: CaExportArgs) -> anyhow::Result<ExitCode> {
    let store = DirStore::new(&args.state);
    let root = small_runtime()?
        .block_on(portcullis::issuer::LocalCa::read_root_pem(&store))
        .with_context(|| format!("cannot read the local CA in {}", args.state.display()))?;
    let Some(pem) = root else {
        eprintln!(
            "portcullis: no local CA in {} yet; `portcullis serve --state {}` creates it on first start",
            args.state.display(),
            args.state.display()
        );
        return Ok(ExitCode::FAILURE);
    };
    print!("{pem}");
    Ok(ExitCode::SUCCESS)
}

/// A one-thread runtime for the commands that only read the Store.
fn small_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}
