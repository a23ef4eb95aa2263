//! Compiling one loaded snapshot ([`Compiler`]): the issuer's certificates
//! added, compile run with the current time and the certificates parsed
//! by the previous compile; blocking, so the runtime runs it on a blocking
//! thread.

use super::source::{self, Loaded};
use super::unix_now;
use crate::compile::{compile_cached, CertCache, CompileOptions, Compiled};
use std::sync::Arc;

/// What one reload read and compiled.
#[derive(Debug)]
pub struct Reloaded {
    /// The compile output.
    pub compiled: Compiled,
    /// What could not be read.
    pub problems: Vec<source::Problem>,
    /// Documents of kinds portcullis does not read.
    pub ignored: Vec<String>,
    /// Which Secret holds each certificate, for the certificate metrics.
    pub secrets: crate::metrics::SecretIndex,
    /// The resources as loaded, before the issuer's certificates were
    /// added (what the issuer's demand is computed from).
    pub resources: Arc<crate::model::Resources>,
    /// Kubernetes mode: the live objects, for writing their status.
    pub live: Option<
        Arc<
            std::collections::BTreeMap<
                (crate::cluster::kinds::Watched, crate::model::ObjectKey),
                crate::cluster::cache::Live,
            >,
        >,
    >,
}

/// Compiles loaded snapshots, keeping parsed certificates between
/// compiles. Blocking: run it on a blocking thread.
#[derive(Debug)]
pub struct Compiler {
    options: CompileOptions,
    /// Certificates parsed by the previous compile, reused when unchanged.
    certs: CertCache,
}

impl Compiler {
    /// A compiler with these options.
    pub fn new(options: CompileOptions) -> Self {
        Self {
            options,
            certs: CertCache::new(),
        }
    }

    /// Adds the issuer's certificates and references
    /// ([`crate::issuer::augment()`]) and compiles with the current time.
    pub fn compile(&mut self, loaded: Loaded) -> Reloaded {
        let mut options = self.options.clone();
        options.now = Some(i64::try_from(unix_now()).unwrap_or(i64::MAX));
        let augmented = crate::issuer::augment(&loaded.resources, &loaded.stored);
        Reloaded {
            secrets: crate::metrics::SecretIndex::of(&augmented),
            compiled: compile_cached(&augmented, &options, &mut self.certs),
            problems: loaded.problems,
            ignored: loaded.ignored,
            resources: Arc::new(loaded.resources),
            live: loaded.live,
        }
    }
}
