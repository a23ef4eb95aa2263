//! `RequestMirror`: fire-and-forget copies of a request to another backend.
//!
//! A copy is sent from a spawned task and its answer is read and dropped, so
//! it never delays or alters the primary exchange. The copy carries the
//! request head as it stands after the rule's filters (Host kept, so the
//! mirror sees what the primary backend sees), and the body only when the body
//! was small enough to buffer (see [`super::body`]); requests with larger or
//! chunked bodies are not mirrored, rather than mirrored truncated.

use super::body;
use super::upstream::{pick_endpoint, OutboundHead, Upstreams};
use crate::dataplane::Upstream;
use crate::model::ObjectKey;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// Bound on one mirrored exchange, so a stuck mirror backend cannot pile up
/// tasks.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends a copy of `head` (with `body`) to an endpoint of `upstream` in a
/// spawned task.
pub fn spawn(
    upstreams: Arc<Upstreams>,
    upstream: Arc<Upstream>,
    gateway: ObjectKey,
    head: OutboundHead,
    body: Bytes,
) {
    tokio::spawn(async move {
        let Some(addr) = pick_endpoint(&upstream.endpoints) else {
            tracing::debug!(mirror = %upstream.name, "mirror has no endpoints");
            return;
        };
        let body = body::full(body);
        let exchange = async {
            let resp = upstreams
                .send(&upstream, Some(&gateway), addr, Cow::Owned(head), body)
                .await?;
            let status = resp.status();
            // Read the answer to the end so the connection can be reused.
            let _ = resp.into_body().collect().await;
            Ok::<_, super::Error>(status)
        };
        match tokio::time::timeout(MIRROR_TIMEOUT, exchange).await {
            Ok(Ok(status)) => {
                tracing::debug!(mirror = %upstream.name, %addr, %status, "mirrored");
            }
            Ok(Err(error)) => {
                tracing::debug!(mirror = %upstream.name, %addr, %error, "mirror failed");
            }
            Err(_) => {
                tracing::debug!(mirror = %upstream.name, %addr, "mirror timed out");
            }
        }
    });
}
