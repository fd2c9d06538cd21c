//! Racing writers on one execution.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::json;

use super::{checkpoint, fill, versions, Store};
use crate::{Checkpoint, Error};

const TASKS: usize = 32;

/// 32 tasks appending (version 0) at once all succeed, with distinct versions and no gap.
pub async fn racing_appenders_get_distinct_versions(store: Store) {
    const EACH: usize = 5;
    let tasks = (0..TASKS).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..EACH {
                let cp = checkpoint("race", &format!("t{t}"), json!({"t": t, "i": i}));
                got.push(store.save(&cp).await.expect("an append never conflicts"));
            }
            got
        })
    });
    let mut all: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("task panicked"))
        .collect();
    all.sort_unstable();
    let expected: Vec<i64> = (1..=i64::try_from(TASKS * EACH).expect("a small count")).collect();
    assert_eq!(all, expected);
    assert_eq!(versions(&store.list("race").await.unwrap()), expected);
}

/// 32 tasks that all read version N and save N + 1: exactly one wins, the rest conflict, and
/// the history has no gap or duplicate.
pub async fn racing_writers_for_one_version_one_wins(store: Store) {
    fill(&store, "race", 3).await;
    let next = store
        .latest("race")
        .await
        .unwrap()
        .map_or(0, |cp| cp.version)
        + 1;
    let tasks = (0..TASKS).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            let cp = checkpoint("race", &format!("t{t}"), json!(t)).with_version(next);
            let result = store.save(&cp).await;
            (cp.id, result)
        })
    });
    let mut winners = Vec::new();
    for joined in join_all(tasks).await {
        let (id, result) = joined.expect("task panicked");
        match result {
            Ok(version) => {
                assert_eq!(version, next);
                winners.push(id);
            }
            Err(Error::Conflict { version, .. }) => assert_eq!(version, next),
            Err(other) => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    let history = store.list("race").await.unwrap();
    assert_eq!(versions(&history), vec![1, 2, 3, 4]);
    assert_eq!(history[3].id, winners[0]);
}

/// Appending batches racing on one execution never interleave: each batch's versions are
/// consecutive, and together they fill 1..=n.
pub async fn concurrent_batches_stay_consecutive(store: Store) {
    const BATCHES: usize = 8;
    const SIZE: usize = 10;
    let tasks = (0..BATCHES).map(|b| {
        let store = store.clone();
        tokio::spawn(async move {
            let items: Vec<Checkpoint> = (0..SIZE)
                .map(|i| checkpoint("race", &format!("b{b}"), json!(i)))
                .collect();
            store
                .save_batch(&items)
                .await
                .expect("appending batches never conflict")
        })
    });
    let mut seen = BTreeSet::new();
    for joined in join_all(tasks).await {
        let got = joined.expect("task panicked");
        let first = got[0];
        assert_eq!(
            got,
            (first..first + i64::try_from(SIZE).expect("a small count")).collect::<Vec<_>>()
        );
        seen.extend(got);
    }
    assert_eq!(
        seen,
        (1..=i64::try_from(BATCHES * SIZE).expect("a small count")).collect()
    );
}

/// Readers running beside a writer only ever see whole checkpoints.
pub async fn concurrent_readers_see_whole_checkpoints(store: Store) {
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                let cp = checkpoint("live", "n", json!({"i": i, "copy": i}));
                store.save(&cp).await.unwrap();
            }
        })
    };
    let readers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                if let Some(cp) = store.latest("live").await.unwrap() {
                    assert_eq!(cp.state["i"], cp.state["copy"]);
                    assert_eq!(cp.state["i"].as_i64().map(|i| i + 1), Some(cp.version));
                }
            }
        })
    });
    writer.await.expect("writer panicked");
    for reader in join_all(readers).await {
        reader.expect("reader panicked");
    }
    assert_eq!(store.list("live").await.unwrap().len(), 50);
}
