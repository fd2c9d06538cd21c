//! `prune`: retention by count and by age.

use std::time::Duration;

use serde_json::json;

use super::{assert_exact, assert_invalid, checkpoint, days_ago, fill, versions, Store};
use crate::RetentionPolicy;

const DAY: Duration = Duration::from_secs(86_400);

/// Saves `ages.len()` checkpoints to `execution`, the i-th `ages[i]` days old.
async fn fill_aged(store: &Store, execution: &str, ages: &[i64]) {
    for (i, age) in ages.iter().enumerate() {
        let cp = checkpoint(execution, "n", json!(i)).with_timestamp(days_ago(*age));
        store.save(&cp).await.unwrap();
    }
}

/// `keep_last` alone trims every execution to its newest N.
pub async fn prune_keep_last_trims_every_execution(store: Store) {
    fill(&store, "a", 5).await;
    fill(&store, "b", 2).await;
    fill(&store, "c", 4).await;
    assert_eq!(
        store.prune(&RetentionPolicy::keep_last(3)).await.unwrap(),
        3
    );
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![3, 4, 5]);
    assert_eq!(versions(&store.list("b").await.unwrap()), vec![1, 2]);
    assert_eq!(versions(&store.list("c").await.unwrap()), vec![2, 3, 4]);
}

/// A policy for one execution touches no other.
pub async fn prune_keep_last_for_one_execution(store: Store) {
    fill(&store, "a", 5).await;
    let b = fill(&store, "b", 5).await;
    let policy = RetentionPolicy::keep_last(1).for_execution("a");
    assert_eq!(store.prune(&policy).await.unwrap(), 4);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![5]);
    assert_exact(&store.list("b").await.unwrap(), &b, "list");
}

/// `older_than` alone removes every checkpoint older than the cutoff, latest included.
pub async fn prune_older_than_removes_old_checkpoints(store: Store) {
    fill_aged(&store, "a", &[40, 35, 1]).await;
    fill_aged(&store, "b", &[50, 45]).await;
    let policy = RetentionPolicy::older_than(30 * DAY);
    assert_eq!(store.prune(&policy).await.unwrap(), 4);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![3]);
    assert!(store.list("b").await.unwrap().is_empty());
}

/// Both rules: only checkpoints that are old and not among the newest N go.
pub async fn prune_both_rules_keep_newest_and_recent(store: Store) {
    fill_aged(&store, "a", &[60, 50, 40, 2, 1]).await;
    fill_aged(&store, "b", &[90, 80, 70]).await;
    let policy = RetentionPolicy::keep_last(2).and_older_than(30 * DAY);
    // a: v1..v3 are old, v4 and v5 are the newest two -> v1..v3 go.
    // b: all old, v2 and v3 are the newest two -> v1 goes.
    assert_eq!(store.prune(&policy).await.unwrap(), 4);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![4, 5]);
    assert_eq!(versions(&store.list("b").await.unwrap()), vec![2, 3]);
}

/// A policy with no rule is refused rather than removing nothing or everything.
pub async fn prune_without_rule_is_refused(store: Store) {
    let kept = fill(&store, "a", 2).await;
    assert_invalid(store.prune(&RetentionPolicy::default()).await, "retention");
    assert_exact(&store.list("a").await.unwrap(), &kept, "list");
}

/// Keeping 0 checkpoints is refused (that is `clear`).
pub async fn prune_keep_zero_is_refused(store: Store) {
    let kept = fill(&store, "a", 2).await;
    assert_invalid(
        store.prune(&RetentionPolicy::keep_last(0)).await,
        "keep_last",
    );
    assert_invalid(
        store
            .prune(&RetentionPolicy::keep_last(1).for_execution(""))
            .await,
        "execution_id",
    );
    assert_exact(&store.list("a").await.unwrap(), &kept, "list");
}

/// Nothing to remove returns 0 and changes nothing.
pub async fn prune_with_nothing_to_remove_returns_zero(store: Store) {
    let kept = fill(&store, "a", 3).await;
    assert_eq!(
        store.prune(&RetentionPolicy::keep_last(3)).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .prune(&RetentionPolicy::older_than(DAY))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune(&RetentionPolicy::keep_last(1).for_execution("zz"))
            .await
            .unwrap(),
        0
    );
    assert_exact(&store.list("a").await.unwrap(), &kept, "list");
}

/// Pruning old versions does not make appends reuse a version.
pub async fn append_after_prune_continues_versions(store: Store) {
    fill(&store, "a", 4).await;
    store.prune(&RetentionPolicy::keep_last(1)).await.unwrap();
    assert_eq!(
        store.save(&checkpoint("a", "n", json!(5))).await.unwrap(),
        5
    );
}

/// A prune with `lazy_flush` removes exactly what the same prune without it removes, on one
/// execution (the path retention after every save takes) and on all of them, and readers see
/// the removal at once.
pub async fn prune_with_lazy_flush_removes_the_same(store: Store) {
    fill_aged(&store, "a", &[9, 8, 7, 6, 5]).await;
    let b = fill(&store, "b", 4).await;
    let policy = RetentionPolicy::keep_last(2)
        .for_execution("a")
        .lazy_flush();
    assert_eq!(store.prune(&policy).await.unwrap(), 3);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![4, 5]);
    assert_exact(&store.list("b").await.unwrap(), &b, "list");
    // Nothing left to remove: 0, and nothing changes.
    assert_eq!(store.prune(&policy).await.unwrap(), 0);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![4, 5]);
    // By age on one execution, the newest kept.
    let by_age = RetentionPolicy::keep_last(1)
        .and_older_than(DAY)
        .for_execution("a")
        .lazy_flush();
    assert_eq!(store.prune(&by_age).await.unwrap(), 1);
    assert_eq!(versions(&store.list("a").await.unwrap()), vec![5]);
    // Every execution.
    let everywhere = RetentionPolicy::keep_last(1).lazy_flush();
    assert_eq!(store.prune(&everywhere).await.unwrap(), 3);
    assert_eq!(versions(&store.list("b").await.unwrap()), vec![4]);
    assert_eq!(
        store.save(&checkpoint("a", "n", json!(6))).await.unwrap(),
        6
    );
}
