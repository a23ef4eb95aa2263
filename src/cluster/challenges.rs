//! ACME challenges answered by every replica: the leader publishes each
//! challenge as a Secret in the controller namespace ([`KubePublisher`]),
//! and every replica, the leader included, watches those Secrets and puts
//! them on its own challenge board ([`watch_challenges`]), which its proxy
//! (HTTP-01) and TLS front (TLS-ALPN-01) answer from. Whichever replica the
//! CA's validation reaches behind the Service answers it.
//!
//! The leader tells the CA to validate only once the Secret has come back
//! through its own watch: the API server has it, and every watch of it is
//! being told. Withdrawing deletes the Secret. A Secret carries the token
//! or domain and the key authorization; each replica builds the
//! TLS-ALPN-01 certificate itself, so no key crosses the API.

use super::store::{MANAGED_LABEL, ROLE_LABEL};
use crate::dataplane::challenges::{ChallengeBoard, Published};
use crate::issuer::challenges::{
    tls_alpn01_challenge, Challenge, ChallengePublisher, Error, PublishedChallenge,
};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The role label value of challenge Secrets.
pub const ROLE: &str = "acme-challenge";
/// The field manager of challenge Secrets.
const FIELD_MANAGER: &str = "portcullis.dev/challenges";
/// How long the leader waits for its own watch to see a challenge.
const CONFIRM: Duration = Duration::from_secs(10);

/// The Secret name of a challenge: a hash of what it answers for.
pub fn secret_name(challenge: &Challenge) -> String {
    let what = match challenge {
        Challenge::Http01 { token, .. } => format!("http-01/{token}"),
        Challenge::TlsAlpn01 { domain, .. } => {
            format!(
                "tls-alpn-01/{}",
                domain.trim_end_matches('.').to_ascii_lowercase()
            )
        }
    };
    let hex = crate::hashing::short_digest(what.as_bytes());
    format!("portcullis-challenge-{hex}")
}

/// The Secret body of a challenge.
pub fn secret_body(namespace: &str, challenge: &Challenge) -> serde_json::Value {
    let (kind, data) = match challenge {
        Challenge::Http01 {
            token,
            key_authorization,
        } => (
            "http-01",
            json!({"token": token, "keyAuthorization": key_authorization}),
        ),
        Challenge::TlsAlpn01 {
            domain,
            key_authorization,
        } => (
            "tls-alpn-01",
            json!({"domain": domain, "keyAuthorization": key_authorization}),
        ),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(challenge),
            "namespace": namespace,
            "labels": {MANAGED_LABEL: "true", ROLE_LABEL: ROLE, "portcullis.dev/challenge": kind},
        },
        "type": "Opaque",
        "stringData": data,
    })
}

/// The challenge a watched Secret carries, if it is a well-formed one.
pub fn challenge_of(secret: &Secret) -> Option<Challenge> {
    let kind = secret
        .metadata
        .labels
        .as_ref()?
        .get("portcullis.dev/challenge")?;
    let data = secret.data.as_ref()?;
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|t| !t.is_empty())
    };
    let key_authorization = text("keyAuthorization")?;
    match kind.as_str() {
        "http-01" => Some(Challenge::Http01 {
            token: text("token")?,
            key_authorization,
        }),
        "tls-alpn-01" => Some(Challenge::TlsAlpn01 {
            domain: text("domain")?,
            key_authorization,
        }),
        _ => None,
    }
}

/// Whether `board` answers `challenge` now.
fn answers(board: &ChallengeBoard, challenge: &Challenge) -> bool {
    match challenge {
        Challenge::Http01 {
            token,
            key_authorization,
        } => board
            .http01(token)
            .is_some_and(|k| &*k == key_authorization.as_str()),
        Challenge::TlsAlpn01 { domain, .. } => board.tls_alpn01(domain).is_some(),
    }
}

/// The leader's publisher.
pub struct KubePublisher {
    client: kube::Client,
    namespace: String,
    board: Arc<ChallengeBoard>,
}

impl std::fmt::Debug for KubePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePublisher")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubePublisher {
    /// A publisher writing challenge Secrets to `namespace`; `board` is
    /// this replica's own, which [`watch_challenges`] fills.
    pub fn new(client: kube::Client, namespace: &str, board: Arc<ChallengeBoard>) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            board,
        }
    }
}

#[async_trait::async_trait]
impl ChallengePublisher for KubePublisher {
    async fn publish(&self, challenge: &Challenge) -> Result<Box<dyn PublishedChallenge>, Error> {
        let name = secret_name(challenge);
        let secret = format!("{}/{name}", self.namespace);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret_body(&self.namespace, challenge)),
        )
        .await
        .map_err(|e| Error::Api {
            secret: secret.clone(),
            source: Box::new(e),
        })?;
        let withdraw = WithdrawSecret {
            api: api.clone(),
            name: name.clone(),
        };
        let deadline = tokio::time::Instant::now() + CONFIRM;
        while !answers(&self.board, challenge) {
            if tokio::time::Instant::now() >= deadline {
                Box::new(withdraw).withdraw().await;
                return Err(Error::Unconfirmed {
                    secret,
                    seconds: CONFIRM.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::debug!(%secret, "challenge published to every replica");
        Ok(Box::new(withdraw))
    }

    async fn withdraw_stale(&self, challenge: &Challenge) {
        let name = secret_name(challenge);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{}/{name}", self.namespace), "withdrew a challenge an earlier leader left published")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => {
                tracing::warn!(secret = %name, %error, "cannot delete a stale challenge Secret; it answers nothing once validation is over")
            }
        }
    }
}

/// Deletes a challenge Secret when withdrawn (or, best effort, dropped).
struct WithdrawSecret {
    api: Api<Secret>,
    name: String,
}

#[async_trait::async_trait]
impl PublishedChallenge for WithdrawSecret {
    async fn withdraw(self: Box<Self>) {
        match self.api.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(error) => {
                tracing::warn!(secret = %self.name, %error, "cannot delete the challenge Secret; it answers nothing once validation is over")
            }
        }
    }
}

/// Keeps `board` in step with the challenge Secrets of `namespace`, on
/// every replica, until the task is dropped.
pub async fn watch_challenges(client: kube::Client, namespace: String, board: Arc<ChallengeBoard>) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{ROLE_LABEL}={ROLE}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    // What is on the board, by Secret name, with the challenge it answers.
    let mut on_board: BTreeMap<String, (Challenge, Published)> = BTreeMap::new();
    let mut relist: Option<BTreeMap<String, Secret>> = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => {
                failing = false;
                e
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "challenge watch failed; retrying with backoff");
                    failing = true;
                }
                continue;
            }
        };
        match event {
            watcher::Event::Apply(s) => put(&board, &mut on_board, &s),
            watcher::Event::Delete(s) => {
                on_board.remove(&s.metadata.name.unwrap_or_default());
            }
            watcher::Event::Init => relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                relist.get_or_insert_with(BTreeMap::new).insert(name, s);
            }
            watcher::Event::InitDone => {
                let list = relist.take().unwrap_or_default();
                on_board.retain(|name, _| list.contains_key(name));
                for s in list.values() {
                    put(&board, &mut on_board, s);
                }
            }
        }
    }
}

/// Puts the challenge of `secret` on the board (replacing what its name
/// carried before).
fn put(
    board: &Arc<ChallengeBoard>,
    on_board: &mut BTreeMap<String, (Challenge, Published)>,
    secret: &Secret,
) {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let Some(challenge) = challenge_of(secret) else {
        tracing::warn!(secret = %name, "challenge Secret without a usable challenge; ignored");
        return;
    };
    if on_board.get(&name).is_some_and(|(c, _)| *c == challenge) {
        return;
    }
    let published = match &challenge {
        Challenge::Http01 {
            token,
            key_authorization,
        } => board.publish_http01(token, key_authorization),
        Challenge::TlsAlpn01 {
            domain,
            key_authorization,
        } => match tls_alpn01_challenge(domain, key_authorization) {
            Ok(c) => board.publish_tls_alpn01(domain, c),
            Err(error) => {
                tracing::warn!(secret = %name, %error, "cannot build the TLS-ALPN-01 certificate");
                return;
            }
        },
    };
    tracing::debug!(secret = %name, ?challenge, "challenge answered by this replica");
    on_board.insert(name, (challenge, published));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_watched(body: serde_json::Value) -> Secret {
        // What the API returns for an apply of `body`: stringData folded
        // into data.
        let mut body = body;
        let string_data = body["stringData"].take();
        let mut data = serde_json::Map::new();
        for (k, v) in string_data.as_object().into_iter().flatten() {
            let text = v.as_str().unwrap_or_default();
            data.insert(
                k.clone(),
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    text
                )),
            );
        }
        body["data"] = serde_json::Value::Object(data);
        serde_json::from_value(body).expect("a Secret")
    }

    #[test]
    fn a_published_secret_reads_back_as_its_challenge() {
        for c in [
            Challenge::Http01 {
                token: "tok".into(),
                key_authorization: "tok.thumb".into(),
            },
            Challenge::TlsAlpn01 {
                domain: "a.example".into(),
                key_authorization: "k.thumb".into(),
            },
        ] {
            let secret = as_watched(secret_body("portcullis", &c));
            assert_eq!(challenge_of(&secret), Some(c.clone()));
            assert!(secret_name(&c).len() <= 63);
        }
    }

    #[test]
    fn the_watch_puts_challenges_on_the_board_and_takes_them_off() {
        let board = Arc::new(ChallengeBoard::new());
        let mut on_board = BTreeMap::new();
        let c = Challenge::Http01 {
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        };
        put(&board, &mut on_board, &as_watched(secret_body("ns", &c)));
        assert!(answers(&board, &c));
        on_board.remove(&secret_name(&c));
        assert!(!answers(&board, &c), "withdrawn with its Secret");
    }
}
