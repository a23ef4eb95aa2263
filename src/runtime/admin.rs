//! The admin HTTP endpoint (plain HTTP, on `--admin-addr`): `/healthz`
//! (process alive), `/readyz` (first configuration programmed), `/status`
//! (the [`Report`] as JSON) and `/metrics`.
//!
//! The answers are computed by [`respond`] from the shared runtime state;
//! [`serve`] only accepts connections.

use super::report::Report;
use super::Shared;
use bytes::Bytes;
use http::{header, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Content type of `/metrics`: the OpenMetrics text exposition.
pub const METRICS_CONTENT_TYPE: &str = crate::metrics::CONTENT_TYPE;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The answer to one admin request.
pub fn respond(method: &Method, path: &str, shared: &Shared) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" if shared.is_ready() => text(StatusCode::OK, "ready"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        "/status" => status(&shared.report.load()),
        "/metrics" => with_type(
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            Bytes::from(shared.metrics.encode()),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn status(report: &Report) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(report) {
        Ok(body) => with_type(StatusCode::OK, "application/json", Bytes::from(body)),
        Err(error) => {
            tracing::error!(%error, "cannot serialise status");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialise status\n",
            )
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn with_type(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// Serves admin requests on `listener` until `stop` changes or its sender is
/// dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "admin accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let response = respond(req.method(), req.uri().path(), &shared);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = conn.await {
                tracing::debug!(%remote, %error, "admin connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = r.into_body().collect().await.expect("full body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn readiness_follows_first_programmed_config() {
        let shared = Shared::new();
        let r = respond(&Method::GET, "/readyz", &shared);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        shared.mark_ready();
        assert_eq!(
            respond(&Method::GET, "/readyz", &shared).status(),
            StatusCode::OK
        );
        let h = respond(&Method::GET, "/healthz", &shared);
        assert_eq!(h.status(), StatusCode::OK);
        assert_eq!(body(h).await, "ok");
    }

    #[tokio::test]
    async fn status_is_json_with_the_report_fields() {
        let shared = Shared::new();
        let r = respond(&Method::GET, "/status", &shared);
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body(r).await).expect("json");
        for field in [
            "objects",
            "problems",
            "ignored",
            "bindErrors",
            "generation",
            "lastReload",
        ] {
            assert!(v.get(field).is_some(), "{field}");
        }
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text_and_unknown_paths_404() {
        let shared = Shared::new();
        let m = respond(&Method::GET, "/metrics", &shared);
        assert_eq!(m.headers()[header::CONTENT_TYPE], METRICS_CONTENT_TYPE);
        let text = body(m).await;
        assert!(text.contains("portcullis_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            respond(&Method::GET, "/nope", &shared).status(),
            StatusCode::NOT_FOUND
        );
    }
}
