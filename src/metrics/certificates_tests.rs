//! Row building over a real compiled dataplane (see `super::super::tests`).

use super::*;
use crate::metrics::tests::{dataplane, resources};

#[test]
fn every_chain_certificate_names_the_secret_it_came_from() {
    let resources = resources();
    let dp = dataplane(&resources);
    let rows = served(&dp, &[]);
    assert_eq!(rows.len(), 2, "leaf and intermediate");
    assert!(rows.iter().all(|r| r.labels.secret == "web-tls"));
    assert!(rows.iter().all(|r| r.labels.secret_namespace == "infra"));
    assert!(rows.iter().all(|r| r.labels.managed == "false"));
    let positions: Vec<_> = rows
        .iter()
        .map(|r| r.labels.chain_position.as_str())
        .collect();
    assert_eq!(positions, ["0", "1"]);
}

#[test]
fn listener_expiry_is_the_leaf_not_the_intermediate() {
    let resources = resources();
    let dp = dataplane(&resources);
    let rows = served(&dp, &[]);
    let leaf = rows
        .iter()
        .find(|r| r.labels.chain_position == "0")
        .expect("leaf row");
    let expiry = listener_expiry(&rows, &dp);
    assert_eq!(expiry.len(), 1);
    assert_eq!(expiry[0].1, leaf.not_after);
    assert_eq!(expiry[0].0.hostname, "a.example.com");
}

#[test]
fn cert_manager_view_has_one_row_per_secret_and_unmanaged_ones_have_no_readiness() {
    let resources = resources();
    let dp = dataplane(&resources);
    let rows = served(&dp, &[]);
    let cm = cert_manager_rows(&rows, &[]);
    assert_eq!(cm.len(), 1);
    assert_eq!(cm[0].labels.name, "web-tls");
    assert_eq!(cm[0].labels.issuer_group, "");
    assert_eq!(cm[0].managed, None);
    let not_issued = ManagedCertificate {
        namespace: "apps".into(),
        secret: "pending".into(),
        ..ManagedCertificate::default()
    };
    let cm = cert_manager_rows(&rows, &[not_issued]);
    let pending = cm
        .iter()
        .find(|r| r.labels.name == "pending")
        .expect("managed row");
    assert_eq!(
        pending.expiration, 0,
        "cert-manager exports 0 before issuance"
    );
    assert_eq!(pending.managed, Some((0, None)));
}
