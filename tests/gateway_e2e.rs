//! End-to-end tests of `portcullis serve` with real peers on loopback: the
//! binary itself, echo backends, curl, `openssl s_client` and hyper/rustls
//! clients. Each test starts its own gateway with a random port offset.
//!
//! TLS behaviour (SNI, ALPN, versions, certificate choice), HTTP proxying
//! (forwarded headers, h2 to h1, large bodies, 421), weighted backends, hot
//! reload (certificates, routes under load, established connections), bad
//! input (broken YAML, bad certificates, invalid regex, conflicts, editor
//! files, hostile bytes) and graceful shutdown.

#[path = "e2e/cases/bad_input.rs"]
mod bad_input;
mod e2e;
#[path = "e2e/cases/proxy.rs"]
mod proxy;
#[path = "e2e/cases/reload.rs"]
mod reload;
#[path = "e2e/cases/tls.rs"]
mod tls;

use e2e::backend::Backend;
use e2e::certs::{cn_and_serial, Ca, KeyKind, LeafSpec};
use e2e::clients::{
    curl, echo, http_get, pooled_client, pooled_get, run_with_input, s_client, served_subject,
    tls_config, tls_get,
};
use e2e::gateway::{check, find_object, has_condition, listener, Gateway};
use e2e::manifests::{
    backend_ref, docs, gateway, http_listener, http_route, https_listener, service, service_only,
    static_ref, static_response, tls_secret, tls_secret_raw, CLASS,
};
use e2e::{eventually, fnv1a, pattern};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn resolve(host: &str, port: u16) -> String {
    format!("{host}:{port}:127.0.0.1")
}
