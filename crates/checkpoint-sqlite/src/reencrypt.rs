//! Re-encryption of a batch of rows, by id, inside one write transaction: each state sealed
//! under the write key (`checkpoint_format::reseal`), each rewritten row's new tag recorded as
//! its state hash and given to the rows built on it.

use checkpoint_core::Result;
use checkpoint_format::encoder::Encoder;
use checkpoint_format::reseal::{reseal, seal_state, ReencryptBatch};
use checkpoint_format::sealing::EncryptionError;
use rusqlite::Connection;

use crate::codec;
use crate::error::driver;
use crate::options::SQLITE_MAX_LENGTH;
use crate::row::corrupt;

/// One row as re-encryption reads it.
struct Held {
    id: String,
    execution_id: String,
    version: i64,
    state: Vec<u8>,
    state_hash: Option<i64>,
    is_delta: bool,
}

/// Seals the rows with ids after `after`, at most `limit`, under the write key of `encoder`'s
/// keys, in the caller's transaction.
pub(crate) fn batch(
    conn: &Connection,
    encoder: &Encoder,
    after: &str,
    limit: usize,
) -> Result<ReencryptBatch> {
    let keys = encoder.encryption.as_ref().ok_or_else(|| {
        checkpoint_core::Error::invalid("encryption", "re-encryption needs encryption keys")
    })?;
    let rows: Vec<Held> = conn
        .prepare_cached(
            "SELECT id, execution_id, version, state, state_hash, base_version IS NOT NULL
             FROM checkpoints WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(
                rusqlite::params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(Held {
                        id: r.get(0)?,
                        execution_id: r.get(1)?,
                        version: r.get(2)?,
                        state: r.get(3)?,
                        state_hash: r.get(4)?,
                        is_delta: r.get(5)?,
                    })
                },
            )?
            .collect()
        })
        .map_err(driver)?;
    let mut batch = ReencryptBatch::examined(
        u64::try_from(rows.len()).unwrap_or(u64::MAX),
        rows.last().map(|r| r.id.clone()),
    );
    let mut write = conn
        .prepare_cached("UPDATE checkpoints SET state = ?2, state_hash = ?3 WHERE id = ?1")
        .map_err(driver)?;
    let mut relink = conn
        .prepare_cached(
            "UPDATE checkpoints SET base_hash = ?3 WHERE execution_id = ?1 AND base_version = ?2",
        )
        .map_err(driver)?;
    for row in rows {
        let sealed = match row.state_hash {
            // Schema 1 and 2 rows hold their state whole, in their own form.
            None => {
                let state = codec::decode(&row.state)
                    .map_err(|reason| corrupt(&row.id, format!("state: {reason}")))?;
                Some(seal_state(keys, &state, encoder.compression)?)
            }
            Some(recorded) => reseal(
                keys,
                &row.state,
                Some(recorded),
                row.is_delta,
                SQLITE_MAX_LENGTH,
            )
            .map_err(|e| match EncryptionError::of(&e) {
                Some(_) => e,
                None => corrupt(&row.id, e.to_string()),
            })?,
        };
        let Some(payload) = sealed else {
            continue;
        };
        let tag = checkpoint_format::chain::payload_tag(&payload);
        write
            .execute(rusqlite::params![row.id, payload, tag])
            .map_err(driver)?;
        relink
            .execute(rusqlite::params![row.execution_id, row.version, tag])
            .map_err(driver)?;
        batch.rewritten = batch.rewritten.saturating_add(1);
    }
    Ok(batch)
}
