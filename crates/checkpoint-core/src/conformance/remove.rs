//! `delete` and `clear`.

use super::{assert_exact, fill, versions, Store};
use crate::Error;

/// Deleting a stored checkpoint returns true and it is gone.
pub async fn delete_existing_returns_true(store: Store) {
    let saved = fill(&store, "e1", 1).await;
    assert!(store.delete(&saved[0].id).await.unwrap());
    assert!(matches!(
        store.load(&saved[0].id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.latest("e1").await.unwrap(), None);
}

/// Deleting an absent id returns false and is not an error.
pub async fn delete_absent_returns_false(store: Store) {
    assert!(!store.delete("never-saved").await.unwrap());
}

/// The second delete of the same id returns false.
pub async fn delete_twice_is_idempotent(store: Store) {
    let saved = fill(&store, "e1", 1).await;
    assert!(store.delete(&saved[0].id).await.unwrap());
    assert!(!store.delete(&saved[0].id).await.unwrap());
}

/// Deleting one checkpoint leaves the rest of its history and other executions alone.
pub async fn delete_keeps_other_checkpoints(store: Store) {
    let saved = fill(&store, "e1", 3).await;
    let other = fill(&store, "e2", 1).await;
    store.delete(&saved[1].id).await.unwrap();
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![1, 3]);
    assert_exact(&store.list("e2").await.unwrap(), &other, "list");
}

/// `clear` returns how many checkpoints it removed and leaves none.
pub async fn clear_returns_number_removed(store: Store) {
    fill(&store, "e1", 4).await;
    assert_eq!(store.clear("e1").await.unwrap(), 4);
    assert!(store.list("e1").await.unwrap().is_empty());
    assert_eq!(store.clear("e1").await.unwrap(), 0);
}

/// Clearing an execution that has nothing returns 0.
pub async fn clear_unknown_execution_returns_zero(store: Store) {
    assert_eq!(store.clear("nothing-here").await.unwrap(), 0);
}

/// Clearing one execution keeps the others whole.
pub async fn clear_keeps_other_executions(store: Store) {
    fill(&store, "e1", 2).await;
    let other = fill(&store, "e2", 2).await;
    store.clear("e1").await.unwrap();
    assert_exact(&store.list("e2").await.unwrap(), &other, "list");
}

/// After `clear`, the next append starts again at version 1.
pub async fn append_after_clear_starts_at_one(store: Store) {
    fill(&store, "e1", 3).await;
    store.clear("e1").await.unwrap();
    assert_eq!(versions(&fill(&store, "e1", 1).await), vec![1]);
}
