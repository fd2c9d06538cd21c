//! The schema and its versioned migrations.
//!
//! Migrations are ordered, embedded and checksummed steps recorded in `<table>_migrations`. They
//! run in one transaction under an advisory lock keyed by the table, so many instances starting
//! at once apply each step exactly once and the others wait, then find nothing to do. A
//! database whose schema is newer than this code is refused. The steps themselves are in
//! [`crate::schema::migrations`].

pub(crate) mod columns;
pub(crate) mod constraints;
pub(crate) mod layout;
pub(crate) mod leases;
pub(crate) mod migrations;
pub(crate) mod statements;
pub(crate) mod table;

use tokio_postgres::types::Type;

use crate::error::DbError;
use crate::pool::{DbPool, DbTransaction, Sql};
use crate::schema::layout::{PartitionPeriod, TableLayout};
use crate::schema::migrations::{
    chain, checksum, partitions_ddl, render, Migration, DISTRIBUTED_MIGRATIONS, HASH_MIGRATIONS,
    MIGRATIONS,
};
use crate::schema::table::TableName;

/// The execution that rows adopted without one (LangGraphGo's store writes `""` when its
/// metadata names none) are moved to by migration 3, so that every API and `checkpointctl`
/// command can reach them; their metadata keeps `adopted_execution_id: ""`.
pub const ADOPTED_WITHOUT_EXECUTION: &str = "adopted-without-execution-id";

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Why the schema cannot be used. It is the source of the core `Error::Backend` that
/// `PostgresStore::connect` and `migrate` return, so callers can downcast to it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The database was migrated by a newer release.
    #[error(
        "the checkpoint schema is at version {found}, newer than this release knows \
         ({supported}); upgrade checkpoint-postgres before connecting"
    )]
    TooNew {
        /// The version recorded in the database.
        found: i32,
        /// The newest version this release knows.
        supported: i32,
    },
    /// The schema is missing or behind and `auto_migrate` is off.
    #[error(
        "the checkpoint schema is at version {found}, this release needs {expected}; run \
         PostgresStore::migrate (or enable auto_migrate)"
    )]
    Outdated {
        /// The version recorded in the database (0 when nothing is there).
        found: i32,
        /// The version this release needs.
        expected: i32,
    },
    /// The role may not create or change the checkpoint table.
    #[error(
        "the database role may not create or change the checkpoint schema ({detail}); run the \
         migrations once as a role that may (PostgresStore::migrate or checkpointctl migrate), \
         then connect with this role"
    )]
    Privilege {
        /// The server's message.
        detail: String,
    },
    /// An applied migration differs from the one this release carries.
    #[error(
        "migration {version} in the database differs from this release's (checksum mismatch: \
         another migration, or a table made with another TableLayout)"
    )]
    Modified {
        /// The migration that differs.
        version: i32,
    },
    /// The table exists with another layout than the options ask for. A table keeps the
    /// layout it was made with: to move to another, make a new table (another name or schema)
    /// with the layout and copy the rows over (`docs/scaling.md` shows how).
    #[error(
        "the checkpoint table {table} was made with the {found} layout, not {requested}: a table \
         keeps its layout; connect with {found}, or make a new table (another name or schema) \
         with {requested} and copy the rows over (docs/scaling.md)"
    )]
    LayoutMismatch {
        /// The table, quoted as in SQL.
        table: String,
        /// The layout the table was made with.
        found: TableLayout,
        /// The layout the options asked for.
        requested: TableLayout,
    },
}

impl SchemaError {
    /// The [`SchemaError`] behind a core error, if the schema was the reason.
    pub fn of(err: &checkpoint_core::Error) -> Option<&SchemaError> {
        std::error::Error::source(err)?.downcast_ref::<SchemaError>()
    }
}

impl From<SchemaError> for checkpoint_core::Error {
    fn from(err: SchemaError) -> Self {
        checkpoint_core::Error::Backend {
            message: err.to_string(),
            retryable: false,
            source: Box::new(err),
        }
    }
}

/// What [`PostgresStore::migrate`](crate::PostgresStore::migrate) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version before.
    pub from_version: i32,
    /// The schema version after.
    pub to_version: i32,
    /// The versions applied by this call (empty when the schema was current).
    pub applied: Vec<i32>,
    /// Whether this call took over a table it did not create (made by LangGraphGo's
    /// `PostgresCheckpointStore`): that store's own upsert no longer works on it afterwards.
    pub adopted_reference_table: bool,
}

fn migrations_table_ddl(table: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
        table.qualify(&table.migrations_table())
    )
}

/// Applies every pending migration to `table`, under the table's advisory lock.
pub(crate) async fn migrate(
    pool: &dyn DbPool,
    table: &TableName,
) -> Result<MigrationReport, checkpoint_core::Error> {
    match apply(pool, table).await {
        Err(err) => Err(name_layout(pool, table, err).await),
        report => report,
    }
}

/// A refusal of migrations made for another layout, as [`SchemaError::LayoutMismatch`] naming
/// the table's own; any other error as it is.
async fn name_layout(
    pool: &dyn DbPool,
    table: &TableName,
    err: checkpoint_core::Error,
) -> checkpoint_core::Error {
    if !matches!(SchemaError::of(&err), Some(SchemaError::Modified { .. })) {
        return err;
    }
    match detect_layout(pool, table).await {
        Ok(Some(found)) if found != table.layout() => SchemaError::LayoutMismatch {
            table: table.quoted(),
            found,
            requested: table.layout(),
        }
        .into(),
        _ => err,
    }
}

async fn apply(
    pool: &dyn DbPool,
    table: &TableName,
) -> Result<MigrationReport, checkpoint_core::Error> {
    // The common case, every start of an instance on a current schema, needs no lock and no
    // DDL, so a role limited to reading and writing checkpoints may start with auto_migrate on.
    let current = current_version(pool, table).await?;
    if current >= SCHEMA_VERSION {
        let applied = read_applied(pool, table).await?;
        check_applied(&applied, table.layout())?;
        return Ok(MigrationReport {
            from_version: current,
            to_version: current,
            applied: Vec::new(),
            adopted_reference_table: false,
        });
    }
    let mut tx = pool.begin().await?;
    let outcome = apply_pending(tx.as_mut(), table)
        .await
        .map_err(explain_privilege);
    match outcome {
        Ok(report) => {
            tx.commit().await?;
            if report.adopted_reference_table {
                tracing::warn!(
                    table = table.table(),
                    "adopted a checkpoint table this store did not create (LangGraphGo's \
                     PostgresCheckpointStore): its rows are kept, but that store's own writes \
                     (version 1 on every row) now fail on the version rule"
                );
            }
            if !report.applied.is_empty() {
                tracing::info!(
                    table = table.table(),
                    from = report.from_version,
                    to = report.to_version,
                    "migrated the checkpoint schema"
                );
            }
            Ok(report)
        }
        Err(err) => {
            // The transaction failed or is refused; its outcome is what we report.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

async fn apply_pending(
    tx: &mut dyn DbTransaction,
    table: &TableName,
) -> Result<MigrationReport, checkpoint_core::Error> {
    let lock = Sql::new(
        "SELECT pg_advisory_xact_lock(hashtext($1)::bigint)",
        &[Type::TEXT],
    );
    tx.execute(&lock, &[&table.lock_key()]).await?;
    if let Some(schema) = table.schema() {
        create_schema_if_missing(tx, schema).await?;
    }
    tx.batch_execute(&migrations_table_ddl(table)).await?;

    let applied = applied_migrations(tx, table).await?;
    let from_version = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    check_applied(&applied, table.layout())?;

    let adopted_reference_table = from_version == 0 && table_exists(tx, table).await?;
    let mut report = MigrationReport {
        from_version,
        to_version: from_version,
        applied: Vec::new(),
        adopted_reference_table,
    };
    let record = Sql::new(
        format!(
            "INSERT INTO {} (version, description, checksum) VALUES ($1, $2, $3)",
            table.qualify(&table.migrations_table())
        ),
        &[Type::INT4, Type::TEXT, Type::TEXT],
    );
    for migration in chain(table.layout())
        .iter()
        .filter(|m| m.version > from_version)
    {
        tx.batch_execute(&render(migration, table)).await?;
        if from_version == 0 && migration.version == SCHEMA_VERSION {
            let partitions = partitions_ddl(table);
            if !partitions.is_empty() {
                tx.batch_execute(&partitions).await?;
            }
        }
        tx.execute(
            &record,
            &[
                &migration.version,
                &migration.description,
                &checksum(migration),
            ],
        )
        .await?;
        report.applied.push(migration.version);
        report.to_version = migration.version;
    }
    Ok(report)
}

/// Whether the checkpoint table exists already.
async fn table_exists(tx: &mut dyn DbTransaction, table: &TableName) -> Result<bool, DbError> {
    let sql = Sql::new("SELECT to_regclass($1) IS NOT NULL", &[Type::TEXT]);
    let rows = tx.query(&sql, &[&table.quoted()]).await?;
    Ok(rows
        .first()
        .map(|r| r.bool(0))
        .transpose()?
        .unwrap_or(false))
}

/// A migration refused for lack of rights says what is missing and what to do.
fn explain_privilege(err: checkpoint_core::Error) -> checkpoint_core::Error {
    match DbError::of(&err) {
        Some(db) if db.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            SchemaError::Privilege {
                detail: db.to_string(),
            }
            .into()
        }
        _ => err,
    }
}

async fn read_applied(pool: &dyn DbPool, table: &TableName) -> Result<Vec<(i32, String)>, DbError> {
    decode_applied(&pool.query(&applied_sql(table), &[]).await?)
}

fn applied_sql(table: &TableName) -> Sql {
    Sql::new(
        format!(
            "SELECT version, checksum FROM {} ORDER BY version",
            table.qualify(&table.migrations_table())
        ),
        &[],
    )
}

fn decode_applied(rows: &[crate::pool::Row]) -> Result<Vec<(i32, String)>, DbError> {
    rows.iter()
        .map(|row| Ok((i32::try_from(row.int(0)?).unwrap_or(i32::MAX), row.text(1)?)))
        .collect()
}

async fn create_schema_if_missing(tx: &mut dyn DbTransaction, schema: &str) -> Result<(), DbError> {
    // Checking first lets a role without CREATE on the database use a schema made for it.
    let exists = Sql::new(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        &[Type::TEXT],
    );
    let rows = tx.query(&exists, &[&schema]).await?;
    let present = rows
        .first()
        .map(|r| r.bool(0))
        .transpose()?
        .unwrap_or(false);
    if !present {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await?;
    }
    Ok(())
}

async fn applied_migrations(
    tx: &mut dyn DbTransaction,
    table: &TableName,
) -> Result<Vec<(i32, String)>, DbError> {
    decode_applied(&tx.query(&applied_sql(table), &[]).await?)
}

/// Refuses a schema that is newer than this code or whose applied steps differ from ours.
fn check_applied(applied: &[(i32, String)], layout: TableLayout) -> Result<(), SchemaError> {
    for (version, recorded) in applied {
        match chain(layout).iter().find(|m| m.version == *version) {
            // A step this release has, but for another layout: the table was made with it.
            None if *version <= SCHEMA_VERSION => {
                return Err(SchemaError::Modified { version: *version })
            }
            None => {
                return Err(SchemaError::TooNew {
                    found: applied.iter().map(|(v, _)| *v).max().unwrap_or(*version),
                    supported: SCHEMA_VERSION,
                })
            }
            Some(migration) if checksum(migration) != *recorded => {
                return Err(SchemaError::Modified { version: *version })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The schema version recorded for `table` (0 when it was never migrated).
pub(crate) async fn current_version(
    pool: &dyn DbPool,
    table: &TableName,
) -> Result<i32, checkpoint_core::Error> {
    let sql = Sql::new(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = $1 AND n.nspname = COALESCE($2, current_schema()))",
        &[Type::TEXT, Type::TEXT],
    );
    let name = table.migrations_table();
    let rows = pool.query(&sql, &[&name, &table.schema()]).await?;
    let exists = rows
        .first()
        .map(|r| r.bool(0))
        .transpose()?
        .unwrap_or(false);
    if !exists {
        return Ok(0);
    }
    let migrations = table.qualify(&name);
    let max = Sql::new(
        format!("SELECT COALESCE(MAX(version), 0) FROM {migrations}"),
        &[],
    );
    let rows = pool.query(&max, &[]).await?;
    Ok(rows
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .map_or(0, |v| i32::try_from(v).unwrap_or(i32::MAX)))
}

/// The layout `table` was made with, read from its recorded migrations and partitions; `None`
/// when it has no schema yet. The layout's own options (a time-partitioned table's
/// [`partitions_ahead`](crate::PostgresOptions::partitions_ahead)) are not recorded.
pub(crate) async fn detect_layout(
    pool: &dyn DbPool,
    table: &TableName,
) -> Result<Option<TableLayout>, checkpoint_core::Error> {
    if current_version(pool, table).await? == 0 {
        return Ok(None);
    }
    let applied = read_applied(pool, table).await?;
    let made_by = |migrations: &[Migration]| {
        migrations.iter().all(|m| {
            applied
                .iter()
                .any(|(v, sum)| *v == m.version && *sum == checksum(m))
        })
    };
    for period in [
        PartitionPeriod::Day,
        PartitionPeriod::Week,
        PartitionPeriod::Month,
    ] {
        let layout = TableLayout::TimePartitioned { period };
        if made_by(chain(layout)) {
            return Ok(Some(layout));
        }
    }
    if made_by(DISTRIBUTED_MIGRATIONS) {
        return Ok(Some(TableLayout::Distributed));
    }
    if made_by(HASH_MIGRATIONS) {
        let count = Sql::new(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)",
            &[Type::TEXT],
        );
        let rows = pool.query(&count, &[&table.quoted()]).await?;
        let partitions = rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
        let partitions = u16::try_from(partitions).map_err(|_| {
            checkpoint_core::Error::invalid(
                "table_layout",
                format!("the table has {partitions} hash partitions, more than a layout allows"),
            )
        })?;
        return TableLayout::hash_partitioned(partitions).map(Some);
    }
    Ok(Some(TableLayout::Plain))
}

/// Checks, without changing anything, that `table` is at exactly [`SCHEMA_VERSION`].
pub(crate) async fn verify(
    pool: &dyn DbPool,
    table: &TableName,
) -> Result<(), checkpoint_core::Error> {
    let found = current_version(pool, table).await?;
    if found > SCHEMA_VERSION {
        return Err(SchemaError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if found < SCHEMA_VERSION {
        return Err(SchemaError::Outdated {
            found,
            expected: SCHEMA_VERSION,
        }
        .into());
    }
    // A table made with another layout is refused here, not by the first statement that
    // names a column or constraint it lacks.
    let applied = read_applied(pool, table).await?;
    if let Err(err) = check_applied(&applied, table.layout()) {
        return Err(name_layout(pool, table, err.into()).await);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Every migration of `layout` with its checksum, as a current database records them.
    pub(crate) fn checksums(layout: super::TableLayout) -> Vec<(i32, String)> {
        super::chain(layout)
            .iter()
            .map(|m| (m.version, super::checksum(m)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i32::try_from(i).unwrap() + 1);
        }
    }

    #[test]
    fn rendering_quotes_every_name() {
        let table = TableName::new(Some("tenant"), "cp").unwrap();
        let sql = render(&MIGRATIONS[1], &table);
        assert!(sql.contains("ALTER TABLE \"tenant\".\"cp\""));
        assert!(sql.contains("DROP INDEX IF EXISTS \"tenant\".\"idx_cp_execution_id\""));
        assert!(sql.contains("CREATE UNIQUE INDEX IF NOT EXISTS \"cp_execution_version_key\""));
        assert!(!sql.contains('{'), "{sql}");
    }

    #[test]
    fn newer_or_changed_schemas_are_refused() {
        let ours: Vec<(i32, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, checksum(m)))
            .collect();
        assert_eq!(check_applied(&ours, TableLayout::Plain), Ok(()));

        let mut newer = ours.clone();
        newer.push((SCHEMA_VERSION + 1, "x".into()));
        assert_eq!(
            check_applied(&newer, TableLayout::Plain),
            Err(SchemaError::TooNew {
                found: SCHEMA_VERSION + 1,
                supported: SCHEMA_VERSION
            })
        );

        let mut changed = ours;
        changed[0].1 = "edited".into();
        assert_eq!(
            check_applied(&changed, TableLayout::Plain),
            Err(SchemaError::Modified { version: 1 })
        );
    }
}
