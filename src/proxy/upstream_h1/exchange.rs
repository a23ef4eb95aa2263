//! One HTTP/1.1 exchange's writing and reading, over any [`Conn`]: the
//! request encoded ([`prepare`]), written with its body while watching for
//! an early answer ([`send_with_body`]), and the response head read
//! ([`read_head`]).

use super::super::errors::Error;
use super::super::h1_wire::{self, RequestFraming, ResponseHead, WireError};
use super::super::upstream::{FailureKind, OutboundHead};
use super::super::{BoxError, ProxyBody};
use super::{HEAD_READ, WRITE_BATCH};
use bytes::BytesMut;
use http::{Method, StatusCode};
use http_body::Body;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A failed exchange, and whether the backend closed the connection
/// cleanly without a byte of an answer (so that a request safe to repeat may
/// go out again: the backend closed an idle connection as it was reused).
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) closed_unanswered: bool,
}

/// A request turned into bytes: its head, and its body unless it has none.
pub(super) struct Prepared {
    pub(super) bytes: Vec<u8>,
    pub(super) framing: RequestFraming,
    pub(super) body: Option<ProxyBody>,
}

/// Encodes `head` for endpoint `addr` (outside the async code, so that its
/// temporaries take no room in every request's future).
pub(super) fn prepare(
    head: &OutboundHead,
    addr: SocketAddr,
    body: ProxyBody,
) -> Result<Prepared, Error> {
    let framing = RequestFraming::for_body(
        &head.method,
        &head.headers,
        body.is_end_stream(),
        body.size_hint().exact(),
    );
    let endpoint;
    let host = match &head.host {
        Some(host) => host.to_str().map_err(|e| Error::BuildRequest(e.into()))?,
        None => {
            endpoint = addr.to_string();
            endpoint.as_str()
        }
    };
    let mut bytes = Vec::with_capacity(512);
    h1_wire::encode_request_head(
        &mut bytes,
        &head.method,
        head.path_and_query.as_str(),
        host,
        &head.headers,
        framing,
    )
    .map_err(|e| Error::BuildRequest(e.into()))?;
    Ok(Prepared {
        bytes,
        framing,
        body: match framing {
            RequestFraming::Empty { .. } => None,
            _ => Some(body),
        },
    })
}

/// What one attempt sends, and where.
pub(super) struct Outgoing<'a> {
    pub(super) name: &'a str,
    pub(super) addr: SocketAddr,
    pub(super) method: &'a Method,
    pub(super) head: &'a [u8],
    pub(super) framing: RequestFraming,
}

impl Outgoing<'_> {
    pub(super) fn reset(&self, source: impl Into<BoxError>, closed_unanswered: bool) -> Failed {
        Failed {
            error: FailureKind::Reset.into_error(self.name, self.addr, source.into()),
            closed_unanswered,
        }
    }

    pub(super) fn protocol(&self, source: impl Into<BoxError>) -> Failed {
        Failed {
            error: FailureKind::Protocol.into_error(self.name, self.addr, source.into()),
            closed_unanswered: false,
        }
    }
}

/// Writes the head and `body` framed as `out.framing` says, gathering what
/// is ready into few writes. Stops early when the backend answers (or
/// closes) before the body is sent, returning `true`: the answer is read
/// next, and the connection is not reused.
pub(super) async fn send_with_body<S: AsyncRead + AsyncWrite + Unpin>(
    out: &Outgoing<'_>,
    stream: &mut S,
    mut body: ProxyBody,
    buf: &mut BytesMut,
) -> Result<bool, Failed> {
    let mut pending = Vec::with_capacity(out.head.len() + WRITE_BATCH);
    pending.extend_from_slice(out.head);
    let mut sent: u64 = 0;
    let mut ended = false;
    loop {
        while !ended && pending.len() < WRITE_BATCH {
            let frame = if pending.is_empty() {
                // Nothing to write: wait for the client, or the backend's answer.
                let next = poll_fn(|cx| {
                    if answered(&mut *stream, buf, cx) {
                        return Poll::Ready(None);
                    }
                    Pin::new(&mut body).poll_frame(cx).map(Some)
                })
                .await;
                match next {
                    Some(frame) => frame,
                    None => return Ok(true),
                }
            } else {
                // Something to write: take only what is ready now.
                match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => break,
                }
            };
            match frame {
                None => {
                    ended = true;
                    match out.framing {
                        RequestFraming::Chunked => h1_wire::chunked_end(&mut pending, None),
                        RequestFraming::Length(n) if sent != n => {
                            return Err(body_error(format!(
                                "request body ended after {sent} of {n} bytes"
                            )));
                        }
                        _ => {}
                    }
                }
                Some(Err(e)) => {
                    return Err(Failed {
                        error: Error::RequestBody(e),
                        closed_unanswered: false,
                    })
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        sent = sent.saturating_add(data.len() as u64);
                        match out.framing {
                            RequestFraming::Length(n) if sent > n => {
                                return Err(body_error(format!(
                                    "request body longer than its {n} bytes"
                                )));
                            }
                            RequestFraming::Chunked => {
                                h1_wire::chunk_size_line(&mut pending, data.len());
                                pending.extend_from_slice(&data);
                                pending.extend_from_slice(b"\r\n");
                            }
                            _ => pending.extend_from_slice(&data),
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body; only chunked framing carries them.
                        if let (Ok(trailers), RequestFraming::Chunked) =
                            (frame.into_trailers(), out.framing)
                        {
                            h1_wire::chunked_end(&mut pending, Some(&trailers));
                            ended = true;
                        }
                    }
                },
            }
        }
        if !pending.is_empty() {
            if write_unless_answered(&mut *stream, &pending, buf)
                .await
                .map_err(|e| out.reset(e, false))?
            {
                return Ok(true);
            }
            pending.clear();
        }
        if ended {
            return Ok(false);
        }
    }
}

fn body_error(message: String) -> Failed {
    Failed {
        error: Error::RequestBody(message.into()),
        closed_unanswered: false,
    }
}

/// Writes all of `data` and flushes it, unless the backend answers while
/// the socket is full (then `true`: the answer is read next).
async fn write_unless_answered<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    buf: &mut BytesMut,
) -> io::Result<bool> {
    let mut written = 0;
    poll_fn(|cx| loop {
        let step = match data.get(written..).filter(|r| !r.is_empty()) {
            Some(rest) => Pin::new(&mut *stream).poll_write(cx, rest),
            // Nothing left for a socket; a TLS stream may hold a record.
            None => Pin::new(&mut *stream).poll_flush(cx).map_ok(|()| 0),
        };
        match step {
            Poll::Ready(Ok(0)) if written == data.len() => return Poll::Ready(Ok(false)),
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending if answered(&mut *stream, buf, cx) => return Poll::Ready(Ok(true)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

/// Whether the backend has sent bytes (read into `buf`) or closed, before
/// the request is complete; registers for the answer otherwise. Reads go
/// through `poll_read`, which clears the I/O driver's readiness when the
/// socket has nothing.
fn answered<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> bool {
    loop {
        buf.reserve(HEAD_READ);
        match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
            Poll::Pending => return false,
            // Interim answers (`100 Continue`) do not stop the upload.
            Poll::Ready(Ok(n)) if n > 0 && !h1_wire::final_answer_started(buf) => {}
            // A final answer, the end of the stream or an error: the reader
            // sees it.
            Poll::Ready(_) => return true,
        }
    }
}

/// Reads until a final response head is parsed, skipping informational
/// ones (`100 Continue`, `103 Early Hints`).
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    out: &Outgoing<'_>,
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<ResponseHead, Failed> {
    let mut received = !buf.is_empty();
    loop {
        if !buf.is_empty() {
            match h1_wire::parse_response_head(buf) {
                Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                    return Err(out.protocol(WireError::UnrequestedSwitch));
                }
                Ok(Some(head)) if h1_wire::is_interim(head.status.as_u16()) => continue,
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(out.protocol(e)),
            }
        }
        buf.reserve(HEAD_READ);
        match stream.read_buf(buf).await {
            Ok(0) => {
                return Err(out.reset(
                    "connection closed before a complete response head",
                    !received,
                ))
            }
            Ok(_) => received = true,
            // A TLS backend that closed without close_notify: closed all
            // the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(out.reset(e, !received))
            }
            Err(e) => return Err(out.reset(e, false)),
        }
    }
}
