//! Statements that read the table. Each is keyed by the index on `(execution_id, version)` or
//! by the primary key, so its cost follows the rows it returns, not the table's size.

use checkpoint_core::{
    Damage, ExecutionQuery, ExecutionSummary, ListQuery, Order, Result, Verification,
};
use checkpoint_format::chain::Stored;
use checkpoint_format::encoder::Encoder;
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::error::driver;
use crate::row::{self, RawRow, COLUMNS};

/// The row of checkpoint `id`, if any, undecoded.
pub(crate) fn load(conn: &Connection, id: &str) -> Result<Option<RawRow>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM checkpoints WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], RawRow::get).optional())
        .map_err(driver)
}

/// The execution that holds checkpoint `id`.
pub(crate) fn execution_of(conn: &Connection, id: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT execution_id FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(crate::error::driver)
}

/// Every row of `execution_id`, oldest first, undecoded.
pub(crate) fn list(conn: &Connection, execution_id: &str) -> Result<Vec<RawRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE execution_id = ?1 ORDER BY version"
    ))
    .and_then(|mut s| s.query_map([execution_id], RawRow::get)?.collect())
    .map_err(driver)
}

/// The row of the newest checkpoint of `execution_id`, if any, undecoded.
pub(crate) fn latest(conn: &Connection, execution_id: &str) -> Result<Option<RawRow>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE execution_id = ?1
         ORDER BY version DESC LIMIT 1"
    ))
    .and_then(|mut s| s.query_row([execution_id], RawRow::get).optional())
    .map_err(driver)
}

/// One page's rows, undecoded, for a query without metadata filters (see [`unfiltered`]): at
/// most `query.limit + 1`, the one past the page telling whether another follows.
pub(crate) fn page_rows(conn: &Connection, query: &ListQuery) -> Result<Vec<RawRow>> {
    debug_assert!(unfiltered(query));
    let mut rows = Vec::new();
    walk_page(conn, query, |found| {
        rows.push(RawRow::get(found).map_err(driver)?);
        Ok(true)
    })?;
    Ok(rows)
}

/// Whether `query` is a page whose rows all match: no metadata filter, so its rows are the
/// first ones its statement yields.
pub(crate) fn unfiltered(query: &ListQuery) -> bool {
    query.metadata.is_empty()
}

/// One page's rows, undecoded, for a query with metadata filters. The version window and node
/// filter are in the statement, so the index walk starts at the cursor; metadata filters
/// compare in Rust with [`ListQuery::metadata_matches`], the rule every backend shares, and
/// only the rows that match are kept for their states to be rebuilt.
pub(crate) fn page_matches(conn: &Connection, query: &ListQuery) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    walk_page(conn, query, |found| {
        let raw = RawRow::get(found).map_err(driver)?;
        let matches = query.metadata_matches(&raw.metadata()?);
        if matches {
            rows.push(raw);
        }
        Ok(matches)
    })?;
    Ok(rows)
}

/// Runs `query`'s statement and hands each row to `take` (which says whether it kept it) until
/// `query.limit + 1` rows were kept or the rows run out.
fn walk_page(
    conn: &Connection,
    query: &ListQuery,
    mut take: impl FnMut(&rusqlite::Row<'_>) -> Result<bool>,
) -> Result<()> {
    if let (Some(after), Some(before)) = (query.after_version, query.before_version) {
        if after >= before {
            return Ok(());
        }
    }
    let mut statement = conn.prepare_cached(&page_sql(query)).map_err(driver)?;
    let wanted = query.limit + 1;
    // Parameters past the statement's highest one stay unbound.
    let count = statement.parameter_count();
    let mut bind = |index: usize, value: &dyn rusqlite::ToSql| {
        if index <= count {
            statement.raw_bind_parameter(index, value).map_err(driver)
        } else {
            Ok(())
        }
    };
    bind(1, &query.execution_id)?;
    bind(2, &query.after_version)?;
    bind(3, &query.before_version)?;
    bind(4, &query.node_name)?;
    let mut rows = statement.raw_query();
    let mut kept = 0;
    while kept < wanted {
        let Some(found) = rows.next().map_err(driver)? else {
            break;
        };
        if take(found)? {
            kept += 1;
        }
    }
    Ok(())
}

/// The statement of `query`'s page: its version window and node filter, in its order. It
/// has no LIMIT: [`walk_page`] stops stepping once it holds the page, and the index yields rows
/// in order, so SQLite reads no row past it. A bound LIMIT would cost more than it saves:
/// SQLite plans with the value bound to it, so it compiles the statement again each time one
/// is bound (measured: a tenth of the time of a page of 20 small states).
fn page_sql(query: &ListQuery) -> String {
    let mut sql = format!("SELECT {COLUMNS} FROM checkpoints WHERE execution_id = ?1");
    if query.after_version.is_some() {
        sql.push_str(" AND version > ?2");
    }
    if query.before_version.is_some() {
        sql.push_str(" AND version < ?3");
    }
    if query.node_name.is_some() {
        sql.push_str(" AND node_name = ?4");
    }
    sql.push_str(match query.order {
        Order::Ascending => " ORDER BY version ASC",
        Order::Descending => " ORDER BY version DESC",
    });
    sql
}

pub(crate) fn executions(
    conn: &Connection,
    query: &ExecutionQuery,
) -> Result<Vec<ExecutionSummary>> {
    let mut statement = conn
        .prepare_cached(&executions_sql(query))
        .map_err(driver)?;
    let mut rows = statement
        .query(rusqlite::params![query.after])
        .map_err(driver)?;
    let mut out = Vec::new();
    while out.len() < query.limit {
        let Some(found) = rows.next().map_err(driver)? else {
            break;
        };
        let execution_id: String = found.get(0).map_err(driver)?;
        let count: i64 = found.get(1).map_err(driver)?;
        let micros: i64 = found.get(3).map_err(driver)?;
        let last_timestamp = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_err(|e| row::corrupt(&execution_id, format!("timestamp {micros}: {e}")))?;
        out.push(ExecutionSummary {
            checkpoint_count: u64::try_from(count).unwrap_or(0),
            latest_version: found.get(2).map_err(driver)?,
            last_timestamp,
            execution_id,
        });
    }
    Ok(out)
}

/// The statement of `query`'s page of executions. No bound LIMIT, as in [`page_sql`]: the
/// groups come in index order, and [`executions`] stops once it holds `query.limit` of them.
fn executions_sql(query: &ExecutionQuery) -> String {
    let scope = if query.after.is_some() {
        "WHERE execution_id > ?1"
    } else {
        "WHERE ?1 IS NULL"
    };
    format!(
        "SELECT execution_id, COUNT(*), MAX(version), MAX(timestamp_us)
         FROM checkpoints {scope}
         GROUP BY execution_id ORDER BY execution_id"
    )
}

/// Row and execution counts and the file's size, for operators.
pub(crate) fn stats(conn: &Connection) -> Result<crate::SqliteStats> {
    let (checkpoints, executions): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT execution_id) FROM checkpoints",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(driver)?;
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(driver)?;
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(driver)?;
    let schema_version = crate::schema::version(conn).map_err(crate::SqliteError::into_core)?;
    let state_bytes: Option<i64> = conn
        .query_row("SELECT SUM(length(state)) FROM checkpoints", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(driver)?
        .flatten();
    Ok(crate::SqliteStats {
        schema_version,
        checkpoints: u64::try_from(checkpoints).unwrap_or(0),
        executions: u64::try_from(executions).unwrap_or(0),
        database_bytes: u64::try_from(pages.saturating_mul(page_size)).unwrap_or(0),
        state_bytes: state_bytes.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
    })
}

/// Every row of `execution_id` (or of the whole table), checked on its own, in index order:
/// the counts, and each row that does not read back (state, metadata or timestamp that does
/// not decode, a delta whose chain is broken or rebuilds another state than the one saved)
/// with the reason. One execution's rows are held at a time.
pub(crate) fn verify(
    conn: &Connection,
    encoder: &Encoder,
    execution_id: Option<&str>,
) -> Result<Verification> {
    let sql = match execution_id {
        Some(_) => format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE execution_id = ?1 ORDER BY execution_id, version"
        ),
        None => format!("SELECT {COLUMNS} FROM checkpoints ORDER BY execution_id, version"),
    };
    let mut statement = conn.prepare_cached(&sql).map_err(driver)?;
    let mut rows = match execution_id {
        Some(e) => statement.query([e]),
        None => statement.query([]),
    }
    .map_err(driver)?;
    let mut report = Verification::default();
    let mut execution: Vec<Stored> = Vec::new();
    let check = |execution: &mut Vec<Stored>, report: &mut Verification| {
        if !execution.is_empty() {
            let held = std::mem::take(execution);
            report.damaged.extend(checkpoint_format::chain::damage(
                held,
                crate::options::SQLITE_MAX_LENGTH,
                encoder.encryption.as_ref(),
            ));
        }
    };
    let mut last_execution: Option<String> = None;
    while let Some(found) = rows.next().map_err(driver)? {
        let raw = RawRow::get(found).map_err(driver)?;
        if last_execution.as_deref() != Some(raw.execution_id.as_str()) {
            check(&mut execution, &mut report);
            report.executions = report.executions.saturating_add(1);
            last_execution = Some(raw.execution_id.clone());
        }
        report.checkpoints = report.checkpoints.saturating_add(1);
        let (id, execution_id, version) = (raw.id.clone(), raw.execution_id.clone(), raw.version);
        match raw.stored() {
            Ok(stored) => execution.push(stored),
            Err(err) => report.damaged.push(Damage {
                id,
                execution_id,
                version,
                reason: err.to_string(),
            }),
        }
    }
    check(&mut execution, &mut report);
    report
        .damaged
        .sort_by(|a, b| (&a.execution_id, a.version).cmp(&(&b.execution_id, b.version)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rusqlite::StatementStatus;

    /// A file with `executions` executions (`e0`, `e1`, ...) of `versions` rows each, on
    /// nodes `a` and `b` in turn.
    fn table(executions: usize, versions: i64) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        for execution in 0..executions {
            for version in 1..=versions {
                let node = if version % 2 == 0 { "a" } else { "b" };
                conn.execute(
                    "INSERT INTO checkpoints (id, execution_id, version, node_name, \
                     timestamp_us, metadata, state) VALUES (?1, ?2, ?3, ?4, 0, '{}', x'00')",
                    rusqlite::params![
                        format!("c{execution}-{version}"),
                        format!("e{execution}"),
                        version,
                        node
                    ],
                )
                .unwrap();
            }
        }
        conn
    }

    fn query(
        limit: usize,
        descending: bool,
        after: Option<i64>,
        before: Option<i64>,
        node: Option<&str>,
    ) -> ListQuery {
        let mut query = ListQuery::new("e0").limit(limit);
        if descending {
            query = query.descending();
        }
        query.after_version = after;
        query.before_version = before;
        query.node_name = node.map(str::to_owned);
        query
    }

    proptest! {
        /// Pages of every shape hold exactly the rows of their window, at most one past the
        /// limit, in order; and each shape's statement is compiled once, whatever limits and
        /// cursors are bound to it.
        #[test]
        fn pages_hold_their_window_and_are_never_compiled_again(
            pages in prop::collection::vec(
                (
                    1usize..40,
                    any::<bool>(),
                    prop::option::of(0i64..32),
                    prop::option::of(0i64..32),
                    prop::option::of(prop::sample::select(vec!["a", "b"])),
                ),
                1..12,
            ),
        ) {
            let conn = table(1, 30);
            for (limit, descending, after, before, node) in pages {
                let query = query(limit, descending, after, before, node);
                let got: Vec<i64> = page_rows(&conn, &query)
                    .unwrap()
                    .iter()
                    .map(|row| row.version)
                    .collect();
                let mut expected: Vec<i64> = (1..=30)
                    .filter(|v| after.is_none_or(|a| *v > a))
                    .filter(|v| before.is_none_or(|b| *v < b))
                    .filter(|v| node.is_none_or(|n| n == if v % 2 == 0 { "a" } else { "b" }))
                    .collect();
                if descending {
                    expected.reverse();
                }
                expected.truncate(limit + 1);
                prop_assert_eq!(got, expected);
                let statement = conn.prepare_cached(&page_sql(&query)).unwrap();
                prop_assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
            }
        }

        /// Pages of executions hold the ids after the cursor, in order, at most `limit`; and
        /// their statement is compiled once, whatever is bound to it.
        #[test]
        fn execution_pages_hold_their_window_and_are_never_compiled_again(
            pages in prop::collection::vec((1usize..15, prop::option::of(0usize..12)), 1..8),
        ) {
            let conn = table(10, 2);
            for (limit, after) in pages {
                let mut query = ExecutionQuery::new(limit);
                if let Some(n) = after {
                    query = query.after(format!("e{n}"));
                }
                let got: Vec<String> = executions(&conn, &query)
                    .unwrap()
                    .into_iter()
                    .map(|summary| summary.execution_id)
                    .collect();
                let mut expected: Vec<String> = (0..10)
                    .map(|n| format!("e{n}"))
                    .filter(|id| query.after.as_ref().is_none_or(|after| id > after))
                    .collect();
                expected.sort();
                expected.truncate(limit);
                prop_assert_eq!(got, expected);
                let statement = conn.prepare_cached(&executions_sql(&query)).unwrap();
                prop_assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
            }
        }
    }
}
