//! Reading a TLS ClientHello without terminating TLS: the pure parser the SNI
//! front uses to route passthrough connections on server name and ALPN.
//!
//! [`parse`] takes every byte received so far on a connection and answers
//! [`Parse::Incomplete`] until the whole ClientHello has arrived, then
//! [`Parse::Done`] with the fields routing needs. It does no I/O, never
//! panics on any input, never reads out of bounds (all reads go through a
//! checked cursor) and allocates at most one copy of the ClientHello plus the
//! fields it returns, both bounded by the hello's size:
//!
//! - a ClientHello carried in one record is parsed in place;
//! - one fragmented over several consecutive handshake records is copied into
//!   one buffer of exactly its announced length, which is at most
//!   [`MAX_CLIENT_HELLO`] (longer announcements fail with
//!   [`Error::TooLarge`] as soon as the 4-byte handshake header is seen);
//! - the records holding it span at most [`MAX_RECORD_SPAN`] bytes, so a
//!   client sending one-byte fragments cannot make the caller buffer more.
//!
//! Bytes that are not a TLS handshake are rejected as early as possible (after
//! the first one to five bytes), so a plaintext HTTP request or an SSLv2
//! hello on a TLS port fails at once instead of waiting for more data.
//!
//! The server name is validated here: routing only ever sees a lowercased DNS
//! hostname, and anything else in the `host_name` entry fails the parse with
//! [`Error::InvalidServerName`] (a name we could not route is not forwarded).

use std::borrow::Cow;

/// Largest ClientHello handshake message accepted, header included. Real
/// hellos are well under 2 KiB even with post-quantum key shares; 64 KiB is
/// the bound rustls applies to a handshake message too.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Most bytes (record headers included) the records carrying one ClientHello
/// may span. Bounds what a caller buffers when a client fragments its hello
/// into many tiny records.
pub const MAX_RECORD_SPAN: usize = 2 * MAX_CLIENT_HELLO;

/// Largest TLSPlaintext fragment allowed by RFC 8446 §5.1 (2^14 bytes).
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// `type(1) || legacy_record_version(2) || length(2)`.
const RECORD_HEADER_LEN: usize = 5;
/// `msg_type(1) || length(3)`.
const HANDSHAKE_HEADER_LEN: usize = 4;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_HEARTBEAT: u8 = 24;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const SNI_HOST_NAME: u8 = 0;

/// Longest DNS name accepted in SNI, trailing dot excluded (RFC 1035).
const MAX_HOSTNAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Outcome of one [`parse`] call that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Everything so far is a valid beginning of a ClientHello; read more and
    /// call [`parse`] again with the whole buffer.
    Incomplete {
        /// A lower bound on how many more bytes must arrive before the
        /// ClientHello can be complete (for sizing the next read). Currently
        /// always `Some`; `None` would mean no bound is known.
        needed_hint: Option<usize>,
    },
    /// The whole ClientHello arrived and was parsed.
    Done(ClientHello),
}

/// What the SNI front needs from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` from the server_name extension: a valid DNS hostname,
    /// lowercased, trailing dot removed. `None` when the client sent no SNI.
    /// With ECH this is the outer (public) name, which is what we route on.
    pub server_name: Option<String>,
    /// ALPN protocol names offered, in the client's order; empty when the
    /// extension is absent.
    pub alpn: Vec<Vec<u8>>,
    /// `legacy_version` from the hello body (0x0303 for TLS 1.2 and 1.3).
    pub legacy_version: u16,
    /// Versions from the supported_versions extension, in the client's
    /// order (GREASE values included); empty when absent (pre-1.3 clients).
    pub supported_versions: Vec<u16>,
    /// Whether the hello carries an encrypted_client_hello extension.
    pub has_ech: bool,
    /// Bytes at the start of the buffer occupied by the records that carry
    /// the ClientHello, headers included. Bytes after this belong to later
    /// records.
    pub consumed: usize,
}

/// Why the bytes received cannot be a ClientHello we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first bytes are not a TLS record header: plaintext (for instance
    /// an HTTP request), an SSLv2-compatible hello (high bit of the first
    /// byte set), or a record whose major version is not 3.
    #[error("not a TLS connection")]
    NotTls,
    /// A TLS record header whose version is 3.x with x above 4 (no such TLS
    /// version exists).
    #[error("unsupported TLS record version")]
    UnsupportedRecordVersion,
    /// A TLS record of another content type (alert, change_cipher_spec,
    /// application data, heartbeat) where the ClientHello handshake record
    /// was expected.
    #[error("first TLS record is not a handshake record")]
    NotHandshake,
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// The ClientHello announces a length above `limit`
    /// ([`MAX_CLIENT_HELLO`]), or the records carrying it would span more
    /// than `limit` ([`MAX_RECORD_SPAN`]) bytes.
    #[error("ClientHello larger than {limit} bytes")]
    TooLarge {
        /// The bound that was exceeded, in bytes.
        limit: usize,
    },
    /// A length or field inside the records or the hello is truncated,
    /// overlong or otherwise invalid; the text names the field.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The server_name extension's host_name is not a DNS hostname (bytes
    /// outside `[a-z0-9.-]` after lowercasing, an empty label, a label over
    /// 63 bytes or a name over 253 bytes).
    #[error("invalid server name in ClientHello")]
    InvalidServerName,
}

/// Parses the ClientHello at the start of `buf`, everything received so far
/// on the connection. See the module documentation for the guarantees.
pub fn parse(buf: &[u8]) -> Result<Parse, Error> {
    match reassemble(buf)? {
        Reassembled::Incomplete(needed) => Ok(Parse::Incomplete {
            needed_hint: Some(needed),
        }),
        Reassembled::Done { message, consumed } => {
            let mut hello = parse_message(&message)?;
            hello.consumed = consumed;
            Ok(Parse::Done(hello))
        }
    }
}

/// Result of walking the records: either more bytes are needed, or the whole
/// handshake message (header included) is available.
enum Reassembled<'a> {
    Incomplete(usize),
    Done {
        message: Cow<'a, [u8]>,
        consumed: usize,
    },
}

/// Walks consecutive handshake records from the start of `buf` until they
/// hold a whole ClientHello handshake message, checking every header as soon
/// as its bytes are present.
fn reassemble(buf: &[u8]) -> Result<Reassembled<'_>, Error> {
    // First pass: validate headers and find where the message ends, without
    // copying. `header` collects the 4-byte handshake header, which may itself
    // be split across records.
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut have = 0usize; // handshake bytes seen so far
    let mut total: Option<usize> = None; // handshake message length, header included
    let mut records = 0usize;
    let mut pos = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        check_record_header(rest, records == 0)?;
        if rest.len() < RECORD_HEADER_LEN {
            return Ok(Reassembled::Incomplete(RECORD_HEADER_LEN - rest.len()));
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Err(Error::Malformed("empty handshake record"));
        }
        if len > MAX_RECORD_PAYLOAD {
            return Err(Error::Malformed("record length exceeds 2^14"));
        }
        let end = pos + RECORD_HEADER_LEN + len;
        if end > MAX_RECORD_SPAN {
            return Err(Error::TooLarge {
                limit: MAX_RECORD_SPAN,
            });
        }
        let payload = &rest[RECORD_HEADER_LEN..rest.len().min(RECORD_HEADER_LEN + len)];
        records += 1;

        // Fill the handshake header from this record's payload.
        let mut used = 0;
        while have + used < HANDSHAKE_HEADER_LEN && used < payload.len() {
            header[have + used] = payload[used];
            used += 1;
        }
        if have == 0 && used > 0 && header[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(Error::NotClientHello);
        }
        if total.is_none() && have + used == HANDSHAKE_HEADER_LEN {
            let body =
                usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]);
            let message = HANDSHAKE_HEADER_LEN + body;
            if message > MAX_CLIENT_HELLO {
                return Err(Error::TooLarge {
                    limit: MAX_CLIENT_HELLO,
                });
            }
            total = Some(message);
        }

        let record_missing = RECORD_HEADER_LEN + len - rest.len().min(RECORD_HEADER_LEN + len);
        match total {
            Some(total) if have + len >= total => {
                // This record ends the message; it must end exactly here,
                // since nothing may follow a ClientHello before the server
                // answers (RFC 8446 §5.1: key changes align with records).
                if have + len > total {
                    return Err(Error::Malformed(
                        "data after ClientHello in its last record",
                    ));
                }
                if record_missing > 0 {
                    return Ok(Reassembled::Incomplete(record_missing));
                }
                let message = if records == 1 {
                    Cow::Borrowed(&buf[RECORD_HEADER_LEN..end])
                } else {
                    Cow::Owned(gather(buf, total, end))
                };
                return Ok(Reassembled::Done {
                    message,
                    consumed: end,
                });
            }
            _ => {
                if record_missing > 0 {
                    let message_missing = total.map_or(0, |t| t - have - payload.len());
                    return Ok(Reassembled::Incomplete(record_missing.max(message_missing)));
                }
                have += len;
                pos = end;
            }
        }
    }
}

/// Checks the record header at the start of `rest` (possibly only partly
/// present): content type, then version. `first` says whether this is the
/// connection's first record, where anything but a TLS handshake means the
/// peer does not speak TLS at all.
fn check_record_header(rest: &[u8], first: bool) -> Result<(), Error> {
    if let Some(&content_type) = rest.first() {
        if content_type != CONTENT_HANDSHAKE {
            if !first {
                return Err(Error::Malformed(
                    "ClientHello fragments interleaved with another record type",
                ));
            }
            // An SSLv2-compatible hello has the high bit set and falls here.
            return Err(
                if (CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_HEARTBEAT).contains(&content_type) {
                    Error::NotHandshake
                } else {
                    Error::NotTls
                },
            );
        }
    }
    if let Some(&major) = rest.get(1) {
        if major != 3 {
            return Err(if first {
                Error::NotTls
            } else {
                Error::Malformed("record version changed between fragments")
            });
        }
    }
    if let Some(&minor) = rest.get(2) {
        if minor > 4 {
            return Err(Error::UnsupportedRecordVersion);
        }
    }
    Ok(())
}

/// Copies the handshake payloads of the records in `buf[..end]` into one
/// buffer of exactly `total` bytes. Only called after [`reassemble`]
/// validated every record header up to `end`.
fn gather(buf: &[u8], total: usize, end: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(total);
    let mut r = Reader::new(buf.get(..end).unwrap_or_default());
    while let Some(payload) = r.skip(3).and_then(|()| r.vec_u16()) {
        message.extend_from_slice(payload);
    }
    message
}

/// Parses a whole ClientHello handshake message (header included).
fn parse_message(message: &[u8]) -> Result<ClientHello, Error> {
    let mut r = Reader::new(message);
    // Header already checked by `reassemble`: type 1 and the 24-bit length
    // matching the bytes gathered.
    r.skip(HANDSHAKE_HEADER_LEN)
        .ok_or(Error::Malformed("handshake header"))?;
    let legacy_version = r.u16().ok_or(Error::Malformed("legacy_version"))?;
    r.skip(32).ok_or(Error::Malformed("random"))?;
    let session_id = r.vec_u8().ok_or(Error::Malformed("legacy_session_id"))?;
    if session_id.len() > 32 {
        return Err(Error::Malformed("legacy_session_id longer than 32 bytes"));
    }
    let suites = r.vec_u16().ok_or(Error::Malformed("cipher_suites"))?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(Error::Malformed("cipher_suites length"));
    }
    let compression = r
        .vec_u8()
        .ok_or(Error::Malformed("legacy_compression_methods"))?;
    if compression.is_empty() {
        return Err(Error::Malformed("legacy_compression_methods empty"));
    }

    let mut hello = ClientHello {
        server_name: None,
        alpn: Vec::new(),
        legacy_version,
        supported_versions: Vec::new(),
        has_ech: false,
        consumed: 0,
    };
    // Extensions may be absent altogether in hellos from before TLS 1.2.
    if r.is_empty() {
        return Ok(hello);
    }
    let extensions = r.vec_u16().ok_or(Error::Malformed("extensions length"))?;
    if !r.is_empty() {
        return Err(Error::Malformed("trailing bytes after extensions"));
    }
    let mut exts = Reader::new(extensions);
    let (mut seen_sni, mut seen_alpn, mut seen_versions) = (false, false, false);
    while !exts.is_empty() {
        let ext_type = exts.u16().ok_or(Error::Malformed("extension type"))?;
        let data = exts.vec_u16().ok_or(Error::Malformed("extension length"))?;
        // Duplicates of the extensions we interpret are rejected (RFC 8446
        // §4.2): a second SNI the backend might honour instead of ours would
        // let a client reach a backend it was not routed to.
        match ext_type {
            EXT_SERVER_NAME => {
                reject_duplicate(&mut seen_sni, "duplicate server_name extension")?;
                hello.server_name = parse_server_name(data)?;
            }
            EXT_ALPN => {
                reject_duplicate(&mut seen_alpn, "duplicate ALPN extension")?;
                hello.alpn = parse_alpn(data)?;
            }
            EXT_SUPPORTED_VERSIONS => {
                reject_duplicate(&mut seen_versions, "duplicate supported_versions extension")?;
                hello.supported_versions = parse_supported_versions(data)?;
            }
            EXT_ENCRYPTED_CLIENT_HELLO => {
                reject_duplicate(&mut hello.has_ech, "duplicate encrypted_client_hello")?;
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// Fails with `what` when `seen` is already set, then sets it.
fn reject_duplicate(seen: &mut bool, what: &'static str) -> Result<(), Error> {
    if std::mem::replace(seen, true) {
        return Err(Error::Malformed(what));
    }
    Ok(())
}

/// Parses the server_name extension body (RFC 6066 §3): a non-empty list of
/// `(name_type, opaque<1..2^16-1>)`, at most one entry per name type.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, Error> {
    let mut r = Reader::new(data);
    let list = r
        .vec_u16()
        .ok_or(Error::Malformed("server_name list length"))?;
    if !r.is_empty() {
        return Err(Error::Malformed("trailing bytes after server_name list"));
    }
    if list.is_empty() {
        return Err(Error::Malformed("empty server_name list"));
    }
    let mut entries = Reader::new(list);
    let mut host = None;
    while !entries.is_empty() {
        let name_type = entries.u8().ok_or(Error::Malformed("server_name type"))?;
        let name = entries
            .vec_u16()
            .ok_or(Error::Malformed("server_name length"))?;
        if name_type == SNI_HOST_NAME {
            if host.is_some() {
                return Err(Error::Malformed("more than one host_name"));
            }
            host = Some(validate_host_name(name)?);
        }
    }
    Ok(host)
}

/// Lowercases `name`, strips one trailing dot and checks it is a DNS
/// hostname: 1–253 bytes of `[a-z0-9.-]` in non-empty labels of at most 63.
fn validate_host_name(name: &[u8]) -> Result<String, Error> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOSTNAME_LEN {
        return Err(Error::InvalidServerName);
    }
    let lower = name.to_ascii_lowercase();
    let labels_ok = lower.split(|&b| b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if !labels_ok {
        return Err(Error::InvalidServerName);
    }
    String::from_utf8(lower).map_err(|_| Error::InvalidServerName)
}

/// Parses the ALPN extension body (RFC 7301 §3.1): a non-empty list of
/// non-empty `opaque<1..2^8-1>` protocol names.
fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    let mut r = Reader::new(data);
    let list = r.vec_u16().ok_or(Error::Malformed("ALPN list length"))?;
    if !r.is_empty() {
        return Err(Error::Malformed("trailing bytes after ALPN list"));
    }
    if list.is_empty() {
        return Err(Error::Malformed("empty ALPN list"));
    }
    let mut names = Reader::new(list);
    let mut protocols = Vec::new();
    while !names.is_empty() {
        let name = names.vec_u8().ok_or(Error::Malformed("ALPN name length"))?;
        if name.is_empty() {
            return Err(Error::Malformed("empty ALPN protocol name"));
        }
        protocols.push(name.to_vec());
    }
    Ok(protocols)
}

/// Parses the ClientHello form of supported_versions (RFC 8446 §4.2.1):
/// `ProtocolVersion versions<2..254>`.
fn parse_supported_versions(data: &[u8]) -> Result<Vec<u16>, Error> {
    let mut r = Reader::new(data);
    let list = r
        .vec_u8()
        .ok_or(Error::Malformed("supported_versions length"))?;
    if !r.is_empty() || list.len() < 2 || list.len() % 2 != 0 {
        return Err(Error::Malformed("supported_versions length"));
    }
    Ok(list
        .chunks_exact(2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .collect())
}

/// A cursor over a byte slice whose reads return `None` instead of going out
/// of bounds.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// `opaque<0..2^8-1>`: a one-byte length, then that many bytes.
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// `opaque<0..2^16-1>`: a two-byte length, then that many bytes.
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

#[cfg(test)]
mod tests;
