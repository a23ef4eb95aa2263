//! HTTP/1.1 on the wire for the upstream client (RFC 9112): the request head
//! as bytes, the response head parsed, how a response body is delimited, and
//! chunked decoding. Pure: bytes in, bytes and decisions out; the sockets are
//! in the pooled client (`proxy::upstream_h1`). Public for the fuzz target.
//!
//! A pooled connection carries many clients' requests, so a misread response
//! boundary would hand one client's bytes to the next. Framing is therefore
//! decided here from the body alone (never from a `Content-Length` a header
//! filter may have set), a response whose length is ambiguous is refused or
//! ends its connection, and whatever follows a response on the wire makes
//! the connection unfit for reuse (decided by the caller, which sees the
//! buffer).

use super::forwarded;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use smallvec::SmallVec;

/// Largest response head read (status line and fields).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most fields in a response head (or a trailer section).
pub const MAX_FIELDS: usize = 128;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// A response the client cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The head went past [`MAX_HEAD`] without ending.
    #[error("response head longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The status line or a field is malformed (or there are more than
    /// [`MAX_FIELDS`] fields).
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    /// A field name or value the `http` types refuse.
    #[error("invalid response header field")]
    Field,
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    #[error("unrequested protocol switch")]
    UnrequestedSwitch,
    /// `Content-Length` is not one decimal number (several values that
    /// differ included).
    #[error("invalid Content-Length")]
    ContentLength,
    /// A chunk-size line, chunk end or trailer section is malformed.
    #[error("malformed chunked body")]
    Chunked,
    /// The request target would not survive the request line (a byte that is
    /// not visible ASCII).
    #[error("request target is not visible ASCII")]
    Target,
    /// The host is empty or not visible ASCII.
    #[error("request host is not visible ASCII")]
    Host,
}

/// How the request body goes on the wire; decided from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body; `content_length_zero` says whether to send
    /// `Content-Length: 0` (methods whose requests carry content, or a client
    /// that sent it).
    Empty {
        /// Whether to send `Content-Length: 0`.
        content_length_zero: bool,
    },
    /// `Content-Length` of exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl RequestFraming {
    /// The framing for a body that has already ended (`ended`) or whose exact
    /// length is known (`exact`); otherwise chunked. `headers` are the
    /// outgoing headers, consulted only for whether the client sent a
    /// `Content-Length`.
    pub fn for_body(method: &Method, headers: &HeaderMap, ended: bool, exact: Option<u64>) -> Self {
        match (ended, exact) {
            (true, _) | (false, Some(0)) => RequestFraming::Empty {
                content_length_zero: headers.contains_key(header::CONTENT_LENGTH)
                    || *method == Method::POST
                    || *method == Method::PUT
                    || *method == Method::PATCH,
            },
            (false, Some(n)) => RequestFraming::Length(n),
            (false, None) => RequestFraming::Chunked,
        }
    }
}

/// Whether a request may be sent again after its connection closed with no
/// answer: no body and an idempotent method (RFC 9110 §9.2.2), as browsers
/// and Go's client decide for a reused connection.
pub fn is_replayable(method: &Method, framing: RequestFraming) -> bool {
    matches!(framing, RequestFraming::Empty { .. }) && method.is_idempotent()
}

/// Appends the request head to `out`: request line (a `/` put before a
/// target that lacks it), `Host: host`, the other fields in order, then the
/// framing field. `Host`, `Content-Length` and `Transfer-Encoding` in
/// `headers` are not copied; `host` and `framing` alone decide them.
/// `Expect: 100-continue` is not copied either: the server side has already
/// answered it toward the client, and the body follows the head at once
/// (Envoy and NGINX drop it too).
pub fn encode_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) -> Result<(), WireError> {
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::Target);
    }
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::Host);
    }
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if !target.starts_with('/') {
        out.push(b'/');
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || (name == header::EXPECT && value.as_bytes().eq_ignore_ascii_case(b"100-continue"))
        {
            continue;
        }
        field(out, name.as_str().as_bytes(), value);
    }
    match framing {
        RequestFraming::Empty {
            content_length_zero: true,
        } => out.extend_from_slice(b"content-length: 0\r\n"),
        RequestFraming::Empty { .. } => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// One field line. `HeaderValue` holds no CR, LF or NUL, so a value cannot
/// end the line early.
fn field(out: &mut Vec<u8>, name: &[u8], value: &HeaderValue) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the chunk-size line of a chunk of `len` bytes (`len` > 0).
pub fn chunk_size_line(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
}

/// The end of a chunked body: the last chunk, `trailers` and the final CRLF.
pub fn chunked_end(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        field(out, name.as_str().as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The fields; values share the bytes read from the socket.
    pub headers: HeaderMap,
}

/// Parses a response head from the front of `buf`, removing it; `None` when
/// `buf` does not hold a whole head yet. Informational (1xx) heads other
/// than 101 are returned like any other; the caller skips them.
pub fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, WireError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(WireError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e)),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(WireError::Head(httparse::Error::Status))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Names converted and value positions noted while `buf` is borrowed;
    // the values are then cut from the frozen head (no copy per value).
    // A typical response has a handful of fields: kept on the stack.
    let base = buf.as_ptr() as usize;
    let mut fields: SmallVec<[(HeaderName, usize, usize); 16]> = SmallVec::new();
    for f in parsed.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| WireError::Field)?;
        let start = (f.value.as_ptr() as usize).wrapping_sub(base);
        fields.push((name, start, start + f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    for (name, start, end) in fields {
        let value = head
            .get(start..end)
            .map(|_| head.slice(start..end))
            .ok_or(WireError::Field)?;
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| WireError::Field)?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
    }))
}

/// Whether a response with status `code` is interim (`100 Continue`,
/// `103 Early Hints`): another head follows it. `101` is not: it ends the
/// HTTP exchange.
pub fn is_interim(code: u16) -> bool {
    (100..200).contains(&code) && code != 101
}

/// Whether `buf`, read while the request body was still being sent, holds
/// the start of a final answer. Complete interim heads (`100 Continue`,
/// `103 Early Hints`) are dropped from its front, as they would be when the
/// answer is read; a head whose status line has not arrived yet, or an
/// interim one still arriving, is not an answer yet. Anything else is
/// (malformed bytes included: reading the answer reports them).
pub fn final_answer_started(buf: &mut BytesMut) -> bool {
    loop {
        if buf.is_empty() {
            return false;
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) if parsed.code.is_some_and(is_interim) => {
                buf.advance(len);
            }
            Ok(httparse::Status::Complete(_)) => return true,
            Ok(httparse::Status::Partial) => {
                return match parsed.code {
                    Some(code) => !is_interim(code),
                    None => buf.len() >= MAX_HEAD,
                }
            }
            Err(_) => return true,
        }
    }
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (a response to HEAD; 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the backend closes.
    UntilClose,
}

/// What the head says about the body and about the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// How the body is delimited.
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this response
    /// (the caller also requires that nothing follows the response).
    pub reusable: bool,
}

/// Decides the body's framing and the connection's reuse from `head`, the
/// response to a `method` request. A `Content-Length` beside a
/// `Transfer-Encoding` is removed (the coding wins, and the connection is
/// not reused); one that is not a single number is an error.
pub fn response_framing(method: &Method, head: &mut ResponseHead) -> Result<Framing, WireError> {
    let headers = &mut head.headers;
    let close = forwarded::lists(headers, header::CONNECTION, "close");
    let keep_alive = match head.version {
        Version::HTTP_11 => !close,
        _ => !close && forwarded::lists(headers, header::CONNECTION, "keep-alive"),
    };
    let status = head.status.as_u16();
    if *method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing {
            body: BodyFraming::None,
            reusable: keep_alive,
        });
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked_last = forwarded::tokens(headers, header::TRANSFER_ENCODING)
            .filter(|t| !t.is_empty())
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let had_length = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok(if chunked_last && head.version == Version::HTTP_11 {
            Framing {
                body: BodyFraming::Chunked,
                reusable: keep_alive && !had_length,
            }
        } else {
            Framing {
                body: BodyFraming::UntilClose,
                reusable: false,
            }
        });
    }
    match content_length(headers)? {
        Some(n) => Ok(Framing {
            body: BodyFraming::Length(n),
            reusable: keep_alive,
        }),
        None => Ok(Framing {
            body: BodyFraming::UntilClose,
            reusable: false,
        }),
    }
}

/// The one length every `Content-Length` value states; `None` without the
/// field.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = decimal(part.trim_ascii()).ok_or(WireError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// A non-empty run of decimal digits that fits `u64`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What the chunked decoder produced from the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Body bytes (part of a chunk).
    Data(Bytes),
    /// The body ended; the trailer fields if there were any.
    End(Option<HeaderMap>),
    /// The buffer ends inside a size line, chunk end or trailers.
    NeedMore,
}

/// Where the decoder is in a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
    /// The body has ended.
    Done,
}

/// Decodes a chunked body (RFC 9112 §7.1) incrementally, strictly: CRLF line
/// ends, hexadecimal sizes that fit `u64`, bounded lines.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
        }
    }
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`: body bytes, the end, or
    /// nothing until more arrives. Bytes after the end stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err(WireError::Chunked);
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if newline > MAX_CHUNK_LINE {
                        return Err(WireError::Chunked);
                    }
                    let size = chunk_size(&buf[..newline])?;
                    buf.advance(newline + 1);
                    self.state = match size {
                        0 => ChunkState::Trailers,
                        n => ChunkState::Data(n),
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunked);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => return self.trailers(buf),
                ChunkState::Done => return Ok(Decoded::End(None)),
            }
        }
    }

    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = ChunkState::Done;
            return Ok(Decoded::End(None));
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        match httparse::parse_headers(buf, &mut fields) {
            // Bounded whether the section arrived in one read or many.
            Ok(httparse::Status::Complete((len, _))) if len > MAX_TRAILERS => {
                Err(WireError::Chunked)
            }
            Ok(httparse::Status::Complete((len, parsed))) => {
                let mut trailers = HeaderMap::with_capacity(parsed.len());
                for f in parsed {
                    let name = HeaderName::from_bytes(f.name.as_bytes())
                        .map_err(|_| WireError::Chunked)?;
                    let value = HeaderValue::from_bytes(f.value).map_err(|_| WireError::Chunked)?;
                    trailers.append(name, value);
                }
                buf.advance(len);
                self.state = ChunkState::Done;
                Ok(Decoded::End(Some(trailers)))
            }
            Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => Err(WireError::Chunked),
            Ok(httparse::Status::Partial) => Ok(Decoded::NeedMore),
            Err(_) => Err(WireError::Chunked),
        }
    }
}

/// The size in a chunk-size line (without its LF): hexadecimal digits, then
/// optional extensions after `;`, then CR.
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").ok_or(WireError::Chunked)?;
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if digits == 0 || digits > 16 {
        return Err(WireError::Chunked);
    }
    let rest = &line[digits..];
    let rest_ok = rest.is_empty()
        || rest.trim_ascii_start().first() == Some(&b';')
            && rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    if !rest_ok {
        return Err(WireError::Chunked);
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| WireError::Chunked)?;
    u64::from_str_radix(hex, 16).map_err(|_| WireError::Chunked)
}

#[cfg(test)]
mod tests;
