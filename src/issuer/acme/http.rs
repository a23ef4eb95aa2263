//! The HTTPS client instant-acme talks to the CA through: hyper with rustls
//! (ring), trusting either the issuer's `caBundle` (a private ACME server
//! such as Pebble) or the system's roots. It also remembers the last
//! `Retry-After` the CA sent with a 429 or 503, which instant-acme does not
//! surface with its problem documents, so rate limits back off as asked.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use super::{Error, IssuerProblem};
use crate::issuer::Clock;

/// How long one request to the CA may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The last Retry-After a rate-limited or unavailable answer carried.
pub type RetryAfterSlot = Arc<Mutex<Option<SystemTime>>>;

/// An instant-acme HTTP client over hyper and rustls.
pub struct AcmeHttp {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: RetryAfterSlot,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Turns a Retry-After delay into a time.
    clock: Arc<dyn Clock>,
}

impl AcmeHttp {
    /// A client trusting the PEM certificates in `ca_bundle_pem`, or the
    /// system's roots when `None`. A Retry-After given in seconds counts
    /// from `clock`'s now.
    pub fn new(
        ca_bundle_pem: Option<&str>,
        retry_after: RetryAfterSlot,
        metrics: Option<Arc<crate::metrics::Metrics>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        // The same trust rules as backend TLS: a bundle must hold at least one
        // certificate; the system store is read once per process.
        let roots: Arc<rustls::RootCertStore> = match ca_bundle_pem {
            Some(pem) => Arc::new(
                crate::tls::backend::roots_from_pem(pem.as_bytes())
                    .map_err(|e| Error::InvalidIssuer(IssuerProblem::CaBundle(e)))?,
            ),
            None => crate::tls::backend::system_roots()
                .unwrap_or_else(|| Arc::new(rustls::RootCertStore::empty())),
        };
        let provider = crate::tls::provider::provider();
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InvalidIssuer(IssuerProblem::TlsClient(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry_after,
            metrics,
            clock,
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let endpoint = endpoint_of(req.uri().path());
        let fut = self.client.request(req);
        let slot = self.retry_after.clone();
        let metrics = self.metrics.clone();
        let clock = self.clock.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let rsp = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
            if let Some(m) = &metrics {
                let status = match &rsp {
                    Ok(Ok(r)) => Some(r.status().as_u16()),
                    _ => None,
                };
                m.acme().request(endpoint, status, started.elapsed());
            }
            let rsp = rsp
                .map_err(|_| {
                    instant_acme::Error::Other("request to the ACME server timed out".into())
                })?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if matches!(
                rsp.status(),
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let when = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, clock.now()));
                if let Ok(mut slot) = slot.lock() {
                    *slot = when;
                }
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// The ACME resource a request URL path names, for metrics labels: a small
/// fixed set, recognised from the paths Let's Encrypt (Boulder) and Pebble
/// use (`/acme/new-order`, `/order-plz`, `/chalZ/…`), `other` otherwise.
pub fn endpoint_of(path: &str) -> &'static str {
    let p = path.to_ascii_lowercase();
    let has = |s: &str| p.contains(s);
    if has("nonce") {
        "newNonce"
    } else if has("renewal-info") || has("renewalinfo") {
        "renewalInfo"
    } else if has("new-acct") || has("newaccount") || has("sign-me-up") {
        "newAccount"
    } else if has("new-order") || has("neworder") || has("order-plz") {
        "newOrder"
    } else if has("finalize") {
        "finalize"
    } else if has("authz") {
        "authz"
    } else if has("chal") {
        "challenge"
    } else if has("cert") {
        "certificate"
    } else if has("order") {
        "order"
    } else if has("acct") || has("account") || has("reg") {
        "account"
    } else if p == "/dir" || p.ends_with("/directory") {
        "directory"
    } else {
        "other"
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3): delay seconds or an
/// HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_boulder_and_pebble_paths_are_named() {
        for (path, want) in [
            ("/directory", "directory"),
            ("/dir", "directory"),
            ("/acme/new-nonce", "newNonce"),
            ("/nonce-plz", "newNonce"),
            ("/acme/new-acct", "newAccount"),
            ("/sign-me-up", "newAccount"),
            ("/acme/new-order", "newOrder"),
            ("/order-plz", "newOrder"),
            ("/acme/authz/abc", "authz"),
            ("/authZ/abc", "authz"),
            ("/acme/chall/abc/def", "challenge"),
            ("/chalZ/abc", "challenge"),
            ("/acme/finalize/1/2", "finalize"),
            ("/finalize-order/abc", "finalize"),
            ("/acme/cert/abc", "certificate"),
            ("/certZ/abc", "certificate"),
            ("/acme/order/1/2", "order"),
            ("/my-order/abc", "order"),
            ("/acme/renewal-info/abc.def", "renewalInfo"),
            ("/something/else", "other"),
        ] {
            assert_eq!(endpoint_of(path), want, "{path}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:20:00 GMT", now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_200))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn ca_bundle_without_certificates_is_refused() {
        assert!(AcmeHttp::new(
            Some("not pem"),
            RetryAfterSlot::default(),
            None,
            Arc::new(crate::issuer::SystemClock),
        )
        .is_err());
    }
}
