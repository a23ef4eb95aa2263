//! One ACME order, start to finish (RFC 8555 §7.4): new order (with
//! `profile` and `replaces` when the CA supports them), present a challenge
//! for every pending authorization with the solver its name selects, tell
//! the CA to validate, wait for the order to be ready (bounded polling,
//! Retry-After honoured by instant-acme), finalize with a CSR from the
//! requested key, download the chain, then read its renewal window (RFC
//! 9773). Challenges are withdrawn and DNS records deleted afterwards, on
//! failure too. The order URL is recorded in the Store ([`super::pending`])
//! so that a restart, or the next leader, resumes a pending or ready order
//! instead of placing another.
//!
//! An order may be stopped at any await (the manager lost its Lease): what
//! it published is withdrawn by the guards' drop, and its record stays for
//! the next leader. Placing the order and recording it run in a task of
//! their own, so a stop between the two never leaves an order the CA
//! created but nobody recorded.

use std::time::{Duration, SystemTime};

use tracing::Instrument;

use instant_acme::{
    Account, AuthorizationHandle, AuthorizationStatus, ChallengeHandle, ChallengeStatus,
    ChallengeType, Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};

use super::config::{choose_solver, AcmeIssuer, IssuerProblem, SolverKind};
use super::http::RetryAfterSlot;
use super::pending;
use super::{ari, AcmeContext, Error, Phase};
use crate::issuer::challenges::{Challenge, PublishedChallenge};
use crate::issuer::dns;
use crate::issuer::request::{CertRequest, Issued, RenewalWindow};
use crate::store::{PendingOrder, StoredCert};

/// A DNS-01 record added for this order, deleted when it ends.
struct DnsRecord {
    server: dns::Rfc2136,
    zone: String,
    name: String,
    value: String,
}

/// What an order put in place for its challenges.
#[derive(Default)]
struct Presented {
    /// Published challenges; dropping them withdraws them (best effort).
    published: Vec<Box<dyn PublishedChallenge>>,
    /// DNS records to delete.
    dns: Vec<DnsRecord>,
}

impl Presented {
    /// Withdraws everything (failures are logged).
    async fn clean_up(self) {
        for published in self.published {
            published.withdraw().await;
        }
        for r in self.dns {
            if let Err(error) = r.server.remove_txt(&r.zone, &r.name, &r.value).await {
                tracing::warn!(name = %r.name, %error, "could not delete DNS-01 record");
            }
        }
    }
}

/// Obtains the certificate `req` asks for from the ACME CA of `issuer`, for
/// a caller that keeps it only in hand: the order is forgotten once the
/// certificate is downloaded.
///
/// Blocks (asynchronously) until the certificate is issued or the order
/// fails; bounded by `ctx.timeouts`. The key is generated here with
/// `req.key`.
pub async fn issue(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    req: &CertRequest,
) -> Result<Issued, Error> {
    let issued = issue_with_key(issuer, ctx, req, None).await?;
    order_stored(ctx.store.as_ref(), &req.secret).await;
    Ok(issued)
}

/// [`issue`] with the certificate key given (`Some`: the stored key, when
/// the key is not rotated on renewal) instead of a new one of `req.key`,
/// for a caller that stores the certificate: the order stays recorded
/// until it calls [`order_stored`], so a process stopped before storing
/// leaves the next one an order to download again rather than to abandon.
pub async fn issue_with_key(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    req: &CertRequest,
    key: Option<rcgen::KeyPair>,
) -> Result<Issued, Error> {
    let mut key = key;
    let span = tracing::info_span!("acme_order", secret = %req.secret, server = %issuer.server);
    async {
        let (account, retry_after) = ctx.accounts.get(ctx, issuer).await?;
        // What an earlier order saw is not this order's answer.
        if let Ok(mut slot) = retry_after.lock() {
            *slot = None;
        }
        let mut result = issue_with(issuer, ctx, req, &account, &mut key).await;
        if result.as_ref().err().is_some_and(is_account_unknown) {
            // The CA forgot the account (a restarted CA, a reset staging
            // server): present the stored key again, which registers it
            // anew, and try once more.
            tracing::info!("the ACME server does not know the account; registering it again");
            ctx.accounts.forget(issuer).await;
            let (account, _) = ctx.accounts.get(ctx, issuer).await?;
            result = issue_with(issuer, ctx, req, &account, &mut key).await;
        }
        if let Some(m) = &ctx.metrics {
            match &result {
                Ok(_) => m.acme().order("valid"),
                Err(e) => {
                    m.acme().order("error");
                    m.acme().issuance_failed(e.reason());
                    if matches!(e, Error::RateLimited { .. }) {
                        m.acme().rate_limited("order");
                    }
                }
            }
        }
        result.map_err(|e| with_retry_after(e, &retry_after))
    }
    .instrument(span)
    .await
}

/// The renewal window the CA suggests for the leaf of `chain_pem`, or
/// `None` when the CA does not offer ARI (RFC 9773 §4.2). The manager calls
/// it again when the window's `Retry-After` has passed.
pub async fn renewal_window(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    chain_pem: &str,
) -> Result<Option<RenewalWindow>, Error> {
    let (account, _) = ctx.accounts.get(ctx, issuer).await?;
    renewal_info(&account, chain_pem).await
}

/// Whether the CA answered as if it did not know the account.
fn is_account_unknown(error: &Error) -> bool {
    let problem = match error {
        Error::Rejected { problem, .. } => Some(problem.as_str()),
        Error::Protocol {
            source: instant_acme::Error::Api(p),
            ..
        } => p.r#type.as_deref(),
        _ => None,
    };
    problem.is_some_and(|p| p.ends_with(":accountDoesNotExist"))
}

/// Adds the Retry-After the HTTP client saw to a rate-limit error.
pub(super) fn with_retry_after(error: Error, slot: &RetryAfterSlot) -> Error {
    match error {
        Error::RateLimited {
            retry_after: None,
            phase,
            detail,
        } => Error::RateLimited {
            retry_after: slot.lock().ok().and_then(|s| *s),
            phase,
            detail,
        },
        other => other,
    }
}

async fn issue_with(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    req: &CertRequest,
    account: &Account,
    key: &mut Option<rcgen::KeyPair>,
) -> Result<Issued, Error> {
    if req.dns_names.is_empty() {
        return Err(Error::InvalidIssuer(IssuerProblem::NoNames));
    }
    let store = ctx.store.as_ref();
    let profile = wanted_profile(issuer, req, account);
    let (mut order, key) = match resume(issuer, req, profile, account, store).await {
        Some(Resumed::Finalized { order, key }) => (order, *key),
        resumed => {
            let mut order = match resumed {
                Some(Resumed::Open(order)) => order,
                _ => place_and_record(ctx, issuer, req, profile, account).await?,
            };
            let mut presented = Presented::default();
            let outcome = async {
                authorize(issuer, ctx, &mut order, &mut presented).await?;
                wait_ready(ctx, &mut order).await
            }
            .await;
            presented.clean_up().await;
            outcome?;
            // Taken only here, so an attempt that failed earlier leaves it
            // for the next one.
            let key = match key.take() {
                Some(key) => key,
                None => req.key.generate().map_err(Error::Key)?,
            };
            finalize(store, issuer, req, profile, &mut order, &key).await?;
            (order, key)
        }
    };
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ctx.timeouts.certificate);
    let chain = order
        .poll_certificate(&policy)
        .await
        .map_err(|e| timeout_or(Phase::Download, ctx.timeouts.certificate, e))?;
    tracing::info!(names = ?req.dns_names, "ACME certificate issued");
    // The order stays recorded until the certificate is stored
    // ([`order_stored`]): a process stopped in between downloads it again.
    let renewal_window = match renewal_info(account, &chain).await {
        Ok(window) => window,
        Err(error) => {
            tracing::warn!(%error, "no renewal information; renewing by lifetime");
            None
        }
    };
    Ok(Issued {
        cert: StoredCert {
            cert_chain_pem: chain,
            key_pem: key.serialize_pem(),
            ca_pem: None,
        },
        renewal_window,
    })
}

/// The profile to order: the request's or the issuer's, when the CA offers
/// it.
fn wanted_profile<'a>(
    issuer: &'a AcmeIssuer,
    req: &'a CertRequest,
    account: &Account,
) -> Option<&'a str> {
    let wanted = req.profile.as_deref().or(issuer.profile.as_deref());
    let profile = wanted.filter(|p| account.profiles().any(|m| m.name == *p));
    if let (Some(p), None) = (wanted, profile) {
        tracing::debug!(
            profile = p,
            "the ACME server does not offer this profile; ordering without"
        );
    }
    profile
}

/// Places a new order and records it, in a task of its own so that
/// stopping the caller between the two cannot happen.
async fn place_and_record(
    ctx: &AcmeContext,
    issuer: &AcmeIssuer,
    req: &CertRequest,
    profile: Option<&str>,
    account: &Account,
) -> Result<Order, Error> {
    let (store, account, req) = (ctx.store.clone(), account.clone(), req.clone());
    let recorded = PendingOrder {
        url: String::new(),
        server: issuer.server.clone(),
        names: req.dns_names.clone(),
        profile: profile.map(str::to_owned),
        key_pem: None,
    };
    let placing = async move {
        let order = new_order(&req, recorded.profile.as_deref(), &account).await?;
        // Recorded before anything else can happen to this order.
        let recorded = PendingOrder {
            url: order.url().to_owned(),
            ..recorded
        };
        pending::write(store.as_ref(), &req.secret, &recorded).await;
        tracing::info!(url = order.url(), names = ?req.dns_names, "ACME order created");
        Ok(order)
    };
    tokio::spawn(placing.in_current_span())
        .await
        .unwrap_or_else(|_| {
            Err(Error::Interrupted {
                phase: Phase::NewOrder,
            })
        })
}

/// Forgets the order recorded for `secret` once its certificate is stored.
pub async fn order_stored(store: &dyn crate::store::Store, secret: &crate::store::StoreKey) {
    pending::remove(store, secret).await;
}

/// Sends the CSR for `key`, recording the key with the order first, so a
/// process stopped after this point leaves a resumable order behind.
async fn finalize(
    store: &dyn crate::store::Store,
    issuer: &AcmeIssuer,
    req: &CertRequest,
    profile: Option<&str>,
    order: &mut Order,
    key: &rcgen::KeyPair,
) -> Result<(), Error> {
    let mut params = rcgen::CertificateParams::new(req.dns_names.clone()).map_err(|source| {
        Error::Key(crate::issuer::Error::Generate {
            what: "CSR",
            source,
        })
    })?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(key).map_err(|source| {
        Error::Key(crate::issuer::Error::Generate {
            what: "CSR",
            source,
        })
    })?;
    let recorded = PendingOrder {
        url: order.url().to_owned(),
        server: issuer.server.clone(),
        names: req.dns_names.clone(),
        profile: profile.map(str::to_owned),
        key_pem: Some(key.serialize_pem()),
    };
    pending::write(store, &req.secret, &recorded).await;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| Error::from_acme(Phase::Finalize, e))
}

/// An order recorded for a certificate that can still give it.
enum Resumed {
    /// Pending or ready: authorize (again) and finalize with a key of ours.
    Open(Order),
    /// Finalized by a process that stopped before storing the certificate,
    /// which recorded the key of its CSR: download and pair with that key.
    Finalized {
        /// The order.
        order: Order,
        /// The CSR's key.
        key: Box<rcgen::KeyPair>,
    },
}

/// The order recorded for this certificate, when the CA can still give the
/// certificate through it; otherwise the record is dropped and `None`
/// returned.
async fn resume(
    issuer: &AcmeIssuer,
    req: &CertRequest,
    profile: Option<&str>,
    account: &Account,
    store: &dyn crate::store::Store,
) -> Option<Resumed> {
    let recorded = pending::read(store, &req.secret).await?;
    if !recorded.serves(&issuer.server, &req.dns_names, profile) {
        pending::remove(store, &req.secret).await;
        return None;
    }
    match account.order(recorded.url.clone()).await {
        Ok(mut order) => {
            let status = order.state().status;
            let key = recorded
                .key_pem
                .as_deref()
                .and_then(|pem| rcgen::KeyPair::from_pem(pem).ok());
            match (status, key) {
                (OrderStatus::Pending | OrderStatus::Ready, _) => {
                    tracing::info!(url = order.url(), ?status, names = ?req.dns_names, "ACME order resumed");
                    return Some(Resumed::Open(order));
                }
                (OrderStatus::Processing | OrderStatus::Valid, Some(key)) => {
                    tracing::info!(url = order.url(), ?status, names = ?req.dns_names, "ACME order resumed after finalize; downloading its certificate");
                    return Some(Resumed::Finalized {
                        order,
                        key: Box::new(key),
                    });
                }
                _ => {
                    tracing::info!(url = %recorded.url, ?status, "the recorded ACME order cannot be resumed; ordering anew");
                }
            }
        }
        Err(error) => {
            tracing::info!(url = %recorded.url, %error, "the recorded ACME order is gone; ordering anew");
        }
    }
    pending::remove(store, &req.secret).await;
    None
}

/// Submits the order; `replaces` is sent when asked and dropped when the CA
/// refuses it (409 `alreadyReplaced`/conflict, or no ARI support).
async fn new_order(
    req: &CertRequest,
    profile: Option<&str>,
    account: &Account,
) -> Result<Order, Error> {
    let identifiers: Vec<Identifier> = req
        .dns_names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let base = || {
        let order = NewOrder::new(&identifiers);
        match profile {
            Some(p) => order.profile(p),
            None => order,
        }
    };
    let replaces = req.replaces.as_deref().and_then(ari::parse_cert_id);
    if let Some(id) = replaces {
        match account.new_order(&base().replaces(id)).await {
            Ok(order) => return Ok(order),
            Err(instant_acme::Error::Unsupported(_)) => {}
            Err(instant_acme::Error::Api(p))
                if p.status == Some(409)
                    || p.r#type.as_deref()
                        == Some("urn:ietf:params:acme:error:alreadyReplaced") =>
            {
                tracing::info!(problem = %p, "the CA refused `replaces`; ordering without it");
            }
            Err(e) => return Err(Error::from_acme(Phase::NewOrder, e)),
        }
    }
    account
        .new_order(&base())
        .await
        .map_err(|e| Error::from_acme(Phase::NewOrder, e))
}

/// Presents a challenge for every pending authorization, then tells the CA
/// to validate each (DNS records are first checked on the nameserver).
async fn authorize(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    order: &mut Order,
    presented: &mut Presented,
) -> Result<(), Error> {
    let acme = |e| Error::from_acme(Phase::Authorize, e);
    let mut to_validate: Vec<(String, ChallengeType)> = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(acme)?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => {
                withdraw_stale(issuer, ctx, &mut authz, &name).await;
                continue;
            }
            AuthorizationStatus::Pending => {}
            other => {
                return Err(Error::ChallengeFailed {
                    name,
                    detail: format!("authorization is {other:?}"),
                })
            }
        }
        let offered: Vec<ChallengeType> =
            authz.challenges.iter().map(|c| c.r#type.clone()).collect();
        let solver =
            choose_solver(&issuer.solvers, &name, &offered).ok_or_else(|| Error::NoSolver {
                name: name.clone(),
                offered: offered
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let kind = solver.kind.challenge_type();
        let challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| Error::NoSolver {
                name: name.clone(),
                offered: String::new(),
            })?;
        match &solver.kind {
            SolverKind::Http01 | SolverKind::TlsAlpn01 => {
                let Some(answer) = answer(&solver.kind, &challenge, &name) else {
                    continue;
                };
                let published = ctx.challenges.publish(&answer).await;
                presented
                    .published
                    .push(published.map_err(Error::Challenge)?);
            }
            SolverKind::Dns01(server) => {
                let record = dns::challenge_name(&name);
                let value = challenge.key_authorization().dns_value();
                let dns_err = |source| Error::Dns {
                    name: record.clone(),
                    source,
                };
                let zone = server.find_zone(&record).await.map_err(dns_err)?;
                server
                    .add_txt(&zone, &record, &value)
                    .await
                    .map_err(dns_err)?;
                presented.dns.push(DnsRecord {
                    server: server.clone(),
                    zone,
                    name: record,
                    value,
                });
            }
        }
        tracing::debug!(name = %name, challenge = ?kind, "challenge presented");
        to_validate.push((name, kind));
    }
    for r in &presented.dns {
        r.server
            .wait_visible(&r.name, &r.value, ctx.timeouts.dns_propagation)
            .await
            .map_err(|source| Error::Dns {
                name: r.name.clone(),
                source,
            })?;
    }
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(acme)?;
        let name = authz.identifier().to_string();
        let Some((_, kind)) = to_validate.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        if let Some(mut challenge) = authz.challenge(kind.clone()) {
            // A resumed order may have asked already: the CA refuses to be
            // asked twice, and validates what we present now.
            if challenge.status == ChallengeStatus::Pending {
                challenge.set_ready().await.map_err(acme)?;
            }
        }
    }
    Ok(())
}

/// What a replica answers for `challenge` of `name` with an HTTP-01 or
/// TLS-ALPN-01 solver (`None` for DNS-01, answered by a DNS server).
fn answer(kind: &SolverKind, challenge: &ChallengeHandle<'_>, name: &str) -> Option<Challenge> {
    let key_authorization = challenge.key_authorization().as_str().to_owned();
    match kind {
        SolverKind::Http01 => Some(Challenge::Http01 {
            token: challenge.token.clone(),
            key_authorization,
        }),
        SolverKind::TlsAlpn01 => Some(Challenge::TlsAlpn01 {
            domain: name.strip_prefix("*.").unwrap_or(name).to_owned(),
            key_authorization,
        }),
        SolverKind::Dns01(_) => None,
    }
}

/// An authorization already valid in an order being resumed: the process
/// that presented its challenge may have been stopped before withdrawing it
/// (a leader killed while the CA validated). Withdraws what that process
/// would have published, so nothing keeps answering a finished validation.
async fn withdraw_stale<'a>(
    issuer: &AcmeIssuer,
    ctx: &AcmeContext,
    authz: &'a mut AuthorizationHandle<'a>,
    name: &str,
) {
    let offered: Vec<ChallengeType> = authz.challenges.iter().map(|c| c.r#type.clone()).collect();
    let Some(solver) = choose_solver(&issuer.solvers, name, &offered) else {
        return;
    };
    let kind = solver.kind.challenge_type();
    if let Some(answer) = authz
        .challenge(kind)
        .and_then(|c| answer(&solver.kind, &c, name))
    {
        ctx.challenges.withdraw_stale(&answer).await;
    }
}

/// Waits until the CA has validated every authorization; on failure, finds
/// the challenge error to report.
async fn wait_ready(ctx: &AcmeContext, order: &mut Order) -> Result<(), Error> {
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ctx.timeouts.validation);
    let status = order.poll_ready(&policy).await;
    match status {
        Ok(OrderStatus::Ready) => Ok(()),
        Ok(_) | Err(instant_acme::Error::Api(_)) => Err(challenge_error(order, status.err()).await),
        Err(e) => Err(timeout_or(Phase::Validate, ctx.timeouts.validation, e)),
    }
}

/// The most telling error of an order that became invalid: a challenge's
/// own error when the CA gave one.
async fn challenge_error(order: &mut Order, fallback: Option<instant_acme::Error>) -> Error {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        if authz.refresh().await.is_err() {
            continue;
        }
        if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
            return Error::ChallengeFailed {
                name,
                detail: problem.to_string(),
            };
        }
    }
    match fallback {
        Some(e) => Error::from_acme(Phase::Validate, e),
        None => Error::ChallengeFailed {
            name: String::from("order"),
            detail: "the order became invalid".into(),
        },
    }
}

/// Maps a polling failure: instant-acme's timeout becomes ours with the
/// bound we set.
fn timeout_or(phase: Phase, bound: Duration, e: instant_acme::Error) -> Error {
    match e {
        instant_acme::Error::Timeout(_) => Error::Timeout {
            phase,
            waited: bound,
        },
        other => Error::from_acme(phase, other),
    }
}

/// The renewal window the CA suggests for the leaf of `chain_pem` (RFC 9773
/// §4.2); `None` when the CA does not offer ARI.
async fn renewal_info(account: &Account, chain_pem: &str) -> Result<Option<RenewalWindow>, Error> {
    let Some(id) = ari::cert_id(chain_pem).and_then(|id| ari::parse_cert_id(&id)) else {
        return Ok(None);
    };
    match account.renewal_info(&id).await {
        Ok((info, _next_poll)) => Ok(Some(RenewalWindow {
            start: SystemTime::from(info.suggested_window.start),
            end: SystemTime::from(info.suggested_window.end),
        })),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(Error::from_acme(Phase::RenewalInfo, e)),
    }
}
