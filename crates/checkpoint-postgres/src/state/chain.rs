//! Reading rows into the form [`checkpoint_format::chain`] rebuilds states from: the columns
//! every read selects, and the decoding of one row. The rebuild itself (every link and content
//! hash checked, damage reported row by row) is `checkpoint_format::chain`, shared with every
//! backend that stores deltas.

use checkpoint_core::{Checkpoint, Result};
use serde_json::{Map, Value};

pub(crate) use checkpoint_format::chain::{damage, rebuild, Rebuilt};
use checkpoint_format::chain::{Body, Stored};

use crate::error::DbError;
use crate::pool::Row;

pub(crate) use crate::schema::columns::{READ_COLUMNS, READ_WIDTH};

/// Decodes a row of [`READ_COLUMNS`] (positions as `schema::columns` describes them: its tests
/// pin `version` at 6 and `depth` at 12); `wanted` is its own flag or the caller's choice.
pub(crate) fn from_row(mut row: Row, wanted: bool) -> Result<Stored> {
    let (id, execution_id) = (row.text(0)?, row.text(1)?);
    let metadata = match row.take_json(4)? {
        None => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(DbError::decode(format!(
                "metadata of checkpoint {id} (execution {execution_id}) is not an object: \
                 {other}"
            ))
            .into())
        }
    };
    let body = match (row.take_bytes(8)?, row.take_json(3)?) {
        (Some(payload), _) => Body::Payload(payload),
        (None, Some(state)) => Body::Json(state),
        (None, None) => Body::Json(Value::Null),
    };
    let base = match (row.opt_int(9)?, row.opt_int(10)?) {
        (Some(version), Some(hash)) => Some((version, hash)),
        (None, _) => None,
        (Some(version), None) => {
            return Err(DbError::decode(format!(
                "checkpoint {id} (execution {execution_id}) is a delta on version {version} \
                 that names no base hash"
            ))
            .into())
        }
    };
    Ok(Stored {
        checkpoint: Checkpoint {
            id,
            execution_id,
            node_name: row.text(2)?,
            state: Value::Null,
            metadata,
            timestamp: row.timestamp(5)?,
            version: row.int(6)?,
            parent_id: row.opt_text(7)?,
        },
        body,
        base,
        state_hash: row.opt_int(11)?,
        depth: i32::try_from(row.opt_int(12)?.unwrap_or(0)).unwrap_or(i32::MAX),
        wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Cell;
    use serde_json::json;
    use time::OffsetDateTime;

    fn row(metadata: Value, base: (Cell, Cell)) -> Row {
        Row(vec![
            Cell::Text("id-1".into()),
            Cell::Text("e".into()),
            Cell::Text("n".into()),
            Cell::Null,
            Cell::Json(metadata),
            Cell::Timestamp(OffsetDateTime::UNIX_EPOCH),
            Cell::Int(2),
            Cell::Null,
            Cell::Bytes(vec![1, 0, b'{', b'}']),
            base.0,
            base.1,
            Cell::Int(7),
            Cell::Int(1),
        ])
    }

    #[test]
    fn a_row_decodes_into_its_checkpoint_body_and_links() {
        let stored = from_row(row(json!({"k": 1}), (Cell::Int(1), Cell::Int(5))), true).unwrap();
        assert_eq!(stored.checkpoint.id, "id-1");
        assert_eq!(stored.checkpoint.version, 2);
        assert_eq!(stored.checkpoint.metadata.get("k"), Some(&json!(1)));
        assert_eq!(
            (stored.base, stored.state_hash, stored.depth),
            (Some((1, 5)), Some(7), 1)
        );
        assert!(stored.wanted && stored.is_delta());
        assert!(matches!(stored.body, Body::Payload(ref p) if p == &[1, 0, b'{', b'}']));
    }

    #[test]
    fn a_row_that_does_not_decode_names_itself() {
        let err = from_row(row(json!(["no"]), (Cell::Null, Cell::Null)), true).unwrap_err();
        assert!(err.to_string().contains("id-1 (execution e)"), "{err}");
        let err = from_row(row(json!({}), (Cell::Int(1), Cell::Null)), true).unwrap_err();
        assert!(err.to_string().contains("names no base hash"), "{err}");
        assert!(err.to_string().contains("id-1"), "{err}");
    }
}
