//! The per-request flow: bind and listener from the connection and Host,
//! misdirected-request detection on TLS connections, route lookup, filters,
//! backend choice, then the exchange with retries and timeouts.
//!
//! The dataplane is read once per request; every decision below uses that
//! one snapshot even if a reload swaps in another meanwhile.

use super::body::RequestBody;
use super::errors::{self, Error};
use super::upstream::{outcome_of, pick_endpoint, Addressing, OutboundHead, Upstreams};
use super::{
    body, forwarded, mirror, retry, websocket, BoxError, ConnInfo, Proxy, ProxyBody, TlsInfo,
};
use crate::dataplane::filter::{mirror_selected, pick_weighted, RedirectRequest};
use crate::dataplane::router::{normalize_path, RequestView};
use crate::dataplane::{
    BackendTarget, Bind, CorsPolicy, Dataplane, Filter, HeaderEdit, Listener, Mirror, PathMatch,
    Rule, StaticResponse, Upstream, UpstreamProtocol,
};
use crate::hostname::normalize_host;
use crate::model::ObjectKey;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

impl Proxy {
    /// Serves one request; the generic core of [`Proxy::handle`], usable with
    /// any body type (tests drive it with in-memory bodies).
    pub async fn handle_request<B>(
        self: Arc<Self>,
        req: Request<B>,
        conn: Arc<ConnInfo>,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let dp = self.dataplane.load_full();
        // ACME HTTP-01 validations come in cleartext, before any route.
        if conn.tls.is_none() {
            if let Some(resp) = http01_answer(&dp.challenges, &req) {
                return resp;
            }
        }
        let method = req.method().clone();
        let uri = req.uri().clone();
        let grpc = errors::is_grpc(&req);
        let started = std::time::Instant::now();
        let mut target = crate::metrics::RequestTarget::default();
        // Routing and filters run in a plain function: its locals take no
        // room in this future, which is boxed and copied for every request.
        // Only the plan crosses the await.
        let result = 'served: {
            let mut plan = match self.plan(&dp, req, &conn, &mut target) {
                Ok(Planned::Forward(plan)) => plan,
                Ok(Planned::Answer(resp)) => break 'served Ok(resp),
                Err(error) => break 'served Err(error),
            };
            self.forward(&mut plan).await
        };
        let (status, upstream) = match &result {
            Ok(resp) => (resp.status().as_u16(), None),
            Err(error) => (error.status().as_u16(), error.upstream_reason()),
        };
        self.metrics
            .traffic()
            .request(&dp, &target, status, started.elapsed(), upstream);
        match result {
            Ok(resp) => {
                tracing::debug!(%method, %uri, client = %conn.remote, status = resp.status().as_u16(), "proxied");
                resp
            }
            Err(error) => {
                if error.is_upstream() {
                    tracing::warn!(%method, path = uri.path(), client = %conn.remote, %error, "upstream failure");
                } else {
                    tracing::debug!(%method, %uri, client = %conn.remote, %error, "answered by gateway");
                }
                if grpc {
                    error.to_grpc_response()
                } else {
                    error.to_response()
                }
            }
        }
    }

    /// Routes a request and applies its filters: the answer when the
    /// gateway gives it itself (redirect, CORS preflight, static response),
    /// else what the exchange with a backend needs.
    fn plan<'d, B>(
        &self,
        dp: &'d Dataplane,
        mut req: Request<B>,
        conn: &ConnInfo,
        target: &mut crate::metrics::RequestTarget,
    ) -> Result<Planned<'d, B>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let bind = find_bind(dp, conn.local).ok_or(Error::NoBind(conn.local))?;
        let raw_host = forwarded::request_host(req.uri(), req.headers());
        let host = raw_host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .and_then(normalize_host);
        let listener = select_listener(bind, host.as_deref(), conn.tls.as_ref())?;
        target.listener = Some(listener.clone());
        // Normalised once: routes match this path and it is the one sent
        // upstream. Kept as an owned string only when it differs, since the
        // request is taken apart below.
        let changed_path = match normalize_path(req.uri().path()) {
            Cow::Owned(path) => Some(path),
            Cow::Borrowed(_) => None,
        };
        let entry = {
            let view = RequestView {
                method: req.method(),
                path: changed_path.as_deref().unwrap_or(req.uri().path()),
                query: req.uri().query(),
                headers: req.headers(),
            };
            listener
                .routes
                .find_normalized(host.as_deref().unwrap_or(""), &view)
                .ok_or(Error::NoRoute)?
        };
        let rule: &Rule = &entry.rule;
        target.rule = Some(entry.rule.clone());

        let is_websocket = forwarded::is_websocket_upgrade(req.version(), req.headers());
        let client_upgrade = is_websocket.then(|| websocket::ClientUpgrade::take(&mut req));
        let (parts, client_body) = req.into_parts();
        let scheme = if conn.tls.is_some() { "https" } else { "http" };

        let path = match changed_path {
            Some(path) => Cow::Owned(path),
            None => Cow::Borrowed(parts.uri.path()),
        };
        let mut ex = Exchange::new(parts.headers, raw_host.clone(), path, &parts.uri);
        forwarded::strip_hop_by_hop(&mut ex.headers, is_websocket);
        forwarded::set_forwarded(
            &mut ex.headers,
            conn.forwarded_for(),
            scheme,
            ex.host.as_ref(),
        );
        forwarded::set_client_cert(
            &mut ex.headers,
            conn.tls.as_ref().and_then(|t| t.client_cert.as_deref()),
        );
        let redirect = RedirectContext {
            scheme,
            host: host.as_deref().unwrap_or(""),
            port: listener.port,
            matched: &entry.matcher.path,
            method: &parts.method,
        };

        if let Some(resp) = ex.apply(&rule.filters, &redirect) {
            return Ok(Planned::Answer(resp));
        }
        if rule.backends.is_empty() || rule.total_weight == 0 {
            return Err(Error::NoBackend);
        }
        let sample = rand::random_range(0..rule.total_weight);
        let backend = pick_weighted(&rule.backends, sample).ok_or(Error::NoBackend)?;
        target.backend = rule.backends.iter().position(|b| std::ptr::eq(b, backend));
        if let Some(resp) = ex.apply(&backend.filters, &redirect) {
            return Ok(Planned::Answer(resp));
        }
        let upstream = match &backend.target {
            BackendTarget::Invalid => return Err(Error::InvalidBackend),
            BackendTarget::Static(fixed) => {
                let resp = static_response(fixed);
                return Ok(Planned::Answer(ex.into_finish(parts.version).apply(resp)));
            }
            BackendTarget::Service(upstream) => upstream,
        };
        if upstream.endpoints.is_empty() {
            return Err(Error::NoEndpoints {
                upstream: upstream.name.clone(),
            });
        }

        let head = ex.outbound_head(parts.method)?;
        let mirrors = std::mem::take(&mut ex.mirrors);
        Ok(Planned::Forward(Plan {
            rule,
            upstream,
            gateway: &listener.key.gateway,
            head,
            body: Some(client_body),
            client_upgrade,
            mirrors,
            finish: ex.into_finish(parts.version),
        }))
    }

    /// The exchange of a planned request with its backend (buffering the
    /// body first when the rule retries or mirrors), bounded by
    /// `timeouts.request`, and the response shaped by the filters. Takes
    /// the plan by reference: an async function keeps its parameters for
    /// its whole life, and the caller keeps the plan anyway.
    async fn forward<B>(&self, plan: &mut Plan<'_, B>) -> Result<Response<ProxyBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let Plan {
            rule,
            upstream,
            gateway,
            head,
            body,
            client_upgrade,
            mirrors,
            finish,
        } = plan;
        let (rule, upstream, gateway) = (*rule, *upstream, *gateway);
        let client_body = body.take().ok_or(Error::NoBackend)?;
        let wants_replay = rule.retry.is_some() || !mirrors.is_empty();
        let exchange = async {
            let body = RequestBody::prepare(client_body, wants_replay)
                .await
                .map_err(Error::RequestBody)?;
            self.send_mirrors(mirrors, gateway, head, &body);
            match client_upgrade.take() {
                Some(client) if upstream.protocol != UpstreamProtocol::H2c => {
                    // Boxed: rare, and large enough to grow every request's future.
                    Box::pin(self.upgrade(rule, upstream, gateway, head.take(), body, client)).await
                }
                _ => self.attempts(rule, upstream, gateway, head, body).await,
            }
        };
        let result = match rule.timeouts.request {
            Some(timeout) => tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(Error::RequestTimeout { timeout })),
            None => exchange.await,
        };
        match result {
            Ok(resp) => Ok(finish.apply(resp)),
            Err(error) => {
                if error.is_upstream() {
                    tracing::warn!(backend = %upstream.name, route = %rule.key, %error, "upstream request failed");
                }
                Err(error)
            }
        }
    }

    /// Sends one attempt after another until one succeeds or the retry
    /// policy gives up; returns the last answer or failure. Each attempt is
    /// bounded by `timeouts.backendRequest`.
    ///
    /// The exchange with a plain HTTP/1.1 backend, the common case, is
    /// awaited inline and encodes the head where it lies; any other leg is
    /// boxed. Every async layer keeps its own parameters for its whole life
    /// and is copied into its parent, so this one layer (no per-attempt
    /// function, no dispatching `send` in between) keeps every request's
    /// future smaller.
    async fn attempts<B>(
        &self,
        rule: &Rule,
        upstream: &Upstream,
        gateway: &ObjectKey,
        head: &mut OutboundHead,
        mut body: RequestBody<B>,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let policy = rule.retry.as_ref().filter(|_| body.is_replayable());
        let plain = Upstreams::is_plain_http1(upstream);
        let mut attempts_made: u32 = 0;
        loop {
            let addr = pick_endpoint(&upstream.endpoints).ok_or_else(|| Error::NoEndpoints {
                upstream: upstream.name.clone(),
            })?;
            let body = body.take_for_attempt();
            let send = if plain {
                Either::Left(self.upstreams.send_http1(&upstream.name, addr, head, body))
            } else {
                // Without a policy there is exactly one attempt: give the
                // head away instead of copying it.
                let this_head = match policy {
                    Some(_) => Cow::Borrowed(&*head),
                    None => Cow::Owned(head.take()),
                };
                Either::Right(Box::pin(self.upstreams.send_other(
                    upstream,
                    Some(gateway),
                    addr,
                    this_head,
                    body,
                )))
            };
            let result =
                within_backend_timeout(rule.timeouts.backend_request, upstream, send).await;
            attempts_made = attempts_made.saturating_add(1);
            let outcome = match &result {
                Ok(resp) => retry::Outcome::Status(resp.status().as_u16()),
                Err(e) => outcome_of(e),
            };
            if !retry::should_retry(policy, attempts_made, outcome) {
                return result;
            }
            tracing::debug!(backend = %upstream.name, route = %rule.key, %addr, attempt = attempts_made, ?outcome, "retrying");
            drop(result);
            if let Some(backoff) = policy.map(|p| p.backoff).filter(|b| !b.is_zero()) {
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// A WebSocket handshake: one attempt on a dedicated connection.
    async fn upgrade<B>(
        &self,
        rule: &Rule,
        upstream: &Upstream,
        gateway: &ObjectKey,
        head: OutboundHead,
        mut body: RequestBody<B>,
        client: websocket::ClientUpgrade,
    ) -> Result<Response<ProxyBody>, Error>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let addr = pick_endpoint(&upstream.endpoints).ok_or_else(|| Error::NoEndpoints {
            upstream: upstream.name.clone(),
        })?;
        let req = head.into_request(Addressing::DirectHttp1, addr, body.take_for_attempt())?;
        let forward = websocket::forward(upstream, Some(gateway), addr, req, client);
        within_backend_timeout(rule.timeouts.backend_request, upstream, forward).await
    }

    fn send_mirrors<B>(
        &self,
        mirrors: &[&Mirror],
        gateway: &ObjectKey,
        head: &OutboundHead,
        body: &RequestBody<B>,
    ) where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        for m in mirrors {
            let BackendTarget::Service(upstream) = &m.target else {
                continue;
            };
            match body.buffered() {
                Some(bytes) => mirror::spawn(
                    self.upstreams.clone(),
                    upstream.clone(),
                    gateway.clone(),
                    head.clone(),
                    bytes.clone(),
                ),
                None => {
                    tracing::debug!(mirror = %upstream.name, "request body too large to mirror");
                }
            }
        }
    }
}

/// `send` bounded by `timeout` (a rule's `timeouts.backendRequest`): past
/// it, the exchange is dropped and fails as [`Error::BackendTimeout`].
///
/// A plain function returning the future rather than an `async fn`: an
/// async layer would keep `send` once as its parameter and once inside the
/// timer, growing every request's future by the exchange's size.
fn within_backend_timeout<'u, F>(
    timeout: Option<std::time::Duration>,
    upstream: &'u Upstream,
    send: F,
) -> impl Future<Output = Result<Response<ProxyBody>, Error>> + 'u
where
    F: Future<Output = Result<Response<ProxyBody>, Error>> + 'u,
{
    match timeout {
        Some(timeout) => Either::Left(tokio::time::timeout(timeout, send).map(move |result| {
            result.unwrap_or_else(|_| {
                Err(Error::BackendTimeout {
                    upstream: upstream.name.clone(),
                    timeout,
                })
            })
        })),
        None => Either::Right(send),
    }
}

/// The bind serving a local address: the exact address, else a wildcard
/// (`0.0.0.0` / `::`) bind on the same port, since connections accepted on a
/// wildcard socket report the concrete local address.
pub(crate) fn find_bind(dp: &Dataplane, local: SocketAddr) -> Option<&Bind> {
    dp.bind(local).or_else(|| {
        dp.binds.iter().find(|b| {
            b.addr.port() == local.port()
                && b.addr.ip().is_unspecified()
                && b.protocol != crate::dataplane::BindProtocol::Udp
        })
    })
}

/// The listener that serves a request for `host` on `bind`.
///
/// On a TLS connection whose client sent SNI, the connection belongs to the
/// listener SNI selected: a Host that selects another listener, or no
/// listener at all, is a misdirected request (421, RFC 9110 §15.5.20; Gateway
/// API `HTTPRouteHTTPSListenerDetectMisdirectedRequests`). Without SNI the
/// Host decides alone; without Host the handshake's listener serves.
pub(crate) fn select_listener<'a>(
    bind: &'a Bind,
    host: Option<&str>,
    tls: Option<&TlsInfo>,
) -> Result<&'a Arc<Listener>, Error> {
    let by_key = |tls: &TlsInfo| bind.listeners.iter().find(|l| l.key == tls.listener);
    match (tls, host) {
        (None, host) => bind.select(host).ok_or(Error::NoListener),
        (Some(tls), None) => by_key(tls)
            .or_else(|| bind.select(None))
            .ok_or(Error::NoListener),
        (Some(tls), Some(host)) => {
            let selected = bind.select(Some(host));
            match (&tls.sni, selected) {
                (None, selected) => selected.ok_or(Error::NoListener),
                (Some(_), Some(l)) if l.key == tls.listener => Ok(l),
                (Some(sni), _) => Err(Error::Misdirected {
                    host: Some(host.to_string()),
                    sni: sni.clone(),
                }),
            }
        }
    }
}

/// What a redirect and a CORS preflight need from the request.
struct RedirectContext<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
    matched: &'a PathMatch,
    method: &'a Method,
}

/// The request as the filters shape it, and what they ask of the response.
/// `'a` is the configuration's lifetime, `'r` the request's.
struct Exchange<'a, 'r> {
    headers: HeaderMap,
    /// Host to send upstream (as received, or rewritten).
    host: Option<HeaderValue>,
    /// Normalised path, as forwarded: borrowed while it is the client's
    /// path unchanged.
    path: Cow<'r, str>,
    /// The client's target, sent on as it is while the path is unchanged.
    target: &'r http::Uri,
    response_edits: Vec<&'a HeaderEdit>,
    cors: Option<&'a CorsPolicy>,
    /// The client's `Origin`, kept for CORS response headers.
    origin: HeaderMap,
    mirrors: Vec<&'a Mirror>,
}

impl<'a, 'r> Exchange<'a, 'r> {
    /// The exchange for a request with `target`, whose path normalised
    /// (by [`normalize_path`]) is `path`.
    fn new(
        headers: HeaderMap,
        host: Option<HeaderValue>,
        path: Cow<'r, str>,
        target: &'r http::Uri,
    ) -> Self {
        Exchange {
            headers,
            host,
            path,
            target,
            response_edits: Vec::new(),
            cors: None,
            origin: HeaderMap::new(),
            mirrors: Vec::new(),
        }
    }

    /// Applies `filters` in order; returns the response when one of them
    /// answers the request itself (redirect, CORS preflight).
    fn apply(
        &mut self,
        filters: &'a [Filter],
        ctx: &RedirectContext<'_>,
    ) -> Option<Response<ProxyBody>> {
        for filter in filters {
            match filter {
                Filter::Cors(policy) => {
                    if let Some(headers) = policy.preflight(&self.headers, ctx.method) {
                        let mut resp = Response::new(body::empty());
                        *resp.status_mut() = CorsPolicy::PREFLIGHT_STATUS;
                        *resp.headers_mut() = headers;
                        return Some(resp);
                    }
                    if let Some(origin) = self.headers.get(header::ORIGIN) {
                        self.origin.insert(header::ORIGIN, origin.clone());
                    }
                    self.cors = Some(policy);
                }
                Filter::Redirect(redirect) => {
                    let location = redirect.location(&RedirectRequest {
                        scheme: ctx.scheme,
                        host: ctx.host,
                        port: ctx.port,
                        path: &self.path,
                        query: self.target.query(),
                        matched: ctx.matched,
                    });
                    return Some(redirect_response(redirect.status, &location));
                }
                Filter::RequestHeaders(edit) => {
                    // The host travels in `self.host` (an earlier URLRewrite may
                    // have changed it); only a modifier that sets Host itself
                    // replaces it.
                    self.headers.remove(header::HOST);
                    edit.apply(&mut self.headers);
                    if let Some(h) = self.headers.remove(header::HOST) {
                        // Only a value that can go on the wire as a host.
                        if h.to_str().is_ok() {
                            self.host = Some(h);
                        }
                    }
                }
                Filter::Rewrite(rewrite) => {
                    // A configured hostname is an RFC 1123 name, always a
                    // valid header value.
                    if let Some(hostname) = &rewrite.hostname {
                        if let Ok(value) = HeaderValue::from_str(hostname) {
                            self.host = Some(value);
                        }
                    }
                    if let Some(path) = rewrite.apply_path(&self.path, ctx.matched) {
                        self.path = Cow::Owned(path);
                    }
                }
                Filter::Mirror(m) => {
                    let sample = rand::random_range(0..m.denominator.max(1));
                    if mirror_selected(m, sample) {
                        self.mirrors.push(m);
                    }
                }
                Filter::ResponseHeaders(edit) => self.response_edits.push(edit),
            }
        }
        None
    }

    /// The head to send upstream (and to mirrors). Takes the headers, path
    /// and host out of the exchange: only the response edits and CORS are
    /// used after it. An unchanged path goes on as the client's own bytes
    /// (`normalize_path` borrows only a path it leaves as it is).
    fn outbound_head(&mut self, method: Method) -> Result<OutboundHead, Error> {
        self.headers.remove(header::HOST);
        let path_and_query = match (&self.path, self.target.path_and_query()) {
            (Cow::Borrowed(_), Some(original)) => original.clone(),
            (path, _) => {
                let mut joined = String::with_capacity(path.len() + 1);
                joined.push_str(path);
                if let Some(q) = self.target.query() {
                    joined.push('?');
                    joined.push_str(q);
                }
                PathAndQuery::try_from(joined).map_err(|e| Error::BuildRequest(e.into()))?
            }
        };
        Ok(OutboundHead {
            method,
            path_and_query,
            host: self.host.take(),
            headers: std::mem::take(&mut self.headers),
        })
    }

    /// What the response will need of the filters, once the request head
    /// has gone.
    fn into_finish(self, version: http::Version) -> Finish<'a> {
        Finish {
            version,
            response_edits: self.response_edits,
            cors: self.cors,
            origin: self.origin,
        }
    }
}

/// What the response to the client needs from the request's filters.
struct Finish<'a> {
    /// The client's HTTP version, which the response takes.
    version: http::Version,
    response_edits: Vec<&'a HeaderEdit>,
    cors: Option<&'a CorsPolicy>,
    /// The client's `Origin`, kept for CORS response headers.
    origin: HeaderMap,
}

impl Finish<'_> {
    /// The response to the client: hop-by-hop headers removed (upgrade
    /// headers kept on a 101), response header modifiers and CORS headers
    /// applied.
    fn apply(&self, mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        forwarded::strip_hop_by_hop(resp.headers_mut(), switching);
        for edit in &self.response_edits {
            edit.apply(resp.headers_mut());
        }
        if let Some(policy) = self.cors {
            policy.response_headers(&self.origin, resp.headers_mut());
        }
        *resp.version_mut() = self.version;
        resp
    }
}

/// What routing decided for a request.
// Forwarding is the common case: boxing the plan to even out the variants
// would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Planned<'d, B> {
    /// The gateway answers itself.
    Answer(Response<ProxyBody>),
    /// The request goes to a backend.
    Forward(Plan<'d, B>),
}

/// A request routed to a backend, its filters applied.
struct Plan<'d, B> {
    rule: &'d Rule,
    upstream: &'d Upstream,
    gateway: &'d ObjectKey,
    /// The head as it goes upstream.
    head: OutboundHead,
    /// The client's body; taken when the exchange starts.
    body: Option<B>,
    /// A WebSocket handshake's client side; taken when the exchange starts.
    client_upgrade: Option<websocket::ClientUpgrade>,
    mirrors: Vec<&'d Mirror>,
    finish: Finish<'d>,
}

/// A redirect answered by the gateway.
fn redirect_response(status: u16, location: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    match HeaderValue::from_str(location) {
        Ok(value) => {
            resp.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => {
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    resp
}

/// The answer to an ACME HTTP-01 validation request (RFC 8555 §8.3): the
/// key authorization, when `req` is a GET for the token of a pending
/// challenge. Other tokens, and every other path, go to the user's routes.
fn http01_answer<B>(
    board: &crate::dataplane::challenges::ChallengeBoard,
    req: &Request<B>,
) -> Option<Response<ProxyBody>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let key_authorization = board.http01_for_path(req.uri().path())?;
    let mut resp = Response::new(body::full(Bytes::from(key_authorization.to_string())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}

/// A `portcullis.dev/StaticResponse` answer.
fn static_response(fixed: &StaticResponse) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(fixed.body.clone()));
    *resp.status_mut() = StatusCode::from_u16(fixed.status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(&fixed.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    resp
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
