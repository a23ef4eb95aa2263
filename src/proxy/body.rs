//! Request and response bodies: boxing any body into [`ProxyBody`], and the
//! decision whether a request body is small enough to buffer so that it can be
//! replayed on retries and copied to mirrors.
//!
//! Bodies are streamed by default. A request body is buffered only when the
//! rule retries or mirrors and the body's length is known to be at most
//! [`REPLAY_LIMIT`]; larger or chunked bodies are streamed once, without
//! retries and without mirroring.

use super::{BoxError, ProxyBody};
use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};

/// Largest request body buffered for replay (retries, mirrors).
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body made of one chunk.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body with `Bytes` chunks.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
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
                let body = if b.is_empty() {
                    empty()
                } else {
                    full(b.clone())
                };
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
    use http_body::SizeHint;

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
