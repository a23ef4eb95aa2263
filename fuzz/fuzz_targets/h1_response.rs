//! Fuzzes `portcullis::proxy::h1_wire`, which reads backend responses on
//! pooled connections: parsing a head and decoding a chunked body must never
//! panic, never take more bytes than they were given, and give the same
//! answer however the bytes are split across reads.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis::proxy::h1_wire::{
    parse_response_head, response_framing, BodyFraming, ChunkedDecoder, Decoded,
};

/// Decodes `wire` as a chunked body fed `step` bytes at a time: the body,
/// whether it ended, and how many bytes were left after its end.
fn decode(wire: &[u8], step: usize) -> (Vec<u8>, Option<bool>, usize) {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(d)) => {
                assert!(!d.is_empty());
                body.extend_from_slice(&d);
            }
            Ok(Decoded::End(_)) => return (body, Some(true), buf.len() + wire.len() - fed),
            Ok(Decoded::NeedMore) if fed == wire.len() => return (body, None, 0),
            Ok(Decoded::NeedMore) => {
                let next = &wire[fed..(fed + step).min(wire.len())];
                buf.extend_from_slice(next);
                fed += next.len();
            }
            Err(_) => return (body, Some(false), 0),
        }
        assert!(body.len() <= wire.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    if let Ok(Some(mut head)) = parse_response_head(&mut buf) {
        assert!(buf.len() < data.len(), "a head takes at least one byte");
        if let Ok(framing) = response_framing(&http::Method::GET, &mut head) {
            if framing.body == BodyFraming::Chunked {
                let rest = buf.to_vec();
                let whole = decode(&rest, rest.len().max(1));
                let bytewise = decode(&rest, 1);
                // Bytes that ended in an error whole may end in an error
                // earlier bytewise; any other outcome must be identical.
                if whole.1 != Some(false) {
                    assert_eq!(whole, bytewise);
                }
            }
        }
    }
    // The chunked decoder on its own, on the raw input.
    let whole = decode(data, data.len().max(1));
    let split = decode(data, 7);
    if whole.1 != Some(false) {
        assert_eq!(whole, split);
    }
});
