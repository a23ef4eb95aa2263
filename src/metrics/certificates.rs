//! Certificate metrics: every certificate the current dataplane serves (each
//! listener's certificates and every certificate of each served chain), the
//! expiry each listener actually serves, the per-certificate state of the
//! issuer for managed certificates ([`ManagedCertificate`]), and the same
//! data under cert-manager's metric names when asked for.
//!
//! Rows are computed at scrape time from the dataplane published at the last
//! reload, so they always describe what handshakes serve now. Each served
//! certificate carries the Secret it came from and the facts of its chain,
//! read when compile parsed it ([`crate::dataplane::ParsedCertificate`]): a
//! scrape parses nothing. Building rows ([`served`], [`listener_expiry`],
//! [`cert_manager_rows`]) is pure.
//!
//! Label names avoid `namespace`, `pod`, `service`, `job` and `instance`:
//! Prometheus attaches those to Kubernetes targets, and a collision renames
//! ours to `exported_*` (which breaks cert-manager's own mixin). The
//! cert-manager-compatible families reproduce cert-manager's labels exactly,
//! `namespace` included.

use crate::dataplane::{Dataplane, ListenerKey};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::{BTreeMap, HashMap};

/// The issuer group cert-manager-compatible series carry for portcullis's
/// own issuers (`Issuer`, `ClusterIssuer` of `portcullis.dev`).
pub const ISSUER_GROUP: &str = "portcullis.dev";

/// What the issuer knows about one certificate it manages, as the metrics
/// need it. The issuer manager hands the whole list to
/// [`crate::metrics::Metrics::set_managed`] whenever it changes; times are
/// Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedCertificate {
    /// Namespace of the Secret the certificate is stored in.
    pub namespace: String,
    /// Name of that Secret.
    pub secret: String,
    /// `Issuer` or `ClusterIssuer` (or `LocalCA` for the built-in one).
    pub issuer_kind: String,
    /// The issuer's name.
    pub issuer_name: String,
    /// notBefore of the current certificate, if one was issued.
    pub not_before: Option<i64>,
    /// notAfter of the current certificate, if one was issued.
    pub not_after: Option<i64>,
    /// When the issuer plans to renew it.
    pub renewal_time: Option<i64>,
    /// The Ready condition: `Some(true)`, `Some(false)`, or `None` (Unknown).
    pub ready: Option<bool>,
    /// The ACME Renewal Information window (RFC 9773), start and end.
    pub ari_window: Option<(i64, i64)>,
    /// The ACME profile the certificate was ordered with.
    pub profile: Option<String>,
    /// Consecutive failed issuance attempts (0 after a success).
    pub failed_attempts: u32,
    /// When the next attempt is scheduled after a failure.
    pub next_retry: Option<i64>,
}

fn namespace_of(ns: &str) -> String {
    if ns.is_empty() {
        "default".to_string()
    } else {
        ns.to_string()
    }
}

/// Labels of one served certificate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
pub struct ServedLabels {
    /// Namespace of the Secret (empty when no Secret holds it).
    pub secret_namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// Namespace of the Gateway serving it.
    pub gateway_namespace: String,
    /// The Gateway.
    pub gateway: String,
    /// The listener (`listenerset/name` for a ListenerSet's listener).
    pub listener: String,
    /// Kind of the issuer that manages it (empty when unmanaged).
    pub issuer_kind: String,
    /// Name of that issuer.
    pub issuer_name: String,
    /// `true` when portcullis's issuer manages it.
    pub managed: String,
    /// 0 for the leaf, 1 for the certificate that signed it, and so on.
    pub chain_position: String,
    /// Subject common name (empty when absent).
    pub subject_cn: String,
}

/// One served certificate and its validity, Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRow {
    /// Labels.
    pub labels: ServedLabels,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

/// Gateway namespace, gateway and listener label values of a listener.
pub fn listener_names(key: &ListenerKey) -> (String, String, String) {
    let listener = match &key.listener_set {
        Some(set) => format!("{}/{}", set.name, key.name),
        None => key.name.clone(),
    };
    (
        namespace_of(&key.gateway.namespace),
        key.gateway.name.clone(),
        listener,
    )
}

/// Every certificate of every chain every listener of `dataplane` serves,
/// one row per (listener, chain position), sorted by labels.
pub fn served(dataplane: &Dataplane, managed: &[ManagedCertificate]) -> Vec<ServedRow> {
    let managed: HashMap<(&str, &str), &ManagedCertificate> = managed
        .iter()
        .map(|m| ((m.namespace.as_str(), m.secret.as_str()), m))
        .collect();
    let mut rows = BTreeMap::new();
    for listener in dataplane.binds.iter().flat_map(|b| b.listeners.iter()) {
        let (gateway_namespace, gateway, listener_name) = listener_names(&listener.key);
        for certificate in &listener.certificates {
            let secret_namespace = namespace_of(&certificate.secret.namespace);
            let secret = certificate.secret.name.clone();
            let issuer = managed.get(&(secret_namespace.as_str(), secret.as_str()));
            for (position, info) in certificate.parsed.chain().enumerate() {
                let labels = ServedLabels {
                    secret_namespace: secret_namespace.clone(),
                    secret: secret.clone(),
                    gateway_namespace: gateway_namespace.clone(),
                    gateway: gateway.clone(),
                    listener: listener_name.clone(),
                    issuer_kind: issuer.map(|m| m.issuer_kind.clone()).unwrap_or_default(),
                    issuer_name: issuer.map(|m| m.issuer_name.clone()).unwrap_or_default(),
                    managed: issuer.is_some().to_string(),
                    chain_position: position.to_string(),
                    subject_cn: info.subject_cn.clone().unwrap_or_default(),
                };
                rows.insert(
                    labels.clone(),
                    ServedRow {
                        labels,
                        not_before: info.not_before,
                        not_after: info.not_after,
                    },
                );
            }
        }
    }
    rows.into_values().collect()
}

/// Labels of a listener's served-expiry series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
pub struct ListenerLabels {
    /// Namespace of the Gateway.
    pub gateway_namespace: String,
    /// The Gateway.
    pub gateway: String,
    /// The listener.
    pub listener: String,
    /// The listener's hostname (empty for a catch-all listener).
    pub hostname: String,
}

/// Per listener, the earliest notAfter among the leaf certificates it serves
/// (the one whose expiry a client will meet first).
pub fn listener_expiry(rows: &[ServedRow], dataplane: &Dataplane) -> Vec<(ListenerLabels, i64)> {
    let mut hostnames = HashMap::new();
    for listener in dataplane.binds.iter().flat_map(|b| b.listeners.iter()) {
        hostnames.insert(
            listener_names(&listener.key),
            listener.hostname.clone().unwrap_or_default(),
        );
    }
    let mut out: BTreeMap<ListenerLabels, i64> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.labels.chain_position == "0") {
        let l = &row.labels;
        let key = (
            l.gateway_namespace.clone(),
            l.gateway.clone(),
            l.listener.clone(),
        );
        let labels = ListenerLabels {
            hostname: hostnames.get(&key).cloned().unwrap_or_default(),
            gateway_namespace: key.0,
            gateway: key.1,
            listener: key.2,
        };
        let entry = out.entry(labels).or_insert(row.not_after);
        *entry = (*entry).min(row.not_after);
    }
    out.into_iter().collect()
}

/// Labels of a managed certificate's series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
pub struct ManagedLabels {
    /// Namespace of the Secret.
    pub secret_namespace: String,
    /// The Secret.
    pub secret: String,
    /// Issuer kind.
    pub issuer_kind: String,
    /// Issuer name.
    pub issuer_name: String,
}

impl ManagedLabels {
    fn of(m: &ManagedCertificate) -> Self {
        Self {
            secret_namespace: m.namespace.clone(),
            secret: m.secret.clone(),
            issuer_kind: m.issuer_kind.clone(),
            issuer_name: m.issuer_name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ManagedReadyLabels {
    #[prometheus(flatten)]
    managed: ManagedLabels,
    condition: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProfileLabel {
    profile: String,
}

/// cert-manager's label set, exactly (`pkg/metrics/certificates.go`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, EncodeLabelSet)]
pub struct CertManagerLabels {
    /// The Certificate name; here the Secret's name.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// Issuer name (empty for a user's own Secret).
    pub issuer_name: String,
    /// Issuer kind.
    pub issuer_kind: String,
    /// Issuer group ([`ISSUER_GROUP`], empty for a user's own Secret).
    pub issuer_group: String,
}

/// One cert-manager-compatible certificate: labels, notAfter (0 when not
/// issued, as cert-manager does), and for managed ones the renewal time and
/// the Ready condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertManagerRow {
    /// Labels.
    pub labels: CertManagerLabels,
    /// notAfter, or 0.
    pub expiration: i64,
    /// Renewal time and Ready condition, for managed certificates.
    pub managed: Option<(i64, Option<bool>)>,
}

/// The cert-manager view: one row per managed certificate, plus one per
/// served Secret the issuer does not manage (its leaf's earliest notAfter),
/// so dashboards built on cert-manager's names see every served certificate.
pub fn cert_manager_rows(
    served: &[ServedRow],
    managed: &[ManagedCertificate],
) -> Vec<CertManagerRow> {
    let mut rows: BTreeMap<(String, String), CertManagerRow> = BTreeMap::new();
    for m in managed {
        rows.insert(
            (m.namespace.clone(), m.secret.clone()),
            CertManagerRow {
                labels: CertManagerLabels {
                    name: m.secret.clone(),
                    namespace: m.namespace.clone(),
                    issuer_name: m.issuer_name.clone(),
                    issuer_kind: m.issuer_kind.clone(),
                    issuer_group: ISSUER_GROUP.to_string(),
                },
                expiration: m.not_after.unwrap_or(0),
                managed: Some((m.renewal_time.unwrap_or(0), m.ready)),
            },
        );
    }
    for row in served {
        let l = &row.labels;
        if l.chain_position != "0" || l.secret.is_empty() {
            continue;
        }
        let key = (l.secret_namespace.clone(), l.secret.clone());
        let entry = rows.entry(key).or_insert_with(|| CertManagerRow {
            labels: CertManagerLabels {
                name: l.secret.clone(),
                namespace: l.secret_namespace.clone(),
                issuer_name: String::new(),
                issuer_kind: String::new(),
                issuer_group: String::new(),
            },
            expiration: row.not_after,
            managed: None,
        });
        if entry.managed.is_none() {
            entry.expiration = entry.expiration.min(row.not_after);
        }
    }
    rows.into_values().collect()
}

/// The values of the Ready condition, as cert-manager exports them.
const CONDITIONS: [(&str, Option<bool>); 3] = [
    ("True", Some(true)),
    ("False", Some(false)),
    ("Unknown", None),
];

/// Encodes one gauge family: a descriptor, then one sample per row.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes every certificate family for `dataplane`.
pub fn encode(
    encoder: &mut DescriptorEncoder,
    dataplane: &Dataplane,
    managed: &[ManagedCertificate],
    cert_manager_compat: bool,
) -> Result<(), std::fmt::Error> {
    let rows = served(dataplane, managed);
    gauges(
        encoder,
        super::names::CERT_EXPIRATION,
        "notAfter of every served certificate (each chain position), Unix seconds.",
        rows.iter().map(|r| (r.labels.clone(), r.not_after as f64)),
    )?;
    gauges(
        encoder,
        super::names::CERT_NOT_BEFORE,
        "notBefore of every served certificate (each chain position), Unix seconds.",
        rows.iter().map(|r| (r.labels.clone(), r.not_before as f64)),
    )?;
    gauges(
        encoder,
        super::names::LISTENER_CERT_EXPIRATION,
        "Earliest notAfter among the leaf certificates a listener serves, Unix seconds.",
        listener_expiry(&rows, dataplane)
            .into_iter()
            .map(|(l, v)| (l, v as f64)),
    )?;
    encode_managed(encoder, managed)?;
    if cert_manager_compat {
        encode_cert_manager(encoder, &cert_manager_rows(&rows, managed))?;
    }
    Ok(())
}

fn encode_managed(
    encoder: &mut DescriptorEncoder,
    managed: &[ManagedCertificate],
) -> Result<(), std::fmt::Error> {
    let of = |f: fn(&ManagedCertificate) -> Option<i64>| {
        managed
            .iter()
            .filter_map(move |m| f(m).map(|v| (ManagedLabels::of(m), v as f64)))
    };
    gauges(
        encoder,
        super::names::CERT_RENEWAL,
        "When the issuer will renew a managed certificate, Unix seconds.",
        of(|m| m.renewal_time),
    )?;
    gauges(
        encoder,
        super::names::CERT_ARI_START,
        "Start of the ACME Renewal Information window of a managed certificate, Unix seconds.",
        of(|m| m.ari_window.map(|w| w.0)),
    )?;
    gauges(
        encoder,
        super::names::CERT_ARI_END,
        "End of the ACME Renewal Information window of a managed certificate, Unix seconds.",
        of(|m| m.ari_window.map(|w| w.1)),
    )?;
    gauges(
        encoder,
        super::names::CERT_NEXT_RETRY,
        "When the issuer tries again after a failed issuance, Unix seconds.",
        of(|m| m.next_retry),
    )?;
    gauges(
        encoder,
        super::names::CERT_FAILED_ATTEMPTS,
        "Consecutive failed issuance attempts of a managed certificate.",
        managed
            .iter()
            .map(|m| (ManagedLabels::of(m), f64::from(m.failed_attempts))),
    )?;
    if !managed.is_empty() {
        let mut family = encoder.encode_descriptor(
            super::names::CERT_READY,
            "Ready condition of a managed certificate: 1 for the current condition, 0 for the others.",
            None,
            MetricType::Gauge,
        )?;
        for m in managed {
            for (condition, value) in CONDITIONS {
                let v = if m.ready == value { 1.0 } else { 0.0 };
                let labels = ManagedReadyLabels {
                    managed: ManagedLabels::of(m),
                    condition,
                };
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    if managed.iter().any(|m| m.profile.is_some()) {
        let mut family = encoder.encode_descriptor(
            super::names::CERT_PROFILE,
            "ACME profile a managed certificate was ordered with.",
            None,
            MetricType::Info,
        )?;
        for m in managed {
            if let Some(profile) = &m.profile {
                let labels = ManagedLabels::of(m);
                family.encode_family(&labels)?.encode_info(&ProfileLabel {
                    profile: profile.clone(),
                })?;
            }
        }
    }
    Ok(())
}

fn encode_cert_manager(
    encoder: &mut DescriptorEncoder,
    rows: &[CertManagerRow],
) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        super::names::CM_EXPIRATION,
        "The date after which the certificate expires. Expressed as a Unix Epoch Time.",
        rows.iter().map(|r| (r.labels.clone(), r.expiration as f64)),
    )?;
    gauges(
        encoder,
        super::names::CM_RENEWAL,
        "The number of seconds before expiration time the certificate should renew.",
        rows.iter().filter_map(|r| {
            r.managed
                .map(|(renewal, _)| (r.labels.clone(), renewal as f64))
        }),
    )?;
    if rows.iter().any(|r| r.managed.is_some()) {
        let mut family = encoder.encode_descriptor(
            super::names::CM_READY,
            "The ready status of the certificate.",
            None,
            MetricType::Gauge,
        )?;
        for row in rows {
            let Some((_, ready)) = row.managed else {
                continue;
            };
            for (condition, value) in CONDITIONS {
                let v = if ready == value { 1.0 } else { 0.0 };
                // cert-manager's order: name, namespace, condition, issuer_*.
                let labels = CertManagerReadyLabels {
                    name: row.labels.name.clone(),
                    namespace: row.labels.namespace.clone(),
                    condition,
                    issuer_name: row.labels.issuer_name.clone(),
                    issuer_kind: row.labels.issuer_kind.clone(),
                    issuer_group: row.labels.issuer_group.clone(),
                };
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CertManagerReadyLabels {
    name: String,
    namespace: String,
    condition: &'static str,
    issuer_name: String,
    issuer_kind: String,
    issuer_group: String,
}

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
