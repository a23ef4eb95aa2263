//! A streamed response body ([`H1Body`]): read from its connection as the
//! client takes it, the connection given back to its list when it ends.

use super::super::h1_wire::{ChunkedDecoder, Decoded, WireError};
use super::super::BoxError;
use super::{Conn, Endpoint, H1Pool, BODY_READ};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// How the rest of a streamed response body is delimited.
pub(super) enum Delimit {
    /// This many bytes left.
    Length(u64),
    /// Chunked, decoded as it arrives.
    Chunked(ChunkedDecoder),
    /// Until the backend closes.
    UntilClose,
}

/// A response body read from its connection as the client takes it; the
/// connection goes back to the pool when the body ends (and is closed if
/// the body is dropped before).
pub(super) struct H1Body<S> {
    /// The connection and the bytes read past the head; `None` once the
    /// body has ended.
    pub(super) conn: Option<(S, BytesMut)>,
    pub(super) delimit: Delimit,
    pub(super) reusable: bool,
    pub(super) pool: H1Pool<S>,
    /// The list the connection goes back to.
    pub(super) endpoint: Arc<Endpoint<S>>,
}

impl<S: Conn> H1Body<S> {
    /// The body has ended: the connection goes back or is closed.
    fn finish(&mut self) {
        if let Some((stream, rest)) = self.conn.take() {
            self.pool
                .release(&self.endpoint, stream, rest, self.reusable);
        }
    }

    /// The next frame from the bytes in hand, if they make one.
    fn frame_in_hand(&mut self) -> Result<Option<Frame<Bytes>>, WireError> {
        let Some((_, buf)) = self.conn.as_mut() else {
            return Ok(None);
        };
        match &mut self.delimit {
            Delimit::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(take).freeze();
                *left -= take as u64;
                if *left == 0 {
                    self.finish();
                }
                Ok(Some(Frame::data(data)))
            }
            Delimit::Chunked(decoder) => match decoder.decode(buf)? {
                Decoded::Data(data) => Ok(Some(Frame::data(data))),
                Decoded::End(trailers) => {
                    self.finish();
                    Ok(trailers.map(Frame::trailers))
                }
                Decoded::NeedMore => Ok(None),
            },
            Delimit::UntilClose => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Frame::data(buf.split().freeze())))
            }
        }
    }
}

impl<S: Conn> Body for H1Body<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.frame_in_hand() {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            let Some((stream, buf)) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            buf.reserve(BODY_READ);
            // Through `poll_read`, which clears the driver's readiness after
            // a short read: the idle check at checkout relies on it.
            let read = ready!(tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf));
            match read {
                Ok(0) if matches!(this.delimit, Delimit::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(
                        "backend closed the connection inside the response body".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, &self.delimit) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Delimit::Length(left)) => SizeHint::with_exact(*left),
            _ => SizeHint::default(),
        }
    }
}
