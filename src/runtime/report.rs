//! The document `/status` serves: the status of every object after the last
//! compile, the files that failed to load, the kinds that were ignored, the
//! sockets that could not be bound, and when and how often configuration was
//! reloaded. Built from the reload's results; the certificates' conditions
//! are added to the listeners' status as it is serialised.

use crate::issuer::status::{CertStatus, ListenerConditions};
use crate::model::load::LoadProblem;
use crate::server::BindError;
use crate::status::{ObjectStatus, Status};
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// Everything `/status` reports, for one configuration generation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per-object status as compiled (serialised as `objects`, with the
    /// `CertificateReady` conditions of [`Self::certificates`]). Shared
    /// with the issuer and the status writer.
    pub status: Arc<Status>,
    /// Manifest files (or API objects) that failed to load on the last
    /// reload.
    pub problems: Vec<ProblemReport>,
    /// Documents of kinds portcullis does not read.
    pub ignored: Vec<String>,
    /// Sockets that could not be bound on the last reconcile.
    pub bind_errors: Vec<BindError>,
    /// How many configurations have been programmed (1 after start-up).
    pub generation: u64,
    /// When the last reload finished, in Unix seconds.
    pub last_reload: u64,
    /// Every managed certificate: Secret, names, issuer, validity, renewal
    /// time, attempts and last error.
    pub certificates: Arc<Vec<CertStatus>>,
}

/// How a [`Report`] is written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportDocument<'a> {
    objects: AnnotatedObjects<'a>,
    problems: &'a [ProblemReport],
    ignored: &'a [String],
    bind_errors: &'a [BindError],
    generation: u64,
    last_reload: u64,
    certificates: &'a [CertStatus],
}

/// The compiled objects, each Gateway and ListenerSet with its listeners'
/// certificate conditions (copied one object at a time).
struct AnnotatedObjects<'a> {
    objects: &'a [ObjectStatus],
    conditions: ListenerConditions,
}

impl Serialize for AnnotatedObjects<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.objects.len()))?;
        for object in self.objects {
            seq.serialize_element(&*self.conditions.annotated(object))?;
        }
        seq.end()
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ReportDocument {
            objects: AnnotatedObjects {
                objects: &self.status.objects,
                conditions: ListenerConditions::of(&self.certificates),
            },
            problems: &self.problems,
            ignored: &self.ignored,
            bind_errors: &self.bind_errors,
            generation: self.generation,
            last_reload: self.last_reload,
            certificates: &self.certificates,
        }
        .serialize(s)
    }
}

/// A manifest file that failed to load, or (Kubernetes mode) an object
/// portcullis refuses to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemReport {
    /// The file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The object, `Kind namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// What went wrong.
    pub message: String,
    /// Whether the file's previous good content is still served.
    pub kept_previous: bool,
}

impl From<&LoadProblem> for ProblemReport {
    fn from(p: &LoadProblem) -> Self {
        Self {
            file: Some(p.path.display().to_string()),
            object: None,
            message: p.error.to_string(),
            kept_previous: p.kept_previous,
        }
    }
}

/// Sizes of one compiled configuration, logged on every reload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Objects with a status (GatewayClasses, Gateways, ListenerSets, routes).
    pub objects: usize,
    /// Sockets.
    pub binds: usize,
    /// Programmed listeners.
    pub listeners: usize,
    /// HTTPRoutes and GRPCRoutes with a status.
    pub routes: usize,
}

impl Counts {
    /// Counts what a compile produced.
    pub fn of(dataplane: &crate::dataplane::Dataplane, status: &Status) -> Self {
        Self {
            objects: status.objects.len(),
            binds: dataplane.binds.len(),
            listeners: dataplane.binds.iter().map(|b| b.listeners.len()).sum(),
            routes: status
                .objects
                .iter()
                .filter(|o| o.kind == "HTTPRoute" || o.kind == "GRPCRoute")
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ObjectStatus;

    #[test]
    fn status_document_uses_the_documented_field_names() {
        let report = Report {
            status: Arc::new(Status {
                objects: vec![ObjectStatus::new("Gateway", "default", "gw")],
            }),
            problems: vec![ProblemReport {
                file: Some("a.yaml".into()),
                object: None,
                message: "bad".into(),
                kept_previous: true,
            }],
            ignored: vec!["apps/v1 Deployment d".into()],
            bind_errors: vec![BindError {
                address: "0.0.0.0:80".parse().expect("literal address"),
                message: "permission denied".into(),
            }],
            generation: 3,
            last_reload: 1700000000,
            certificates: Default::default(),
        };
        let v = serde_json::to_value(&report).expect("serialisable");
        assert_eq!(v["objects"][0]["kind"], "Gateway");
        assert_eq!(v["problems"][0]["keptPrevious"], true);
        assert_eq!(v["bindErrors"][0]["address"], "0.0.0.0:80");
        assert_eq!(v["generation"], 3);
        assert_eq!(v["lastReload"], 1700000000);
        assert_eq!(v["ignored"][0], "apps/v1 Deployment d");
        assert_eq!(v["certificates"], serde_json::json!([]));
    }
}
