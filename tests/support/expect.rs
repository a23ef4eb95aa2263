//! Pure checks of one HTTP answer against a conformance `expect` object
//! (see the conformance README): status, response headers, redirects, and what
//! the echo backend reports it received; and of one `tls-stream` exchange
//! against the TCP echo's report ([`check_stream`]).

use super::client::{ClientError, HttpResponse, StreamReport};
use serde_json::Value;

/// Looks up which Deployment an echo pod belongs to.
pub trait PodDirectory {
    /// Deployment of the pod named `pod`, if the pod is known.
    fn deployment_of(&self, pod: &str) -> Option<String>;

    /// `tls.crt` (PEM) of the generated Secret `ns/name`, if known.
    fn secret_cert_pem(&self, _secret: &str) -> Option<String> {
        None
    }
}

/// The base64 bodies of the PEM blocks in `pem`, whitespace removed (a
/// comparison key independent of line wrapping).
pub fn pem_bodies(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            cur = Some(String::new());
        } else if line.starts_with("-----END") {
            out.extend(cur.take());
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    out
}

/// A parsed `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Scheme.
    pub scheme: String,
    /// Host without port.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path (without query).
    pub path: String,
    /// Path and query.
    pub path_and_query: String,
}

/// Parses an absolute or path-relative Location; relative ones take scheme and
/// authority from the request (`default_scheme`, `default_authority`).
pub fn parse_location(
    loc: &str,
    default_scheme: &str,
    default_authority: &str,
) -> Option<Location> {
    let (scheme, rest) = match loc.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r.to_string()),
        None if loc.starts_with('/') => (
            default_scheme.to_string(),
            format!("{default_authority}{loc}"),
        ),
        None => return None,
    };
    let (authority, path_and_query) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => match rest.find('?') {
            Some(i) => (rest[..i].to_string(), format!("/{}", &rest[i..])),
            None => (rest.clone(), "/".to_string()),
        },
    };
    let (host, port) = split_authority(&authority);
    let path = path_and_query
        .split_once('?')
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| path_and_query.clone());
    Some(Location {
        scheme,
        host,
        port,
        path,
        path_and_query,
    })
}

/// Splits `host[:port]` (IPv6 literals in brackets kept whole).
pub fn split_authority(authority: &str) -> (String, Option<u16>) {
    if let Some(end) = authority.rfind(']') {
        let host = authority[..=end].to_string();
        let port = authority[end + 1..]
            .strip_prefix(':')
            .and_then(|p| p.parse().ok());
        return (host, port);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h.to_string(), p.parse().ok())
        }
        _ => (authority.to_string(), None),
    }
}

/// Default port of a scheme.
pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

fn norm(v: &str, ignore_ws: bool) -> String {
    if ignore_ws {
        v.chars().filter(|c| !c.is_whitespace()).collect()
    } else {
        v.to_string()
    }
}

/// Values of header `name` in the echo's `headers` object, joined with `,`.
pub fn echo_header(echo: &Value, name: &str) -> Option<String> {
    let headers = echo.get("headers")?.as_object()?;
    let values: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Checks the outcome kinds (`request_error`, `connection_rejected`,
/// `http_error_status`) and transport failures. Returns the response to check
/// further, or None when the expectation is already satisfied by an error.
pub fn check_outcome<'a>(
    expect: &Value,
    result: &'a Result<HttpResponse, ClientError>,
) -> Result<Option<&'a HttpResponse>, String> {
    match (expect["outcome"].as_str(), result) {
        (Some("request_error"), Err(_)) => Ok(None),
        (Some("request_error"), Ok(r)) => Err(format!(
            "expected the request to fail, got HTTP {}",
            r.status
        )),
        (
            Some("connection_rejected"),
            Err(ClientError::TlsRejected(_) | ClientError::Connect(_)),
        ) => Ok(None),
        (Some("connection_rejected"), Err(e)) => Err(format!(
            "expected the connection to be rejected (EOF/reset), got {e}"
        )),
        (Some("connection_rejected"), Ok(r)) => Err(format!(
            "expected the connection to be rejected, got HTTP {}",
            r.status
        )),
        (Some("http_error_status"), Ok(r)) => {
            let not_in: Vec<u64> = expect["status_not_in"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            if not_in.contains(&u64::from(r.status)) {
                Err(format!(
                    "expected an error status not in {not_in:?}, got {}",
                    r.status
                ))
            } else {
                Ok(Some(r))
            }
        }
        (_, Err(e)) => Err(format!("request failed: {e}")),
        (_, Ok(r)) => Ok(Some(r)),
    }
}

/// Checks status code, response headers and redirect of an answer.
/// `request_scheme`/`request_authority` resolve relative Locations.
pub fn check_response(
    expect: &Value,
    resp: &HttpResponse,
    request_scheme: &str,
    request_authority: &str,
    subst: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let mut allowed: Vec<u64> = expect["status_any_of"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    if allowed.is_empty() {
        if let Some(s) = expect["status"].as_u64() {
            allowed.push(s);
        }
    }
    if !allowed.is_empty() && !allowed.contains(&u64::from(resp.status)) {
        let body = String::from_utf8_lossy(&resp.body);
        let body: String = body.chars().take(160).collect();
        return Err(format!(
            "expected status {allowed:?}, got {} (body: {body})",
            resp.status
        ));
    }
    let ignore_ws = expect["ignore_whitespace_in_response_headers"]
        .as_bool()
        .unwrap_or(false);
    for (k, v) in expect["response_headers"].as_object().into_iter().flatten() {
        let want = v.as_str().unwrap_or_default();
        match resp.header(k) {
            Some(got) if norm(&got, ignore_ws) == norm(want, ignore_ws) => {}
            got => {
                return Err(format!(
                    "response header {k}: expected {want:?}, got {got:?}"
                ))
            }
        }
    }
    for (k, v) in expect["response_headers_one_of"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let options: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str().map(|s| norm(s, ignore_ws)))
            .collect();
        match resp.header(k) {
            Some(got) if options.contains(&norm(&got, ignore_ws)) => {}
            got => {
                return Err(format!(
                    "response header {k}: expected one of {options:?}, got {got:?}"
                ))
            }
        }
    }
    for k in expect["absent_response_headers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let k = k.as_str().unwrap_or_default();
        if let Some(got) = resp.header(k) {
            return Err(format!("response header {k} must be absent, got {got:?}"));
        }
    }
    if let Some(redirect) = expect["redirect"].as_object() {
        let loc = resp.header("location").ok_or_else(|| {
            format!(
                "expected a redirect, no Location header (status {})",
                resp.status
            )
        })?;
        let parsed = parse_location(&loc, request_scheme, request_authority)
            .ok_or_else(|| format!("unparsable Location {loc:?}"))?;
        if let Some(scheme) = redirect.get("scheme").and_then(Value::as_str) {
            if parsed.scheme != scheme {
                return Err(format!(
                    "redirect scheme: expected {scheme}, Location {loc:?}"
                ));
            }
        }
        if let Some(host) = redirect.get("host").and_then(Value::as_str) {
            if !parsed.host.eq_ignore_ascii_case(host) {
                return Err(format!("redirect host: expected {host}, Location {loc:?}"));
            }
        }
        let port_ok = match redirect.get("port") {
            Some(Value::String(p)) => {
                parsed.port.map(|x| x.to_string()).as_deref() == Some(p.as_str())
            }
            Some(Value::Number(n)) => parsed.port.map(u64::from) == n.as_u64(),
            _ => parsed
                .port
                .is_none_or(|p| p == default_port(&parsed.scheme)),
        };
        if !port_ok {
            return Err(format!(
                "redirect port: expected {:?}, Location {loc:?}",
                redirect.get("port")
            ));
        }
        if let Some(path) = redirect.get("path").and_then(Value::as_str) {
            let path = subst(path);
            let got = if path.contains('?') {
                &parsed.path_and_query
            } else {
                &parsed.path
            };
            if *got != path {
                return Err(format!("redirect path: expected {path}, Location {loc:?}"));
            }
        }
    }
    if expect["client_cert_must_be_requested"].as_bool() == Some(true)
        && !resp.client_cert_requested
    {
        return Err("the server did not request a client certificate".into());
    }
    Ok(())
}

/// Checks backend identity, namespace and what the echo saw.
pub fn check_backend(
    expect: &Value,
    resp: &HttpResponse,
    pods: &dyn PodDirectory,
    subst: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let needs_echo = !expect["backend"].is_null()
        || !expect["request_seen_by_backend"].is_null()
        || expect.get("backend_one_of").is_some()
        || (!expect["namespace"].is_null() && matches!(resp.status, 200 | 204));
    if !needs_echo {
        return Ok(());
    }
    let echo: Value = serde_json::from_slice(&resp.body).map_err(|_| {
        let body: String = String::from_utf8_lossy(&resp.body)
            .chars()
            .take(160)
            .collect();
        format!(
            "answer (status {}) is not an echo response: {body}",
            resp.status
        )
    })?;
    let pod = echo["pod"].as_str().unwrap_or_default();
    let deployment = pods.deployment_of(pod);
    if let Some(ns) = expect["namespace"].as_str() {
        if matches!(resp.status, 200 | 204) && echo["namespace"].as_str() != Some(ns) {
            return Err(format!(
                "expected namespace {ns}, echo reports {}",
                echo["namespace"]
            ));
        }
    }
    if let Some(backend) = expect["backend"].as_str() {
        if deployment.as_deref() != Some(backend) {
            return Err(format!(
                "expected backend {backend}, answered by pod {pod} ({deployment:?})"
            ));
        }
    }
    if let Some(one_of) = expect.get("backend_one_of").and_then(Value::as_array) {
        let names: Vec<&str> = one_of.iter().filter_map(Value::as_str).collect();
        if !deployment.as_deref().is_some_and(|d| names.contains(&d)) {
            return Err(format!(
                "expected a backend in {names:?}, answered by pod {pod}"
            ));
        }
    }
    if let (Some(per), Some(d)) = (
        expect
            .get("seen_by_backend_per_backend")
            .and_then(Value::as_object),
        &deployment,
    ) {
        for (k, v) in per.get(d).and_then(Value::as_object).into_iter().flatten() {
            let want = v.as_str().unwrap_or_default();
            let values: Vec<String> = echo["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| name.eq_ignore_ascii_case(k))
                .flat_map(|(_, vals)| vals.as_array().cloned().unwrap_or_default())
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            if values != [want.to_string()] {
                return Err(format!(
                    "backend {d} must see exactly one {k}: {want}, saw {values:?}"
                ));
            }
        }
    }
    let seen = &expect["request_seen_by_backend"];
    if seen.is_object() {
        if let Some(host) = seen["host"].as_str() {
            if echo["host"].as_str() != Some(host) {
                return Err(format!(
                    "backend saw host {}, expected {host}",
                    echo["host"]
                ));
            }
        }
        if let Some(path) = seen["path"].as_str() {
            let path = subst(path);
            if echo["path"].as_str() != Some(path.as_str()) {
                return Err(format!(
                    "backend saw path {}, expected {path}",
                    echo["path"]
                ));
            }
        }
        if let Some(method) = seen["method"].as_str() {
            if echo["method"].as_str() != Some(method) {
                return Err(format!(
                    "backend saw method {}, expected {method}",
                    echo["method"]
                ));
            }
        }
        for (k, v) in seen["headers"].as_object().into_iter().flatten() {
            let want = v.as_str().unwrap_or_default();
            let got = echo_header(&echo, k);
            if got.as_deref() != Some(want) {
                return Err(format!(
                    "backend saw header {k}: {got:?}, expected {want:?}"
                ));
            }
        }
        for k in seen["absent_headers"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or_default();
            if let Some(got) = echo_header(&echo, k) {
                return Err(format!(
                    "backend saw header {k}: {got:?}, which must be absent"
                ));
            }
        }
        if let Some(secret) = seen
            .get("backend_tls_peer_certificate")
            .and_then(|c| c["secret"].as_str())
        {
            let want = pods
                .secret_cert_pem(secret)
                .ok_or_else(|| format!("no generated Secret {secret}"))?;
            let want = pem_bodies(&want);
            let got: Vec<String> = echo["tls"]["peerCertificates"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .flat_map(pem_bodies)
                .collect();
            if want.first().is_none_or(|w| !got.contains(w)) {
                return Err(format!(
                    "backend did not see the client certificate of {secret} ({} peer certificate(s))",
                    got.len()
                ));
            }
        }
        if let Some(sni) = seen.get("backend_tls_sni").and_then(Value::as_str) {
            if echo["tls"]["serverName"].as_str() != Some(sni) {
                return Err(format!(
                    "backend TLS server name {}, expected {sni}",
                    echo["tls"]["serverName"]
                ));
            }
        }
    }
    Ok(())
}

/// Checks a `tls-stream` result: the outcome kinds (`request_error`,
/// `connection_rejected`), then the TCP echo's greeting and `TEST` report
/// against `backend` (the answering pod's Deployment), `namespace` and
/// `stream` (`backend_is_tls`, `backend_tls_sni`).
pub fn check_stream(
    expect: &Value,
    result: &Result<StreamReport, ClientError>,
    pods: &dyn PodDirectory,
) -> Result<(), String> {
    let report = match (expect["outcome"].as_str(), result) {
        (Some("request_error"), Err(_)) => return Ok(()),
        (Some("request_error"), Ok(r)) => {
            return Err(format!(
                "expected the stream to fail, the echo answered {}",
                r.test
            ))
        }
        (
            Some("connection_rejected"),
            Err(ClientError::TlsRejected(_) | ClientError::Connect(_)),
        ) => return Ok(()),
        (Some("connection_rejected"), Err(e)) => {
            return Err(format!(
                "expected the connection to be rejected (EOF/reset), got {e}"
            ))
        }
        (Some("connection_rejected"), Ok(r)) => {
            return Err(format!(
                "expected the connection to be rejected, the echo answered {}",
                r.test
            ))
        }
        (Some(other), _) => return Err(format!("outcome {other:?} not supported for tls-stream")),
        (None, Err(e)) => return Err(format!("stream failed: {e}")),
        (None, Ok(r)) => r,
    };
    if report.greeting != super::tcp_echo::GREETING {
        return Err(format!(
            "unexpected greeting {:?} (not the TCP echo)",
            report.greeting
        ));
    }
    let echo = &report.test;
    let pod = echo["pod"].as_str().unwrap_or_default();
    if let Some(ns) = expect["namespace"].as_str() {
        if echo["namespace"].as_str() != Some(ns) {
            return Err(format!(
                "expected namespace {ns}, echo reports {}",
                echo["namespace"]
            ));
        }
    }
    if let Some(backend) = expect["backend"].as_str() {
        let deployment = pods.deployment_of(pod);
        if deployment.as_deref() != Some(backend) {
            return Err(format!(
                "expected backend {backend}, answered by pod {pod} ({deployment:?})"
            ));
        }
    }
    let stream = &expect["stream"];
    if let Some(tls) = stream["backend_is_tls"].as_bool() {
        if echo["isTLS"].as_bool() != Some(tls) {
            return Err(format!(
                "backend isTLS {}, expected {tls} (pod {pod})",
                echo["isTLS"]
            ));
        }
    }
    if let Some(sni) = stream["backend_tls_sni"].as_str() {
        if echo["tls"]["serverName"].as_str() != Some(sni) {
            return Err(format!(
                "backend TLS server name {}, expected {sni} (pod {pod})",
                echo["tls"]["serverName"]
            ));
        }
    }
    if expect["client_cert_must_be_requested"].as_bool() == Some(true)
        && !report.client_cert_requested
    {
        return Err("the server did not request a client certificate".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pods;
    impl PodDirectory for Pods {
        fn deployment_of(&self, pod: &str) -> Option<String> {
            pod.starts_with("tcp-backend-")
                .then(|| "tcp-backend".to_string())
        }
    }

    fn report(tls: bool, sni: &str) -> Result<StreamReport, ClientError> {
        Ok(StreamReport {
            greeting: super::super::tcp_echo::GREETING.into(),
            test: serde_json::json!({"namespace": "infra", "pod": "tcp-backend-x-0",
                "isTLS": tls, "tls": {"serverName": sni}}),
            client_cert_requested: false,
        })
    }

    #[test]
    fn stream_expectations_check_backend_tls_and_sni() {
        let expect = serde_json::json!({"backend": "tcp-backend", "namespace": "infra",
            "stream": {"backend_is_tls": true, "backend_tls_sni": "abc.example.com"}});
        assert!(check_stream(&expect, &report(true, "abc.example.com"), &Pods).is_ok());
        assert!(check_stream(&expect, &report(true, "other"), &Pods).is_err());
        assert!(check_stream(&expect, &report(false, ""), &Pods).is_err());
    }

    #[test]
    fn rejected_streams_need_eof_not_certificate_errors() {
        let expect = serde_json::json!({"outcome": "connection_rejected"});
        let eof = Err(ClientError::TlsRejected("eof".into()));
        assert!(check_stream(&expect, &eof, &Pods).is_ok());
        let cert = Err(ClientError::Tls("UnknownIssuer".into()));
        assert!(check_stream(&expect, &cert, &Pods).is_err());
        assert!(check_stream(&expect, &report(true, "x"), &Pods).is_err());
    }

    #[test]
    fn absolute_locations_parse_into_parts() {
        let l = parse_location("https://example.org:8443/a/b?x=1", "http", "h").expect("parses");
        assert_eq!(l.scheme, "https");
        assert_eq!(l.host, "example.org");
        assert_eq!(l.port, Some(8443));
        assert_eq!(l.path, "/a/b");
        assert_eq!(l.path_and_query, "/a/b?x=1");
    }

    #[test]
    fn relative_locations_take_request_authority() {
        let l = parse_location("/x", "http", "example.org").expect("parses");
        assert_eq!(
            (l.host.as_str(), l.port, l.path.as_str()),
            ("example.org", None, "/x")
        );
    }
}
