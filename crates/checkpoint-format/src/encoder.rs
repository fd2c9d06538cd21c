//! What a save stores for its state: a full snapshot, or a delta against the state this store
//! instance last saved or loaded for the execution ([`crate::cache`]), compressed and, when
//! keys are set, sealed. Every backend that stores deltas encodes with this one [`Encoder`], so
//! the choice between a snapshot and a delta is made by one rule everywhere.
//!
//! The backend keeps the rest of the contract: it stores a delta only if, in the transaction
//! that writes it, the base row still holds the state the delta names (its version and hash),
//! and stores [`Encoder::snapshot`] otherwise.
//!
//! ```
//! use std::sync::Arc;
//! use checkpoint_core::Checkpoint;
//! use checkpoint_format::cache::StateCache;
//! use checkpoint_format::codec::Compression;
//! use checkpoint_format::encoder::Encoder;
//! use serde_json::json;
//!
//! let encoder = Encoder::new(64, Compression::default(), Arc::new(StateCache::new(1 << 20)));
//! let mut state = json!({"messages": vec!["a long enough message"; 50]});
//! let first = Checkpoint::new("run-1", "chat", state.clone());
//! let stored = encoder.encode(&first, false)?;
//! assert!(stored.base.is_none(), "nothing to build on yet: a snapshot");
//! encoder.remember(&first, 1, &stored);
//!
//! state["messages"].as_array_mut().unwrap().push(json!("one more"));
//! let next = encoder.encode(&Checkpoint::new("run-1", "chat", state), false)?;
//! assert_eq!(next.base.map(|b| b.version), Some(1));
//! # Ok::<(), checkpoint_core::Error>(())
//! ```

use std::sync::Arc;

use checkpoint_core::{Checkpoint, Error, Result};
use serde_json::Value;

use crate::cache::{CachedState, StateCache};
use crate::chain::Rebuilt;
use crate::codec::{self, Compression};
use crate::delta;
use crate::hash::{self, Fingerprint};
use crate::sealing::Encryption;

/// The longest chain of deltas a store may be set to build (`snapshot_every`): reads fetch a
/// whole chain at once.
pub const MAX_SNAPSHOT_EVERY: u32 = 1_000;

/// Checks a `snapshot_every` setting: 1 (every state a snapshot) to [`MAX_SNAPSHOT_EVERY`].
///
/// # Errors
/// [`Error::InvalidInput`] naming `snapshot_every`.
pub fn check_snapshot_every(snapshot_every: u32) -> Result<u32> {
    if (1..=MAX_SNAPSHOT_EVERY).contains(&snapshot_every) {
        Ok(snapshot_every)
    } else {
        Err(Error::invalid(
            "snapshot_every",
            format!("must be between 1 and {MAX_SNAPSHOT_EVERY}, got {snapshot_every}"),
        ))
    }
}

/// The base a delta was computed against: the row of `version` of the same execution, which
/// recorded `hash` for its state and lies `depth` deltas above its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Base {
    /// The base row's version.
    pub version: i64,
    /// What the base row records as its state hash.
    pub hash: i64,
    /// The base row's depth.
    pub depth: i32,
}

/// What one save writes for its state.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The stored form: the codec's header and compressed JSON (a state, or a delta when
    /// `base` is set), sealed when the encoder has keys.
    pub payload: Vec<u8>,
    /// The base of a delta; `None` for a snapshot.
    pub base: Option<Base>,
    /// What the row records as its state hash (the content hash, or a sealed payload's opaque
    /// tag) and the state's size.
    pub fingerprint: Fingerprint,
    /// For a delta, the state its proof rebuilt on the base (the saved state, to the hash): the
    /// next base, with no further copy of the state.
    pub state: Option<Arc<Value>>,
}

impl Encoded {
    /// The depth the row will have: 0 for a snapshot, one more than its base for a delta.
    pub fn depth(&self) -> i32 {
        self.base.map_or(0, |b| b.depth.saturating_add(1))
    }
}

/// How one store encodes the states it saves. Cloning shares the cache.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The longest chain of rows a read rebuilds from: a snapshot at least every this many
    /// versions (1: every state a snapshot).
    pub snapshot_every: u32,
    /// How payloads are compressed.
    pub compression: Compression,
    /// The bases of the next deltas.
    pub cache: Arc<StateCache>,
    /// States smaller than this are stored as snapshots: a delta would save a few hundred
    /// bytes at the price of a longer read.
    pub min_delta_bytes: usize,
    /// The keys payloads are sealed and opened with; `None` stores them plain.
    pub encryption: Option<Encryption>,
    /// JSON texts (states or deltas) shorter than this are stored uncompressed: a frame's
    /// header and the call would cost more than they save.
    pub plain_below: usize,
    /// JSON texts shorter than this (and not stored plain) are compressed with LZ4 in place of
    /// `compression`: on a few kilobytes a Zstandard frame spends most of its time building
    /// its tables, so LZ4 reads and writes them several times faster for a few more bytes
    /// (see `docs/sqlite.md`, "State storage"). 0 leaves every text to `compression`.
    pub lz4_below: usize,
}

impl Encoder {
    /// Deltas with a snapshot at least every `snapshot_every` versions, compressed with
    /// `compression`, bases kept in `cache`; no size threshold and no sealing.
    pub fn new(snapshot_every: u32, compression: Compression, cache: Arc<StateCache>) -> Self {
        Encoder {
            snapshot_every,
            compression,
            cache,
            min_delta_bytes: 0,
            encryption: None,
            plain_below: 0,
            lz4_below: 0,
        }
    }

    /// The codec for a JSON text of `len` bytes: none below [`plain_below`](Self::plain_below),
    /// LZ4 below [`lz4_below`](Self::lz4_below), [`compression`](Self::compression) from there.
    fn compression_for(&self, len: usize) -> Compression {
        if len < self.plain_below {
            Compression::None
        } else if len < self.lz4_below {
            Compression::Lz4
        } else {
            self.compression
        }
    }

    /// Whether this encoder builds deltas, and so keeps bases: a snapshot distance above 1.
    pub fn builds_deltas(&self) -> bool {
        self.snapshot_every > 1
    }

    /// The stored form of `checkpoint`'s state: a delta when the cache holds a usable base and
    /// the delta is small and proven, a full snapshot otherwise (always a snapshot when `full`
    /// is set).
    ///
    /// # Errors
    /// A state that does not serialize, compress or seal.
    pub fn encode(&self, checkpoint: &Checkpoint, full: bool) -> Result<Encoded> {
        let fingerprint = hash::fingerprint(&checkpoint.state);
        let usable = |base: &CachedState| {
            i64::from(base.depth) + 1 < i64::from(self.snapshot_every)
                && (checkpoint.version == 0 || base.version < checkpoint.version)
        };
        if !full && fingerprint.size >= self.min_delta_bytes {
            // Taken out of the cache, so that the proof rebuilds the next state on it in place
            // (no copy of a large state) and that state becomes the next base.
            if let Some(base) = self.cache.take_if(&checkpoint.execution_id, usable) {
                let ops = delta::diff(&base.state, &checkpoint.state);
                let text = serde_json::to_vec(&ops)?;
                // A delta that is not clearly smaller than the state buys nothing and makes
                // every later read longer.
                if text.len() > 64 && text.len() > fingerprint.size / 2 {
                    self.cache.restore(&checkpoint.execution_id, base);
                } else {
                    let link = Base {
                        version: base.version,
                        hash: base.hash,
                        depth: base.depth,
                    };
                    let state = Arc::try_unwrap(base.state).unwrap_or_else(|s| (*s).clone());
                    if let Some(rebuilt) = proves(state, &text, &checkpoint.state, &checkpoint.id) {
                        let (payload, fingerprint) = self.payload(&text, fingerprint)?;
                        return Ok(Encoded {
                            payload,
                            base: Some(link),
                            fingerprint,
                            state: Some(Arc::new(rebuilt)),
                        });
                    }
                }
            }
        }
        let text = serde_json::to_vec(&checkpoint.state)?;
        let (payload, fingerprint) = self.payload(&text, fingerprint)?;
        Ok(Encoded {
            payload,
            base: None,
            fingerprint,
            state: None,
        })
    }

    /// The stored form of `text` (a state or a delta) for a state with `fingerprint`, and what
    /// the row records as its state hash: the content hash, or for a sealed payload an opaque
    /// tag (the content hash travels inside the seal).
    fn payload(&self, text: &[u8], fingerprint: Fingerprint) -> Result<(Vec<u8>, Fingerprint)> {
        let plain = codec::encode(text, self.compression_for(text.len()))?;
        match &self.encryption {
            None => Ok((plain, fingerprint)),
            Some(keys) => {
                let sealed = keys.seal(fingerprint.hash, &plain)?;
                let tag = crate::chain::payload_tag(&sealed);
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

    /// The snapshot form of a state that is already known (rewriting a row whose base goes;
    /// the row keeps its recorded state hash, so the rows built on it stay valid).
    ///
    /// # Errors
    /// A state that does not serialize, compress or seal.
    pub fn snapshot(&self, state: &Value) -> Result<Vec<u8>> {
        let text = serde_json::to_vec(state)?;
        let plain = codec::encode(&text, self.compression_for(text.len()))?;
        match &self.encryption {
            None => Ok(plain),
            Some(keys) => Ok(keys.seal(hash::state_hash(state), &plain)?),
        }
    }

    /// The snapshot of a state as a save stores it, with what its row records: used in place
    /// of a delta whose base changed before the delta could be written.
    ///
    /// # Errors
    /// A state that does not serialize, compress or seal.
    pub fn encode_snapshot(&self, state: &Value) -> Result<Encoded> {
        let text = serde_json::to_vec(state)?;
        let (payload, fingerprint) = self.payload(&text, hash::fingerprint(state))?;
        Ok(Encoded {
            payload,
            base: None,
            fingerprint,
            state: None,
        })
    }

    /// Remembers what was just stored at `version`, as the base of the next delta (nothing
    /// when the encoder builds no deltas).
    pub fn remember(&self, checkpoint: &Checkpoint, version: i64, encoded: &Encoded) {
        self.remember_stored(
            &checkpoint.execution_id,
            version,
            encoded.fingerprint,
            encoded.depth(),
            || Arc::new(checkpoint.state.clone()),
        );
    }

    /// Remembers the state of the row just stored at `version` of `execution_id`, which
    /// records `fingerprint` and lies `depth` deltas above its snapshot: the one place a
    /// written row becomes a base. `state` is called only when the encoder builds deltas, so a
    /// caller that holds the state shared passes it without a copy.
    pub fn remember_stored(
        &self,
        execution_id: &str,
        version: i64,
        fingerprint: Fingerprint,
        depth: i32,
        state: impl FnOnce() -> Arc<Value>,
    ) {
        if self.builds_deltas() {
            self.cache.put(
                execution_id,
                CachedState {
                    version,
                    hash: fingerprint.hash,
                    depth,
                    state: state(),
                    size: fingerprint.size,
                },
            );
        }
    }

    /// Remembers a state read back from a row that can be a base, unless a newer one (or this
    /// one) is held already.
    pub fn remember_read(&self, read: &Rebuilt) {
        let Some(fingerprint) = read.fingerprint.filter(|_| self.builds_deltas()) else {
            return;
        };
        // Appends follow the highest version, so the newest state known is the best base: a
        // read of an older one, or of the one already held, changes nothing (and costs no copy
        // of the state).
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

/// The state the stored delta `text` rebuilds on `base`, if it is `target` exactly (by
/// [`checkpoint_core::equal::same_state`]: numbers by kind and bits, so `-0.0` is not `0.0`):
/// what every reader will do, done before the delta is written, so that no save is
/// acknowledged that cannot be read back. When it is not (a defect in the diff), the save
/// stores a snapshot instead and says so in the log. Comparing the states is exact, and
/// cheaper than hashing the rebuilt one.
fn proves(mut base: Value, text: &[u8], target: &Value, id: &str) -> Option<Value> {
    let applied = serde_json::from_slice::<Vec<delta::Op>>(text)
        .map_err(|e| e.to_string())
        .and_then(|ops| delta::apply(&mut base, ops).map_err(|e| e.to_string()));
    let error = match applied {
        Ok(()) if checkpoint_core::equal::same_state(&base, target) => return Some(base),
        Ok(()) => "the rebuilt state differs from the saved one".to_owned(),
        Err(e) => e,
    };
    tracing::warn!(
        checkpoint = id,
        error,
        "a delta did not rebuild its state; storing a snapshot instead"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encoder(every: u32) -> Encoder {
        Encoder::new(
            every,
            Compression::default(),
            Arc::new(StateCache::new(1 << 20)),
        )
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
                        words[usize::try_from(seed >> 33).unwrap() % words.len()]
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
        assert!(stored.base.is_none());
        enc.remember(&first, 1, &stored);

        let second = Checkpoint::new("e", "n", conversation(4));
        let delta = enc.encode(&second, false).unwrap();
        assert_eq!(
            delta.base,
            Some(Base {
                version: 1,
                hash: hash::state_hash(&first.state),
                depth: 0
            })
        );
        assert_eq!(delta.depth(), 1);
        assert!(delta.payload.len() < stored.payload.len());
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
        let whole = encoder(1);
        let cp = Checkpoint::new("e", "n", conversation(4));
        whole.remember(&cp, 1, &whole.encode(&cp, false).unwrap());
        let next = Checkpoint::new("e", "n", conversation(5));
        assert!(whole.encode(&next, false).unwrap().base.is_none());
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
            Rebuilt {
                fingerprint: Some(hash::fingerprint(&checkpoint.state)),
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
    fn a_state_differing_only_by_the_sign_of_zero_is_a_proven_delta() {
        let enc = encoder(64);
        let pad = "p".repeat(3_000);
        let first = Checkpoint::new("e", "n", json!({"pad": pad, "t": 0.0, "i": 0}));
        let stored = enc.encode(&first, false).unwrap();
        enc.remember(&first, 1, &stored);
        let second = Checkpoint::new("e", "n", json!({"pad": pad, "t": -0.0, "i": 1}));
        let delta = enc.encode(&second, false).unwrap();
        assert!(delta.base.is_some(), "a small delta, proven");
        assert_eq!(delta.fingerprint.hash, hash::state_hash(&second.state));
        // What a reader does with it gives the state back, sign included.
        let text = codec::decode(&delta.payload, 1 << 20).unwrap();
        let mut rebuilt = first.state.clone();
        delta::apply(&mut rebuilt, serde_json::from_slice(&text).unwrap()).unwrap();
        assert!(checkpoint_core::equal::same_state(&rebuilt, &second.state));
    }

    #[test]
    fn a_delta_that_does_not_rebuild_its_state_is_not_proven() {
        let base = json!({"t": 0.0, "i": 0});
        let target = json!({"t": -0.0, "i": 1});
        // The delta an equality blind to the sign of zero would make: `i` alone.
        let blind = serde_json::to_vec(&vec![delta::Op::Set {
            path: vec![delta::Step::Key("i".into())],
            value: json!(1),
        }])
        .unwrap();
        assert!(proves(base.clone(), &blind, &target, "c").is_none());
        let right = serde_json::to_vec(&delta::diff(&base, &target)).unwrap();
        let rebuilt = proves(base.clone(), &right, &target, "c").unwrap();
        assert!(checkpoint_core::equal::same_state(&rebuilt, &target));
        for broken in [&b"not json"[..], b"[{\"remove\":{\"path\":[\"gone\"]}}]"] {
            assert!(proves(base.clone(), broken, &target, "c").is_none());
        }
    }

    #[test]
    fn short_texts_are_stored_plain_and_long_ones_compressed() {
        let enc = Encoder {
            plain_below: 256,
            ..encoder(10)
        };
        let small = Checkpoint::new("e", "n", json!({"n": 1}));
        let stored = enc.encode(&small, false).unwrap();
        assert_eq!(&stored.payload[..2], &[1, 0], "format 1, codec none");
        assert_eq!(&enc.snapshot(&small.state).unwrap()[..2], &[1, 0]);
        let large = Checkpoint::new("e", "n", conversation(3));
        assert_eq!(&enc.encode(&large, false).unwrap().payload[..2], &[1, 2]);
        let whole = encoder(1);
        whole.remember(&large, 1, &whole.encode(&large, false).unwrap());
        assert!(whole.cache.get("e").is_none(), "no deltas, no bases kept");
    }

    proptest::proptest! {
        /// Each text goes to the codec its length picks, and every payload decodes back to it.
        #[test]
        fn each_text_is_stored_with_the_codec_its_length_picks(
            words in proptest::collection::vec("[a-z]{1,12}", 0..600),
            plain_below in 0usize..512,
            lz4_below in 0usize..4096,
        ) {
            let enc = Encoder {
                plain_below,
                lz4_below,
                ..encoder(1)
            };
            let state = json!({ "words": words });
            let text = serde_json::to_vec(&state).unwrap();
            let expected = if text.len() < plain_below {
                0
            } else if text.len() < lz4_below {
                1
            } else {
                2
            };
            let stored = enc.encode(&Checkpoint::new("e", "n", state.clone()), false).unwrap();
            let snapshot = enc.snapshot(&state).unwrap();
            for payload in [&stored.payload, &snapshot] {
                proptest::prop_assert_eq!(&payload[..2], &[1, expected]);
                proptest::prop_assert_eq!(&codec::decode(payload, 1 << 20).unwrap(), &text);
            }
        }
    }

    #[test]
    fn a_snapshot_in_place_of_a_delta_records_what_a_save_would() {
        let enc = encoder(10);
        let cp = Checkpoint::new("e", "n", conversation(3));
        let saved = enc.encode(&cp, true).unwrap();
        let instead = enc.encode_snapshot(&cp.state).unwrap();
        assert_eq!(instead.payload, saved.payload);
        assert_eq!(instead.fingerprint.hash, saved.fingerprint.hash);
        assert!(instead.base.is_none());
    }

    #[test]
    fn a_proven_delta_hands_over_the_rebuilt_state_and_a_large_one_leaves_the_base() {
        let enc = encoder(10);
        let first = Checkpoint::new("e", "n", conversation(4));
        let stored = enc.encode(&first, false).unwrap();
        assert!(stored.state.is_none(), "a snapshot rebuilds nothing");
        enc.remember(&first, 1, &stored);
        let second = Checkpoint::new("e", "n", conversation(5));
        let delta = enc.encode(&second, false).unwrap();
        assert!(delta.base.is_some());
        assert!(checkpoint_core::equal::same_state(
            delta.state.as_deref().unwrap(),
            &second.state
        ));
        assert!(
            enc.cache.get("e").is_none(),
            "the base was used up by the proof"
        );
        enc.remember(&second, 2, &delta);
        let unrelated = Checkpoint::new("e", "n", json!({"other": conversation(5)}));
        assert!(enc.encode(&unrelated, false).unwrap().base.is_none());
        assert_eq!(
            enc.cache.get("e").map(|b| b.version),
            Some(2),
            "an unused base stays"
        );
    }

    #[test]
    fn snapshot_every_is_bounded() {
        for bad in [0, MAX_SNAPSHOT_EVERY + 1] {
            assert!(check_snapshot_every(bad)
                .unwrap_err()
                .is_invalid_field("snapshot_every"));
        }
        assert_eq!(check_snapshot_every(1).unwrap(), 1);
        assert_eq!(
            check_snapshot_every(MAX_SNAPSHOT_EVERY).unwrap(),
            MAX_SNAPSHOT_EVERY
        );
    }

    #[test]
    fn a_sealed_payload_records_a_tag_and_opens_to_the_state() {
        let key = crate::sealing::EncryptionKey::new("k1", &[7; 32]).unwrap();
        let enc = Encoder {
            encryption: Some(Encryption::new(key)),
            ..encoder(10)
        };
        let cp = Checkpoint::new("e", "n", conversation(2));
        let stored = enc.encode(&cp, false).unwrap();
        assert_ne!(stored.fingerprint.hash, hash::state_hash(&cp.state));
        assert_eq!(
            stored.fingerprint.hash,
            crate::chain::payload_tag(&stored.payload)
        );
        let opened =
            crate::chain::open_payload(&stored.payload, 1 << 20, enc.encryption.as_ref()).unwrap();
        assert_eq!(opened.content_hash, Some(hash::state_hash(&cp.state)));
        let snapshot = enc.snapshot(&cp.state).unwrap();
        let opened =
            crate::chain::open_payload(&snapshot, 1 << 20, enc.encryption.as_ref()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&opened.text).unwrap(),
            cp.state
        );
    }
}
