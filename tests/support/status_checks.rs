//! Status assertions of conformance cases, encoded per case name against the
//! JSON of portcullis's `GET /status` (objects with conditions, listeners and
//! route parents). [`check`] returns `None` for cases not encoded (yet), so the
//! harness can report them instead of passing silently.

use serde_json::Value;

mod tls;

pub use tls::policy_conditions;

type R = Result<(), String>;

const INFRA: &str = "gateway-conformance-infra";

/// Runs the encoded status checks of `case` (None: not encoded).
pub fn check(case: &str, st: &Value) -> Option<R> {
    let s = Status(st);
    Some(match case {
        "GatewayListenerUnsupportedProtocol" => (|| {
            let g = s.gateway("gateway-only-unsupported-protocols")?;
            cond(g, "Accepted", "False", Some("ListenersNotValid"))?;
            cond(
                listener(g, "invalid")?,
                "Accepted",
                "False",
                Some("UnsupportedProtocol"),
            )?;
            let g = s.gateway("gateway-supported-and-unsupported-protocols")?;
            cond(g, "Accepted", "True", None)?;
            cond(
                listener(g, "invalid")?,
                "Accepted",
                "False",
                Some("UnsupportedProtocol"),
            )?;
            cond(listener(g, "http")?, "Accepted", "True", None)
        })(),
        "GatewayInvalidParametersRef" => s
            .gateway("gateway-invalid-parameters-ref")
            .and_then(|g| cond(g, "Accepted", "False", Some("InvalidParameters"))),
        "GatewayInvalidRouteKind" => (|| {
            let l = listener(s.gateway("gateway-only-invalid-route-kind")?, "http")?;
            cond(l, "ResolvedRefs", "False", Some("InvalidRouteKinds"))?;
            supported_kinds(l, &[])?;
            let l = listener(
                s.gateway("gateway-supported-and-invalid-route-kind")?,
                "http",
            )?;
            cond(l, "ResolvedRefs", "False", Some("InvalidRouteKinds"))?;
            supported_kinds(l, &["HTTPRoute"])
        })(),
        "GatewayInvalidTLSConfiguration" => (|| {
            for gw in [
                "gateway-certificate-nonexistent-secret",
                "gateway-certificate-unsupported-group",
                "gateway-certificate-unsupported-kind",
                "gateway-certificate-malformed-secret",
            ] {
                let l = listener(s.gateway(gw)?, "https")?;
                cond(l, "ResolvedRefs", "False", Some("InvalidCertificateRef"))
                    .map_err(|e| format!("{gw}: {e}"))?;
                supported_kinds(l, &["HTTPRoute"])?;
                attached(l, 0)?;
            }
            Ok(())
        })(),
        "GatewayNameMaximumLength" => (|| {
            let name = s
                .find_prefix("Gateway", INFRA, "gateway-name-maximum-length-")
                .ok_or("Gateway gateway-name-maximum-length-… missing from status")?;
            cond(name, "Accepted", "True", None)
        })(),
        "GatewaySecretInvalidReferenceGrant" | "GatewaySecretMissingReferenceGrant" => (|| {
            let gw = if case.contains("Invalid") {
                "gateway-secret-invalid-reference-grant"
            } else {
                "gateway-secret-missing-reference-grant"
            };
            let l = listener(s.gateway(gw)?, "https")?;
            cond(l, "ResolvedRefs", "False", Some("RefNotPermitted"))?;
            attached(l, 0)
        })(),
        "GatewaySecretReferenceGrantAllInNamespace" | "GatewaySecretReferenceGrantSpecific" => {
            (|| {
                let gw = if case.ends_with("AllInNamespace") {
                    "gateway-secret-reference-grant-all-in-namespace"
                } else {
                    "gateway-secret-reference-grant-specific"
                };
                let l = listener(s.gateway(gw)?, "https")?;
                cond(l, "ResolvedRefs", "True", None)?;
                cond(l, "Programmed", "True", Some("Programmed"))
            })()
        }
        "GatewayWithAttachedRoutes" => (|| {
            attached(
                listener(s.gateway("gateway-with-one-attached-route")?, "http")?,
                1,
            )?;
            attached(
                listener(s.gateway("gateway-with-two-attached-routes")?, "http")?,
                2,
            )?;
            let l = listener(
                s.gateway("unresolved-gateway-with-one-attached-unresolved-route")?,
                "tls",
            )?;
            cond(l, "Programmed", "False", None)?;
            cond(l, "ResolvedRefs", "False", None)?;
            attached(l, 1)?;
            let r = s.route(INFRA, "http-route-4")?;
            parent_cond(
                r,
                "Gateway",
                "unresolved-gateway-with-one-attached-unresolved-route",
                "ResolvedRefs",
                "False",
                None,
            )
        })(),
        "GatewayWithAttachedRoutesWithPort8080" => (|| {
            let g = s.gateway("gateway-with-two-listeners-and-one-attached-route")?;
            attached(listener(g, "http")?, 1)?;
            attached(listener(g, "http-unattached")?, 0)
        })(),
        "HTTPRouteInvalidCrossNamespaceParentRef" => (|| {
            let r = s.route(
                "gateway-conformance-web-backend",
                "invalid-cross-namespace-parent-ref",
            )?;
            parent_cond(
                r,
                "Gateway",
                "same-namespace",
                "Accepted",
                "False",
                Some("NotAllowedByListeners"),
            )?;
            attached(listener(s.gateway("same-namespace")?, "http")?, 0)
        })(),
        "HTTPRouteInvalidParentRefNotMatchingListenerPort" => rejected_route(
            &s,
            "httproute-listener-not-matching-route-port",
            "same-namespace",
        ),
        "HTTPRouteInvalidParentRefNotMatchingSectionName" => rejected_route(
            &s,
            "httproute-listener-not-matching-section-name",
            "same-namespace",
        ),
        "HTTPRouteInvalidParentRefSectionNameNotMatchingPort" => rejected_route(
            &s,
            "httproute-listener-section-name-not-matching-port",
            "gateway-with-one-not-matching-port-and-section-name-route",
        ),
        "ListenerSetAllowedNamespaceNone" => not_allowed(
            &s,
            "gateway-does-not-allow-listenerset",
            INFRA,
            "listenerset-not-allowed",
        ),
        "ListenerSetDefaultNotAllowed" => not_allowed(
            &s,
            "gateway-default-does-not-allow-listenerset",
            INFRA,
            "listenerset-default-not-allowed",
        ),
        "ListenerSetAllowedNamespaceSame" => (|| {
            let ls = s.listener_set(INFRA, "listenerset-in-same-namespace")?;
            cond(ls, "Accepted", "True", None)?;
            cond(ls, "Programmed", "True", None)?;
            cond(
                listener(ls, "listenerset-in-same-namespace-listener")?,
                "Accepted",
                "True",
                None,
            )?;
            let other = s.listener_set(
                "gateway-api-listenerset-not-allowed-ns",
                "listenerset-in-different-namespace",
            )?;
            cond(other, "Accepted", "False", Some("NotAllowed"))?;
            cond(other, "Programmed", "False", Some("NotAllowed"))?;
            attached_listener_sets(
                s.gateway("gateway-allows-listenerset-in-same-namespace")?,
                1,
            )
        })(),
        "ListenerSetAllowedNamespaceSelector" => (|| {
            let ls = s.listener_set(
                "gateway-api-listenerset-selector-allowed-ns",
                "listenerset-in-selected-namespace",
            )?;
            cond(ls, "Accepted", "True", None)?;
            cond(ls, "Programmed", "True", None)?;
            let other = s.listener_set(
                "gateway-api-listenerset-selector-not-allowed-ns",
                "listenerset-not-in-selected-namespace",
            )?;
            cond(other, "Accepted", "False", Some("NotAllowed"))?;
            cond(other, "Programmed", "False", Some("NotAllowed"))?;
            attached_listener_sets(
                s.gateway("gateway-allows-listenerset-in-selected-namespace")?,
                1,
            )
        })(),
        "ListenerSetHostnameConflict" => conflicts(&s, "hostname", "HostnameConflict"),
        "ListenerSetProtocolConflict" => conflicts(&s, "protocol", "ProtocolConflict"),
        "ListenerSetReferenceGrant" => (|| {
            let ls = s.listener_set(INFRA, "listenerset-with-reference-grant")?;
            cond(
                listener(ls, "listenerset-with-reference-grant-listener")?,
                "ResolvedRefs",
                "True",
                None,
            )?;
            cond(ls, "Accepted", "True", None)?;
            cond(ls, "Programmed", "True", None)?;
            let ls = s.listener_set(
                "gateway-api-listener-sets-test-reference-grant-ns",
                "listenerset-without-reference-grant",
            )?;
            cond(
                listener(ls, "listenerset-without-reference-grant-listener")?,
                "ResolvedRefs",
                "False",
                Some("RefNotPermitted"),
            )?;
            cond(ls, "Accepted", "False", Some("ListenersNotValid"))?;
            cond(ls, "Programmed", "False", Some("ListenersNotValid"))
        })(),
        "ListenerSetRouteStatusScopedToParentRef" => (|| {
            let r = s.route(INFRA, "route-parentref-gwonly")?;
            parents_exactly(r, &["Gateway"])?;
            parent_cond(r, "Gateway", "gateway-parentref", "Accepted", "True", None)?;
            let r = s.route(INFRA, "route-parentref-lsonly")?;
            parents_exactly(r, &["ListenerSet"])?;
            parent_cond(
                r,
                "ListenerSet",
                "listenerset-parentref",
                "Accepted",
                "True",
                None,
            )?;
            attached(
                listener(
                    s.listener_set(INFRA, "listenerset-parentref")?,
                    "listenerset-parentref-listener",
                )?,
                1,
            )?;
            attached_listener_sets(s.gateway("gateway-parentref")?, 1)
        })(),
        "HTTPRouteHostnameIntersection" => (|| {
            let r = s.route(INFRA, "no-intersecting-hosts")?;
            parent_cond(
                r,
                "Gateway",
                "httproute-hostname-intersection",
                "Accepted",
                "False",
                Some("NoMatchingListenerHostname"),
            )?;
            let g = s.gateway("httproute-hostname-intersection")?;
            attached(listener(g, "listener-1")?, 2)?;
            attached(listener(g, "listener-2")?, 1)?;
            attached(listener(g, "listener-3")?, 1)
        })(),
        "HTTPRouteInvalidReferenceGrant" => (|| {
            let r = s.route(INFRA, "reference-grant")?;
            parent_cond(
                r,
                "Gateway",
                "same-namespace",
                "ResolvedRefs",
                "False",
                Some("RefNotPermitted"),
            )
        })(),
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant" => {
            accepted_unresolved(&s, "invalid-reference-grant", "RefNotPermitted")
        }
        "HTTPRouteInvalidCrossNamespaceBackendRef" => {
            accepted_unresolved(&s, "invalid-cross-namespace-backend-ref", "RefNotPermitted")
        }
        "HTTPRouteInvalidNonExistentBackendRef" => {
            accepted_unresolved(&s, "invalid-nonexistent-backend-ref", "BackendNotFound")
        }
        "HTTPRouteInvalidBackendRefUnknownKind" => {
            accepted_unresolved(&s, "invalid-backend-ref-unknown-kind", "InvalidKind")
        }
        "ListenerSetHTTPRouting" => (|| {
            attached_listener_sets(s.gateway("gateway-with-listener-sets-http-routing")?, 2)?;
            for (ls, counts) in [
                ("listener-set-http-routing-1", [3, 2]),
                ("listener-set-http-routing-2", [2, 2]),
            ] {
                let o = s.listener_set(INFRA, ls)?;
                for (i, n) in counts.iter().enumerate() {
                    let l = listener(o, &format!("{ls}-listener-{}", i + 1))?;
                    cond(l, "Accepted", "True", None)?;
                    supported_kinds(l, &["HTTPRoute"])?;
                    attached(l, *n).map_err(|e| format!("{ls} listener {}: {e}", i + 1))?;
                }
            }
            Ok(())
        })(),
        "ListenerSetAllowedRoutesNamespaces" => (|| {
            let g = s.gateway("gateway-with-listener-sets-test-allowed-routes")?;
            cond(g, "Accepted", "True", None)?;
            attached_listener_sets(g, 2)?;
            let ls = s.listener_set(INFRA, "listenerset-test-allowed-routes-namespaces")?;
            for (l, n) in [
                ("listener-set-listener-allowed-routes-all", 3),
                ("listener-set-listener-allowed-routes-same", 1),
                ("listener-set-listener-allowed-routes-selector", 1),
            ] {
                let l = listener(ls, l)?;
                cond(l, "Accepted", "True", None)?;
                attached(l, n)?;
            }
            Ok(())
        })(),
        "ListenerSetDualParentRefIndependence" => (|| {
            let r = s.route(INFRA, "route-dual-parentref-both")?;
            parent_kind_cond(r, "Gateway", "Accepted", "True", None)?;
            parent_kind_cond(r, "ListenerSet", "Accepted", "True", None)?;
            let r = s.route(INFRA, "route-dual-parentref-one")?;
            parent_kind_cond(r, "Gateway", "Accepted", "False", Some("NoMatchingParent"))?;
            parent_kind_cond(r, "ListenerSet", "Accepted", "True", None)
        })(),
        "ListenerSetGatewayParentSectionNameNotFound" => (|| {
            parent_kind_cond(
                s.route(INFRA, "route-via-listenerset")?,
                "ListenerSet",
                "Accepted",
                "True",
                None,
            )?;
            parent_kind_cond(
                s.route(INFRA, "route-via-gateway")?,
                "Gateway",
                "Accepted",
                "False",
                Some("NoMatchingParent"),
            )
        })(),
        _ => return tls::check(case, &s),
    })
}

struct Status<'a>(&'a Value);

impl<'a> Status<'a> {
    fn objects(&self) -> impl Iterator<Item = &'a Value> {
        self.0["objects"].as_array().into_iter().flatten()
    }
    fn find(&self, kind: &str, ns: &str, name: &str) -> Result<&'a Value, String> {
        self.objects()
            .find(|o| {
                kind_matches(o["kind"].as_str().unwrap_or_default(), kind)
                    && o["namespace"] == ns
                    && o["name"] == name
            })
            .ok_or_else(|| format!("{kind} {ns}/{name} missing from status"))
    }
    fn find_prefix(&self, kind: &str, ns: &str, prefix: &str) -> Option<&'a Value> {
        self.objects().find(|o| {
            o["kind"] == kind
                && o["namespace"] == ns
                && o["name"].as_str().unwrap_or_default().starts_with(prefix)
        })
    }
    fn gateway(&self, name: &str) -> Result<&'a Value, String> {
        self.find("Gateway", INFRA, name)
    }
    fn route(&self, ns: &str, name: &str) -> Result<&'a Value, String> {
        self.find("HTTPRoute", ns, name)
    }
    fn listener_set(&self, ns: &str, name: &str) -> Result<&'a Value, String> {
        self.find("ListenerSet", ns, name)
    }
}

fn kind_matches(actual: &str, wanted: &str) -> bool {
    actual == wanted || (wanted == "ListenerSet" && actual == "XListenerSet")
}

fn name_of(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or("listener"),
        o["namespace"].as_str().unwrap_or(""),
        o["name"].as_str().unwrap_or("")
    )
}

/// Checks condition `ty` of an object, listener or parent entry.
fn cond(o: &Value, ty: &str, status: &str, reason: Option<&str>) -> R {
    let c = o["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty)
        .ok_or_else(|| format!("{}: no {ty} condition", name_of(o)))?;
    if c["status"] != status || reason.is_some_and(|r| c["reason"] != r) {
        return Err(format!(
            "{}: expected {ty}={status}{}, got {}={} ({})",
            name_of(o),
            reason.map(|r| format!("/{r}")).unwrap_or_default(),
            ty,
            c["status"],
            c["reason"]
        ));
    }
    Ok(())
}

fn listener<'a>(o: &'a Value, name: &str) -> Result<&'a Value, String> {
    o["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .ok_or_else(|| format!("{}: no listener {name} in status", name_of(o)))
}

fn attached(l: &Value, n: u64) -> R {
    match l["attachedRoutes"].as_u64() {
        Some(got) if got == n => Ok(()),
        got => Err(format!(
            "listener {}: attachedRoutes {got:?}, expected {n}",
            l["name"]
        )),
    }
}

/// The number of attached ListenerSets: the `attachedListenerSets` field when
/// the status has one, else the leading number of the `AttachedListenerSets`
/// condition's message ("N ListenerSets attached"), whose status must be True
/// exactly when N > 0.
fn attached_listener_sets(g: &Value, n: u64) -> R {
    let got = g["attachedListenerSets"].as_u64().or_else(|| {
        let c = g["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "AttachedListenerSets")?;
        let count: u64 = c["message"]
            .as_str()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let consistent = (c["status"] == "True") == (count > 0);
        consistent.then_some(count)
    });
    match got {
        Some(got) if got == n => Ok(()),
        got => Err(format!(
            "{}: attached ListenerSets {got:?}, expected {n}",
            name_of(g)
        )),
    }
}

/// Like upstream's listener comparison: every expected kind must be listed
/// (an implementation may support more); an empty expectation means empty.
fn supported_kinds(l: &Value, kinds: &[&str]) -> R {
    let got: Vec<String> = l["supportedKinds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            k.as_str()
                .or_else(|| k["kind"].as_str())
                .map(str::to_string)
        })
        .collect();
    let ok = if kinds.is_empty() {
        got.is_empty()
    } else {
        kinds.iter().all(|k| got.iter().any(|g| g == k))
    };
    if !ok {
        return Err(format!(
            "listener {}: supportedKinds {got:?}, expected {kinds:?}",
            l["name"]
        ));
    }
    Ok(())
}

fn parent<'a>(route: &'a Value, kind: &str, name: Option<&str>) -> Result<&'a Value, String> {
    route["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            kind_matches(p["parentRef"]["kind"].as_str().unwrap_or("Gateway"), kind)
                && name.is_none_or(|n| p["parentRef"]["name"] == n)
        })
        .ok_or_else(|| {
            format!(
                "{}: no parent entry for {kind} {}",
                name_of(route),
                name.unwrap_or("*")
            )
        })
}

fn parent_cond(
    route: &Value,
    kind: &str,
    name: &str,
    ty: &str,
    status: &str,
    reason: Option<&str>,
) -> R {
    cond(parent(route, kind, Some(name))?, ty, status, reason)
        .map_err(|e| format!("{} parent {name}: {e}", name_of(route)))
}

fn parent_kind_cond(route: &Value, kind: &str, ty: &str, status: &str, reason: Option<&str>) -> R {
    cond(parent(route, kind, None)?, ty, status, reason)
        .map_err(|e| format!("{} parent {kind}: {e}", name_of(route)))
}

fn parents_exactly(route: &Value, kinds: &[&str]) -> R {
    let got: Vec<&str> = route["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["parentRef"]["kind"].as_str().unwrap_or("Gateway"))
        .collect();
    if got.len() != kinds.len() || !got.iter().zip(kinds).all(|(g, k)| kind_matches(g, k)) {
        return Err(format!(
            "{}: parents {got:?}, expected {kinds:?}",
            name_of(route)
        ));
    }
    Ok(())
}

fn rejected_route(s: &Status<'_>, route: &str, gateway: &str) -> R {
    let r = s.route(INFRA, route)?;
    parent_cond(
        r,
        "Gateway",
        gateway,
        "Accepted",
        "False",
        Some("NoMatchingParent"),
    )?;
    attached(listener(s.gateway(gateway)?, "http")?, 0)
}

fn accepted_unresolved(s: &Status<'_>, route: &str, reason: &str) -> R {
    let r = s.route(INFRA, route)?;
    parent_cond(r, "Gateway", "same-namespace", "Accepted", "True", None)?;
    parent_cond(
        r,
        "Gateway",
        "same-namespace",
        "ResolvedRefs",
        "False",
        Some(reason),
    )
}

fn not_allowed(s: &Status<'_>, gateway: &str, ns: &str, ls: &str) -> R {
    let g = s.gateway(gateway)?;
    cond(g, "Accepted", "True", None)?;
    attached_listener_sets(g, 0)?;
    let l = s.listener_set(ns, ls)?;
    cond(l, "Accepted", "False", Some("NotAllowed"))?;
    cond(l, "Programmed", "False", Some("NotAllowed"))
}

fn conflicts(s: &Status<'_>, what: &str, reason: &str) -> R {
    let ls1 = s.listener_set(
        INFRA,
        &format!("listenerset-with-{what}-conflict-with-gateway-1"),
    )?;
    let l = listener(ls1, &format!("{what}-conflict-with-gateway-listener"))?;
    cond(l, "Accepted", "False", None)?;
    cond(l, "Programmed", "False", None)?;
    cond(l, "Conflicted", "True", Some(reason))?;
    cond(
        listener(ls1, "listener-set-1-listener")?,
        "Accepted",
        "True",
        None,
    )?;
    for full in ["gateway-2", "listener-set-2"] {
        let ls = s.listener_set(
            INFRA,
            &format!("listenerset-with-{what}-conflict-with-{full}"),
        )?;
        cond(ls, "Accepted", "False", Some("ListenersNotValid"))?;
        cond(ls, "Programmed", "False", Some("ListenersNotValid"))?;
    }
    let ls = s.listener_set(
        INFRA,
        &format!("listenerset-with-{what}-conflict-with-listener-set-1"),
    )?;
    let l = listener(ls, &format!("{what}-conflict-with-listener-set-listener"))?;
    cond(l, "Conflicted", "True", Some(reason))?;
    cond(
        listener(ls, "listener-set-2-listener")?,
        "Accepted",
        "True",
        None,
    )
}

/// After a spec change to generation `generation`: every condition of the
/// object (for routes: of every parent entry) carries that observedGeneration,
/// and Accepted (plus ResolvedRefs for routes) is True.
pub fn observed_generation(st: &Value, kind: &str, ns: &str, name: &str, generation: i64) -> R {
    let o = Status(st).find(kind, ns, name)?;
    let groups: Vec<&Value> = if kind == "HTTPRoute" {
        o["parents"].as_array().into_iter().flatten().collect()
    } else {
        vec![o]
    };
    if groups.is_empty() {
        return Err(format!("{}: no parent status", name_of(o)));
    }
    for g in groups {
        for c in g["conditions"].as_array().into_iter().flatten() {
            if c["observedGeneration"].as_i64() != Some(generation) {
                return Err(format!(
                    "{}: condition {} has observedGeneration {}, expected {generation}",
                    name_of(o),
                    c["type"],
                    c["observedGeneration"]
                ));
            }
        }
        cond(g, "Accepted", "True", None)?;
        if kind == "HTTPRoute" {
            cond(g, "ResolvedRefs", "True", None)?;
        }
    }
    Ok(())
}

/// The Gateway lists exactly `names` as listeners, each Accepted and
/// ResolvedRefs True with one attached route.
pub fn listeners_exactly(st: &Value, ns: &str, name: &str, names: &[&str]) -> R {
    let o = Status(st).find("Gateway", ns, name)?;
    let listeners: Vec<&Value> = o["listeners"].as_array().into_iter().flatten().collect();
    let got: Vec<&str> = listeners
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    let mut want = names.to_vec();
    let mut have = got.clone();
    want.sort_unstable();
    have.sort_unstable();
    if want != have {
        return Err(format!(
            "{}: listeners {got:?}, expected {names:?}",
            name_of(o)
        ));
    }
    for l in listeners {
        cond(l, "Accepted", "True", None)?;
        cond(l, "ResolvedRefs", "True", None)?;
        if l["attachedRoutes"].as_i64() != Some(1) {
            return Err(format!(
                "{}: listener {} has attachedRoutes {}, expected 1",
                name_of(o),
                l["name"],
                l["attachedRoutes"]
            ));
        }
    }
    Ok(())
}
