//! DNS-01 through RFC 2136 dynamic updates: the portable provider that works
//! with BIND, Knot, PowerDNS and most managed DNS.
//!
//! [`Rfc2136`] finds the zone of a name (SOA query to the configured
//! nameserver), adds and deletes the `_acme-challenge` TXT record with a
//! TSIG-signed UPDATE, and polls the same (authoritative) nameserver until
//! the record is visible. Message encoding is in [`wire`] and signing in
//! [`tsig`], both pure; this module does the UDP I/O (TCP when a response is
//! truncated).

pub mod tsig;
pub mod wire;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one exchange with the nameserver may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);
/// Exchanges tried before giving up (UDP may drop).
const ATTEMPTS: usize = 3;
/// TTL of the challenge record: short, so a stale value does not linger in
/// resolvers.
pub const CHALLENGE_TTL: u32 = 60;

/// Why a DNS update or lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The nameserver could not be reached or did not answer in time.
    #[error("nameserver {server} did not answer: {reason}")]
    Unreachable {
        /// The nameserver.
        server: SocketAddr,
        /// The last failure.
        reason: NoAnswer,
    },
    /// A name or value cannot be encoded, or the answer cannot be decoded.
    #[error("DNS message")]
    Wire(#[from] wire::Error),
    /// The nameserver refused or failed the request.
    #[error("nameserver {server} answered {rcode} to {what}{}", .tsig.map(|t| format!(" ({t})")).unwrap_or_default())]
    Rcode {
        /// The nameserver.
        server: SocketAddr,
        /// The request.
        what: &'static str,
        /// RCODE name.
        rcode: &'static str,
        /// TSIG error, when the answer carried one.
        tsig: Option<TsigFailure>,
    },
    /// No SOA was found for the name: the nameserver is not authoritative
    /// for any zone containing it.
    #[error("no zone found for {0} on the nameserver")]
    NoZone(String),
    /// The record did not become visible on the nameserver in time.
    #[error("TXT record {name} not visible on {server} after {waited:?}")]
    NotVisible {
        /// The record name.
        name: String,
        /// The nameserver.
        server: SocketAddr,
        /// How long it was polled.
        waited: Duration,
    },
    /// The nameserver address is not `IP` or `IP:port`.
    #[error("invalid nameserver address {0:?}")]
    BadNameserver(String),
}

/// Why a nameserver gave no answer (the detail of [`Error::Unreachable`],
/// printed in its message).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoAnswer {
    /// No exchange was tried.
    #[error("no attempt")]
    NoAttempt,
    /// The last UDP exchange timed out.
    #[error("timed out")]
    TimedOut,
    /// The last UDP exchange failed.
    #[error("{0}")]
    Udp(std::io::Error),
    /// The TCP exchange (after a truncated answer) timed out.
    #[error("TCP timed out")]
    TcpTimedOut,
    /// The TCP exchange (after a truncated answer) failed.
    #[error("TCP: {0}")]
    Tcp(std::io::Error),
}

/// The TSIG error an answer carried (RFC 8945 §5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsigFailure {
    /// BADSIG: the MAC did not verify.
    #[error("TSIG BADSIG: wrong secret")]
    BadSig,
    /// BADKEY: the server does not know the key.
    #[error("TSIG BADKEY: unknown key name or algorithm")]
    BadKey,
    /// BADTIME: the signing time is outside the fudge.
    #[error("TSIG BADTIME: clocks differ")]
    BadTime,
    /// Another TSIG error code.
    #[error("TSIG error {0}")]
    Other(u16),
}

/// Parses a nameserver as cert-manager writes it: `IP`, `IP:port` or
/// `[IPv6]:port`; the port defaults to 53.
pub fn parse_nameserver(value: &str) -> Result<SocketAddr, Error> {
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    value
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| Error::BadNameserver(value.to_owned()))
}

/// The name a DNS-01 challenge for `domain` is published at (RFC 8555
/// §8.4): `_acme-challenge.<domain>`, wildcards without their `*.`.
pub fn challenge_name(domain: &str) -> String {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    format!("_acme-challenge.{}", base.trim_end_matches('.'))
}

/// A nameserver accepting dynamic updates, and the TSIG key to sign them.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    /// The authoritative nameserver updates and checks go to.
    pub nameserver: SocketAddr,
    /// The key updates are signed with; unsigned when `None`.
    pub tsig: Option<tsig::Key>,
}

impl Rfc2136 {
    /// The zone containing `name`, from the SOA record the nameserver returns
    /// (in the answer at the apex, else in the authority section).
    pub async fn find_zone(&self, name: &str) -> Result<String, Error> {
        let id = rand::random();
        let query = wire::query(id, name, wire::TYPE_SOA)?;
        let resp = self.exchange(&query, id).await?;
        if resp.rcode != 0 && resp.rcode != 3 {
            return Err(self.rcode_error("SOA query", &resp));
        }
        resp.answers
            .iter()
            .chain(&resp.authority)
            .find(|r| r.rtype == wire::TYPE_SOA)
            .map(|r| r.name.clone())
            .ok_or_else(|| Error::NoZone(name.to_owned()))
    }

    /// Adds the TXT record `name` = `value` to `zone`.
    pub async fn add_txt(&self, zone: &str, name: &str, value: &str) -> Result<(), Error> {
        let change = wire::TxtChange::Add { ttl: CHALLENGE_TTL };
        self.update(zone, name, value, change, "UPDATE (add)").await
    }

    /// Deletes the TXT record `name` = `value` from `zone` (other values of
    /// `name` stay).
    pub async fn remove_txt(&self, zone: &str, name: &str, value: &str) -> Result<(), Error> {
        let change = wire::TxtChange::Delete;
        self.update(zone, name, value, change, "UPDATE (delete)")
            .await
    }

    /// The TXT values of `name` on the nameserver.
    pub async fn txt_values(&self, name: &str) -> Result<Vec<String>, Error> {
        let id = rand::random();
        let query = wire::query(id, name, wire::TYPE_TXT)?;
        let resp = self.exchange(&query, id).await?;
        if resp.rcode != 0 && resp.rcode != 3 {
            return Err(self.rcode_error("TXT query", &resp));
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        Ok(resp
            .answers
            .iter()
            .filter(|r| r.name == name)
            .filter_map(wire::Record::txt)
            .collect())
    }

    /// Polls the nameserver until `name` has the TXT value `value`, for at
    /// most `timeout`.
    pub async fn wait_visible(
        &self,
        name: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let start = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.txt_values(name).await {
                Ok(values) if values.iter().any(|v| v == value) => return Ok(()),
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, name, "TXT lookup failed; retrying"),
            }
            if start.elapsed() + delay > timeout {
                return Err(Error::NotVisible {
                    name: name.to_owned(),
                    server: self.nameserver,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn update(
        &self,
        zone: &str,
        name: &str,
        value: &str,
        change: wire::TxtChange,
        what: &'static str,
    ) -> Result<(), Error> {
        let id = rand::random();
        let mut msg = wire::update_txt(id, zone, name, value, change)?;
        if let Some(key) = &self.tsig {
            // The system's time, not the issuer's `Clock`: the nameserver
            // checks it against its own (RFC 8945 §5.2.3).
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            msg = tsig::sign(&msg, key, now)?;
        }
        let resp = self.exchange(&msg, id).await?;
        if resp.rcode != 0 {
            return Err(self.rcode_error(what, &resp));
        }
        Ok(())
    }

    fn rcode_error(&self, what: &'static str, resp: &wire::Response) -> Error {
        let tsig = match tsig::response_error(resp) {
            Some(16) => Some(TsigFailure::BadSig),
            Some(17) => Some(TsigFailure::BadKey),
            Some(18) => Some(TsigFailure::BadTime),
            Some(0) | None => None,
            Some(other) => Some(TsigFailure::Other(other)),
        };
        Error::Rcode {
            server: self.nameserver,
            what,
            rcode: rcode_name(resp.rcode),
            tsig,
        }
    }

    /// Sends `msg` and returns the matching response: UDP with retries, TCP
    /// when the UDP answer is truncated.
    async fn exchange(&self, msg: &[u8], id: u16) -> Result<wire::Response, Error> {
        let server = self.nameserver;
        let unreachable = |reason: NoAnswer| Error::Unreachable { server, reason };
        let mut last = NoAnswer::NoAttempt;
        for _ in 0..ATTEMPTS {
            match tokio::time::timeout(EXCHANGE_TIMEOUT, udp_exchange(server, msg, id)).await {
                Ok(Ok(resp)) if resp.truncated => {
                    return tokio::time::timeout(EXCHANGE_TIMEOUT, tcp_exchange(server, msg, id))
                        .await
                        .map_err(|_| unreachable(NoAnswer::TcpTimedOut))?
                        .map_err(|e| unreachable(NoAnswer::Tcp(e)));
                }
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => last = NoAnswer::Udp(e),
                Err(_) => last = NoAnswer::TimedOut,
            }
        }
        Err(unreachable(last))
    }
}

/// One UDP exchange; answers with another id (stale, spoofed) are skipped.
async fn udp_exchange(server: SocketAddr, msg: &[u8], id: u16) -> std::io::Result<wire::Response> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(msg).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        match wire::parse_response(&buf[..n]) {
            Ok(resp) if resp.id == id => return Ok(resp),
            _ => continue,
        }
    }
}

/// One TCP exchange (two-byte length prefixes, RFC 1035 §4.2.2).
async fn tcp_exchange(server: SocketAddr, msg: &[u8], id: u16) -> std::io::Result<wire::Response> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(msg.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let resp = wire::parse_response(&buf).map_err(std::io::Error::other)?;
    if resp.id != id {
        return Err(std::io::Error::other("response id does not match"));
    }
    Ok(resp)
}

/// The mnemonic of an RCODE (RFC 1035, RFC 2136 §2.2).
fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "an unknown RCODE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_update_names_the_tsig_failure_only_when_there_is_one() {
        let server: SocketAddr = "192.0.2.1:53".parse().expect("address");
        let refused = |tsig| Error::Rcode {
            server,
            what: "update",
            rcode: "NOTAUTH",
            tsig,
        };
        assert_eq!(
            refused(Some(TsigFailure::BadSig)).to_string(),
            "nameserver 192.0.2.1:53 answered NOTAUTH to update (TSIG BADSIG: wrong secret)"
        );
        assert_eq!(
            refused(None).to_string(),
            "nameserver 192.0.2.1:53 answered NOTAUTH to update"
        );
    }

    #[test]
    fn challenge_name_strips_wildcard_label() {
        assert_eq!(challenge_name("*.a.test"), "_acme-challenge.a.test");
        assert_eq!(challenge_name("a.test."), "_acme-challenge.a.test");
    }

    #[test]
    fn nameserver_port_defaults_to_53() {
        assert_eq!(
            parse_nameserver("127.0.0.1").expect("ip"),
            "127.0.0.1:53".parse().expect("addr")
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").expect("ip:port"),
            "127.0.0.1:5353".parse().expect("addr")
        );
        assert_eq!(
            parse_nameserver("[::1]").expect("v6"),
            "[::1]:53".parse().expect("addr")
        );
        assert!(parse_nameserver("ns.example").is_err());
    }
}
