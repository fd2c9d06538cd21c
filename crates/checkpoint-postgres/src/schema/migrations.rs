//! The schema steps of each table layout, embedded and checksummed.
//!
//! Step 1 is the reference schema (LangGraphGo's `PostgresCheckpointStore`), so a table that
//! store created is adopted in place; step 2 renumbers such a table's versions per execution in
//! timestamp order and only then adds the version rule; step 3 adds the delta storage columns
//! (old rows stay whole states). A partitioned layout makes the table of step 3 in one step.

use sha2::{Digest, Sha256};

use crate::schema::layout::{PartitionPeriod, TableLayout};
use crate::schema::table::TableName;
use crate::schema::ADOPTED_WITHOUT_EXECUTION;

/// One schema step. `{table}`, `{index}`, `{reference_index}` are replaced by quoted names.
pub(crate) struct Migration {
    pub(crate) version: i32,
    pub(crate) description: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "checkpoint table (reference schema)",
        sql: "CREATE TABLE IF NOT EXISTS {table} (
                id TEXT PRIMARY KEY,
                execution_id TEXT NOT NULL,
                node_name TEXT NOT NULL,
                state JSONB NOT NULL,
                metadata JSONB,
                \"timestamp\" TIMESTAMPTZ NOT NULL,
                version INTEGER NOT NULL
              );",
    },
    Migration {
        version: 2,
        description: "lineage, 64-bit versions renumbered per execution, the version rule",
        sql: "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS parent_id TEXT;
              DROP INDEX IF EXISTS {reference_index};
              ALTER TABLE {table}
                ALTER COLUMN version TYPE BIGINT,
                ALTER COLUMN execution_id TYPE TEXT COLLATE \"C\";
              UPDATE {table} AS c SET version = r.rank
                FROM (SELECT id, row_number() OVER (PARTITION BY execution_id
                                                    ORDER BY \"timestamp\", version, id) AS rank
                        FROM {table}
                       WHERE execution_id IN (SELECT execution_id FROM {table}
                                               GROUP BY execution_id
                                              HAVING count(*) <> count(DISTINCT version))) r
               WHERE c.id = r.id;
              CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {table} (execution_id, version);",
    },
    Migration {
        version: 3,
        description: "state storage: compressed payloads, deltas against a base version",
        // Online on a table of any size: new nullable columns and NOT VALID constraints change
        // only the catalog (existing rows stay valid as whole states in `state`); the partial
        // index is empty on existing rows, so building it is one scan of the table.
        sql: "ALTER TABLE {table}
                ADD COLUMN IF NOT EXISTS payload BYTEA,
                ADD COLUMN IF NOT EXISTS base_version BIGINT,
                ADD COLUMN IF NOT EXISTS base_hash BIGINT,
                ADD COLUMN IF NOT EXISTS state_hash BIGINT,
                ADD COLUMN IF NOT EXISTS depth INTEGER,
                ALTER COLUMN state DROP NOT NULL;
              ALTER TABLE {table} ALTER COLUMN payload SET STORAGE EXTERNAL;
              ALTER TABLE {table} ADD CONSTRAINT {state_check}
                CHECK ((state IS NULL) <> (payload IS NULL)) NOT VALID;
              ALTER TABLE {table} ADD CONSTRAINT {delta_check}
                CHECK (base_version IS NULL OR (base_version < version AND base_hash IS NOT NULL
                       AND payload IS NOT NULL)) NOT VALID;
              CREATE INDEX IF NOT EXISTS {base_index} ON {table} (execution_id, base_version)
                WHERE base_version IS NOT NULL;
              ALTER TABLE {table} ADD CONSTRAINT {base_key}
                FOREIGN KEY (execution_id, base_version) REFERENCES {table} (execution_id, version)
                NOT VALID;
              UPDATE {table} AS c SET execution_id = '{no_execution}',
                  metadata = COALESCE(c.metadata, '{}'::jsonb)
                             || jsonb_build_object('adopted_execution_id', ''),
                  version = r.version + COALESCE((SELECT MAX(version) FROM {table}
                                                   WHERE execution_id = '{no_execution}'), 0)
                FROM (SELECT id, version FROM {table} WHERE execution_id = '') r
               WHERE c.id = r.id;",
    },
    Migration {
        version: 4,
        description: "ids unique per execution on partitioned layouts (the plain table keeps \
                      its primary key on id: nothing changes)",
        sql: "SELECT 1;",
    },
    Migration {
        version: 5,
        description: "partitioned layouts key ids by id first and keep delta foreign keys \
                      within a partition (the plain table changes nothing)",
        sql: "SELECT 1;",
    },
    Migration {
        version: 6,
        description: "time-partitioned layouts check each row's start in the store's \
                      statements (the plain table changes nothing)",
        sql: "SELECT 1;",
    },
    LEASES,
];

/// The table of leases as schema 7 makes it, part of each step's text (so of its checksum).
macro_rules! leases_table {
    () => {
        "CREATE TABLE IF NOT EXISTS {leases} (
            execution_id TEXT COLLATE \"C\" PRIMARY KEY,
            owner TEXT NOT NULL,
            token BIGINT NOT NULL CHECK (token > 0),
            expires_at TIMESTAMPTZ NOT NULL
          );"
    };
}

/// Schema 7 of every layout but the distributed one: the table of leases, one row per
/// execution that ever had one (a new table: online on a checkpoint table of any size).
const LEASES: Migration = Migration {
    version: 7,
    description: "leases with fencing tokens, one row per execution",
    sql: leases_table!(),
};

/// Schema 7 of the distributed layout: the table of leases, distributed by `execution_id`
/// and co-located with the checkpoint table under Citus, so a fenced write's check and its
/// write go to one shard group.
const DISTRIBUTED_LEASES: Migration = Migration {
    version: 7,
    description: "leases with fencing tokens, distributed with the checkpoint table",
    sql: concat!(
        leases_table!(),
        "
          DO $distribute$
          BEGIN
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
              PERFORM create_distributed_table('{leases_text}', 'execution_id',
                                               colocate_with => '{table_text}');
            END IF;
          END
          $distribute$;"
    ),
};

/// Schema 6 of the layouts other than the time-partitioned one: nothing changes.
const NOTHING_AT_6: Migration = Migration {
    version: 6,
    description: "nothing changes on this layout",
    sql: "SELECT 1;",
};

/// Schema 6 of the time-partitioned layouts: the foreign key from each row's start to the
/// registry goes (and the registry's unique key it referenced). It cost a query and a row lock
/// on the registry entry per inserted row: with it, one row a statement to a partition ran at
/// 0.83–0.93× the rate without it (`pgbench`, 16 clients, three runs). The store's statements check the start
/// instead: through the partitioned table the start is `{start}(execution_id)`, the registry's
/// by construction; written to a partition directly, the start the store learnt is written
/// only if the registry holds it (`Start::value` in `statements.rs`). The registry changes
/// only when retention drops a partition with its executions, in one transaction that waits
/// for every write to that partition. A writer that goes around the store must take
/// `execution_start` from `{start}(execution_id)`, as `docs/scaling.md`'s copy does.
const TIME_START_CHECKED: Migration = Migration {
    version: 6,
    description: "each row's start is checked by the store's statements, not a foreign key",
    sql: "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {start_key};
          ALTER TABLE {executions} DROP CONSTRAINT IF EXISTS {started_key};",
};

/// The columns of a checkpoint table made in one step (schema 3 and later), as DDL lines at
/// the indentation every such step has always used: part of each step's text, so of its
/// checksum (pinned by a test), shared rather than copied.
macro_rules! checkpoint_columns {
    () => {
        "id TEXT NOT NULL,
            execution_id TEXT COLLATE \"C\" NOT NULL,
            node_name TEXT NOT NULL,
            state JSONB,
            metadata JSONB,
            \"timestamp\" TIMESTAMPTZ NOT NULL,
            version BIGINT NOT NULL,
            parent_id TEXT,
            payload BYTEA,
            base_version BIGINT,
            base_hash BIGINT,
            state_hash BIGINT,
            depth INTEGER,"
    };
}

/// The columns of `checkpoint_columns!`, for the test that holds them to
/// `schema::columns`.
#[cfg(test)]
pub(crate) const CHECKPOINT_COLUMNS_DDL: &str = checkpoint_columns!();

/// The two checks every table made in one step carries: a state in one column only, and a
/// delta always below its version with its base's hash.
macro_rules! state_checks {
    () => {
        "CONSTRAINT {state_check} CHECK ((state IS NULL) <> (payload IS NULL)),
            CONSTRAINT {delta_check} CHECK (base_version IS NULL OR (base_version < version
                AND base_hash IS NOT NULL AND payload IS NOT NULL))"
    };
}

/// Schema 4 of the partitioned layouts: an id is unique within its execution, as every unique
/// index there already says, and the trigger that kept it unique across executions (a lock and
/// a probe of every partition per inserted row, held to commit) goes.
const DROP_ID_GUARD: Migration = Migration {
    version: 4,
    description: "ids unique per execution: the id guard trigger goes",
    sql: "DROP TRIGGER IF EXISTS {id_guard_trigger} ON {table};
          DROP FUNCTION IF EXISTS {id_guard}();",
};

/// Schema 4 of the time-partitioned layouts: as [`DROP_ID_GUARD`], and the trigger's other
/// check (a row's start is its execution's, for writers that bypass `{start}`) becomes a
/// foreign key to the registry: one index probe per row and a row lock on the registry entry,
/// nothing held in the server's lock table. Adding it checks the existing rows once.
const TIME_ID_SCOPE: Migration = Migration {
    version: 4,
    description: "ids unique per execution: the id guard trigger goes; a row's start is \
                  checked by a foreign key to the registry",
    sql: "DROP TRIGGER IF EXISTS {id_guard_trigger} ON {table};
          DROP FUNCTION IF EXISTS {id_guard}();
          ALTER TABLE {executions} ADD CONSTRAINT {started_key} UNIQUE (execution_id, started);
          ALTER TABLE {table} ADD CONSTRAINT {start_key}
            FOREIGN KEY (execution_id, execution_start)
            REFERENCES {executions} (execution_id, started);",
};

/// Schema 5 of the hash-partitioned layout: the id key leads with `id`, and the delta foreign
/// key lives on each partition, referencing that partition.
///
/// - `(execution_id, id)` became `(id, execution_id)`: the same rule (`ON CONFLICT` infers the
///   index by its columns, in any order), but it now also serves a read by id, so the separate
///   index on `id` goes (one index fewer per insert). It also cannot be mistaken for an index of
///   the execution: a generic plan made while a partition was empty chose it for the base check
///   of a group's deltas and read every row of the execution (measured: 10.8 ms against 1.0 ms a
///   group of 16 at 1,500 rows per execution).
/// - A foreign key on the partitioned table checks each delta's base through the parent, which
///   prunes partitions at every check; an execution's rows all live in one partition, so each
///   partition's key references the partition itself, checked as on a plain table. The keys
///   keep the table's key name, so a violation reads the same.
///
/// Rebuilding the index takes the table's write lock while it runs; adding the keys checks
/// each partition's deltas once.
const HASH_LEAF_KEYS: Migration = Migration {
    version: 5,
    description: "ids keyed id first; delta foreign keys within each partition",
    sql: "DROP INDEX IF EXISTS {id_index_path};
          DROP INDEX IF EXISTS {id_key_path};
          CREATE UNIQUE INDEX {id_key} ON {table} (id, execution_id);
          ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {base_key};
          DO $leaves$
          DECLARE leaf regclass;
          BEGIN
            FOR leaf IN SELECT i.inhrelid::regclass FROM pg_inherits i
                         WHERE i.inhparent = '{table_text}'::regclass
                           AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                                           WHERE c.conrelid = i.inhrelid
                                             AND c.conname = '{base_key_name}') LOOP
              EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (execution_id, \
                              base_version) REFERENCES %s (execution_id, version)',
                             leaf, '{base_key_name}', leaf);
            END LOOP;
          END
          $leaves$;",
};

/// Schema 5 of the time-partitioned layouts: the id key leads with `id`, for the reasons of
/// [`HASH_LEAF_KEYS`] (its delta foreign keys were on each partition from the start).
/// Partitions made from now on name their id index as before; the existing ones get the
/// server's names.
const TIME_ID_FIRST: Migration = Migration {
    version: 5,
    description: "ids keyed id first",
    sql: "DROP INDEX IF EXISTS {id_index_path};
          DROP INDEX IF EXISTS {id_key_path};
          CREATE UNIQUE INDEX {id_key} ON {table} (id, execution_id, execution_start);",
};

/// The hash-partitioned layout ([`TableLayout::HashPartitioned`]): the table of schema 3 made
/// in one step, partitioned by `execution_id`. Every unique index includes `execution_id`.
/// Schema 3 kept an id unique across partitions through a trigger (an advisory lock and a probe
/// of every partition per row); schema 4 drops it ([`DROP_ID_GUARD`]). The partitions
/// themselves are created after the last step, as many as the layout names.
pub(crate) const HASH_MIGRATIONS: &[Migration] = &[
    HASH_TABLE,
    DROP_ID_GUARD,
    HASH_LEAF_KEYS,
    NOTHING_AT_6,
    LEASES,
];

const HASH_TABLE: Migration = Migration {
    version: 3,
    description: "checkpoint table hash-partitioned by execution_id (schema 3)",
    sql: concat!(
        "CREATE TABLE {table} (
            ",
        checkpoint_columns!(),
        "
            ",
        state_checks!(),
        "
          ) PARTITION BY HASH (execution_id);
          ALTER TABLE {table} ALTER COLUMN payload SET STORAGE EXTERNAL;
          CREATE UNIQUE INDEX {index} ON {table} (execution_id, version);
          CREATE UNIQUE INDEX {id_key} ON {table} (execution_id, id);
          CREATE INDEX {id_index} ON {table} (id);
          CREATE INDEX {base_index} ON {table} (execution_id, base_version)
            WHERE base_version IS NOT NULL;
          ALTER TABLE {table} ADD CONSTRAINT {base_key}
            FOREIGN KEY (execution_id, base_version) REFERENCES {table} (execution_id, version);
          CREATE FUNCTION {id_guard}() RETURNS trigger LANGUAGE plpgsql AS $guard$
          BEGIN
            PERFORM pg_advisory_xact_lock(hashtextextended(NEW.id, 0));
            IF EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id
                       AND execution_id <> NEW.execution_id) THEN
              RAISE EXCEPTION 'checkpoint % belongs to another execution', NEW.id
                USING ERRCODE = 'unique_violation', CONSTRAINT = '{id_key_name}';
            END IF;
            RETURN NEW;
          END
          $guard$;
          CREATE TRIGGER {id_guard_trigger} BEFORE INSERT ON {table}
            FOR EACH ROW EXECUTE FUNCTION {id_guard}();"
    ),
};

/// The time-partitioned layout's one step, for each period: the table of schema 3, partitioned
/// by `execution_start`, and the registry that fixes each execution's start.
///
/// - `{start}(execution_id)` is what every insert writes as `execution_start`: the start on
///   record, or now, recorded by the first save (`ON CONFLICT DO NOTHING` makes a racing first
///   save wait for the other and take its start). It is volatile, so it runs per row.
/// - `{started}(execution_id)` is what every per-execution read names beside `execution_id`:
///   `STABLE`, so the server prunes to one partition when the statement starts, under generic
///   plans too, before it opens any partition. It is PL/pgSQL because PL/pgSQL keeps the plan
///   of its lookup for the session, where a SQL function plans it again in every statement
///   (measured: `latest` about a quarter faster). A scalar subquery instead would prune only
///   after every partition was opened, which costs more as partitions accumulate.
/// - The trigger refuses a row whose start is not its execution's (a writer that bypasses
///   `{start}`) and, as in the hash layout, an id that another execution holds.
/// - The delta foreign key is made on each partition, referencing the partition itself (all of
///   an execution's rows share it), so that a partition can be dropped whole.
macro_rules! time_partitioned_sql {
    ($period:literal) => {
        concat!(
            "CREATE TABLE {executions} (
            execution_id TEXT COLLATE \"C\" PRIMARY KEY,
            started TIMESTAMPTZ NOT NULL
          );
          CREATE INDEX {executions_started} ON {executions} (started);
          CREATE TABLE {table} (
            ",
            checkpoint_columns!(),
            "
            execution_start TIMESTAMPTZ NOT NULL,
            ",
            state_checks!(),
            "
          ) PARTITION BY RANGE (execution_start);
          ALTER TABLE {table} ALTER COLUMN payload SET STORAGE EXTERNAL;
          COMMENT ON TABLE {table} IS 'checkpoints, one partition per ",
            $period,
            " of execution_start';
          CREATE UNIQUE INDEX {index} ON {table} (execution_id, version, execution_start);
          CREATE UNIQUE INDEX {id_key} ON {table} (execution_id, id, execution_start);
          CREATE INDEX {id_index} ON {table} (id);
          CREATE INDEX {base_index} ON {table} (execution_id, base_version)
            WHERE base_version IS NOT NULL;
          CREATE FUNCTION {start}(e TEXT) RETURNS TIMESTAMPTZ LANGUAGE plpgsql VOLATILE
          AS $start$
          DECLARE s TIMESTAMPTZ;
          BEGIN
            SELECT started INTO s FROM {executions} WHERE execution_id = e;
            IF FOUND THEN RETURN s; END IF;
            INSERT INTO {executions} (execution_id, started) VALUES (e, now())
              ON CONFLICT (execution_id) DO NOTHING RETURNING started INTO s;
            IF FOUND THEN RETURN s; END IF;
            SELECT started INTO s FROM {executions} WHERE execution_id = e;
            RETURN s;
          END
          $start$;
          CREATE FUNCTION {started}(e TEXT) RETURNS TIMESTAMPTZ LANGUAGE plpgsql STABLE
          AS $started$
          BEGIN
            RETURN (SELECT started FROM {executions} WHERE execution_id = e);
          END
          $started$;
          CREATE FUNCTION {id_guard}() RETURNS trigger LANGUAGE plpgsql AS $guard$
          BEGIN
            IF NEW.execution_start IS DISTINCT FROM (SELECT started FROM {executions}
                                                      WHERE execution_id = NEW.execution_id) THEN
              RAISE EXCEPTION 'checkpoint % names a start other than its execution''s', NEW.id
                USING ERRCODE = 'check_violation';
            END IF;
            PERFORM pg_advisory_xact_lock(hashtextextended(NEW.id, 0));
            IF EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id
                       AND execution_id <> NEW.execution_id) THEN
              RAISE EXCEPTION 'checkpoint % belongs to another execution', NEW.id
                USING ERRCODE = 'unique_violation', CONSTRAINT = '{id_key_name}';
            END IF;
            RETURN NEW;
          END
          $guard$;
          CREATE TRIGGER {id_guard_trigger} BEFORE INSERT ON {table}
            FOR EACH ROW EXECUTE FUNCTION {id_guard}();"
        )
    };
}

/// The steps of the time-partitioned layout of one period.
macro_rules! time_migrations {
    ($period:literal) => {
        &[
            Migration {
                version: 3,
                description: concat!(
                    "checkpoint table partitioned by execution_start, by ",
                    $period,
                    " (schema 3)"
                ),
                sql: time_partitioned_sql!($period),
            },
            TIME_ID_SCOPE,
            TIME_ID_FIRST,
            TIME_START_CHECKED,
            LEASES,
        ]
    };
}

const TIME_MIGRATIONS_DAY: &[Migration] = time_migrations!("day");
const TIME_MIGRATIONS_WEEK: &[Migration] = time_migrations!("week");
const TIME_MIGRATIONS_MONTH: &[Migration] = time_migrations!("month");

/// The distributed layout ([`TableLayout::Distributed`]), one step at schema 4: a table keyed by
/// `execution_id` in every index, distributed by it when the `citus` extension is present
/// (from the coordinator, which keeps the migration record as a local table).
pub(crate) const DISTRIBUTED_MIGRATIONS: &[Migration] = &[
    DISTRIBUTED_TABLE,
    DISTRIBUTED_SAME,
    NOTHING_AT_6,
    DISTRIBUTED_LEASES,
];

/// Schema 5 of the distributed layout: nothing changes (its table is not partitioned; Citus
/// keeps its primary key as made).
const DISTRIBUTED_SAME: Migration = Migration {
    version: 5,
    description: "nothing changes on the distributed layout",
    sql: "SELECT 1;",
};

const DISTRIBUTED_TABLE: Migration = Migration {
    version: 4,
    description: "checkpoint table keyed by execution_id, distributed by it under Citus (schema 4)",
    sql: concat!(
        "CREATE TABLE {table} (
            ",
        checkpoint_columns!(),
        "
            ",
        state_checks!(),
        ",
            CONSTRAINT {id_key} PRIMARY KEY (execution_id, id)
          );
          ALTER TABLE {table} ALTER COLUMN payload SET STORAGE EXTERNAL;
          CREATE UNIQUE INDEX {index} ON {table} (execution_id, version);
          CREATE INDEX {id_index} ON {table} (id);
          CREATE INDEX {base_index} ON {table} (execution_id, base_version)
            WHERE base_version IS NOT NULL;
          ALTER TABLE {table} ADD CONSTRAINT {base_key}
            FOREIGN KEY (execution_id, base_version) REFERENCES {table} (execution_id, version);
          DO $distribute$
          BEGIN
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
              PERFORM create_distributed_table('{table_text}', 'execution_id');
            END IF;
          END
          $distribute$;"
    ),
};

/// The steps that make `layout`'s table.
pub(crate) fn chain(layout: TableLayout) -> &'static [Migration] {
    match layout {
        TableLayout::Plain => MIGRATIONS,
        TableLayout::HashPartitioned { .. } => HASH_MIGRATIONS,
        TableLayout::Distributed => DISTRIBUTED_MIGRATIONS,
        TableLayout::TimePartitioned { period } => match period {
            PartitionPeriod::Day => TIME_MIGRATIONS_DAY,
            PartitionPeriod::Week => TIME_MIGRATIONS_WEEK,
            PartitionPeriod::Month => TIME_MIGRATIONS_MONTH,
        },
    }
}

/// The partitions of a hash-partitioned layout, created with its table, each with its delta
/// foreign key on itself (see [`HASH_LEAF_KEYS`]); a time-partitioned layout's are made by
/// [`crate::store::partitions`], for the current time and ahead.
pub(crate) fn partitions_ddl(table: &TableName) -> String {
    match table.layout() {
        TableLayout::Plain | TableLayout::TimePartitioned { .. } | TableLayout::Distributed => {
            String::new()
        }
        TableLayout::HashPartitioned { partitions } => (0..partitions)
            .map(|i| {
                let partition = table.qualify(&table.derived(&format!("p{i}")));
                format!(
                    "CREATE TABLE {partition} PARTITION OF {} FOR VALUES WITH (MODULUS \
                     {partitions}, REMAINDER {i}); ALTER TABLE {partition} ADD CONSTRAINT \
                     \"{}\" FOREIGN KEY (execution_id, base_version) REFERENCES {partition} \
                     (execution_id, version);",
                    table.quoted(),
                    table.base_key()
                )
            })
            .collect(),
    }
}

pub(crate) fn checksum(migration: &Migration) -> String {
    Sha256::digest(migration.sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The step's SQL with every name quoted.
pub(crate) fn render(migration: &Migration, table: &TableName) -> String {
    migration
        .sql
        .replace("{table}", &table.quoted())
        // The table's name as a string literal: validated names hold no quote.
        .replace("{table_text}", &table.quoted())
        .replace("{index}", &format!("\"{}\"", table.version_index()))
        .replace(
            "{base_index}",
            &format!("\"{}\"", table.derived("base_version_idx")),
        )
        .replace("{base_key}", &format!("\"{}\"", table.base_key()))
        .replace("{base_key_name}", &table.base_key())
        .replace(
            "{state_check}",
            &format!("\"{}\"", table.derived("state_check")),
        )
        .replace(
            "{delta_check}",
            &format!("\"{}\"", table.derived("delta_check")),
        )
        .replace("{no_execution}", ADOPTED_WITHOUT_EXECUTION)
        .replace("{id_key_name}", &table.id_key())
        .replace("{id_key_path}", &table.qualify(&table.id_key()))
        .replace("{id_index_path}", &table.qualify(&table.derived("id_idx")))
        .replace("{id_key}", &format!("\"{}\"", table.id_key()))
        .replace("{id_index}", &format!("\"{}\"", table.derived("id_idx")))
        .replace("{id_guard}", &table.qualify(&table.derived("id_guard")))
        .replace("{executions}", &table.qualify(&table.executions_table()))
        .replace("{leases}", &table.qualify(&table.leases_table()))
        .replace("{leases_text}", &table.qualify(&table.leases_table()))
        .replace(
            "{executions_started}",
            &format!("\"{}\"", table.derived("started_idx")),
        )
        .replace(
            "{started_key}",
            &format!("\"{}\"", table.derived("started_key")),
        )
        .replace(
            "{start_key}",
            &format!("\"{}\"", table.derived("start_key")),
        )
        .replace("{start}", &table.start_function())
        .replace("{started}", &table.started_function())
        .replace(
            "{id_guard_trigger}",
            &format!("\"{}\"", table.derived("id_guard")),
        )
        .replace(
            "{reference_index}",
            &table.qualify(&format!("idx_{}_execution_id", table.table())),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum of every step ever released, pinned: a step's text may be refactored, but
    /// never changed, or every table made by it is refused as modified.
    #[test]
    fn released_steps_keep_their_checksums() {
        let mut all: Vec<(&str, i32, String)> = Vec::new();
        for (name, steps) in [
            ("plain", MIGRATIONS),
            ("hash", HASH_MIGRATIONS),
            ("day", TIME_MIGRATIONS_DAY),
            ("week", TIME_MIGRATIONS_WEEK),
            ("month", TIME_MIGRATIONS_MONTH),
            ("distributed", DISTRIBUTED_MIGRATIONS),
        ] {
            for step in steps {
                all.push((name, step.version, checksum(step)));
            }
        }
        for (name, version, sum) in PINNED {
            let found = all
                .iter()
                .find(|(n, v, _)| n == name && v == version)
                .unwrap_or_else(|| panic!("{name} step {version} is gone"));
            assert_eq!(&found.2, sum, "{name} step {version} changed");
        }
    }

    const PINNED: &[(&str, i32, &str)] = &[
        (
            "plain",
            1,
            "ad1a069d8c58f8d3ecde2a4e9ed5d774169c2d3adf5b0b7cffdb7827f7cd7d54",
        ),
        (
            "plain",
            2,
            "e35b2d2d4aa1225106e1ff151b6c56fb5eac79bae780ce9dd92a7862261005e9",
        ),
        (
            "plain",
            3,
            "0116a7387c626217b4e947ae9792fe453cf844df9af25e69af0d9d17c60da994",
        ),
        (
            "plain",
            4,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
        (
            "hash",
            3,
            "7feb9880b6ee7565bf36a3453242fe8af14461752b0a515851c966f5c8b98a19",
        ),
        (
            "hash",
            4,
            "96b5c8acb9c1fb1a772125ee5ceb41aec9ec8981ec6c2b2694a423a33f34e8f7",
        ),
        (
            "day",
            3,
            "2ada0d76ac8ec70844814e09eb2f10ea54d7990a03d3a361df4db3d25101a309",
        ),
        (
            "day",
            4,
            "9e21c71bba56c9d317c455ee27336703f0fc7a876c78a8a1be5420fb786d8c1d",
        ),
        (
            "week",
            3,
            "f536ed4f5c8a1ad96ccb01f91e3093104c961b5169cd1ca60710b8cc5c7b2401",
        ),
        (
            "week",
            4,
            "9e21c71bba56c9d317c455ee27336703f0fc7a876c78a8a1be5420fb786d8c1d",
        ),
        (
            "month",
            3,
            "a339614594e748a03bc69de3da2318aaf3b653296d6ce98512f054fe5dc3491b",
        ),
        (
            "month",
            4,
            "9e21c71bba56c9d317c455ee27336703f0fc7a876c78a8a1be5420fb786d8c1d",
        ),
        (
            "distributed",
            4,
            "b8a01ea1459bdf719b642398b8d39fa7028d0e84f318becf573aceb6af96b974",
        ),
        (
            "plain",
            5,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
        (
            "hash",
            5,
            "1b28d8c3dede3bf5dc5b345de7f95ccaafc3ba8f6995c61c986e12a73b2f209e",
        ),
        (
            "day",
            5,
            "a8f4cd36cc1931d8776dfd945488d9f2f9ed9249c7e03bca6128e4e42275e1c4",
        ),
        (
            "week",
            5,
            "a8f4cd36cc1931d8776dfd945488d9f2f9ed9249c7e03bca6128e4e42275e1c4",
        ),
        (
            "month",
            5,
            "a8f4cd36cc1931d8776dfd945488d9f2f9ed9249c7e03bca6128e4e42275e1c4",
        ),
        (
            "distributed",
            5,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
        (
            "plain",
            6,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
        (
            "hash",
            6,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
        (
            "day",
            6,
            "b78fdb737d2a8e73447861a4963b200206aca62d1edb82b4d43a490c1ab6c8bd",
        ),
        (
            "week",
            6,
            "b78fdb737d2a8e73447861a4963b200206aca62d1edb82b4d43a490c1ab6c8bd",
        ),
        (
            "month",
            6,
            "b78fdb737d2a8e73447861a4963b200206aca62d1edb82b4d43a490c1ab6c8bd",
        ),
        (
            "plain",
            7,
            "f271c0626533532e17c1288801fe69beb6cb909e225c22e335f3f36c12af43ec",
        ),
        (
            "hash",
            7,
            "f271c0626533532e17c1288801fe69beb6cb909e225c22e335f3f36c12af43ec",
        ),
        (
            "day",
            7,
            "f271c0626533532e17c1288801fe69beb6cb909e225c22e335f3f36c12af43ec",
        ),
        (
            "week",
            7,
            "f271c0626533532e17c1288801fe69beb6cb909e225c22e335f3f36c12af43ec",
        ),
        (
            "month",
            7,
            "f271c0626533532e17c1288801fe69beb6cb909e225c22e335f3f36c12af43ec",
        ),
        (
            "distributed",
            7,
            "462a453a025a30f9e50314b598bfc60a48d8658c1d34c040bb0f577926e400e4",
        ),
        (
            "distributed",
            6,
            "17db4fd369edb9244b9f91d9aeed145c3d04ad8ba6e95d06247f07a63527d11a",
        ),
    ];
}
