//! Scheduled retention on a file: beside live writers it removes only what its policy says and
//! catches up once they stop, and it ends with the last clone of the store.

use std::sync::Arc;

use checkpoint_core::conformance::scheduled;
use checkpoint_core::retention::RetentionSchedule;
use checkpoint_core::{Error, RetentionPolicy};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};

async fn stores(path: &std::path::Path) -> (SqliteStore, SqliteStore) {
    let scheduled = SqliteStore::open(SqliteOptions::file(path).retention(scheduled::schedule()))
        .await
        .expect("open with a schedule");
    let quiet = SqliteStore::open(SqliteOptions::file(path))
        .await
        .expect("open");
    (scheduled, quiet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retention_beside_live_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, quiet) = stores(&dir.path().join("checkpoints.db")).await;
    scheduled::beside_live_writers(Arc::new(store), Arc::new(quiet)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retention_stops_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, quiet) = stores(&dir.path().join("checkpoints.db")).await;
    scheduled::stops_when_dropped(Arc::new(store), Arc::new(quiet)).await;
}

#[tokio::test]
async fn a_bad_schedule_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    let every = std::time::Duration::from_secs(60);
    for (schedule, field) in [
        (
            RetentionSchedule::new(RetentionPolicy::default(), every),
            "retention",
        ),
        (
            RetentionSchedule::new(RetentionPolicy::keep_last(0), every),
            "keep_last",
        ),
        (
            RetentionSchedule::new(RetentionPolicy::keep_last(1), every).pause(every),
            "retention",
        ),
    ] {
        let err = SqliteStore::open(SqliteOptions::file(&path).retention(schedule))
            .await
            .expect_err("refused");
        assert!(err.is_invalid_field(field), "{err}");
        assert!(matches!(err, Error::InvalidInput { .. }));
    }
    assert!(!path.exists(), "nothing was created for a refused schedule");
}
