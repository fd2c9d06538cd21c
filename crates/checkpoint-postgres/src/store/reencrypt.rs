//! Re-encryption: every row's state sealed under the current write key, in resumable batches
//! ordered by id. Rows sealed under an older key are opened and sealed again (the compressed
//! payload inside is kept as it is); plain payloads and JSONB states are sealed for the first
//! time. Each batch is one transaction; the rows built on a rewritten row are given its new
//! tag in the same transaction, so every chain stays valid.

use checkpoint_core::{Error, Result};
use checkpoint_format::sealing::{Encryption, SEALED};
use tokio_postgres::types::Type;

use crate::error::DbError;
use crate::pool::{DbTransaction, Row, Sql};
use crate::state::payload;
use crate::store::write::finish;
use crate::PostgresStore;

/// The most rows one batch may examine.
pub const MAX_REENCRYPT_BATCH: usize = 10_000;

/// What one batch of [`PostgresStore::reencrypt`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReencryptBatch {
    /// Rows looked at.
    pub examined: u64,
    /// Rows sealed anew under the write key (the others already were).
    pub rewritten: u64,
    /// The last id looked at: pass it as `after` for the next batch. `None` when no row was
    /// left after the one given: the table is done.
    pub last_id: Option<String>,
}

/// The statements of re-encryption on table `t` (quoted): read a batch of rows, locked;
/// write their new payloads and tags; give the rows built on them the new tags.
pub(crate) fn statements(t: &str) -> [Sql; 3] {
    [
        Sql::new(
            format!(
                "SELECT id, execution_id, version, state, payload, state_hash, \
                 base_version IS NOT NULL FROM {t} WHERE id IN (SELECT id FROM {t} \
                 WHERE id > $1 ORDER BY id LIMIT $2) ORDER BY id FOR UPDATE"
            ),
            &[Type::TEXT, Type::INT8],
        ),
        Sql::new(
            format!(
                "UPDATE {t} AS c SET state = NULL, payload = u.payload, state_hash = u.tag \
                 FROM unnest($1::text[], $2::bytea[], $3::int8[], $4::text[]) AS u(id, payload, \
                 tag, execution_id) WHERE c.execution_id = u.execution_id AND c.id = u.id"
            ),
            &[
                Type::TEXT_ARRAY,
                Type::BYTEA_ARRAY,
                Type::INT8_ARRAY,
                Type::TEXT_ARRAY,
            ],
        ),
        Sql::new(
            format!(
                "UPDATE {t} AS d SET base_hash = u.tag \
                 FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(execution_id, version, \
                 tag) WHERE d.execution_id = u.execution_id AND d.base_version = u.version"
            ),
            &[Type::TEXT_ARRAY, Type::INT8_ARRAY, Type::INT8_ARRAY],
        ),
    ]
}

/// One row sealed anew.
struct Resealed {
    id: String,
    execution_id: String,
    version: i64,
    payload: Vec<u8>,
    tag: i64,
}

/// Seals one row's state under the write key; `None` when it already is.
fn reseal(store: &PostgresStore, keys: &Encryption, row: &mut Row) -> Result<Option<Resealed>> {
    let id = row.text(0)?;
    let broken = |why: &str| -> Error {
        DbError::decode(format!("checkpoint {id} cannot be re-encrypted: {why}")).into()
    };
    let (state, payload, recorded, is_delta) = (
        row.take_json(3)?,
        row.take_bytes(4)?,
        row.opt_int(5)?,
        row.bool(6)?,
    );
    let (content_hash, plain) = match (state, payload) {
        (_, Some(payload)) if keys.is_current(&payload) => return Ok(None),
        (_, Some(payload)) if payload.first() == Some(&SEALED) => keys.open(&payload)?,
        // A plain payload: its row records the content hash of its state.
        (_, Some(payload)) => match recorded {
            Some(hash) => (hash, payload),
            None if !is_delta => {
                let text = payload::decode(&payload, store.payload_limit())?;
                let state: serde_json::Value = serde_json::from_slice(&text)
                    .map_err(|_| broken("its snapshot is not JSON"))?;
                (checkpoint_format::hash::state_hash(&state), payload)
            }
            None => return Err(broken("a delta without a recorded state hash")),
        },
        // A state in the JSONB column: sealed as a snapshot.
        (Some(state), None) => {
            let text = serde_json::to_vec(&state)?;
            (
                checkpoint_format::hash::state_hash(&state),
                payload::encode(&text, store.encoder.format.compression)?,
            )
        }
        (None, None) => return Err(broken("it holds no state")),
    };
    let payload = keys.seal(content_hash, &plain)?;
    Ok(Some(Resealed {
        tag: checkpoint_format::chain::payload_tag(&payload),
        execution_id: row.text(1)?,
        version: row.int(2)?,
        payload,
        id,
    }))
}

async fn reencrypt_in_tx(
    store: &PostgresStore,
    keys: &Encryption,
    tx: &mut dyn DbTransaction,
    after: &str,
    limit: i64,
) -> Result<ReencryptBatch> {
    let sql = &store.sql;
    let mut rows = tx.query(&sql.reencrypt_read, &[&after, &limit]).await?;
    let mut batch = ReencryptBatch {
        examined: rows.len() as u64,
        rewritten: 0,
        last_id: rows.last().map(|r| r.text(0)).transpose()?,
    };
    let mut resealed = Vec::new();
    for row in &mut rows {
        if let Some(r) = reseal(store, keys, row)? {
            resealed.push(r);
        }
    }
    if resealed.is_empty() {
        return Ok(batch);
    }
    let ids: Vec<&str> = resealed.iter().map(|r| r.id.as_str()).collect();
    let payloads: Vec<&[u8]> = resealed.iter().map(|r| r.payload.as_slice()).collect();
    let tags: Vec<i64> = resealed.iter().map(|r| r.tag).collect();
    let executions: Vec<&str> = resealed.iter().map(|r| r.execution_id.as_str()).collect();
    let versions: Vec<i64> = resealed.iter().map(|r| r.version).collect();
    batch.rewritten = tx
        .execute(&sql.reencrypt_write, &[&ids, &payloads, &tags, &executions])
        .await?;
    // The rows built on a rewritten row name its state hash: give them the new tag.
    tx.execute(&sql.reencrypt_bases, &[&executions, &versions, &tags])
        .await?;
    Ok(batch)
}

/// One batch of re-encryption: the rows with ids after `after`, at most `limit`.
pub(crate) async fn reencrypt(
    store: &PostgresStore,
    after: Option<&str>,
    limit: usize,
) -> Result<ReencryptBatch> {
    let keys = store.encoder.format.encryption.as_ref().ok_or_else(|| {
        Error::invalid(
            "encryption",
            "re-encryption needs encryption keys (PostgresOptions::encryption)",
        )
    })?;
    if !(1..=MAX_REENCRYPT_BATCH).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_REENCRYPT_BATCH}, got {limit}"),
        ));
    }
    if let Some(after) = after {
        checkpoint_core::validate::check_id("after", after)?;
    }
    let after = after.unwrap_or("");
    // Checked above to fit.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let outcome = store
        .retry
        .run(&store.meter, "reencrypt", || async {
            let mut tx = store.pool.begin().await?;
            let outcome = reencrypt_in_tx(store, keys, tx.as_mut(), after, limit).await;
            finish(tx, outcome.map(Some)).await
        })
        .await?;
    let batch = outcome.unwrap_or_default();
    // Cached bases name the tags the rows had before.
    if batch.rewritten > 0 {
        store.encoder.format.cache.clear();
    }
    Ok(batch)
}
