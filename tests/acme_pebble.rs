//! The ACME issuer against real servers: Pebble (Debian `pebble`) validates
//! HTTP-01 and TLS-ALPN-01 against the portcullis data plane (its sockets,
//! proxy and TLS front on loopback with a port offset) and DNS-01 through a
//! real BIND 9 updated with TSIG; every issued chain is served by the
//! gateway and verified by curl against Pebble's root. The real binary's
//! manager drives renewals: key rotation (or not), Pebble down during a
//! renewal and back (the manager's own backoff retries), `kill -9` mid
//! order. Faults: half the nonces rejected, Pebble restarted (forgetting
//! the account). What Debian's Pebble lacks (ACME Renewal Information,
//! chosen rate limits) is exercised against a double (`acme::ari_double`)
//! with the real instant-acme client and the real manager. A manager
//! stopped mid-order (a leader losing its Lease) leaves the order recorded,
//! and the next one resumes it.

mod acme;
// acme/ picks ports through `crate::ports`.
#[path = "support/ports.rs"]
mod ports;

use acme::ari_double::{Behaviour, RateLimit};
use acme::bind::{Bind, ZONE};
use acme::double_client::{Direct, Managed};
use acme::leader::{Leader, Stalled};
use acme::rig::{request, walk, BinaryRig, Rig};
use anyhow::{ensure, Context, Result};
use portcullis::issuer::challenges::LocalPublisher;
use portcullis::store::Store;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_is_answered_by_the_gateway_and_other_tokens_reach_user_routes() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("http01: {}")?;
    let ctx = rig.context();
    let host = format!("web.{ZONE}");
    let issued = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .with_context(|| format!("pebble log:\n{}", rig.pebble.log()))?;
    ensure!(rig.plane()?.board.is_empty(), "challenge left on the board");
    ensure!(acme::openssl_sans(&issued.cert.cert_chain_pem)?.contains(&host));
    rig.serve_and_verify(&issued.cert, &host).await?;
    // A token nobody is waiting for is the user's business.
    let body = acme::curl_http(&host, 80 + rig.offset, "/.well-known/acme-challenge/nope")?;
    ensure!(body == "user route\n", "unknown token answered {body:?}");

    // The account key was kept (0600) and is reused by a fresh context.
    let key_files: Vec<_> = walk(&rig.state.path().join("acme"))?;
    ensure!(key_files.len() == 1, "account keys: {key_files:?}");
    let mode = std::fs::metadata(&key_files[0])?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "account key mode {mode:o}");
    let before = std::fs::read(&key_files[0])?;
    let again =
        portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&host])?).await?;
    ensure!(
        std::fs::read(&key_files[0])? == before,
        "account key replaced"
    );
    ensure!(
        again.cert.key_pem != issued.cert.key_pem,
        "certificate key reused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_is_answered_by_the_tls_front() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("tlsAlpn01: {}")?;
    let host = format!("alpn.{ZONE}");
    let issued = portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&host])?)
        .await
        .with_context(|| format!("pebble log:\n{}", rig.pebble.log()))?;
    ensure!(rig.plane()?.board.is_empty(), "challenge left on the board");
    rig.serve_and_verify(&issued.cert, &host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_bind_gets_a_wildcard_certificate_and_cleans_up() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let solver = rig.dns01_solver();
    let issuer = rig.issuer(&solver)?;
    let wildcard = format!("*.wild.{ZONE}");
    let base = format!("wild.{ZONE}");
    let issued =
        portcullis::issuer::acme::issue(&issuer, &rig.context(), &request(&[&wildcard, &base])?)
            .await
            .with_context(|| {
                format!(
                    "pebble log:\n{}\nnamed log:\n{}",
                    rig.pebble.log(),
                    rig.bind.log()
                )
            })?;
    let sans = acme::openssl_sans(&issued.cert.cert_chain_pem)?;
    ensure!(
        sans.contains(&wildcard) && sans.contains(&base),
        "SANs: {sans}"
    );
    rig.serve_and_verify(&issued.cert, &format!("anything.wild.{ZONE}"))
        .await?;
    // Both TXT values (wildcard and base share the name) were deleted.
    let server = portcullis::issuer::dns::Rfc2136 {
        nameserver: rig.bind.addr,
        tsig: None,
    };
    let left = server
        .txt_values(&format!("_acme-challenge.wild.{ZONE}"))
        .await?;
    ensure!(left.is_empty(), "TXT records left: {left:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_update_with_a_wrong_tsig_secret_is_refused_by_bind() -> Result<()> {
    let bind = Bind::start().await?;
    let mut key = bind.tsig_key();
    key.secret = b"not the secret at all, not at all".to_vec();
    let server = portcullis::issuer::dns::Rfc2136 {
        nameserver: bind.addr,
        tsig: Some(key),
    };
    let name = format!("_acme-challenge.x.{ZONE}");
    let err = server
        .add_txt(ZONE, &name, "value")
        .await
        .expect_err("BIND must refuse a bad signature");
    ensure!(err.to_string().contains("NOTAUTH"), "{err}");
    let good = portcullis::issuer::dns::Rfc2136 {
        nameserver: bind.addr,
        tsig: Some(bind.tsig_key()),
    };
    good.add_txt(ZONE, &name, "value").await?;
    ensure!(good.txt_values(&name).await? == vec!["value".to_string()]);
    good.remove_txt(ZONE, &name, "value").await?;
    ensure!(good.txt_values(&name).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_nonces_rejected_still_issues() -> Result<()> {
    let mut rig = Rig::start(50).await?;
    let issuer = rig.issuer("http01: {}")?;
    let host = format!("nonce.{ZONE}");
    let ctx = rig.context();
    let mut last = None;
    // instant-acme tries a request three times on a bad nonce, so with half
    // rejected one request in eight fails and an order of about ten
    // requests often loses one: the caller's retry (the manager's backoff)
    // is part of the contract, as in the manager, with one cached account,
    // and each retry resumes the recorded order where it stopped.
    for _ in 0..10 {
        match portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?).await {
            Ok(issued) => return rig.serve_and_verify(&issued.cert, &host).await,
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!("no issuance in 10 attempts: {last:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_down_fails_the_order_and_its_return_registers_the_account_again() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let issuer = rig.issuer("http01: {}")?;
    let ctx = rig.context();
    let host = format!("restart.{ZONE}");
    portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?).await?;
    rig.pebble.stop().await?;
    let err = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .expect_err("Pebble is down");
    ensure!(err.reason() == "AcmeError", "{err:?}");
    // Pebble comes back without any memory of the account: the next order
    // registers the stored key again and succeeds at once.
    rig.pebble.restart().await?;
    let issued = portcullis::issuer::acme::issue(&issuer, &ctx, &request(&[&host])?)
        .await
        .context("first order after Pebble returned")?;
    rig.serve_and_verify(&issued.cert, &host).await
}

// ---- The real binary: the issuer's manager drives the orders ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_obtains_and_serves_a_pebble_certificate() -> Result<()> {
    let b = BinaryRig::start(&format!("bin.{ZONE}"), "").await?;
    b.wait_verified(Duration::from_secs(60)).await?;
    let cert = b.certificate().await?;
    ensure!(cert["ready"] == true, "{cert}");
    // The ACME client's own series: requests by endpoint and status, and
    // the order counted valid.
    let metrics = b.gw.metrics().await?;
    let sample = |prefix: &str, labels: &[&str]| {
        metrics.lines().any(|l| {
            l.starts_with(prefix)
                && labels.iter().all(|x| l.contains(x))
                && !l.ends_with(" 0")
                && !l.ends_with(" 0.0")
        })
    };
    ensure!(
        sample(
            "portcullis_acme_requests_total{",
            &["endpoint=\"newOrder\"", "status=\"201\""]
        ),
        "no newOrder request counted:\n{metrics}"
    );
    ensure!(
        sample("portcullis_acme_orders_total{", &["outcome=\"valid\""]),
        "no valid order counted:\n{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_killed_mid_order_resumes_the_order_after_restart() -> Result<()> {
    let mut b = BinaryRig::start(&format!("crash.{ZONE}"), "").await?;
    // Killed as soon as the order is recorded (the CA created it).
    let pending = b.gw.state.join("acme/orders/default/gw-https-tls.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !pending.exists() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no order: {}",
            b.gw.log()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    b.gw.kill9().await?;
    b.gw.restart().await?;
    b.wait_verified(Duration::from_secs(60)).await?;
    ensure!(
        !pending.exists(),
        "the pending order outlived the certificate"
    );
    let log = b.gw.log();
    let orders = b.rig.pebble.log().matches("Added order").count();
    if log.contains("ACME order resumed") {
        eprintln!("the restart resumed the order");
        ensure!(
            orders == 1,
            "{orders} orders for one certificate\n{}",
            b.logs()
        );
    } else {
        // The killed process had already asked for validation, which then
        // failed with nobody answering: that order is invalid, and only
        // then is a second one placed.
        eprintln!("the order could not be resumed");
        ensure!(
            log.contains("cannot be resumed") && log.contains("Invalid") && orders == 2,
            "the restart neither resumed the order nor found it unusable\n{}",
            b.logs()
        );
    }
    Ok(())
}

// ---- Leaders: the manager stopped mid-order, and the next one ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_manager_leaves_its_order_recorded_and_the_next_leader_resumes_it() -> Result<()>
{
    let mut rig = Rig::start(0).await?;
    let host = format!("leader.{ZONE}");
    let secret = portcullis::store::StoreKey::new("default", "gw-https-tls")?;
    let store = portcullis::store::DirStore::new(rig.state.path());

    // The first leader loses the Lease while presenting its challenge.
    let stalled = Arc::new(Stalled::default());
    let first = Leader::start(&rig, &host, stalled.clone()).await?;
    tokio::time::timeout(Duration::from_secs(30), stalled.reached.notified())
        .await
        .with_context(|| format!("no challenge presented\n{}", rig.pebble.log()))?;
    ensure!(
        store.pending_order(&secret).await?.is_some(),
        "the order was not recorded before its challenges"
    );
    first.stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), first.run)
        .await
        .context("the run did not stop at once")??;
    ensure!(
        store.pending_order(&secret).await?.is_some(),
        "stopping dropped the order's record"
    );
    ensure!(store.get_cert(&secret).await?.is_none());

    // The next leader (a fresh manager over the same Store) resumes it,
    // with the same account, and answers on the data plane's board.
    let board = rig.plane()?.board.clone();
    let next = Leader::start(&rig, &host, Arc::new(LocalPublisher::new(board))).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let issued = loop {
        if let Some(cert) = store.get_cert(&secret).await? {
            break cert;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "never issued: {:?}\n{}",
            next.manager.certificates(),
            rig.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Forgetting the order follows storing the certificate: stopping the
    // run before it is forgotten would leave it recorded (for the next run).
    order_forgotten(&store, &secret).await?;
    next.stop.cancel();
    let orders = rig.pebble.log().matches("Added order").count();
    ensure!(orders == 1, "{orders} orders for one certificate");
    let accounts = walk(&rig.state.path().join("acme"))?;
    ensure!(accounts.len() == 1, "account keys: {accounts:?}");
    ensure!(rig.plane()?.board.is_empty(), "challenge left on the board");
    rig.serve_and_verify(&issued, &host).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_finalized_by_a_stopped_leader_is_downloaded_by_the_next() -> Result<()> {
    let mut rig = Rig::start(0).await?;
    let host = format!("finalized.{ZONE}");
    let secret = portcullis::store::StoreKey::new("default", "gw-https-tls")?;
    let store = portcullis::store::DirStore::new(rig.state.path());
    let board = rig.plane()?.board.clone();

    // The first leader has its order finalized and issued, then dies before
    // the certificate is kept.
    let loses = Arc::new(acme::leader::LosesCertificates {
        dir: portcullis::store::DirStore::new(rig.state.path()),
        lost: Default::default(),
    });
    let first = Leader::start_with_store(
        &rig,
        &host,
        Arc::new(LocalPublisher::new(board.clone())),
        loses.clone(),
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(60), loses.lost.notified())
        .await
        .with_context(|| format!("never issued\n{}", rig.pebble.log()))?;
    first.stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), first.run)
        .await
        .context("the run did not stop at once")??;
    let recorded = store
        .pending_order(&secret)
        .await?
        .context("the finalized order was forgotten before its certificate was kept")?;
    ensure!(recorded.key_pem.is_some(), "the CSR's key was not recorded");
    ensure!(store.get_cert(&secret).await?.is_none());

    // The next leader downloads the certificate of that order and pairs it
    // with the recorded key: no second order, nothing abandoned.
    let next = Leader::start(&rig, &host, Arc::new(LocalPublisher::new(board))).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let issued = loop {
        if let Some(cert) = store.get_cert(&secret).await? {
            break cert;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "never stored: {:?}\n{}",
            next.manager.certificates(),
            rig.pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Forgetting the order follows storing the certificate: stopping the
    // run before it is forgotten would leave it recorded (for the next run).
    order_forgotten(&store, &secret).await?;
    next.stop.cancel();
    let orders = rig.pebble.log().matches("Added order").count();
    ensure!(orders == 1, "{orders} orders for one certificate");
    rig.serve_and_verify(&issued, &host).await
}

/// Waits until the order of `secret` is no longer recorded: the manager
/// forgets it right after storing the certificate, so a test that saw the
/// certificate may look in between.
async fn order_forgotten(
    store: &portcullis::store::DirStore,
    secret: &portcullis::store::StoreKey,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.pending_order(secret).await?.is_some() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the pending order outlived the stored certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_keeps_serving_while_pebble_is_down_and_renews_by_itself_after() -> Result<()>
{
    // Certificates of 20 minutes: the backoff base is a hundredth of the
    // lifetime (12 s; with Pebble's default five years it is clamped to
    // 60 s), so the first retry comes 6 to 12 s after the failure.
    let lifetime = Duration::from_secs(1200);
    let mut b = BinaryRig::start_with(&format!("down.{ZONE}"), "", Some(lifetime)).await?;
    b.wait_verified(Duration::from_secs(60)).await?;
    let cert = b.certificate().await?;
    let held = cert["notAfter"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(cert["notBefore"].as_u64().unwrap_or(0));
    ensure!(
        held <= lifetime.as_secs(),
        "Pebble issued for {held} s: {cert}"
    );
    let old = b.served().await?;
    let old_root_path = b.rig.state.path().join("old-root.pem");
    std::fs::write(&old_root_path, b.rig.pebble.issuing_root().await?)?;

    // A renewal becomes due (the key algorithm changes) while Pebble is
    // down: the attempt fails and /status says so, with the attempts and a
    // next attempt in the future.
    b.rig.pebble.stop().await?;
    b.configure("portcullis.dev/private-key-algorithm: ecdsa-p384")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let cert = b.certificate().await?;
        if cert["lastError"].is_string() && cert["nextAttempt"].is_u64() {
            break cert;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "failure never reported: {cert}\n{}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let next_attempt = failed["nextAttempt"].as_u64().unwrap_or(0);
    ensure!(failed["attempts"].as_u64() >= Some(1), "{failed}");
    ensure!(failed["status"] == "Waiting", "{failed}");
    ensure!(
        next_attempt > unix_now(),
        "next attempt not ahead: {failed}"
    );
    // The old certificate is still served and still verifies.
    ensure!(b.served().await? == old, "the served certificate changed");
    let body = acme::curl_verified(&old_root_path, &b.host, 443 + b.gw.offset)?;
    ensure!(body == "user route\n");

    // Pebble returns (with a new root); nothing else changes: the
    // manager's own retry, when its backoff ends, renews.
    b.rig.pebble.restart().await?;
    let new = b.wait_replaced(&old, Duration::from_secs(120)).await?;
    ensure!(
        unix_now() >= next_attempt,
        "renewed before the announced next attempt"
    );
    ensure!(new.spki != old.spki, "renewal kept the P-256 key");
    let cert = b.certificate().await?;
    ensure!(
        cert["ready"] == true && cert["attempts"] == 0 && cert["lastError"].is_null(),
        "{cert}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_binary_renewal_keeps_the_key_with_rotation_never_and_rotates_by_default(
) -> Result<()> {
    let never = "portcullis.dev/private-key-rotation: Never";
    let b = BinaryRig::start(
        &format!("rotate.{ZONE}"),
        &format!("{never}, portcullis.dev/duration: 2000h"),
    )
    .await?;
    b.wait_verified(Duration::from_secs(60)).await?;
    let first = b.served().await?;
    // A renewal (the requested lifetime changes) keeps the key: same
    // SubjectPublicKeyInfo in the new certificate.
    b.configure(&format!("{never}, portcullis.dev/duration: 2001h"))?;
    let second = b.wait_replaced(&first, Duration::from_secs(60)).await?;
    ensure!(
        second.spki == first.spki,
        "rotation Never made a new key\n{}",
        b.logs()
    );
    // Without the annotation (Always, the default) the next renewal makes
    // a new key.
    b.configure("portcullis.dev/duration: 2002h")?;
    let third = b.wait_replaced(&second, Duration::from_secs(60)).await?;
    ensure!(third.spki != second.spki, "default rotation kept the key");
    Ok(())
}

// ---- What Debian's Pebble lacks, against the double ----

fn hours_from_now(from: u64, to: u64) -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    let h = |n: u64| Duration::from_secs(n * 3600);
    (now + h(from), now + h(to))
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test]
async fn ari_window_comes_back_with_the_certificate_and_profile_is_ordered() -> Result<()> {
    let window = hours_from_now(24 * 30, 24 * 31);
    let d = Direct::start(Behaviour::window(window)).await?;
    let issued = d.issue(&request(&["a.test"])?).await?;
    let got = issued.renewal_window.context("window returned")?;
    ensure!(
        secs(got.start) == secs(window.0) && secs(got.end) == secs(window.1),
        "{got:?}"
    );
    let seen = d.double.seen();
    let id = portcullis::issuer::acme::cert_id(&issued.cert.cert_chain_pem).context("cert id")?;
    ensure!(seen.renewal_info_ids == vec![id], "{seen:?}");
    ensure!(
        seen.order_profiles == vec![Some("shortlived".to_string())],
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ari_window_in_the_past_is_reported_for_an_existing_certificate() -> Result<()> {
    let d = Direct::start(Behaviour::window(hours_from_now(24 * 30, 24 * 31))).await?;
    let issued = d.issue(&request(&["a.test"])?).await?;
    // The CA moves the window into the past: a revocation signal.
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    d.double.set_window((now - 2 * hour, now - hour));
    let window =
        portcullis::issuer::acme::renewal_window(&d.issuer, &d.ctx, &issued.cert.cert_chain_pem)
            .await?
            .context("window")?;
    ensure!(window.end < SystemTime::now(), "{window:?}");
    Ok(())
}

/// Orders once, then again with `replaces` naming the first certificate;
/// returns the `replaces` of every newOrder the CA saw, and the id.
async fn order_replacing(conflict_on_replaces: bool) -> Result<(Vec<Option<String>>, String)> {
    let d = Direct::start(Behaviour {
        conflict_on_replaces,
        ..Behaviour::window(hours_from_now(1, 2))
    })
    .await?;
    let first = d.issue(&request(&["a.test"])?).await?;
    let id = portcullis::issuer::acme::cert_id(&first.cert.cert_chain_pem).context("id")?;
    let mut req = request(&["a.test"])?;
    req.replaces = Some(id.clone());
    d.issue(&req).await?;
    Ok((d.double.seen().order_replaces, id))
}

#[tokio::test]
async fn replaces_is_sent_and_dropped_when_the_ca_answers_409() -> Result<()> {
    let (seen, id) = order_replacing(true).await?;
    ensure!(
        seen == vec![None, Some(id), None],
        "newOrder replaces: {seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn replaces_accepted_by_the_ca_is_ordered_once() -> Result<()> {
    let (seen, id) = order_replacing(false).await?;
    ensure!(seen == vec![None, Some(id)], "newOrder replaces: {seen:?}");
    Ok(())
}

#[tokio::test]
async fn rate_limited_new_order_on_a_cached_account_carries_only_its_own_retry_after() -> Result<()>
{
    let mut behaviour = Behaviour::window(hours_from_now(24 * 30, 24 * 31));
    let limit = |status, retry_after: Option<&str>| RateLimit {
        status,
        retry_after: retry_after.map(str::to_owned),
    };
    behaviour.rate_limited.insert(2, limit(429, Some("3600")));
    // A rateLimited problem without a 429 status or header: the only
    // Retry-After it could carry is a stale one from order 2.
    behaviour.rate_limited.insert(3, limit(403, None));
    let d = Direct::start(behaviour).await?;
    let req = request(&["a.test"])?;
    d.issue(&req).await.context("first order")?;

    let before = SystemTime::now();
    let err = d
        .issue(&req)
        .await
        .err()
        .context("second order succeeded")?;
    ensure!(err.reason() == "RateLimited", "{err:?}");
    let at = err.retry_after().context("no Retry-After carried")?;
    let expected = secs(before) + 3600;
    ensure!(
        (expected..=expected + 5).contains(&secs(at)),
        "Retry-After {} for {expected}",
        secs(at)
    );

    let err = d.issue(&req).await.err().context("third order succeeded")?;
    ensure!(err.reason() == "RateLimited", "{err:?}");
    ensure!(err.retry_after().is_none(), "stale Retry-After: {err:?}");

    d.issue(&req).await.context("fourth order")?;
    let seen = d.double.seen();
    ensure!(
        seen.new_orders() == 4 && seen.new_accounts == 1,
        "one cached account for every order: {seen:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_waits_out_a_rate_limit_retry_after_and_a_fixed_cause_orders_again() -> Result<()> {
    let mut behaviour = Behaviour::window(hours_from_now(24 * 30, 24 * 31));
    behaviour.rate_limited.insert(
        2,
        RateLimit {
            status: 429,
            retry_after: Some("3600".into()),
        },
    );
    let m = Managed::start(behaviour).await?;
    m.configure("")?;
    let issued = m.wait_for("ready", |c| c.ready).await?;

    // A renewal becomes due (another key algorithm); the CA rate-limits it
    // and asks for an hour, longer than the backoff (at most a minute).
    let before = secs(SystemTime::now());
    m.configure("portcullis.dev/private-key-algorithm: ecdsa-p384")?;
    let waiting = m
        .wait_for("rate limited", |c| c.last_error.is_some())
        .await?;
    ensure!(
        waiting.status == "Waiting" && waiting.attempts == 1,
        "{waiting:?}"
    );
    ensure!(
        waiting
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rate limited")),
        "{waiting:?}"
    );
    let next = waiting.next_attempt.context("next attempt")?;
    ensure!(
        next >= before + 3600,
        "next attempt {next} before Retry-After"
    );
    ensure!(
        waiting.serial == issued.serial,
        "the held certificate stays: {waiting:?}"
    );

    // Another reload of the same configuration does not order before then.
    m.configure("portcullis.dev/private-key-algorithm: ecdsa-p384")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = m.double.seen();
    ensure!(
        seen.new_orders() == 2,
        "ordered during Retry-After: {seen:?}"
    );
    ensure!(m.certificate().and_then(|c| c.next_attempt) == Some(next));

    // A configuration change is a fixed cause: it orders at once, and the
    // order succeeds on the same cached account.
    m.configure("portcullis.dev/private-key-algorithm: rsa-2048")?;
    let done = m
        .wait_for("renewed", |c| c.ready && c.attempts == 0)
        .await?;
    ensure!(done.last_error.is_none(), "{done:?}");
    let seen = m.double.seen();
    ensure!(seen.new_orders() == 3 && seen.new_accounts == 1, "{seen:?}");
    Ok(())
}
