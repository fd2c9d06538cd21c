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

fn from_micros(id: &str, micros: i64) -> Result<OffsetDateTime> {
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

/// The metadata of a row selected with [`COLUMNS`].
pub(crate) fn metadata(id: &str, row: &Row<'_>) -> Result<Map<String, Value>> {
    let text: String = row.get(6).map_err(crate::error::driver)?;
    serde_json::from_str(&text).map_err(|e| corrupt(id, format!("metadata: {e}")))
}

/// The checkpoint of a row selected with [`COLUMNS`], given its already decoded metadata.
pub(crate) fn read_with(row: &Row<'_>, metadata: Map<String, Value>) -> Result<Checkpoint> {
    let get = |e| crate::error::driver(e);
    let id: String = row.get(0).map_err(get)?;
    let state: Vec<u8> = row.get(7).map_err(get)?;
    let state = codec::decode(&state).map_err(|reason| corrupt(&id, format!("state: {reason}")))?;
    let timestamp = from_micros(&id, row.get(5).map_err(get)?)?;
    Ok(Checkpoint {
        execution_id: row.get(1).map_err(get)?,
        version: row.get(2).map_err(get)?,
        node_name: row.get(3).map_err(get)?,
        parent_id: row.get(4).map_err(get)?,
        timestamp,
        metadata,
        state,
        id,
    })
}

/// The checkpoint of a row selected with [`COLUMNS`].
pub(crate) fn read(row: &Row<'_>) -> Result<Checkpoint> {
    let id: String = row.get(0).map_err(crate::error::driver)?;
    read_with(row, metadata(&id, row)?)
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
