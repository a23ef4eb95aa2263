//! Tests for the ClientHello reader, named after the rule each checks. Real
//! hellos come from rustls itself (written into memory, no sockets); the odd
//! shapes (huge padding, fragmentation, ECH, bad names) are built by hand.

use super::*;
use rustls::pki_types::ServerName;
use std::sync::Arc;

// ---------- builders ----------

/// Bytes a rustls client writes first, for `server_name`, with `adjust`
/// applied to the configuration.
fn rustls_hello(
    server_name: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    adjust: impl FnOnce(&mut rustls::ClientConfig),
) -> Vec<u8> {
    let provider = crate::tls::provider::provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    adjust(&mut config);
    let name = ServerName::try_from(server_name.to_owned()).expect("test server name is valid");
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).expect("client config is valid");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)
            .expect("writing to a Vec cannot fail");
    }
    out
}

fn default_hello() -> Vec<u8> {
    rustls_hello(
        "example.com",
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        |_| {},
    )
}

fn u16_prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn sni_ext(name: &[u8]) -> (u16, Vec<u8>) {
    let mut entry = vec![0u8];
    entry.extend(u16_prefixed(name));
    (EXT_SERVER_NAME, u16_prefixed(&entry))
}

fn alpn_ext(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for p in protocols {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    (EXT_ALPN, u16_prefixed(&list))
}

fn versions_ext(versions: &[u16]) -> (u16, Vec<u8>) {
    let mut data = vec![(versions.len() * 2) as u8];
    for v in versions {
        data.extend(v.to_be_bytes());
    }
    (EXT_SUPPORTED_VERSIONS, data)
}

/// A ClientHello handshake message (header included) with `extensions`, or
/// with no extensions block at all when `extensions` is `None`.
fn hello_message(extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]); // random
    body.push(32);
    body.extend([0x17; 32]); // legacy_session_id
    body.extend(u16_prefixed(&[0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f]));
    body.extend([1, 0]); // compression: null
    if let Some(extensions) = extensions {
        let mut block = Vec::new();
        for (ty, data) in extensions {
            block.extend(ty.to_be_bytes());
            block.extend(u16_prefixed(data));
        }
        body.extend(u16_prefixed(&block));
    }
    let len = body.len() as u32;
    let mut message = vec![HANDSHAKE_CLIENT_HELLO];
    message.extend(&len.to_be_bytes()[1..]);
    message.extend(body);
    message
}

/// `message` split into handshake records of the given payload sizes (the
/// last record takes whatever remains).
fn records(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    for &size in sizes.iter().chain(std::iter::repeat(&MAX_RECORD_PAYLOAD)) {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.extend([CONTENT_HANDSHAKE, 0x03, 0x01]);
        out.extend(u16_prefixed(chunk));
        rest = tail;
    }
    out
}

/// The handshake message inside a single-record rustls hello.
fn message_of(single_record: &[u8]) -> Vec<u8> {
    single_record[RECORD_HEADER_LEN..].to_vec()
}

/// A large hello: SNI, ALPN, versions, a 1,216-byte key share like an
/// X25519MLKEM768 one, and a 2 KiB padding extension.
fn large_message() -> Vec<u8> {
    hello_message(Some(&[
        sni_ext(b"big.example.com"),
        alpn_ext(&[b"h2", b"http/1.1"]),
        versions_ext(&[0x0a0a, 0x0304, 0x0303]),
        (51, vec![0x11; 1216 + 6]),
        (0x0a0a, vec![]), // GREASE
        (10, vec![0, 4, 0x11, 0xec, 0, 0x1d]),
        (13, vec![0, 4, 4, 3, 8, 4]),
        (21, vec![0; 2048]), // padding
    ]))
}

fn done(buf: &[u8]) -> ClientHello {
    match parse(buf) {
        Ok(Parse::Done(hello)) => hello,
        other => panic!("expected Done, got {other:?}"),
    }
}

/// Every strict prefix is Incomplete with a hint that never overshoots the
/// end of the hello, and the full buffer is Done consuming all of it.
fn assert_every_prefix_incomplete(full: &[u8]) -> ClientHello {
    for n in 0..full.len() {
        match parse(&full[..n]) {
            Ok(Parse::Incomplete {
                needed_hint: Some(hint),
            }) => assert!(
                hint >= 1 && n + hint <= full.len(),
                "prefix {n}: hint {hint} overshoots {}",
                full.len()
            ),
            other => panic!(
                "prefix {n} of {}: expected Incomplete, got {other:?}",
                full.len()
            ),
        }
    }
    let hello = done(full);
    assert_eq!(hello.consumed, full.len());
    hello
}

fn alpn_h2_http11() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

// ---------- real hellos from rustls ----------

#[test]
fn rustls_hello_yields_sni_alpn_and_versions() {
    let hello = assert_every_prefix_incomplete(&default_hello());
    assert_eq!(hello.server_name.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn, alpn_h2_http11());
    assert_eq!(hello.legacy_version, 0x0303);
    assert!(hello.supported_versions.contains(&0x0304));
    assert!(hello.supported_versions.contains(&0x0303));
    assert!(!hello.has_ech);
}

#[test]
fn hello_without_sni_has_no_server_name() {
    let buf = rustls_hello("example.com", &[&rustls::version::TLS13], |c| {
        c.enable_sni = false
    });
    let hello = assert_every_prefix_incomplete(&buf);
    assert_eq!(hello.server_name, None);
    assert_eq!(hello.alpn, alpn_h2_http11());
}

#[test]
fn hello_to_an_ip_address_has_no_server_name() {
    let buf = rustls_hello("192.0.2.7", &[&rustls::version::TLS13], |_| {});
    assert_eq!(assert_every_prefix_incomplete(&buf).server_name, None);
}

#[test]
fn tls12_only_hello_does_not_offer_tls13() {
    let buf = rustls_hello("example.com", &[&rustls::version::TLS12], |_| {});
    let hello = assert_every_prefix_incomplete(&buf);
    assert_eq!(hello.server_name.as_deref(), Some("example.com"));
    assert_eq!(hello.legacy_version, 0x0303);
    assert!(!hello.supported_versions.contains(&0x0304));
}

#[test]
fn hello_fragmented_at_any_point_parses_like_one_record() {
    let message = message_of(&default_hello());
    let expected = done(&records(&message, &[]));
    for split in 1..message.len() {
        let buf = records(&message, &[split]);
        let hello = done(&buf);
        assert_eq!(hello.consumed, buf.len());
        assert_eq!(
            ClientHello {
                consumed: 0,
                ..hello
            },
            ClientHello {
                consumed: 0,
                ..expected.clone()
            }
        );
    }
}

#[test]
fn hello_in_one_byte_records_parses_on_every_prefix() {
    let message = message_of(&default_hello());
    let buf = records(&message, &vec![1; message.len()]);
    let hello = assert_every_prefix_incomplete(&buf);
    assert_eq!(hello.server_name.as_deref(), Some("example.com"));
}

#[test]
fn bytes_after_the_hello_records_are_not_consumed() {
    let mut buf = default_hello();
    let hello_len = buf.len();
    buf.extend([CONTENT_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]); // compat CCS
    buf.extend([23, 3, 3, 0, 3, 9, 9, 9]); // early data
    assert_eq!(done(&buf).consumed, hello_len);
}

// ---------- hand-built hellos ----------

#[test]
fn large_hello_over_three_records_parses_on_every_prefix() {
    let message = large_message();
    assert!(message.len() > 3300);
    let buf = records(&message, &[1000, 1500]);
    let hello = assert_every_prefix_incomplete(&buf);
    assert_eq!(hello.server_name.as_deref(), Some("big.example.com"));
    assert_eq!(hello.alpn, alpn_h2_http11());
    assert_eq!(hello.supported_versions, vec![0x0a0a, 0x0304, 0x0303]);
}

#[test]
fn handshake_header_split_across_records_is_reassembled() {
    let message = large_message();
    for first in 1..HANDSHAKE_HEADER_LEN {
        let buf = records(&message, &[first, 2]);
        assert_eq!(done(&buf).server_name.as_deref(), Some("big.example.com"));
    }
}

#[test]
fn ech_extension_sets_has_ech_and_keeps_the_outer_sni() {
    let message = hello_message(Some(&[
        sni_ext(b"public.example.com"),
        (
            EXT_ENCRYPTED_CLIENT_HELLO,
            vec![0, 0, 1, 0, 1, 7, 0, 0x20, 1, 2],
        ),
    ]));
    let hello = assert_every_prefix_incomplete(&records(&message, &[]));
    assert!(hello.has_ech);
    assert_eq!(hello.server_name.as_deref(), Some("public.example.com"));
}

#[test]
fn hello_without_extensions_block_parses() {
    let hello = done(&records(&hello_message(None), &[]));
    assert_eq!(hello.server_name, None);
    assert!(hello.alpn.is_empty());
}

#[test]
fn server_name_is_lowercased_and_trailing_dot_stripped() {
    let message = hello_message(Some(&[sni_ext(b"WWW.Example.COM.")]));
    assert_eq!(
        done(&records(&message, &[])).server_name.as_deref(),
        Some("www.example.com")
    );
}

#[test]
fn server_name_that_is_not_a_dns_hostname_is_rejected() {
    let long_label = [b'a'; 64];
    let long_name = [[b"a.".as_slice(); 127].concat().as_slice(), b"a"].concat(); // 255 bytes
    let bad: [&[u8]; 10] = [
        b"",
        b".",
        b"a..b",
        b".example.com",
        b"exa mple.com",
        b"under_score.com",
        b"*.example.com",
        "bücher.de".as_bytes(),
        &long_label,
        &long_name,
    ];
    for name in bad {
        let message = hello_message(Some(&[sni_ext(name)]));
        assert_eq!(
            parse(&records(&message, &[])),
            Err(Error::InvalidServerName),
            "{:?}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn server_name_of_253_bytes_is_accepted() {
    let name = [
        [b"a".as_slice(); 127].join(b".".as_slice()).as_slice(),
        b".",
    ]
    .concat();
    assert_eq!(name.len(), 254); // 253 plus the trailing dot
    let message = hello_message(Some(&[sni_ext(&name)]));
    assert_eq!(
        done(&records(&message, &[])).server_name.map(|n| n.len()),
        Some(253)
    );
}

#[test]
fn duplicate_routing_extensions_are_malformed() {
    for dup in [
        vec![sni_ext(b"a.com"), sni_ext(b"b.com")],
        vec![alpn_ext(&[b"h2"]), alpn_ext(&[b"h2"])],
        vec![versions_ext(&[0x0304]), versions_ext(&[0x0304])],
        vec![
            (EXT_ENCRYPTED_CLIENT_HELLO, vec![]),
            (EXT_ENCRYPTED_CLIENT_HELLO, vec![]),
        ],
    ] {
        let message = hello_message(Some(&dup));
        assert!(matches!(
            parse(&records(&message, &[])),
            Err(Error::Malformed(_))
        ));
    }
}

#[test]
fn two_host_names_in_one_sni_list_are_malformed() {
    let mut list = vec![0u8];
    list.extend(u16_prefixed(b"a.com"));
    list.push(0);
    list.extend(u16_prefixed(b"b.com"));
    let message = hello_message(Some(&[(EXT_SERVER_NAME, u16_prefixed(&list))]));
    assert_eq!(
        parse(&records(&message, &[])),
        Err(Error::Malformed("more than one host_name"))
    );
}

#[test]
fn empty_alpn_list_or_name_is_malformed() {
    for ext in [
        (EXT_ALPN, u16_prefixed(&[])),
        (EXT_ALPN, u16_prefixed(&[0])),
    ] {
        let message = hello_message(Some(&[ext]));
        assert!(matches!(
            parse(&records(&message, &[])),
            Err(Error::Malformed(_))
        ));
    }
}

#[test]
fn truncated_or_overlong_inner_lengths_are_malformed() {
    let message = message_of(&default_hello());
    // Each offset is a length field inside the body: session id, the high
    // byte of the cipher suites length, and the extensions length.
    let session_id = HANDSHAKE_HEADER_LEN + 2 + 32;
    let suites = session_id + 1 + usize::from(message[session_id]);
    for (offset, value) in [(session_id, 33u8), (session_id, 0xff), (suites, 0xff)] {
        let mut bad = message.clone();
        bad[offset] = value;
        assert!(
            matches!(parse(&records(&bad, &[])), Err(Error::Malformed(_))),
            "offset {offset} = {value}"
        );
    }
    // An extension whose length runs past the extensions block.
    let mut bad = hello_message(Some(&[sni_ext(b"a.com")]));
    let ext_len = bad.len() - (2 + 1 + 2 + 5) - 2; // high byte of the SNI extension length
    bad[ext_len] = 0x40;
    assert!(matches!(
        parse(&records(&bad, &[])),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn handshake_length_shorter_than_the_body_is_malformed() {
    let mut message = message_of(&default_hello());
    message.truncate(message.len() - 3);
    let len = (message.len() - HANDSHAKE_HEADER_LEN) as u32;
    message[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert!(matches!(
        parse(&records(&message, &[])),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn data_after_the_hello_in_its_last_record_is_malformed() {
    let mut message = message_of(&default_hello());
    message.extend([2, 0, 0, 0]); // a second handshake message
    assert!(matches!(
        parse(&records(&message, &[])),
        Err(Error::Malformed(_))
    ));
}

// ---------- not TLS, not a hello ----------

#[test]
fn http_request_is_not_tls_from_the_first_byte() {
    assert_eq!(parse(b"G"), Err(Error::NotTls));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Error::NotTls));
    assert_eq!(parse(b"PRI * HTTP/2.0\r\n"), Err(Error::NotTls));
}

#[test]
fn sslv2_compatible_hello_is_not_tls() {
    assert_eq!(parse(&[0x80]), Err(Error::NotTls));
    assert_eq!(
        parse(&[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15]),
        Err(Error::NotTls)
    );
}

#[test]
fn record_major_version_other_than_3_is_not_tls() {
    assert_eq!(parse(&[0x16, 0x02]), Err(Error::NotTls));
    assert_eq!(parse(&[0x16, b'G', b'E']), Err(Error::NotTls));
}

#[test]
fn record_minor_version_above_4_is_unsupported() {
    assert_eq!(
        parse(&[0x16, 0x03, 0x05]),
        Err(Error::UnsupportedRecordVersion)
    );
}

#[test]
fn other_record_types_are_not_handshake() {
    for ty in 20..=24u8 {
        if ty != CONTENT_HANDSHAKE {
            assert_eq!(parse(&[ty]), Err(Error::NotHandshake), "type {ty}");
        }
    }
    assert_eq!(parse(&[21, 3, 3, 0, 2, 2, 40]), Err(Error::NotHandshake));
}

#[test]
fn other_handshake_type_is_not_client_hello_after_six_bytes() {
    assert_eq!(parse(&[0x16, 3, 3, 0, 0x40, 2]), Err(Error::NotClientHello));
}

#[test]
fn interleaved_record_type_between_fragments_is_malformed() {
    let message = message_of(&default_hello());
    let mut buf = records(&message[..10], &[]);
    buf.extend([23, 3, 3, 0, 1, 0]);
    assert!(matches!(parse(&buf), Err(Error::Malformed(_))));
}

#[test]
fn empty_record_is_malformed() {
    assert!(matches!(
        parse(&[0x16, 3, 1, 0, 0]),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn empty_buffer_is_incomplete() {
    assert_eq!(
        parse(&[]),
        Ok(Parse::Incomplete {
            needed_hint: Some(RECORD_HEADER_LEN)
        })
    );
}

// ---------- bounds ----------

#[test]
fn record_length_ffff_is_malformed_without_waiting() {
    let mut buf = vec![0x16, 3, 1, 0xff, 0xff];
    buf.extend([0xa5; 100]);
    assert_eq!(
        parse(&buf[..5]),
        Err(Error::Malformed("record length exceeds 2^14"))
    );
    assert_eq!(
        parse(&buf),
        Err(Error::Malformed("record length exceeds 2^14"))
    );
}

#[test]
fn hello_announcing_more_than_the_limit_is_too_large_after_its_header() {
    let buf = [0x16, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff];
    assert_eq!(
        parse(&buf),
        Err(Error::TooLarge {
            limit: MAX_CLIENT_HELLO
        })
    );
    // Exactly at the limit is still just incomplete.
    let len = (MAX_CLIENT_HELLO - HANDSHAKE_HEADER_LEN) as u32;
    let mut at_limit = vec![0x16, 3, 1, 0x40, 0x00, 1];
    at_limit.extend(&len.to_be_bytes()[1..]);
    assert!(matches!(parse(&at_limit), Ok(Parse::Incomplete { .. })));
}

#[test]
fn records_spanning_more_than_the_span_limit_are_too_large() {
    // A 30,000-byte hello sent one byte per record would need 180,000 bytes.
    let body = 30_000 - HANDSHAKE_HEADER_LEN;
    let mut message = vec![1];
    message.extend(&(body as u32).to_be_bytes()[1..]);
    message.resize(30_000, 0);
    let buf = records(&message, &vec![1; message.len()]);
    assert_eq!(
        parse(&buf),
        Err(Error::TooLarge {
            limit: MAX_RECORD_SPAN
        })
    );
}

// ---------- robustness ----------

/// xorshift64*: deterministic pseudo-random bytes without a dependency on
/// the rand crate's value stability.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The invariants the fuzz target (fuzz/fuzz_targets/client_hello.rs) checks.
fn assert_invariants(buf: &[u8]) {
    match parse(buf) {
        Ok(Parse::Done(hello)) => {
            assert!(hello.consumed <= buf.len() && hello.consumed <= MAX_RECORD_SPAN);
            let exact = &buf[..hello.consumed];
            assert_eq!(parse(exact), Ok(Parse::Done(hello.clone())));
            assert!(matches!(
                parse(&exact[..exact.len() - 1]),
                Ok(Parse::Incomplete { .. })
            ));
        }
        Ok(Parse::Incomplete { needed_hint }) => assert_ne!(needed_hint, Some(0)),
        Err(_) => {}
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..10_000 {
        let len = rng.below(if i % 10 == 0 { 4096 } else { 300 });
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them get a plausible record and handshake header so the
        // parser gets past the first checks.
        if i % 2 == 0 && buf.len() >= 9 {
            let rec = (buf.len() - 5).min(MAX_RECORD_PAYLOAD) as u16;
            buf[..5].copy_from_slice(&[0x16, 3, 1, (rec >> 8) as u8, rec as u8]);
            buf[5] = 1;
            let body = (usize::from(rec).saturating_sub(4) as u32).to_be_bytes();
            buf[6..9].copy_from_slice(&body[1..]);
        }
        assert_invariants(&buf);
    }
}

#[test]
fn mutated_real_hellos_never_panic() {
    let seeds = [default_hello(), records(&large_message(), &[700, 900])];
    let mut rng = Rng(42);
    for i in 0..10_000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(buf.len());
            match rng.below(3) {
                0 => buf[at] = rng.next() as u8,
                1 => buf[at] ^= 1 << rng.below(8),
                _ => buf.truncate(at.max(1)),
            }
        }
        assert_invariants(&buf);
    }
}
