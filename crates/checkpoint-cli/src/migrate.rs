//! `checkpointctl migrate`: apply the schema, or check whether it is current.

use checkpoint_postgres::{DeadpoolPool, PostgresStore, SchemaError, SCHEMA_VERSION};
use checkpoint_sqlite::{SqliteError, SqliteOptions, SqliteStore};
use serde_json::json;

use crate::commands::{database, explain, fail, report, Database};
use crate::{Connection, Exit};

pub(crate) async fn migrate(
    connection: &Connection,
    check: bool,
    layout: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let options = match database(connection)? {
        Database::Postgres(options) => *options,
        Database::Sqlite(_) if layout.is_some() => {
            return Err(fail("--layout applies to PostgreSQL tables"))
        }
        Database::Sqlite(options) => return migrate_sqlite(*options, check, json).await,
    };
    // A table that exists keeps its layout; a new one is made with --layout's.
    let requested = layout
        .as_deref()
        .map(crate::partitions::parse_layout)
        .transpose()?;
    let options = match requested {
        Some(layout) => options.table_layout(layout),
        None => crate::partitions::detected(options).await?,
    };
    if check {
        let pool = DeadpoolPool::from_options(&options).map_err(explain)?;
        let store = PostgresStore::with_pool(pool, &options).await;
        let current = match store {
            Ok(_) => SCHEMA_VERSION,
            Err(err) => match SchemaError::of(&err) {
                Some(SchemaError::Outdated { found, .. }) => *found,
                Some(SchemaError::TooNew { found, .. }) => *found,
                _ => return Err(explain(err)),
            },
        };
        return schema_check(i64::from(current), i64::from(SCHEMA_VERSION), json);
    }
    let store = PostgresStore::connect(options.auto_migrate(true))
        .await
        .map_err(explain)?;
    let version = store.schema_version().await.map_err(explain)?;
    let migrated = store.migration_report().cloned().unwrap_or_default();
    let mut text = format!("the schema is at version {version}");
    // A table partitioned by start is usable once the partition of now exists.
    let mut partitions = Vec::new();
    if store.table().layout().period().is_some() {
        partitions = store.ensure_partitions().await.map_err(explain)?;
        text.push_str(&format!("; made partitions {partitions:?}"));
    }
    if !migrated.applied.is_empty() {
        text.push_str(&format!(" (applied {:?})", migrated.applied));
    }
    if migrated.adopted_reference_table {
        text.push_str(
            "\nadopted a table made by LangGraphGo's PostgresCheckpointStore: every row is kept, \
             but that store's own writes (version 1 on every row) now fail on the version rule; \
             rows it wrote without an execution id are under execution \
             adopted-without-execution-id",
        );
    }
    report(
        json,
        json!({
            "version": version,
            "applied": migrated.applied,
            "adopted_reference_table": migrated.adopted_reference_table,
            "partitions_made": partitions,
        }),
        &text,
    );
    Ok(())
}

/// Reports whether a schema check passed: exit code 1 when it is not current.
fn schema_check(current: i64, expected: i64, json: bool) -> Result<(), Exit> {
    let ok = current == expected;
    report(
        json,
        json!({"current": ok, "version": current, "expected": expected}),
        &if ok {
            format!("the schema is current (version {current})")
        } else {
            format!("the schema is at version {current}, this release needs {expected}")
        },
    );
    if ok {
        Ok(())
    } else {
        Err(Exit {
            code: 1,
            message: String::new(),
        })
    }
}

async fn migrate_sqlite(options: SqliteOptions, check: bool, json: bool) -> Result<(), Exit> {
    if check {
        if let Some(path) = options.path().filter(|p| !p.exists()) {
            return Err(fail(format!("no SQLite database at {}", path.display())));
        }
        let current = match SqliteStore::open(options).await {
            Ok(_) => checkpoint_sqlite::SCHEMA_VERSION,
            Err(err) => match SqliteError::of(&err) {
                Some(SqliteError::SchemaOutdated { found, .. }) => *found,
                Some(SqliteError::SchemaTooNew { found, .. }) => *found,
                _ => return Err(explain(err)),
            },
        };
        return schema_check(current, checkpoint_sqlite::SCHEMA_VERSION, json);
    }
    let store = SqliteStore::open(options.auto_migrate(true))
        .await
        .map_err(explain)?;
    let version = store.stats().await.map_err(explain)?.schema_version;
    let mut text = format!("the schema is at version {}", version.unwrap_or(0));
    if !store.migrated().is_empty() {
        text.push_str(&format!(" (applied {:?})", store.migrated()));
    }
    report(
        json,
        json!({"version": version, "applied": store.migrated()}),
        &text,
    );
    Ok(())
}
