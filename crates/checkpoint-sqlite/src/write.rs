//! Statements that change the table, each run inside the caller's immediate transaction.

use checkpoint_core::validate::next_version;
use checkpoint_core::{Checkpoint, Error, Limits, Result, RetentionPolicy};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::error::{driver, is_version_taken};
use crate::read;
use crate::row::{to_micros, StoredRow, COLUMNS};

/// Stores `row` and returns its version, keeping every rule of the contract: an id never moves
/// execution; version 0 appends after the highest version, or keeps the version of the id it
/// replaces; a version held by another id is a conflict, which the unique index on
/// `(execution_id, version)` decides.
pub(crate) fn save(conn: &Connection, row: &StoredRow) -> Result<i64> {
    let existing: Option<(String, i64)> = conn
        .prepare_cached("SELECT execution_id, version FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&row.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(driver)?;
    if let Some((execution, _)) = &existing {
        if *execution != row.execution_id {
            return Err(Error::invalid(
                "execution_id",
                format!(
                    "checkpoint {} belongs to execution {execution}; ids never move",
                    row.id
                ),
            ));
        }
    }
    let version = match (row.version, existing) {
        (0, Some((_, current))) => current,
        (0, None) => match highest(conn, &row.execution_id)? {
            Some(highest) => next_version(&row.execution_id, highest)?,
            None => 1,
        },
        (explicit, _) => explicit,
    };
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO checkpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET
                 version = excluded.version,
                 node_name = excluded.node_name,
                 parent_id = excluded.parent_id,
                 timestamp_us = excluded.timestamp_us,
                 metadata = excluded.metadata,
                 state = excluded.state"
        ))
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                row.id,
                row.execution_id,
                version,
                row.node_name,
                row.parent_id,
                row.timestamp_us,
                row.metadata,
                row.state,
            ])
        });
    match inserted {
        Ok(_) => Ok(version),
        Err(e) if is_version_taken(&e) => Err(Error::Conflict {
            execution_id: row.execution_id.clone(),
            version,
        }),
        Err(e) => Err(driver(e)),
    }
}

fn highest(conn: &Connection, execution_id: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(version) FROM checkpoints WHERE execution_id = ?1")
        .and_then(|mut s| s.query_row([execution_id], |r| r.get(0)))
        .map_err(driver)
}

/// Every row, in order, in the caller's transaction: the first refusal rolls all of them back.
pub(crate) fn save_all(conn: &Connection, rows: &[StoredRow]) -> Result<Vec<i64>> {
    rows.iter().map(|row| save(conn, row)).collect()
}

pub(crate) fn delete(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map(|n| n > 0)
        .map_err(driver)
}

/// Removes checkpoint `id` only if it is of `execution_id`.
pub(crate) fn delete_in(conn: &Connection, execution_id: &str, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM checkpoints WHERE id = ?1 AND execution_id = ?2")
        .and_then(|mut s| s.execute([id, execution_id]))
        .map(|n| n > 0)
        .map_err(driver)
}

pub(crate) fn clear(conn: &Connection, execution_id: &str) -> Result<u64> {
    conn.prepare_cached("DELETE FROM checkpoints WHERE execution_id = ?1")
        .and_then(|mut s| s.execute([execution_id]))
        .map(|n| n as u64)
        .map_err(driver)
}

/// Removes what `policy` removes, ranking each execution's checkpoints newest first.
pub(crate) fn prune(conn: &Connection, policy: &RetentionPolicy) -> Result<u64> {
    // A keep_last beyond i64 keeps everything, as i64::MAX does: no execution is that long.
    let keep = policy
        .keep_last
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let cutoff = policy
        .cutoff(OffsetDateTime::now_utc())
        .map(to_micros)
        .transpose()?;
    if policy.execution_id.is_some() {
        // One execution (retention after each save): an index range below the (keep + 1)-th
        // newest version, found by one probe, never a ranking of the whole execution.
        return conn
            .prepare_cached(
                "DELETE FROM checkpoints WHERE execution_id = ?3
                   AND (?1 IS NULL OR version <= (
                        SELECT version FROM checkpoints WHERE execution_id = ?3
                        ORDER BY version DESC LIMIT 1 OFFSET COALESCE(?1, 0)))
                   AND (?2 IS NULL OR timestamp_us < ?2)",
            )
            .and_then(|mut s| s.execute(rusqlite::params![keep, cutoff, policy.execution_id]))
            .map(|n| n as u64)
            .map_err(driver);
    }
    conn.prepare_cached(
        "DELETE FROM checkpoints WHERE id IN (
             SELECT id FROM (
                 SELECT id, timestamp_us,
                        ROW_NUMBER() OVER (PARTITION BY execution_id ORDER BY version DESC) - 1
                            AS newer
                 FROM checkpoints
             )
             WHERE (?1 IS NULL OR newer >= ?1) AND (?2 IS NULL OR timestamp_us < ?2)
         )",
    )
    .and_then(|mut s| s.execute(rusqlite::params![keep, cutoff]))
    .map(|n| n as u64)
    .map_err(driver)
}

/// Copies checkpoint `id` into the new, empty execution `new_execution_id` as its version 1,
/// in the caller's transaction: no other write can slip between the check and the copy.
pub(crate) fn fork(
    conn: &Connection,
    limits: &Limits,
    id: &str,
    new_execution_id: &str,
) -> Result<Checkpoint> {
    let source = read::load(conn, id)?
        .ok_or_else(|| Error::NotFound { id: id.to_owned() })?
        .decode()?;
    let taken: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM checkpoints WHERE execution_id = ?1 LIMIT 1")
        .and_then(|mut s| s.query_row([new_execution_id], |r| r.get(0)).optional())
        .map_err(driver)?;
    if taken.is_some() {
        return Err(Error::Conflict {
            execution_id: new_execution_id.to_owned(),
            version: 1,
        });
    }
    let forked = source.forked_into(new_execution_id);
    limits.check_checkpoint(&forked)?;
    let row = StoredRow::from_checkpoint(&forked)?;
    save(conn, &row)?;
    Ok(forked)
}
