//! `portcullis certs`: the state of every managed certificate, computed the
//! way `serve` would (load, add stored certificates, compile, demand, plan)
//! from the configuration and state directories, without issuing anything.

use std::path::Path;
use std::time::SystemTime;

use crate::compile::{compile, CompileOptions};
use crate::issuer::manager::{snapshot, stored_for, ManagerError};
use crate::issuer::status::CertStatus;
use crate::model::load::{self, DirLoader};
use crate::store::DirStore;

/// Why the certificates could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration directory could not be read.
    #[error("cannot load configuration")]
    Load(#[source] load::Error),
    /// The issuer's state could not be read.
    #[error("cannot read issuer state")]
    State(#[source] ManagerError),
}

/// The report `serve` would publish for `config_dir` and `state_dir` now.
pub fn certificates(
    config_dir: &Path,
    state_dir: &Path,
    options: &CompileOptions,
) -> Result<Vec<CertStatus>, Error> {
    let loaded = DirLoader::new().load(config_dir).map_err(Error::Load)?;
    let store = DirStore::new(state_dir);
    let augmented =
        crate::issuer::augment(&loaded.resources, &stored_for(&store, &loaded.resources));
    let status = compile(&augmented, options).status;
    snapshot(
        &loaded.resources,
        &status,
        &store,
        state_dir,
        SystemTime::now(),
    )
    .map_err(Error::State)
}
