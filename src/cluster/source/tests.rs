//! Tests of the cluster source's pure parts: the debounce and the
//! bookkeeping of referenced Secrets and ConfigMaps.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_change_taken_by_a_wait_dropped_during_its_quiet_time_is_not_lost() {
    let (tx, rx) = watch::channel(0u64);
    let mut revision = Revision {
        rx,
        pending_since: None,
    };
    // No change: no wake-up.
    assert!(tokio::time::timeout(MAX_DELAY * 4, revision.changed())
        .await
        .is_err());
    tx.send_modify(|n| *n += 1);
    // Dropped while waiting for quiet, as the serve loop's select!
    // drops it when the issuer's report or a bind retry comes first.
    assert!(tokio::time::timeout(DEBOUNCE / 2, revision.changed())
        .await
        .is_err());
    // The change is still reported, within the original cap.
    let start = tokio::time::Instant::now();
    assert!(tokio::time::timeout(MAX_DELAY, revision.changed())
        .await
        .is_ok());
    assert!(start.elapsed() <= DEBOUNCE, "{:?}", start.elapsed());
    // And only once.
    assert!(tokio::time::timeout(MAX_DELAY * 4, revision.changed())
        .await
        .is_err());
}

#[test]
fn only_referenced_objects_whose_version_moved_are_fetched() {
    let mut r: Referenceable<String> = Referenceable::default();
    let a = ObjectKey::new("ns", "a");
    let b = ObjectKey::new("ns", "b");
    let c = ObjectKey::new("ns", "c");
    r.versions.insert(a.clone(), "1".into());
    r.versions.insert(b.clone(), "5".into());
    r.content
        .insert(b.clone(), ("5".into(), Arc::new("b".to_string())));
    let wanted = BTreeSet::from([a.clone(), b.clone(), c.clone()]);
    // a: never read; b: current; c: does not exist.
    assert_eq!(r.stale(&wanted), vec![a.clone()]);
    r.versions.insert(b.clone(), "6".into());
    assert_eq!(r.stale(&wanted), vec![a, b]);
}

#[test]
fn content_no_longer_referenced_or_deleted_is_dropped() {
    let mut r: Referenceable<String> = Referenceable::default();
    let a = ObjectKey::new("ns", "a");
    let b = ObjectKey::new("ns", "b");
    for (k, v) in [(&a, "a"), (&b, "b")] {
        r.versions.insert(k.clone(), "1".into());
        r.content
            .insert(k.clone(), ("1".into(), Arc::new(v.to_string())));
    }
    let mut stamp = std::hash::DefaultHasher::new();
    let both = BTreeSet::from([a.clone(), b.clone()]);
    assert_eq!(r.current(&both, &mut stamp).len(), 2);
    r.versions.remove(&b);
    assert_eq!(
        r.current(&both, &mut stamp),
        vec![Arc::new("a".to_string())]
    );
    assert!(r.current(&BTreeSet::new(), &mut stamp).is_empty());
    assert!(r.content.is_empty(), "memory released");
}

#[test]
fn the_stamp_follows_the_versions_read() {
    let mut r: Referenceable<String> = Referenceable::default();
    let a = ObjectKey::new("ns", "a");
    let wanted = BTreeSet::from([a.clone()]);
    r.versions.insert(a.clone(), "1".into());
    r.content
        .insert(a.clone(), ("1".into(), Arc::new("x".to_string())));
    let stamp = |r: &mut Referenceable<String>| {
        let mut h = std::hash::DefaultHasher::new();
        r.current(&wanted, &mut h);
        h.finish()
    };
    let first = stamp(&mut r);
    assert_eq!(stamp(&mut r), first, "same content, same stamp");
    r.versions.insert(a.clone(), "2".into());
    r.content.insert(a, ("2".into(), Arc::new("y".to_string())));
    assert_ne!(stamp(&mut r), first, "a new version read");
}
