//! The client side of the proxy: which transport a request to a backend
//! takes. HTTP/1.1, cleartext or TLS, goes through the pooled keep-alive
//! connections driven by the request's task ([`super::upstream_h1`]: one
//! pool per stream type, the same code); HTTP/2, h2c or TLS, through one
//! multiplexed connection per endpoint and client configuration
//! ([`super::upstream_h2`]). Every connection is opened by
//! [`super::connect`].

use super::errors::Error;
use super::retry::Outcome;
use super::upstream_h1::H1Pool;
use super::upstream_h2::H2Cache;
use super::{body, ProxyBody};
use crate::dataplane::{Upstream, UpstreamProtocol};
use crate::model::ObjectKey;
use http::{Request, Response};
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The client side of the proxy: every connection to every backend.
pub struct Upstreams {
    http1: H1Pool<TcpStream>,
    https1: H1Pool<TlsStream<TcpStream>>,
    h2: H2Cache,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Empty pools.
    pub fn new() -> Self {
        Upstreams {
            http1: H1Pool::default(),
            https1: H1Pool::default(),
            h2: H2Cache::default(),
        }
    }

    /// Sends `head` with `body` to the endpoint `addr` of `upstream`,
    /// addressed as [`Addressing::for_upstream`] says. A borrowed head (a
    /// retry policy will need it again) is copied only where a request
    /// object is built (HTTP/2 upstreams); HTTP/1.1, cleartext or TLS,
    /// encodes it as it is. `gateway` picks the client certificate presented to TLS
    /// backends.
    pub async fn send(
        &self,
        upstream: &Upstream,
        gateway: Option<&ObjectKey>,
        addr: SocketAddr,
        head: Cow<'_, OutboundHead>,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, Error> {
        if Self::is_plain_http1(upstream) {
            return self.send_http1(&upstream.name, addr, &head, body).await;
        }
        self.send_other(upstream, gateway, addr, head, body).await
    }

    /// Whether `upstream` is reached over cleartext HTTP/1.1 (the pooled
    /// connections of [`Upstreams::send_http1`]).
    pub fn is_plain_http1(upstream: &Upstream) -> bool {
        upstream.tls.is_none()
            && matches!(
                upstream.protocol,
                UpstreamProtocol::Http1 | UpstreamProtocol::WebSocket
            )
    }

    /// Sends `head` with `body` to `addr` of the cleartext HTTP/1.1
    /// upstream `name`, encoding the head where it lies. (The pool's own
    /// future, not one more async layer around it.)
    pub fn send_http1<'a>(
        &'a self,
        name: &'a str,
        addr: SocketAddr,
        head: &'a OutboundHead,
        body: ProxyBody,
    ) -> impl Future<Output = Result<Response<ProxyBody>, Error>> + Send + 'a {
        self.http1.send(name, addr, None, head, body)
    }

    /// Sends `head` with `body` over TLS or HTTP/2: every upstream that is
    /// not [plain HTTP/1.1](Upstreams::is_plain_http1).
    pub async fn send_other(
        &self,
        upstream: &Upstream,
        gateway: Option<&ObjectKey>,
        addr: SocketAddr,
        head: Cow<'_, OutboundHead>,
        body: ProxyBody,
    ) -> Result<Response<ProxyBody>, Error> {
        let name = upstream.name.as_str();
        let addressing = Addressing::for_upstream(upstream);
        let tls = upstream
            .tls
            .as_ref()
            .map(|tls| (&**tls, tls.config_for(gateway)));
        // Boxed: these legs (handshakes, an HTTP/2 connect) are large
        // futures, and every request's future would otherwise reserve their
        // size (see `Proxy::handle`). Bound to a local: a temporary would
        // keep the unboxed size reserved across the await.
        if addressing == Addressing::DirectHttp1 {
            if tls.is_none() {
                return self.send_http1(name, addr, &head, body).await;
            }
            let send = Box::pin(self.https1.send(name, addr, tls, &head, body));
            return send.await;
        }
        let req = head.into_owned().into_request(addressing, addr, body)?;
        let send = Box::pin(self.h2.send(name, addr, tls, req));
        send.await.map(|resp| resp.map(body::boxed))
    }
}

/// How an outbound request is addressed on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// HTTP/1.1 (pooled, TLS or not, and WebSocket): origin-form URI and a
    /// Host header.
    DirectHttp1,
    /// HTTP/2: absolute URI whose authority is the host (`:authority`), no
    /// Host header.
    Http2,
}

impl Addressing {
    /// The addressing an upstream's requests use.
    pub fn for_upstream(upstream: &Upstream) -> Self {
        match upstream.protocol {
            UpstreamProtocol::H2c => Addressing::Http2,
            UpstreamProtocol::Http1 | UpstreamProtocol::WebSocket => Addressing::DirectHttp1,
        }
    }
}

/// The head of a request to send upstream, after filters: what every attempt
/// and every mirror copy is built from.
#[derive(Debug, Clone)]
pub struct OutboundHead {
    /// Method.
    pub method: http::Method,
    /// Path and query, as forwarded (the client's own bytes when no filter
    /// changed them).
    pub path_and_query: http::uri::PathAndQuery,
    /// Host to send (the client's, or the rewritten one); the endpoint
    /// address when none.
    pub host: Option<http::HeaderValue>,
    /// Headers, hop-by-hop headers already removed, without Host.
    pub headers: http::HeaderMap,
}

impl OutboundHead {
    /// Takes the head out, leaving an empty one in its place (which
    /// allocates nothing).
    pub fn take(&mut self) -> OutboundHead {
        std::mem::replace(
            self,
            OutboundHead {
                method: http::Method::GET,
                path_and_query: http::uri::PathAndQuery::from_static("/"),
                host: None,
                headers: http::HeaderMap::new(),
            },
        )
    }

    /// The request for endpoint `addr`, addressed as `addressing` requires
    /// (TLS and h2c upstreams, WebSocket handshakes).
    pub fn into_request(
        self,
        addressing: Addressing,
        addr: SocketAddr,
        body: ProxyBody,
    ) -> Result<Request<ProxyBody>, Error> {
        let build = |e: http::Error| Error::BuildRequest(e.into());
        let pq = if self.path_and_query.as_str().starts_with('/') {
            self.path_and_query
        } else {
            http::uri::PathAndQuery::try_from(format!("/{}", self.path_and_query))
                .map_err(|e| build(e.into()))?
        };
        let endpoint = || http::HeaderValue::from_str(&addr.to_string());
        let (uri, version) = match addressing {
            Addressing::DirectHttp1 => (http::Uri::from(pq), http::Version::HTTP_11),
            Addressing::Http2 => {
                // A host that is not a valid authority falls back to the endpoint.
                let authority = self
                    .host
                    .as_ref()
                    .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
                    .map_or_else(|| addr.to_string().parse(), Ok)
                    .map_err(|e: http::uri::InvalidUri| build(e.into()))?;
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(http::uri::Scheme::HTTP);
                parts.authority = Some(authority);
                parts.path_and_query = Some(pq);
                let uri = http::Uri::from_parts(parts).map_err(|e| build(e.into()))?;
                (uri, http::Version::HTTP_2)
            }
        };
        // Parts set one by one: `Request::builder` threads a `Result`
        // through every step, which is measurable at this rate.
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = self.headers;
        if addressing != Addressing::Http2 {
            let value = match self.host {
                Some(h) => h,
                None => endpoint().map_err(|e| build(e.into()))?,
            };
            req.headers_mut().insert(http::header::HOST, value);
        }
        Ok(req)
    }
}

/// A bodiless GET for `uri`, for tests.
#[cfg(test)]
pub(crate) fn empty_request(uri: &str) -> Request<ProxyBody> {
    let mut req = Request::new(super::body::empty());
    if let Ok(uri) = uri.parse() {
        *req.uri_mut() = uri;
    }
    req
}

/// Picks one endpoint uniformly at random; `None` when there is none.
pub fn pick_endpoint(endpoints: &[SocketAddr]) -> Option<SocketAddr> {
    match endpoints.len() {
        0 => None,
        1 => endpoints.first().copied(),
        n => endpoints.get(rand::random_range(0..n)).copied(),
    }
}

/// What kind of transport failure ended an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection was closed or reset before a response head.
    Reset,
    /// The backend sent something that is not a valid response.
    Protocol,
}

impl FailureKind {
    pub(crate) fn into_error(self, name: &str, addr: SocketAddr, source: super::BoxError) -> Error {
        let upstream = name.to_string();
        match self {
            FailureKind::Reset => Error::Reset {
                upstream,
                addr,
                source,
            },
            FailureKind::Protocol => Error::Protocol {
                upstream,
                addr,
                source,
            },
        }
    }
}

/// Classifies a hyper error from an upstream exchange.
pub fn classify(e: &hyper::Error) -> FailureKind {
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        FailureKind::Protocol
    } else {
        FailureKind::Reset
    }
}

/// The retry outcome of an attempt that failed with `e`.
pub fn outcome_of(e: &Error) -> Outcome {
    match e {
        Error::Connect { .. } | Error::Reset { .. } => Outcome::ConnectionFailed,
        Error::BackendTimeout { .. } => Outcome::Timeout,
        _ => Outcome::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::super::body;
    use super::*;

    fn head() -> OutboundHead {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("1"));
        OutboundHead {
            method: http::Method::GET,
            path_and_query: http::uri::PathAndQuery::from_static("/p?q=1"),
            host: Some(http::HeaderValue::from_static("example.org:8080")),
            headers,
        }
    }

    fn addr() -> SocketAddr {
        "10.1.2.3:3000".parse().expect("literal")
    }

    #[test]
    fn http1_uses_origin_form_and_keeps_host() {
        let req = head()
            .into_request(Addressing::DirectHttp1, addr(), body::empty())
            .expect("valid head");
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.headers()["host"], "example.org:8080");
        assert_eq!(req.headers()["x-a"], "1");
        assert_eq!(req.version(), http::Version::HTTP_11);
    }

    #[test]
    fn http2_sends_host_as_authority() {
        let req = head()
            .into_request(Addressing::Http2, addr(), body::empty())
            .expect("valid head");
        assert_eq!(req.uri(), "http://example.org:8080/p?q=1");
        assert!(req.headers().get("host").is_none());
        assert_eq!(req.version(), http::Version::HTTP_2);
    }

    #[test]
    fn direct_http1_uses_origin_form() {
        let mut h = head();
        h.host = None;
        let req = h
            .into_request(Addressing::DirectHttp1, addr(), body::empty())
            .expect("valid head");
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.headers()["host"], "10.1.2.3:3000");
    }

    #[test]
    fn pick_endpoint_of_none_is_none() {
        assert_eq!(pick_endpoint(&[]), None);
    }

    #[test]
    fn pick_endpoint_stays_within_the_set() {
        let eps: Vec<SocketAddr> = vec![
            "10.0.0.1:80".parse().expect("literal"),
            "10.0.0.2:80".parse().expect("literal"),
        ];
        for _ in 0..32 {
            let picked = pick_endpoint(&eps).expect("non-empty set");
            assert!(eps.contains(&picked));
        }
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_failure() {
        // Bind then drop a listener so the port is (almost surely) closed.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            l.local_addr().expect("bound socket has an address")
        };
        let ups = Upstreams::new();
        let upstream = |protocol| Upstream {
            name: "t/svc:80".into(),
            endpoints: vec![addr],
            protocol,
            tls: None,
        };
        let err = ups
            .send(
                &upstream(UpstreamProtocol::Http1),
                None,
                addr,
                Cow::Owned(head()),
                body::empty(),
            )
            .await
            .expect_err("nothing listens");
        assert_eq!(outcome_of(&err), Outcome::ConnectionFailed);
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let err = ups
            .send(
                &upstream(UpstreamProtocol::H2c),
                None,
                addr,
                Cow::Borrowed(&head()),
                body::empty(),
            )
            .await
            .expect_err("nothing listens");
        assert_eq!(outcome_of(&err), Outcome::ConnectionFailed);
    }

    /// The h2c leg is boxed where it starts: inline, `send` (part of every
    /// request's future) would be at least its size.
    #[test]
    fn the_h2c_leg_does_not_grow_every_request() {
        let ups = Upstreams::new();
        let upstream = Upstream {
            name: "t/svc:80".into(),
            endpoints: vec![addr()],
            protocol: UpstreamProtocol::Http1,
            tls: None,
        };
        let head = head();
        let send = ups.send(&upstream, None, addr(), Cow::Borrowed(&head), body::empty());
        let h2c = ups.h2.send("t/svc:80", addr(), None, empty_request("/"));
        assert!(
            std::mem::size_of_val(&send) < std::mem::size_of_val(&h2c),
            "send is {} bytes, the h2c leg {}",
            std::mem::size_of_val(&send),
            std::mem::size_of_val(&h2c)
        );
    }
}
