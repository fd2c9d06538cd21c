//! Rebuilding states from stored rows: a row holds its whole state (the JSONB column, or a
//! snapshot payload) or a delta against a base row of the same execution, so a read fetches
//! each wanted row together with its chain of bases and applies the deltas upwards.
//!
//! Every link is checked (the delta names its base's version and content hash) and every
//! state rebuilt from a payload is checked against the content hash recorded when it was
//! saved: a damaged or mismatched chain is an error, never a wrong state.

use std::collections::{HashMap, HashSet};

use checkpoint_core::{Checkpoint, Damage, Error, Result};
use checkpoint_format::delta;
use checkpoint_format::hash::Fingerprint;
use checkpoint_format::sealing::Encryption;
use serde_json::{Map, Value};

use crate::error::DbError;
use crate::pool::Row;
use crate::state::payload;

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
    /// The execution the row belongs to.
    pub(crate) fn execution_id(&self) -> &str {
        &self.checkpoint.execution_id
    }

    /// Whether the row holds a delta, whose state needs its chain of bases.
    pub(crate) fn is_delta(&self) -> bool {
        self.base.is_some()
    }

    /// Decodes a row of [`READ_COLUMNS`]; `wanted` is its own flag or the caller's choice.
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
}

fn broken(message: String) -> Error {
    DbError::decode(message).into()
}

/// The wanted rows of `rows` with their states rebuilt, ascending by execution and version.
/// `limit` bounds how large one stored payload may expand.
pub(crate) fn rebuild(
    mut rows: Vec<Stored>,
    limit: usize,
    keys: Option<&Encryption>,
) -> Result<Vec<Rebuilt>> {
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
        let (state, sealed_hash, from_payload) = match body {
            Body::Json(state) => (state, None, false),
            Body::Payload(payload) => {
                let opened = payload::open(&payload, limit, keys)?;
                let text = opened.text;
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
                (state, opened.content_hash, true)
            }
        };
        // JSONB rows are normalised by the server, so only payload states are held to their
        // hash (a JSONB row has none and is never a base). A sealed payload carries the content
        // hash inside the seal; the row then records an opaque tag, which is what later deltas
        // name as their base.
        if rows[i].wanted && from_payload {
            if let Some(recorded) = rows[i].state_hash {
                let fingerprint = checkpoint_format::hash::fingerprint(&state);
                if fingerprint.hash != sealed_hash.unwrap_or(recorded) {
                    return Err(broken(format!(
                        "the state rebuilt for checkpoint {} differs from the one saved",
                        rows[i].checkpoint.id
                    )));
                }
                fingerprints[i] = Some(Fingerprint {
                    hash: recorded,
                    ..fingerprint
                });
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

/// Every row of one execution checked on its own, for `verify`: the [`Damage`] of each row
/// that cannot be read back as it was saved, ascending by version. Unlike [`rebuild`] it goes
/// on past a damaged row; a delta on a damaged base is damaged too, and says which base. States
/// are kept only until their last dependent is rebuilt.
pub(crate) fn damage(
    mut rows: Vec<Stored>,
    limit: usize,
    keys: Option<&Encryption>,
) -> Vec<Damage> {
    rows.sort_by_key(|r| r.checkpoint.version);
    let mut dependents: HashMap<i64, usize> = HashMap::new();
    for row in &rows {
        if let Some((version, _)) = row.base {
            *dependents.entry(version).or_default() += 1;
        }
    }
    let recorded: HashMap<i64, Option<i64>> = rows
        .iter()
        .map(|r| (r.checkpoint.version, r.state_hash))
        .collect();
    let mut states: HashMap<i64, Value> = HashMap::new();
    let mut damaged: HashSet<i64> = HashSet::new();
    let mut found = Vec::new();
    for row in rows {
        let version = row.checkpoint.version;
        let outcome = check_one(
            &row,
            &recorded,
            &damaged,
            &mut states,
            &dependents,
            limit,
            keys,
        );
        if let Some((base, _)) = row.base {
            if let Some(left) = dependents.get_mut(&base) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    states.remove(&base);
                }
            }
        }
        match outcome {
            Ok(state) => {
                if dependents.get(&version).is_some_and(|n| *n > 0) {
                    states.insert(version, state);
                }
            }
            Err(reason) => {
                damaged.insert(version);
                found.push(Damage {
                    id: row.checkpoint.id,
                    execution_id: row.checkpoint.execution_id,
                    version,
                    reason,
                });
            }
        }
    }
    found
}

/// The state of one row, rebuilt on its base's (held in `states`), checked against its link
/// and its content hash; or why it cannot be read.
fn check_one(
    row: &Stored,
    recorded: &HashMap<i64, Option<i64>>,
    damaged: &HashSet<i64>,
    states: &mut HashMap<i64, Value>,
    dependents: &HashMap<i64, usize>,
    limit: usize,
    keys: Option<&Encryption>,
) -> std::result::Result<Value, String> {
    let payload = match &row.body {
        Body::Json(state) => return Ok(state.clone()),
        Body::Payload(payload) => payload,
    };
    let opened = payload::open(payload, limit, keys).map_err(|e| e.to_string())?;
    let state = match row.base {
        None => serde_json::from_slice(&opened.text)
            .map_err(|e| format!("its stored snapshot is not JSON: {e}"))?,
        Some((version, hash)) => {
            let base_hash = recorded
                .get(&version)
                .filter(|_| version < row.checkpoint.version)
                .ok_or_else(|| format!("it is a delta on version {version}, which is not there"))?;
            if *base_hash != Some(hash) {
                return Err(format!(
                    "it is a delta on version {version}, which now holds another state"
                ));
            }
            if damaged.contains(&version) {
                return Err(format!(
                    "it is a delta on version {version}, which is damaged"
                ));
            }
            let mut state = if dependents.get(&version) == Some(&1) {
                states.remove(&version)
            } else {
                states.get(&version).cloned()
            }
            .ok_or_else(|| format!("its base, version {version}, was not rebuilt"))?;
            let ops: Vec<delta::Op> = serde_json::from_slice(&opened.text)
                .map_err(|e| format!("its stored delta is not readable: {e}"))?;
            delta::apply(&mut state, ops).map_err(|e| e.to_string())?;
            state
        }
    };
    if let Some(recorded) = row.state_hash {
        if checkpoint_format::hash::state_hash(&state) != opened.content_hash.unwrap_or(recorded) {
            return Err("the state rebuilt from its row differs from the one saved".into());
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::pool::Cell;
    use crate::state::payload::{encode, Compression};
    use checkpoint_format::hash::state_hash;
    use serde_json::json;
    use time::OffsetDateTime;

    pub(super) fn row(
        version: i64,
        payload: Option<Vec<u8>>,
        base: Option<(i64, i64)>,
        hash: i64,
    ) -> Row {
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

    pub(super) fn history() -> (Vec<Value>, Vec<Row>) {
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
                i64::try_from(v).unwrap() + 1,
                Some(encode(&serde_json::to_vec(&ops).unwrap(), Compression::default()).unwrap()),
                Some((i64::try_from(v).unwrap(), state_hash(&states[v - 1]))),
                state_hash(&states[v]),
            ));
        }
        (states, rows)
    }

    pub(super) fn stored(rows: Vec<Row>, wanted: &[i64]) -> Vec<Stored> {
        rows.into_iter()
            .map(|r| {
                let v = r.int(6).unwrap();
                Stored::from_row(r, wanted.contains(&v)).unwrap()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::pool::Cell;

    #[test]
    fn a_chain_rebuilds_every_wanted_state() {
        let (states, mut rows) = history();
        rows.reverse(); // any order
        let out = rebuild(stored(rows, &[4, 2]), 1 << 20, None).unwrap();
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
        let err = rebuild(stored(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn a_base_with_another_state_is_an_error() {
        let (_, mut rows) = history();
        rows[1].0[11] = Cell::Int(12345);
        let err = rebuild(stored(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("another state"), "{err}");
    }

    #[test]
    fn a_rebuilt_state_that_differs_from_the_saved_one_is_an_error() {
        let (_, mut rows) = history();
        // The last row's recorded hash no longer matches what its chain gives.
        rows[3].0[11] = Cell::Int(99);
        let err = rebuild(stored(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
    }

    #[test]
    fn a_base_of_a_higher_version_is_refused() {
        let (_, mut rows) = history();
        rows[1].0[9] = Cell::Int(3);
        assert!(rebuild(stored(rows, &[2]), 1 << 20, None).is_err());
    }
}

#[cfg(test)]
mod damage_tests {
    use super::tests_support::*;
    use super::*;
    use crate::pool::Cell;

    fn damaged(rows: Vec<Row>) -> Vec<(i64, String)> {
        damage(stored(rows, &[]), 1 << 20, None)
            .into_iter()
            .map(|d| (d.version, d.reason))
            .collect()
    }

    #[test]
    fn an_intact_history_has_no_damage() {
        let (_, rows) = history();
        assert!(damaged(rows).is_empty());
    }

    #[test]
    fn a_changed_hash_damages_that_row_and_the_deltas_on_it() {
        let (_, mut rows) = history();
        rows[2].0[11] = Cell::Int(99);
        let found = damaged(rows);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert!(found[0].1.contains("differs"), "{found:?}");
        assert_eq!(found[1].0, 4);
        assert!(found[1].1.contains("another state"), "{found:?}");
    }

    #[test]
    fn a_garbled_payload_damages_its_row_and_every_row_built_on_it() {
        let (_, mut rows) = history();
        rows[1].0[8] = Cell::Bytes(vec![1, 2, 0xff, 0xfe]);
        let found = damaged(rows);
        let versions: Vec<i64> = found.iter().map(|d| d.0).collect();
        assert_eq!(versions, vec![2, 3, 4], "{found:?}");
        assert!(
            found[1].1.contains("version 2, which is damaged"),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_base_is_named_and_the_rest_is_checked_in_any_order() {
        let (_, mut rows) = history();
        rows.remove(0);
        rows.reverse();
        let found = damaged(rows);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].1.contains("version 1, which is not there"),
            "{found:?}"
        );
    }
}

#[cfg(test)]
mod sealed_tests {
    use super::tests_support::*;
    use super::*;
    use checkpoint_format::sealing::{EncryptionError, EncryptionKey};

    fn keys(id: &str, byte: u8) -> Encryption {
        Encryption::new(EncryptionKey::new(id, &[byte; 32]).unwrap())
    }

    /// The history of `history()`, sealed under `with`: each row records the tag of its sealed
    /// payload, each delta the tag of its base.
    fn sealed_history(with: &Encryption) -> (Vec<Value>, Vec<Row>) {
        let (states, rows) = history();
        let mut tags: Vec<i64> = Vec::new();
        let mut sealed = Vec::new();
        for (i, mut row) in rows.into_iter().enumerate() {
            let plain = row.take_bytes(8).unwrap().unwrap();
            let payload = with
                .seal(checkpoint_format::hash::state_hash(&states[i]), &plain)
                .unwrap();
            let tag = payload::payload_tag(&payload);
            let base = (i > 0).then(|| (i64::try_from(i).unwrap(), tags[i - 1]));
            sealed.push(super::tests_support::row(
                i64::try_from(i).unwrap() + 1,
                Some(payload),
                base,
                tag,
            ));
            tags.push(tag);
        }
        (states, sealed)
    }

    #[test]
    fn a_sealed_chain_rebuilds_with_its_key_and_keeps_tags_as_identities() {
        let k1 = keys("k1", 1);
        let (states, rows) = sealed_history(&k1);
        let tag_of_4 = rows[3].int(11).unwrap();
        let out = rebuild(stored(rows, &[4, 2]), 1 << 20, Some(&k1)).unwrap();
        assert_eq!(out[0].checkpoint.state, states[1]);
        assert_eq!(out[1].checkpoint.state, states[3]);
        // The base hash a later delta names is the row's tag, not the content hash.
        assert_eq!(out[1].fingerprint.unwrap().hash, tag_of_4);
        assert_ne!(tag_of_4, checkpoint_format::hash::state_hash(&states[3]));
    }

    #[test]
    fn a_sealed_chain_without_its_key_is_a_typed_error_naming_the_key() {
        let (_, rows) = sealed_history(&keys("k1", 1));
        let none = rebuild(stored(rows.clone(), &[4]), 1 << 20, None).unwrap_err();
        assert!(
            matches!(EncryptionError::of(&none), Some(EncryptionError::NotConfigured { key_id }) if key_id == "k1"),
            "{none}"
        );
        assert!(!none.is_retryable());
        let other = rebuild(stored(rows.clone(), &[4]), 1 << 20, Some(&keys("k2", 2))).unwrap_err();
        assert!(
            matches!(EncryptionError::of(&other), Some(EncryptionError::UnknownKey { key_id }) if key_id == "k1"),
            "{other}"
        );
        let wrong = rebuild(stored(rows, &[4]), 1 << 20, Some(&keys("k1", 9))).unwrap_err();
        assert!(
            matches!(EncryptionError::of(&wrong), Some(EncryptionError::Authentication { key_id }) if key_id == "k1"),
            "{wrong}"
        );
    }

    #[test]
    fn a_sealed_state_that_differs_from_its_sealed_hash_is_an_error() {
        let k1 = keys("k1", 1);
        let (states, mut rows) = sealed_history(&k1);
        // A snapshot sealed with the content hash of another state.
        let plain = payload::encode(
            &serde_json::to_vec(&states[3]).unwrap(),
            payload::Compression::None,
        )
        .unwrap();
        let payload = k1
            .seal(checkpoint_format::hash::state_hash(&states[2]), &plain)
            .unwrap();
        rows[3] = super::tests_support::row(
            4,
            Some(payload.clone()),
            None,
            payload::payload_tag(&payload),
        );
        let err = rebuild(stored(rows, &[4]), 1 << 20, Some(&k1)).unwrap_err();
        assert!(
            err.to_string().contains("differs from the one saved"),
            "{err}"
        );
    }
}
