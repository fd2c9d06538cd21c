//! How a save stores its state: the [`StateEncoding`] option, and the encoder that sends the
//! JSONB column or the payload of the shared encoder (`checkpoint_format::encoder`: a full
//! snapshot or a delta against the state this instance last saved or loaded).

use std::sync::Arc;

use checkpoint_core::{Checkpoint, Result};
use checkpoint_format::hash::Fingerprint;
use serde_json::Value;
use tokio_postgres::types::Json;

#[cfg(test)]
use crate::state::payload::Compression;

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
    pub const MAX_SNAPSHOT_EVERY: u32 = checkpoint_format::encoder::MAX_SNAPSHOT_EVERY;

    /// Delta storage with a full snapshot at least every `snapshot_every` versions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](checkpoint_core::Error::InvalidInput) naming `snapshot_every` outside 1 to
    /// [`Self::MAX_SNAPSHOT_EVERY`].
    pub fn delta(snapshot_every: u32) -> Result<Self> {
        let snapshot_every = checkpoint_format::encoder::check_snapshot_every(snapshot_every)?;
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
pub(crate) use checkpoint_format::encoder::Base;

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

/// The encoding settings of one store: the JSONB column, or the payloads of the shared
/// encoder (`checkpoint_format::encoder`, which SQLite uses too).
#[derive(Clone)]
pub(crate) struct Encoder {
    pub encoding: StateEncoding,
    pub format: checkpoint_format::encoder::Encoder,
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

    /// The row content for `checkpoint`: the JSONB column, or the shared encoder's payload (a
    /// delta when the cache holds a usable base and the delta is small, a full snapshot
    /// otherwise; always a snapshot when `full` is set).
    pub(crate) fn encode<'a>(&self, checkpoint: &'a Checkpoint, full: bool) -> Result<Encoded<'a>> {
        self.admit(checkpoint)?;
        if self.encoding == StateEncoding::Jsonb {
            return Ok(Encoded {
                state: Some(Json(&checkpoint.state)),
                payload: None,
                base: None,
                fingerprint: None,
            });
        }
        let encoded = self.format.encode(checkpoint, full)?;
        Ok(Encoded {
            state: None,
            payload: Some(encoded.payload),
            base: encoded.base,
            fingerprint: Some(encoded.fingerprint),
        })
    }

    /// The snapshot form of a state that is already known (rewriting a row whose base goes; the
    /// row keeps its recorded state hash).
    pub(crate) fn snapshot(&self, state: &Value) -> Result<Vec<u8>> {
        self.format.snapshot(state)
    }

    /// Remembers what was just stored at `version`, as the base of the next delta.
    pub(crate) fn remember(&self, checkpoint: &Checkpoint, version: i64, encoded: &Encoded<'_>) {
        if let Some(fingerprint) = encoded.fingerprint {
            self.format.remember_stored(
                &checkpoint.execution_id,
                version,
                fingerprint,
                encoded.depth(),
                || Arc::new(checkpoint.state.clone()),
            );
        }
    }

    /// Remembers a state read back from a row that can be a base, unless a newer one (or this
    /// one) is held already.
    pub(crate) fn remember_read(&self, read: &crate::state::chain::Rebuilt) {
        if self.encoding != StateEncoding::Jsonb {
            self.format.remember_read(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_format::cache::StateCache;
    use serde_json::json;

    fn encoder(encoding: StateEncoding) -> Encoder {
        Encoder {
            encoding,
            format: checkpoint_format::encoder::Encoder::new(
                encoding.snapshot_every().unwrap_or(1),
                Compression::default(),
                Arc::new(StateCache::new(1 << 20)),
            ),
        }
    }

    #[test]
    fn jsonb_sends_the_state_itself() {
        let enc = encoder(StateEncoding::Jsonb);
        let cp = Checkpoint::new("e", "n", json!({"a": 1}));
        let stored = enc.encode(&cp, false).unwrap();
        assert!(stored.state.is_some() && stored.payload.is_none() && stored.fingerprint.is_none());
        enc.remember(&cp, 1, &stored);
        assert!(
            enc.format.cache.get("e").is_none(),
            "no base from a JSONB row"
        );
        let Err(err) = enc.encode(&Checkpoint::new("e", "n", json!({"z": -0.0})), false) else {
            panic!("JSONB cannot keep -0.0");
        };
        assert!(err.is_invalid_field("state"), "{err}");
    }

    #[test]
    fn deltas_go_through_the_shared_encoder_and_are_remembered() {
        let enc = encoder(StateEncoding::delta(8).unwrap());
        let state = json!({"messages": vec!["a message long enough to diff"; 40]});
        let first = Checkpoint::new("e", "n", state.clone());
        let stored = enc.encode(&first, false).unwrap();
        assert!(stored.state.is_none() && stored.base.is_none());
        enc.remember(&first, 1, &stored);
        let mut grown = state;
        grown["messages"].as_array_mut().unwrap().push(json!("new"));
        let grown = Checkpoint::new("e", "n", grown);
        let next = enc.encode(&grown, false).unwrap();
        assert_eq!(next.base.map(|b| (b.version, b.depth)), Some((1, 0)));
        assert_eq!(next.written().storage, "delta");
        assert_eq!(next.depth(), 1);
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
