//! A checkpoint as one row of the `checkpoints` table, both ways.

use checkpoint_core::{Checkpoint, Error, Result};
use rusqlite::Row;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::codec;
use crate::error::SqliteError;

/// Every column, in the order [`StoredRow::from_checkpoint`] binds and [`read`] reads them.
pub(crate) const COLUMNS: &str =
    "id, execution_id, version, node_name, parent_id, timestamp_us, metadata, state";

/// A checkpoint encoded for its row. Encoding happens before the write lock is taken, so a
/// large state is compressed while other saves commit.
pub(crate) struct StoredRow {
    pub(crate) id: String,
    pub(crate) execution_id: String,
    pub(crate) version: i64,
    pub(crate) node_name: String,
    pub(crate) parent_id: Option<String>,
    pub(crate) timestamp_us: i64,
    pub(crate) metadata: String,
    pub(crate) state: Vec<u8>,
}

impl StoredRow {
    /// The row of a validated checkpoint.
    pub(crate) fn from_checkpoint(checkpoint: &Checkpoint) -> Result<StoredRow> {
        let state = codec::encode(&checkpoint.state)
            .map_err(|reason| Error::invalid("state", format!("cannot be stored: {reason}")))?;
        Ok(StoredRow {
            id: checkpoint.id.clone(),
            execution_id: checkpoint.execution_id.clone(),
            version: checkpoint.version,
            node_name: checkpoint.node_name.clone(),
            parent_id: checkpoint.parent_id.clone(),
            timestamp_us: to_micros(checkpoint.timestamp)?,
            metadata: serde_json::to_string(&checkpoint.metadata)?,
            state,
        })
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
    id: String,
    execution_id: String,
    version: i64,
    node_name: String,
    parent_id: Option<String>,
    timestamp_us: i64,
    metadata: String,
    state: Vec<u8>,
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
        })
    }

    /// The stored state's bytes: what decoding it costs grows with them.
    pub(crate) fn state_bytes(&self) -> usize {
        self.state.len()
    }

    /// The row's metadata.
    pub(crate) fn metadata(&self) -> Result<Map<String, Value>> {
        serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt(&self.id, format!("metadata: {e}")))
    }

    /// The checkpoint, given its already decoded metadata.
    pub(crate) fn decode_with(self, metadata: Map<String, Value>) -> Result<Checkpoint> {
        let state = codec::decode(&self.state)
            .map_err(|reason| corrupt(&self.id, format!("state: {reason}")))?;
        let timestamp = from_micros(&self.id, self.timestamp_us)?;
        Ok(Checkpoint {
            execution_id: self.execution_id,
            version: self.version,
            node_name: self.node_name,
            parent_id: self.parent_id,
            timestamp,
            metadata,
            state,
            id: self.id,
        })
    }

    /// The checkpoint.
    pub(crate) fn decode(self) -> Result<Checkpoint> {
        let metadata = self.metadata()?;
        self.decode_with(metadata)
    }
}

/// The checkpoint of a row selected with [`COLUMNS`].
pub(crate) fn read(row: &Row<'_>) -> Result<Checkpoint> {
    RawRow::get(row).map_err(crate::error::driver)?.decode()
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
