//! Reading states back: the rows a read wants and, when some hold deltas, the chains of bases
//! those need, read from one snapshot of the file; then the states rebuilt by
//! [`checkpoint_format::chain`], every link and content hash checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use checkpoint_core::{Checkpoint, Result};
use checkpoint_format::chain::{self, Rebuilt};
use checkpoint_format::encoder::Encoder;
use checkpoint_format::sealing::EncryptionError;
use rusqlite::Connection;
use serde_json::Value;

use crate::error::driver;
use crate::options::SQLITE_MAX_LENGTH;
use crate::row::{RawRow, COLUMNS};

/// The rows a read wants, in its order, the states the store already holds for some of them,
/// and the bases the others' deltas are rebuilt on.
pub(crate) struct Fetched {
    pub(crate) rows: Vec<RawRow>,
    /// For each row, the state the store remembers for it (the base of its next delta: the
    /// same version and recorded hash), taken when the row was read.
    held: Vec<Option<Arc<Value>>>,
    bases: Vec<RawRow>,
}

impl Fetched {
    /// The stored bytes of every state to decode: what rebuilding costs grows with them.
    pub(crate) fn state_bytes(&self) -> usize {
        self.rows
            .iter()
            .zip(&self.held)
            .filter(|(_, held)| held.is_none())
            .map(|(row, _)| row)
            .chain(&self.bases)
            .map(RawRow::state_bytes)
            .fold(0, usize::saturating_add)
    }
}

/// The state `encoder` remembers for `row`: the same execution, version and recorded hash,
/// so the same state, proven or checked when it was remembered.
fn held_state(encoder: &Encoder, row: &RawRow) -> Option<Arc<Value>> {
    let hash = row.state_hash?;
    encoder
        .cache
        .get(&row.execution_id)
        .filter(|held| held.version == row.version && held.hash == hash)
        .map(|held| held.state)
}

/// Runs `read` and, when one of its rows is a delta, runs it again together with the read of
/// the bases in one read transaction, so that the rows and their chains come from one snapshot
/// of the file (a prune by another process between two statements could otherwise remove a
/// base). Inside a write's transaction the rows and bases are read at once.
pub(crate) fn fetch(
    conn: &Connection,
    encoder: &Encoder,
    read: impl Fn(&Connection) -> Result<Vec<RawRow>>,
) -> Result<Fetched> {
    let rows = read(conn)?;
    let held: Vec<_> = rows.iter().map(|row| held_state(encoder, row)).collect();
    let needs_bases = |rows: &[RawRow], held: &[Option<Arc<Value>>]| {
        rows.iter()
            .zip(held)
            .any(|(row, held)| row.is_delta() && held.is_none())
    };
    if !needs_bases(&rows, &held) {
        return Ok(Fetched {
            rows,
            held,
            bases: Vec::new(),
        });
    }
    if !conn.is_autocommit() {
        let bases = bases_of(conn, &rows, &held)?;
        return Ok(Fetched { rows, held, bases });
    }
    let tx = conn.unchecked_transaction().map_err(driver)?;
    let rows = read(&tx)?;
    let held: Vec<_> = rows.iter().map(|row| held_state(encoder, row)).collect();
    let bases = bases_of(&tx, &rows, &held)?;
    // A read transaction: ending it releases the snapshot, it writes nothing.
    tx.commit().map_err(driver)?;
    Ok(Fetched { rows, held, bases })
}

/// Every row the deltas among `rows` are built on, down to their snapshots: per execution, one
/// statement that follows each `base_version` through the unique index. A base's version is
/// always lower than its delta's (a check on the table), so the walk ends.
fn bases_of(
    conn: &Connection,
    rows: &[RawRow],
    held: &[Option<Arc<Value>>],
) -> Result<Vec<RawRow>> {
    let mut starts: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (row, _) in rows.iter().zip(held).filter(|(_, held)| held.is_none()) {
        if let Some(base) = row.base_version {
            starts.entry(&row.execution_id).or_default().push(base);
        }
    }
    let mut statement = conn
        .prepare_cached(&format!(
            "WITH RECURSIVE chain(version) AS (
                 SELECT value FROM json_each(?2)
                 UNION
                 SELECT c.base_version FROM checkpoints AS c JOIN chain
                     ON c.execution_id = ?1 AND c.version = chain.version
                 WHERE c.base_version IS NOT NULL
             )
             SELECT {COLUMNS} FROM checkpoints
             WHERE execution_id = ?1 AND version IN (SELECT version FROM chain)"
        ))
        .map_err(driver)?;
    let mut bases = Vec::new();
    for (execution, versions) in starts {
        let versions = serde_json::to_string(&versions)?;
        let found = statement
            .query_map(rusqlite::params![execution, versions], RawRow::get)
            .map_err(driver)?;
        for row in found {
            bases.push(row.map_err(driver)?);
        }
    }
    Ok(bases)
}

/// The checkpoints of `fetched`'s rows, in their order, each state rebuilt and checked. With
/// `remember`, the newest state read of each execution becomes the base of the store's next
/// delta (a process that resumes a workflow reads its latest checkpoint, then saves on it).
pub(crate) fn rebuild(
    fetched: Fetched,
    encoder: &Encoder,
    remember: bool,
) -> Result<Vec<Checkpoint>> {
    let order: Vec<(String, i64)> = fetched
        .rows
        .iter()
        .map(|r| (r.execution_id.clone(), r.version))
        .collect();
    let first_id = fetched
        .rows
        .first()
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let mut stored = Vec::with_capacity(fetched.rows.len() + fetched.bases.len());
    for (row, held) in fetched.rows.into_iter().zip(fetched.held) {
        let row = match held {
            // Held: its state as it is, needing no base and no decoding.
            Some(state) => row.held(Arc::unwrap_or_clone(state))?,
            None => row.stored()?,
        };
        stored.push(row.wanted());
    }
    for row in fetched.bases {
        stored.push(row.stored()?);
    }
    let rebuilt =
        chain::rebuild(stored, SQLITE_MAX_LENGTH, encoder.encryption.as_ref()).map_err(|err| {
            match &order[..] {
                // One row asked for: the error is that row's, whichever link failed.
                [_] if EncryptionError::of(&err).is_none() => {
                    crate::row::corrupt(&first_id, err.to_string())
                }
                _ => err,
            }
        })?;
    if remember {
        if let Some(newest) = rebuilt.last() {
            encoder.remember_read(newest);
        }
    }
    in_order(rebuilt, &order)
}

/// `rebuilt` (ascending by execution and version) in the order the read asked for: as it is,
/// reversed (a page of newest first), or else matched up by key.
fn in_order(rebuilt: Vec<Rebuilt>, order: &[(String, i64)]) -> Result<Vec<Checkpoint>> {
    let same = |r: &Rebuilt, (e, v): &(String, i64)| {
        r.checkpoint.execution_id == *e && r.checkpoint.version == *v
    };
    if rebuilt.len() == order.len() {
        if rebuilt.iter().zip(order).all(|(r, key)| same(r, key)) {
            return Ok(rebuilt.into_iter().map(|r| r.checkpoint).collect());
        }
        if rebuilt.iter().rev().zip(order).all(|(r, key)| same(r, key)) {
            return Ok(rebuilt.into_iter().rev().map(|r| r.checkpoint).collect());
        }
    }
    let mut by_key: HashMap<(String, i64), Checkpoint> = rebuilt
        .into_iter()
        .map(|r| {
            (
                (r.checkpoint.execution_id.clone(), r.checkpoint.version),
                r.checkpoint,
            )
        })
        .collect();
    order
        .iter()
        .map(|key| {
            by_key.remove(key).ok_or_else(|| {
                crate::row::corrupt(&key.0, format!("version {} was not rebuilt", key.1))
            })
        })
        .collect()
}

/// The states of the rows `versions` of `execution_id`, with their chains, inside the caller's
/// write transaction.
pub(crate) fn states_of(
    conn: &Connection,
    encoder: &Encoder,
    execution_id: &str,
    versions: &[i64],
) -> Result<Vec<Checkpoint>> {
    let fetched = fetch(conn, encoder, |conn| {
        let mut statement = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM checkpoints
                 WHERE execution_id = ?1 AND version IN (SELECT value FROM json_each(?2))
                 ORDER BY version"
            ))
            .map_err(driver)?;
        let versions = serde_json::to_string(versions)?;
        let found = statement
            .query_map(rusqlite::params![execution_id, versions], RawRow::get)
            .map_err(driver)?;
        found.map(|r| r.map_err(driver)).collect::<Result<Vec<_>>>()
    })?;
    rebuild(fetched, encoder, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        /// Whatever order a read asked for (as rebuilt, reversed, or rotated), its
        /// checkpoints come back in it.
        #[test]
        fn rebuilt_checkpoints_come_back_in_the_order_asked(
            keys in prop::collection::btree_set((0u8..3, 1i64..40), 0..25),
            shape in 0u8..3,
            shuffle in any::<prop::sample::Index>(),
        ) {
            let ascending: Vec<(String, i64)> =
                keys.into_iter().map(|(e, v)| (format!("e{e}"), v)).collect();
            let mut order = ascending.clone();
            match shape {
                0 => {}
                1 => order.reverse(),
                _ => {
                    // A rotation by a generated amount: neither ascending nor reversed
                    // once there are three keys or more.
                    if !order.is_empty() {
                        let by = shuffle.index(order.len());
                        order.rotate_left(by);
                    }
                }
            }
            let rebuilt: Vec<Rebuilt> = ascending
                .iter()
                .map(|(e, v)| {
                    let mut checkpoint = Checkpoint::new(e.clone(), "n", json!({ "v": v }));
                    checkpoint.version = *v;
                    Rebuilt { checkpoint, fingerprint: None, depth: 0 }
                })
                .collect();
            let got: Vec<(String, i64, Value)> = in_order(rebuilt, &order)
                .unwrap()
                .into_iter()
                .map(|c| (c.execution_id, c.version, c.state))
                .collect();
            let expected: Vec<(String, i64, Value)> = order
                .iter()
                .map(|(e, v)| (e.clone(), *v, json!({ "v": v })))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_key_that_was_not_rebuilt_is_corruption() {
        let err = in_order(Vec::new(), &[("e".to_owned(), 3)]).unwrap_err();
        assert!(
            err.to_string().contains("version 3 was not rebuilt"),
            "{err}"
        );
    }
}
