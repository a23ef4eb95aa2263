//! The HTTPRouteCORS conformance requests, one test per expectation.

use super::*;

/// `/cors-1`: exact and wildcard origins, listed methods and headers.
fn cors_1() -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec!["https://www.foo.com".into(), "https://*.bar.com".into()],
        allow_credentials: true,
        allow_methods: vec!["GET".into(), "OPTIONS".into()],
        allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
        expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
        max_age: 3600,
    }
}

/// `/cors-2`: any method, no credentials.
fn cors_2() -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec!["https://www.foo.com".into()],
        allow_methods: vec!["*".into()],
        max_age: 5,
        ..Default::default()
    }
}

/// `/cors-wildcard-origin`.
fn wildcard_origin() -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec!["*".into()],
        allow_methods: vec!["PUT".into()],
        max_age: 5,
        ..Default::default()
    }
}

/// `/cors-wildcard-methods-headers` (credentials) and `-unauth` (none).
fn wildcard_all(credentials: bool) -> CorsPolicy {
    CorsPolicy {
        allow_origins: vec!["*".into()],
        allow_methods: vec!["*".into()],
        allow_headers: vec!["*".into()],
        allow_credentials: credentials,
        max_age: 5,
        ..Default::default()
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

fn preflight(p: &CorsPolicy, pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    p.preflight(&headers(pairs), &Method::OPTIONS)
        .expect("an OPTIONS request with Origin and Access-Control-Request-Method is a preflight")
}

fn actual(p: &CorsPolicy, pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut resp = HeaderMap::new();
    p.response_headers(&headers(pairs), &mut resp);
    resp
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

const FULL_PREFLIGHT: &[(&str, &str)] = &[
    ("origin", "https://www.foo.com"),
    ("access-control-request-method", "GET"),
    ("access-control-request-headers", "x-header-1, x-header-2"),
];

#[test]
fn preflight_from_exact_origin_is_allowed() {
    let h = preflight(&cors_1(), FULL_PREFLIGHT);
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(
        get(&h, "access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
    assert_eq!(
        get(&h, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(
        get(&h, "access-control-expose-headers"),
        Some("x-header-3, x-header-4")
    );
    assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
}

#[test]
fn preflight_from_wildcard_origin_is_allowed() {
    for origin in ["https://www.bar.com", "https://xpto.www.bar.com"] {
        let h = preflight(
            &cors_1(),
            &[
                ("origin", origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-header-1, x-header-2"),
            ],
        );
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(
            get(&h, "access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
    }
}

#[test]
fn preflight_from_disallowed_origin_is_answered_without_allow_headers() {
    let h = preflight(
        &cors_1(),
        &[
            ("origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ],
    );
    assert!(h.get("access-control-allow-origin").is_none());
    assert!(h.get("access-control-allow-credentials").is_none());
}

#[test]
fn actual_request_from_allowed_origin_gets_allow_origin() {
    for origin in ["https://www.foo.com", "https://www.bar.com"] {
        let h = actual(
            &cors_1(),
            &[("origin", origin), ("access-control-request-method", "GET")],
        );
        assert_eq!(get(&h, "access-control-allow-origin"), Some(origin));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(
            get(&h, "access-control-expose-headers"),
            Some("x-header-3, x-header-4")
        );
    }
}

#[test]
fn actual_request_from_disallowed_origin_gets_nothing() {
    let h = actual(&cors_1(), &[("origin", "https://foobar.com")]);
    assert!(h.is_empty());
}

#[test]
fn wildcard_methods_echo_the_requested_method() {
    let h = preflight(
        &cors_2(),
        &[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://www.foo.com")
    );
    assert_eq!(get(&h, "access-control-allow-methods"), Some("POST"));
    assert!(h.get("access-control-allow-credentials").is_none());
}

#[test]
fn wildcard_origin_without_credentials_answers_star() {
    for origin in ["https://foobar.com", "https://foobar.com:12345"] {
        let h = preflight(
            &wildcard_origin(),
            &[("origin", origin), ("access-control-request-method", "PUT")],
        );
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert!(h.get("access-control-allow-credentials").is_none());

        let h = actual(&wildcard_origin(), &[("origin", origin)]);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert!(h.get("access-control-allow-credentials").is_none());
    }
}

#[test]
fn wildcard_everything_with_credentials_echoes_origin_method_and_headers() {
    let h = preflight(
        &wildcard_all(true),
        &[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ],
    );
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        get(&h, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(get(&h, "vary"), Some("Origin"));

    let h = actual(&wildcard_all(true), &[("origin", "https://other.foo.com")]);
    assert_eq!(
        get(&h, "access-control-allow-origin"),
        Some("https://other.foo.com")
    );
    assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
}

#[test]
fn wildcard_everything_without_credentials_has_no_credentials_header() {
    let h = preflight(
        &wildcard_all(false),
        &[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ],
    );
    assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        get(&h, "access-control-allow-headers"),
        Some("x-header-1, x-header-2")
    );
    assert!(h.get("access-control-allow-credentials").is_none());

    let h = actual(&wildcard_all(false), &[("origin", "https://other.foo.com")]);
    assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
    assert!(h.get("access-control-allow-credentials").is_none());
}

#[test]
fn only_options_with_origin_and_request_method_is_a_preflight() {
    let p = cors_1();
    assert!(p
        .preflight(&headers(FULL_PREFLIGHT), &Method::GET)
        .is_none());
    assert!(p
        .preflight(
            &headers(&[("origin", "https://www.foo.com")]),
            &Method::OPTIONS
        )
        .is_none());
    assert!(p
        .preflight(
            &headers(&[("access-control-request-method", "GET")]),
            &Method::OPTIONS
        )
        .is_none());
}

#[test]
fn origin_wildcard_needs_at_least_one_label() {
    let p = cors_1();
    assert!(p.is_origin_allowed("https://a.bar.com"));
    assert!(p.is_origin_allowed("HTTPS://A.BAR.COM"));
    assert!(!p.is_origin_allowed("https://.bar.com"));
    assert!(!p.is_origin_allowed("https://bar.com"));
    assert!(!p.is_origin_allowed("http://a.bar.com"));
    assert!(!p.is_origin_allowed("https://a.bar.com.evil"));
    assert!(!p.is_origin_allowed("https://evil.com/x.bar.com"));
    assert!(!p.is_origin_allowed("https://a.bar.com:8443"));
}
