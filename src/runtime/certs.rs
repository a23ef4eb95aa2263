//! `portcullis certs`: the state of every managed certificate, computed the
//! way `serve` would (load, add stored certificates, compile, demand, plan)
//! from the configuration directory and the issuer's Store, without issuing
//! anything.

use std::path::Path;
use std::time::SystemTime;

use crate::compile::{compile, CompileOptions};
use crate::issuer::manager::{snapshot, stored_for, ManagerError};
use crate::issuer::status::CertStatus;
use crate::model::load::{self, DirLoader};
use crate::store::Store;

/// Why the certificates could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration directory could not be read.
    #[error("cannot load configuration")]
    Load(#[source] load::Error),
    /// The configuration load task failed.
    #[error("configuration load task failed")]
    LoadTask(#[source] tokio::task::JoinError),
    /// The issuer's state could not be read.
    #[error("cannot read issuer state")]
    State(#[source] ManagerError),
}

/// The report `serve` would publish for `config_dir` and what `store`
/// holds now.
pub async fn certificates(
    config_dir: &Path,
    store: &dyn Store,
    options: &CompileOptions,
) -> Result<Vec<CertStatus>, Error> {
    let dir = config_dir.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || DirLoader::new().load(&dir))
        .await
        .map_err(Error::LoadTask)?
        .map_err(Error::Load)?;
    let stored = stored_for(store, &loaded.resources).await;
    let augmented = crate::issuer::augment(&loaded.resources, &stored);
    let status = compile(&augmented, options).status;
    snapshot(&loaded.resources, &status, store, SystemTime::now())
        .await
        .map_err(Error::State)
}
