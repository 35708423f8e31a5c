//! Health, and the small stores beside the sessions: `ping`,
//! `Idempotency-Key` reservations and records, and durability
//! confirmation.

use std::time::Duration;

use collabd::backplane::Backplane;

use super::fixtures::account_id;

/// `ping` answers `Ok` when the store is reachable.
pub async fn health_ping_is_ok(bp: &dyn Backplane) {
    bp.ping().await.unwrap();
}

/// An `Idempotency-Key` is held by the first `reserve` only; a record
/// replaces the hold, belongs to its account, and goes when forgotten or
/// when it lapses.
pub async fn idempotency_the_first_reserve_holds_and_records_lapse(bp: &dyn Backplane) {
    let (a, b) = (account_id(), account_id());
    let long = Duration::from_secs(60);
    assert_eq!(bp.reserve(&a, "k1", "running", long).await.unwrap(), None);
    assert_eq!(
        bp.reserve(&a, "k1", "again", long)
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    // Another account's key of the same name is another key.
    assert_eq!(bp.reserve(&b, "k1", "running-b", long).await.unwrap(), None);
    bp.record(&a, "k1", "done", long).await.unwrap();
    assert_eq!(
        bp.reserve(&a, "k1", "again", long)
            .await
            .unwrap()
            .as_deref(),
        Some("done")
    );
    bp.forget(&a, "k1").await.unwrap();
    assert_eq!(bp.reserve(&a, "k1", "fresh", long).await.unwrap(), None);
    // A record lapses with its lifetime; so does a hold.
    bp.record(&a, "k2", "short", Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(
        bp.reserve(&a, "k2", "x", long).await.unwrap().as_deref(),
        Some("short")
    );
    bp.reserve(&a, "k3", "held", Duration::from_millis(150))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bp.reserve(&a, "k2", "after", long).await.unwrap(), None);
    assert_eq!(bp.reserve(&a, "k3", "after", long).await.unwrap(), None);
}

/// Two racing reserves of one key: exactly one holds it.
pub async fn idempotency_racing_reserves_have_one_holder(bp: &dyn Backplane) {
    let a = &account_id();
    let long = Duration::from_secs(60);
    let racers = (0..16).map(|i| {
        let running = format!("r{i}");
        async move { bp.reserve(a, "race", &running, long).await.unwrap() }
    });
    let held = futures_util::future::join_all(racers).await;
    assert_eq!(held.iter().filter(|h| h.is_none()).count(), 1, "{held:?}");
}

/// With no replicas asked for, a change is confirmed at once.
pub async fn durability_confirm_without_replicas_asked_is_immediate(bp: &dyn Backplane) {
    bp.confirm(&account_id()).await.unwrap();
}
