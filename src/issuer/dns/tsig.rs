//! TSIG request signing (RFC 8945): HMAC over the message and the TSIG
//! variables, appended as the last additional record. Pure: the time is an
//! argument. Response MACs are not verified; the server's RCODE (NOTAUTH on
//! a bad signature) is what the caller acts on.

use super::wire::{self, CLASS_ANY, TYPE_TSIG};
use std::fmt;

/// Seconds of clock skew the server may accept (RFC 8945 §5.2.3 recommends
/// 300).
pub const FUDGE: u16 = 300;

/// A TSIG HMAC algorithm (RFC 8945 §6). ring has no MD5 or SHA-224 HMAC,
/// so `hmac-md5` keys (cert-manager's default) are refused; BIND's
/// `tsig-keygen` makes `hmac-sha256` keys by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256`.
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// Parses cert-manager's `tsigAlgorithm` spellings (`HMACSHA256`) and the
    /// DNS names (`hmac-sha256`), case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
        match v.replace('-', "").as_str() {
            "hmacsha256" => Some(Self::HmacSha256),
            "hmacsha384" => Some(Self::HmacSha384),
            "hmacsha512" => Some(Self::HmacSha512),
            _ => None,
        }
    }

    /// The algorithm's domain name in TSIG records.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256.",
            Self::HmacSha384 => "hmac-sha384.",
            Self::HmacSha512 => "hmac-sha512.",
        }
    }

    fn ring(&self) -> ring::hmac::Algorithm {
        match self {
            Self::HmacSha256 => ring::hmac::HMAC_SHA256,
            Self::HmacSha384 => ring::hmac::HMAC_SHA384,
            Self::HmacSha512 => ring::hmac::HMAC_SHA512,
        }
    }
}

/// A TSIG key: its name, algorithm and shared secret. `Debug` hides the
/// secret.
#[derive(Clone)]
pub struct Key {
    /// The key's name, as configured on the server.
    pub name: String,
    /// Its HMAC algorithm.
    pub algorithm: Algorithm,
    /// The decoded secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Signs `message` (a complete DNS message without TSIG) at `time_signed`
/// (seconds since the epoch): returns it with the TSIG record appended and
/// ARCOUNT incremented (RFC 8945 §4.3).
pub fn sign(message: &[u8], key: &Key, time_signed: u64) -> Result<Vec<u8>, wire::Error> {
    if message.len() < 12 {
        return Err(wire::Error::Truncated);
    }
    let time = time_signed.to_be_bytes();
    let time48 = &time[2..8];

    // §4.3.3: the message as it is, then the TSIG variables, names in
    // canonical (lowercase, uncompressed) form.
    let mut digest_input = message.to_vec();
    wire::put_name(&mut digest_input, &key.name, true)?;
    digest_input.extend_from_slice(&CLASS_ANY.to_be_bytes());
    digest_input.extend_from_slice(&0u32.to_be_bytes());
    wire::put_name(&mut digest_input, key.algorithm.name(), true)?;
    digest_input.extend_from_slice(time48);
    digest_input.extend_from_slice(&FUDGE.to_be_bytes());
    digest_input.extend_from_slice(&0u16.to_be_bytes()); // error
    digest_input.extend_from_slice(&0u16.to_be_bytes()); // other len
    let hmac_key = ring::hmac::Key::new(key.algorithm.ring(), &key.secret);
    let mac = ring::hmac::sign(&hmac_key, &digest_input);
    let mac = mac.as_ref();

    let mut rdata = Vec::with_capacity(64 + mac.len());
    wire::put_name(&mut rdata, key.algorithm.name(), true)?;
    rdata.extend_from_slice(time48);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(mac);
    rdata.extend_from_slice(&message[0..2]); // original id
    rdata.extend_from_slice(&0u16.to_be_bytes()); // error
    rdata.extend_from_slice(&0u16.to_be_bytes()); // other len

    let mut out = message.to_vec();
    wire::put_name(&mut out, &key.name, true)?;
    out.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
    out[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(out)
}

/// The TSIG error code of a signed response (RFC 8945 §5.3: BADSIG 16,
/// BADKEY 17, BADTIME 18), if it carries a TSIG record.
pub fn response_error(response: &wire::Response) -> Option<u16> {
    let tsig = response.additional.iter().find(|r| r.rtype == TYPE_TSIG)?;
    // RDATA: algorithm name (uncompressed by RFC 8945 §4.2), time (6),
    // fudge (2), MAC size (2), MAC, original id (2), error (2), ...
    let (_, after_name) = wire::read_name(&tsig.rdata, 0).ok()?;
    let mac_len_at = after_name + 8;
    let mac_len = usize::from(u16::from_be_bytes([
        *tsig.rdata.get(mac_len_at)?,
        *tsig.rdata.get(mac_len_at + 1)?,
    ]));
    let error_at = mac_len_at + 2 + mac_len + 2;
    Some(u16::from_be_bytes([
        *tsig.rdata.get(error_at)?,
        *tsig.rdata.get(error_at + 1)?,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            name: "Portcullis-Key.".into(),
            algorithm: Algorithm::HmacSha256,
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        }
    }

    #[test]
    fn tsig_record_follows_rfc_8945_layout() {
        let msg = wire::query(0x4242, "x.test", wire::TYPE_TXT).expect("encodes");
        let signed = sign(&msg, &key(), 0x0000_0102_0304).expect("signs");
        assert_eq!(&signed[..10], &msg[..10]);
        assert_eq!(&signed[10..12], &[0, 1], "ARCOUNT counts the TSIG record");
        assert_eq!(&signed[12..msg.len()], &msg[12..]);
        let rr = &signed[msg.len()..];
        let mut want = b"\x0eportcullis-key\x00".to_vec();
        want.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        assert_eq!(&rr[..want.len()], want.as_slice());
        let rdata = &rr[want.len() + 2..];
        let rdlen = usize::from(u16::from_be_bytes([rr[want.len()], rr[want.len() + 1]]));
        assert_eq!(rdata.len(), rdlen);
        let alg = b"\x0bhmac-sha256\x00";
        assert_eq!(&rdata[..alg.len()], alg);
        let rest = &rdata[alg.len()..];
        assert_eq!(&rest[..6], &[0, 0, 1, 2, 3, 4], "48-bit time signed");
        assert_eq!(&rest[6..8], &FUDGE.to_be_bytes());
        assert_eq!(&rest[8..10], &[0, 32], "SHA-256 MAC size");
        assert_eq!(&rest[42..44], &[0x42, 0x42], "original id");
        assert_eq!(&rest[44..48], &[0, 0, 0, 0], "error, other len");
    }

    #[test]
    fn mac_covers_message_and_canonical_tsig_variables() {
        let msg = wire::query(7, "x.test", wire::TYPE_TXT).expect("encodes");
        let k = key();
        let signed = sign(&msg, &k, 1_700_000_000).expect("signs");
        // Recompute from the RFC's list of digest components, written out.
        let mut input = msg.clone();
        input.extend_from_slice(b"\x0eportcullis-key\x00");
        input.extend_from_slice(&[0, 255, 0, 0, 0, 0]);
        input.extend_from_slice(b"\x0bhmac-sha256\x00");
        input.extend_from_slice(&1_700_000_000u64.to_be_bytes()[2..]);
        input.extend_from_slice(&[1, 44, 0, 0, 0, 0]);
        let want = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k.secret),
            &input,
        );
        let mac_at = signed.len() - 6 - 32;
        assert_eq!(&signed[mac_at..mac_at + 32], want.as_ref());
    }

    #[test]
    fn algorithm_names_parse_in_cert_manager_and_dns_spelling() {
        assert_eq!(Algorithm::parse("HMACSHA256"), Some(Algorithm::HmacSha256));
        assert_eq!(
            Algorithm::parse("hmac-sha512."),
            Some(Algorithm::HmacSha512)
        );
        assert_eq!(Algorithm::parse("HMACMD5"), None);
    }

    #[test]
    fn key_debug_hides_secret() {
        let shown = format!("{:?}", key());
        assert!(!shown.contains("0123456789"));
    }

    #[test]
    fn response_error_reads_badsig_from_tsig_rdata() {
        let mut rdata = b"\x0bhmac-sha256\x00".to_vec();
        rdata.extend_from_slice(&[0, 0, 0, 0, 0, 1, 1, 44, 0, 0, 0, 7, 0, 16, 0, 0]);
        let resp = wire::Response {
            id: 7,
            truncated: false,
            authoritative: false,
            rcode: 9,
            answers: vec![],
            authority: vec![],
            additional: vec![wire::Record {
                name: "k".into(),
                rtype: TYPE_TSIG,
                class: CLASS_ANY,
                rdata,
            }],
        };
        assert_eq!(response_error(&resp), Some(16));
    }
}
