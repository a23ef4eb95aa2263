//! The Gateway API features portcullis supports, as a GatewayClass
//! announces them in `status.supportedFeatures` (the conformance suite runs
//! the tests of exactly these), and the ones it does not, with why. One
//! list, sorted as the API requires (ascending by name); `tests` checks it
//! against the shared conformance data and `crd_tests` against the feature
//! names of the gateway-api module.

/// One supported feature and what shows that portcullis implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedFeature {
    /// The feature name (gateway-api `pkg/features`, or upstream `main` for
    /// the few newer than v1.6.1 that the shared conformance data declares).
    pub name: &'static str,
    /// The evidence.
    pub evidence: Evidence,
}

/// What shows that a feature works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Every case of `../shared/conformance` that declares the feature is
    /// in scope of `tests/conformance.rs` and passes.
    Conformance,
    /// The shared conformance data has no case for it (it leaves out
    /// GRPCRoute, TCPRoute and UDPRoute); this integration test drives it
    /// through the real binary.
    IntegrationTest(&'static str),
}

const fn conformance(name: &'static str) -> SupportedFeature {
    SupportedFeature {
        name,
        evidence: Evidence::Conformance,
    }
}

const fn tested(name: &'static str, test: &'static str) -> SupportedFeature {
    SupportedFeature {
        name,
        evidence: Evidence::IntegrationTest(test),
    }
}

/// The features a GatewayClass of ours announces, in ascending byte order
/// of their names (`status.supportedFeatures` MUST be sorted, at most 64).
pub const SUPPORTED_FEATURES: &[SupportedFeature] = &[
    conformance("BackendTLSPolicy"),
    conformance("BackendTLSPolicySANValidation"),
    tested("GRPCRoute", "tests/grpc.rs"),
    conformance("Gateway"),
    conformance("GatewayBackendClientCertificate"),
    conformance("GatewayFrontendClientCertificateValidation"),
    conformance("GatewayFrontendClientCertificateValidationInsecureFallback"),
    conformance("GatewayHTTPListenerIsolation"),
    conformance("GatewayHTTPSListenerDetectMisdirectedRequests"),
    conformance("GatewayPort8080"),
    conformance("HTTPRoute"),
    conformance("HTTPRoute303RedirectStatusCode"),
    conformance("HTTPRoute307RedirectStatusCode"),
    conformance("HTTPRoute308RedirectStatusCode"),
    conformance("HTTPRouteBackendProtocolH2C"),
    conformance("HTTPRouteBackendProtocolWebSocket"),
    conformance("HTTPRouteBackendRequestHeaderModification"),
    conformance("HTTPRouteBackendRequestRedirect"),
    conformance("HTTPRouteBackendTimeout"),
    conformance("HTTPRouteBackendURLRewrite"),
    conformance("HTTPRouteCORS"),
    conformance("HTTPRouteDestinationPortMatching"),
    conformance("HTTPRouteHostRewrite"),
    conformance("HTTPRouteMethodMatching"),
    conformance("HTTPRouteNamedRouteRule"),
    conformance("HTTPRouteParentRefPort"),
    conformance("HTTPRoutePathRedirect"),
    conformance("HTTPRoutePathRewrite"),
    conformance("HTTPRoutePortRedirect"),
    conformance("HTTPRouteQueryParamMatching"),
    conformance("HTTPRouteRequestMirror"),
    conformance("HTTPRouteRequestMultipleMirrors"),
    conformance("HTTPRouteRequestPercentageMirror"),
    conformance("HTTPRouteRequestTimeout"),
    conformance("HTTPRouteResponseHeaderModification"),
    conformance("HTTPRouteRetry"),
    conformance("HTTPRouteRetryBackendTimeout"),
    conformance("HTTPRouteRetryConnectionError"),
    conformance("HTTPRouteSchemeRedirect"),
    conformance("ListenerSet"),
    conformance("ReferenceGrant"),
    tested("TCPRoute", "tests/l4.rs"),
    conformance("TLSRoute"),
    conformance("TLSRouteModeMixed"),
    conformance("TLSRouteModeTerminate"),
    tested("UDPRoute", "tests/l4.rs"),
];

/// Features portcullis does not announce, and why. Every feature name the
/// shared conformance data or gateway-api v1.6.1 defines is in exactly one
/// of the two lists (checked by `tests` and `crd_tests`).
pub const UNSUPPORTED_FEATURES: &[(&str, &str)] = &[
    (
        "GRPCRouteNamedRouteRule",
        "no case or test shows named GRPCRoute rules end to end yet",
    ),
    (
        "GatewayAddressEmpty",
        "its case needs a cluster that assigns addresses; not run yet",
    ),
    (
        "GatewayInfrastructurePropagation",
        "only --per-gateway-service makes the Service that carries the labels and annotations, and a class announces the same list whatever a replica's flags",
    ),
    (
        "GatewayStaticAddresses",
        "its case needs a cluster; unusable addresses are reported but not shown end to end",
    ),
    ("Mesh", "portcullis is no service mesh"),
    ("MeshClusterIPMatching", "portcullis is no service mesh"),
    ("MeshConsumerRoute", "portcullis is no service mesh"),
    (
        "MeshHTTPRouteBackendRequestHeaderModification",
        "portcullis is no service mesh",
    ),
    (
        "MeshHTTPRouteNamedRouteRule",
        "portcullis is no service mesh",
    ),
    (
        "MeshHTTPRouteQueryParamMatching",
        "portcullis is no service mesh",
    ),
    ("MeshHTTPRouteRedirectPath", "portcullis is no service mesh"),
    ("MeshHTTPRouteRedirectPort", "portcullis is no service mesh"),
    ("MeshHTTPRouteRewritePath", "portcullis is no service mesh"),
    (
        "MeshHTTPRouteSchemeRedirect",
        "portcullis is no service mesh",
    ),
];
