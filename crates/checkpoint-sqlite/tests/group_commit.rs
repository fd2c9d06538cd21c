//! Group commit on SQLite: concurrent saves share transactions, and each keeps the outcome it
//! would have had alone.

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use futures::future::join_all;
use serde_json::json;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::file(dir.path().join("g.db")))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_lone_save_is_a_group_of_one() {
    let (_dir, store) = store().await;
    for i in 0..5 {
        store
            .save(&Checkpoint::new("e", "n", json!(i)))
            .await
            .unwrap();
    }
    let stats = store.commit_stats();
    assert_eq!((stats.saves, stats.groups, stats.largest), (5, 5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_keep_versions_dense() {
    let (_dir, store) = store().await;
    let saves = (0..64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let cp = Checkpoint::new(format!("e{}", i % 4), "n", json!(i));
            let version = store.save(&cp).await.unwrap();
            (cp.id, version)
        })
    });
    let acked: Vec<(String, i64)> = join_all(saves)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let stats = store.commit_stats();
    assert_eq!(stats.saves, 64);
    assert!(stats.groups < 64, "some saves shared a commit: {stats:?}");
    assert!(stats.largest >= 2, "{stats:?}");
    for (id, version) in &acked {
        assert_eq!(store.load(id).await.unwrap().version, *version);
    }
    for e in 0..4 {
        let versions: Vec<i64> = store
            .list(&format!("e{e}"))
            .await
            .unwrap()
            .iter()
            .map(|c| c.version)
            .collect();
        assert_eq!(versions, (1..=16).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_save_in_a_group_fails_alone() {
    let (_dir, store) = store().await;
    let taken = Checkpoint::new("x", "n", json!("first")).with_version(1);
    store.save(&taken).await.unwrap();
    let elsewhere = Checkpoint::new("y", "n", json!("mine"));
    store.save(&elsewhere).await.unwrap();

    for round in 0..5 {
        // Hold the write turn with a slow batch so the saves below queue into one group.
        let blocker: Vec<Checkpoint> = (0..2_000)
            .map(|i| Checkpoint::new(format!("block{round}"), "n", json!(i)))
            .collect();
        let batch = {
            let store = store.clone();
            tokio::spawn(async move { store.save_batch(&blocker).await })
        };
        tokio::task::yield_now().await;
        let mut checkpoints: Vec<Checkpoint> = (0..14)
            .map(|i| Checkpoint::new(format!("ok{round}"), "n", json!(i)))
            .collect();
        // A version another checkpoint holds, and an id that would move execution.
        checkpoints.insert(
            5,
            Checkpoint::new("x", "n", json!("second")).with_version(1),
        );
        checkpoints.insert(
            9,
            Checkpoint::new("z", "n", json!("moved")).with_id(&elsewhere.id),
        );
        let results = join_all(checkpoints.iter().map(|cp| {
            let store = store.clone();
            let cp = cp.clone();
            async move { store.save(&cp).await }
        }))
        .await;
        batch.await.unwrap().unwrap();
        for (i, result) in results.iter().enumerate() {
            match i {
                5 => assert!(
                    matches!(result, Err(Error::Conflict { version: 1, .. })),
                    "{result:?}"
                ),
                9 => assert!(
                    matches!(result, Err(e) if e.is_invalid_field("execution_id")),
                    "{result:?}"
                ),
                _ => assert!(result.is_ok(), "save {i}: {result:?}"),
            }
        }
        let ok = store.list(&format!("ok{round}")).await.unwrap();
        assert_eq!(ok.len(), 14);
    }
    assert_eq!(store.load(&taken.id).await.unwrap().state, json!("first"));
    assert_eq!(store.load(&elsewhere.id).await.unwrap().execution_id, "y");
    assert!(store.list("z").await.unwrap().is_empty());
    let stats = store.commit_stats();
    assert!(stats.largest >= 3, "the saves were grouped: {stats:?}");
}

/// Saves from every kind of caller a tokio program has: a worker of a multi-threaded runtime
/// (the group written on the calling thread), a current-thread runtime (on a blocking
/// thread), and `Handle::block_on` from a thread of the blocking pool, each with concurrent
/// saves so that groups form; every save gets its own dense version.
#[test]
fn saves_from_every_kind_of_caller_are_written_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callers.db");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = multi
        .block_on(SqliteStore::open(SqliteOptions::file(&path)))
        .unwrap();
    let burst = |store: SqliteStore, execution: &'static str| async move {
        let saves = (0..8).map(|i| {
            let store = store.clone();
            async move {
                store
                    .save(&Checkpoint::new(execution, "n", json!(i)))
                    .await
                    .unwrap()
            }
        });
        let mut versions = join_all(saves).await;
        versions.sort_unstable();
        assert_eq!(versions, (1..=8).collect::<Vec<i64>>(), "{execution}");
    };
    // A worker of the multi-threaded runtime.
    multi
        .block_on(multi.spawn(burst(store.clone(), "worker")))
        .unwrap();
    // The multi-threaded runtime's own `block_on`, from this (non-worker) thread.
    multi.block_on(burst(store.clone(), "block_on"));
    // `Handle::block_on` on a thread of the blocking pool.
    let handle = multi.handle().clone();
    let from_blocking = store.clone();
    multi
        .block_on(multi.spawn_blocking(move || {
            handle.block_on(burst(from_blocking, "blocking_pool"));
        }))
        .unwrap();
    // A `LocalSet` driven by the multi-threaded runtime's `block_on`.
    let local = tokio::task::LocalSet::new();
    local.block_on(&multi, burst(store.clone(), "local_set"));
    // A current-thread runtime on another thread, sharing the store.
    let current = store.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(burst(current, "current_thread"));
    })
    .join()
    .unwrap();
    let total = multi.block_on(async {
        let mut total = 0;
        for execution in [
            "worker",
            "block_on",
            "blocking_pool",
            "local_set",
            "current_thread",
        ] {
            total += store.list(execution).await.unwrap().len();
        }
        total
    });
    assert_eq!(total, 40);
    // Pooled connections are closed on the runtime's blocking pool.
    multi.block_on(async move { drop(store) });
}

/// Tasks that each save and then prune their own execution (retention after every save, as
/// adk-graph's executor does): the prunes that find saves waiting join their group and share
/// its commit, each prune removes exactly what it would alone, and every execution ends with
/// its newest checkpoints, under deltas (so prunes rewrite kept deltas inside the groups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prunes_after_saves_join_their_groups_and_keep_the_newest() {
    use checkpoint_core::RetentionPolicy;
    const KEEP: u64 = 3;
    const STEPS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        SqliteOptions::file(dir.path().join("p.db"))
            .min_delta_bytes(0)
            .snapshot_every(8),
    )
    .await
    .unwrap();
    let tasks = (0..8).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            let execution = format!("e{t}");
            let policy = RetentionPolicy::keep_last(KEEP)
                .for_execution(&execution)
                .lazy_flush();
            let mut removed = 0;
            let mut saved = Vec::new();
            for step in 0..STEPS {
                let state = json!({"t": t, "step": step, "pad": vec![step; 40]});
                let cp = Checkpoint::new(&*execution, "n", state);
                let version = store.save(&cp).await.unwrap();
                saved.push(cp.with_version(version));
                removed += store.prune(&policy).await.unwrap();
            }
            (execution, saved, removed)
        })
    });
    for task in join_all(tasks).await {
        let (execution, saved, removed) = task.unwrap();
        assert_eq!(removed, (STEPS as u64) - KEEP, "{execution}");
        let kept = store.list(&execution).await.unwrap();
        let newest = &saved[saved.len() - usize::try_from(KEEP).unwrap()..];
        assert_eq!(kept.len(), newest.len());
        for (got, want) in kept.iter().zip(newest) {
            assert!(
                checkpoint_core::equal::same_checkpoint(got, want),
                "{execution} v{}",
                want.version
            );
        }
    }
    let stats = store.commit_stats();
    assert!(stats.prunes > 0, "some prunes shared a group: {stats:?}");
    assert_eq!(stats.saves, 8 * STEPS as u64);
    assert!(store.verify(None).await.unwrap().damaged.is_empty());
}
