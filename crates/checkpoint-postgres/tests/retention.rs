//! Scheduled retention (`PostgresOptions::retention`) on the plain table: beside live writers
//! it removes only what its policy says and catches up once they stop, it ends with the last
//! clone of the store, and a bad schedule is refused before anything is made. The
//! time-partitioned layout's pass (partitions dropped) is in `partitioned.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::conformance::scheduled;
use checkpoint_core::retention::RetentionSchedule;
use checkpoint_core::{Error, RetentionPolicy};
use checkpoint_postgres::PostgresStore;

async fn stores() -> (PostgresStore, PostgresStore) {
    let options = support::options().await;
    let quiet = PostgresStore::connect(options.clone())
        .await
        .expect("connect");
    let scheduled = PostgresStore::connect(options.retention(scheduled::schedule()))
        .await
        .expect("connect with a schedule");
    (scheduled, quiet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retention_beside_live_writers() {
    let (store, quiet) = stores().await;
    scheduled::beside_live_writers(Arc::new(store), Arc::new(quiet)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retention_stops_with_the_store() {
    let (store, quiet) = stores().await;
    scheduled::stops_when_dropped(Arc::new(store), Arc::new(quiet)).await;
}

#[tokio::test]
async fn a_bad_schedule_is_refused_at_connect() {
    let options = support::options().await;
    let table = options.table_name().expect("a valid name");
    let schema = table.schema().expect("a schema").to_owned();
    let every = Duration::from_secs(60);
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
            RetentionSchedule::new(RetentionPolicy::keep_last(1), Duration::ZERO),
            "retention",
        ),
    ] {
        let err = PostgresStore::connect(options.clone().retention(schedule))
            .await
            .expect_err("refused");
        assert!(err.is_invalid_field(field), "{err}");
        assert!(matches!(err, Error::InvalidInput { .. }));
    }
    let client = support::client().await;
    let made = client
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(made, 0, "nothing was created for a refused schedule");
}
