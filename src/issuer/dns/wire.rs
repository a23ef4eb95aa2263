//! DNS wire format, as far as DNS-01 needs it: encoding names (RFC 1035
//! §3.1), queries, dynamic UPDATE messages (RFC 2136 §2) adding or deleting
//! one TXT record, and decoding responses (header, records, TXT and SOA
//! owners) with name decompression (RFC 1035 §4.1.4). Pure functions over
//! bytes; sockets are in the parent module.

/// Resource record type TXT (RFC 1035 §3.2.2).
pub const TYPE_TXT: u16 = 16;
/// Resource record type SOA.
pub const TYPE_SOA: u16 = 6;
/// Resource record type TSIG (RFC 8945 §4.2).
pub const TYPE_TSIG: u16 = 250;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class NONE: in an UPDATE, "delete this RR" (RFC 2136 §2.5.4).
pub const CLASS_NONE: u16 = 254;
/// Class ANY.
pub const CLASS_ANY: u16 = 255;
/// Opcode UPDATE (RFC 2136 §1).
pub const OPCODE_UPDATE: u8 = 5;

/// Why bytes could not be decoded or a name encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message ended inside a field.
    #[error("message truncated")]
    Truncated,
    /// A compression pointer loops or points forward.
    #[error("bad compression pointer")]
    BadPointer,
    /// A label is longer than 63 bytes, empty, or the name longer than 255.
    #[error("invalid domain name {0:?}")]
    BadName(String),
    /// A TXT string is longer than 255 bytes.
    #[error("TXT value longer than 255 bytes")]
    TxtTooLong,
}

/// Appends `name` (dotted, trailing dot optional) in uncompressed wire
/// form; `lowercase` gives the canonical form TSIG digests use.
pub fn put_name(out: &mut Vec<u8>, name: &str, lowercase: bool) -> Result<(), Error> {
    let trimmed = name.trim_end_matches('.');
    let start = out.len();
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(Error::BadName(name.to_owned()));
            }
            out.push(label.len() as u8);
            if lowercase {
                out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            } else {
                out.extend_from_slice(label.as_bytes());
            }
        }
    }
    out.push(0);
    if out.len() - start > 255 {
        return Err(Error::BadName(name.to_owned()));
    }
    Ok(())
}

/// The twelve-byte message header.
fn put_header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
}

/// A standard query for `name`/`qtype`, class IN, recursion not desired (it
/// goes to an authoritative server).
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64);
    put_header(&mut out, id, 0, [1, 0, 0, 0]);
    put_name(&mut out, name, false)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// What an UPDATE does to the one TXT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxtChange {
    /// Add the record with this TTL (RFC 2136 §2.5.1).
    Add {
        /// Seconds.
        ttl: u32,
    },
    /// Delete exactly this record, leaving other values of the name
    /// (RFC 2136 §2.5.4): a wildcard and its base domain share one
    /// `_acme-challenge` name.
    Delete,
}

/// An UPDATE message for `zone` adding or deleting the TXT record
/// `name` = `value`, without TSIG (sign it with `super::tsig::sign`).
pub fn update_txt(
    id: u16,
    zone: &str,
    name: &str,
    value: &str,
    change: TxtChange,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(128);
    let flags = u16::from(OPCODE_UPDATE) << 11;
    // ZOCOUNT 1, PRCOUNT 0, UPCOUNT 1, ADCOUNT 0.
    put_header(&mut out, id, flags, [1, 0, 1, 0]);
    put_name(&mut out, zone, false)?;
    out.extend_from_slice(&TYPE_SOA.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    put_name(&mut out, name, false)?;
    out.extend_from_slice(&TYPE_TXT.to_be_bytes());
    let (class, ttl) = match change {
        TxtChange::Add { ttl } => (CLASS_IN, ttl),
        TxtChange::Delete => (CLASS_NONE, 0),
    };
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let rdata = txt_rdata(value)?;
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    Ok(out)
}

/// TXT RDATA holding one character-string.
fn txt_rdata(value: &str) -> Result<Vec<u8>, Error> {
    let len = u8::try_from(value.len()).map_err(|_| Error::TxtTooLong)?;
    let mut rdata = Vec::with_capacity(value.len() + 1);
    rdata.push(len);
    rdata.extend_from_slice(value.as_bytes());
    Ok(rdata)
}

/// One resource record of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, lowercase, without the trailing dot.
    pub name: String,
    /// Record type.
    pub rtype: u16,
    /// Record class.
    pub class: u16,
    /// The RDATA bytes (names inside are left compressed).
    pub rdata: Vec<u8>,
}

impl Record {
    /// The strings of a TXT record, concatenated (RFC 7208 §3.3 style), or
    /// `None` for other types.
    pub fn txt(&self) -> Option<String> {
        if self.rtype != TYPE_TXT {
            return None;
        }
        let mut text = Vec::new();
        let mut rest = self.rdata.as_slice();
        while let Some((&len, tail)) = rest.split_first() {
            let chunk = tail.get(..usize::from(len))?;
            text.extend_from_slice(chunk);
            rest = &tail[usize::from(len)..];
        }
        Some(String::from_utf8_lossy(&text).into_owned())
    }
}

/// A decoded response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Message id.
    pub id: u16,
    /// Whether the TC bit is set.
    pub truncated: bool,
    /// Whether the AA bit is set.
    pub authoritative: bool,
    /// RCODE (low four bits; extended RCODEs are not used here).
    pub rcode: u8,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section (holds the TSIG record of signed responses).
    pub additional: Vec<Record>,
}

/// A cursor over a message.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let bytes = self.msg.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A possibly compressed name; the cursor moves past its in-place part.
    fn name(&mut self) -> Result<String, Error> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }

    fn record(&mut self) -> Result<Record, Error> {
        let name = self.name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        let _ttl = self.u32()?;
        let len = self.u16()?;
        let rdata = self.take(usize::from(len))?.to_vec();
        Ok(Record {
            name,
            rtype,
            class,
            rdata,
        })
    }
}

/// Reads the name at `pos` of `msg`, following compression pointers; returns
/// it (lowercase, no trailing dot) and the offset after its in-place part.
pub fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), Error> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(Error::Truncated)?;
        match len & 0xC0 {
            0x00 => {
                pos += 1;
                if len == 0 {
                    break;
                }
                let label = msg
                    .get(pos..pos + usize::from(len))
                    .ok_or(Error::Truncated)?;
                labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                pos += usize::from(len);
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or(Error::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3F, low]));
                end.get_or_insert(pos + 2);
                // A pointer must go backwards; a bound on jumps stops loops.
                jumps += 1;
                if target >= pos || jumps > 64 {
                    return Err(Error::BadPointer);
                }
                pos = target;
            }
            _ => return Err(Error::BadPointer),
        }
    }
    Ok((labels.join("."), end.unwrap_or(pos)))
}

/// Decodes a response message.
pub fn parse_response(msg: &[u8]) -> Result<Response, Error> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    for _ in 0..qd {
        r.name()?;
        r.take(4)?;
    }
    let mut section =
        |count: u16| -> Result<Vec<Record>, Error> { (0..count).map(|_| r.record()).collect() };
    let answers = section(an)?;
    let authority = section(ns)?;
    let additional = section(ar)?;
    Ok(Response {
        id,
        truncated: flags & 0x0200 != 0,
        authoritative: flags & 0x0400 != 0,
        rcode: (flags & 0x000F) as u8,
        answers,
        authority,
        additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_as_length_prefixed_labels() {
        let mut out = Vec::new();
        put_name(&mut out, "Example.COM.", false).expect("valid");
        assert_eq!(out, b"\x07Example\x03COM\x00");
        out.clear();
        put_name(&mut out, "Example.COM", true).expect("valid");
        assert_eq!(out, b"\x07example\x03com\x00");
        out.clear();
        put_name(&mut out, ".", false).expect("root");
        assert_eq!(out, b"\x00");
        assert!(put_name(&mut out, "a..b", false).is_err());
        assert!(put_name(&mut out, &"a".repeat(64), false).is_err());
    }

    #[test]
    fn update_adds_txt_with_zone_soa_and_class_in() {
        // RFC 2136 §2: header with opcode 5, zone section (zone, SOA, IN),
        // empty prerequisites, one update RR.
        let msg = update_txt(
            0x1234,
            "example.test",
            "_acme-challenge.example.test",
            "abc",
            TxtChange::Add { ttl: 60 },
        )
        .expect("encodes");
        let mut want = vec![0x12, 0x34, 0x28, 0x00, 0, 1, 0, 0, 0, 1, 0, 0];
        want.extend_from_slice(b"\x07example\x04test\x00\x00\x06\x00\x01");
        want.extend_from_slice(b"\x0f_acme-challenge\x07example\x04test\x00");
        want.extend_from_slice(&[0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 3, b'a', b'b', b'c']);
        assert_eq!(msg, want);
    }

    #[test]
    fn update_deletes_one_txt_value_with_class_none_and_ttl_zero() {
        let msg = update_txt(1, "t", "x.t", "v", TxtChange::Delete).expect("encodes");
        let tail = &msg[msg.len() - 12..];
        assert_eq!(tail, &[0, 16, 0, 254, 0, 0, 0, 0, 0, 2, 1, b'v']);
    }

    #[test]
    fn txt_longer_than_one_string_is_refused() {
        let long = "a".repeat(256);
        assert_eq!(
            update_txt(1, "t", "x.t", &long, TxtChange::Delete),
            Err(Error::TxtTooLong)
        );
    }

    #[test]
    fn response_with_compressed_names_decodes() {
        // Answer to a TXT query for x.test, the answer owner a pointer to
        // the question name (offset 12).
        let mut msg = vec![0xAB, 0xCD, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(b"\x01X\x04test\x00\x00\x10\x00\x01");
        msg.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 30, 0, 6]);
        msg.extend_from_slice(b"\x02ab\x02cd");
        let resp = parse_response(&msg).expect("decodes");
        assert_eq!(resp.id, 0xABCD);
        assert!(resp.authoritative);
        assert_eq!(resp.rcode, 0);
        assert_eq!(resp.answers.len(), 1);
        assert_eq!(resp.answers[0].name, "x.test");
        assert_eq!(resp.answers[0].txt().as_deref(), Some("abcd"));
    }

    #[test]
    fn looping_or_forward_pointers_are_rejected() {
        let msg = [0xC0, 0x00];
        assert_eq!(read_name(&msg, 0), Err(Error::BadPointer));
        let msg = [0xC0, 0x05, 0, 0, 0, 0];
        assert_eq!(read_name(&msg, 0), Err(Error::BadPointer));
    }

    #[test]
    fn every_prefix_of_a_response_fails_cleanly() {
        let mut msg = vec![0, 1, 0x84, 0x00, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(b"\x01x\x04test\x00\x00\x10\x00\x01");
        msg.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 30, 0, 2, 1, b'a']);
        assert!(parse_response(&msg).is_ok());
        for end in 0..msg.len() {
            assert!(parse_response(&msg[..end]).is_err(), "prefix {end}");
        }
    }
}
