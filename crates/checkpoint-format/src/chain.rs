//! Rebuilding states from stored rows, for every backend that stores deltas: a row holds its
//! whole state (as JSON, or a snapshot payload) or a delta against a base row of the same
//! execution, so a read hands over each wanted row together with its chain of bases, and the
//! deltas are applied upwards.
//!
//! Every link is checked (the delta names its base's version and content hash) and every state
//! rebuilt from a payload is checked against the content hash recorded when it was saved: a
//! damaged or mismatched chain is an error ([`FormatError::Damaged`] as the source of a
//! non-retryable [`Error::Backend`], or the [`EncryptionError`] of a sealed payload), never a
//! wrong state. The backend reads the rows; nothing here runs a statement.
//!
//! ```
//! use checkpoint_core::Checkpoint;
//! use checkpoint_format::chain::{self, Body, Stored};
//! use checkpoint_format::codec::{self, Compression};
//! use checkpoint_format::{delta, hash};
//! use serde_json::json;
//!
//! let (first, second) = (json!({"m": ["hi"]}), json!({"m": ["hi", "there"]}));
//! let snapshot = codec::encode(&serde_json::to_vec(&first)?, Compression::Lz4)?;
//! let ops = codec::encode(&serde_json::to_vec(&delta::diff(&first, &second))?, Compression::Lz4)?;
//! let rows = vec![
//!     Stored::new(Checkpoint::new("e", "n", json!(null)).with_version(1), Body::Payload(snapshot))
//!         .with_state_hash(hash::state_hash(&first)),
//!     Stored::new(Checkpoint::new("e", "n", json!(null)).with_version(2), Body::Payload(ops))
//!         .with_base(1, hash::state_hash(&first))
//!         .with_state_hash(hash::state_hash(&second))
//!         .wanted(),
//! ];
//! let rebuilt = chain::rebuild(rows, 1 << 20, None)?;
//! assert_eq!(rebuilt.len(), 1);
//! assert_eq!(rebuilt[0].checkpoint.state, second);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};

use checkpoint_core::{Checkpoint, Damage, Error, Result};
use serde_json::Value;

use crate::hash::Fingerprint;
use crate::sealing::{self, Encryption, EncryptionError};
use crate::{codec, delta, hash, FormatError};

/// How one row holds its state.
#[derive(Clone, Debug)]
pub enum Body {
    /// The whole state as JSON (PostgreSQL's JSONB column).
    Json(Value),
    /// A snapshot (no base) or a delta (with a base), in the stored form: the codec's header
    /// and compressed JSON ([`codec`]), sealed whole when encryption is on ([`sealing`]).
    Payload(Vec<u8>),
}

/// One row as read, before its state is rebuilt: the checkpoint (its state not yet set), how
/// the row holds the state, and what links it to its base.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The checkpoint; its `state` is ignored and replaced by the rebuilt one.
    pub checkpoint: Checkpoint,
    /// The state as the row holds it.
    pub body: Body,
    /// For a delta, its base's version and content hash (or, sealed, the base's tag).
    pub base: Option<(i64, i64)>,
    /// The content hash of the row's state as recorded when it was saved (sealed: an opaque
    /// tag, the content hash being inside the seal); `None` for a row that records none.
    pub state_hash: Option<i64>,
    /// How many deltas lie between the row and the snapshot its chain starts from.
    pub depth: i32,
    /// Whether the read asked for this row (the others are only bases).
    pub wanted: bool,
}

impl Stored {
    /// A row holding `body`: not a delta, no recorded hash, depth 0, not wanted.
    pub fn new(checkpoint: Checkpoint, body: Body) -> Self {
        Stored {
            checkpoint,
            body,
            base: None,
            state_hash: None,
            depth: 0,
            wanted: false,
        }
    }

    /// A delta on `version` of the same execution, whose content hash (or tag) is `hash`.
    pub fn with_base(mut self, version: i64, hash: i64) -> Self {
        self.base = Some((version, hash));
        self
    }

    /// The content hash (or tag) recorded for the row's state.
    pub fn with_state_hash(mut self, hash: i64) -> Self {
        self.state_hash = Some(hash);
        self
    }

    /// Asked for by the read.
    pub fn wanted(mut self) -> Self {
        self.wanted = true;
        self
    }

    /// The execution the row belongs to.
    pub fn execution_id(&self) -> &str {
        &self.checkpoint.execution_id
    }

    /// Whether the row holds a delta, whose state needs its chain of bases.
    pub fn is_delta(&self) -> bool {
        self.base.is_some()
    }
}

/// A checkpoint as read back, with what its row tells about it as a base.
#[derive(Clone, Debug)]
pub struct Rebuilt {
    /// The checkpoint with its state.
    pub checkpoint: Checkpoint,
    /// Set when the row can serve as the base of a delta (it has a content hash).
    pub fingerprint: Option<Fingerprint>,
    /// The row's depth.
    pub depth: i32,
}

/// What a stored payload holds.
#[derive(Debug)]
pub struct Opened {
    /// The JSON text (a state or a delta).
    pub text: Vec<u8>,
    /// For a sealed payload, the content hash of the whole state sealed with it (the row's
    /// recorded hash is then an opaque tag).
    pub content_hash: Option<i64>,
}

impl From<FormatError> for Error {
    fn from(err: FormatError) -> Self {
        Error::Backend {
            message: err.to_string(),
            retryable: false,
            source: Box::new(err),
        }
    }
}

fn broken(reason: String) -> Error {
    FormatError::Damaged { reason }.into()
}

/// `err`, from opening the payload of checkpoint `id`, naming it; an [`EncryptionError`] stays
/// as it is, for callers to match on.
fn naming(id: &str, err: Error) -> Error {
    if EncryptionError::of(&err).is_some() {
        return err;
    }
    broken(format!("checkpoint {id}: {err}"))
}

/// The JSON text of a stored payload, plain or sealed (opened with `keys`), refused when it
/// would expand past `limit` bytes.
///
/// # Errors
/// A payload that does not decode ([`FormatError`]); a sealed one without `keys`, under a key
/// `keys` does not hold, or that does not authenticate ([`EncryptionError`], naming the key).
pub fn open_payload(payload: &[u8], limit: usize, keys: Option<&Encryption>) -> Result<Opened> {
    if payload.first() != Some(&sealing::SEALED) {
        return Ok(Opened {
            text: codec::decode(payload, limit)?,
            content_hash: None,
        });
    }
    let Some(keys) = keys else {
        let key_id = sealing::sealed_key_id(payload)?.to_owned();
        return Err(EncryptionError::NotConfigured { key_id }.into());
    };
    let (content_hash, inner) = keys.open(payload)?;
    Ok(Opened {
        text: codec::decode(&inner, limit)?,
        content_hash: Some(content_hash),
    })
}

/// An opaque tag for a sealed payload, recorded in place of the content hash: it changes with
/// every write and tells nothing about the state.
pub fn payload_tag(payload: &[u8]) -> i64 {
    xxhash_rust::xxh3::xxh3_64(payload).cast_signed()
}

/// The wanted rows of `rows` with their states rebuilt, ascending by execution and version.
/// `limit` bounds how large one stored payload may expand.
///
/// # Errors
/// A missing base, a base that now holds another state, a base of a higher version, a payload
/// that does not decode or open, or a rebuilt state that differs from the one saved.
pub fn rebuild(
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
                let id = &rows[i].checkpoint.id;
                let opened = open_payload(&payload, limit, keys).map_err(|e| naming(id, e))?;
                let text = opened.text;
                let state = match base_of[i] {
                    None => serde_json::from_slice(&text).map_err(|e| {
                        broken(format!(
                            "checkpoint {id}: a stored snapshot is not JSON: {e}"
                        ))
                    })?,
                    Some(at) => {
                        let mut state = if uses[at] == 1 {
                            states[at].take()
                        } else {
                            states[at].clone()
                        }
                        .ok_or_else(|| broken("a delta's base was not rebuilt".into()))?;
                        uses[at] -= 1;
                        let ops: Vec<delta::Op> = serde_json::from_slice(&text).map_err(|e| {
                            broken(format!(
                                "checkpoint {id}: a stored delta is not readable: {e}"
                            ))
                        })?;
                        delta::apply(&mut state, ops)
                            .map_err(|e| broken(format!("checkpoint {id}: {e}")))?;
                        state
                    }
                };
                (state, opened.content_hash, true)
            }
        };
        // JSON rows (PostgreSQL's JSONB) are normalised by the server, so only payload states
        // are held to their hash (a JSON row has none and is never a base). A sealed payload
        // carries the content hash inside the seal; the row then records an opaque tag, which
        // is what later deltas name as their base.
        if rows[i].wanted && from_payload {
            if let Some(recorded) = rows[i].state_hash {
                let fingerprint = hash::fingerprint(&state);
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
pub fn damage(mut rows: Vec<Stored>, limit: usize, keys: Option<&Encryption>) -> Vec<Damage> {
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
    let opened = open_payload(payload, limit, keys).map_err(|e| e.to_string())?;
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
        if hash::state_hash(&state) != opened.content_hash.unwrap_or(recorded) {
            return Err("the state rebuilt from its row differs from the one saved".into());
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode, Compression};
    use crate::hash::state_hash;
    use crate::sealing::EncryptionKey;
    use serde_json::json;

    fn row(version: i64, payload: Vec<u8>, base: Option<(i64, i64)>, hash: i64) -> Stored {
        let checkpoint = Checkpoint::new("e", "n", Value::Null)
            .with_id(format!("id-{version}"))
            .with_version(version);
        let stored = Stored::new(checkpoint, Body::Payload(payload)).with_state_hash(hash);
        match base {
            Some((v, h)) => stored.with_base(v, h),
            None => stored,
        }
    }

    /// Four states, a snapshot then three deltas each on the one before.
    fn history() -> (Vec<Value>, Vec<Stored>) {
        let states: Vec<Value> = (0..4)
            .map(|n| json!({"m": (0..n).collect::<Vec<_>>()}))
            .collect();
        let mut rows = vec![row(
            1,
            encode(&serde_json::to_vec(&states[0]).unwrap(), Compression::Lz4).unwrap(),
            None,
            state_hash(&states[0]),
        )];
        for v in 1..4 {
            let ops = delta::diff(&states[v - 1], &states[v]);
            rows.push(row(
                i64::try_from(v).unwrap() + 1,
                encode(&serde_json::to_vec(&ops).unwrap(), Compression::default()).unwrap(),
                Some((i64::try_from(v).unwrap(), state_hash(&states[v - 1]))),
                state_hash(&states[v]),
            ));
        }
        (states, rows)
    }

    fn wanting(mut rows: Vec<Stored>, wanted: &[i64]) -> Vec<Stored> {
        for r in &mut rows {
            r.wanted = wanted.contains(&r.checkpoint.version);
        }
        rows
    }

    fn damaged(rows: Vec<Stored>) -> Vec<(i64, String)> {
        damage(rows, 1 << 20, None)
            .into_iter()
            .map(|d| (d.version, d.reason))
            .collect()
    }

    #[test]
    fn a_chain_rebuilds_every_wanted_state() {
        let (states, mut rows) = history();
        rows.reverse(); // any order
        let out = rebuild(wanting(rows, &[4, 2]), 1 << 20, None).unwrap();
        let got: Vec<(i64, Value)> = out
            .into_iter()
            .map(|r| (r.checkpoint.version, r.checkpoint.state))
            .collect();
        assert_eq!(got, vec![(2, states[1].clone()), (4, states[3].clone())]);
    }

    #[test]
    fn a_json_row_is_its_own_state() {
        let checkpoint = Checkpoint::new("e", "n", Value::Null).with_version(1);
        let out = rebuild(
            vec![Stored::new(checkpoint, Body::Json(json!({"a": -0.0}))).wanted()],
            1 << 20,
            None,
        )
        .unwrap();
        assert!(checkpoint_core::equal::same_state(
            &out[0].checkpoint.state,
            &json!({"a": -0.0})
        ));
        assert!(out[0].fingerprint.is_none());
    }

    #[test]
    fn a_missing_base_is_an_error() {
        let (_, mut rows) = history();
        rows.remove(1);
        let err = rebuild(wanting(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert!(!err.is_retryable());
        assert!(matches!(
            std::error::Error::source(&err).and_then(|s| s.downcast_ref::<FormatError>()),
            Some(FormatError::Damaged { .. })
        ));
    }

    #[test]
    fn a_base_with_another_state_is_an_error() {
        let (_, mut rows) = history();
        rows[1].state_hash = Some(12345);
        let err = rebuild(wanting(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("another state"), "{err}");
    }

    #[test]
    fn a_rebuilt_state_that_differs_from_the_saved_one_is_an_error() {
        let (_, mut rows) = history();
        // The last row's recorded hash no longer matches what its chain gives.
        rows[3].state_hash = Some(99);
        let err = rebuild(wanting(rows, &[4]), 1 << 20, None).unwrap_err();
        assert!(err.to_string().contains("differs"), "{err}");
    }

    #[test]
    fn a_base_of_a_higher_version_is_refused() {
        let (_, mut rows) = history();
        rows[1].base = Some((3, rows[1].base.unwrap().1));
        assert!(rebuild(wanting(rows, &[2]), 1 << 20, None).is_err());
    }

    #[test]
    fn a_payload_past_the_limit_is_refused() {
        let (_, rows) = history();
        let err = rebuild(wanting(rows, &[4]), 4, None).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }

    #[test]
    fn an_intact_history_has_no_damage() {
        let (_, rows) = history();
        assert!(damaged(rows).is_empty());
    }

    #[test]
    fn a_changed_hash_damages_that_row_and_the_deltas_on_it() {
        let (_, mut rows) = history();
        rows[2].state_hash = Some(99);
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
        rows[1].body = Body::Payload(vec![1, 2, 0xff, 0xfe]);
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

    fn keys(id: &str, byte: u8) -> Encryption {
        Encryption::new(EncryptionKey::new(id, &[byte; 32]).unwrap())
    }

    /// The history of `history()`, sealed under `with`: each row records the tag of its sealed
    /// payload, each delta the tag of its base.
    fn sealed_history(with: &Encryption) -> (Vec<Value>, Vec<Stored>) {
        let (states, rows) = history();
        let mut tags: Vec<i64> = Vec::new();
        let mut sealed = Vec::new();
        for (i, stored) in rows.into_iter().enumerate() {
            let Body::Payload(plain) = stored.body else {
                unreachable!("history() stores payloads")
            };
            let payload = with.seal(state_hash(&states[i]), &plain).unwrap();
            let tag = payload_tag(&payload);
            let base = (i > 0).then(|| (i64::try_from(i).unwrap(), tags[i - 1]));
            sealed.push(row(i64::try_from(i).unwrap() + 1, payload, base, tag));
            tags.push(tag);
        }
        (states, sealed)
    }

    #[test]
    fn a_sealed_chain_rebuilds_with_its_key_and_keeps_tags_as_identities() {
        let k1 = keys("k1", 1);
        let (states, rows) = sealed_history(&k1);
        let tag_of_4 = rows[3].state_hash.unwrap();
        let out = rebuild(wanting(rows, &[4, 2]), 1 << 20, Some(&k1)).unwrap();
        assert_eq!(out[0].checkpoint.state, states[1]);
        assert_eq!(out[1].checkpoint.state, states[3]);
        // The base hash a later delta names is the row's tag, not the content hash.
        assert_eq!(out[1].fingerprint.unwrap().hash, tag_of_4);
        assert_ne!(tag_of_4, state_hash(&states[3]));
    }

    #[test]
    fn a_sealed_chain_without_its_key_is_a_typed_error_naming_the_key() {
        let (_, rows) = sealed_history(&keys("k1", 1));
        let none = rebuild(wanting(rows.clone(), &[4]), 1 << 20, None).unwrap_err();
        assert!(
            matches!(EncryptionError::of(&none), Some(EncryptionError::NotConfigured { key_id }) if key_id == "k1"),
            "{none}"
        );
        assert!(!none.is_retryable());
        let other =
            rebuild(wanting(rows.clone(), &[4]), 1 << 20, Some(&keys("k2", 2))).unwrap_err();
        assert!(
            matches!(EncryptionError::of(&other), Some(EncryptionError::UnknownKey { key_id }) if key_id == "k1"),
            "{other}"
        );
        let wrong = rebuild(wanting(rows, &[4]), 1 << 20, Some(&keys("k1", 9))).unwrap_err();
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
        let plain = encode(&serde_json::to_vec(&states[3]).unwrap(), Compression::None).unwrap();
        let payload = k1.seal(state_hash(&states[2]), &plain).unwrap();
        let tag = payload_tag(&payload);
        rows[3] = row(4, payload, None, tag);
        let err = rebuild(wanting(rows, &[4]), 1 << 20, Some(&k1)).unwrap_err();
        assert!(
            err.to_string().contains("differs from the one saved"),
            "{err}"
        );
    }
}
