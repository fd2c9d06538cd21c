//! How a save stores its state: the [`StateEncoding`] option, and the encoder that picks a full
//! snapshot or a delta against the state this instance last saved or loaded.

use std::sync::Arc;

use checkpoint_core::{Checkpoint, Error, Result};
use checkpoint_format::delta;
use checkpoint_format::hash::Fingerprint;
use checkpoint_format::sealing::Encryption;
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::error::DbError;
use crate::state::cache::{CachedState, StateCache};
use crate::state::payload::{self, Compression};

/// How [`PostgresStore`](crate::PostgresStore) stores the states it writes.
///
/// Every store reads every encoding, so instances with different settings can share a table
/// and the setting can change at any time; it only decides how new checkpoints are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateEncoding {
    /// The whole state in the `state` JSONB column, as releases before schema 3 stored it:
    /// readable with plain SQL, normalised by the server (see `docs/postgres.md`), compressed
    /// only by TOAST above ~2 KB. Every save sends and stores the whole state.
    Jsonb,
    /// The state in the `payload` column, compressed on the client: a delta against an earlier
    /// checkpoint of the execution when this store knows one, with a full snapshot at least
    /// every `snapshot_every` versions of a chain (1: every checkpoint a snapshot). Any
    /// checkpoint is rebuilt from at most `snapshot_every` rows fetched in one round trip.
    Delta {
        /// The longest chain of rows a read rebuilds from, 1 to
        /// [`StateEncoding::MAX_SNAPSHOT_EVERY`].
        snapshot_every: u32,
    },
}

impl Default for StateEncoding {
    /// Deltas with a snapshot at least every [`StateEncoding::DEFAULT_SNAPSHOT_EVERY`]
    /// versions: see `docs/postgres.md`, "State storage", for the measurements behind it.
    fn default() -> Self {
        StateEncoding::Delta {
            snapshot_every: Self::DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

impl StateEncoding {
    /// The default distance between full snapshots.
    pub const DEFAULT_SNAPSHOT_EVERY: u32 = 64;
    /// The longest chain allowed: reads fetch the whole chain in one statement.
    pub const MAX_SNAPSHOT_EVERY: u32 = 1_000;

    /// Delta storage with a full snapshot at least every `snapshot_every` versions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `snapshot_every` outside 1 to
    /// [`Self::MAX_SNAPSHOT_EVERY`].
    pub fn delta(snapshot_every: u32) -> Result<Self> {
        if !(1..=Self::MAX_SNAPSHOT_EVERY).contains(&snapshot_every) {
            return Err(Error::invalid(
                "snapshot_every",
                format!(
                    "must be between 1 and {}, got {snapshot_every}",
                    Self::MAX_SNAPSHOT_EVERY
                ),
            ));
        }
        Ok(StateEncoding::Delta { snapshot_every })
    }

    /// The snapshot distance of delta storage; `None` for [`StateEncoding::Jsonb`].
    pub fn snapshot_every(&self) -> Option<u32> {
        match self {
            StateEncoding::Jsonb => None,
            StateEncoding::Delta { snapshot_every } => Some(*snapshot_every),
        }
    }
}

/// The base a delta was computed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    pub version: i64,
    pub hash: i64,
    pub depth: i32,
}

/// What one save writes for its state.
pub(crate) struct Encoded<'a> {
    /// The whole state, for the JSONB column.
    pub state: Option<Json<&'a Value>>,
    /// The stored form of a snapshot or delta, for the payload column.
    pub payload: Option<Vec<u8>>,
    pub base: Option<Base>,
    pub fingerprint: Option<Fingerprint>,
}

/// How a state was stored, for the metrics: `jsonb`, `snapshot` or `delta`, its stored
/// size, and a delta's depth.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Written {
    pub storage: &'static str,
    pub bytes: usize,
    pub depth: Option<u32>,
}

impl Encoded<'_> {
    /// The depth the row will have: 0 for a snapshot, one more than its base for a delta.
    pub(crate) fn depth(&self) -> i32 {
        self.base.map_or(0, |b| b.depth.saturating_add(1))
    }

    /// What the metrics count of this state once it is stored.
    pub(crate) fn written(&self) -> Written {
        let (storage, bytes) = match (&self.state, &self.payload) {
            (Some(Json(state)), _) => ("jsonb", json_len(state)),
            (None, Some(payload)) if self.base.is_some() => ("delta", payload.len()),
            (None, payload) => ("snapshot", payload.as_ref().map_or(0, Vec::len)),
        };
        Written {
            storage,
            bytes,
            depth: self.base.map(|_| u32::try_from(self.depth()).unwrap_or(0)),
        }
    }
}

/// Whether the stored delta `text` rebuilds, on `base`, the state whose content hash is `hash`:
/// what every reader will do, done before the delta is written, so that no save is acknowledged
/// that cannot be read back. When it does not (a defect in the diff), the save stores a
/// snapshot instead and says so in the log.
fn proves(base: &Value, text: &[u8], hash: i64, id: &str) -> bool {
    let rebuilt = serde_json::from_slice::<Vec<delta::Op>>(text)
        .map_err(|e| e.to_string())
        .and_then(|ops| {
            let mut state = base.clone();
            delta::apply(&mut state, ops).map_err(|e| e.to_string())?;
            Ok(state)
        });
    let proven = rebuilt
        .as_ref()
        .is_ok_and(|state| checkpoint_format::hash::state_hash(state) == hash);
    if !proven {
        tracing::warn!(
            checkpoint = id,
            error = rebuilt.err().unwrap_or_default(),
            "a delta did not rebuild its state; storing a snapshot instead"
        );
    }
    proven
}

/// The length of `value` as compact JSON text, counted without keeping the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The encoding settings of one store.
#[derive(Clone)]
pub(crate) struct Encoder {
    pub encoding: StateEncoding,
    pub compression: Compression,
    pub cache: Arc<StateCache>,
    /// States smaller than this are stored as snapshots: a delta would save a few hundred
    /// bytes at the price of a lock on its base row.
    pub min_delta_bytes: usize,
    /// The keys payloads are sealed and opened with; `None` stores them plain.
    pub encryption: Option<Encryption>,
}

impl Encoder {
    /// Refuses a state this encoding cannot give back exactly: under
    /// [`StateEncoding::Jsonb`], the numbers the JSONB column would change (`-0.0`, whole
    /// floats from 1e16), as `InvalidInput` on `state`. Payloads keep every number.
    pub(crate) fn admit(&self, checkpoint: &Checkpoint) -> Result<()> {
        if self.encoding == StateEncoding::Jsonb {
            checkpoint_core::validate::check_jsonb_numbers("state", &checkpoint.state)?;
        }
        Ok(())
    }

    /// The row content for `checkpoint`: a delta when the cache holds a usable base and the
    /// delta is small, a full snapshot otherwise (always a snapshot when `full` is set).
    pub(crate) fn encode<'a>(&self, checkpoint: &'a Checkpoint, full: bool) -> Result<Encoded<'a>> {
        self.admit(checkpoint)?;
        let StateEncoding::Delta { snapshot_every } = self.encoding else {
            return Ok(Encoded {
                state: Some(Json(&checkpoint.state)),
                payload: None,
                base: None,
                fingerprint: None,
            });
        };
        let fingerprint = checkpoint_format::hash::fingerprint(&checkpoint.state);
        let usable = |base: &CachedState| {
            i64::from(base.depth) + 1 < i64::from(snapshot_every)
                && (checkpoint.version == 0 || base.version < checkpoint.version)
        };
        if !full && fingerprint.size >= self.min_delta_bytes {
            if let Some(base) = self
                .cache
                .get(&checkpoint.execution_id)
                .filter(|b| usable(b))
            {
                let ops = delta::diff(&base.state, &checkpoint.state);
                let text = serde_json::to_vec(&ops)?;
                // A delta that is not clearly smaller than the state buys nothing and makes
                // every later read longer.
                if (text.len() <= 64 || text.len() <= fingerprint.size / 2)
                    && proves(&base.state, &text, fingerprint.hash, &checkpoint.id)
                {
                    let (payload, fingerprint) = self.payload(&text, fingerprint)?;
                    return Ok(Encoded {
                        state: None,
                        payload: Some(payload),
                        base: Some(Base {
                            version: base.version,
                            hash: base.hash,
                            depth: base.depth,
                        }),
                        fingerprint: Some(fingerprint),
                    });
                }
            }
        }
        let text = serde_json::to_vec(&checkpoint.state)?;
        let (payload, fingerprint) = self.payload(&text, fingerprint)?;
        Ok(Encoded {
            state: None,
            payload: Some(payload),
            base: None,
            fingerprint: Some(fingerprint),
        })
    }

    /// The stored form of `text` (a state or a delta) for a state with `fingerprint`, and what
    /// the row records as its state hash: the content hash, or for a sealed payload an opaque
    /// tag (the content hash travels inside the seal).
    fn payload(&self, text: &[u8], fingerprint: Fingerprint) -> Result<(Vec<u8>, Fingerprint)> {
        let plain = payload::encode(text, self.compression)?;
        match &self.encryption {
            None => Ok((plain, fingerprint)),
            Some(keys) => {
                let sealed = keys.seal(fingerprint.hash, &plain)?;
                let tag = checkpoint_format::chain::payload_tag(&sealed);
                Ok((
                    sealed,
                    Fingerprint {
                        hash: tag,
                        ..fingerprint
                    },
                ))
            }
        }
    }

    /// The snapshot form of a state that is already known (rewriting a row whose base goes; the
    /// row keeps its recorded state hash).
    pub(crate) fn snapshot(&self, state: &Value) -> Result<Vec<u8>> {
        let text = serde_json::to_vec(state)
            .map_err(|e| DbError::decode(format!("a state does not serialize: {e}")))?;
        let plain = payload::encode(&text, self.compression)?;
        match &self.encryption {
            None => Ok(plain),
            Some(keys) => Ok(keys.seal(checkpoint_format::hash::state_hash(state), &plain)?),
        }
    }

    /// Remembers what was just stored at `version`, as the base of the next delta.
    pub(crate) fn remember(&self, checkpoint: &Checkpoint, version: i64, encoded: &Encoded<'_>) {
        if let Some(fingerprint) = encoded.fingerprint {
            self.cache.put(
                &checkpoint.execution_id,
                CachedState {
                    version,
                    hash: fingerprint.hash,
                    depth: encoded.depth(),
                    state: Arc::new(checkpoint.state.clone()),
                    size: fingerprint.size,
                },
            );
        }
    }

    /// Remembers a state read back from a row that can be a base, unless a newer one (or this
    /// one) is held already.
    pub(crate) fn remember_read(&self, read: &crate::state::chain::Rebuilt) {
        if self.encoding == StateEncoding::Jsonb {
            return;
        }
        if let Some(fingerprint) = read.fingerprint {
            // Appends follow the highest version, so the newest state known is the best base:
            // a read of an older one, or of the one already held, changes nothing (and costs
            // no copy of the state).
            let held = self.cache.get(&read.checkpoint.execution_id);
            if held.is_some_and(|h| {
                h.version > read.checkpoint.version
                    || (h.version == read.checkpoint.version && h.hash == fingerprint.hash)
            }) {
                return;
            }
            self.cache.put(
                &read.checkpoint.execution_id,
                CachedState {
                    version: read.checkpoint.version,
                    hash: fingerprint.hash,
                    depth: read.depth,
                    state: Arc::new(read.checkpoint.state.clone()),
                    size: fingerprint.size,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoder(every: u32) -> Encoder {
        Encoder {
            encoding: StateEncoding::delta(every).unwrap(),
            compression: Compression::default(),
            cache: Arc::new(StateCache::new(1 << 20)),
            min_delta_bytes: 0,
            encryption: None,
        }
    }

    /// `messages` messages of ~500 bytes of pseudo-random words.
    fn conversation(messages: usize) -> Value {
        let words = [
            "alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "tau",
        ];
        let mut seed = 7u64;
        let text: Vec<String> = (0..messages)
            .map(|_| {
                (0..80)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        words[(seed >> 33) as usize % words.len()]
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        json!({ "messages": text })
    }

    #[test]
    fn the_first_save_is_a_snapshot_and_the_next_a_delta_against_it() {
        let enc = encoder(4);
        let first = Checkpoint::new("e", "n", conversation(3));
        let stored = enc.encode(&first, false).unwrap();
        assert!(stored.base.is_none() && stored.state.is_none());
        enc.remember(&first, 1, &stored);

        let second = Checkpoint::new("e", "n", conversation(4));
        let delta = enc.encode(&second, false).unwrap();
        assert_eq!(
            delta.base,
            Some(Base {
                version: 1,
                hash: checkpoint_format::hash::state_hash(&first.state),
                depth: 0
            })
        );
        assert_eq!(delta.depth(), 1);
        let payload = delta.payload.as_ref().unwrap();
        assert!(payload.len() < stored.payload.as_ref().unwrap().len());
        // Forced full: a snapshot whatever the cache holds.
        assert!(enc.encode(&second, true).unwrap().base.is_none());
    }

    #[test]
    fn chains_end_at_snapshot_every() {
        let enc = encoder(3);
        let mut depths = Vec::new();
        for v in 1..=7 {
            let cp = Checkpoint::new("e", "n", conversation(usize::try_from(v).unwrap() + 3));
            let stored = enc.encode(&cp, false).unwrap();
            depths.push(stored.depth());
            enc.remember(&cp, v, &stored);
        }
        assert_eq!(depths, vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn an_explicit_version_at_or_below_the_base_gets_a_snapshot() {
        let enc = encoder(10);
        let first = Checkpoint::new("e", "n", conversation(2));
        let stored = enc.encode(&first, false).unwrap();
        enc.remember(&first, 5, &stored);
        let lower = Checkpoint::new("e", "n", conversation(3)).with_version(5);
        assert!(enc.encode(&lower, false).unwrap().base.is_none());
        let higher = lower.clone().with_version(6);
        assert!(enc.encode(&higher, false).unwrap().base.is_some());
    }

    #[test]
    fn a_delta_as_large_as_the_state_is_not_worth_it() {
        let enc = encoder(10);
        let first = Checkpoint::new("e", "n", conversation(5));
        let stored = enc.encode(&first, false).unwrap();
        enc.remember(&first, 1, &stored);
        let unrelated = Checkpoint::new("e", "n", json!({"other": conversation(5)}));
        assert!(enc.encode(&unrelated, false).unwrap().base.is_none());
    }

    #[test]
    fn small_states_are_snapshots() {
        let enc = Encoder {
            min_delta_bytes: 2048,
            ..encoder(10)
        };
        let small = Checkpoint::new("e", "n", conversation(1));
        let stored = enc.encode(&small, false).unwrap();
        enc.remember(&small, 1, &stored);
        let still_small = Checkpoint::new("e", "n", conversation(2));
        assert!(enc.encode(&still_small, false).unwrap().base.is_none());
        let large = Checkpoint::new("e", "n", conversation(7));
        let stored = enc.encode(&large, false).unwrap();
        enc.remember(&large, 2, &stored);
        let larger = Checkpoint::new("e", "n", conversation(8));
        assert!(enc.encode(&larger, false).unwrap().base.is_some());
    }

    #[test]
    fn reads_keep_the_newest_state_as_the_base() {
        let enc = encoder(10);
        let read = |version: i64, messages: usize| {
            let mut checkpoint = Checkpoint::new("e", "n", conversation(messages));
            checkpoint.version = version;
            crate::state::chain::Rebuilt {
                fingerprint: Some(checkpoint_format::hash::fingerprint(&checkpoint.state)),
                checkpoint,
                depth: 0,
            }
        };
        enc.remember_read(&read(5, 5));
        assert_eq!(enc.cache.get("e").map(|e| e.version), Some(5));
        enc.remember_read(&read(3, 3)); // older: the base stays
        assert_eq!(enc.cache.get("e").map(|e| e.version), Some(5));
        enc.remember_read(&read(7, 7)); // newer: it becomes the base
        let held = enc.cache.get("e").unwrap();
        assert_eq!((held.version, &*held.state), (7, &conversation(7)));
    }

    #[test]
    fn jsonb_sends_the_state_itself() {
        let enc = Encoder {
            encoding: StateEncoding::Jsonb,
            ..encoder(2)
        };
        let cp = Checkpoint::new("e", "n", json!({"a": 1}));
        let stored = enc.encode(&cp, false).unwrap();
        assert!(stored.state.is_some() && stored.payload.is_none() && stored.fingerprint.is_none());
    }

    #[test]
    fn a_state_differing_only_by_the_sign_of_zero_is_a_proven_delta() {
        let enc = encoder(64);
        let pad = "p".repeat(3_000);
        let first = Checkpoint::new("e", "n", json!({"pad": pad, "t": 0.0, "i": 0}));
        let stored = enc.encode(&first, false).unwrap();
        enc.remember(&first, 1, &stored);
        let second = Checkpoint::new("e", "n", json!({"pad": pad, "t": -0.0, "i": 1}));
        let delta = enc.encode(&second, false).unwrap();
        assert!(delta.base.is_some(), "a small delta, proven");
        assert_eq!(
            delta.fingerprint.map(|f| f.hash),
            Some(checkpoint_format::hash::state_hash(&second.state))
        );
        // What a reader does with it gives the state back, sign included.
        let text = payload::decode(delta.payload.as_ref().unwrap(), 1 << 20).unwrap();
        let mut rebuilt = first.state.clone();
        delta::apply(&mut rebuilt, serde_json::from_slice(&text).unwrap()).unwrap();
        assert!(checkpoint_core::equal::same_state(&rebuilt, &second.state));
    }

    #[test]
    fn a_delta_that_does_not_rebuild_its_state_is_not_proven() {
        let base = json!({"t": 0.0, "i": 0});
        let target = json!({"t": -0.0, "i": 1});
        let hash = checkpoint_format::hash::state_hash(&target);
        // The delta an equality blind to the sign of zero would make: `i` alone.
        let blind = serde_json::to_vec(&vec![delta::Op::Set {
            path: vec![delta::Step::Key("i".into())],
            value: json!(1),
        }])
        .unwrap();
        assert!(!proves(&base, &blind, hash, "c"));
        let right = serde_json::to_vec(&delta::diff(&base, &target)).unwrap();
        assert!(proves(&base, &right, hash, "c"));
        for broken in [&b"not json"[..], b"[{\"remove\":{\"path\":[\"gone\"]}}]"] {
            assert!(!proves(&base, broken, hash, "c"));
        }
    }

    #[test]
    fn snapshot_every_is_bounded() {
        for bad in [0, StateEncoding::MAX_SNAPSHOT_EVERY + 1] {
            assert!(StateEncoding::delta(bad)
                .unwrap_err()
                .is_invalid_field("snapshot_every"));
        }
        assert_eq!(StateEncoding::delta(1).unwrap().snapshot_every(), Some(1));
        assert_eq!(StateEncoding::Jsonb.snapshot_every(), None);
    }
}
