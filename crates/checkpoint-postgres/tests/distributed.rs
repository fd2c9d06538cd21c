//! The hash-partitioned layout (`TableLayout::HashPartitioned`), the local stand-in for a table
//! distributed by `execution_id` in Citus: which statements touch one partition (and would be
//! routed to one shard), and one id saved into many executions at once (a checkpoint of each:
//! ids are unique per execution on this layout).

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
    support::seed_executions(&client, &store, 20_000).await;
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
    // `delete` finds the execution that way first, then deletes in that execution only.
    let read =
        support::partitions_read(&client, &table, "delete", &s.delete, "'id-500', 'exec-5'").await;
    assert!(read.iter().all(|r| r.len() == 1), "delete: {read:?}");
    let read =
        support::partitions_read(&client, &table, "load_in", &s.load_in, "'exec-5', 'id-500'")
            .await;
    assert!(read.iter().all(|r| r.len() == 1), "load_in: {read:?}");
    for (name, sql, args) in [
        ("load", &s.load, "'id-500'"),
        ("id_executions", &s.id_executions, "'id-500'"),
    ] {
        let read = support::partitions_read(&client, &table, name, sql, args).await;
        assert_eq!(read[0].len(), usize::from(PARTITIONS), "{name}: {read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_raced_into_many_executions_is_a_checkpoint_of_each() {
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
    let Some(checkpoint_postgres::SchemaError::LayoutMismatch {
        found, requested, ..
    }) = checkpoint_postgres::SchemaError::of(&err)
    else {
        panic!("{err:?}")
    };
    assert_eq!(*found, TableLayout::Plain);
    assert_eq!(*requested, TableLayout::hash_partitioned(4).unwrap());
    assert!(err.to_string().contains("docs/scaling.md"), "{err}");
}

/// A hash-partitioned table of schema 3 (its id guard trigger in place) is brought to the
/// current schema by the next `connect`: the trigger and its function go, the rows stay, and an id another
/// execution holds becomes a checkpoint of its own.
#[tokio::test]
async fn a_schema_3_table_loses_its_id_guard_on_upgrade() {
    use checkpoint_core::{Checkpoint, CheckpointStore};
    let options = support::options()
        .await
        .table_layout(TableLayout::hash_partitioned(4).unwrap());
    let store = PostgresStore::connect(options.clone()).await.unwrap();
    let first = Checkpoint::new("e1", "n", serde_json::json!(1)).with_id("shared");
    store.save(&first).await.unwrap();
    let schema = store.table().schema().unwrap().to_owned();
    let client = support::client().await;
    // Back to schema 3 as it was: the trigger of that step, and no record of step 4.
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\";
             CREATE FUNCTION checkpoints_id_guard() RETURNS trigger LANGUAGE plpgsql AS $g$
             BEGIN
               PERFORM pg_advisory_xact_lock(hashtextextended(NEW.id, 0));
               IF EXISTS (SELECT 1 FROM checkpoints WHERE id = NEW.id
                          AND execution_id <> NEW.execution_id) THEN
                 RAISE EXCEPTION 'checkpoint % belongs to another execution', NEW.id
                   USING ERRCODE = 'unique_violation', CONSTRAINT = 'checkpoints_execution_id_key';
               END IF;
               RETURN NEW;
             END $g$;
             CREATE TRIGGER checkpoints_id_guard BEFORE INSERT ON checkpoints
               FOR EACH ROW EXECUTE FUNCTION checkpoints_id_guard();
             DELETE FROM checkpoints_migrations WHERE version >= 4;"
        ))
        .await
        .unwrap();
    let upgraded = PostgresStore::connect(options).await.unwrap();
    assert_eq!(
        upgraded.migration_report().unwrap().applied,
        vec![4, 5, 6, 7]
    );
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND NOT t.tgisinternal",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0);
    let twin = Checkpoint::new("e2", "n", serde_json::json!(2)).with_id("shared");
    assert_eq!(upgraded.save(&twin).await.unwrap(), 1);
    assert_eq!(
        upgraded.load_in("e1", "shared").await.unwrap(),
        first.with_version(1)
    );
}

/// The distributed layout (`TableLayout::Distributed`), undistributed on plain PostgreSQL: none
/// of the shapes Citus refuses. No trigger and no function of ours in its schema (Citus refuses
/// to distribute a table with triggers, and a function that queries the table fails on a shard),
/// and the table is found again as distributed by `table_layout_of`. (That its sessions keep the
/// server's plan cache mode, which Citus needs, is `options/tests.rs`.)
#[tokio::test]
async fn the_distributed_layout_has_no_trigger_and_no_function() {
    use checkpoint_core::{Checkpoint, CheckpointStore, IdScope};
    let options = support::options()
        .await
        .table_layout(TableLayout::Distributed);
    let store = PostgresStore::connect(options.clone()).await.unwrap();
    assert_eq!(store.id_scope(), IdScope::PerExecution);
    let schema = store.table().schema().unwrap().to_owned();
    let client = support::client().await;
    let count = |sql: &'static str| {
        let client = &client;
        let schema = schema.clone();
        async move {
            client
                .query_one(sql, &[&schema])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
             AND NOT t.tgisinternal"
        )
        .await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1").await,
        0
    );
    // The store's own sessions: saves and reads work, and plan as the server says.
    let cp = Checkpoint::new("e", "n", serde_json::json!({"a": 1}));
    store.save(&cp).await.unwrap();
    assert_eq!(store.load(&cp.id).await.unwrap().state, cp.state);
    assert_eq!(
        PostgresStore::table_layout_of(&options).await.unwrap(),
        Some(TableLayout::Distributed)
    );
}

#[tokio::test]
async fn a_batch_of_100_000_needs_no_lock_per_row() {
    support::a_batch_of_100_000_is_stored(&store().await).await;
}

/// `docs/scaling.md`, "Moving a plain table to a layout keyed by execution".
#[tokio::test]
async fn the_documented_copy_of_a_million_rows_succeeds() {
    for layout in [
        TableLayout::hash_partitioned(PARTITIONS).unwrap(),
        TableLayout::Distributed,
    ] {
        let options = support::options().await.table_layout(layout);
        let store = PostgresStore::connect(options).await.expect("connect");
        support::the_documented_copy_of_a_million_rows_succeeds(
            &store,
            "INSERT INTO \"{new}\".checkpoints SELECT * FROM \"{old}\".checkpoints;",
        )
        .await;
    }
}
