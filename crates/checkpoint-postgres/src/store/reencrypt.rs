//! Re-encryption: every row's state sealed under the current write key, in resumable batches
//! ordered by id. Rows sealed under an older key are opened and sealed again (the compressed
//! payload inside is kept as it is); plain payloads and JSONB states are sealed for the first
//! time. Each batch is one transaction; the rows built on a rewritten row are given its new
//! tag in the same transaction, so every chain stays valid.

use checkpoint_core::{Error, Result};
use checkpoint_format::sealing::{Encryption, EncryptionError};
use tokio_postgres::types::Type;

use crate::error::DbError;
use crate::pool::{DbTransaction, Row, Sql};
use crate::store::write::finish;
use crate::PostgresStore;

pub use checkpoint_format::reseal::{ReencryptBatch, MAX_REENCRYPT_BATCH};

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
    let payload = match (state, payload) {
        (_, Some(payload)) => {
            match checkpoint_format::reseal::reseal(
                keys,
                &payload,
                recorded,
                is_delta,
                store.payload_limit(),
            )
            .map_err(|e| match EncryptionError::of(&e) {
                Some(_) => e,
                None => broken(&e.to_string()),
            })? {
                Some(payload) => payload,
                None => return Ok(None),
            }
        }
        // A state in the JSONB column: sealed as a snapshot.
        (Some(state), None) => {
            checkpoint_format::reseal::seal_state(keys, &state, store.encoder.format.compression)?
        }
        (None, None) => return Err(broken("it holds no state")),
    };
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
    let mut batch = ReencryptBatch::examined(
        rows.len() as u64,
        rows.last().map(|r| r.text(0)).transpose()?,
    );
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
    let after = checkpoint_format::reseal::check_batch(after, limit)?;
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
