//! The time-partitioned layout (`TableLayout::TimePartitioned`): which statements touch one
//! partition, partitions made ahead, retention by dropping partitions (alone and beside live
//! saves), and the refusals of its maintenance calls. The whole contract is checked by
//! `conformance.rs::by_start` and `::grouped`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{
    GroupCommit, PartitionPeriod, PostgresOptions, PostgresStore, SchemaError, TableLayout,
    MAX_PARTITIONS_AHEAD, MAX_PARTITIONS_PER_CALL,
};
use proptest::prelude::*;
use serde_json::json;
use time::{Duration as Span, OffsetDateTime};

fn by_day() -> TableLayout {
    TableLayout::time_partitioned(PartitionPeriod::Day)
}

async fn store_on(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect(options.table_layout(by_day()))
        .await
        .expect("connect")
}

async fn store() -> PostgresStore {
    store_on(support::options().await).await
}

/// Midnight UTC of today, by the server's clock.
async fn today(client: &tokio_postgres::Client) -> OffsetDateTime {
    client
        .query_one(
            "SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// 200 executions of 100 checkpoints (`exec-0` … `exec-199`, ids `id-0` … `id-19999`), whose
/// starts are spread over today and the five days before it (`exec-k` started `k % 6` days
/// ago, at 01:00), with their partitions: the rows a table holds after a week of work.
async fn seed(store: &PostgresStore, client: &tokio_postgres::Client) -> OffsetDateTime {
    let today = today(client).await;
    store
        .create_partitions(today - Span::days(5), today)
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {executions} (execution_id, started)
             SELECT 'exec-' || k, {today} - make_interval(days => k % 6) + interval '1 hour'
               FROM generate_series(0, 199) AS k;
             INSERT INTO {table} (id, execution_id, node_name, state, metadata, timestamp,
                                  version, execution_start)
             SELECT 'id-' || g, 'exec-' || (g / 100), 'n', '{{\"a\": 1}}', '{{}}',
                    now() - make_interval(secs => g), g % 100 + 1,
                    {today} - make_interval(days => (g / 100) % 6) + interval '1 hour'
               FROM generate_series(0, 19999) AS g;
             ANALYZE {table};",
            executions = store
                .table()
                .qualify(&format!("{}_executions", store.table().table())),
            table = store.table().quoted(),
            today = format_args!("'{today}'::timestamptz"),
        ))
        .await
        .unwrap();
    today
}

/// Points `client`'s unqualified names at `store`'s schema, as the plan guards prepare them.
async fn in_schema_of(client: &tokio_postgres::Client, store: &PostgresStore) {
    let schema = store.table().schema().expect("each test's own schema");
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn statements_keyed_by_an_execution_read_one_partition() {
    let store = store().await;
    let client = support::client().await;
    seed(&store, &client).await;
    let table = store.table().table().to_owned();
    in_schema_of(&client, &store).await;
    let s = store.statements();
    let mut keyed = support::execution_keyed(s);
    keyed.extend([
        ("dependents", &s.dependents, "'exec-5', 3"),
        // The append reads its execution's highest version in one partition, and writes there.
        (
            "save",
            &s.save,
            "'new-id', 'exec-5', 'n', '{}', '{}', now(), 0, NULL, NULL, NULL, NULL, 7, 0, 90",
        ),
    ]);
    for (name, sql, args) in keyed {
        for (mode, read) in ["custom", "generic"]
            .iter()
            .zip(support::partitions_read(&client, &table, name, sql, args).await)
        {
            assert_eq!(read.len(), 1, "{name} ({mode} plan) reads {read:?}");
        }
    }
    // By id alone, the partition is unknown: every one is probed (one index probe each).
    let partitions = store.partitions().await.unwrap().len();
    assert_eq!(partitions, 6 + 2, "five days back, today, and two ahead");
    for (name, sql, args) in [
        ("load", &s.load, "'id-500'"),
        ("id_executions", &s.id_executions, "'id-500'"),
    ] {
        let read = support::partitions_read(&client, &table, name, sql, args).await;
        assert_eq!(read[0].len(), partitions, "{name}: {read:?}");
    }
    // Once the execution is known (`delete` finds it first), one partition.
    for (name, sql, args) in [
        ("delete", &s.delete, "'id-500', 'exec-5'"),
        ("load_in", &s.load_in, "'exec-5', 'id-500'"),
        ("lock_row", &s.lock_row, "'id-500', 'exec-5'"),
    ] {
        let read = support::partitions_read(&client, &table, name, sql, args).await;
        assert!(read.iter().all(|r| r.len() == 1), "{name}: {read:?}");
    }
}

/// An append reads its execution's highest version among the rows at or above the version
/// this store last appended (its floor): under generic plans the server would otherwise read
/// every row of the execution. A floor past the highest version (the newest rows removed behind
/// the store's back) reads them all and still numbers exactly; so does one left behind by
/// another writer's appends.
#[tokio::test]
async fn an_append_reads_the_rows_above_its_floor_and_numbers_exactly_whatever_the_floor() {
    let options = support::options().await;
    let store = store_on(options.clone()).await;
    let batch: Vec<Checkpoint> = (0..300)
        .map(|i| Checkpoint::new("long", "n", json!({ "i": i })))
        .collect();
    store.save_batch(&batch).await.unwrap();
    assert_eq!(
        store
            .save(&Checkpoint::new("long", "n", json!(300)))
            .await
            .unwrap(),
        301
    );

    // The rows the append's read returns with its floor at the top, under custom and generic
    // plans (without one, a generic plan may aggregate every row of the execution).
    let client = support::client().await;
    let table = store.table().quoted();
    let rows_read = |floor: i64| {
        let (client, sql) = (&client, &store.statements().save);
        async move {
            let args = format!(
                "'probe', 'long', 'n', '{{}}', '{{}}', now(), 0, NULL, NULL, NULL, NULL, 7, 0, \
                 {floor}"
            );
            let plans = support::prepared_plans(
                client,
                &format!("floor_{floor}"),
                sql,
                &args,
                "ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF",
            )
            .await;
            plans
                .into_iter()
                .map(|(_, plan)| {
                    // The first scan of the execution's rows (the append's read).
                    let scan = plan
                        .iter()
                        .find(|l| l.contains(" Scan") && !l.contains("never executed"))
                        .unwrap_or_else(|| panic!("no scan: {plan:?}"));
                    let rows = scan.split("rows=").nth(1).unwrap_or("");
                    rows.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or_else(|| panic!("no row count: {scan}"))
                })
                .collect::<Vec<_>>()
        }
    };
    in_schema_of(&client, &store).await;
    for read in rows_read(301).await {
        assert!(read <= 1, "with the floor at the top: {read} rows");
    }

    // The two newest rows removed behind this store: its floor (301) is past the highest.
    client
        .batch_execute(&format!(
            "DELETE FROM {table} WHERE execution_id = 'long' AND version >= 300"
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .save(&Checkpoint::new("long", "n", json!("a")))
            .await
            .unwrap(),
        300
    );
    // Another writer appends: this store's floor is left behind, and still a lower bound.
    let other = store_on(options).await;
    for expected in 301..=303 {
        let cp = Checkpoint::new("long", "n", json!(expected));
        assert_eq!(other.save(&cp).await.unwrap(), expected);
    }
    assert_eq!(
        store
            .save(&Checkpoint::new("long", "n", json!("b")))
            .await
            .unwrap(),
        304
    );
    // A clear forgets the floor; the execution starts again at 1.
    store.clear("long").await.unwrap();
    assert_eq!(
        store
            .save(&Checkpoint::new("long", "n", json!("c")))
            .await
            .unwrap(),
        1
    );
    let versions: Vec<i64> = store
        .list("long")
        .await
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, [1]);
}

#[tokio::test]
async fn retention_drops_whole_partitions_with_their_executions_and_nothing_else() {
    let store = store().await;
    let client = support::client().await;
    let today = seed(&store, &client).await;
    let current = Checkpoint::new("exec-now", "n", json!({"kept": true}));
    store.save(&current).await.unwrap();

    // Everything that started more than two days before today goes: days -5 to -3.
    let dropped = store
        .drop_partitions_before(today - Span::days(2))
        .await
        .unwrap();
    let names: Vec<_> = dropped.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(dropped
        .partitions
        .iter()
        .all(|p| p.to <= today - Span::days(2)));
    assert!(dropped.partitions.windows(2).all(|w| w[0].to <= w[1].from));
    // Executions 3, 4, 5, 9, 10, 11, … : a third of 200.
    assert_eq!(dropped.executions, 99);

    for k in 0..200 {
        let days_ago = k % 6;
        let history = store.list(&format!("exec-{k}")).await.unwrap();
        if days_ago >= 3 {
            assert!(history.is_empty(), "exec-{k} started {days_ago} days ago");
            assert_eq!(store.latest(&format!("exec-{k}")).await.unwrap(), None);
        } else {
            assert_eq!(history.len(), 100, "exec-{k} started {days_ago} days ago");
        }
    }
    assert_eq!(
        store.load(&current.id).await.unwrap(),
        current.clone().with_version(1)
    );
    assert!(matches!(
        store.load("id-300").await,
        Err(Error::NotFound { .. })
    ));
    // An id of a dropped execution is free again, and a dropped execution starts afresh,
    // at version 1, in today's partition.
    let again = Checkpoint::new("exec-3", "n", json!(1)).with_id("id-300");
    assert_eq!(store.save(&again).await.unwrap(), 1);
    assert_eq!(
        store.list("exec-3").await.unwrap(),
        vec![again.with_version(1)]
    );

    // Nothing is left to drop before the same cutoff.
    let none = store
        .drop_partitions_before(today - Span::days(2))
        .await
        .unwrap();
    assert!(
        none.partitions.is_empty() && none.executions == 0,
        "{none:?}"
    );
    let left: Vec<_> = store.partitions().await.unwrap();
    assert_eq!(left.len(), 3 + 2, "{left:?}");
    assert!(left.iter().all(|p| p.from >= today - Span::days(2)));
    store.analyze().await.unwrap();
}

#[tokio::test]
async fn maintenance_refuses_bad_requests_and_changes_nothing() {
    let store = store().await;
    let client = support::client().await;
    let today = today(&client).await;
    let before = store.partitions().await.unwrap();
    assert_eq!(before.len(), 3, "today and two ahead: {before:?}");

    let err = store
        .drop_partitions_before(OffsetDateTime::now_utc() + Span::days(1))
        .await
        .unwrap_err();
    assert!(err.is_invalid_field("cutoff"), "{err}");
    let err = store.create_partitions(today, today).await.unwrap_err();
    assert!(err.is_invalid_field("to"), "{err}");
    let too_many = i64::try_from(MAX_PARTITIONS_PER_CALL).unwrap() + 1;
    let err = store
        .create_partitions(today - Span::days(too_many), today)
        .await
        .unwrap_err();
    assert!(err.is_invalid_field("to"), "{err}");
    assert_eq!(store.partitions().await.unwrap(), before);

    // Idempotent: what exists is not made again.
    assert!(store.ensure_partitions().await.unwrap().is_empty());

    let plain = support::store().await;
    for err in [
        plain.partitions().await.unwrap_err(),
        plain.ensure_partitions().await.unwrap_err(),
        plain
            .create_partitions(today, today + Span::days(1))
            .await
            .unwrap_err(),
        plain.drop_partitions_before(today).await.unwrap_err(),
    ] {
        assert!(err.is_invalid_field("table_layout"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_make_each_partition_once() {
    let options = support::options()
        .await
        .table_layout(TableLayout::time_partitioned(PartitionPeriod::Week))
        .partitions_ahead(5);
    let stores =
        futures::future::join_all((0..6).map(|_| PostgresStore::connect(options.clone()))).await;
    let stores: Vec<_> = stores.into_iter().map(|s| s.expect("connect")).collect();
    let partitions = stores[0].partitions().await.unwrap();
    assert_eq!(partitions.len(), 6, "{partitions:?}");
    assert!(partitions.windows(2).all(|w| w[0].to == w[1].from));
    assert!(partitions
        .iter()
        .all(|p| p.from.weekday() == time::Weekday::Monday && p.to - p.from == Span::days(7)));
}

#[tokio::test]
async fn a_save_without_its_partition_fails_clearly_until_the_partition_is_made() {
    let store = store().await;
    let client = support::client().await;
    let today = today(&client).await;
    let name = store
        .partitions()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.from == today)
        .unwrap()
        .name;
    client
        .batch_execute(&format!("DROP TABLE {}", store.table().qualify(&name)))
        .await
        .unwrap();
    let cp = Checkpoint::new("exec", "n", json!(1));
    let err = store.save(&cp).await.unwrap_err();
    assert!(err.to_string().contains("ensure_partitions"), "{err}");
    assert_eq!(store.ensure_partitions().await.unwrap(), vec![name]);
    assert_eq!(store.save(&cp).await.unwrap(), 1);
}

/// A writer that goes around the store takes each row's start from `<table>_start`, as the
/// documented copy does (schema 6 dropped the foreign key that refused any other start): its
/// rows land beside the store's, in the execution's partition, and read back in order.
#[tokio::test]
async fn a_row_written_around_the_store_takes_its_start_from_the_registry() {
    let store = store().await;
    store
        .save(&Checkpoint::new("exec", "n", json!(1)).with_id("a"))
        .await
        .unwrap();
    let client = support::client().await;
    let schema = store.table().schema().unwrap().to_owned();
    client
        .batch_execute(&format!(
            "INSERT INTO {} (id, execution_id, node_name, state, timestamp, version,
                             execution_start)
             VALUES ('b', 'exec', 'n', '2', now(), 2, \"{schema}\".checkpoints_start('exec'));
             INSERT INTO {} (id, execution_id, node_name, state, timestamp, version,
                             execution_start)
             VALUES ('c', 'other', 'n', '3', now(), 1, \"{schema}\".checkpoints_start('other'))",
            store.table().quoted(),
            store.table().quoted()
        ))
        .await
        .unwrap();
    let ids: Vec<String> = store
        .list("exec")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(store.load_in("other", "c").await.unwrap().state, json!(3));
    let partitions: i64 = client
        .query_one(
            &format!(
                "SELECT count(DISTINCT tableoid) FROM {} WHERE execution_id = 'exec'",
                store.table().quoted()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(partitions, 1);
    // The store's next save continues after the row written around it.
    let next = store
        .save(&Checkpoint::new("exec", "n", json!(4)))
        .await
        .unwrap();
    assert_eq!(next, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_raced_into_many_executions_is_a_checkpoint_of_each() {
    support::race_one_id_into_many_executions(&store().await).await;
}

#[tokio::test]
async fn a_table_made_with_one_period_is_refused_with_another_or_another_layout() {
    let options = support::options().await;
    let made = store_on(options.clone()).await.table().layout();
    for layout in [
        TableLayout::time_partitioned(PartitionPeriod::Month),
        TableLayout::Plain,
        TableLayout::hash_partitioned(4).unwrap(),
    ] {
        // Refused alike whether the store may migrate or only checks the schema.
        for migrate in [true, false] {
            let err =
                PostgresStore::connect(options.clone().table_layout(layout).auto_migrate(migrate))
                    .await
                    .unwrap_err();
            let Some(SchemaError::LayoutMismatch {
                table,
                found,
                requested,
            }) = SchemaError::of(&err)
            else {
                panic!("{layout:?}: {err:?}")
            };
            assert!(table.ends_with(".\"checkpoints\""), "{table}");
            assert_eq!((*found, *requested), (made, layout));
        }
    }
}

/// Saves go on while old partitions are dropped: the drop waits for the saves in flight and
/// they wait for it, so every acknowledged save of a current execution is kept, and a save to
/// an execution being dropped either lands before (and goes with it) or starts it afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_beside_live_saves_keeps_every_acknowledged_current_save() {
    let store = store().await;
    let client = support::client().await;
    let today = seed(&store, &client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Writer 0 appends to an execution whose partition is being dropped.
                    let execution = if w == 0 {
                        "exec-5".to_owned()
                    } else {
                        format!("live-{w}")
                    };
                    let cp = Checkpoint::new(execution, "n", json!({"w": w, "i": i}));
                    let version = store.save(&cp).await.expect("a save beside retention");
                    acknowledged.push((cp, version));
                    i += 1;
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = store
        .drop_partitions_before(today - Span::days(2))
        .await
        .unwrap();
    assert_eq!(dropped.partitions.len(), 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.unwrap());
    }
    for (w, acknowledged) in results.iter().enumerate() {
        assert!(!acknowledged.is_empty(), "writer {w} made progress");
        if w == 0 {
            // What survives of exec-5 is the fresh start: versions 1, 2, … of the saves made
            // after the drop, in one partition.
            let history = store.list("exec-5").await.unwrap();
            let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
            assert_eq!(
                versions,
                (1..=i64::try_from(history.len()).unwrap()).collect::<Vec<_>>()
            );
            let after: Vec<_> = acknowledged
                .iter()
                .skip_while(|(_, v)| *v > 100)
                .map(|(cp, v)| cp.clone().with_version(*v))
                .collect();
            assert_eq!(history, after);
        } else {
            for (cp, version) in acknowledged {
                let stored = store.load(&cp.id).await.unwrap();
                assert_eq!(stored.version, *version);
                assert_eq!(stored.state, cp.state);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn partitions_ahead_is_checked_at_connect(ahead in any::<u16>()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Refused before any connection is made: nothing listens on this port.
        let options = PostgresOptions::new("postgres://nobody@127.0.0.1:1/none")
            .unwrap()
            .create_timeout(Duration::from_millis(200))
            .table_layout(by_day())
            .partitions_ahead(ahead);
        let err = runtime.block_on(PostgresStore::connect(options)).unwrap_err();
        let in_range = (1..=MAX_PARTITIONS_AHEAD).contains(&ahead);
        prop_assert_eq!(!err.is_invalid_field("partitions_ahead"), in_range, "{}", err);
        if in_range {
            prop_assert!(matches!(err, Error::Unavailable { .. }), "{:?}", err);
        }
    }
}

#[tokio::test]
async fn without_upkeep_the_store_makes_no_partition_until_asked() {
    let options = support::options()
        .await
        .table_layout(by_day())
        .partition_upkeep(false);
    let store = PostgresStore::connect(options).await.unwrap();
    assert!(store.partitions().await.unwrap().is_empty());
    let cp = Checkpoint::new("exec", "n", json!(1));
    let err = store.save(&cp).await.unwrap_err();
    assert!(err.to_string().contains("ensure_partitions"), "{err}");
    assert_eq!(store.ensure_partitions().await.unwrap().len(), 3);
    assert_eq!(store.save(&cp).await.unwrap(), 1);
}

#[tokio::test]
async fn the_layout_a_table_was_made_with_is_read_back() {
    let base = support::options().await;
    assert_eq!(PostgresStore::table_layout_of(&base).await.unwrap(), None);
    for layout in [
        TableLayout::Plain,
        TableLayout::hash_partitioned(3).unwrap(),
        TableLayout::time_partitioned(PartitionPeriod::Day),
        TableLayout::time_partitioned(PartitionPeriod::Week),
        TableLayout::time_partitioned(PartitionPeriod::Month),
    ] {
        let options = support::options().await;
        PostgresStore::connect(options.clone().table_layout(layout))
            .await
            .unwrap();
        // Asked with any layout, the answer is the table's.
        let asked = options.table_layout(TableLayout::Plain);
        assert_eq!(
            PostgresStore::table_layout_of(&asked).await.unwrap(),
            Some(layout)
        );
    }
}

/// Retention waits a bounded time for the table's lock, so a long transaction never queues
/// every reader and writer behind it; it then fails with the server's lock error (SQLSTATE
/// 55P03), retryable, with nothing dropped.
#[tokio::test]
async fn retention_behind_a_long_transaction_gives_up_and_drops_nothing() {
    let store = store().await;
    let client = support::client().await;
    let today = seed(&store, &client).await;
    let before = store.partitions().await.unwrap();
    // A reader that keeps its transaction open holds a lock the drop must wait for.
    let reader = support::client().await;
    reader
        .batch_execute(&format!(
            "BEGIN; SELECT count(*) FROM {};",
            store.table().quoted()
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = store
        .drop_partitions_before(today - Span::days(2))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(30), "gave up after {waited:?}");
    assert!(err.to_string().contains("lock"), "{err}");
    assert_eq!(
        checkpoint_postgres::DbError::of(&err).and_then(|db| db.code()),
        Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(store.partitions().await.unwrap(), before);
    assert_eq!(store.list("exec-5").await.unwrap().len(), 100);
    reader.batch_execute("COMMIT").await.unwrap();
    // Once the reader is done, the same call goes through.
    let dropped = store
        .drop_partitions_before(today - Span::days(2))
        .await
        .unwrap();
    assert_eq!(dropped.partitions.len(), 3);
}

/// Encryption at rest works on the layout: the payloads are sealed, the rows partitioned.
#[tokio::test]
async fn sealed_states_round_trip_on_the_layout() {
    let key = checkpoint_postgres::EncryptionKey::new("k1", &[7; 32]).unwrap();
    let options = support::options()
        .await
        .encryption(checkpoint_postgres::Encryption::new(key));
    let store = store_on(options).await;
    let mut saved = Vec::new();
    for i in 0..20 {
        let cp = Checkpoint::new(
            "sealed",
            "n",
            json!({"secret": "plain-text-marker", "i": i}),
        );
        let version = store.save(&cp).await.unwrap();
        saved.push(cp.with_version(version));
    }
    assert_eq!(store.list("sealed").await.unwrap(), saved);
    assert_eq!(store.latest("sealed").await.unwrap().as_ref(), saved.last());
    let client = support::client().await;
    let leaked: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE state::text LIKE '%plain-text-marker%' \
                 OR encode(payload, 'escape') LIKE '%plain-text-marker%'",
                store.table().quoted()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no state is stored in plain text");
}

#[tokio::test]
async fn a_batch_of_100_000_needs_no_lock_per_row() {
    support::a_batch_of_100_000_is_stored(&store().await).await;
}

/// `docs/scaling.md`, "Moving a plain table to the time-partitioned layout", steps 2 and 3.
#[tokio::test]
async fn the_documented_copy_of_a_million_rows_succeeds() {
    let store = store().await;
    let client = support::client().await;
    let today = today(&client).await;
    store
        .create_partitions(today - Span::days(13), today)
        .await
        .unwrap();
    support::the_documented_copy_of_a_million_rows_succeeds(
        &store,
        "INSERT INTO \"{new}\".checkpoints_executions (execution_id, started)
           SELECT execution_id, min(\"timestamp\") FROM \"{old}\".checkpoints GROUP BY execution_id;
         INSERT INTO \"{new}\".checkpoints (id, execution_id, node_name, state, metadata,
             \"timestamp\", version, parent_id, payload, base_version, base_hash, state_hash,
             depth, execution_start)
           SELECT c.id, c.execution_id, c.node_name, c.state, c.metadata, c.\"timestamp\",
             c.version, c.parent_id, c.payload, c.base_version, c.base_hash, c.state_hash,
             c.depth, x.started
           FROM \"{old}\".checkpoints c
           JOIN \"{new}\".checkpoints_executions x USING (execution_id);",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_retention_drops_the_partitions_past_its_age() {
    let options = support::options().await;
    let quiet = store_on(options.clone()).await;
    let client = support::client().await;
    let today = seed(&quiet, &client).await;
    let current = Checkpoint::new("exec-now", "n", json!({"kept": true}));
    quiet.save(&current).await.unwrap();

    let schedule = checkpoint_core::retention::RetentionSchedule::new(
        checkpoint_core::RetentionPolicy::older_than(Duration::from_secs(2 * 24 * 3600)),
        Duration::from_millis(40),
    );
    let scheduled = store_on(options.retention(schedule)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Days -5 to -3 end at or before now minus two days; day -2 does not.
    while quiet.partitions().await.unwrap().first().map(|p| p.from) != Some(today - Span::days(2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            quiet.partitions().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in 0..200 {
        let days_ago = k % 6;
        let history = quiet.list(&format!("exec-{k}")).await.unwrap();
        if days_ago >= 3 {
            assert!(history.is_empty(), "exec-{k} started {days_ago} days ago");
        } else {
            assert_eq!(history.len(), 100, "exec-{k} started {days_ago} days ago");
        }
    }
    assert_eq!(
        quiet.load(&current.id).await.unwrap(),
        current.with_version(1)
    );
    drop(scheduled);
}

/// One save to each of `executions` at once: one group, with group commit grouping every save.
async fn round(store: &PostgresStore, executions: &[String], step: usize) {
    let checkpoints: Vec<Checkpoint> = executions
        .iter()
        .map(|e| Checkpoint::new(e.as_str(), "n", json!({"step": step})))
        .collect();
    for saved in futures::future::join_all(checkpoints.iter().map(|c| store.save(c))).await {
        saved.unwrap();
    }
}

/// Once the store has learnt where executions live, a save, or a group of executions that all
/// started in one partition's period, is written straight to that partition. A start changed
/// behind the store's back (the registry now says another day) makes the partition refuse it,
/// and it then goes through the partitioned table: every save lands in the partition of its
/// execution's start, numbered in order, and nothing is lost or doubled. With every save
/// grouped, and with group commit off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_go_straight_to_their_partition_and_back_when_it_refuses() {
    for group in [
        GroupCommit::default().lone_saves_grouped(true),
        GroupCommit::disabled(),
    ] {
        straight_to_the_partition(group).await;
    }
}

async fn straight_to_the_partition(group: GroupCommit) {
    let grouped = group.is_enabled();
    let store = store_on(support::options().await.group_commit(group)).await;
    let client = support::client().await;
    let schema = store.table().schema().unwrap().to_owned();
    let executions: Vec<String> = (0..8).map(|e| format!("g{e}")).collect();
    for step in 1..=5 {
        round(&store, &executions, step).await;
    }
    if grouped {
        let stats = store.group_commit_stats().unwrap();
        assert!(stats.partition_groups() > 0, "{stats:?}");
        assert_eq!(stats.rerouted_groups(), 0, "{stats:?}");
    }
    for e in &executions {
        let versions: Vec<i64> = store
            .list(e)
            .await
            .unwrap()
            .iter()
            .map(|c| c.version)
            .collect();
        assert_eq!(versions, [1, 2, 3, 4, 5], "{e}");
    }

    // g0's start moves to tomorrow behind the store's back (its rows cleared first).
    assert_eq!(store.clear("g0").await.unwrap(), 5);
    client
        .execute(
            &format!(
                "UPDATE \"{schema}\".checkpoints_executions \
                 SET started = started + interval '1 day' WHERE execution_id = 'g0'"
            ),
            &[],
        )
        .await
        .unwrap();
    let before = store.group_commit_stats();
    round(&store, &executions, 6).await;
    if let (Some(after), Some(before)) = (store.group_commit_stats(), before) {
        let after = after.since(&before);
        assert!(after.rerouted_groups() > 0, "{after:?}");
    }
    let rows = client
        .query(
            &format!(
                "SELECT c.execution_id, c.version, c.tableoid::regclass::text, \
                 c.execution_start = e.started FROM \"{schema}\".checkpoints c \
                 JOIN \"{schema}\".checkpoints_executions e USING (execution_id) \
                 WHERE c.version >= 6 OR c.execution_id = 'g0' ORDER BY 1"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), executions.len());
    let today = today(&client).await;
    for row in &rows {
        let execution: String = row.get(0);
        let version: i64 = row.get(1);
        let partition: String = row.get(2);
        let own_start: bool = row.get(3);
        assert!(own_start, "{execution}: stored with its execution's start");
        let day = if execution == "g0" {
            today + Span::days(1)
        } else {
            today
        };
        let suffix = format!(
            "{:04}{:02}{:02}",
            day.year(),
            u8::from(day.month()),
            day.day()
        );
        assert!(partition.ends_with(&suffix), "{execution}: {partition}");
        assert_eq!(version, if execution == "g0" { 1 } else { 6 });
    }
    // The next groups learn g0's new start; saves carry on in order everywhere.
    round(&store, &executions, 7).await;
    round(&store, &executions, 8).await;
    assert_eq!(store.latest("g0").await.unwrap().unwrap().version, 3);
    assert_eq!(store.latest("g7").await.unwrap().unwrap().version, 8);

    // Today's partition is detached (as pg_partman's retention with keep_table does): a save
    // of an execution the store knows lives there is never acknowledged into the detached
    // table, and is refused as the partitioned table refuses it (no partition for its start).
    let suffix = format!(
        "{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    let leaf = format!("\"{schema}\".\"checkpoints_p{suffix}\"");
    let parent = format!("\"{schema}\".checkpoints");
    let bound: String = client
        .query_one(
            &format!("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = '{leaf}'::regclass"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let count = |table: String| {
        let client = &client;
        async move {
            let n: i64 = client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    client
        .batch_execute(&format!("ALTER TABLE {parent} DETACH PARTITION {leaf}"))
        .await
        .unwrap();
    let before = count(leaf.clone()).await;
    let refused = store
        .save(&Checkpoint::new("g7", "n", json!({"step": 9})))
        .await
        .unwrap_err();
    assert!(!refused.to_string().is_empty());
    assert_eq!(
        count(leaf.clone()).await,
        before,
        "nothing went into the detached table"
    );
    client
        .batch_execute(&format!(
            "ALTER TABLE {parent} ATTACH PARTITION {leaf} {bound}"
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .save(&Checkpoint::new("g7", "n", json!({"step": 9})))
            .await
            .unwrap(),
        9,
        "once attached again, saves carry on"
    );
}
