//! Why the proxy answered a request itself instead of relaying a backend's
//! answer, and the one place that maps each cause to an HTTP status and a short
//! text body.
//!
//! Transport failures towards a backend (connection refused, reset before the
//! response head) map to 503, as Envoy does and as the Gateway API retry
//! conformance test accepts (`HTTPRouteRetryConnectionError` expects 500 or
//! 503 once retries are exhausted); a backend that answers with something that
//! is not HTTP maps to 502; timeouts map to 504.

use super::{BoxError, ProxyBody};
use http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;

/// A request the proxy could not relay to a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No bind serves the local address the request arrived on.
    #[error("no bind serves local address {0}")]
    NoBind(SocketAddr),
    /// No listener on the bind accepts the request's host.
    #[error("no listener accepts the request host")]
    NoListener,
    /// The Host (or `:authority`) selects another listener than the one the
    /// TLS handshake's SNI selected (RFC 9110 §15.5.20, Gateway API HTTPS
    /// listener isolation).
    #[error("request host {host:?} is not served by the listener SNI {sni:?} selected")]
    Misdirected {
        /// The request's normalised host.
        host: Option<String>,
        /// The SNI of the connection.
        sni: String,
    },
    /// No route entry matches.
    #[error("no route matches the request")]
    NoRoute,
    /// The rule has no backend or every weight is zero.
    #[error("rule has no backend with a positive weight")]
    NoBackend,
    /// The picked backendRef could not be resolved.
    #[error("backend reference is invalid")]
    InvalidBackend,
    /// The picked upstream has no ready endpoint.
    #[error("upstream {upstream} has no ready endpoints")]
    NoEndpoints {
        /// Upstream name.
        upstream: String,
    },
    /// The request head could not be turned into an upstream request.
    #[error("building the upstream request failed: {0}")]
    BuildRequest(#[source] BoxError),
    /// Reading the client's request body (for replay) failed.
    #[error("reading the request body failed: {0}")]
    RequestBody(#[source] BoxError),
    /// Connecting to the endpoint failed.
    #[error("connecting to upstream {upstream} at {addr} failed: {source}")]
    Connect {
        /// Upstream name.
        upstream: String,
        /// Endpoint address.
        addr: SocketAddr,
        /// Cause.
        source: BoxError,
    },
    /// The endpoint closed or reset the connection before a response head.
    #[error("upstream {upstream} at {addr} closed the connection before answering: {source}")]
    Reset {
        /// Upstream name.
        upstream: String,
        /// Endpoint address.
        addr: SocketAddr,
        /// Cause.
        source: BoxError,
    },
    /// The endpoint answered with something that is not valid HTTP.
    #[error("upstream {upstream} at {addr} sent an invalid response: {source}")]
    Protocol {
        /// Upstream name.
        upstream: String,
        /// Endpoint address.
        addr: SocketAddr,
        /// Cause.
        source: BoxError,
    },
    /// The TLS handshake with the endpoint failed (BackendTLSPolicy): most
    /// often its certificate did not verify.
    #[error("TLS to upstream {upstream} at {addr} failed: {source}")]
    BackendTls {
        /// Upstream name.
        upstream: String,
        /// Endpoint address.
        addr: SocketAddr,
        /// Cause.
        source: BoxError,
    },
    /// One attempt exceeded `timeouts.backendRequest`.
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    BackendTimeout {
        /// Upstream name.
        upstream: String,
        /// The bound.
        timeout: Duration,
    },
    /// The whole request exceeded `timeouts.request`.
    #[error("request did not get a response within {timeout:?}")]
    RequestTimeout {
        /// The bound.
        timeout: Duration,
    },
}

impl Error {
    /// The `reason` label of `portcullis_upstream_errors_total` for a
    /// failure toward a backend; `None` for answers the gateway chose.
    pub fn upstream_reason(&self) -> Option<&'static str> {
        match self {
            Error::Connect { .. } => Some("connect"),
            Error::BackendTimeout { .. } | Error::RequestTimeout { .. } => Some("timeout"),
            Error::Reset { .. } => Some("reset"),
            Error::Protocol { .. } => Some("protocol"),
            Error::BackendTls { .. } => Some("tls"),
            Error::NoEndpoints { .. } => Some("no_endpoints"),
            Error::NoBind(_)
            | Error::NoListener
            | Error::Misdirected { .. }
            | Error::NoRoute
            | Error::NoBackend
            | Error::InvalidBackend
            | Error::BuildRequest(_)
            | Error::RequestBody(_) => None,
        }
    }

    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoBind(_) | Error::NoListener | Error::NoRoute => StatusCode::NOT_FOUND,
            Error::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Error::NoBackend | Error::InvalidBackend | Error::BuildRequest(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::RequestBody(_) => StatusCode::BAD_REQUEST,
            Error::NoEndpoints { .. } | Error::Connect { .. } | Error::Reset { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Protocol { .. } | Error::BackendTls { .. } => StatusCode::BAD_GATEWAY,
            Error::BackendTimeout { .. } | Error::RequestTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// The short text body sent to the client (never carries details that
    /// came from the backend or the client).
    pub fn body(&self) -> &'static str {
        match self {
            Error::NoBind(_) | Error::NoListener | Error::NoRoute => "no route\n",
            Error::Misdirected { .. } => "misdirected request\n",
            Error::NoBackend => "no backend\n",
            Error::InvalidBackend => "invalid backend reference\n",
            Error::BuildRequest(_) => "invalid upstream request\n",
            Error::RequestBody(_) => "unreadable request body\n",
            Error::NoEndpoints { .. } => "no healthy upstream\n",
            Error::Connect { .. } | Error::Reset { .. } => {
                "upstream connect error or disconnect before response\n"
            }
            Error::Protocol { .. } => "invalid upstream response\n",
            Error::BackendTls { .. } => "upstream TLS handshake failed\n",
            Error::BackendTimeout { .. } | Error::RequestTimeout { .. } => "upstream timeout\n",
        }
    }

    /// Whether the failure concerns the backend (logged at warn) rather than
    /// the client's request (logged at debug).
    pub fn is_upstream(&self) -> bool {
        matches!(
            self,
            Error::NoEndpoints { .. }
                | Error::Connect { .. }
                | Error::Reset { .. }
                | Error::Protocol { .. }
                | Error::BackendTimeout { .. }
                | Error::RequestTimeout { .. }
        )
    }

    /// The response sent for this error.
    pub fn to_response(&self) -> http::Response<ProxyBody> {
        error_response(self.status(), self.body())
    }

    /// The gRPC status code for this error (gRPC's HTTP-to-gRPC mapping:
    /// 404 → UNIMPLEMENTED, 503/502 → UNAVAILABLE, 504 → DEADLINE_EXCEEDED,
    /// the rest INTERNAL).
    pub fn grpc_status(&self) -> u8 {
        match self.status() {
            StatusCode::NOT_FOUND => 12,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => 14,
            StatusCode::GATEWAY_TIMEOUT => 4,
            StatusCode::BAD_REQUEST | StatusCode::MISDIRECTED_REQUEST => 3,
            _ => 13,
        }
    }

    /// The answer for a gRPC client: a trailers-only response (HTTP 200,
    /// `grpc-status` and `grpc-message` in the head), which gRPC clients read
    /// as a call status instead of a broken message stream.
    pub fn to_grpc_response(&self) -> http::Response<ProxyBody> {
        let mut resp = http::Response::new(super::body::empty());
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(u16::from(self.grpc_status())),
        );
        let message = self.body().trim_end().replace(' ', "%20");
        if let Ok(v) = http::HeaderValue::from_str(&message) {
            headers.insert("grpc-message", v);
        }
        resp
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc[+proto]`).
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A response made by the proxy: `status` with a short `text/plain` body.
pub fn error_response(status: StatusCode, msg: &'static str) -> http::Response<ProxyBody> {
    let mut resp =
        http::Response::new(super::body::full(bytes::Bytes::from_static(msg.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_answer_503_and_timeouts_504() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
        let reset = Error::Reset {
            upstream: "ns/svc:80".into(),
            addr,
            source: "reset".into(),
        };
        assert_eq!(reset.status(), StatusCode::SERVICE_UNAVAILABLE);
        let timeout = Error::BackendTimeout {
            upstream: "ns/svc:80".into(),
            timeout: Duration::from_millis(200),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(timeout.is_upstream());
    }

    #[test]
    fn grpc_calls_get_trailers_only_status() {
        let resp = Error::NoRoute.to_grpc_response();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "12");
        let timeout = Error::RequestTimeout {
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.grpc_status(), 4);
    }

    #[test]
    fn misdirected_request_answers_421() {
        let e = Error::Misdirected {
            host: Some("a.example".into()),
            sni: "b.example".into(),
        };
        assert_eq!(e.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(e.to_response().status(), 421);
    }

    #[test]
    fn invalid_backend_answers_500() {
        assert_eq!(Error::InvalidBackend.status(), 500);
        assert_eq!(Error::NoBackend.status(), 500);
    }
}
