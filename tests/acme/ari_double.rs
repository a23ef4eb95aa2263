//! A test double of an ACME server offering Renewal Information (RFC 9773),
//! which Debian's Pebble predates. Over real HTTPS (its own rcgen CA, given
//! to the issuer as `caBundle`) it serves what the real instant-acme client
//! needs for one order without challenges: directory (with `renewalInfo`
//! and a profile), nonces, accounts, orders (answering `replaces` with 409
//! when told to, or echoing it), finalize (signing the CSR with its CA),
//! certificate download, and `renewalInfo/<id>` with a configurable window.
//! It can also refuse chosen newOrders with `rateLimited` (status and
//! `Retry-After` header as told), as a CA enforcing a rate limit does.
//! JWS signatures are not checked: this is a double, not a CA.

use anyhow::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How the double behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The suggested renewal window it returns.
    pub window: (SystemTime, SystemTime),
    /// Whether a newOrder carrying `replaces` gets 409 Conflict.
    pub conflict_on_replaces: bool,
    /// newOrders (numbered from 1, in arrival order) refused with a
    /// `rateLimited` problem.
    pub rate_limited: BTreeMap<usize, RateLimit>,
}

impl Behaviour {
    /// Suggests `window`, accepts `replaces`, never rate-limits.
    pub fn window(window: (SystemTime, SystemTime)) -> Behaviour {
        Behaviour {
            window,
            conflict_on_replaces: false,
            rate_limited: BTreeMap::new(),
        }
    }
}

/// How one newOrder is refused with `urn:ietf:params:acme:error:rateLimited`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// The HTTP status (429 is what RFC 8555 §6.6 suggests).
    pub status: u16,
    /// The `Retry-After` header value, if one is sent.
    pub retry_after: Option<String>,
}

/// What the double saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The `replaces` field of each newOrder (`None` when absent).
    pub order_replaces: Vec<Option<String>>,
    /// The `profile` field of each newOrder.
    pub order_profiles: Vec<Option<String>>,
    /// Certificate ids asked for at `renewalInfo`.
    pub renewal_info_ids: Vec<String>,
    /// How many newAccount requests arrived.
    pub new_accounts: usize,
}

impl Seen {
    /// How many newOrder requests arrived (refused ones included).
    pub fn new_orders(&self) -> usize {
        self.order_replaces.len()
    }
}

struct State {
    behaviour: Mutex<Behaviour>,
    seen: Mutex<Seen>,
    base: String,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
    ca_pem: String,
    order: Mutex<serde_json::Value>,
    chain: Mutex<Option<String>>,
}

/// A running double; stops when dropped.
pub struct AriDouble {
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
    /// PEM of the CA for its HTTPS (and of the certificates it issues).
    pub ca_pem: String,
    /// Its address.
    pub addr: SocketAddr,
}

impl Drop for AriDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AriDouble {
    /// Starts the double on a loopback port.
    pub async fn start(behaviour: Behaviour) -> Result<AriDouble> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(vec![])?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ARI double CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let server_key = rcgen::KeyPair::generate()?;
        let server_cert = {
            let issuer = rcgen::Issuer::new(ca_params.clone(), &ca_key);
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?
                .signed_by(&server_key, &issuer)?
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            seen: Mutex::new(Seen::default()),
            base: format!("https://{addr}"),
            ca_key,
            ca_params,
            ca_pem: ca.pem(),
            order: Mutex::new(serde_json::Value::Null),
            chain: Mutex::new(None),
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = served.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, hyper::Error>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(AriDouble {
            ca_pem: state.ca_pem.clone(),
            state,
            task,
            addr,
        })
    }

    /// The directory URL.
    pub fn directory_url(&self) -> String {
        format!("{}/dir", self.state.base)
    }

    /// What it saw so far.
    pub fn seen(&self) -> Seen {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Changes the window it suggests.
    pub fn set_window(&self, window: (SystemTime, SystemTime)) {
        if let Ok(mut b) = self.state.behaviour.lock() {
            b.window = window;
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn json(
    status: u16,
    body: serde_json::Value,
    location: Option<&str>,
) -> http::Response<Full<Bytes>> {
    let content_type = if status >= 400 {
        "application/problem+json"
    } else {
        "application/json"
    };
    let mut b = http::Response::builder()
        .status(status)
        .header("Replay-Nonce", nonce())
        .header("Content-Type", content_type);
    if let Some(l) = location {
        b = b.header("Location", l);
    }
    b.body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

fn nonce() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// The decoded JWS payload of a POST body (empty for POST-as-GET).
fn payload(body: &[u8]) -> serde_json::Value {
    let jws: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let encoded = jws["payload"].as_str().unwrap_or_default();
    URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or(serde_json::Value::Null)
}

async fn handle(
    state: &State,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let base = &state.base;
    match path.as_str() {
        "/dir" => json(
            200,
            serde_json::json!({
                "newNonce": format!("{base}/nonce"),
                "newAccount": format!("{base}/account"),
                "newOrder": format!("{base}/order"),
                "renewalInfo": format!("{base}/renewal-info"),
                "meta": {"profiles": {"shortlived": "short-lived certificates"}},
            }),
            None,
        ),
        "/nonce" => json(200, serde_json::Value::Null, None),
        "/account" => {
            if let Ok(mut seen) = state.seen.lock() {
                seen.new_accounts += 1;
            }
            json(
                201,
                serde_json::json!({"status": "valid"}),
                Some(&format!("{base}/account/1")),
            )
        }
        "/order" => {
            let p = payload(&body);
            let replaces = p["replaces"].as_str().map(str::to_owned);
            let profile = p["profile"].as_str().map(str::to_owned);
            let number = match state.seen.lock() {
                Ok(mut seen) => {
                    seen.order_replaces.push(replaces.clone());
                    seen.order_profiles.push(profile.clone());
                    seen.order_replaces.len()
                }
                Err(_) => 0,
            };
            let (conflict, limit) = state
                .behaviour
                .lock()
                .map(|b| (b.conflict_on_replaces, b.rate_limited.get(&number).cloned()))
                .unwrap_or((false, None));
            if let Some(limit) = limit {
                let mut resp = json(
                    limit.status,
                    serde_json::json!({
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": format!("too many new orders (order {number})"),
                        "status": limit.status,
                    }),
                    None,
                );
                if let Some(value) = limit
                    .retry_after
                    .and_then(|v| http::HeaderValue::from_str(&v).ok())
                {
                    resp.headers_mut().insert("Retry-After", value);
                }
                return resp;
            }
            if replaces.is_some() && conflict {
                return json(
                    409,
                    serde_json::json!({
                        "type": "urn:ietf:params:acme:error:alreadyReplaced",
                        "detail": "certificate already replaced",
                        "status": 409,
                    }),
                    None,
                );
            }
            let mut order = serde_json::json!({
                "status": "ready",
                "identifiers": p["identifiers"],
                "authorizations": [],
                "finalize": format!("{base}/finalize"),
            });
            if let Some(r) = replaces {
                order["replaces"] = r.into();
            }
            if let Some(pr) = profile {
                order["profile"] = pr.into();
            }
            if let Ok(mut o) = state.order.lock() {
                *o = order.clone();
            }
            json(201, order, Some(&format!("{base}/order/1")))
        }
        "/order/1" => json(
            200,
            state.order.lock().map(|o| o.clone()).unwrap_or_default(),
            None,
        ),
        "/finalize" => {
            let p = payload(&body);
            let csr = p["csr"]
                .as_str()
                .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
                .unwrap_or_default();
            let chain = sign_csr(state, &csr);
            let Some(chain) = chain else {
                return json(
                    400,
                    serde_json::json!({"type": "urn:ietf:params:acme:error:badCSR", "status": 400}),
                    None,
                );
            };
            if let Ok(mut c) = state.chain.lock() {
                *c = Some(chain);
            }
            let order = {
                let Ok(mut o) = state.order.lock() else {
                    return json(500, serde_json::Value::Null, None);
                };
                o["status"] = "valid".into();
                o["certificate"] = format!("{base}/cert").into();
                o.clone()
            };
            json(200, order, Some(&format!("{base}/order/1")))
        }
        "/cert" => {
            let chain = state
                .chain
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .unwrap_or_default();
            http::Response::builder()
                .status(200)
                .header("Replay-Nonce", nonce())
                .header("Content-Type", "application/pem-certificate-chain")
                .body(Full::new(Bytes::from(chain)))
                .unwrap_or_default()
        }
        p if p.starts_with("/renewal-info/") => {
            let id = p.trim_start_matches("/renewal-info/").to_owned();
            if let Ok(mut seen) = state.seen.lock() {
                seen.renewal_info_ids.push(id);
            }
            let (start, end) = state
                .behaviour
                .lock()
                .map(|b| b.window)
                .unwrap_or((SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH));
            let mut resp = json(
                200,
                serde_json::json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
                None,
            );
            resp.headers_mut()
                .insert("Retry-After", http::HeaderValue::from_static("21600"));
            resp
        }
        _ => json(404, serde_json::json!({"type": "about:blank"}), None),
    }
}

/// Signs the CSR with the double's CA: leaf then CA, PEM.
fn sign_csr(state: &State, csr_der: &[u8]) -> Option<String> {
    let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
    let mut params = rcgen::CertificateSigningRequestParams::from_der(&der).ok()?;
    // As real CAs do: ARI ids are built from the Authority Key Identifier.
    params.params.use_authority_key_identifier_extension = true;
    let issuer = rcgen::Issuer::new(state.ca_params.clone(), &state.ca_key);
    let leaf = params.signed_by(&issuer).ok()?;
    Some(format!("{}{}", leaf.pem(), state.ca_pem))
}
