//! Orders in progress, recorded in the [`Store`] so that a restart after a
//! crash (`kill -9` mid-order), or a new leader replica, resumes the pending
//! order instead of placing a second one: the order URL with the server,
//! names and profile it was placed for ([`PendingOrder`]). Recorded as soon
//! as the CA has created the order, forgotten once the order produced a
//! certificate or can no longer produce one for us (it became invalid, or a
//! process whose key is lost already finalized it).
//!
//! Recording is best effort: a record that cannot be written or read only
//! costs a new order (what happened before records existed), never a
//! failure. These helpers log and carry on.

use crate::store::{PendingOrder, Store, StoreKey};

/// The order recorded for `secret`; `None` when there is none or it cannot be
/// read (logged: a new order is placed instead).
pub async fn read(store: &dyn Store, secret: &StoreKey) -> Option<PendingOrder> {
    match store.pending_order(secret).await {
        Ok(order) => order,
        Err(error) => {
            tracing::warn!(%secret, error = %crate::issuer::ErrorChain(&error), "cannot read the pending ACME order; ignoring it");
            None
        }
    }
}

/// Records `order` for `secret` (failures are logged).
pub async fn write(store: &dyn Store, secret: &StoreKey, order: &PendingOrder) {
    if let Err(error) = store.put_pending_order(secret, order).await {
        tracing::warn!(%secret, error = %crate::issuer::ErrorChain(&error), "cannot record the pending ACME order; a restart would order again");
    }
}

/// Forgets the order recorded for `secret` (failures are logged).
pub async fn remove(store: &dyn Store, secret: &StoreKey) {
    if let Err(error) = store.remove_pending_order(secret).await {
        tracing::warn!(%secret, error = %crate::issuer::ErrorChain(&error), "cannot remove the pending ACME order");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DirStore;

    fn order() -> PendingOrder {
        PendingOrder {
            key_pem: None,
            url: "https://ca.test/order/1".into(),
            server: "https://ca.test/dir".into(),
            names: vec!["a.test".into(), "b.test".into()],
            profile: None,
        }
    }

    #[tokio::test]
    async fn pending_order_round_trips_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let secret = StoreKey::new("web", "site-tls").expect("valid key");
        assert_eq!(read(&store, &secret).await, None);
        write(&store, &secret, &order()).await;
        assert_eq!(read(&store, &secret).await, Some(order()));
        remove(&store, &secret).await;
        assert_eq!(read(&store, &secret).await, None);
        remove(&store, &secret).await;
    }

    #[tokio::test]
    async fn damaged_pending_order_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirStore::new(dir.path());
        let secret = StoreKey::new("web", "site-tls").expect("valid key");
        let path = store.order_path(&secret);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, b"{not json").expect("written");
        assert_eq!(read(&store, &secret).await, None);
        // A new order overwrites it.
        write(&store, &secret, &order()).await;
        assert_eq!(read(&store, &secret).await, Some(order()));
    }
}
