//! The PROXY protocol version 2 header (haproxy's `proxy-protocol.txt`,
//! section 2.2) a stream route with `portcullis.dev/proxy-protocol: v2`
//! writes to its backend before any other byte, so the backend learns the
//! client's address: pure encoding, no I/O.
//!
//! Layout: the 12-byte signature, one byte of version (2) and command
//! (`PROXY`), one byte of address family and transport (`TCP` over IPv4 or
//! IPv6), a 16-bit big-endian length of what follows, then source address,
//! destination address, source port and destination port, big-endian.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Version 2 (high nibble), command `PROXY` (low nibble 1): the connection
/// was relayed on behalf of the addresses that follow.
pub const VERSION_2_PROXY: u8 = 0x21;

/// Address family `AF_INET` (high nibble 1), transport `STREAM` (low 1).
pub const TCP_OVER_IPV4: u8 = 0x11;

/// Address family `AF_INET6` (high nibble 2), transport `STREAM` (low 1).
pub const TCP_OVER_IPV6: u8 = 0x21;

/// Length of the IPv4 address block: two addresses of 4 bytes, two ports.
const IPV4_BLOCK: u16 = 12;

/// Length of the IPv6 address block: two addresses of 16 bytes, two ports.
const IPV6_BLOCK: u16 = 36;

/// The version 2 header of a TCP connection from `client` (source) to the
/// gateway's `local` address (destination).
///
/// IPv4-mapped IPv6 addresses (a dual-stack socket's view of an IPv4 peer)
/// are written as IPv4; when the two families still differ the IPv4 one is
/// mapped into IPv6, since one header carries one family.
pub fn encode_v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (src, dst) = (client.ip().to_canonical(), local.ip().to_canonical());
    let mut out = Vec::with_capacity(16 + usize::from(IPV6_BLOCK));
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_2_PROXY);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(TCP_OVER_IPV4);
            out.extend_from_slice(&IPV4_BLOCK.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(TCP_OVER_IPV6);
            out.extend_from_slice(&IPV6_BLOCK.to_be_bytes());
            out.extend_from_slice(&as_v6(s).octets());
            out.extend_from_slice(&as_v6(d).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("literal socket address")
    }

    #[test]
    fn ipv4_header_is_signature_ver_cmd_fam_len_then_addresses_and_ports() {
        let h = encode_v2(addr("192.0.2.1:56324"), addr("198.51.100.7:443"));
        let expected: Vec<u8> = [
            &SIGNATURE[..],
            &[0x21, 0x11, 0x00, 0x0C],
            &[192, 0, 2, 1],
            &[198, 51, 100, 7],
            &56324u16.to_be_bytes(),
            &443u16.to_be_bytes(),
        ]
        .concat();
        assert_eq!(h, expected);
        assert_eq!(h.len(), 16 + 12);
    }

    #[test]
    fn ipv6_header_uses_family_0x21_and_a_36_byte_block() {
        let h = encode_v2(addr("[2001:db8::1]:40000"), addr("[2001:db8::2]:5432"));
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let src: Ipv6Addr = "2001:db8::1".parse().expect("literal");
        let dst: Ipv6Addr = "2001:db8::2".parse().expect("literal");
        assert_eq!(&h[16..32], &src.octets());
        assert_eq!(&h[32..48], &dst.octets());
        assert_eq!(&h[48..50], &40000u16.to_be_bytes());
        assert_eq!(&h[50..52], &5432u16.to_be_bytes());
        assert_eq!(h.len(), 16 + 36);
    }

    #[test]
    fn ipv4_mapped_addresses_are_written_as_ipv4() {
        let h = encode_v2(addr("[::ffff:10.1.2.3]:1000"), addr("[::ffff:10.0.0.1]:80"));
        assert_eq!(h[13], TCP_OVER_IPV4);
        assert_eq!(&h[16..20], &[10, 1, 2, 3]);
        assert_eq!(&h[20..24], &[10, 0, 0, 1]);
    }

    #[test]
    fn mixed_families_map_ipv4_into_ipv6() {
        let h = encode_v2(addr("10.1.2.3:1000"), addr("[2001:db8::2]:80"));
        assert_eq!(h[13], TCP_OVER_IPV6);
        let mapped = std::net::Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped();
        assert_eq!(&h[16..32], &mapped.octets());
    }

    #[test]
    fn length_field_counts_the_bytes_after_the_fixed_16() {
        for (c, l) in [("127.0.0.1:1", "127.0.0.1:2"), ("[::1]:1", "[::1]:2")] {
            let h = encode_v2(addr(c), addr(l));
            let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
            assert_eq!(h.len(), 16 + len);
        }
    }
}
