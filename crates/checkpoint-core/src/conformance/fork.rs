//! `fork`: a new execution from any earlier checkpoint.

use serde_json::json;

use super::{assert_conflict, assert_exact, assert_invalid, checkpoint, fill, versions, Store};
use crate::Error;

/// The fork is version 1 of the new execution with the source's node, state and metadata, a
/// fresh id, and lineage in `parent_id` and metadata.
pub async fn fork_copies_state_and_records_lineage(store: Store) {
    let saved = fill(&store, "a", 3).await;
    let mut source =
        checkpoint("a", "review", json!({"draft": "v2", "n": [1, 2]})).with_metadata("step", 4);
    source.version = store.save(&source).await.unwrap();
    let fork = store.fork(&source.id, "b").await.unwrap();
    assert_ne!(fork.id, source.id);
    assert_eq!(fork.execution_id, "b");
    assert_eq!(fork.node_name, "review");
    assert_eq!(fork.state, source.state);
    assert_eq!(fork.version, 1);
    assert_eq!(fork.parent_id.as_deref(), Some(source.id.as_str()));
    assert_eq!(fork.metadata["step"], json!(4));
    assert_eq!(fork.metadata["source"], json!("fork"));
    assert_eq!(
        fork.metadata["forked_from"],
        json!({"checkpoint_id": source.id, "execution_id": "a", "version": 4})
    );
    assert_exact(&store.load(&fork.id).await.unwrap(), &fork, "load");
    assert_exact(&store.list("b").await.unwrap(), &vec![fork], "list");
    assert_eq!(
        store.list("a").await.unwrap().len(),
        saved.len() + 1,
        "source untouched"
    );
}

/// A fork can start from any earlier checkpoint, and the new execution continues on its own.
pub async fn fork_from_an_earlier_checkpoint_then_diverge(store: Store) {
    let saved = fill(&store, "a", 5).await;
    let fork = store.fork(&saved[1].id, "b").await.unwrap();
    assert_eq!(fork.state, saved[1].state);
    let next = checkpoint("b", "other", json!("branch")).with_parent(&fork.id);
    assert_eq!(store.save(&next).await.unwrap(), 2);
    assert_eq!(
        versions(&store.list("a").await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(versions(&store.list("b").await.unwrap()), vec![1, 2]);
}

/// Forking an unknown checkpoint is `NotFound` and creates nothing.
pub async fn fork_of_unknown_checkpoint_is_not_found(store: Store) {
    assert!(matches!(
        store.fork("missing", "b").await,
        Err(Error::NotFound { id }) if id == "missing"
    ));
    assert!(store.list("b").await.unwrap().is_empty());
}

/// Forking into an execution that already has checkpoints is a conflict and changes nothing.
pub async fn fork_into_existing_execution_conflicts(store: Store) {
    let a = fill(&store, "a", 2).await;
    let b = fill(&store, "b", 1).await;
    assert_conflict(store.fork(&a[0].id, "b").await, "b", 1);
    assert_conflict(store.fork(&a[0].id, "a").await, "a", 1);
    assert_exact(&store.list("b").await.unwrap(), &b, "list");
    assert_exact(&store.list("a").await.unwrap(), &a, "list");
}

/// Bad ids are refused before anything is read.
pub async fn fork_rejects_invalid_ids(store: Store) {
    let a = fill(&store, "a", 1).await;
    assert_invalid(store.fork("", "b").await, "id");
    assert_invalid(store.fork(&a[0].id, "").await, "execution_id");
    assert_invalid(store.fork(&a[0].id, "b\0").await, "execution_id");
    assert!(store.list("b").await.unwrap().is_empty());
}
