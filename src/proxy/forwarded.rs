//! Header hygiene between the two legs of a proxied exchange: hop-by-hop
//! headers (RFC 9110 §7.6.1), `X-Forwarded-*`, the request's host, and
//! WebSocket upgrade detection (RFC 6455 §4.1). Pure functions over header
//! maps.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `X-Forwarded-Client-Cert`: the verified client certificate.
pub const X_FORWARDED_CLIENT_CERT: HeaderName =
    HeaderName::from_static(crate::tls::client_auth::CLIENT_CERT_HEADER);

/// Replaces whatever `X-Forwarded-Client-Cert` the client sent with the
/// identity of the certificate it presented and the gateway verified (or
/// with nothing), so backends can trust the header.
pub fn set_client_cert(headers: &mut HeaderMap, identity: Option<&str>) {
    headers.remove(&X_FORWARDED_CLIENT_CERT);
    if let Some(value) = identity.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(X_FORWARDED_CLIENT_CERT, value);
    }
}

/// `Keep-Alive` (not among `http`'s constants).
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection`, the pre-standard `Connection` some clients still send.
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// How many headers [`HOP_BY_HOP`] lists.
const HOP_BY_HOP_COUNT: usize = 7;

/// Headers that describe one connection and never cross the proxy;
/// `Connection` first (`strip_hop_by_hop` reads its flag by index).
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where `name` is in [`HOP_BY_HOP`], or `HOP_BY_HOP_COUNT` for `TE`.
///
/// One match on the lower-case name: most names differ from every entry in
/// length, which is all it compares for them. (Comparing `HeaderName`s one
/// by one cost ~100 instructions per header.)
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let index = match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "te" => HOP_BY_HOP_COUNT,
        _ => return None,
    };
    debug_assert!(index == HOP_BY_HOP_COUNT || HOP_BY_HOP[index] == name);
    Some(index)
}

/// Removes hop-by-hop headers: the fixed list, every header the `Connection`
/// header names, and `TE` unless it asks for `trailers` (which gRPC needs, and
/// which is then reduced to exactly `trailers`). With `keep_upgrade` (a
/// WebSocket handshake) `Connection: upgrade` and `Upgrade` are kept.
///
/// Runs on both legs of every proxied request, so it scans the names once
/// and removes only what is there: a removal by name costs a hash and a
/// probe, and most requests carry none of these headers.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut te = false;
    for name in headers.keys() {
        match hop_by_hop_index(name) {
            Some(i) if i < HOP_BY_HOP_COUNT => present[i] = true,
            Some(_) => te = true,
            None => {}
        }
    }
    // `present[0]` is `Connection`: the headers it names go too. Names on
    // the fixed list are left to the loop below, and only tokens naming a
    // header that is there are turned into names (usually none: the value
    // is `keep-alive` or `close`).
    if present[0] && !only_keep_alive_or_close(headers) {
        let named: Vec<HeaderName> = tokens(headers, header::CONNECTION)
            .filter(|token| {
                !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(token))
                    && headers.contains_key(*token)
            })
            .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te {
        let wants_trailers = lists(headers, header::TE, "trailers");
        headers.remove(header::TE);
        if wants_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// Whether every `Connection` value is just `keep-alive` or `close` (what
/// nearly every peer sends), which names no header beyond the fixed list.
fn only_keep_alive_or_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().all(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    })
}

/// Adds the client (its address as a header value, see
/// [`ConnInfo::forwarded_for`](super::ConnInfo::forwarded_for)) to
/// `X-Forwarded-For` (appended to what earlier proxies wrote), sets
/// `X-Forwarded-Proto` to the scheme the client used, and sets
/// `X-Forwarded-Host` to the host the client asked for unless an earlier
/// proxy already recorded it.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &str,
    host: Option<&HeaderValue>,
) {
    set_forwarded_for(headers, client);
    let proto = match proto {
        "https" => Ok(HeaderValue::from_static("https")),
        "http" => Ok(HeaderValue::from_static("http")),
        other => HeaderValue::from_str(other),
    };
    if let Ok(proto) = proto {
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    if let Some(host) = host {
        if let header::Entry::Vacant(slot) = headers.entry(X_FORWARDED_HOST) {
            slot.insert(host.clone());
        }
    }
}

/// Appends `client` to `X-Forwarded-For`; the common first hop (no header
/// yet) stores the value as it is, without building a chain.
fn set_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let mut earlier = match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Vacant(slot) => {
            slot.insert(client.clone());
            return;
        }
        header::Entry::Occupied(earlier) => earlier,
    };
    let mut chain: Vec<&str> = earlier
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    chain.extend(client.to_str().ok());
    if let Ok(value) = HeaderValue::from_str(&chain.join(", ")) {
        earlier.insert(value);
    }
}

/// The host the client asked for, as sent: the URI authority (HTTP/2
/// `:authority`, or an HTTP/1.1 absolute-form target, which RFC 9112 §3.2.2
/// says overrides Host), else the `Host` header; any userinfo dropped. The
/// common case, a `Host` header, is the header's own value (sharing its
/// bytes, no copy). `None` when there is none, or it is not visible ASCII.
pub fn request_host(uri: &http::Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    let without_userinfo =
        |h: &str| HeaderValue::from_str(h.rsplit_once('@').map_or(h, |(_, host)| host));
    if let Some(authority) = uri.authority() {
        return without_userinfo(authority.as_str()).ok();
    }
    let value = headers.get(header::HOST)?;
    let text = value.to_str().ok()?;
    if text.contains('@') {
        without_userinfo(text).ok()
    } else {
        Some(value.clone())
    }
}

/// Whether an HTTP/1.x request asks for a WebSocket upgrade: `Connection`
/// lists `upgrade` and `Upgrade` names `websocket`.
pub fn is_websocket_upgrade(version: http::Version, headers: &HeaderMap) -> bool {
    if version > http::Version::HTTP_11 {
        return false;
    }
    // `Upgrade` first: almost no request has it, and then one lookup
    // answers.
    lists(headers, header::UPGRADE, "websocket") && lists(headers, header::CONNECTION, "upgrade")
}

/// Whether the client of an HTTP/1.x request asks to close the connection
/// after it (RFC 9112 §9.3): HTTP/1.1 with `Connection: close`, HTTP/1.0
/// without `Connection: keep-alive`. Never for HTTP/2 and later.
pub fn closes_connection(version: http::Version, headers: &HeaderMap) -> bool {
    match version {
        http::Version::HTTP_11 => lists(headers, header::CONNECTION, "close"),
        http::Version::HTTP_10 | http::Version::HTTP_09 => {
            lists(headers, header::CONNECTION, "close")
                || !lists(headers, header::CONNECTION, "keep-alive")
        }
        _ => false,
    }
}

/// The comma-separated tokens of every `name` header, trimmed (values that
/// are not visible ASCII have none).
pub(super) fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether a `name` header lists `token` (case-insensitive), as
/// [`tokens`] would find it, on bytes: this runs several times per request
/// (`Connection` on both legs, `Upgrade`), and the iterator chain of
/// `tokens` cost ~400 instructions for a one-word value.
pub(super) fn lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|value| value_lists(value.as_bytes(), token.as_bytes()))
}

/// Whether one comma-separated field value lists `token`. A value with a
/// byte `HeaderValue::to_str` refuses lists nothing.
fn value_lists(value: &[u8], token: &[u8]) -> bool {
    let visible = |b: &u8| *b == b'\t' || (b' '..=b'~').contains(b);
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    value.iter().all(visible)
        && value.split(|b| *b == b',').any(|item| {
            let start = item.iter().position(|b| !ows(b)).unwrap_or(item.len());
            let end = item.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
            item[start..end].eq_ignore_ascii_case(token)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_listed_token_is_found_as_tokens_finds_it() {
        let cases: &[&[u8]] = &[
            b"close",
            b"Keep-Alive",
            b" keep-alive ,\tclose\t",
            b"x-trace,close",
            b"closed",
            b"",
            b",,",
            b"up grade",
            b"close\xff",
        ];
        for value in cases {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_bytes(value).expect("a valid field value"),
            );
            for token in ["close", "keep-alive", "upgrade", "x-trace"] {
                let expected =
                    tokens(&h, header::CONNECTION).any(|t| t.eq_ignore_ascii_case(token));
                assert_eq!(
                    lists(&h, header::CONNECTION, token),
                    expected,
                    "{token} in {:?}",
                    String::from_utf8_lossy(value)
                );
            }
        }
        let mut two = HeaderMap::new();
        two.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        two.append(header::CONNECTION, HeaderValue::from_static("Close"));
        assert!(lists(&two, header::CONNECTION, "close"));
        assert!(!lists(&two, header::UPGRADE, "close"));
    }

    #[test]
    fn the_client_asks_to_close_as_its_version_says() {
        use http::Version;
        let none = HeaderMap::new();
        let close = map(&[("connection", "Close")]);
        let keep = map(&[("connection", "x-trace, keep-alive")]);
        assert!(!closes_connection(Version::HTTP_11, &none));
        assert!(closes_connection(Version::HTTP_11, &close));
        assert!(!closes_connection(Version::HTTP_11, &keep));
        assert!(closes_connection(Version::HTTP_10, &none));
        assert!(!closes_connection(Version::HTTP_10, &keep));
        assert!(closes_connection(Version::HTTP_10, &close));
        assert!(!closes_connection(Version::HTTP_2, &close));
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn every_hop_by_hop_name_and_only_those_are_recognised() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&header::TE), Some(HOP_BY_HOP_COUNT));
        // Same lengths as entries, and prefixes of them, are not hop-by-hop.
        for other in [
            "user-agent",
            "connectio",
            "tk",
            "upgrades",
            "proxy-authenticatf",
        ] {
            let name = HeaderName::from_bytes(other.as_bytes()).expect("valid name");
            assert_eq!(hop_by_hop_index(&name), None, "{other}");
        }
        let mut h = map(&[
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn headers_named_by_connection_go_whatever_their_case() {
        let mut h = map(&[
            ("connection", "close, X-Private ,te"),
            ("x-private", "1"),
            ("te", "trailers"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
        // `Keep-Alive` alone, then with a name in a second `Connection` line.
        let mut h = map(&[("connection", "Keep-Alive"), ("x-kept", "yes")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("connection", "x-private"),
            ("x-private", "1"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-kept"], "yes");
        // Nothing hop-by-hop: the map is left as it was.
        let mut h = map(&[("host", "a.example"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut h = map(&[("te", "gzip, trailers")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
        let mut h = map(&[("te", "gzip")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn websocket_handshake_keeps_upgrade_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "abc");
    }

    #[test]
    fn forwarded_for_appends_client_to_chain() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("192.0.2.7"),
            "https",
            Some(&HeaderValue::from_static("a.example")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example");
    }

    #[test]
    fn forwarded_host_keeps_earlier_proxy_value() {
        let mut h = map(&[
            ("x-forwarded-host", "outer.example"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("::1"),
            "http",
            Some(&HeaderValue::from_static("inner.example")),
        );
        assert_eq!(h["x-forwarded-host"], "outer.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "::1");
    }

    #[test]
    fn authority_overrides_host_header() {
        let uri: http::Uri = "https://a.example:8443/x".parse().expect("literal");
        let h = map(&[("host", "b.example")]);
        assert_eq!(
            request_host(&uri, &h),
            Some(HeaderValue::from_static("a.example:8443"))
        );
        let uri: http::Uri = "/x".parse().expect("literal");
        assert_eq!(
            request_host(&uri, &h),
            Some(HeaderValue::from_static("b.example"))
        );
        let with_userinfo = map(&[("host", "user@c.example")]);
        assert_eq!(
            request_host(&uri, &with_userinfo),
            Some(HeaderValue::from_static("c.example"))
        );
        let uri: http::Uri = "https://user:pw@d.example/x".parse().expect("literal");
        assert_eq!(
            request_host(&uri, &h),
            Some(HeaderValue::from_static("d.example"))
        );
        let uri: http::Uri = "/x".parse().expect("literal");
        assert_eq!(request_host(&uri, &HeaderMap::new()), None);
    }

    #[test]
    fn websocket_upgrade_needs_both_headers() {
        let h = map(&[("connection", "Upgrade"), ("upgrade", "WebSocket")]);
        assert!(is_websocket_upgrade(http::Version::HTTP_11, &h));
        assert!(!is_websocket_upgrade(http::Version::HTTP_2, &h));
        let h = map(&[("upgrade", "websocket")]);
        assert!(!is_websocket_upgrade(http::Version::HTTP_11, &h));
    }

    #[test]
    fn client_cert_header_from_the_client_is_replaced_or_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("Hash=forged"),
        );
        set_client_cert(&mut h, None);
        assert!(h.get(&X_FORWARDED_CLIENT_CERT).is_none());
        h.insert(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_static("Hash=forged"),
        );
        set_client_cert(&mut h, Some("Hash=ab;Subject=\"CN=c\""));
        let all: Vec<_> = h.get_all(&X_FORWARDED_CLIENT_CERT).iter().collect();
        assert_eq!(
            all,
            vec![HeaderValue::from_static("Hash=ab;Subject=\"CN=c\"")]
        );
    }
}
