//! The hash-partitioned layout (`TableLayout::HashPartitioned`), the local stand-in for a table
//! distributed by `execution_id` in Citus: which statements touch one partition (and would be
//! routed to one shard), and an id's uniqueness across partitions under racing saves.

mod support;

use checkpoint_postgres::{PostgresStore, TableLayout};

const PARTITIONS: u16 = 8;

async fn store() -> PostgresStore {
    let options = support::options()
        .await
        .table_layout(TableLayout::hash_partitioned(PARTITIONS).unwrap());
    PostgresStore::connect(options).await.expect("connect")
}

#[tokio::test]
async fn statements_keyed_by_an_execution_read_one_partition() {
    let store = store().await;
    let table = store.table().table().to_owned();
    let client = support::client().await;
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\";
             INSERT INTO {quoted} (id, execution_id, node_name, state, metadata, timestamp, version)
             SELECT 'id-' || g, 'exec-' || (g / 100), 'n', '{{\"a\": 1}}', '{{}}',
                    now() - make_interval(secs => g), g % 100 + 1
               FROM generate_series(0, 19999) AS g;
             ANALYZE {quoted};",
            schema = store.table().schema().unwrap(),
            quoted = store.table().quoted(),
        ))
        .await
        .unwrap();
    let s = store.statements();
    let keyed = support::execution_keyed(s);
    for (name, sql, args) in keyed {
        for (mode, read) in ["custom", "generic"]
            .iter()
            .zip(support::partitions_read(&client, &table, name, sql, args).await)
        {
            assert_eq!(read.len(), 1, "{name} ({mode} plan) reads {read:?}");
        }
    }
    // By id alone, the partition is unknown: every one is probed (one index probe each).
    for (name, sql, args) in [
        ("load", &s.load, "'id-500'"),
        ("delete", &s.delete, "'id-500'"),
    ] {
        let read = support::partitions_read(&client, &table, name, sql, args).await;
        assert_eq!(read[0].len(), usize::from(PARTITIONS), "{name}: {read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_raced_into_many_executions_is_stored_once() {
    support::race_one_id_into_many_executions(&store().await).await;
}

#[tokio::test]
async fn a_table_made_with_one_layout_is_refused_with_the_other() {
    let options = support::options().await;
    PostgresStore::connect(options.clone()).await.unwrap();
    let err =
        PostgresStore::connect(options.table_layout(TableLayout::hash_partitioned(4).unwrap()))
            .await
            .unwrap_err();
    assert!(
        matches!(
            checkpoint_postgres::SchemaError::of(&err),
            Some(checkpoint_postgres::SchemaError::Modified { .. })
        ),
        "{err:?}"
    );
}
