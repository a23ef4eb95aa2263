use super::*;

fn head(bytes: &str) -> Result<Option<ResponseHead>, WireError> {
    parse_response_head(&mut BytesMut::from(bytes))
}

fn framing_of(method: Method, bytes: &str) -> (Result<Framing, WireError>, HeaderMap) {
    let mut h = head(bytes).expect("valid head").expect("complete head");
    let framing = response_framing(&method, &mut h);
    (framing, h.headers)
}

fn encode(method: Method, target: &str, headers: &HeaderMap, framing: RequestFraming) -> String {
    let mut out = Vec::new();
    encode_request_head(&mut out, &method, target, "example.org", headers, framing)
        .expect("encodable");
    String::from_utf8(out).expect("ASCII head")
}

#[test]
fn the_request_head_puts_host_first_and_frames_from_the_body_alone() {
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("100"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.insert(header::HOST, HeaderValue::from_static("filter.example"));
    assert_eq!(
        encode(Method::POST, "/p?q=1", &h, RequestFraming::Length(3)),
        "POST /p?q=1 HTTP/1.1\r\nhost: example.org\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n"
    );
    assert_eq!(
        encode(Method::PUT, "p", &h, RequestFraming::Chunked),
        "PUT /p HTTP/1.1\r\nhost: example.org\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

#[test]
fn a_target_or_host_with_spaces_or_control_bytes_is_refused() {
    let h = HeaderMap::new();
    let framing = RequestFraming::Empty {
        content_length_zero: false,
    };
    for target in ["/a b", "/a\r\nx: y", "/\u{e9}"] {
        let mut out = Vec::new();
        assert_eq!(
            encode_request_head(&mut out, &Method::GET, target, "h", &h, framing),
            Err(WireError::Target),
            "{target:?}"
        );
    }
    for host in ["", "a b", "a\r\nx: y"] {
        let mut out = Vec::new();
        assert_eq!(
            encode_request_head(&mut out, &Method::GET, "/", host, &h, framing),
            Err(WireError::Host),
            "{host:?}"
        );
    }
}

#[test]
fn expect_100_continue_is_not_forwarded() {
    let mut h = HeaderMap::new();
    h.insert(header::EXPECT, HeaderValue::from_static("100-Continue"));
    assert_eq!(
        encode(Method::PUT, "/", &h, RequestFraming::Length(1)),
        "PUT / HTTP/1.1\r\nhost: example.org\r\ncontent-length: 1\r\n\r\n"
    );
}

#[test]
fn interim_answers_during_an_upload_are_not_the_answer() {
    let started = |bytes: &str| {
        let mut buf = BytesMut::from(bytes);
        (final_answer_started(&mut buf), buf)
    };
    let (done, rest) = started("HTTP/1.1 100 Continue\r\n\r\n");
    assert!(!done && rest.is_empty());
    let (done, rest) =
        started("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n");
    assert!(!done, "an interim head still arriving");
    assert!(rest.starts_with(b"HTTP/1.1 103"));
    assert!(!started("HTTP/1.1 10").0, "no status yet");
    let (done, rest) = started("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 413 Content Too Large\r\n");
    assert!(done);
    assert!(
        rest.starts_with(b"HTTP/1.1 413"),
        "the final head is left to be read"
    );
    assert!(started("HTTP/1.1 101 Switching Protocols\r\n\r\n").0);
    assert!(started("garbage\r\n\r\n").0);
}

#[test]
fn request_framing_follows_the_body() {
    let none = HeaderMap::new();
    let mut with_length = HeaderMap::new();
    with_length.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let empty = |z| RequestFraming::Empty {
        content_length_zero: z,
    };
    assert_eq!(
        RequestFraming::for_body(&Method::GET, &none, true, Some(0)),
        empty(false)
    );
    assert_eq!(
        RequestFraming::for_body(&Method::GET, &with_length, true, Some(0)),
        empty(true)
    );
    assert_eq!(
        RequestFraming::for_body(&Method::POST, &none, true, Some(0)),
        empty(true)
    );
    assert_eq!(
        RequestFraming::for_body(&Method::POST, &none, false, Some(0)),
        empty(true)
    );
    assert_eq!(
        RequestFraming::for_body(&Method::POST, &none, false, Some(7)),
        RequestFraming::Length(7)
    );
    assert_eq!(
        RequestFraming::for_body(&Method::POST, &none, false, None),
        RequestFraming::Chunked
    );
    assert!(is_replayable(&Method::GET, empty(false)));
    assert!(is_replayable(&Method::DELETE, empty(false)));
    assert!(!is_replayable(&Method::POST, empty(true)));
    assert!(!is_replayable(&Method::PUT, RequestFraming::Length(3)));
}

#[test]
fn chunked_request_bodies_end_with_trailers() {
    let mut out = Vec::new();
    chunk_size_line(&mut out, 300);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", HeaderValue::from_static("9"));
    chunked_end(&mut out, Some(&trailers));
    assert_eq!(out, b"12c\r\n0\r\nx-sum: 9\r\n\r\n");
}

#[test]
fn a_response_head_is_parsed_and_removed_from_the_buffer() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\ncontent-length: 3\r\n\r\nabc",
    );
    let h = parse_response_head(&mut buf)
        .expect("valid")
        .expect("complete");
    assert_eq!(h.status, StatusCode::NOT_FOUND);
    assert_eq!(h.version, Version::HTTP_11);
    let values: Vec<_> = h.headers.get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&buf[..], b"abc");
}

#[test]
fn a_partial_head_waits_and_an_endless_one_is_refused() {
    assert!(head("HTTP/1.1 200 OK\r\ncontent-le")
        .expect("partial is fine")
        .is_none());
    let endless = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
    assert_eq!(head(&endless).err(), Some(WireError::HeadTooLarge));
}

#[test]
fn malformed_heads_are_refused() {
    for bad in [
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n",
        "<html>\r\n\r\n",
    ] {
        assert!(head(bad).is_err(), "{bad:?}");
    }
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}\r\n",
        "x: 1\r\n".repeat(MAX_FIELDS + 1)
    );
    assert!(matches!(head(&many), Err(WireError::Head(_))));
}

#[test]
fn bodies_are_delimited_as_rfc_9112_says() {
    let cases = [
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            BodyFraming::Length(5),
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
            BodyFraming::Length(5),
            true,
        ),
        (
            Method::HEAD,
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            BodyFraming::None,
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 204 No Content\r\n\r\n",
            BodyFraming::None,
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            BodyFraming::None,
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            BodyFraming::UntilClose,
            false,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\n\r\n",
            BodyFraming::UntilClose,
            false,
        ),
        (
            Method::GET,
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            BodyFraming::Length(1),
            false,
        ),
        (
            Method::GET,
            "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
            BodyFraming::Length(1),
            false,
        ),
        (
            Method::GET,
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            BodyFraming::Length(1),
            true,
        ),
        (
            Method::GET,
            "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            BodyFraming::UntilClose,
            false,
        ),
    ];
    for (method, bytes, body, reusable) in cases {
        let (framing, _) = framing_of(method, bytes);
        assert_eq!(framing, Ok(Framing { body, reusable }), "{bytes:?}");
    }
}

#[test]
fn a_length_beside_a_coding_is_dropped_and_ends_the_connection() {
    let (framing, headers) = framing_of(
        Method::GET,
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    assert_eq!(
        framing,
        Ok(Framing {
            body: BodyFraming::Chunked,
            reusable: false
        })
    );
    assert!(!headers.contains_key(header::CONTENT_LENGTH));
}

#[test]
fn ambiguous_lengths_are_refused() {
    for bad in [
        "2, 3",
        "-1",
        "+5",
        "0x10",
        "",
        "1 2",
        "99999999999999999999999",
    ] {
        let bytes = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
        assert_eq!(
            framing_of(Method::GET, &bytes).0,
            Err(WireError::ContentLength),
            "{bad:?}"
        );
    }
    let (framing, _) = framing_of(
        Method::GET,
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
    );
    assert_eq!(framing, Err(WireError::ContentLength));
}

/// A decoded chunked body: its bytes, its trailers and what followed it.
type Decoding = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

/// Feeds `wire` to a decoder `step` bytes at a time.
fn decode_in_steps(wire: &[u8], step: usize) -> Result<Decoding, WireError> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::End(trailers) => return Ok((body, trailers, buf.to_vec())),
            Decoded::NeedMore => {
                let next = wire
                    .get(fed..(fed + step).min(wire.len()))
                    .unwrap_or_default();
                assert!(!next.is_empty(), "decoder wants more than the whole body");
                buf.extend_from_slice(next);
                fed += next.len();
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_whatever_the_read_boundaries() {
    let wire = b"3\r\nabc\r\n10;name=\"v\"\r\n0123456789abcdef\r\n0\r\nx-sum: 19\r\n\r\nNEXT";
    for step in [1, 2, 3, 7, wire.len()] {
        let (body, trailers, rest) = decode_in_steps(wire, step).expect("valid chunked body");
        assert_eq!(body, b"abc0123456789abcdef", "step {step}");
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["x-sum"], "19");
        // Whatever follows the body is left for the caller to see.
        assert!(b"NEXT".starts_with(&rest), "step {step}: {rest:?}");
    }
    let (body, trailers, _) = decode_in_steps(b"0\r\n\r\n", 1).expect("empty body");
    assert!(body.is_empty() && trailers.is_none());
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    for bad in [
        &b"g\r\n"[..],
        b"3\nabc\r\n0\r\n\r\n",
        b"3\r\nabcX\r\n",
        b"3 junk\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
        b"3;a\x00\r\n",
    ] {
        assert_eq!(
            decode_in_steps(bad, bad.len()).err(),
            Some(WireError::Chunked),
            "{bad:?}"
        );
    }
    let long_line = format!("1;{}", "e".repeat(MAX_CHUNK_LINE + 1));
    assert_eq!(
        decode_in_steps(long_line.as_bytes(), 64).err(),
        Some(WireError::Chunked)
    );
}
