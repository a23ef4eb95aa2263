//! Status assertions of the TLS-related conformance cases: TLSRoute
//! (passthrough and terminate listeners, route parent conditions),
//! BackendTLSPolicy (object-level Accepted/ResolvedRefs), frontend client
//! certificate validation (listener conditions, `InsecureFrontendValidationMode`)
//! and the Gateway's backend client certificate (object-level ResolvedRefs).

use super::{attached, cond, listener, parent_cond, supported_kinds, Status, INFRA, R};
use serde_json::Value;

/// Runs the encoded status checks of a TLS-related `case` (None: not one).
pub(super) fn check(case: &str, s: &Status<'_>) -> Option<R> {
    Some(match case {
        "TLSRouteInvalidBackendRefNonexistent" => accepted_unresolved_tls(
            s,
            "invalid-backend-ref-nonexistent",
            "gateway-tlsroute-invalid-backend-ref-nonexistent",
            "BackendNotFound",
        ),
        "TLSRouteInvalidBackendRefUnknownKind" => accepted_unresolved_tls(
            s,
            "invalid-backend-ref-unknown-kind",
            "gateway-tlsroute-invalid-backend-ref-unknown-kind",
            "InvalidKind",
        ),
        "TLSRouteInvalidReferenceGrant" => accepted_unresolved_tls(
            s,
            "gateway-conformance-infra-test",
            "gateway-tlsroute-referencegrant",
            "RefNotPermitted",
        ),
        "TLSRouteInvalidNoMatchingListenerHostname" => (|| {
            for (route, gw) in [
                ("tlsroute-hostname-mismatch-1", "gateway-tls-exact-hostname"),
                (
                    "tlsroute-hostname-mismatch-2",
                    "gateway-tls-wildcard-hostname",
                ),
            ] {
                rejected_tls(s, route, gw, "NoMatchingListenerHostname")?;
                attached(listener(s.gateway(gw)?, "tls")?, 0)?;
            }
            Ok(())
        })(),
        "TLSRouteInvalidNoMatchingListener" => (|| {
            rejected_tls(
                s,
                "tlsroute-not-allowed-protocol-http",
                "gateway-tlsroute-http-only",
                "NotAllowedByListeners",
            )?;
            rejected_tls(
                s,
                "tlsroute-not-allowed-protocol-https",
                "gateway-tlsroute-https-only",
                "NotAllowedByListeners",
            )?;
            rejected_tls(
                s,
                "tlsroute-no-matching-section-name",
                "gateway-tlsroute-tls-passthrough-only",
                "NoMatchingParent",
            )?;
            attached(
                listener(s.gateway("gateway-tlsroute-http-only")?, "http")?,
                0,
            )?;
            attached(
                listener(s.gateway("gateway-tlsroute-https-only")?, "https")?,
                0,
            )
        })(),
        "TLSRouteListenerPassthroughSupportedKinds" => (|| {
            let l = listener(
                s.gateway("gateway-tlsroute-passthrough-supported-kind")?,
                "tls-passthrough",
            )?;
            kinds_exactly(l, &["TLSRoute"])?;
            cond(l, "ResolvedRefs", "False", Some("InvalidRouteKinds"))?;
            attached(l, 0)
        })(),
        "TLSRouteListenerTerminateSupportedKinds" => (|| {
            let l = listener(
                s.gateway("gateway-tlsroute-terminate-supported")?,
                "tls-terminate",
            )?;
            kinds_exactly(l, &["TLSRoute"])?;
            cond(l, "Accepted", "True", Some("Accepted"))?;
            attached(l, 0)
        })(),
        "TLSRouteMixedTerminationSameNamespace" => (|| {
            let g = s.gateway("gateway-tlsroute-mixed-termination")?;
            for name in ["tls-terminate", "tls-passthrough"] {
                let l = listener(g, name)?;
                cond(l, "Accepted", "True", Some("Accepted"))?;
                kinds_exactly(l, &["TLSRoute"])?;
                attached(l, 1)?;
            }
            Ok(())
        })(),
        "HTTPRouteDisallowedKind" => (|| {
            let r = s.route(INFRA, "disallowed-kind")?;
            parent_cond(
                r,
                "Gateway",
                "tlsroutes-only",
                "Accepted",
                "False",
                Some("NotAllowedByListeners"),
            )?;
            no_accepted_parent(r)?;
            let l = listener(s.gateway("tlsroutes-only")?, "tls")?;
            cond(l, "ResolvedRefs", "True", None)?;
            attached(l, 0)
        })(),
        "ListenerSetAllowedRoutesSupportedKinds" => (|| {
            cond(
                s.gateway("gateway-with-listener-sets-test-supported-route-kinds")?,
                "Accepted",
                "True",
                None,
            )?;
            let ls = s.listener_set(INFRA, "listenerset-test-allowed-routes-supported-kinds")?;
            cond(
                listener(ls, "listener-set-listener-allowed-routes-tls-only")?,
                "ResolvedRefs",
                "False",
                Some("InvalidRouteKinds"),
            )
        })(),
        "BackendTLSPolicy" => policies_valid(
            s,
            &[
                "normative-test",
                "host-mismatch",
                "cert-mismatch",
                "reconcile-test",
            ],
        ),
        "BackendTLSPolicySANValidation" => (|| {
            for p in [
                "san-dns",
                "san-dns-mismatch",
                "san-uri",
                "san-uri-mismatch",
                "multiple-sans",
                "multiple-mismatch-sans",
            ] {
                cond(s.policy(p)?, "Accepted", "True", Some("Accepted"))?;
            }
            Ok(())
        })(),
        "BackendTLSPolicyConflictResolution" => (|| {
            for p in [
                "conflicted-without-section-name-1",
                "conflicted-with-section-name-1",
            ] {
                cond(s.policy(p)?, "Accepted", "True", Some("Accepted"))?;
            }
            for p in [
                "conflicted-without-section-name-2",
                "conflicted-with-section-name-2",
            ] {
                cond(s.policy(p)?, "Accepted", "False", Some("Conflicted"))?;
            }
            for p in [
                "not-conflicted-with-section-name",
                "not-conflicted-without-section-name",
            ] {
                cond(s.policy(p)?, "Accepted", "True", None)?;
            }
            Ok(())
        })(),
        "BackendTLSPolicyTLSRouteTerminate" => policies_valid(s, &["btls-tlsroute-terminate-test"]),
        "BackendTLSPolicyInvalidCACertificateRef" => (|| {
            for p in [
                "nonexistent-ca-certificate-ref",
                "malformed-ca-certificate-ref",
            ] {
                let o = s.policy(p)?;
                cond(o, "Accepted", "False", Some("NoValidCACertificate"))?;
                cond(o, "ResolvedRefs", "False", Some("InvalidCACertificateRef"))?;
            }
            Ok(())
        })(),
        "BackendTLSPolicyInvalidKind" => (|| {
            let o = s.policy("invalid-kind")?;
            cond(o, "Accepted", "False", Some("NoValidCACertificate"))?;
            cond(o, "ResolvedRefs", "False", Some("InvalidKind"))
        })(),
        "GatewayTLSBackendClientCertificate" => (|| {
            cond(
                s.gateway("gateway-tls-backend-client-certificate")?,
                "ResolvedRefs",
                "True",
                Some("ResolvedRefs"),
            )?;
            cond(
                s.policy("gateway-tls-backend-client-certificate-test")?,
                "Accepted",
                "True",
                None,
            )
        })(),
        "GatewayInvalidTLSBackendConfiguration" => (|| {
            for (gw, reason) in [
                (
                    "gateway-client-certificate-nonexistent-secret",
                    "InvalidClientCertificateRef",
                ),
                (
                    "gateway-client-certificate-unsupported-group",
                    "InvalidClientCertificateRef",
                ),
                (
                    "gateway-client-certificate-unsupported-kind",
                    "InvalidClientCertificateRef",
                ),
                (
                    "gateway-client-certificate-malformed-secret",
                    "InvalidClientCertificateRef",
                ),
                (
                    "gateway-client-certificate-missing-reference-grant",
                    "RefNotPermitted",
                ),
            ] {
                let g = s.gateway(gw)?;
                cond(g, "Accepted", "True", None)?;
                cond(g, "ResolvedRefs", "False", Some(reason))?;
            }
            Ok(())
        })(),
        "GatewayInvalidFrontendClientCertificateValidation" => (|| {
            let g = s.gateway("gateway-with-invalid-client-cert-validation")?;
            let l = listener(g, "https")?;
            for ty in ["ResolvedRefs", "Accepted", "Programmed"] {
                cond(l, ty, "True", None)?;
            }
            for (name, reason) in [
                ("https-unresolved", "InvalidCACertificateRef"),
                ("https-invalid-kind", "InvalidCACertificateKind"),
                ("https-grant-missing", "RefNotPermitted"),
            ] {
                let l = listener(g, name)?;
                cond(l, "ResolvedRefs", "False", Some(reason))?;
                cond(l, "Accepted", "False", Some("NoValidCACertificate"))?;
                cond(l, "Programmed", "False", None)?;
            }
            Ok(())
        })(),
        "GatewayFrontendInvalidDefaultClientCertificateValidation" => (|| {
            let g = s.gateway("invalid-default-client-validation-config")?;
            let l = listener(g, "http")?;
            for ty in ["ResolvedRefs", "Accepted", "Programmed"] {
                cond(l, ty, "True", None)?;
            }
            let l = listener(g, "https")?;
            cond(l, "ResolvedRefs", "False", Some("InvalidCACertificateRef"))?;
            cond(l, "Accepted", "False", Some("NoValidCACertificate"))?;
            cond(l, "Programmed", "False", None)
        })(),
        "GatewayFrontendClientCertificateValidationInsecureFallback" => s
            .gateway("client-validation-insecure-fallback")
            .and_then(|g| {
                cond(
                    g,
                    "InsecureFrontendValidationMode",
                    "True",
                    Some("ConfigurationChanged"),
                )
            }),
        _ => return None,
    })
}

impl<'a> Status<'a> {
    fn tls_route(&self, name: &str) -> Result<&'a Value, String> {
        self.find("TLSRoute", INFRA, name)
    }
    fn policy(&self, name: &str) -> Result<&'a Value, String> {
        self.find("BackendTLSPolicy", INFRA, name)
    }
}

/// Accepted=True and ResolvedRefs=False/`reason` on the route's parent `gw`.
fn accepted_unresolved_tls(s: &Status<'_>, route: &str, gw: &str, reason: &str) -> R {
    let r = s.tls_route(route)?;
    parent_cond(r, "Gateway", gw, "Accepted", "True", None)?;
    parent_cond(r, "Gateway", gw, "ResolvedRefs", "False", Some(reason))
}

/// Accepted=False/`reason` on the route's parent `gw`, and no parent accepts it.
fn rejected_tls(s: &Status<'_>, route: &str, gw: &str, reason: &str) -> R {
    let r = s.tls_route(route)?;
    parent_cond(r, "Gateway", gw, "Accepted", "False", Some(reason))?;
    no_accepted_parent(r)
}

fn no_accepted_parent(route: &Value) -> R {
    let accepted = route["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| cond(p, "Accepted", "True", None).is_ok())
        .count();
    if accepted > 0 {
        return Err(format!(
            "{} {}: {accepted} parent(s) accept it, expected none",
            route["kind"], route["name"]
        ));
    }
    Ok(())
}

/// supportedKinds lists exactly `kinds` (upstream compares the whole list here).
fn kinds_exactly(l: &Value, kinds: &[&str]) -> R {
    supported_kinds(l, kinds)?;
    let n = l["supportedKinds"].as_array().map_or(0, Vec::len);
    if n != kinds.len() {
        return Err(format!(
            "listener {}: supportedKinds {}, expected exactly {kinds:?}",
            l["name"], l["supportedKinds"]
        ));
    }
    Ok(())
}

/// Each policy Accepted=True/Accepted and ResolvedRefs=True/ResolvedRefs.
fn policies_valid(s: &Status<'_>, names: &[&str]) -> R {
    for p in names {
        let o = s.policy(p)?;
        cond(o, "Accepted", "True", Some("Accepted"))?;
        cond(o, "ResolvedRefs", "True", Some("ResolvedRefs"))?;
    }
    Ok(())
}

/// BackendTLSPolicy `ns/name` has Accepted and ResolvedRefs with the given
/// (status, reason) pairs.
pub fn policy_conditions(
    st: &Value,
    ns: &str,
    name: &str,
    accepted: (&str, &str),
    resolved: (&str, &str),
) -> R {
    let o = Status(st).find("BackendTLSPolicy", ns, name)?;
    cond(o, "Accepted", accepted.0, Some(accepted.1))?;
    cond(o, "ResolvedRefs", resolved.0, Some(resolved.1))
}
