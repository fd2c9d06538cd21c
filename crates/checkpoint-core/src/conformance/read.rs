//! `load`, `list` and `latest`.

use serde_json::json;

use super::{assert_exact, checkpoint, fill, versions, Store};
use crate::Error;

/// Loading an absent id is `NotFound` carrying that id.
pub async fn load_missing_is_not_found(store: Store) {
    match store.load("no-such-id").await {
        Err(Error::NotFound { id }) => assert_eq!(id, "no-such-id"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Lineage and metadata come back with the checkpoint.
pub async fn load_returns_parent_and_metadata(store: Store) {
    let first = fill(&store, "e1", 1).await.remove(0);
    let mut second = checkpoint("e1", "n2", json!(2))
        .with_parent(&first.id)
        .with_metadata("step", 2)
        .with_metadata("nested", json!({"a": [1, 2]}));
    second.version = store.save(&second).await.unwrap();
    let loaded = store.load(&second.id).await.unwrap();
    assert_eq!(loaded.parent_id.as_deref(), Some(first.id.as_str()));
    assert_eq!(loaded.metadata, second.metadata);
    assert_eq!(store.load(&first.id).await.unwrap().parent_id, None);
}

/// `list` is ascending by version whatever order the versions were saved in.
pub async fn list_is_ascending_by_version(store: Store) {
    for version in [5, 2, 9, 1, 3] {
        store
            .save(&checkpoint("e1", "n", json!(version)).with_version(version))
            .await
            .unwrap();
    }
    let all = store.list("e1").await.unwrap();
    assert_eq!(versions(&all), vec![1, 2, 3, 5, 9]);
    assert!(all.iter().all(|cp| cp.state == json!(cp.version)));
}

/// An execution nobody saved to has an empty history.
pub async fn list_of_unknown_execution_is_empty(store: Store) {
    fill(&store, "e1", 2).await;
    assert!(store.list("e2").await.unwrap().is_empty());
}

/// Executions do not see each other's checkpoints, and versions count per execution.
pub async fn list_isolates_executions(store: Store) {
    let a = fill(&store, "a", 3).await;
    let b = fill(&store, "b", 2).await;
    assert_exact(&store.list("a").await.unwrap(), &a, "list");
    assert_exact(&store.list("b").await.unwrap(), &b, "list");
    assert_eq!(versions(&b), vec![1, 2]);
}

/// `latest` is the checkpoint with the highest version.
pub async fn latest_returns_highest_version(store: Store) {
    let saved = fill(&store, "e1", 4).await;
    assert_exact(
        &store.latest("e1").await.unwrap(),
        &Some(saved[3].clone()),
        "latest",
    );
}

/// `latest` of an execution without checkpoints is `None`.
pub async fn latest_of_unknown_execution_is_none(store: Store) {
    fill(&store, "e1", 1).await;
    assert_eq!(store.latest("e2").await.unwrap(), None);
}

/// `latest` goes by version, not by save order or timestamp.
pub async fn latest_follows_explicit_higher_version(store: Store) {
    let high = checkpoint("e1", "high", json!(1)).with_version(8);
    store.save(&high).await.unwrap();
    let low = checkpoint("e1", "low", json!(2)).with_version(3);
    store.save(&low).await.unwrap();
    assert_eq!(
        store.latest("e1").await.unwrap().map(|cp| cp.id),
        Some(high.id)
    );
}

/// `load_in` names the execution: it finds the checkpoint there, and `NotFound` when the
/// execution does not hold that id (even when another one does). Where ids are unique per
/// execution and two executions hold one, `load`, `delete` and `fork` by that id are
/// `Ambiguous` naming both, and change nothing; `load_in` reads each.
pub async fn load_in_names_the_execution(store: Store) {
    let saved = fill(&store, "e1", 2).await;
    assert_exact(
        &store.load_in("e1", &saved[1].id).await.unwrap(),
        &saved[1],
        "load_in",
    );
    for (execution, id) in [("e2", saved[0].id.as_str()), ("e1", "no-such-id")] {
        match store.load_in(execution, id).await {
            Err(Error::NotFound { id: missing }) => assert_eq!(missing, id),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    super::assert_invalid(store.load_in("", &saved[0].id).await, "execution_id");
    super::assert_invalid(store.load_in("e1", "").await, "id");
    if store.id_scope() != crate::IdScope::PerExecution {
        return;
    }
    let mut twin = checkpoint("e2", "n", json!({"twin": true})).with_id(&saved[0].id);
    twin.version = store.save(&twin).await.unwrap();
    let ambiguous = |result: crate::Result<()>| match result {
        Err(Error::Ambiguous { id, mut executions }) => {
            executions.sort();
            assert_eq!(
                (id.as_str(), executions),
                (saved[0].id.as_str(), vec!["e1".to_owned(), "e2".to_owned()])
            );
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    };
    ambiguous(store.load(&saved[0].id).await.map(|_| ()));
    ambiguous(store.delete(&saved[0].id).await.map(|_| ()));
    ambiguous(store.fork(&saved[0].id, "e3").await.map(|_| ()));
    assert!(store.list("e3").await.unwrap().is_empty());
    assert_exact(&store.list("e1").await.unwrap(), &saved, "e1 unchanged");
    assert_exact(&store.load_in("e2", &twin.id).await.unwrap(), &twin, "twin");
    // Once one of them goes, the id is plain again.
    assert_eq!(store.clear("e2").await.unwrap(), 1);
    assert_exact(&store.load(&saved[0].id).await.unwrap(), &saved[0], "load");
}
