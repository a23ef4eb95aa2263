//! The real client side pointed at the ACME double ([`super::ari_double`]):
//! [`Direct`] orders through `portcullis::issuer::acme` with one context
//! (so one cached account), and [`Managed`] runs the issuer's `Manager`
//! over a Gateway annotated with an issuer on the double, as `portcullis
//! serve` does, so the plan's decisions (backoff, Retry-After) are the
//! manager's own.

use super::ari_double::{AriDouble, Behaviour};
use anyhow::{ensure, Result};
use base64::Engine;
use portcullis::compile::{compile, CompileOptions};
use portcullis::issuer::acme::{AcmeContext, AcmeIssuer};
use portcullis::issuer::challenges::LocalPublisher;
use portcullis::issuer::manager::{Input, Manager};
use portcullis::issuer::status::CertStatus;
use portcullis::issuer::{CertRequest, Issued, LocalCa};
use portcullis::store::DirStore;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The double's issuer spec as YAML (the body under `spec.acme`).
fn acme_spec_yaml(double: &AriDouble, indent: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    [
        format!("server: {}", double.directory_url()),
        "privateKeySecretRef: {name: ari-account}".to_string(),
        format!("caBundle: {}", b64.encode(&double.ca_pem)),
        "profile: shortlived".to_string(),
        "solvers: [{http01: {}}]".to_string(),
    ]
    .iter()
    .map(|l| format!("{indent}{l}\n"))
    .collect()
}

/// A double and one ACME context ordering from it directly.
pub struct Direct {
    /// The double.
    pub double: AriDouble,
    /// The context (its account cache lives as long as this).
    pub ctx: AcmeContext,
    /// The issuer pointing at the double.
    pub issuer: AcmeIssuer,
    _state: tempfile::TempDir,
}

impl Direct {
    /// Starts a double behaving as told.
    pub async fn start(behaviour: Behaviour) -> Result<Direct> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let double = AriDouble::start(behaviour).await?;
        let spec: portcullis::model::issuer::AcmeIssuerSpec =
            serde_yaml::from_str(&acme_spec_yaml(&double, ""))?;
        let issuer =
            AcmeIssuer::resolve(&spec, "default", &portcullis::model::Resources::default())?;
        let state = tempfile::tempdir()?;
        Ok(Direct {
            ctx: AcmeContext::new(
                Arc::new(DirStore::new(state.path())),
                Arc::new(LocalPublisher::new(Arc::default())),
            ),
            double,
            issuer,
            _state: state,
        })
    }

    /// One order for `req`.
    pub async fn issue(
        &self,
        req: &CertRequest,
    ) -> Result<Issued, portcullis::issuer::acme::Error> {
        portcullis::issuer::acme::issue(&self.issuer, &self.ctx, req).await
    }
}

/// A `Manager` keeping the certificate of a Gateway whose issuer is the
/// double; fed manifests the way the runtime feeds it reloads.
pub struct Managed {
    /// The double.
    pub double: AriDouble,
    manager: Arc<Manager>,
    input: watch::Sender<Option<Input>>,
    stop: CancellationToken,
    _state: tempfile::TempDir,
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Managed {
    /// Starts a double behaving as told and a manager over an empty state
    /// directory (its own local CA, store and ACME context).
    pub async fn start(behaviour: Behaviour) -> Result<Managed> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let double = AriDouble::start(behaviour).await?;
        let state = tempfile::tempdir()?;
        let store = Arc::new(DirStore::new(state.path()));
        let local_ca = LocalCa::load_or_create(store.as_ref(), SystemTime::now()).await?;
        let ctx = AcmeContext::new(store.clone(), Arc::new(LocalPublisher::new(Arc::default())));
        let manager = Arc::new(Manager::new(
            store,
            Arc::new(local_ca),
            Some(Arc::new(ctx)),
            Arc::new(portcullis::issuer::SystemClock),
        ));
        let (input, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        tokio::spawn(manager.clone().run(rx, stop.clone()));
        Ok(Managed {
            double,
            manager,
            input,
            stop,
            _state: state,
        })
    }

    /// Feeds a reload: a Gateway for `a.test` annotated with the issuer on
    /// the double and `annotations` (YAML flow-map entries).
    pub fn configure(&self, annotations: &str) -> Result<()> {
        let extra = if annotations.is_empty() {
            String::new()
        } else {
            format!(", {annotations}")
        };
        let yaml = format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: default
  annotations: {{portcullis.dev/issuer: double{extra}}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: https, protocol: HTTPS, port: 443, hostname: a.test}}
---
apiVersion: portcullis.dev/v1alpha1
kind: Issuer
metadata: {{name: double, namespace: default}}
spec:
  acme:
{}"#,
            acme_spec_yaml(&self.double, "    ")
        );
        let resources = super::resources(&yaml)?;
        let status = compile(&resources, &CompileOptions::default()).status;
        self.input.send_replace(Some(Input {
            resources: Arc::new(resources),
            status: Arc::new(status),
        }));
        Ok(())
    }

    /// The manager's report of the Gateway's certificate, if any yet.
    pub fn certificate(&self) -> Option<CertStatus> {
        self.manager
            .certificates()
            .iter()
            .find(|c| c.secret == "default/gw-https-tls")
            .cloned()
    }

    /// Waits (at most 20 s) until the report satisfies `done`.
    pub async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&CertStatus) -> bool,
    ) -> Result<CertStatus> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.certificate().filter(|c| done(c)) {
                return Ok(c);
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "never {what}: {:?}",
                self.certificate()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
