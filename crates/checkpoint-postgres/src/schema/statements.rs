//! The statements the store runs, built once per table.
//!
//! Every value is a bound parameter. Every statement that touches one execution is written so
//! that the unique index on `(execution_id, version)` can serve it as an index range (both
//! version bounds are always bound, inclusive, never optional), so its cost does not grow with
//! the table.

use tokio_postgres::types::Type;

use crate::pool::Sql;
use crate::schema::layout::TableLayout;
use crate::schema::leases::LeaseStatements;
use crate::schema::table::TableName;

use crate::schema::columns::{self, COLUMNS, STORAGE_COLUMNS};

/// Every statement the store runs on one table, for inspection (`EXPLAIN`, benchmarks,
/// reviews). See [`PostgresStore::statements`](crate::PostgresStore::statements).
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct Statements {
    pub save: Sql,
    pub save_delta: Sql,
    pub save_fenced: Sql,
    pub save_delta_fenced: Sql,
    /// The distributed layout's saves in the shape Citus sends whole to one shard, tried before
    /// the general ones above; `None` on the other layouts.
    pub routed: Option<RoutedSaves>,
    pub upsert: Sql,
    pub lock_row: Sql,
    pub dependents: Sql,
    pub chains: Sql,
    pub rewrite: Sql,
    pub load: Sql,
    pub list: Sql,
    pub latest: Sql,
    pub delete: Sql,
    pub id_executions: Sql,
    pub load_in: Sql,
    pub clear: Sql,
    pub page_ascending: Sql,
    pub page_descending: Sql,
    pub batch_lookup: Sql,
    pub batch_insert: Sql,
    pub batch_append: Sql,
    pub group_save: Sql,
    pub group_save_delta: Sql,
    pub reencrypt_read: Sql,
    pub reencrypt_write: Sql,
    pub reencrypt_bases: Sql,
    pub executions: Sql,
    pub prune_execution: Sql,
    pub prune_execution_lazy: Sql,
    pub prune_executions: Sql,
    pub prune_executions_lazy: Sql,
    pub prune_all: Sql,
    pub prune_survivors_execution: Sql,
    pub prune_survivors_all: Sql,
    pub fork: Sql,
    pub fork_insert: Sql,
    pub fork_source: Sql,
    /// The statements of leases.
    pub leases: LeaseStatements,
}

/// What a time-partitioned layout adds to statements: the start every insert writes, and the
/// start every per-execution read names so that the server reads one partition. Empty for the
/// other layouts.
struct Start {
    /// The volatile function that records an execution's start on its first save.
    record: Option<String>,
    /// The `STABLE` function that reads it.
    read: Option<String>,
    /// Whether an append's read of the highest version takes a floor.
    floored: bool,
    /// Where a statement writes to one partition directly.
    leaf: Option<Leaf>,
}

/// What a statement written to one partition directly adds.
struct Leaf {
    /// The start each row is given: the bound expression (`n.start` in a group,
    /// `$14::timestamptz` in a single save).
    given: &'static str,
    /// The registry of starts (quoted, qualified) that each given start is checked against.
    registry: String,
    /// The condition that the partition is still attached to the table (a detached one has
    /// no bounds left to check).
    attached: String,
}

impl Start {
    fn of(table: &TableName) -> Self {
        let floored = table.layout().floored_appends();
        match table.layout() {
            TableLayout::TimePartitioned { .. } => Start {
                record: Some(table.start_function()),
                read: Some(table.started_function()),
                floored,
                leaf: None,
            },
            TableLayout::Plain | TableLayout::HashPartitioned { .. } | TableLayout::Distributed => {
                Start {
                    record: None,
                    read: None,
                    floored,
                    leaf: None,
                }
            }
        }
    }

    /// Partition `leaf` (quoted) of the time-partitioned `table`, written directly: every row
    /// of an execution is there, so reads need neither the start nor a floor; each row's start
    /// is given, and written only if the registry holds it for the row's execution; and nothing
    /// is written unless the partition is still attached to the table.
    fn leaf(given: &'static str, leaf: &str, table: &TableName) -> Self {
        let registry = table.qualify(&table.executions_table());
        let table = table.quoted();
        // Validated names hold no quote, so they can stand in a literal.
        Start {
            record: None,
            read: None,
            floored: false,
            leaf: Some(Leaf {
                given,
                registry,
                attached: format!(
                    "EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = \
                     '{leaf}'::regclass AND inhparent = '{table}'::regclass)"
                ),
            }),
        }
    }

    /// ` AND <alias>execution_start = started(<execution>)`.
    fn key(&self, alias: &str, execution: &str) -> String {
        self.read
            .as_ref()
            .map(|f| format!(" AND {alias}execution_start = {f}({execution})"))
            .unwrap_or_default()
    }

    /// The column an insert adds.
    fn column(&self) -> &'static str {
        if self.record.is_some() || self.leaf.is_some() {
            ", execution_start"
        } else {
            ""
        }
    }

    /// The value an insert adds: `, start(<execution>)`, or the given start where the
    /// registry holds it for `<execution>`. A start the registry does not hold (the execution
    /// moved, or was forgotten with its partition) is NULL, which the column refuses
    /// (`23502`): the store then writes through the partitioned table. A foreign key did this
    /// up to schema 5, at the cost of a query and a row lock per inserted row.
    fn value(&self, execution: &str) -> String {
        if let Some(Leaf {
            given, registry, ..
        }) = &self.leaf
        {
            return format!(
                ", (SELECT r.started FROM {registry} r WHERE r.execution_id = {execution} \
                 AND r.started = {given})"
            );
        }
        self.record
            .as_ref()
            .map(|f| format!(", {f}({execution})"))
            .unwrap_or_default()
    }

    /// Whether an append's read of the highest version takes a floor (see
    /// [`VersionFloors`](crate::store::floors::VersionFloors)): on the time-partitioned layout,
    /// whose generic plans otherwise read every row of the execution.
    fn floored(&self) -> bool {
        self.floored
    }

    /// ` AND <alias>version >= <floor>` where the read takes a floor.
    fn above(&self, alias: &str, floor: &str) -> String {
        if self.floored() {
            format!(" AND {alias}version >= {floor}")
        } else {
            String::new()
        }
    }

    /// The highest version of `execution` among the rows above the floor (`bounded`), or, when
    /// the floor is past them all, of every row: `COALESCE(<bounded>, <every row>, 0)`.
    fn highest(&self, t: &str, bounded: &str, execution: &str) -> String {
        if self.floored() {
            format!(
                "COALESCE({bounded}, (SELECT MAX(w.version) FROM {t} w \
                 WHERE w.execution_id = {execution}{}), 0)",
                self.key("w.", execution)
            )
        } else {
            format!("COALESCE({bounded}, 0)")
        }
    }
}

/// A read of the rows `seed` selects (it yields `execution_id, version, base_version`) and of
/// every base their states are rebuilt from, in one statement. Each step down a chain is one
/// probe of the version index, and a base always has a lower version than its delta, so the
/// walk ends.
fn with_chains(
    t: &str,
    start: &Start,
    seed: &str,
    wanted: &str,
    execution: Option<&str>,
) -> String {
    // With the execution known, every read of the table names it, so a table partitioned by
    // execution reads one partition (a join on `chain.execution_id` alone cannot be pruned).
    // A table partitioned by start names the start of each row's execution.
    let same = match execution {
        Some(e) => format!(" AND b.execution_id = {e}{}", start.key("b.", e)),
        None => start.key("b.", "c.execution_id"),
    };
    let outer = match execution {
        Some(e) => format!(" AND x.execution_id = {e}{}", start.key("x.", e)),
        None => start.key("x.", "chain.execution_id"),
    };
    format!(
        "WITH RECURSIVE seed AS MATERIALIZED ({seed}), \
         chain AS (SELECT execution_id, version, base_version FROM seed \
           UNION SELECT b.execution_id, b.version, b.base_version FROM chain c \
           JOIN {t} b ON b.execution_id = c.execution_id AND b.version = c.base_version \
           AND b.version < c.version{same}) \
         SELECT {columns}, {wanted} FROM chain JOIN {t} x \
           ON x.execution_id = chain.execution_id AND x.version = chain.version{outer}",
        columns = x_columns()
    )
}

/// [`READ_COLUMNS`](crate::state::chain::READ_COLUMNS) of the table aliased `x`.
fn x_columns() -> String {
    crate::state::chain::READ_COLUMNS
        .split(", ")
        .map(|c| format!("x.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameter types of a batch's insert of column arrays (see [`batch_columns`]).
fn batch_types() -> Vec<Type> {
    columns::arrays(&batch_columns())
}

/// The columns a batch binds, one array each: the checkpoint's, the payload, the state hash.
fn batch_columns() -> Vec<&'static columns::Column> {
    let mut picked: Vec<_> = columns::CHECKPOINT.iter().collect();
    picked.extend(columns::pick(&["payload", "state_hash"]));
    picked
}

/// The statement of a group commit: the saves of the group as one array per column, written
/// in one statement that stores all or none. Appends (version 0) continue after their
/// execution's highest version in arrival order, read once before any row is inserted;
/// explicit versions are written as given. With `deltas`, a delta whose base row no longer
/// holds the state it was computed against (same content hash, same depth) gets a NULL
/// version, which fails the statement; `FOR SHARE` holds each base until commit, as in the
/// single save.
///
/// Each save carries a fencing token (bound last; NULL for an unfenced save). With `leases`
/// (the leases table, quoted), a fenced save is inserted only while its execution's lease
/// holds that token, read `FOR SHARE`; one that no longer does is left out of the group and
/// returns no row, so it is made alone, where it meets `LeaseLost`, while the others are
/// stored. Without `leases` (the distributed layout, where fenced saves never join a group)
/// the tokens are not read.
fn group_save(t: &str, start: &Start, deltas: bool, leases: Option<&str>) -> Sql {
    // Written to one partition, each row's start comes with it; the time-partitioned layout
    // returns each row's start, for the store to learn where its execution's rows live.
    let (given, given_column, given_types): (&str, &str, &[Type]) = if start.leaf.is_some() {
        (
            ", $15::timestamptz[]",
            ", start",
            &[Type::TIMESTAMPTZ_ARRAY],
        )
    } else {
        ("", "", &[])
    };
    let fence_param = 15 + given_types.len();
    let (fences, fenced) = match leases {
        Some(leases) => (
            format!(
                ", fences AS (SELECT l.execution_id, l.token FROM {leases} l WHERE \
                 l.execution_id = ANY(ARRAY(SELECT execution_id FROM i WHERE fence IS NOT NULL)) \
                 FOR SHARE)"
            ),
            Some(
                "(n.fence IS NULL OR EXISTS (SELECT 1 FROM fences f WHERE f.execution_id = \
                 n.execution_id AND f.token = n.fence))",
            ),
        ),
        None => (String::new(), None),
    };
    let (check, version) = if deltas {
        (
            format!(
                ", b AS (SELECT i.ord FROM i CROSS JOIN LATERAL (SELECT 1 FROM {t} x \
                 WHERE x.execution_id = i.execution_id AND x.version = i.base_version{} \
                 AND x.state_hash = i.base_hash AND COALESCE(x.depth, 0) = i.base_depth \
                 FOR SHARE) l WHERE i.base_version IS NOT NULL)",
                start.key("x.", "i.execution_id")
            ),
            "CASE WHEN n.base_version IS NOT NULL AND n.ord NOT IN (SELECT ord FROM b) \
             THEN NULL ELSE n.v END",
        )
    } else {
        (String::new(), "n.v")
    };
    Sql::new(
        format!(
            "WITH i AS (SELECT * FROM unnest({arrays}, $14::int8[]{given}, \
             ${fence_param}::int8[]) WITH ORDINALITY AS \
             i(id, execution_id, node_name, state, metadata, ts, version, parent_id, payload, \
             base_version, base_hash, state_hash, base_depth, floor{given_column}, fence, \
             ord)), \
             top AS MATERIALIZED (SELECT e.execution_id, {highest} AS version \
             FROM (SELECT execution_id, MAX(floor) AS floor FROM i WHERE version = 0 \
             GROUP BY execution_id) e){check}{fences}, \
             n AS (SELECT i.*, CASE WHEN i.version = 0 THEN top.version + row_number() OVER \
             (PARTITION BY i.execution_id, i.version = 0 ORDER BY i.ord) ELSE i.version END AS v \
             FROM i LEFT JOIN top ON top.execution_id = i.execution_id) \
             INSERT INTO {t} ({COLUMNS}, {STORAGE_COLUMNS}{column}) SELECT n.id, \
             n.execution_id, n.node_name, n.state, n.metadata, n.ts, {version}, n.parent_id, \
             n.payload, n.base_version, n.base_hash, n.state_hash, \
             CASE WHEN n.base_version IS NULL THEN 0 ELSE n.base_depth + 1 END{value} \
             FROM n{attached} ORDER BY n.ord RETURNING id, version{column}",
            arrays = columns::typed_arrays(&every_column(), 1),
            highest = start.highest(
                t,
                &format!(
                    "(SELECT MAX(version) FROM {t} WHERE execution_id = e.execution_id{}{})",
                    start.key("", "e.execution_id"),
                    start.above("", "e.floor")
                ),
                "e.execution_id"
            ),
            column = start.column(),
            value = start.value("n.execution_id"),
            attached = {
                let conditions: Vec<&str> = start
                    .leaf
                    .as_ref()
                    .map(|l| l.attached.as_str())
                    .into_iter()
                    .chain(fenced)
                    .collect();
                if conditions.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conditions.join(" AND "))
                }
            },
        ),
        &[
            &columns::arrays(&every_column())[..],
            &[Type::INT8_ARRAY],
            given_types,
            &[Type::INT8_ARRAY],
        ]
        .concat(),
    )
}

/// Every column, as every read selects them.
fn every_column() -> Vec<&'static columns::Column> {
    columns::CHECKPOINT.iter().chain(columns::STORAGE).collect()
}

/// The group statement written to one partition (`leaf`, quoted) of the time-partitioned
/// `table`, for a group whose executions all started in that partition's period: the rows'
/// starts are bound (`$15`), and every read of an execution's rows reads that partition only.
/// A start the registry does not hold for its execution fails the statement (see
/// `Start::value`), as does one outside the partition's bounds; a partition no longer attached
/// to the table stores nothing and returns no row.
pub(crate) fn group_save_leaf(leaf: &str, table: &TableName, deltas: bool) -> Sql {
    let leases = table.qualify(&table.leases_table());
    group_save(
        leaf,
        &Start::leaf("n.start", leaf, table),
        deltas,
        Some(&leases),
    )
}

/// `save` and `save_delta` written to one partition (`leaf`, quoted) of the time-partitioned
/// `table`, for an execution whose start the store has learnt: the start is bound (`$14`),
/// and the append reads that partition only. Checked as [`group_save_leaf`] is.
pub(crate) fn save_leaf(leaf: &str, table: &TableName) -> [Sql; 2] {
    save_statements(
        leaf,
        &Start::leaf("$14::timestamptz", leaf, table),
        table.layout().id_conflict_target(),
        None,
    )
}

/// The parameters of the save statements: the checkpoint, then how its state is stored
/// (payload, base version, base hash, state hash, base depth).
fn save_types() -> Vec<Type> {
    columns::params(&every_column())
}

/// `save` (a state stored whole) and `save_delta` on table `t`. With `leases` (the leases
/// table, quoted), their fenced forms: the execution's lease row is read `FOR SHARE` in the
/// statement, and nothing is inserted unless its token is the one bound last (see
/// [`crate::store::lease`]).
fn save_statements(t: &str, start: &Start, id_target: &str, leases: Option<&str>) -> [Sql; 2] {
    // The version of an append, read in the same statement from the execution's rows
    // (`FROM {t} v WHERE v.execution_id = $2`): an `INSERT … SELECT` over one execution, the
    // shape Citus routes to one shard (it refuses a subquery in `INSERT … VALUES`). On the
    // time-partitioned layout the rows read are those at or above the floor ($14), and every
    // row of the execution only when none is.
    let next_version = format!(
        "CASE WHEN $7::int8 = 0 THEN {} + 1 ELSE $7::int8 END",
        start.highest(t, "MAX(v.version)", "$2")
    );
    // The checkpoint's own columns, each parameter cast: Citus sends an `INSERT … SELECT` to
    // the shard as text, where a bare `$1` has no type.
    let typed = columns::typed(&columns::CHECKPOINT.iter().take(6).collect::<Vec<_>>(), 1);
    let execution_rows = format!(
        "FROM {t} v WHERE v.execution_id = $2{}{}",
        start.key("v.", "$2"),
        start.above("v.", "$14::int8")
    );
    let column = start.column();
    let attached = start.leaf.as_ref().map(|l| &l.attached);
    // Then the floor or the given start, if any, then the fencing token.
    let mut types = save_types();
    if start.floored() {
        types.push(Type::INT8);
    }
    if start.leaf.is_some() {
        types.push(Type::TIMESTAMPTZ);
    }
    let fence = leases.map(|leases| {
        types.push(Type::INT8);
        (
            format!("fence AS ({})", lease_held(leases, types.len())),
            "EXISTS (SELECT 1 FROM fence)",
        )
    });
    let conditions: Vec<&str> = attached
        .map(String::as_str)
        .into_iter()
        .chain(fence.as_ref().map(|(_, held)| *held))
        .collect();
    let having = if conditions.is_empty() {
        String::new()
    } else {
        format!(" HAVING {}", conditions.join(" AND "))
    };
    let delta_having = std::iter::once("($10::int8 IS NULL OR EXISTS (SELECT 1 FROM b))")
        .chain(conditions.iter().copied())
        .collect::<Vec<_>>()
        .join(" AND ");
    let (with_fence, and_fence) = match &fence {
        Some((cte, _)) => (format!("WITH {cte} "), format!(", {cte}")),
        None => (String::new(), String::new()),
    };
    [
        // One statement, one round trip, for a state stored whole (a snapshot, or JSONB): an
        // id that exists inserts nothing, and the careful path replaces it, rewriting the rows
        // built on it first. $10, $11 and $13 (the base) are not used. The time-partitioned
        // layout returns the row's start, for the store to learn where the execution lives.
        Sql::new(
            format!(
                "{with_fence}INSERT INTO {t} AS c ({COLUMNS}, {STORAGE_COLUMNS}{column}) \
                 SELECT {typed}, {next_version}, $8::text, $9::bytea, NULL, NULL, $12::int8, 0{} \
                 {execution_rows}{having} ON CONFLICT {id_target} DO NOTHING RETURNING \
                 version{column}",
                start.value("$2")
            ),
            &types,
        ),
        // The same for a delta. A delta is written only while its base row still holds the
        // state it was computed against (same content hash, same chain depth); FOR SHARE keeps
        // that row from being replaced or removed until this commits (a replacement or removal
        // waits, then rewrites this row first). An id that exists inserts nothing: replacing a
        // row goes through the careful path, which rewrites the rows built on it.
        Sql::new(
            format!(
                "WITH b AS ({}){and_fence} \
                 INSERT INTO {t} AS c ({COLUMNS}, {STORAGE_COLUMNS}{column}) \
                 SELECT {typed}, {next_version}, $8::text, $9::bytea, $10::int8, \
                 $11::int8, $12::int8, {DELTA_DEPTH}{} \
                 {execution_rows} HAVING {delta_having} \
                 ON CONFLICT {id_target} DO NOTHING RETURNING version{column}",
                base_held(t, &start.key("x.", "$2")),
                start.value("$2")
            ),
            &types,
        ),
    ]
}

/// A delta's chain depth: one more than its base's; a snapshot's is 0.
const DELTA_DEPTH: &str = "CASE WHEN $10::int8 IS NULL THEN 0 ELSE $13 + 1 END";

/// The row of the base a delta (`$10`, `$11`, `$13`) was computed on, in execution `$2` of
/// `t`, while it still holds that state, kept from being replaced or removed until the save
/// commits (`FOR SHARE`); `key` adds what else names the execution's rows (`x.` columns).
fn base_held(t: &str, key: &str) -> String {
    format!(
        "SELECT 1 FROM {t} x WHERE $10::int8 IS NOT NULL AND x.execution_id = $2{key} \
         AND x.version = $10 AND x.state_hash = $11 AND COALESCE(x.depth, 0) = $13 FOR SHARE"
    )
}

/// The lease row of execution `$2` in `leases` while its token is parameter `token`, kept
/// from changing hands until the save commits (`FOR SHARE`).
fn lease_held(leases: &str, token: usize) -> String {
    format!(
        "SELECT 1 FROM {leases} l WHERE l.execution_id = $2 AND l.token = ${token}::int8 \
         FOR SHARE"
    )
}

/// `save` and `save_delta` (with `leases`, their fenced forms) on the distributed layout, in
/// the shape Citus sends whole to one shard: the row's `execution_id` is the source row's
/// distribution column (`v.execution_id`), and the execution's highest version, its lease
/// and a delta's base are read by subqueries on co-located tables keyed by `$2`. Bound as
/// [`save_statements`]' forms are. Citus refuses nothing of the general forms (`execution_id`
/// bound), but runs them by copying the selected row through an intermediate result and
/// commits them in two phases, even on one shard: timed by hand with `pgbench` on Citus 13.2.2
/// (a coordinator and two workers on one machine, fsync on), 4.1 to 4.4 ms a save against
/// 2.0 ms for this shape (`docs/scaling.md`).
///
/// The row read is the execution's newest, so an execution with no rows yet stores nothing
/// here, as does an id that exists, a base that changed and a lost fence: the store then runs
/// the general form, which tells them apart.
fn routed_save_statements(t: &str, id_target: &str, leases: Option<&str>) -> [Sql; 2] {
    let columns = &columns::CHECKPOINT;
    let selected = format!(
        "{}, v.execution_id, {}",
        columns::typed(&[&columns[0]], 1),
        columns::typed(&columns[2..6].iter().collect::<Vec<_>>(), 3),
    );
    let mut types = save_types();
    let fence = leases
        .map(|leases| {
            types.push(Type::INT8);
            format!(" AND EXISTS ({})", lease_held(leases, types.len()))
        })
        .unwrap_or_default();
    let newest = format!(
        "FROM {t} v WHERE v.execution_id = $2 AND v.version = \
         (SELECT MAX(m.version) FROM {t} m WHERE m.execution_id = $2){fence}"
    );
    let version = "CASE WHEN $7::int8 = 0 THEN v.version + 1 ELSE $7::int8 END";
    [
        Sql::new(
            format!(
                "INSERT INTO {t} AS c ({COLUMNS}, {STORAGE_COLUMNS}) SELECT {selected}, \
                 {version}, $8::text, $9::bytea, NULL, NULL, $12::int8, 0 {newest} \
                 ON CONFLICT {id_target} DO NOTHING RETURNING version"
            ),
            &types,
        ),
        Sql::new(
            format!(
                "INSERT INTO {t} AS c ({COLUMNS}, {STORAGE_COLUMNS}) SELECT {selected}, \
                 {version}, $8::text, $9::bytea, $10::int8, $11::int8, $12::int8, \
                 {DELTA_DEPTH} {newest} AND ($10::int8 IS NULL OR EXISTS ({})) \
                 ON CONFLICT {id_target} DO NOTHING RETURNING version",
                base_held(t, "")
            ),
            &types,
        ),
    ]
}

/// The lowest version of `execution` in `t`, where every prune of an execution starts its
/// range, though no row lies below it. The entries of rows removed by earlier prunes stay in
/// the version index until vacuum runs, at the bottom of each execution's range, where every
/// later prune would start. The `DELETE`'s own range scan does not mark them dead: a bitmap
/// scan (as the server plans a range of many entries) never does, and a plain index scan lets
/// go of the page between reads, so it cannot once another session has written to the page
/// meanwhile. It then steps over each of them again, with its heap row, at every prune. This
/// `min()` the server reads by an index-only scan, which keeps the page and marks the entries
/// of removed rows dead as it passes them, and the server then drops marked entries from a
/// full page instead of splitting it: far fewer removed entries stay (an entry is marked only
/// once no open transaction can see its row), and each prune reads about one probe's worth.
/// Timed with `pgbench` (16 clients, an append and a prune of `keep_last(20)` per transaction,
/// 60 s): 5,558 to 6,589 a second with this bound against 2,991 to 5,830 without, the version
/// index 50 pages against 541 at the end (`docs/workflows.md`).
fn lowest_version(t: &str, start: &Start, execution: &str) -> String {
    format!(
        "(SELECT min(m.version) FROM {t} m WHERE m.execution_id = {execution}{})",
        start.key("m.", execution)
    )
}

/// The condition that commits a prune without waiting for its flush
/// (`RetentionPolicy::lazy_flush`): the setting is made for the statement's own transaction by
/// the first row it removes (a prune that removes nothing writes nothing to flush). Citus
/// refuses a volatile function in a modification's `WHERE`, so the distributed layout's prunes
/// go without it and flush as any other.
const LAZY_COMMIT: &str = " AND set_config('synchronous_commit', 'off', true) IS NOT NULL";

/// [`LAZY_COMMIT`] where `table`'s layout allows it; nothing on the distributed layout.
fn lazy_commit(table: &TableName) -> &'static str {
    if table.layout() == TableLayout::Distributed {
        ""
    } else {
        LAZY_COMMIT
    }
}

/// The prune of several executions at once: `$1` the executions (each once), `$2` how many
/// checkpoints each keeps, `$3` each one's age limit; the rows of each at or below its
/// (keep + 1)-th newest version and older than its limit go, by an index range per execution
/// from its lowest version ([`lowest_version`]).
/// Returns each execution that lost rows with how many. `lazy`: nothing, or the condition that
/// commits it without waiting for the flush ([`lazy_commit`]).
fn prune_executions(t: &str, start: &Start, lazy: &str) -> String {
    format!(
        "WITH gone AS (DELETE FROM {t} AS d USING (SELECT p.execution_id, p.cutoff, \
         {} AS low, (SELECT x.version FROM {t} x WHERE x.execution_id = p.execution_id{} \
          ORDER BY x.version DESC OFFSET p.keep LIMIT 1) AS top \
         FROM unnest($1::text[], $2::int8[], $3::timestamptz[]) AS p(execution_id, keep, cutoff)) r \
         WHERE d.execution_id = r.execution_id{} AND d.version >= r.low AND d.version <= r.top \
         AND d.\"timestamp\" < COALESCE(r.cutoff, 'infinity'){lazy} RETURNING d.execution_id) \
         SELECT execution_id, count(*) FROM gone GROUP BY execution_id",
        lowest_version(t, start, "p.execution_id"),
        start.key("x.", "p.execution_id"),
        start.key("d.", "r.execution_id"),
    )
}

/// The saves of a whole state and of a delta, unfenced and fenced, in the shape Citus sends
/// whole to one shard (see [`Statements::routed`]). Each stores nothing when the execution
/// has no rows yet; the store then runs the general form.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct RoutedSaves {
    pub save: Sql,
    pub save_delta: Sql,
    pub save_fenced: Sql,
    pub save_delta_fenced: Sql,
}

impl Statements {
    /// Every statement with its name, for reviews and for the tests that hold each to a shape.
    pub fn all(&self) -> Vec<(&'static str, &Sql)> {
        let mut all = vec![
            ("save", &self.save),
            ("save_delta", &self.save_delta),
            ("save_fenced", &self.save_fenced),
            ("save_delta_fenced", &self.save_delta_fenced),
            ("upsert", &self.upsert),
            ("lock_row", &self.lock_row),
            ("dependents", &self.dependents),
            ("chains", &self.chains),
            ("rewrite", &self.rewrite),
            ("load", &self.load),
            ("list", &self.list),
            ("latest", &self.latest),
            ("delete", &self.delete),
            ("id_executions", &self.id_executions),
            ("load_in", &self.load_in),
            ("clear", &self.clear),
            ("page_ascending", &self.page_ascending),
            ("page_descending", &self.page_descending),
            ("batch_lookup", &self.batch_lookup),
            ("batch_insert", &self.batch_insert),
            ("batch_append", &self.batch_append),
            ("group_save", &self.group_save),
            ("group_save_delta", &self.group_save_delta),
            ("reencrypt_read", &self.reencrypt_read),
            ("reencrypt_write", &self.reencrypt_write),
            ("reencrypt_bases", &self.reencrypt_bases),
            ("executions", &self.executions),
            ("prune_execution", &self.prune_execution),
            ("prune_execution_lazy", &self.prune_execution_lazy),
            ("prune_executions", &self.prune_executions),
            ("prune_executions_lazy", &self.prune_executions_lazy),
            ("prune_all", &self.prune_all),
            ("prune_survivors_execution", &self.prune_survivors_execution),
            ("prune_survivors_all", &self.prune_survivors_all),
            ("fork", &self.fork),
            ("fork_insert", &self.fork_insert),
            ("fork_source", &self.fork_source),
        ];
        if let Some(routed) = &self.routed {
            all.extend([
                ("save_routed", &routed.save),
                ("save_delta_routed", &routed.save_delta),
                ("save_fenced_routed", &routed.save_fenced),
                ("save_delta_fenced_routed", &routed.save_delta_fenced),
            ]);
        }
        all.into_iter().chain(self.leases.all()).collect()
    }

    /// Builds the statements for `table`.
    pub fn new(table: &TableName) -> Self {
        let t = table.quoted();
        let start = Start::of(table);
        let column = start.column();
        let id_target = table.layout().id_conflict_target();
        let read = crate::state::chain::READ_COLUMNS;
        let page = |direction: &str| {
            let seed = format!(
                "SELECT execution_id, version, base_version FROM {t} c WHERE execution_id = $1{} \
                 AND version >= $2 AND version <= $3 \
                 AND ($4::text IS NULL OR node_name = $4) \
                 AND ($5::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($5) f \
                      WHERE c.metadata -> f.key IS DISTINCT FROM f.value)) \
                 ORDER BY version {direction} LIMIT $6",
                start.key("c.", "$1")
            );
            Sql::new(
                with_chains(
                    &t,
                    &start,
                    &seed,
                    "x.version IN (SELECT version FROM seed)",
                    Some("$1"),
                ),
                &[
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                    Type::JSONB,
                    Type::INT8,
                ],
            )
        };
        let in_execution = start.key("", "$1");
        let per_execution = table.layout().id_scope() == checkpoint_core::IdScope::PerExecution;
        // ` AND <alias>execution_id = <param>` where an id names a row only within its execution.
        let scoped = |alias: &str, param: &str| {
            if per_execution {
                format!(
                    " AND {alias}execution_id = {param}{}",
                    start.key(alias, param)
                )
            } else {
                String::new()
            }
        };
        // The rows a prune of execution $1 removes: from its lowest version
        // (`lowest_version`) to its (keep + 1)-th newest, older than the age limit.
        let doomed_rows = format!(
            "execution_id = $1{in_execution} AND version >= {} AND version <= \
             (SELECT version FROM {t} WHERE execution_id = $1{in_execution} \
              ORDER BY version DESC OFFSET $2 LIMIT 1) \
             AND \"timestamp\" < COALESCE($3::timestamptz, 'infinity')",
            lowest_version(&t, &start, "$1")
        );
        let doomed_in_execution = format!("SELECT version FROM {t} WHERE {doomed_rows}");
        let doomed_anywhere = format!(
            "SELECT execution_id, version FROM (SELECT execution_id, version, \"timestamp\", \
             row_number() OVER (PARTITION BY execution_id ORDER BY version DESC) AS rank \
             FROM {t}) r WHERE r.rank > $1 \
             AND r.\"timestamp\" < COALESCE($2::timestamptz, 'infinity')"
        );
        let prune_arrays = [Type::TEXT_ARRAY, Type::INT8_ARRAY, Type::TIMESTAMPTZ_ARRAY];
        let [reencrypt_read, reencrypt_write, reencrypt_bases] =
            crate::store::reencrypt::statements(&t);
        // A batch's arrays; the appending batch's without the versions, which it numbers.
        let batch_arrays = columns::typed_arrays(&batch_columns(), 1);
        let append_columns: Vec<_> = batch_columns()
            .into_iter()
            .filter(|c| c.name != "version")
            .collect();
        let append_arrays = columns::typed_arrays(&append_columns, 1);
        let [save, save_delta] = save_statements(&t, &start, id_target, None);
        let leases = table.qualify(&table.leases_table());
        let [save_fenced, save_delta_fenced] =
            save_statements(&t, &start, id_target, Some(&leases));
        // The distributed layout has no group commit (`PostgresStore::with_pool`), and its
        // fenced saves go alone, in a transaction of statements each routed to one shard:
        // its group statements read no tokens.
        let group_fence = (table.layout() != TableLayout::Distributed).then_some(leases.as_str());
        let routed = (table.layout() == TableLayout::Distributed).then(|| {
            let [save, save_delta] = routed_save_statements(&t, id_target, None);
            let [save_fenced, save_delta_fenced] =
                routed_save_statements(&t, id_target, Some(&leases));
            RoutedSaves {
                save,
                save_delta,
                save_fenced,
                save_delta_fenced,
            }
        });
        Statements {
            reencrypt_read,
            reencrypt_write,
            reencrypt_bases,
            save,
            save_delta,
            save_fenced,
            save_delta_fenced,
            routed,
            // The careful path's write, inside a transaction that holds the row and has
            // rewritten the rows built on it: a whole state, replacing the row. Its version is
            // always given (the row's own, or the checkpoint's), so it needs no read.
            upsert: Sql::new(
                format!(
                    "INSERT INTO {t} AS c ({COLUMNS}, {STORAGE_COLUMNS}{column}) VALUES ($1, $2, \
                     $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, 0{}) \
                     ON CONFLICT {id_target} DO UPDATE SET node_name = EXCLUDED.node_name, \
                     state = EXCLUDED.state, metadata = EXCLUDED.metadata, \
                     \"timestamp\" = EXCLUDED.\"timestamp\", parent_id = EXCLUDED.parent_id, \
                     payload = EXCLUDED.payload, base_version = NULL, base_hash = NULL, \
                     state_hash = EXCLUDED.state_hash, depth = 0, \
                     version = EXCLUDED.version \
                     WHERE c.execution_id = EXCLUDED.execution_id RETURNING version",
                    start.value("$2")
                ),
                // The checkpoint, the payload, and the state hash in the place of the base.
                &save_types()[..10],
            ),
            // The row of an id: in the whole table where ids are unique across it (a row found in
            // another execution is a save that would move it), in the execution otherwise.
            lock_row: Sql::new(
                format!(
                    "SELECT execution_id, version, state_hash FROM {t} WHERE id = $1{} FOR UPDATE",
                    scoped("", "$2")
                ),
                &[Type::TEXT, Type::TEXT],
            ),
            dependents: Sql::new(
                format!(
                    "SELECT id FROM {t} WHERE execution_id = $1{in_execution} \
                     AND base_version = $2 FOR UPDATE"
                ),
                &[Type::TEXT, Type::INT8],
            ),
            // Rows of one execution by id, with their chains.
            chains: Sql::new(
                with_chains(
                    &t,
                    &start,
                    &format!(
                        "SELECT execution_id, version, base_version FROM {t} \
                         WHERE execution_id = $1{in_execution} AND id = ANY($2)"
                    ),
                    "x.id = ANY($2)",
                    Some("$1"),
                ),
                &[Type::TEXT, Type::TEXT_ARRAY],
            ),
            // A row whose base goes becomes a snapshot of the same state: its hash stays, so
            // the rows built on it stay valid.
            rewrite: Sql::new(
                format!(
                    "UPDATE {t} AS c SET state = NULL, payload = u.payload, base_version = NULL, \
                     base_hash = NULL, depth = 0 \
                     FROM unnest($2::text[], $3::bytea[]) AS u(id, payload) \
                     WHERE c.execution_id = $1{} AND c.id = u.id",
                    start.key("c.", "$1")
                ),
                &[Type::TEXT, Type::TEXT_ARRAY, Type::BYTEA_ARRAY],
            ),
            // Where ids are unique per execution, the rows of at most 16 executions holding
            // the id, each as stored, in one read of every partition or shard: more than one is
            // refused as ambiguous (16 are enough to name), and a delta's chain is read next
            // from its own execution's partition. Reading the chain here too would open every
            // partition again at each step (measured on 16 hash partitions: 0.39 ms against
            // 0.23 ms for the rows alone, under generic plans).
            load: if per_execution {
                Sql::new(
                    format!(
                        "SELECT {read}, true FROM {t} WHERE id = $1 ORDER BY execution_id LIMIT 16"
                    ),
                    &[Type::TEXT],
                )
            } else {
                Sql::new(
                    with_chains(
                        &t,
                        &start,
                        &format!("SELECT execution_id, version, base_version FROM {t} WHERE id = $1"),
                        "x.id = $1",
                        None,
                    ),
                    &[Type::TEXT],
                )
            },
            list: Sql::new(
                format!(
                    "SELECT {read}, true FROM {t} WHERE execution_id = $1{in_execution} \
                     ORDER BY version"
                ),
                &[Type::TEXT],
            ),
            latest: Sql::new(
                with_chains(
                    &t,
                    &start,
                    &format!(
                        "SELECT execution_id, version, base_version FROM {t} \
                         WHERE execution_id = $1{in_execution} ORDER BY version DESC LIMIT 1"
                    ),
                    "x.version IN (SELECT version FROM seed)",
                    Some("$1"),
                ),
                &[Type::TEXT],
            ),
            delete: Sql::new(
                format!("DELETE FROM {t} WHERE id = $1{}", scoped("", "$2")),
                &[Type::TEXT, Type::TEXT],
            ),
            // The executions that hold an id (two are enough to call it ambiguous; a few more
            // name them).
            id_executions: Sql::new(
                format!(
                    "SELECT DISTINCT execution_id FROM {t} WHERE id = $1 ORDER BY execution_id \
                     LIMIT 16"
                ),
                &[Type::TEXT],
            ),
            load_in: Sql::new(
                with_chains(
                    &t,
                    &start,
                    &format!(
                        "SELECT execution_id, version, base_version FROM {t} \
                         WHERE execution_id = $1{in_execution} AND id = $2"
                    ),
                    "x.id = $2",
                    Some("$1"),
                ),
                &[Type::TEXT, Type::TEXT],
            ),
            clear: Sql::new(
                format!("DELETE FROM {t} WHERE execution_id = $1{in_execution}"),
                &[Type::TEXT],
            ),
            page_ascending: page("ASC"),
            page_descending: page("DESC"),
            // Existing rows of the batch's ids, then each execution's highest version (one
            // backward index probe per execution).
            batch_lookup: Sql::new(
                format!(
                    "SELECT id, execution_id, version FROM {t} WHERE id = ANY($1) \
                     UNION ALL \
                     SELECT NULL, e.id, (SELECT MAX(version) FROM {t} WHERE execution_id = e.id{}) \
                     FROM unnest($2::text[]) AS e(id)",
                    start.key("", "e.id")
                ),
                &[Type::TEXT_ARRAY, Type::TEXT_ARRAY],
            ),
            // New rows only: a batch that replaces rows goes through the replay, which
            // rewrites the rows built on them first.
            batch_insert: Sql::new(
                format!(
                    "INSERT INTO {t} AS c ({COLUMNS}, payload, state_hash, depth{column}) \
                     SELECT u.*, 0{} FROM unnest({batch_arrays}) AS u(id, execution_id, \
                     node_name, state, metadata, ts, version, parent_id, payload, state_hash) \
                     ON CONFLICT {id_target} DO NOTHING",
                    start.value("u.execution_id")
                ),
                &batch_types(),
            ),
            // A batch of new checkpoints that all append (version 0), in one statement: each
            // execution's versions continue after its highest in input order. Each highest
            // version is read once, below the window's sort, so before the first row is
            // inserted (read beside the insert, every probe would step over the rows the
            // statement has just added). A plain insert, without ON CONFLICT's speculative
            // insertion: an id that exists violates the primary key and fails the statement,
            // so the planned path (which keeps that id's version) takes over; so does a race
            // lost to another appender. It returns each execution's highest version before the
            // batch, from which the client numbers the items exactly as the server did.
            batch_append: Sql::new(
                format!(
                    "WITH i AS (SELECT * FROM unnest({append_arrays}) WITH ORDINALITY AS \
                     i(id, execution_id, node_name, state, \
                     metadata, ts, parent_id, payload, state_hash, ord)), \
                     top AS MATERIALIZED (SELECT e.execution_id, COALESCE((SELECT MAX(version) FROM {t} \
                     WHERE execution_id = e.execution_id{}), 0) AS version \
                     FROM (SELECT DISTINCT execution_id FROM i) e), \
                     ins AS (INSERT INTO {t} AS c ({COLUMNS}, payload, state_hash, depth{column}) \
                     SELECT i.id, i.execution_id, \
                     i.node_name, i.state, i.metadata, i.ts, top.version + row_number() OVER \
                     (PARTITION BY i.execution_id ORDER BY i.ord), i.parent_id, i.payload, \
                     i.state_hash, 0{} \
                     FROM i JOIN top ON top.execution_id = i.execution_id RETURNING 1) \
                     SELECT top.execution_id, top.version, (SELECT count(*) FROM ins) FROM top",
                    start.key("", "e.execution_id"),
                    start.value("i.execution_id")
                ),
                &columns::arrays(&append_columns),
            ),
            group_save: group_save(&t, &start, false, group_fence),
            group_save_delta: group_save(&t, &start, true, group_fence),
            executions: Sql::new(
                format!(
                    "SELECT execution_id, count(*), MAX(version), MAX(\"timestamp\") FROM {t} \
                     WHERE execution_id > $1 GROUP BY execution_id ORDER BY execution_id LIMIT $2"
                ),
                &[Type::TEXT, Type::INT8],
            ),
            // Everything at or below the (keep + 1)-th newest version goes: one index range
            // over the execution from its lowest version (`lowest_version`), and nothing
            // when it has no more than `keep` checkpoints.
            prune_execution: Sql::new(
                format!("DELETE FROM {t} WHERE {doomed_rows}"),
                &[Type::TEXT, Type::INT8, Type::TIMESTAMPTZ],
            ),
            // The same, committed without waiting for its flush (see `LAZY_COMMIT`).
            prune_execution_lazy: Sql::new(
                format!("DELETE FROM {t} WHERE {doomed_rows}{}", lazy_commit(table)),
                &[Type::TEXT, Type::INT8, Type::TIMESTAMPTZ],
            ),
            // The prunes of one group (`store/group`), one execution each: for each, the same
            // index range as `prune_execution` (in its execution's partition), in one
            // statement; how many rows each lost.
            prune_executions: Sql::new(prune_executions(&t, &start, ""), &prune_arrays),
            prune_executions_lazy: Sql::new(
                prune_executions(&t, &start, lazy_commit(table)),
                &prune_arrays,
            ),
            prune_all: Sql::new(
                format!(
                    "DELETE FROM {t} AS d USING ({doomed_anywhere}) AS r \
                     WHERE d.execution_id = r.execution_id AND d.version = r.version"
                ),
                &[Type::INT8, Type::TIMESTAMPTZ],
            ),
            // The rows a prune keeps whose base it removes: they become snapshots first.
            // No CTE: Citus routes a row lock only in a query it sends whole to one shard.
            prune_survivors_execution: Sql::new(
                format!(
                    "SELECT d.execution_id, d.id FROM {t} d WHERE d.execution_id = $1{} \
                     AND d.base_version IN ({doomed_in_execution}) \
                     AND d.version NOT IN ({doomed_in_execution}) FOR UPDATE OF d",
                    start.key("d.", "$1")
                ),
                &[Type::TEXT, Type::INT8, Type::TIMESTAMPTZ],
            ),
            prune_survivors_all: Sql::new(
                format!(
                    "WITH doomed AS MATERIALIZED ({doomed_anywhere}) \
                     SELECT d.execution_id, d.id FROM {t} d JOIN doomed b \
                     ON b.execution_id = d.execution_id \
                     AND b.version = d.base_version WHERE NOT EXISTS (SELECT 1 FROM doomed x \
                     WHERE x.execution_id = d.execution_id AND x.version = d.version) \
                     FOR UPDATE OF d"
                ),
                &[Type::INT8, Type::TIMESTAMPTZ],
            ),
            // The same copy as Checkpoint::forked_into, made by the server in one statement
            // when the source holds its whole state; it inserts nothing when the source is
            // missing or a delta, or the target has checkpoints.
            fork: Sql::new(
                format!(
                    "INSERT INTO {t} ({COLUMNS}, payload, state_hash, depth{column}) SELECT $2, $3, \
                     s.node_name, s.state, \
                     COALESCE(s.metadata, '{{}}'::jsonb) || jsonb_build_object('source', 'fork', \
                     'forked_from', jsonb_build_object('checkpoint_id', s.id, \
                     'execution_id', s.execution_id, 'version', s.version)), $4, 1, s.id, \
                     s.payload, s.state_hash, 0{} \
                     FROM {t} s WHERE s.id = $1 AND s.base_version IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM {t} WHERE execution_id = $3{}) \
                     RETURNING {read}, true",
                    start.value("$3"),
                    start.key("", "$3")
                ),
                &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ],
            ),
            // A fork of a delta: the client rebuilt the state and sends it whole.
            fork_insert: Sql::new(
                format!(
                    "INSERT INTO {t} ({COLUMNS}, {STORAGE_COLUMNS}{column}) SELECT $1, $2, $3, \
                     $4, $5, $6, 1, $7, $8, NULL, NULL, $9, 0{} \
                     WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE execution_id = $2{}) \
                     RETURNING version",
                    start.value("$2"),
                    start.key("", "$2")
                ),
                &[
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::JSONB,
                    Type::JSONB,
                    Type::TIMESTAMPTZ,
                    Type::TEXT,
                    Type::BYTEA,
                    Type::INT8,
                ],
            ),
            fork_source: Sql::new(
                format!("SELECT base_version IS NOT NULL FROM {t} WHERE id = $1"),
                &[Type::TEXT],
            ),
            leases: LeaseStatements::new(table),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::table::TableName;

    #[test]
    fn page_statements_bind_every_cursor_and_never_offset() {
        let s = Statements::new(&TableName::new(None, "cp").unwrap());
        for sql in [&s.page_ascending, &s.page_descending] {
            assert!(!sql.text.to_uppercase().contains("OFFSET"), "{}", sql.text);
            assert!(
                sql.text.contains("version >= $2 AND version <= $3"),
                "{}",
                sql.text
            );
            assert_eq!(sql.types.len(), 6);
        }
        assert!(s.page_descending.text.contains("ORDER BY version DESC"));
    }

    #[test]
    fn placeholders_match_declared_types() {
        let plain = TableName::new(Some("s"), "cp").unwrap();
        let hashed = plain
            .clone()
            .with_layout(TableLayout::hash_partitioned(4).unwrap());
        // The execution that scopes an id is bound on every layout; the plain table, whose ids
        // are unique across it, does not read it.
        let plain_skips = Statements::new(&plain);
        let scoping_only = [&plain_skips.lock_row.text, &plain_skips.delete.text];
        let distributed = plain.clone().with_layout(TableLayout::Distributed);
        for table in [plain, hashed, distributed] {
            check_placeholders(&Statements::new(&table), &scoping_only);
        }
    }

    /// The parenthesised lists after each `VALUES` of `sql`.
    fn values_lists(sql: &str) -> Vec<&str> {
        let mut lists = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find("VALUES") {
            let after = rest[at + "VALUES".len()..].trim_start();
            if after.starts_with('(') {
                let mut depth = 0usize;
                let end = after
                    .char_indices()
                    .find(|(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth = depth.saturating_sub(1),
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(after.len(), |(i, _)| i + 1);
                lists.push(&after[..end]);
            }
            rest = &rest[at + "VALUES".len()..];
        }
        lists
    }

    fn distributed() -> TableName {
        TableName::new(Some("s"), "cp")
            .unwrap()
            .with_layout(TableLayout::Distributed)
    }

    /// The statement shapes Citus refuses, on the distributed layout: a subquery inside
    /// `INSERT … VALUES`, a call of a function of ours (the time layout's `started()` queries a
    /// table and fails on a shard), a recursive chain read that names no execution.
    #[test]
    fn distributed_statements_have_shapes_citus_runs() {
        let table = distributed();
        let s = Statements::new(&table);
        let ours = [table.start_function(), table.started_function()];
        for (name, sql) in s.all() {
            for list in values_lists(&sql.text) {
                assert!(
                    !list.to_uppercase().contains("SELECT"),
                    "{name}: a subquery in INSERT … VALUES: {list}"
                );
            }
            for function in &ours {
                assert!(
                    !sql.text.contains(function.as_str()),
                    "{name} calls {function}"
                );
            }
        }
        // The recursive chain read runs only where it names its execution; `load` by id alone
        // reads the rows of the id and no chain (the store reads a delta's chain next, by its
        // execution).
        assert!(!s.load.text.contains("RECURSIVE"), "{}", s.load.text);
        for (name, sql) in [
            ("latest", &s.latest),
            ("load_in", &s.load_in),
            ("chains", &s.chains),
        ] {
            assert!(
                sql.text.contains("b.execution_id = $1"),
                "{name}: {}",
                sql.text
            );
        }
        // The shape test itself finds what it looks for.
        assert_eq!(
            values_lists("INSERT INTO t VALUES ($1, (SELECT 1)), x"),
            vec!["($1, (SELECT 1))"]
        );
    }

    /// The distributed layout's routed saves take the inserted row's `execution_id` from the
    /// row read (the distribution column of the source, as Citus needs to send the whole
    /// `INSERT … SELECT` to one shard), read nothing through a CTE (which Citus plans apart,
    /// through an intermediate result), and bind the execution in the `WHERE` of each read.
    /// No other layout has them.
    #[test]
    fn routed_saves_take_the_execution_from_the_row_read() {
        let table = distributed();
        let s = Statements::new(&table);
        let routed = s
            .routed
            .as_ref()
            .expect("the distributed layout routes its saves");
        for sql in [
            &routed.save,
            &routed.save_delta,
            &routed.save_fenced,
            &routed.save_delta_fenced,
        ] {
            let text = &sql.text;
            assert!(text.starts_with("INSERT INTO"), "{text}");
            assert!(
                text.contains("SELECT $1::text, v.execution_id, $3::"),
                "{text}"
            );
            assert!(!text.contains("WITH"), "{text}");
            assert!(text.contains("v.execution_id = $2"), "{text}");
            assert!(text.contains("m.execution_id = $2"), "{text}");
            // The bound execution only keys reads; the row written takes the one read.
            assert_eq!(
                text.matches("$2").count(),
                text.matches("execution_id = $2").count(),
                "{text}"
            );
        }
        assert!(routed.save_fenced.text.contains("l.execution_id = $2"));
        assert!(routed.save_delta.text.contains("x.execution_id = $2"));
        for layout in [
            TableLayout::Plain,
            TableLayout::hash_partitioned(4).unwrap(),
            TableLayout::time_partitioned(crate::PartitionPeriod::Day),
        ] {
            let table = TableName::new(None, "cp").unwrap().with_layout(layout);
            assert!(Statements::new(&table).routed.is_none(), "{layout:?}");
        }
    }

    /// No layout puts a subquery in `INSERT … VALUES` (every one could be distributed).
    #[test]
    fn no_layout_puts_a_subquery_in_insert_values() {
        for layout in [
            TableLayout::Plain,
            TableLayout::hash_partitioned(4).unwrap(),
            TableLayout::time_partitioned(crate::PartitionPeriod::Day),
            TableLayout::Distributed,
        ] {
            let table = TableName::new(None, "cp").unwrap().with_layout(layout);
            for (name, sql) in Statements::new(&table).all() {
                for list in values_lists(&sql.text) {
                    assert!(
                        !list.to_uppercase().contains("SELECT"),
                        "{layout:?} {name}: {list}"
                    );
                }
            }
        }
    }

    fn check_placeholders(s: &Statements, scoping_only: &[&String]) {
        for (name, sql) in s.all() {
            // `save` takes the same parameters as `save_delta` and leaves the base ($10, $11,
            // $13) unread.
            if name == "save" || name == "save_routed" {
                assert!(sql.text.contains("$12") && !sql.text.contains("$13"));
                continue;
            }
            let highest = (1..=20)
                .rev()
                .find(|n| sql.text.contains(&format!("${n}")))
                .unwrap_or(0);
            if scoping_only.contains(&&sql.text) {
                assert_eq!(highest + 1, sql.types.len(), "{}", sql.text);
            } else {
                assert_eq!(highest, sql.types.len(), "{}", sql.text);
            }
            let table = match name {
                "lease_now" | "lease_gate" | "lease_gate_shared" => continue,
                lease if lease.starts_with("lease_") => "\"s\".\"cp_leases\"",
                _ => "\"s\".\"cp\"",
            };
            assert!(sql.text.contains(table), "{name}: {}", sql.text);
        }
    }
}
