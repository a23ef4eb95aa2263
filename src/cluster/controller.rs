//! The leader's writes ([`Controller`]): after every compiled snapshot,
//! while this replica holds the Lease, it makes the API server say what
//! portcullis decided — status, and the `certificateRefs` it filled — with
//! server-side apply, writing only what changed. Losing the Lease stops it
//! at once: a write in flight is abandoned, none is started.
//!
//! What to write is decided by pure planners (`super::certificate_refs`,
//! `super::status_patch`, `super::gateway_services`); this module only
//! applies their bodies (and deletes the per-Gateway Services no Gateway
//! wants), a few at a time, and retries a write the API refused with 409
//! Conflict on the next snapshot (which carries the newer object the
//! conflict was about).

use super::addresses::AddressSources;
use super::cache::Live;
use super::gateway_services::{self, ServiceDelete, ServiceOptions};
use super::kinds::Watched;
use super::writes::{Apply, Settings};
use crate::control_thread::ControlThread;
use crate::issuer::status::ListenerConditions;
use crate::metrics::cluster::WriteOutcome;
use crate::model::{ObjectKey, Resources};
use crate::status::Status;
use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// Writes applied at once.
const CONCURRENCY: usize = 16;
/// First wait before writes that failed for another reason than a
/// conflict (the API server away) are tried again; doubled up to
/// [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest wait between retries.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// What one compiled snapshot gives the controller.
#[derive(Debug, Clone)]
pub struct Input {
    /// The objects as the API holds them (before the issuer's additions).
    pub resources: Arc<Resources>,
    /// What compile decided.
    pub status: Arc<Status>,
    /// The live objects' versions and status.
    pub live: Arc<BTreeMap<(Watched, ObjectKey), Live>>,
    /// The issuer's certificates (the listeners' `CertificateReady`).
    pub certificates: Arc<Vec<crate::issuer::status::CertStatus>>,
}

/// The leader's writer.
pub struct Controller {
    client: kube::Client,
    metrics: Arc<crate::metrics::Metrics>,
    controller_name: String,
    write_certificate_refs: bool,
    gateway_service: Option<ObjectKey>,
    addresses: AddressSources,
    /// `--per-gateway-service`, when given.
    per_gateway_service: Option<ServiceOptions>,
    /// `--port-offset` (the per-Gateway Services' target ports).
    port_offset: u16,
    /// The live version each write was applied on, until its echo
    /// arrives (never held across an await).
    applied: std::sync::Mutex<super::writes::Applied>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("controller_name", &self.controller_name)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller writing as `controller_name`, as `options` and
    /// `compile` say.
    pub fn new(
        client: kube::Client,
        options: &super::ClusterOptions,
        compile: &crate::compile::CompileOptions,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            client,
            metrics,
            controller_name: compile.controller_name.clone(),
            write_certificate_refs: options.write_certificate_refs,
            gateway_service: options
                .gateway_service
                .as_ref()
                .map(|name| ObjectKey::new(&options.namespace, name)),
            addresses: AddressSources {
                configured: options.gateway_addresses.clone(),
                listen_address: Some(compile.listen_address),
            },
            per_gateway_service: options.per_gateway_service.clone(),
            port_offset: compile.port_offset,
            applied: Default::default(),
        }
    }

    /// Writes for every input while `leading` is true; returns when the
    /// input channel closes.
    pub async fn run(
        self,
        mut input: watch::Receiver<Option<Input>>,
        mut leading: watch::Receiver<bool>,
        control: ControlThread,
    ) {
        let this = Arc::new(self);
        let mut retry = RETRY_FIRST;
        loop {
            if !*leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    return;
                }
                // Newly leading: whatever arrived before is still to write.
                input.mark_changed();
                continue;
            }
            let current = input.borrow_and_update().clone();
            let mut failed = 0;
            if let Some(current) = current {
                tokio::select! {
                    f = this.write(&current, &control) => failed = f,
                    _ = leading.wait_for(|l| !*l) => {
                        tracing::info!("not leading: abandoned the writes in flight");
                        continue;
                    }
                }
            }
            let wait = retry;
            retry = if failed == 0 {
                RETRY_FIRST
            } else {
                (retry * 2).min(RETRY_MAX)
            };
            let again = async move {
                if failed == 0 {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(wait).await;
            };
            tokio::select! {
                r = input.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
                () = again => input.mark_changed(),
            }
        }
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, super::writes::Applied> {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writes one snapshot needs.
    pub fn plan(&self, input: &Input) -> Vec<Apply> {
        let certificates = ListenerConditions::of(&input.certificates);
        let settings = Settings {
            controller_name: &self.controller_name,
            write_certificate_refs: self.write_certificate_refs,
            gateway_service: self.gateway_service.as_ref(),
            per_gateway_service: self.per_gateway_service.is_some(),
            addresses: &self.addresses,
            certificates: &certificates,
        };
        super::writes::plan(
            &input.resources,
            &input.status,
            &input.live,
            &settings,
            SystemTime::now(),
        )
    }

    /// Every apply one snapshot needs (status, references, per-Gateway
    /// Services) and the per-Gateway Services to delete.
    fn plan_all(&self, input: &Input) -> (Vec<Apply>, Vec<ServiceDelete>) {
        let services = self.service_plan(input);
        for key in &services.taken {
            tracing::warn!(service = %key, "a Service of another owner has the name of a Gateway's Service; not written");
        }
        let mut planned = self.plan(input);
        planned.extend(services.applies.into_iter().map(|a| Apply {
            resource: Watched::Service.api_resource("v1"),
            namespace: a.key.namespace,
            name: a.key.name,
            status: false,
            manager: gateway_services::FIELD_MANAGER,
            body: super::writes::Body::new(&a.body),
            read_version: String::new(),
        }));
        (planned, services.deletes)
    }

    /// The per-Gateway Services one snapshot needs.
    pub fn service_plan(&self, input: &Input) -> gateway_services::Plan {
        gateway_services::plan(
            &input.resources,
            &input.status,
            &input.live,
            &gateway_services::Settings {
                controller_name: &self.controller_name,
                service: self.per_gateway_service.as_ref(),
                port_offset: self.port_offset,
            },
        )
    }

    /// Applies what `input` needs; returns how many writes failed for
    /// another reason than a conflict or a deleted object.
    async fn write(self: &Arc<Self>, input: &Input, control: &ControlThread) -> usize {
        // Planning reads every object with status, the live copy of each
        // parsed (tens of milliseconds at thousands of routes, on every
        // snapshot): off the async workers, which serve traffic, on the
        // thread (and so in the allocator arena) compiles use.
        let started = std::time::Instant::now();
        let (this, owned) = (Arc::clone(self), input.clone());
        let planned = control.run(move || this.plan_all(&owned)).await;
        let (planned, deletes) = match planned {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(%error, "planning the writes failed");
                return 1;
            }
        };
        let applies = self.applied().not_yet_applied(planned);
        tracing::debug!(
            objects = input.status.objects.len(),
            live = input.live.len(),
            writes = applies.len(),
            deletes = deletes.len(),
            planned_ms = started.elapsed().as_millis(),
            "planned writes"
        );

        if applies.is_empty() && deletes.is_empty() {
            return 0;
        }
        let total = applies.len() + deletes.len();
        let writes = applies
            .into_iter()
            .map(Write::Apply)
            .chain(deletes.into_iter().map(Write::Delete));
        let outcomes: Vec<WriteOutcome> = futures_util::stream::iter(writes)
            .map(|w| async move {
                match w {
                    Write::Apply(a) => self.apply(a).await,
                    Write::Delete(d) => self.delete(d).await,
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let failed = outcomes
            .iter()
            .filter(|o| **o == WriteOutcome::Failed)
            .count();
        tracing::debug!(total, failed, "wrote to the API server");
        failed
    }

    /// Deletes one per-Gateway Service, if it is still the one planned
    /// for (failures are logged).
    async fn delete(&self, d: ServiceDelete) -> WriteOutcome {
        let resource = Watched::Service.api_resource("v1");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &d.key.namespace, &resource);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(d.uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let outcome = match api.delete(&d.key.name, &params).await {
            Ok(_) => {
                tracing::info!(service = %d.key, "deleted a Gateway's Service no Gateway of ours wants");
                WriteOutcome::Written
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                // Gone already (the garbage collector), or made again.
                WriteOutcome::Superseded
            }
            Err(error) => {
                tracing::warn!(service = %d.key, %error, "cannot delete a Gateway's Service; retrying");
                WriteOutcome::Failed
            }
        };
        self.metrics.cluster().write(&resource.kind, outcome);
        outcome
    }

    /// Applies one body (failures are logged).
    async fn apply(&self, a: Apply) -> WriteOutcome {
        let api: Api<DynamicObject> = if a.namespace.is_empty() {
            Api::all_with(self.client.clone(), &a.resource)
        } else {
            Api::namespaced_with(self.client.clone(), &a.namespace, &a.resource)
        };
        // Force: these fields are portcullis's to decide. Status lists other
        // controllers share carry the resourceVersion read, so a write over
        // a newer version fails with 409 instead of losing their entries;
        // the planner leaves references users took over out of its bodies.
        let params = PatchParams::apply(a.manager).force();
        let patch = Patch::Apply(a.body.value());
        let result = if a.status {
            api.patch_status(&a.name, &params, &patch).await
        } else {
            api.patch(&a.name, &params, &patch).await
        };
        let outcome = match result {
            Ok(written) => {
                // An apply that changed nothing keeps the version and sends
                // no echo to wait for.
                if written.metadata.resource_version.as_deref() != Some(a.read_version.as_str()) {
                    self.applied().record(&a);
                }
                WriteOutcome::Written
            }
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                // A newer version (or the deletion) is on its way through
                // the watch, and with it the next snapshot.
                tracing::debug!(kind = %a.resource.kind, namespace = %a.namespace, name = %a.name, code = e.code, "write superseded; redone on the next snapshot");
                WriteOutcome::Superseded
            }
            Err(error) => {
                tracing::warn!(kind = %a.resource.kind, namespace = %a.namespace, name = %a.name, status = a.status, %error, "cannot write to the API server; retrying");
                WriteOutcome::Failed
            }
        };
        self.metrics.cluster().write(&a.resource.kind, outcome);
        outcome
    }
}

/// One write of a plan.
enum Write {
    /// A server-side apply.
    Apply(Apply),
    /// A per-Gateway Service's deletion.
    Delete(ServiceDelete),
}
