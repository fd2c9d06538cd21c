//! Faults on a real server: restarts and kills under load, connections cut from the server
//! side, an exhausted pool. Every test is bounded in time and count and prints its figures.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, Error, RetentionPolicy};
use checkpoint_postgres::{
    DbPool, DeadpoolPool, GroupCommit, PartitionPeriod, PostgresOptions, PostgresStore,
    RetryPolicy, TableLayout,
};
use serde_json::json;

/// What a writer task saw.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<Checkpoint>,
    errors: usize,
    prunes: usize,
}

/// Starts `tasks` writers that save to their own execution until `stop` is set. Every error
/// must be typed and retryable.
fn writers(
    store: &PostgresStore,
    tasks: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    pruning_writers(store, tasks, stop, None)
}

/// As [`writers`], each save followed by a `lazy_flush` prune of the writer's execution to
/// its newest `keep`, when given (retention after every save).
fn pruning_writers(
    store: &PostgresStore,
    tasks: usize,
    stop: &Arc<AtomicBool>,
    keep: Option<u64>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..tasks)
        .map(|t| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let mut cp =
                        Checkpoint::new(format!("writer-{t}"), "step", json!({"t": t, "i": i}));
                    match store.save(&cp).await {
                        Ok(version) => {
                            cp.version = version;
                            tally.acknowledged.push(cp);
                            let Some(keep) = keep else { continue };
                            let policy = RetentionPolicy::keep_last(keep)
                                .for_execution(format!("writer-{t}"))
                                .lazy_flush();
                            match store.prune(&policy).await {
                                Ok(_) => tally.prunes += 1,
                                Err(err) => {
                                    assert!(
                                        err.is_retryable(),
                                        "a failed prune must be retryable: {err:?}"
                                    );
                                    tally.errors += 1;
                                }
                            }
                        }
                        Err(err) => {
                            assert!(
                                err.is_retryable(),
                                "a failed save must be retryable: {err:?}"
                            );
                            tally.errors += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                tally
            })
        })
        .collect()
}

/// Saves until one succeeds and returns how long that took.
async fn first_success(store: &PostgresStore, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if store
            .save(&Checkpoint::new("probe", "n", json!(null)))
            .await
            .is_ok()
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the store did not recover within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_save_is_lost_across_restarts_and_kills() {
    restarts_and_kills_lose_nothing(TableLayout::Plain).await;
}

/// The same on a table partitioned by each execution's start: its registry of starts and its
/// partitions come through a crash with every acknowledged save.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_save_is_lost_across_restarts_and_kills_when_partitioned_by_start() {
    restarts_and_kills_lose_nothing(TableLayout::time_partitioned(PartitionPeriod::Day)).await;
}

/// The same on the distributed layout (undistributed here), whose saves go alone, each first
/// in its routed form (`Statements::routed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_save_is_lost_across_restarts_and_kills_on_the_distributed_layout() {
    restarts_and_kills_lose_nothing(TableLayout::Distributed).await;
}

async fn restarts_and_kills_lose_nothing(layout: TableLayout) {
    if !support::docker_or_skip("restarting and killing the server") {
        return;
    }
    let server = support::DedicatedServer::start().await;
    let options = PostgresOptions::new(&server.url)
        .unwrap()
        .table_layout(layout)
        .max_connections(16)
        .wait_timeout(Duration::from_secs(2))
        .create_timeout(Duration::from_secs(2))
        .retry(RetryPolicy::default().max_retries(3))
        // The 16 writers' saves travel in shared groups and commits.
        .group_commit(GroupCommit::default());
    let store = PostgresStore::connect(options).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&store, 16, &stop);

    let mut recoveries = Vec::new();
    for (how, stop_args) in [
        ("fast shutdown", &["stop", "-t", "30"][..]),
        ("SIGKILL", &["kill", "-s", "KILL"][..]),
    ] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.docker(stop_args);
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.docker(&["start"]);
        let back = server.wait_ready(Duration::from_secs(60)).await;
        // The same store instance, never re-created.
        let recovered = first_success(&store, Duration::from_secs(30)).await;
        println!("{how}: server back after {back:?}, store saving again {recovered:?} later");
        assert!(
            recovered < Duration::from_secs(10),
            "{how}: recovery took {recovered:?}"
        );
        recoveries.push(recovered);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged = 0;
    let mut errors = 0;
    let mut lost = 0;
    for task in tasks {
        let tally = task.await.expect("writer panicked");
        errors += tally.errors;
        for cp in tally.acknowledged {
            acknowledged += 1;
            match store.load(&cp.id).await {
                Ok(stored) if stored == cp => {}
                other => {
                    lost += 1;
                    eprintln!("lost {}: {other:?}", cp.id);
                }
            }
        }
    }
    println!(
        "{layout:?}: saves acknowledged: {acknowledged}, failed (typed, retryable): {errors}, \
         lost: {lost}, recovery: {recoveries:?}"
    );
    assert!(acknowledged > 100, "the writers made progress");
    if layout == TableLayout::Distributed {
        assert!(
            store.group_commit_stats().is_none(),
            "the distributed layout saves alone"
        );
    } else {
        let groups = store.group_commit_stats().expect("group commit is on");
        println!(
            "groups: {}, mean size {:.1}, largest {}, split {}",
            groups.groups(),
            groups.mean_size(),
            groups.largest(),
            groups.split_groups()
        );
        assert!(groups.largest() >= 2, "saves were coalesced: {groups:?}");
    }
    assert_eq!(lost, 0);
}

/// Retention after every save, committed without waiting for its flush, through a SIGKILL of
/// the server: a prune the crash undoes brings old checkpoints back, and nothing else. Every
/// acknowledged save is there exactly, or the execution holds at least `KEEP` newer rows
/// (only a prune that kept them can have removed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lazy_prunes_after_every_save_lose_no_kept_save_across_a_kill() {
    const KEEP: u64 = 3;
    if !support::docker_or_skip("killing the server under lazy prunes") {
        return;
    }
    let server = support::DedicatedServer::start().await;
    let options = PostgresOptions::new(&server.url)
        .unwrap()
        .max_connections(16)
        .wait_timeout(Duration::from_secs(2))
        .create_timeout(Duration::from_secs(2))
        .retry(RetryPolicy::default().max_retries(3));
    let store = PostgresStore::connect(options).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = pruning_writers(&store, 8, &stop, Some(KEEP));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.docker(&["kill", "-s", "KILL"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.docker(&["start"]);
    server.wait_ready(Duration::from_secs(60)).await;
    first_success(&store, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut acknowledged, mut prunes, mut errors, mut lost, mut back) = (0, 0, 0, 0, 0);
    for task in tasks {
        let tally = task.await.expect("writer panicked");
        errors += tally.errors;
        prunes += tally.prunes;
        let Some(execution) = tally.acknowledged.first().map(|c| c.execution_id.clone()) else {
            continue;
        };
        let stored = store.list(&execution).await.unwrap();
        let stored_versions: Vec<i64> = stored.iter().map(|c| c.version).collect();
        for cp in &tally.acknowledged {
            acknowledged += 1;
            match stored.iter().find(|s| s.id == cp.id) {
                Some(s) => assert_eq!(s, cp, "an acknowledged save changed"),
                None => {
                    let newer = stored_versions.iter().filter(|v| **v > cp.version).count();
                    if (newer as u64) < KEEP {
                        lost += 1;
                        eprintln!("lost {} (v{}): {newer} newer rows", cp.id, cp.version);
                    }
                }
            }
        }
        // Rows a prune had removed that came back: more than KEEP, the extras at the bottom.
        back += stored
            .len()
            .saturating_sub(usize::try_from(KEEP).unwrap() + 1);
    }
    println!(
        "saves acknowledged: {acknowledged}, prunes acknowledged: {prunes}, failed (typed, \
         retryable): {errors}, lost: {lost}, old rows a crash brought back: {back}"
    );
    assert!(
        acknowledged > 100 && prunes > 100,
        "the writers made progress"
    );
    assert_eq!(lost, 0);
}

/// Cuts every connection of the store's pool from the server side.
async fn terminate_sessions(application: &str) -> i64 {
    support::client()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&application],
        )
        .await
        .unwrap()
        .get(0)
}

async fn store_named(
    application: &str,
    options: impl FnOnce(PostgresOptions) -> PostgresOptions,
) -> PostgresStore {
    let url = format!(
        "{}?application_name={application}",
        support::server().await.url
    );
    let base = PostgresOptions::new(&url)
        .unwrap()
        .schema(support::unique_schema("t"));
    PostgresStore::connect(options(base)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cut_by_the_server_are_replaced() {
    let app = support::unique_schema("idle");
    let store = store_named(&app, |o| o.max_connections(4).min_connections(4)).await;
    for i in 0..8 {
        store
            .save(&Checkpoint::new("e", "n", json!(i)))
            .await
            .unwrap();
    }
    let cut = terminate_sessions(&app).await;
    assert!(cut >= 1, "the pool had connections");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        store
            .save(&Checkpoint::new("e", "after", json!(i)))
            .await
            .expect("calls after the cut succeed");
    }
    assert_eq!(store.list("e").await.unwrap().len(), 28);
    println!("cut {cut} idle connections; the next 20 calls all succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn busy_connections_cut_by_the_server_fail_retryably_and_lose_nothing() {
    let app = support::unique_schema("busy");
    let store = store_named(&app, |o| o.max_connections(8)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&store, 8, &stop);
    let mut cut = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cut += terminate_sessions(&app).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut errors) = (0, 0);
    for task in tasks {
        let tally = task.await.expect("writer panicked");
        errors += tally.errors;
        for cp in tally.acknowledged {
            acknowledged += 1;
            assert_eq!(store.load(&cp.id).await.unwrap(), cp);
        }
    }
    store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();
    println!("cut {cut} busy connections: {acknowledged} saves acknowledged and present, {errors} retryable failures");
    assert!(cut > 0 && acknowledged > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exhausted_pool_times_out_typed_and_never_hangs() {
    let wait = Duration::from_millis(300);
    let options = support::options()
        .await
        .max_connections(4)
        .wait_timeout(wait);
    let pool = DeadpoolPool::from_options(&options).unwrap();
    let store = PostgresStore::with_pool(pool.clone(), &options)
        .await
        .unwrap();
    // Open all four connections first, so callers compete for connections, not for their
    // creation (SCRAM authentication is slow in debug builds).
    let warm: Vec<_> = futures::future::join_all((0..4).map(|_| pool.inner().get())).await;
    drop(warm);

    // One caller holds a connection in a long transaction.
    let held = pool.begin().await.unwrap();
    let slowest = Arc::new(AtomicUsize::new(0));
    let calls = (0..64).map(|i| {
        let store = store.clone();
        let slowest = slowest.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = store
                .save(&Checkpoint::new(format!("e{i}"), "n", json!(i)))
                .await;
            let took = started.elapsed().as_millis() as usize;
            slowest.fetch_max(took, Ordering::Relaxed);
            result
        })
    });
    let results = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(calls))
        .await
        .expect("no call hangs");
    drop(held);
    let (mut ok, mut timed_out) = (0, 0);
    for result in results {
        match result.expect("caller panicked") {
            Ok(_) => ok += 1,
            Err(Error::Unavailable { message, .. }) => {
                assert!(message.contains("wait timeout"), "{message}");
                timed_out += 1;
            }
            Err(other) => panic!("expected success or a typed timeout, got {other:?}"),
        }
    }
    let slowest = slowest.load(Ordering::Relaxed);
    println!("pool of 4 (one held), 64 callers: {ok} succeeded, {timed_out} timed out; slowest {slowest} ms");
    assert_eq!(ok + timed_out, 64);
    assert!(ok > 0);
    // Each caller waits for the pool at most once (a pool timeout is not retried), then runs one
    // statement.
    assert!(slowest < 5_000, "slowest call {slowest} ms");

    // Every connection held: each caller fails with a typed timeout after the configured wait.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.begin().await.unwrap());
    }
    let waits = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = store.load(&format!("id-{i}")).await;
            (started.elapsed(), result)
        })
    });
    let waits = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(waits))
        .await
        .expect("no call hangs");
    for joined in waits {
        let (took, result) = joined.expect("caller panicked");
        assert!(
            matches!(&result, Err(Error::Unavailable { .. })),
            "{result:?}"
        );
        assert!(result.unwrap_err().is_retryable());
        assert!(
            took >= wait && took < wait + Duration::from_secs(2),
            "waited {took:?}"
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    store
        .save(&Checkpoint::new("after", "n", json!(0)))
        .await
        .unwrap();
    println!(
        "all connections held: 16 callers timed out after the {wait:?} wait, then calls succeeded"
    );
}
