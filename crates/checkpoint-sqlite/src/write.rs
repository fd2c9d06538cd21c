//! Statements that change the table, each run inside the caller's immediate transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use checkpoint_core::validate::next_version;
use checkpoint_core::{Checkpoint, Error, Limits, Result, RetentionPolicy};
use checkpoint_format::encoder::{Base, Encoded, Encoder};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::error::{driver, is_version_taken};
use crate::row::{to_micros, StoredRow, COLUMNS};
use crate::{chain, read};

/// Stores `row` and returns its version, keeping every rule of the contract: an id never moves
/// execution; version 0 appends after the highest version, or keeps the version of the id it
/// replaces; a version held by another id is a conflict, which the unique index on
/// `(execution_id, version)` decides. A delta is stored only if its base still holds the state
/// it was computed on (a snapshot of the state otherwise), and the rows built on a row that is
/// replaced by another state or moved become snapshots first.
pub(crate) fn save(conn: &Connection, row: &StoredRow) -> Result<i64> {
    let existing: Option<(String, i64, Option<i64>)> = conn
        .prepare_cached("SELECT execution_id, version, state_hash FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&row.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(driver)?;
    if let Some((execution, _, _)) = &existing {
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
    let replaced = existing
        .as_ref()
        .map(|(_, version, hash)| (*version, *hash));
    let version = match (row.version, replaced) {
        (0, Some((current, _))) => current,
        (0, None) => match highest(conn, &row.execution_id)? {
            Some(highest) => next_version(&row.execution_id, highest)?,
            None => 1,
        },
        (explicit, _) => explicit,
    };
    let instead;
    let encoded = match row.encoded.base {
        Some(base) if !base_holds(conn, row, base, version, replaced.map(|r| r.0))? => {
            instead = snapshot_instead(row)?;
            &instead
        }
        _ => &row.encoded,
    };
    if let Some((old_version, old_hash)) = replaced {
        // Rows built on the replaced row stay valid only if it keeps its version and state.
        if old_version != version || old_hash != Some(encoded.fingerprint.hash) {
            rewrite_dependents(conn, &row.encoder, &row.execution_id, old_version)?;
        }
    }
    let base = encoded.base;
    let inserted = conn
        .prepare_cached(&format!(
            "INSERT INTO checkpoints ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (id) DO UPDATE SET
                 version = excluded.version,
                 node_name = excluded.node_name,
                 parent_id = excluded.parent_id,
                 timestamp_us = excluded.timestamp_us,
                 metadata = excluded.metadata,
                 state = excluded.state,
                 base_version = excluded.base_version,
                 base_hash = excluded.base_hash,
                 state_hash = excluded.state_hash,
                 depth = excluded.depth"
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
                encoded.payload,
                base.map(|b| b.version),
                base.map(|b| b.hash),
                encoded.fingerprint.hash,
                encoded.depth(),
            ])
        });
    match inserted {
        Ok(_) => {
            // Before the commit: a hint only, checked by the next delta's own transaction.
            if let Some(whole) = &row.whole {
                row.encoder.remember_stored(
                    &row.execution_id,
                    version,
                    encoded.fingerprint,
                    encoded.depth(),
                    || Arc::clone(whole),
                );
            }
            Ok(version)
        }
        Err(e) if is_version_taken(&e) => Err(Error::Conflict {
            execution_id: row.execution_id.clone(),
            version,
        }),
        Err(e) => Err(driver(e)),
    }
}

/// Whether the base `row`'s delta was computed on is still there as it was: below the version
/// the row gets, not the row being replaced (which this save moves or overwrites), and holding
/// the same state (its recorded hash).
fn base_holds(
    conn: &Connection,
    row: &StoredRow,
    base: Base,
    version: i64,
    replaced: Option<i64>,
) -> Result<bool> {
    if base.version >= version || replaced == Some(base.version) {
        return Ok(false);
    }
    let recorded: Option<Option<i64>> = conn
        .prepare_cached(
            "SELECT state_hash FROM checkpoints WHERE execution_id = ?1 AND version = ?2",
        )
        .and_then(|mut s| {
            s.query_row(rusqlite::params![row.execution_id, base.version], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(driver)?;
    Ok(recorded == Some(Some(base.hash)))
}

/// The snapshot stored in place of `row`'s delta when its base changed meanwhile.
fn snapshot_instead(row: &StoredRow) -> Result<Encoded> {
    let whole = row.whole.as_ref().ok_or_else(|| {
        crate::SqliteError::Panicked(format!(
            "checkpoint {} was encoded as a delta without its state",
            row.id
        ))
        .into_core()
    })?;
    tracing::debug!(checkpoint = %row.id, "the base of a delta changed; storing a snapshot");
    row.encoder.encode_snapshot(whole)
}

/// Turns the rows built on version `version` of `execution_id` into snapshots of the states
/// they hold, before that row goes or changes.
fn rewrite_dependents(
    conn: &Connection,
    encoder: &Encoder,
    execution_id: &str,
    version: i64,
) -> Result<()> {
    let dependents: Vec<i64> = conn
        .prepare_cached(
            "SELECT version FROM checkpoints WHERE execution_id = ?1 AND base_version = ?2",
        )
        .and_then(|mut s| {
            s.query_map(rusqlite::params![execution_id, version], |r| r.get(0))?
                .collect()
        })
        .map_err(driver)?;
    rewrite_as_snapshots(conn, encoder, execution_id, &dependents)
}

/// Turns the rows `versions` of `execution_id` (deltas) into snapshots of the states they
/// hold. Each keeps its recorded state hash, so the rows built on it stay valid.
fn rewrite_as_snapshots(
    conn: &Connection,
    encoder: &Encoder,
    execution_id: &str,
    versions: &[i64],
) -> Result<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let states = chain::states_of(conn, encoder, execution_id, versions)?;
    let mut update = conn
        .prepare_cached(
            "UPDATE checkpoints SET state = ?3, base_version = NULL, base_hash = NULL, depth = 0
             WHERE execution_id = ?1 AND version = ?2",
        )
        .map_err(driver)?;
    for checkpoint in &states {
        let payload = encoder.snapshot(&checkpoint.state)?;
        update
            .execute(rusqlite::params![execution_id, checkpoint.version, payload])
            .map_err(driver)?;
    }
    tracing::debug!(rows = states.len(), "rewrote deltas as snapshots");
    Ok(())
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

/// Removes checkpoint `id` (only if it is of `execution_id`, when given); the rows built on it
/// become snapshots first.
pub(crate) fn delete(
    conn: &Connection,
    encoder: &Encoder,
    id: &str,
    execution_id: Option<&str>,
) -> Result<bool> {
    let found: Option<(String, i64)> = conn
        .prepare_cached("SELECT execution_id, version FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(driver)?;
    let Some((execution, version)) = found.filter(|(e, _)| execution_id.is_none_or(|x| x == e))
    else {
        return Ok(false);
    };
    rewrite_dependents(conn, encoder, &execution, version)?;
    conn.prepare_cached("DELETE FROM checkpoints WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map(|n| n > 0)
        .map_err(driver)
}

pub(crate) fn clear(conn: &Connection, execution_id: &str) -> Result<u64> {
    conn.prepare_cached("DELETE FROM checkpoints WHERE execution_id = ?1")
        .and_then(|mut s| s.execute([execution_id]))
        .map(|n| n as u64)
        .map_err(driver)
}

/// Removes what `policy` removes, ranking each execution's checkpoints newest first. Kept rows
/// built on removed ones become snapshots first.
pub(crate) fn prune(conn: &Connection, encoder: &Encoder, policy: &RetentionPolicy) -> Result<u64> {
    // A keep_last beyond i64 keeps everything, as i64::MAX does: no execution is that long.
    let keep = policy
        .keep_last
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let cutoff = policy
        .cutoff(OffsetDateTime::now_utc())
        .map(to_micros)
        .transpose()?;
    if let Some(execution) = policy.execution_id.as_deref() {
        // One execution (retention after each save): an index range below the (keep + 1)-th
        // newest version, found by one probe, never a ranking of the whole execution.
        let params = rusqlite::params![keep, cutoff, execution];
        let dependents: Vec<i64> = conn
            .prepare_cached(&format!(
                "SELECT k.version FROM checkpoints AS k JOIN checkpoints AS b
                     ON b.execution_id = k.execution_id AND b.version = k.base_version
                 WHERE k.execution_id = ?3 AND k.base_version IS NOT NULL
                   AND coalesce({doomed_b}, 0) AND NOT coalesce({doomed_k}, 0)",
                doomed_b = ONE_EXECUTION_DOOMED.replace("{x}", "b"),
                doomed_k = ONE_EXECUTION_DOOMED.replace("{x}", "k"),
            ))
            .and_then(|mut s| s.query_map(params, |r| r.get(0))?.collect())
            .map_err(driver)?;
        rewrite_as_snapshots(conn, encoder, execution, &dependents)?;
        return conn
            .prepare_cached(&format!(
                "DELETE FROM checkpoints AS x WHERE execution_id = ?3 AND {}",
                ONE_EXECUTION_DOOMED.replace("{x}", "x")
            ))
            .and_then(|mut s| s.execute(params))
            .map(|n| n as u64)
            .map_err(driver);
    }
    let params = rusqlite::params![keep, cutoff];
    let dependents: Vec<(String, i64)> = conn
        .prepare_cached(&format!(
            "WITH {EVERY_EXECUTION_DOOMED}
             SELECT k.execution_id, k.version FROM checkpoints AS k JOIN doomed AS d
                 ON d.execution_id = k.execution_id AND d.version = k.base_version
             WHERE NOT EXISTS (SELECT 1 FROM doomed AS x
                               WHERE x.execution_id = k.execution_id AND x.version = k.version)"
        ))
        .and_then(|mut s| {
            s.query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(driver)?;
    let mut by_execution: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (execution, version) in dependents {
        by_execution.entry(execution).or_default().push(version);
    }
    for (execution, versions) in &by_execution {
        rewrite_as_snapshots(conn, encoder, execution, versions)?;
    }
    conn.prepare_cached(&format!(
        "WITH {EVERY_EXECUTION_DOOMED}
         DELETE FROM checkpoints WHERE (execution_id, version) IN
             (SELECT execution_id, version FROM doomed)"
    ))
    .and_then(|mut s| s.execute(params))
    .map(|n| n as u64)
    .map_err(driver)
}

/// Whether row `{x}` of execution `?3` goes under a policy keeping the `?1` newest (none when
/// NULL) and removing rows older than `?2` (none when NULL). NULL, not false, when the
/// execution has no more than `?1` rows.
const ONE_EXECUTION_DOOMED: &str = "(?1 IS NULL OR {x}.version <= (
         SELECT version FROM checkpoints WHERE execution_id = ?3
         ORDER BY version DESC LIMIT 1 OFFSET COALESCE(?1, 0)))
     AND (?2 IS NULL OR {x}.timestamp_us < ?2)";

/// The rows of every execution that go under a policy keeping each execution's `?1` newest
/// (none when NULL) and removing rows older than `?2` (none when NULL).
const EVERY_EXECUTION_DOOMED: &str = "doomed AS (
         SELECT execution_id, version FROM (
             SELECT execution_id, version, timestamp_us,
                    ROW_NUMBER() OVER (PARTITION BY execution_id ORDER BY version DESC) - 1
                        AS newer
             FROM checkpoints
         )
         WHERE (?1 IS NULL OR newer >= ?1) AND (?2 IS NULL OR timestamp_us < ?2)
     )";

/// Copies checkpoint `id` into the new, empty execution `new_execution_id` as its version 1,
/// in the caller's transaction: no other write can slip between the check and the copy.
pub(crate) fn fork(
    conn: &Connection,
    encoder: &Arc<Encoder>,
    limits: &Limits,
    id: &str,
    new_execution_id: &str,
) -> Result<Checkpoint> {
    let fetched = chain::fetch(conn, encoder, |conn| {
        Ok(read::load(conn, id)?.into_iter().collect())
    })?;
    let source = chain::rebuild(fetched, encoder, false)?
        .pop()
        .ok_or_else(|| Error::NotFound { id: id.to_owned() })?;
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
    let row = StoredRow::from_checkpoint(&forked, encoder, true)?;
    save(conn, &row)?;
    Ok(forked)
}
