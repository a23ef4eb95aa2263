//! Which Secrets and ConfigMaps the configuration refers to
//! ([`referenced`]): the only ones Kubernetes mode reads in full. Every
//! other Secret of the cluster is known by its metadata alone, so memory
//! does not grow with the data of Secrets portcullis has no use for. Pure.
//!
//! A reference is followed whether or not it will turn out to be allowed
//! (a cross-namespace certificateRef without a ReferenceGrant): compile
//! decides that, and needs to know whether the object exists to say why.

use crate::model::gateway::SecretObjectReference;
use crate::model::issuer::{IssuerSpec, SecretKeySelector};
use crate::model::{ObjectKey, Resources};
use std::collections::BTreeSet;

/// The Secrets and ConfigMaps to read in full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    /// Secrets.
    pub secrets: BTreeSet<ObjectKey>,
    /// ConfigMaps.
    pub config_maps: BTreeSet<ObjectKey>,
}

impl Referenced {
    fn secret_object_ref(&mut self, r: &SecretObjectReference, namespace: &str) {
        let group = r.group.as_deref().unwrap_or_default();
        if !group.is_empty() || r.name.is_empty() {
            return;
        }
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        let key = ObjectKey::new(ns, &r.name);
        match r.kind.as_deref().unwrap_or("Secret") {
            "Secret" => {
                self.secrets.insert(key);
            }
            "ConfigMap" => {
                self.config_maps.insert(key);
            }
            _ => {}
        }
    }

    fn secret(&mut self, namespace: &str, name: &str) {
        if !name.is_empty() {
            self.secrets.insert(ObjectKey::new(namespace, name));
        }
    }

    fn issuer(&mut self, spec: &IssuerSpec, namespace: &str) {
        let mut selector = |s: &SecretKeySelector| self.secret(namespace, &s.name);
        if let Some(acme) = &spec.acme {
            selector(&acme.private_key_secret_ref);
            if let Some(eab) = &acme.external_account_binding {
                selector(&eab.key_secret_ref);
            }
            for solver in &acme.solvers {
                if let Some(rfc2136) = solver.dns01.as_ref().and_then(|d| d.rfc2136.as_ref()) {
                    selector(&rfc2136.tsig_secret_secret_ref);
                }
            }
        }
        if let Some(ca) = &spec.ca {
            self.secret(namespace, &ca.secret_name);
        }
    }
}

/// Every Secret and ConfigMap `resources` refers to. A ClusterIssuer's
/// Secrets are in its cluster resource namespace.
pub fn referenced(resources: &Resources) -> Referenced {
    let cluster_resource_namespace = resources.cluster_resource_namespace();
    let mut out = Referenced::default();
    for gw in &resources.gateways {
        let ns = &gw.metadata.namespace;
        for l in &gw.spec.listeners {
            for r in l.tls.iter().flat_map(|t| &t.certificate_refs) {
                out.secret_object_ref(r, ns);
            }
        }
        let Some(tls) = &gw.spec.tls else { continue };
        if let Some(r) = tls
            .backend
            .as_ref()
            .and_then(|b| b.client_certificate_ref.as_ref())
        {
            out.secret_object_ref(r, ns);
        }
        if let Some(frontend) = &tls.frontend {
            let configs = frontend
                .default
                .iter()
                .chain(frontend.per_port.iter().map(|p| &p.tls));
            for c in configs {
                for r in c.validation.iter().flat_map(|v| &v.ca_certificate_refs) {
                    out.secret_object_ref(r, ns);
                }
            }
        }
    }
    for set in &resources.listener_sets {
        for l in &set.spec.listeners {
            for r in l.tls.iter().flat_map(|t| &t.certificate_refs) {
                out.secret_object_ref(r, &set.metadata.namespace);
            }
        }
    }
    for policy in &resources.backend_tls_policies {
        for r in &policy.spec.validation.ca_certificate_refs {
            if !r.group.is_empty() || r.name.is_empty() {
                continue;
            }
            let key = ObjectKey::new(&policy.metadata.namespace, &r.name);
            match r.kind.as_str() {
                "ConfigMap" => {
                    out.config_maps.insert(key);
                }
                "Secret" => {
                    out.secrets.insert(key);
                }
                _ => {}
            }
        }
    }
    for issuer in &resources.issuers {
        out.issuer(&issuer.spec, &issuer.metadata.namespace);
    }
    for issuer in &resources.cluster_issuers {
        out.issuer(&issuer.spec, cluster_resource_namespace);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load::parse_documents;

    fn resources(yaml: &str) -> Resources {
        let parsed = parse_documents(yaml, "t.yaml").expect("parses");
        let mut r = Resources::from_objects(parsed.objects);
        r.cluster_resource_namespace = "portcullis".into();
        r
    }

    #[test]
    fn certificate_refs_default_to_the_gateway_namespace_and_may_cross_it() {
        let r = resources(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: edge}\nspec:\n  gatewayClassName: c\n  listeners:\n  - name: a\n    port: 443\n    protocol: HTTPS\n    tls:\n      certificateRefs: [{name: own}, {name: shared, namespace: certs}, {name: x, group: example.com, kind: Vault}]\n",
        );
        let got = referenced(&r);
        assert_eq!(
            got.secrets,
            BTreeSet::from([
                ObjectKey::new("edge", "own"),
                ObjectKey::new("certs", "shared")
            ])
        );
        assert!(got.config_maps.is_empty());
    }

    #[test]
    fn frontend_and_backend_tls_refs_and_policy_bundles_are_read() {
        let r = resources(concat!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: edge}\nspec:\n  gatewayClassName: c\n",
            "  tls:\n    backend: {clientCertificateRef: {name: client}}\n",
            "    frontend:\n      default: {validation: {caCertificateRefs: [{kind: ConfigMap, name: clients-ca}]}}\n",
            "      perPort: [{port: 8443, tls: {validation: {caCertificateRefs: [{kind: Secret, name: port-ca}]}}}]\n",
            "  listeners: []\n---\n",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {name: p, namespace: apps}\nspec:\n  targetRefs: [{group: '', kind: Service, name: s}]\n  validation: {hostname: s.apps, caCertificateRefs: [{group: '', kind: ConfigMap, name: backend-ca}]}\n",
        ));
        let got = referenced(&r);
        assert_eq!(
            got.secrets,
            BTreeSet::from([
                ObjectKey::new("edge", "client"),
                ObjectKey::new("edge", "port-ca")
            ])
        );
        assert_eq!(
            got.config_maps,
            BTreeSet::from([
                ObjectKey::new("edge", "clients-ca"),
                ObjectKey::new("apps", "backend-ca")
            ])
        );
    }

    #[test]
    fn cluster_issuer_secrets_are_in_the_cluster_resource_namespace() {
        let r = resources(concat!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterIssuer\nmetadata: {name: le}\nspec:\n  acme:\n    server: https://ca.test/dir\n    privateKeySecretRef: {name: le-account}\n",
            "    externalAccountBinding: {keyID: k, keySecretRef: {name: eab}}\n",
            "    solvers: [{dns01: {rfc2136: {nameserver: ns.test, tsigKeyName: k, tsigSecretSecretRef: {name: tsig}}}}]\n---\n",
            "apiVersion: portcullis.dev/v1alpha1\nkind: Issuer\nmetadata: {name: ca, namespace: team}\nspec: {ca: {secretName: team-ca}}\n",
        ));
        let got = referenced(&r);
        assert_eq!(
            got.secrets,
            BTreeSet::from([
                ObjectKey::new("portcullis", "le-account"),
                ObjectKey::new("portcullis", "eab"),
                ObjectKey::new("portcullis", "tsig"),
                ObjectKey::new("team", "team-ca"),
            ])
        );
    }
}
