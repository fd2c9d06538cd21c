//! `save_batch`: all or nothing, consecutive versions.

use serde_json::json;

use super::{assert_conflict, assert_exact, assert_invalid, checkpoint, fill, versions, Store};
use crate::Checkpoint;

fn batch(execution: &str, count: usize) -> Vec<Checkpoint> {
    (0..count)
        .map(|i| checkpoint(execution, &format!("b{i}"), json!({ "i": i })))
        .collect()
}

/// Version-0 items of one execution get consecutive versions in their order.
pub async fn batch_assigns_consecutive_versions(store: Store) {
    let items = batch("e1", 5);
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![1, 2, 3, 4, 5]);
    let stored = store.list("e1").await.unwrap();
    let ids: Vec<&str> = stored.iter().map(|cp| cp.id.as_str()).collect();
    let expected: Vec<&str> = items.iter().map(|cp| cp.id.as_str()).collect();
    assert_eq!(ids, expected);
}

/// An empty batch stores nothing and returns no versions.
pub async fn batch_empty_is_a_no_op(store: Store) {
    assert_eq!(store.save_batch(&[]).await.unwrap(), Vec::<i64>::new());
    assert!(store
        .list_executions(&Default::default())
        .await
        .unwrap()
        .is_empty());
}

/// One batch may hold several executions; each counts its own versions.
pub async fn batch_spans_executions(store: Store) {
    fill(&store, "b", 2).await;
    let items = vec![
        checkpoint("a", "n", json!(1)),
        checkpoint("b", "n", json!(2)),
        checkpoint("a", "n", json!(3)),
        checkpoint("c", "n", json!(4)).with_version(10),
        checkpoint("b", "n", json!(5)),
    ];
    assert_eq!(
        store.save_batch(&items).await.unwrap(),
        vec![1, 3, 2, 10, 4]
    );
    assert_eq!(versions(&store.list("b").await.unwrap()), vec![1, 2, 3, 4]);
}

/// Appends in a batch continue after the versions already stored and after explicit versions
/// earlier in the same batch.
pub async fn batch_continues_after_existing_versions(store: Store) {
    fill(&store, "e1", 3).await;
    let items = vec![
        checkpoint("e1", "n", json!(1)),
        checkpoint("e1", "n", json!(2)).with_version(7),
        checkpoint("e1", "n", json!(3)),
    ];
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![4, 7, 8]);
}

/// One conflicting item and nothing of the batch is stored.
pub async fn batch_conflict_stores_nothing(store: Store) {
    let before = fill(&store, "e1", 2).await;
    let items = vec![
        checkpoint("e1", "n", json!(1)),
        checkpoint("e2", "n", json!(2)),
        checkpoint("e1", "late", json!(3)).with_version(2),
    ];
    assert_conflict(store.save_batch(&items).await, "e1", 2);
    assert_exact(&store.list("e1").await.unwrap(), &before, "list");
    assert!(store.list("e2").await.unwrap().is_empty());
}

/// One invalid item and nothing of the batch is stored.
pub async fn batch_invalid_item_stores_nothing(store: Store) {
    let mut items = batch("e1", 3);
    items[2].state = json!({"bad": "\0"});
    assert_invalid(store.save_batch(&items).await, "state");
    assert!(store.list("e1").await.unwrap().is_empty());
}

/// The same id twice in one batch is refused.
pub async fn batch_repeated_id_is_refused(store: Store) {
    let one = checkpoint("e1", "n", json!(1));
    assert_invalid(store.save_batch(&[one.clone(), one]).await, "id");
    assert!(store.list("e1").await.unwrap().is_empty());
}

/// The same explicit version twice for one execution is a conflict.
pub async fn batch_repeated_explicit_version_conflicts(store: Store) {
    let items = vec![
        checkpoint("e1", "n", json!(1)).with_version(3),
        checkpoint("e1", "n", json!(2)).with_version(3),
    ];
    assert_conflict(store.save_batch(&items).await, "e1", 3);
    assert!(store.list("e1").await.unwrap().is_empty());
}

/// Retrying a whole batch replaces its checkpoints and makes no new versions.
pub async fn batch_retry_replaces_without_new_versions(store: Store) {
    let items = batch("e1", 4);
    let first = store.save_batch(&items).await.unwrap();
    assert_eq!(store.save_batch(&items).await.unwrap(), first);
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![1, 2, 3, 4]);
}

/// An item whose id another execution holds: where ids are unique across the store it would
/// move, and fails the whole batch; where they are unique per execution it is a new
/// checkpoint of its own execution, and the other stays as it was.
pub async fn batch_moving_id_stores_nothing(store: Store) {
    let saved = fill(&store, "e1", 1).await;
    let mut moved = saved[0].clone();
    moved.execution_id = "e2".into();
    moved.version = 0;
    let items = vec![checkpoint("e2", "n", json!(1)), moved];
    match store.id_scope() {
        crate::IdScope::PerExecution => {
            assert_eq!(store.save_batch(&items).await.unwrap(), vec![1, 2]);
            let e2 = store.list("e2").await.unwrap();
            assert_eq!(e2[1].id, saved[0].id);
            assert_exact(&e2[1].state, &saved[0].state, "state");
        }
        _ => {
            assert_invalid(store.save_batch(&items).await, "execution_id");
            assert!(store.list("e2").await.unwrap().is_empty());
        }
    }
    assert_exact(&store.list("e1").await.unwrap(), &saved, "list");
}

/// Every field of every batch item round-trips.
pub async fn batch_items_round_trip(store: Store) {
    let mut items: Vec<Checkpoint> = batch("e1", 3)
        .into_iter()
        .enumerate()
        .map(|(i, cp)| cp.with_metadata("i", i).with_parent(format!("p{i}")))
        .collect();
    let stored = store.save_batch(&items).await.unwrap();
    for (cp, version) in items.iter_mut().zip(stored) {
        cp.version = version;
        assert_exact(&store.load(&cp.id).await.unwrap(), cp, "load");
    }
}

/// A batch fails with its first failing item, in order, as saving the items one after another
/// would: here a conflict with a stored row comes before an id that belongs elsewhere.
pub async fn batch_reports_the_first_failure_in_order(store: Store) {
    let stored = fill(&store, "e1", 1).await;
    let elsewhere = fill(&store, "e2", 1).await;
    let mut moved = elsewhere[0].clone();
    moved.execution_id = "e1".into();
    moved.version = 0;
    let items = vec![
        checkpoint("e1", "n", json!(1)),
        checkpoint("e1", "late", json!(2)).with_version(1),
        moved,
    ];
    assert_conflict(store.save_batch(&items).await, "e1", 1);
    assert_exact(&store.list("e1").await.unwrap(), &stored, "list");
    assert_exact(&store.list("e2").await.unwrap(), &elsewhere, "list");
}

/// When an item moves the execution's highest version down, later appends in the same batch
/// continue from the new highest, as saving the items one after another would.
pub async fn batch_moving_the_highest_version_down_renumbers_appends(store: Store) {
    let a = checkpoint("e1", "a", json!(1));
    store.save(&a).await.unwrap();
    let b = checkpoint("e1", "b", json!(2)).with_version(4);
    store.save(&b).await.unwrap();
    let items = vec![b.clone().with_version(2), checkpoint("e1", "c", json!(3))];
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![2, 3]);
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![1, 2, 3]);
}
