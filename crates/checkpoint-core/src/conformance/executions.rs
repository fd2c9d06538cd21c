//! `list_executions`.

use serde_json::json;
use time::macros::datetime;

use super::{assert_invalid, checkpoint, fill, Store};
use crate::validate::MAX_PAGE_LIMIT;
use crate::ExecutionQuery;

/// Each execution is summarised: count, highest version and most recent timestamp.
pub async fn executions_summarise_each_execution(store: Store) {
    let times = [
        datetime!(2024-03-01 10:00 UTC),
        datetime!(2024-03-05 10:00:00.000001 UTC),
        datetime!(2024-03-02 10:00 UTC),
    ];
    for (i, ts) in times.into_iter().enumerate() {
        store
            .save(&checkpoint("b", "n", json!(i)).with_timestamp(ts))
            .await
            .unwrap();
    }
    store
        .save(
            &checkpoint("a", "n", json!(0))
                .with_version(4)
                .with_timestamp(times[0]),
        )
        .await
        .unwrap();
    let all = store
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    let summary: Vec<(&str, u64, i64, _)> = all
        .iter()
        .map(|s| {
            (
                s.execution_id.as_str(),
                s.checkpoint_count,
                s.latest_version,
                s.last_timestamp,
            )
        })
        .collect();
    assert_eq!(summary, vec![("a", 1, 4, times[0]), ("b", 3, 3, times[1])]);
}

/// Executions come ascending by id and page with `after`.
pub async fn executions_paginate_by_id(store: Store) {
    for id in ["e3", "e1", "e5", "e2", "e4"] {
        fill(&store, id, 1).await;
    }
    let first = store
        .list_executions(&ExecutionQuery::new(2))
        .await
        .unwrap();
    let ids: Vec<_> = first.iter().map(|s| s.execution_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2"]);
    let rest = store
        .list_executions(&ExecutionQuery::new(10).after("e2"))
        .await
        .unwrap();
    let ids: Vec<_> = rest.iter().map(|s| s.execution_id.as_str()).collect();
    assert_eq!(ids, ["e3", "e4", "e5"]);
    let none = store
        .list_executions(&ExecutionQuery::new(10).after("e5"))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// An empty store lists no executions.
pub async fn executions_of_empty_store_is_empty(store: Store) {
    assert!(store
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap()
        .is_empty());
}

/// An execution whose checkpoints are all gone is no longer listed.
pub async fn executions_forget_cleared_executions(store: Store) {
    fill(&store, "a", 2).await;
    let b = fill(&store, "b", 1).await;
    store.clear("a").await.unwrap();
    store.delete(&b[0].id).await.unwrap();
    fill(&store, "c", 1).await;
    let all = store
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|s| s.execution_id.as_str()).collect();
    assert_eq!(ids, ["c"]);
}

/// Limits of 0 or over the maximum are refused.
pub async fn executions_reject_bad_queries(store: Store) {
    assert_invalid(
        store.list_executions(&ExecutionQuery::new(0)).await,
        "limit",
    );
    assert_invalid(
        store
            .list_executions(&ExecutionQuery::new(MAX_PAGE_LIMIT + 1))
            .await,
        "limit",
    );
    assert_invalid(
        store
            .list_executions(&ExecutionQuery::new(1).after(""))
            .await,
        "after",
    );
}
