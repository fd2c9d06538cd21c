//! Rebuilding states from stored rows: a row holds its whole state (the JSONB column, or a
//! snapshot payload) or a delta against a base row of the same execution, so a read fetches
//! each wanted row together with its chain of bases and applies the deltas upwards.
//!
//! Every link is checked (the delta names its base's version and content hash) and every
//! state rebuilt from a payload is checked against the content hash recorded when it was
//! saved: a damaged or mismatched chain is an error, never a wrong state.

use std::collections::HashMap;

use checkpoint_core::{Checkpoint, Error, Result};
use serde_json::{Map, Value};

use crate::codec::{self, Fingerprint};
use crate::delta;
use crate::error::DbError;
use crate::pool::Row;

/// The columns every read selects, in this order: the checkpoint's, then how its state is
/// stored.
pub(crate) const READ_COLUMNS: &str = "id, execution_id, node_name, state, metadata, \
     \"timestamp\", version, parent_id, payload, base_version, base_hash, state_hash, depth";

/// The number of [`READ_COLUMNS`].
pub(crate) const READ_WIDTH: usize = 13;

/// How one row holds its state.
enum Body {
    /// The whole state, in the JSONB column.
    Json(Value),
    /// A snapshot (no base) or a delta (with a base), in the payload column.
    Payload(Vec<u8>),
}

/// One row as read, before its state is rebuilt.
pub(crate) struct Stored {
    checkpoint: Checkpoint,
    body: Body,
    base: Option<(i64, i64)>,
    state_hash: Option<i64>,
    depth: i32,
    /// Whether the read asked for this row (the others are only bases).
    pub wanted: bool,
}

/// A checkpoint as read back, with what its row tells about it as a base.
#[derive(Debug)]
pub(crate) struct Rebuilt {
    pub checkpoint: Checkpoint,
    /// Set when the row can serve as the base of a delta (it has a content hash).
    pub fingerprint: Option<Fingerprint>,
    pub depth: i32,
}

impl Stored {
    /// Decodes a row of [`READ_COLUMNS`]; `wanted` is its own flag or the caller's choice.
    pub fn from_row(mut row: Row, wanted: bool) -> Result<Stored> {
        let metadata = match row.take_json(4)? {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(DbError::decode(format!(
                    "metadata of checkpoint is not an object: {other}"
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
                    "a delta on version {version} names no base hash"
                ))
                .into())
            }
        };
        Ok(Stored {
            checkpoint: Checkpoint {
                id: row.text(0)?,
                execution_id: row.text(1)?,
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
}

fn broken(message: String) -> Error {
    DbError::decode(message).into()
}

/// The wanted rows of `rows` with their states rebuilt, ascending by execution and version.
/// `limit` bounds how large one stored payload may expand.
pub(crate) fn rebuild(mut rows: Vec<Stored>, limit: usize) -> Result<Vec<Rebuilt>> {
    rows.sort_by(|a, b| {
        (a.checkpoint.execution_id.as_str(), a.checkpoint.version)
            .cmp(&(b.checkpoint.execution_id.as_str(), b.checkpoint.version))
    });
    rows.dedup_by(|later, earlier| {
        let same = later.checkpoint.execution_id == earlier.checkpoint.execution_id
            && later.checkpoint.version == earlier.checkpoint.version;
        if same {
            earlier.wanted |= later.wanted;
        }
        same
    });
    let position: HashMap<(&str, i64), usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                (r.checkpoint.execution_id.as_str(), r.checkpoint.version),
                i,
            )
        })
        .collect();
    // How many more times each row's state is needed: once if wanted, once per dependent.
    let mut uses: Vec<usize> = rows.iter().map(|r| usize::from(r.wanted)).collect();
    let mut base_of: Vec<Option<usize>> = Vec::with_capacity(rows.len());
    for row in &rows {
        let base = match row.base {
            None => None,
            Some((version, hash)) => {
                let at = *position
                    .get(&(row.checkpoint.execution_id.as_str(), version))
                    .filter(|_| version < row.checkpoint.version)
                    .ok_or_else(|| {
                        broken(format!(
                            "checkpoint {} is a delta on version {version}, which was not found",
                            row.checkpoint.id
                        ))
                    })?;
                if rows[at].state_hash != Some(hash) {
                    return Err(broken(format!(
                        "checkpoint {} is a delta on version {version}, which now holds \
                         another state",
                        row.checkpoint.id
                    )));
                }
                Some(at)
            }
        };
        base_of.push(base);
    }
    drop(position);
    for at in base_of.iter().flatten() {
        uses[*at] += 1;
    }

    let mut states: Vec<Option<Value>> = (0..rows.len()).map(|_| None).collect();
    let mut fingerprints: Vec<Option<Fingerprint>> = vec![None; rows.len()];
    for i in 0..rows.len() {
        if uses[i] == 0 {
            continue;
        }
        let body = std::mem::replace(&mut rows[i].body, Body::Json(Value::Null));
        let (state, from_payload) = match body {
            Body::Json(state) => (state, false),
            Body::Payload(payload) => {
                let text = codec::decode(&payload, limit)?;
                let state = match base_of[i] {
                    None => serde_json::from_slice(&text)
                        .map_err(|e| broken(format!("a stored snapshot is not JSON: {e}")))?,
                    Some(at) => {
                        let mut state = if uses[at] == 1 {
                            states[at].take()
                        } else {
                            states[at].clone()
                        }
                        .ok_or_else(|| broken("a delta's base was not rebuilt".into()))?;
                        uses[at] -= 1;
                        let ops: Vec<delta::Op> = serde_json::from_slice(&text)
                            .map_err(|e| broken(format!("a stored delta is not readable: {e}")))?;
                        delta::apply(&mut state, ops).map_err(|e| broken(e.to_string()))?;
                        state
                    }
                };
                (state, true)
            }
        };
        // JSONB rows are normalised by the server, so only payload states are held to their
        // hash (a JSONB row has none and is never a base).
        if rows[i].wanted && from_payload {
            if let Some(recorded) = rows[i].state_hash {
                let fingerprint = codec::fingerprint(&state);
                if fingerprint.hash != recorded {
                    return Err(broken(format!(
                        "the state rebuilt for checkpoint {} differs from the one saved",
                        rows[i].checkpoint.id
                    )));
                }
                fingerprints[i] = Some(fingerprint);
            }
        }
        states[i] = Some(state);
    }

    let mut out = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if !row.wanted {
            continue;
        }
        let mut checkpoint = row.checkpoint;
        checkpoint.state = states[i]
            .take()
            .ok_or_else(|| broken("a wanted state was not rebuilt".into()))?;
        out.push(Rebuilt {
            checkpoint,
            fingerprint: fingerprints[i],
            depth: row.depth,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, state_hash, Compression};
    use crate::pool::Cell;
    use serde_json::json;
    use time::OffsetDateTime;

    fn row(version: i64, payload: Option<Vec<u8>>, base: Option<(i64, i64)>, hash: i64) -> Row {
        Row(vec![
            Cell::Text(format!("id-{version}")),
            Cell::Text("e".into()),
            Cell::Text("n".into()),
            Cell::Null,
            Cell::Json(json!({})),
            Cell::Timestamp(OffsetDateTime::UNIX_EPOCH),
            Cell::Int(version),
            Cell::Null,
            payload.map_or(Cell::Null, Cell::Bytes),
            base.map_or(Cell::Null, |b| Cell::Int(b.0)),
            base.map_or(Cell::Null, |b| Cell::Int(b.1)),
            Cell::Int(hash),
            Cell::Int(0),
        ])
    }

    fn history() -> (Vec<Value>, Vec<Row>) {
        let states: Vec<Value> = (0..4)
            .map(|n| json!({"m": (0..n).collect::<Vec<_>>()}))
            .collect();
        let mut rows = vec![row(
            1,
            Some(encode(&serde_json::to_vec(&states[0]).unwrap(), Compression::Lz4).unwrap()),
            None,
            state_hash(&states[0]),
        )];
        for v in 1..4 {
            let ops = delta::diff(&states[v - 1], &states[v]);
            rows.push(row(
                v as i64 + 1,
                Some(encode(&serde_json::to_vec(&ops).unwrap(), Compression::default()).unwrap()),
                Some((v as i64, state_hash(&states[v - 1]))),
                state_hash(&states[v]),
            ));
        }
        (states, rows)
    }

    fn stored(rows: Vec<Row>, wanted: &[i64]) -> Vec<Stored> {
        rows.into_iter()
            .map(|r| {
                let v = r.int(6).unwrap();
                Stored::from_row(r, wanted.contains(&v)).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_chain_rebuilds_every_wanted_state() {
        let (states, mut rows) = history();
        rows.reverse(); // any order
        let out = rebuild(stored(rows, &[4, 2]), 1 << 20).unwrap();
        let got: Vec<(i64, Value)> = out
            .into_iter()
            .map(|r| (r.checkpoint.version, r.checkpoint.state))
            .collect();
        assert_eq!(got, vec![(2, states[1].clone()), (4, states[3].clone())]);
    }

    #[test]
    fn a_missing_base_is_an_error() {
        let (_, mut rows) = history();
        rows.remove(1);
        let err = rebuild(stored(rows, &[4]), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn a_base_with_another_state_is_an_error() {
        let (_, mut rows) = history();
        rows[1].0[11] = Cell::Int(12345);
        let err = rebuild(stored(rows, &[4]), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("another state"), "{err}");
    }

    #[test]
    fn a_rebuilt_state_that_differs_from_the_saved_one_is_an_error() {
        let (_, mut rows) = history();
        // The last row's recorded hash no longer matches what its chain gives.
        rows[3].0[11] = Cell::Int(99);
        let err = rebuild(stored(rows, &[4]), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
    }

    #[test]
    fn a_base_of_a_higher_version_is_refused() {
        let (_, mut rows) = history();
        rows[1].0[9] = Cell::Int(3);
        assert!(rebuild(stored(rows, &[2]), 1 << 20).is_err());
    }
}
