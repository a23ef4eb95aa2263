//! The local CA checked by a real, independent verifier: OpenSSL verifies an
//! issued chain against the exported root and shows the requested name, and
//! a pair stored with `DirStore` comes back with a key that matches, with
//! the root as its `ca.crt`.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{ensure, Context, Result};
use portcullis::issuer::{LocalCa, DEFAULT_LEAF_VALIDITY};
use portcullis::store::{CertMeta, DirStore, Store, StoreKey};

/// Runs `openssl` with `args`, failing with its output unless it succeeds.
fn openssl(args: &[&str]) -> Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (is it installed?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "openssl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("temp path is UTF-8")
}

#[tokio::test]
async fn openssl_verifies_local_ca_leaf_for_localhost() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = LocalCa::load_or_create(&DirStore::new(dir.path()), SystemTime::now()).await?;
    let leaf = ca.issue(
        &["localhost".to_string()],
        DEFAULT_LEAF_VALIDITY,
        SystemTime::now(),
    )?;

    let root = dir.path().join("root.pem");
    std::fs::write(&root, ca.root_pem())?;
    // The leaf alone: openssl must build the chain from the CA file.
    let leaf_only = leaf
        .cert_chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .context("chain has a leaf")?;
    let leaf_pem = dir.path().join("leaf.pem");
    std::fs::write(&leaf_pem, leaf_only)?;

    let verified = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "localhost",
        "-CAfile",
        path_str(&root)?,
        path_str(&leaf_pem)?,
    ])?;
    ensure!(verified.contains(": OK"), "openssl verify said: {verified}");

    let wrong_name = openssl(&[
        "verify",
        "-verify_hostname",
        "other.example",
        "-CAfile",
        path_str(&root)?,
        path_str(&leaf_pem)?,
    ]);
    ensure!(wrong_name.is_err(), "verified for a name it does not hold");

    let san = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        path_str(&leaf_pem)?,
    ])?;
    ensure!(san.contains("DNS:localhost"), "subjectAltName: {san}");
    Ok(())
}

#[tokio::test]
async fn stored_pair_has_matching_key_for_openssl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = DirStore::new(dir.path());
    let ca = LocalCa::load_or_create(&store, SystemTime::now()).await?;
    let leaf = ca.issue(
        &["localhost".to_string()],
        DEFAULT_LEAF_VALIDITY,
        SystemTime::now(),
    )?;
    let key = StoreKey::new("default", "gateway-https-tls")?;
    let meta = CertMeta {
        issuer_kind: "local-ca".into(),
        issuer_name: "local-ca".into(),
        dns_names: vec!["localhost".into()],
        not_after: None,
        renewal_time: None,
    };
    store.put_cert(&key, &leaf, &meta).await?;
    ensure!(
        store.get_cert(&key).await?.as_ref() == Some(&leaf),
        "roundtrip"
    );

    let entry = dir.path().join("secrets/default/gateway-https-tls");
    let cert_pub = openssl(&[
        "x509",
        "-noout",
        "-pubkey",
        "-in",
        path_str(&entry.join("tls.crt"))?,
    ])?;
    let key_pub = openssl(&["pkey", "-pubout", "-in", path_str(&entry.join("tls.key"))?])?;
    ensure!(
        cert_pub == key_pub,
        "tls.key does not match tls.crt:\n{cert_pub}\n{key_pub}"
    );
    // `ca.crt` beside the pair is the root, and verifies the chain.
    let verified = openssl(&[
        "verify",
        "-CAfile",
        path_str(&entry.join("ca.crt"))?,
        path_str(&entry.join("tls.crt"))?,
    ])?;
    ensure!(verified.contains(": OK"), "openssl verify said: {verified}");

    // The CA files in the state dir are what `portcullis ca export` prints.
    let exported = LocalCa::read_root_pem(&store).await?.context("CA exists")?;
    ensure!(exported == ca.root_pem(), "exported root differs");
    Ok(())
}

/// `portcullis serve` creates the local CA on first start and `portcullis ca
/// export` prints exactly its root; before that, export fails clearly.
#[test]
fn serve_creates_the_local_ca_and_ca_export_prints_its_root() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&config).expect("config dir");

    let before = Command::new(bin)
        .args(["ca", "export", "--state"])
        .arg(&state)
        .output()
        .expect("run ca export");
    assert!(!before.status.success(), "export without a CA must fail");
    assert!(String::from_utf8_lossy(&before.stderr).contains("no local CA"));

    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(&state)
        .args([
            "--admin-addr",
            &admin.to_string(),
            "--listen-address",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn serve");
    let root_file = state.join("local-ca").join("ca.crt");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !root_file.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let on_disk = std::fs::read_to_string(&root_file).expect("serve wrote the CA root");

    let after = Command::new(bin)
        .args(["ca", "export", "--state"])
        .arg(&state)
        .output()
        .expect("run ca export");
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    let printed = String::from_utf8(after.stdout).expect("utf-8");
    assert!(
        printed.starts_with("-----BEGIN CERTIFICATE-----"),
        "{printed}"
    );
    assert_eq!(printed, on_disk);
}
