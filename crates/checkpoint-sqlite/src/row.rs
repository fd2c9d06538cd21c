//! A checkpoint as one row of the `checkpoints` table, both ways: encoded for a write, and
//! copied out of a read for the chain rebuild (`crate::chain`).

use std::sync::Arc;

use checkpoint_core::{Checkpoint, Error, Result};
use checkpoint_format::chain::{Body, Stored};
use checkpoint_format::encoder::{Encoded, Encoder};
use rusqlite::Row;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::codec;
use crate::error::SqliteError;

/// Every column, in the order [`StoredRow`] binds and [`RawRow::get`] reads them.
pub(crate) const COLUMNS: &str = "id, execution_id, version, node_name, parent_id, timestamp_us, \
                                  metadata, state, base_version, base_hash, state_hash, depth";

/// A checkpoint encoded for its row. Encoding happens before the write lock is taken, so a
/// large state is compressed (or diffed) while other saves commit.
pub(crate) struct StoredRow {
    pub(crate) id: String,
    pub(crate) execution_id: String,
    pub(crate) version: i64,
    pub(crate) node_name: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) timestamp_us: i64,
    pub(crate) metadata: String,
    /// The state as stored: a snapshot, or a delta on `encoded.base`.
    pub(crate) encoded: Encoded,
    /// The state itself when the store builds deltas: a snapshot of it replaces the delta
    /// when its base changed meanwhile, and it becomes the base of the next delta, shared,
    /// not copied again.
    pub(crate) whole: Option<Arc<Value>>,
    pub(crate) encoder: Arc<Encoder>,
}

impl StoredRow {
    /// The row of a validated checkpoint: a delta when `encoder` holds a usable base (never
    /// when `full`), a snapshot otherwise.
    pub(crate) fn from_checkpoint(
        checkpoint: &Checkpoint,
        encoder: &Arc<Encoder>,
        full: bool,
    ) -> Result<StoredRow> {
        let mut encoded = encoder.encode(checkpoint, full)?;
        let whole = match encoded.state.take() {
            Some(rebuilt) => Some(rebuilt),
            None => (encoder.builds_deltas() && !full).then(|| Arc::new(checkpoint.state.clone())),
        };
        Ok(StoredRow {
            id: checkpoint.id.clone(),
            execution_id: checkpoint.execution_id.clone(),
            version: checkpoint.version,
            node_name: checkpoint.node_name.clone(),
            parent_id: checkpoint.parent_id.clone(),
            timestamp_us: to_micros(checkpoint.timestamp)?,
            metadata: serde_json::to_string(&checkpoint.metadata)?,
            encoded,
            whole,
            encoder: Arc::clone(encoder),
        })
    }

    /// The stored bytes of the row's state and metadata.
    pub(crate) fn bytes(&self) -> usize {
        self.encoded
            .payload
            .len()
            .saturating_add(self.metadata.len())
    }
}

/// Microseconds since the Unix epoch; every timestamp the input rules allow (years 1 to 9999)
/// fits.
pub(crate) fn to_micros(timestamp: OffsetDateTime) -> Result<i64> {
    i64::try_from(timestamp.unix_timestamp_nanos() / 1_000)
        .map_err(|_| Error::invalid("timestamp", "is outside the range SQLite stores"))
}

pub(crate) fn from_micros(id: &str, micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| corrupt(id, format!("timestamp {micros}: {e}")))
}

pub(crate) fn corrupt(id: &str, reason: impl Into<String>) -> Error {
    SqliteError::Corrupt {
        id: id.to_owned(),
        reason: reason.into(),
    }
    .into_core()
}

/// A row selected with [`COLUMNS`] as SQLite holds it: copied out, nothing decoded. Reading
/// and decoding are apart so that a read can leave the connection before its states are
/// decompressed and parsed (see [`SqliteStore`](crate::SqliteStore)'s quick reads).
pub(crate) struct RawRow {
    pub(crate) id: String,
    pub(crate) execution_id: String,
    pub(crate) version: i64,
    node_name: String,
    parent_id: Option<String>,
    timestamp_us: i64,
    metadata: String,
    state: Vec<u8>,
    pub(crate) base_version: Option<i64>,
    base_hash: Option<i64>,
    pub(crate) state_hash: Option<i64>,
    depth: i64,
}

impl RawRow {
    /// Copies a row selected with [`COLUMNS`].
    pub(crate) fn get(row: &Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: row.get(0)?,
            execution_id: row.get(1)?,
            version: row.get(2)?,
            node_name: row.get(3)?,
            parent_id: row.get(4)?,
            timestamp_us: row.get(5)?,
            metadata: row.get(6)?,
            state: row.get(7)?,
            base_version: row.get(8)?,
            base_hash: row.get(9)?,
            state_hash: row.get(10)?,
            depth: row.get(11)?,
        })
    }

    /// The stored state's bytes: what decoding it costs grows with them.
    pub(crate) fn state_bytes(&self) -> usize {
        self.state.len()
    }

    /// Whether the row holds a delta, which needs its chain of bases to be read.
    pub(crate) fn is_delta(&self) -> bool {
        self.base_version.is_some()
    }

    /// The row's metadata.
    pub(crate) fn metadata(&self) -> Result<Map<String, Value>> {
        serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt(&self.id, format!("metadata: {e}")))
    }

    /// The row as the chain rebuild takes it, given its already decoded metadata: a row of
    /// schema 1 or 2 (no recorded hash) with its state decoded, any other with its payload.
    pub(crate) fn stored_with(mut self, metadata: Map<String, Value>) -> Result<Stored> {
        let body = match self.state_hash {
            None => Body::Json(
                codec::decode(&self.state)
                    .map_err(|reason| corrupt(&self.id, format!("state: {reason}")))?,
            ),
            Some(_) => Body::Payload(std::mem::take(&mut self.state)),
        };
        self.stored_with_body(metadata, body)
    }

    fn stored_with_body(self, metadata: Map<String, Value>, body: Body) -> Result<Stored> {
        let timestamp = from_micros(&self.id, self.timestamp_us)?;
        let depth = i32::try_from(self.depth)
            .map_err(|_| corrupt(&self.id, format!("depth {}", self.depth)))?;
        let checkpoint = Checkpoint {
            execution_id: self.execution_id,
            version: self.version,
            node_name: self.node_name,
            parent_id: self.parent_id,
            timestamp,
            metadata,
            state: Value::Null,
            id: self.id,
        };
        let mut stored = Stored::new(checkpoint, body);
        stored.depth = depth;
        if let Some(hash) = self.state_hash {
            stored = stored.with_state_hash(hash);
        }
        match (self.base_version, self.base_hash) {
            (Some(version), Some(hash)) => stored = stored.with_base(version, hash),
            (None, None) => {}
            _ => {
                return Err(corrupt(
                    &stored.checkpoint.id,
                    "a base version without a base hash, or the reverse",
                ))
            }
        }
        Ok(stored)
    }

    /// The row as the chain rebuild takes it, holding `state`, known to be the row's (the
    /// store remembers it for this version and recorded hash): no base, nothing to decode.
    pub(crate) fn held(mut self, state: Value) -> Result<Stored> {
        let metadata = self.metadata()?;
        self.state = Vec::new();
        let mut stored = self.stored_with_body(metadata, Body::Json(state))?;
        stored.base = None;
        Ok(stored)
    }

    /// The row as the chain rebuild takes it.
    pub(crate) fn stored(self) -> Result<Stored> {
        let metadata = self.metadata()?;
        self.stored_with(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_allowed_timestamp_round_trips(
            seconds in -62_135_596_800i64..253_402_300_799,
            micros in 0u32..1_000_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_microsecond(micros)
                .unwrap();
            let stored = to_micros(t).unwrap();
            prop_assert_eq!(from_micros("x", stored).unwrap(), t);
        }
    }

    #[test]
    fn an_impossible_stored_timestamp_is_corruption() {
        let err = from_micros("x", i64::MAX).unwrap_err();
        assert!(
            matches!(SqliteError::of(&err), Some(SqliteError::Corrupt { id, .. }) if id == "x"),
            "{err}"
        );
    }
}
