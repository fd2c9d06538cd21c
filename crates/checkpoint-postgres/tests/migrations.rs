//! Migration rules on a real server: fresh, re-run, concurrent start, adoption of a table the
//! reference Go store made, and refusal of schemas this release does not know.

mod support;

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{
    PartitionPeriod, PostgresStore, SchemaError, TableLayout, SCHEMA_VERSION,
};
use serde_json::json;

async fn migration_rows(schema: &str) -> Vec<i32> {
    support::client()
        .await
        .query(
            &format!("SELECT version FROM \"{schema}\".checkpoints_migrations ORDER BY version"),
            &[],
        )
        .await
        .expect("migrations table")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn fresh_database_gets_the_current_schema() {
    let store = support::store().await;
    let schema = store
        .table()
        .schema()
        .expect("tests use a schema")
        .to_owned();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let report = store.migration_report().expect("connect migrated");
    assert!(
        !report.adopted_reference_table,
        "a fresh table is not adopted"
    );
    assert_eq!(report.applied, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    assert_eq!(
        migration_rows(&schema).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );

    let client = support::client().await;
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'checkpoints' ORDER BY ordinal_position",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [
        ("id", "text"),
        ("execution_id", "text"),
        ("node_name", "text"),
        ("state", "jsonb"),
        ("metadata", "jsonb"),
        ("timestamp", "timestamp with time zone"),
        ("version", "bigint"),
        ("parent_id", "text"),
        ("payload", "bytea"),
        ("base_version", "bigint"),
        ("base_hash", "bigint"),
        ("state_hash", "bigint"),
        ("depth", "integer"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    assert_eq!(columns, expected);

    let indexes = texts(
        &client,
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
         AND tablename = 'checkpoints' ORDER BY indexname",
        &schema,
    )
    .await;
    assert_eq!(
        indexes,
        [
            "checkpoints_base_version_idx",
            "checkpoints_execution_version_key",
            "checkpoints_pkey"
        ]
    );
}

#[tokio::test]
async fn running_migrations_again_is_a_no_op() {
    let store = support::store().await;
    let schema = store.table().schema().unwrap().to_owned();
    store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();
    let report = store.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.from_version, SCHEMA_VERSION);
    assert_eq!(migration_rows(&schema).await.len(), SCHEMA_VERSION as usize);
    assert_eq!(store.list("e").await.unwrap().len(), 1);
}

#[tokio::test]
async fn eight_stores_starting_at_once_apply_each_step_exactly_once() {
    let options = support::options().await;
    let starts = (0..8).map(|_| PostgresStore::connect(options.clone()));
    let stores = futures::future::join_all(starts).await;
    for store in &stores {
        assert!(store.is_ok(), "{store:?}");
    }
    let schema = options.table_name().unwrap().schema().unwrap().to_owned();
    assert_eq!(
        migration_rows(&schema).await,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    // All eight work on the one table.
    for (i, store) in stores.iter().enumerate() {
        let store = store.as_ref().unwrap();
        store
            .save(&Checkpoint::new("shared", "n", json!(i)))
            .await
            .unwrap();
    }
    let any = stores[0].as_ref().unwrap();
    assert_eq!(any.list("shared").await.unwrap().len(), 8);
}

#[tokio::test]
async fn a_table_made_by_the_reference_store_is_adopted_without_losing_a_row() {
    let schema = support::unique_schema("ref");
    let client = support::client().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\";
             SET search_path TO \"{schema}\";
             CREATE TABLE IF NOT EXISTS checkpoints (id TEXT PRIMARY KEY, execution_id TEXT NOT NULL,
               node_name TEXT NOT NULL, state JSONB NOT NULL, metadata JSONB, timestamp TIMESTAMPTZ NOT NULL,
               version INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS idx_checkpoints_execution_id ON checkpoints (execution_id);
             INSERT INTO checkpoints VALUES
               ('a3', 'run-a', 'third',  '{{\"n\": 3}}', '{{\"k\": 1}}', '2024-01-01 00:00:03+00', 1),
               ('a1', 'run-a', 'first',  '{{\"n\": 1}}', NULL,           '2024-01-01 00:00:01+00', 1),
               ('a2', 'run-a', 'second', '{{\"n\": 2}}', '{{}}',         '2024-01-01 00:00:02+00', 1),
               ('b1', 'run-b', 'only',   '[1, 2]',       NULL,           '2024-02-01 00:00:00+00', 1),
               ('x1', '',      'none',   '{{\"n\": 5}}', NULL,           '2024-03-01 00:00:00+00', 1),
               ('x2', '',      'none',   '{{\"n\": 6}}', '{{\"m\": 2}}', '2024-03-02 00:00:00+00', 1);
             RESET search_path;"
        ))
        .await
        .expect("reference table");

    let store = PostgresStore::connect(
        checkpoint_postgres::PostgresOptions::new(&support::server().await.url)
            .unwrap()
            .schema(&schema),
    )
    .await
    .expect("adopting the reference table");

    let run_a = store.list("run-a").await.unwrap();
    let order: Vec<(&str, i64)> = run_a.iter().map(|c| (c.id.as_str(), c.version)).collect();
    assert_eq!(
        order,
        [("a1", 1), ("a2", 2), ("a3", 3)],
        "renumbered in timestamp order"
    );
    assert!(run_a[0].metadata.is_empty(), "NULL metadata reads as empty");
    assert_eq!(run_a[2].metadata.get("k"), Some(&json!(1)));
    assert_eq!(run_a[2].state, json!({"n": 3}));
    assert_eq!(store.list("run-b").await.unwrap().len(), 1);
    assert!(run_a.iter().all(|c| c.parent_id.is_none()));
    let report = store.migration_report().expect("connect migrated");
    assert!(report.adopted_reference_table, "{report:?}");

    // Rows the reference store wrote without an execution id are reachable under a reserved,
    // documented one, and say where they came from.
    let orphans = store
        .list(checkpoint_postgres::ADOPTED_WITHOUT_EXECUTION)
        .await
        .unwrap();
    let ids: Vec<&str> = orphans.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["x1", "x2"]);
    assert!(orphans
        .iter()
        .all(|c| c.metadata.get("adopted_execution_id") == Some(&json!(""))));
    assert_eq!(orphans[1].metadata.get("m"), Some(&json!(2)));
    let executions = store
        .list_executions(&checkpoint_core::ExecutionQuery::default())
        .await
        .unwrap();
    assert!(executions.iter().any(|e| e.execution_id
        == checkpoint_postgres::ADOPTED_WITHOUT_EXECUTION
        && e.checkpoint_count == 2));

    // The version rule now holds on the adopted rows.
    let next = Checkpoint::new("run-a", "fourth", json!({"n": 4}));
    assert_eq!(store.save(&next).await.unwrap(), 4);
    let rival = Checkpoint::new("run-a", "late", json!(0)).with_version(4);
    assert!(matches!(
        store.save(&rival).await,
        Err(Error::Conflict { .. })
    ));

    let reference_index: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 \
             AND indexname = 'idx_checkpoints_execution_id'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        reference_index, 0,
        "the unique index replaces the reference index"
    );
}

#[tokio::test]
async fn a_schema_newer_than_this_release_is_refused_and_left_alone() {
    let store = support::store().await;
    let schema = store.table().schema().unwrap().to_owned();
    store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();
    let newer = SCHEMA_VERSION + 1;
    support::client()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".checkpoints_migrations (version, description, checksum) \
                 VALUES ($1, 'from the future', 'x')"
            ),
            &[&newer],
        )
        .await
        .unwrap();

    let options = checkpoint_postgres::PostgresOptions::new(&support::server().await.url)
        .unwrap()
        .schema(&schema);
    for options in [options.clone(), options.auto_migrate(false)] {
        let err = PostgresStore::connect(options).await.unwrap_err();
        assert_eq!(
            SchemaError::of(&err),
            Some(&SchemaError::TooNew {
                found: newer,
                supported: SCHEMA_VERSION
            }),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
    assert_eq!(store.list("e").await.unwrap().len(), 1);
}

#[tokio::test]
async fn without_auto_migrate_a_missing_table_is_refused() {
    let options = support::options().await.auto_migrate(false);
    let schema = options.table_name().unwrap().schema().unwrap().to_owned();
    let err = PostgresStore::connect(options).await.unwrap_err();
    assert_eq!(
        SchemaError::of(&err),
        Some(&SchemaError::Outdated {
            found: 0,
            expected: SCHEMA_VERSION
        }),
        "{err}"
    );
    let created: i64 = support::client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "nothing was created");
}

#[tokio::test]
async fn a_changed_migration_is_detected() {
    let store = support::store().await;
    let schema = store.table().schema().unwrap().to_owned();
    support::client()
        .await
        .execute(
            &format!("UPDATE \"{schema}\".checkpoints_migrations SET checksum = 'edited' WHERE version = 1"),
            &[],
        )
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert_eq!(
        SchemaError::of(&err),
        Some(&SchemaError::Modified { version: 1 })
    );
}

/// The indexes of `relation` in `schema`, each as its name and its key columns.
async fn index_columns(client: &tokio_postgres::Client, schema: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT i.relname::text, pg_get_indexdef(x.indexrelid) FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = 'checkpoints' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let definition: String = r.get(1);
            let columns = definition
                .rsplit_once(" USING btree ")
                .map_or(definition.clone(), |(_, c)| c.to_owned());
            (r.get(0), columns)
        })
        .collect()
}

/// Each delta foreign key of the table and its partitions: the table it is on and the table it
/// references.
async fn base_keys(client: &tokio_postgres::Client, schema: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c \
             JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = $1 AND c.conname = 'checkpoints_base_fkey' ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A partitioned table made at schema 4 (its id key `(execution_id, id…)`, an index on `id`,
/// the hash layout's delta key on the partitioned table) moves to schema 5 in place: every
/// checkpoint reads back exactly, deltas included; the id key leads with `id` and the index on
/// `id` is gone; each partition's delta key references the partition itself and still refuses
/// to lose a base; appends continue the versions.
#[tokio::test]
async fn partitioned_tables_of_schema_4_move_to_the_current_schema_keeping_every_row() {
    for layout in [
        TableLayout::hash_partitioned(4).unwrap(),
        TableLayout::time_partitioned(PartitionPeriod::Day),
    ] {
        let time = layout.period().is_some();
        let options = support::options()
            .await
            .table_layout(layout)
            .min_delta_bytes(0);
        let store = PostgresStore::connect(options.clone()).await.unwrap();
        let schema = store
            .table()
            .schema()
            .expect("tests use a schema")
            .to_owned();
        let mut saved = Vec::new();
        for e in 0..6 {
            for step in 0..5 {
                // A long state that changes a little is stored as a delta of the one before.
                let log: Vec<String> = (0..60).map(|i| format!("line {i} of {e}")).collect();
                let state = json!({"e": e, "step": step, "z": -0.0, "log": log});
                let cp = Checkpoint::new(format!("e{e}"), "node", state);
                store.save(&cp).await.unwrap();
                saved.push(store.load_in(&cp.execution_id, &cp.id).await.unwrap());
            }
        }
        store.close();

        // Back to schema 4's shape, as that step made it.
        let client = support::client().await;
        let q = |name: &str| format!("\"{schema}\".\"{name}\"");
        let id_columns = if time {
            "execution_id, id, execution_start"
        } else {
            "execution_id, id"
        };
        let mut undo = format!(
            "DROP INDEX {key}; CREATE UNIQUE INDEX checkpoints_execution_id_key ON {t} \
             ({id_columns}); CREATE INDEX checkpoints_id_idx ON {t} (id); \
             DELETE FROM {migrations} WHERE version >= 5; DROP TABLE {leases};",
            key = q("checkpoints_execution_id_key"),
            t = q("checkpoints"),
            migrations = q("checkpoints_migrations"),
            leases = q("checkpoints_leases"),
        );
        if time {
            // Schema 4's foreign key from each row's start to the registry (gone at 6).
            undo.push_str(&format!(
                "ALTER TABLE {x} ADD CONSTRAINT checkpoints_started_key \
                 UNIQUE (execution_id, started); \
                 ALTER TABLE {t} ADD CONSTRAINT checkpoints_start_key FOREIGN KEY \
                 (execution_id, execution_start) REFERENCES {x} (execution_id, started);",
                t = q("checkpoints"),
                x = q("checkpoints_executions")
            ));
        }
        if !time {
            for p in 0..4 {
                undo.push_str(&format!(
                    "ALTER TABLE {} DROP CONSTRAINT checkpoints_base_fkey;",
                    q(&format!("checkpoints_p{p}"))
                ));
            }
            undo.push_str(&format!(
                "ALTER TABLE {t} ADD CONSTRAINT checkpoints_base_fkey FOREIGN KEY \
                 (execution_id, base_version) REFERENCES {t} (execution_id, version);",
                t = q("checkpoints")
            ));
        }
        client.batch_execute(&undo).await.unwrap();
        assert_eq!(migration_rows(&schema).await, [3, 4], "made in one step");

        let store = PostgresStore::connect(options).await.unwrap();
        assert_eq!(
            store.migration_report().unwrap().applied,
            [5, 6, 7],
            "{layout}"
        );
        assert_eq!(migration_rows(&schema).await, [3, 4, 5, 6, 7]);
        let lease = store
            .acquire("after-upgrade", "w", std::time::Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(lease.token, 1, "schema 7 made the leases table");
        // No key ties a row to the registry any more; the registry keeps its primary key only.
        let registry_keys = texts(
            &client,
            "SELECT conname::text FROM pg_catalog.pg_constraint c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace \
             WHERE n.nspname = $1 AND c.conname IN ('checkpoints_start_key', \
             'checkpoints_started_key')",
            &schema,
        )
        .await;
        assert!(registry_keys.is_empty(), "{layout}: {registry_keys:?}");
        let indexes = index_columns(&client, &schema).await;
        let id_key = if time {
            "(id, execution_id, execution_start)"
        } else {
            "(id, execution_id)"
        };
        assert!(
            indexes
                .iter()
                .any(|(name, columns)| name == "checkpoints_execution_id_key" && columns == id_key),
            "{layout}: {indexes:?}"
        );
        assert!(
            !indexes.iter().any(|(name, _)| name == "checkpoints_id_idx"),
            "{layout}: {indexes:?}"
        );
        let keys = base_keys(&client, &schema).await;
        assert!(!keys.is_empty(), "{layout}");
        for (on, references) in &keys {
            assert_eq!(on, references, "{layout}: each partition references itself");
            assert_ne!(
                on,
                &q("checkpoints"),
                "{layout}: none on the partitioned table"
            );
        }

        for cp in &saved {
            let read = store.load(&cp.id).await.unwrap();
            assert_eq!(read.state.to_string(), cp.state.to_string(), "{layout}");
            assert_eq!(read.version, cp.version, "{layout}");
        }
        let deltas: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE base_version IS NOT NULL",
                    q("checkpoints")
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(deltas > 0, "{layout}: deltas were stored");
        // A base cannot go from under its delta behind the store's back.
        let refused = client
            .execute(
                &format!(
                    "DELETE FROM {} d WHERE EXISTS (SELECT 1 FROM {t} b \
                     WHERE b.execution_id = d.execution_id AND b.base_version = d.version)",
                    q("checkpoints"),
                    t = q("checkpoints")
                ),
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION),
            "{layout}"
        );
        let next = store
            .save(&Checkpoint::new("e0", "node", json!({"after": 5})))
            .await
            .unwrap();
        assert_eq!(next, 6, "{layout}");
        store.close();
    }
}

/// The first column, as text, of every row `sql` returns for `schema` (its `$1`).
async fn texts(client: &tokio_postgres::Client, sql: &str, schema: &str) -> Vec<String> {
    client
        .query(sql, &[&schema])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
