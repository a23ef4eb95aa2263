//! Frontend client-certificate validation (Gateway `spec.tls.frontend`): the
//! settings that apply to a terminating listener (its port's `perPort` entry,
//! else `default`), their CA references resolved into a rustls verifier, and
//! the listener conditions when they do not resolve.

use super::listeners::ListenerState;
use super::refs::{self, Referrer, Target, GATEWAY_GROUP};
use super::{Ctx, Problem};
use crate::model::gateway::FrontendValidation;
use crate::status::Reason;

/// Resolves the frontend validation of a terminating listener into
/// `l.client_auth`; a bad reference makes the listener unresolved and not
/// accepted (it must not serve without the validation the user asked for).
pub(crate) fn resolve(l: &mut ListenerState<'_>, ctx: &Ctx<'_>) {
    let Some(validation) = validation_for(l) else {
        return;
    };
    match verifier(l, validation, ctx) {
        Ok(v) => l.client_auth = Some(std::sync::Arc::new(v)),
        Err(p) => {
            l.rejected.get_or_insert(Problem::new(
                Reason::NoValidCACertificate,
                format!("frontend validation unusable: {}", p.message),
            ));
            l.unresolved = Some(p);
        }
    }
}

/// The validation settings for the listener's port.
fn validation_for<'a>(l: &ListenerState<'a>) -> Option<&'a FrontendValidation> {
    let frontend = l.gateway.spec.tls.as_ref()?.frontend.as_ref()?;
    let config = frontend
        .per_port
        .iter()
        .find(|p| p.port == l.spec.port)
        .map(|p| &p.tls)
        .or(frontend.default.as_ref())?;
    config.validation.as_ref()
}

fn verifier(
    l: &ListenerState<'_>,
    validation: &FrontendValidation,
    ctx: &Ctx<'_>,
) -> Result<crate::tls::client_auth::ClientAuth, Problem> {
    let gw = &l.gateway.metadata;
    if validation.ca_certificate_refs.is_empty() {
        return Err(Problem::new(
            Reason::InvalidCACertificateRef,
            "frontend validation lists no caCertificateRefs",
        ));
    }
    let mut pems = Vec::new();
    for r in &validation.ca_certificate_refs {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("ConfigMap");
        if !group.is_empty() || kind != "ConfigMap" {
            return Err(Problem::new(
                Reason::InvalidCACertificateKind,
                format!("caCertificateRef kind {group}/{kind} is not supported (use a ConfigMap)"),
            ));
        }
        let ns = r.namespace.as_deref().unwrap_or(&gw.namespace);
        let from = Referrer {
            group: GATEWAY_GROUP,
            kind: "Gateway",
            namespace: &gw.namespace,
        };
        let to = Target {
            group: "",
            kind: "ConfigMap",
            namespace: ns,
            name: &r.name,
        };
        if !refs::is_permitted(ctx.resources, from, to) {
            return Err(Problem::new(
                Reason::RefNotPermitted,
                format!(
                    "no ReferenceGrant allows a reference to ConfigMap {ns}/{}",
                    r.name
                ),
            ));
        }
        let pem = ctx
            .resources
            .config_map(ns, &r.name)
            .and_then(|c| c.data.get("ca.crt"))
            .ok_or_else(|| {
                Problem::new(
                    Reason::InvalidCACertificateRef,
                    format!("ConfigMap {ns}/{} with key ca.crt not found", r.name),
                )
            })?;
        pems.push(pem.as_str());
    }
    let insecure = validation.mode.as_deref() == Some("AllowInsecureFallback");
    crate::tls::client_auth::ClientAuth::new(&pems, insecure)
        .map_err(|e| Problem::new(Reason::InvalidCACertificateRef, e.to_string()))
}
