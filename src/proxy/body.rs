//! Request and response bodies: [`ProxyBody`], the one body type of the
//! proxy, and the decision whether a request body is small enough to buffer
//! so that it can be replayed on retries and copied to mirrors.
//!
//! Bodies are streamed by default. A request body is buffered only when the
//! rule retries or mirrors and the body's length is known to be at most
//! [`REPLAY_LIMIT`]; larger or chunked bodies are streamed once, without
//! retries and without mirroring.

use super::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Largest request body buffered for replay (retries, mirrors).
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// The body of every response the proxy returns and of every request it
/// sends upstream. The two common shapes, no body and one chunk already in
/// hand (a small response read with its head), are held as they are; only
/// a streamed body is boxed, so most exchanges allocate nothing for it.
pub struct ProxyBody(Kind);

enum Kind {
    Empty,
    /// One chunk, `None` once it was polled.
    Full(Option<Bytes>),
    Streamed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Default for ProxyBody {
    fn default() -> Self {
        empty()
    }
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Kind::Empty => "empty",
            Kind::Full(_) => "full",
            Kind::Streamed(_) => "streamed",
        };
        f.debug_tuple("ProxyBody").field(&kind).finish()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            Kind::Streamed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(chunk) => chunk.is_none(),
            Kind::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Streamed(body) => body.size_hint(),
        }
    }
}

/// An empty body.
pub fn empty() -> ProxyBody {
    ProxyBody(Kind::Empty)
}

/// A body made of one chunk (an empty chunk is no body at all).
pub fn full(bytes: Bytes) -> ProxyBody {
    if bytes.is_empty() {
        empty()
    } else {
        ProxyBody(Kind::Full(Some(bytes)))
    }
}

/// Boxes any body with `Bytes` chunks.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    ProxyBody(Kind::Streamed(body.map_err(Into::into).boxed_unsync()))
}

/// Whether a body with this state can be buffered for replay: it has ended
/// already, or its length is known and at most [`REPLAY_LIMIT`].
pub fn is_replayable(is_end_stream: bool, hint: &http_body::SizeHint) -> bool {
    is_end_stream || hint.upper().is_some_and(|upper| upper <= REPLAY_LIMIT)
}

/// A request body either buffered (replayable) or streamed once.
pub enum RequestBody<B> {
    /// The whole body, cheap to clone for each attempt and each mirror.
    Buffered(Bytes),
    /// The client's body, to be forwarded once.
    Streaming(B),
    /// The streamed body went to an earlier attempt.
    Spent,
}

impl<B> RequestBody<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Buffers `body` when `wanted` (the rule retries or mirrors) and it is
    /// replayable; otherwise keeps it for streaming.
    pub async fn prepare(body: B, wanted: bool) -> Result<Self, BoxError> {
        if !wanted || !is_replayable(body.is_end_stream(), &body.size_hint()) {
            return Ok(RequestBody::Streaming(body));
        }
        let limited = http_body_util::Limited::new(body, REPLAY_LIMIT as usize);
        let collected = limited.collect().await?;
        Ok(RequestBody::Buffered(collected.to_bytes()))
    }

    /// Whether another attempt can send the body again.
    pub fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }

    /// The buffered bytes, if buffered.
    pub fn buffered(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(b) => Some(b),
            _ => None,
        }
    }

    /// The body for the next attempt: a copy of the buffer, or the stream the
    /// first time (an empty body after that, which callers avoid by not
    /// retrying unreplayable bodies).
    pub fn take_for_attempt(&mut self) -> ProxyBody {
        match std::mem::replace(self, RequestBody::Spent) {
            RequestBody::Buffered(b) => {
                let body = full(b.clone());
                *self = RequestBody::Buffered(b);
                body
            }
            // A body that has already ended (most requests have none) goes
            // as `Empty`, whose box allocates nothing.
            RequestBody::Streaming(s) if s.is_end_stream() => empty(),
            RequestBody::Streaming(s) => boxed(s),
            RequestBody::Spent => empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_chunk_in_hand_is_one_frame_then_the_end() {
        let mut body = full(Bytes::from_static(b"hello"));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        let frame = body
            .frame()
            .await
            .expect("one frame")
            .expect("in-memory body");
        assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"hello")));
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn no_body_and_an_empty_chunk_end_at_once() {
        for mut body in [empty(), full(Bytes::new()), ProxyBody::default()] {
            assert!(body.is_end_stream());
            assert_eq!(body.size_hint().exact(), Some(0));
            assert!(body.frame().await.is_none());
        }
    }

    #[tokio::test]
    async fn a_streamed_body_keeps_its_frames_and_hint() {
        let chunks = vec![
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ];
        let mut body = boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )));
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), None);
        let bytes = (&mut body)
            .collect()
            .await
            .expect("in-memory body")
            .to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"abcd"));
    }

    #[test]
    fn small_known_length_body_is_replayable() {
        assert!(is_replayable(false, &SizeHint::with_exact(1024)));
        assert!(is_replayable(false, &SizeHint::with_exact(REPLAY_LIMIT)));
    }

    #[test]
    fn large_or_chunked_body_is_streamed() {
        assert!(!is_replayable(
            false,
            &SizeHint::with_exact(REPLAY_LIMIT + 1)
        ));
        assert!(!is_replayable(false, &SizeHint::new()));
    }

    #[test]
    fn ended_body_is_replayable() {
        assert!(is_replayable(true, &SizeHint::new()));
    }

    #[tokio::test]
    async fn buffered_body_is_sent_on_every_attempt() {
        let mut body = RequestBody::prepare(Full::new(Bytes::from_static(b"hello")), true)
            .await
            .expect("in-memory body");
        assert!(body.is_replayable());
        for _ in 0..2 {
            let bytes = body
                .take_for_attempt()
                .collect()
                .await
                .expect("in-memory body")
                .to_bytes();
            assert_eq!(bytes, Bytes::from_static(b"hello"));
        }
    }

    #[tokio::test]
    async fn a_streamed_body_goes_as_it_is_or_empty_once_ended() {
        let mut ended = RequestBody::Streaming(Full::new(Bytes::new()));
        let sent = ended.take_for_attempt();
        assert!(sent.is_end_stream());
        assert_eq!(sent.size_hint().exact(), Some(0));
        let mut streamed = RequestBody::Streaming(Full::new(Bytes::from_static(b"data")));
        let sent = streamed.take_for_attempt();
        assert_eq!(sent.size_hint().exact(), Some(4));
        let bytes = sent.collect().await.expect("in-memory body").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"data"));
    }

    #[tokio::test]
    async fn unwanted_buffering_streams() {
        let body = RequestBody::prepare(Full::new(Bytes::from_static(b"x")), false)
            .await
            .expect("in-memory body");
        assert!(!body.is_replayable());
    }
}
