//! The tables, and the versioned migrations that make them, recorded in the file itself.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::SqliteError;

/// One step of the schema. Released steps never change: a file records each by version and
/// name, and a store refuses a file whose record differs.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "checkpoints table",
        // STRICT: a value of the wrong type is refused, not silently stored as another.
        // The unique index is the version rule: no two checkpoints of an execution share a
        // version.
        sql: "CREATE TABLE checkpoints (
              id           TEXT PRIMARY KEY NOT NULL,
              execution_id TEXT NOT NULL,
              version      INTEGER NOT NULL CHECK (version > 0),
              node_name    TEXT NOT NULL,
              parent_id    TEXT,
              timestamp_us INTEGER NOT NULL,
              metadata     TEXT NOT NULL,
              state        BLOB NOT NULL
          ) STRICT;
          CREATE UNIQUE INDEX checkpoints_execution_version
              ON checkpoints (execution_id, version);",
    },
    Migration {
        version: 2,
        name: "leases table",
        // A new table: online on a file of any size, and nothing existing changes.
        sql: "CREATE TABLE checkpoint_leases (
                  execution_id TEXT PRIMARY KEY NOT NULL,
                  owner        TEXT NOT NULL,
                  token        INTEGER NOT NULL CHECK (token > 0),
                  expires_us   INTEGER NOT NULL
              ) STRICT;",
    },
    Migration {
        version: 3,
        name: "delta columns",
        // Online on a file of any size: added columns change no stored row (SQLite writes
        // only the new schema), and the partial index holds only deltas, of which an older
        // file has none, so building it reads the table once and writes nothing else.
        //
        // A row with a `state_hash` holds its state in the shared payload form
        // (`checkpoint_format::codec`, sealed or not): a snapshot, or with a `base_version` a
        // delta against that version of its execution, whose recorded hash is `base_hash`.
        // Rows without one hold their state as schema 1 and 2 wrote it (`crate::codec`).
        sql: "ALTER TABLE checkpoints ADD COLUMN base_version INTEGER
                  CHECK (base_version IS NULL OR (base_version > 0 AND base_version < version));
              ALTER TABLE checkpoints ADD COLUMN base_hash INTEGER
                  CHECK ((base_hash IS NULL) = (base_version IS NULL));
              ALTER TABLE checkpoints ADD COLUMN state_hash INTEGER
                  CHECK (base_version IS NULL OR state_hash IS NOT NULL);
              ALTER TABLE checkpoints ADD COLUMN depth INTEGER NOT NULL DEFAULT 0
                  CHECK (depth >= 0);
              CREATE INDEX checkpoints_bases ON checkpoints (execution_id, base_version)
                  WHERE base_version IS NOT NULL;",
    },
];

/// The schema version this release creates and reads.
pub const SCHEMA_VERSION: i64 = 3;

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS checkpoint_migrations (
                          version    INTEGER PRIMARY KEY NOT NULL,
                          name       TEXT NOT NULL,
                          applied_at TEXT NOT NULL
                      ) STRICT";

/// Brings the file to [`SCHEMA_VERSION`] in one immediate transaction, so processes opening
/// the same new file at once apply each step exactly once. Returns the versions applied now.
pub(crate) fn migrate(conn: &mut Connection) -> Result<Vec<i64>, SqliteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(LEDGER)?;
    let recorded: Vec<(i64, String)> = {
        let mut statement = tx.prepare("SELECT version, name FROM checkpoint_migrations")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (version, name) in &recorded {
        match MIGRATIONS.iter().find(|m| m.version == *version) {
            None => {
                return Err(SqliteError::SchemaTooNew {
                    found: *version,
                    known: SCHEMA_VERSION,
                })
            }
            Some(known) if known.name != name => {
                return Err(SqliteError::SchemaMismatch {
                    version: *version,
                    found: name.clone(),
                    expected: known.name.to_owned(),
                })
            }
            Some(_) => {}
        }
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if recorded.iter().any(|(v, _)| *v == migration.version) {
            continue;
        }
        tx.execute_batch(migration.sql)?;
        tx.execute(
            "INSERT INTO checkpoint_migrations (version, name, applied_at)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (migration.version, migration.name),
        )?;
        applied.push(migration.version);
    }
    tx.commit()?;
    Ok(applied)
}

/// Refuses a file whose schema is not exactly this release's, changing nothing.
pub(crate) fn check(conn: &Connection) -> Result<(), SqliteError> {
    match version(conn)?.unwrap_or(0) {
        found if found > SCHEMA_VERSION => Err(SqliteError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        }),
        found if found < SCHEMA_VERSION => Err(SqliteError::SchemaOutdated {
            found,
            expected: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// The highest migration recorded in the file, `None` before the first.
pub(crate) fn version(conn: &Connection) -> Result<Option<i64>, SqliteError> {
    let ledger: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'checkpoint_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if ledger.is_none() {
        return Ok(None);
    }
    Ok(conn.query_row(
        "SELECT MAX(version) FROM checkpoint_migrations",
        [],
        |row| row.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_applies_each_step_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), None);
        assert_eq!(migrate(&mut conn).unwrap(), vec![1, 2, 3]);
        assert_eq!(migrate(&mut conn).unwrap(), Vec::<i64>::new());
        assert_eq!(version(&conn).unwrap(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn checking_refuses_any_file_not_at_this_version_and_writes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(matches!(
            check(&conn),
            Err(SqliteError::SchemaOutdated {
                found: 0,
                expected: SCHEMA_VERSION
            })
        ));
        assert_eq!(version(&conn).unwrap(), None, "check created nothing");
        migrate(&mut conn).unwrap();
        check(&conn).unwrap();
        conn.execute(
            "INSERT INTO checkpoint_migrations VALUES (?1, 'next', 'then')",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        assert!(matches!(
            check(&conn),
            Err(SqliteError::SchemaTooNew { .. })
        ));
    }

    #[test]
    fn a_newer_file_is_refused_and_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO checkpoint_migrations VALUES (4, 'from the future', 'then')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, SqliteError::SchemaTooNew { found: 4, known: 3 }),
            "{err}"
        );
        assert_eq!(version(&conn).unwrap(), Some(4));
    }

    #[test]
    fn a_different_step_under_a_known_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(LEDGER).unwrap();
        conn.execute(
            "INSERT INTO checkpoint_migrations VALUES (1, 'something else', 'then')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(&err, SqliteError::SchemaMismatch { version: 1, found, .. } if found == "something else"),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_schema_1_gains_the_leases_table_keeping_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(LEDGER).unwrap();
        conn.execute_batch(MIGRATIONS[0].sql).unwrap();
        conn.execute(
            "INSERT INTO checkpoint_migrations VALUES (1, 'checkpoints table', 'then')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO checkpoints VALUES ('a', 'e', 1, 'n', NULL, 0, '{}', x'00')",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), vec![2, 3]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
            .unwrap();
        let leases: i64 = conn
            .query_row("SELECT count(*) FROM checkpoint_leases", [], |r| r.get(0))
            .unwrap();
        assert_eq!((rows, leases), (1, 0));
    }

    #[test]
    fn the_version_rule_is_enforced_by_the_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let insert = "INSERT INTO checkpoints VALUES (?1, 'e', ?2, 'n', NULL, 0, '{}', x'00', \
                      NULL, NULL, NULL, 0)";
        conn.execute(insert, ("a", 1)).unwrap();
        let err = conn.execute(insert, ("b", 1)).unwrap_err();
        assert!(crate::error::is_version_taken(&err), "{err}");
        let err = conn.execute(insert, ("c", 0)).unwrap_err();
        assert!(!crate::error::is_version_taken(&err), "{err}");
    }
}
