//! Re-encryption, for every backend that seals payloads: what one row's payload becomes under
//! the current write key ([`reseal`]), and the shape of a batch ([`ReencryptBatch`], its bounds
//! checked by [`check_batch`]). The backend reads a batch of rows by id, writes each new
//! payload with its new tag ([`crate::chain::payload_tag`]) as the row's recorded hash, and
//! gives the rows built on a rewritten row that tag as their `base_hash`, in one transaction,
//! so every chain stays valid.
//!
//! ```
//! use checkpoint_format::codec::{self, Compression};
//! use checkpoint_format::reseal::reseal;
//! use checkpoint_format::sealing::{Encryption, EncryptionKey};
//!
//! let old = EncryptionKey::new("k1", &[1; 32])?;
//! let new = EncryptionKey::new("k2", &[2; 32])?;
//! let state = serde_json::json!({"n": 1});
//! let hash = checkpoint_format::hash::state_hash(&state);
//! let plain = codec::encode(&serde_json::to_vec(&state)?, Compression::None)?;
//! let sealed = Encryption::new(old.clone()).seal(hash, &plain)?;
//!
//! let keys = Encryption::new(new).read_key(old)?;
//! let resealed = reseal(&keys, &sealed, None, false, 1 << 20)?.expect("under the old key");
//! assert!(keys.is_current(&resealed));
//! assert!(reseal(&keys, &resealed, None, false, 1 << 20)?.is_none(), "already current");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use checkpoint_core::{Error, Result};
use serde_json::Value;

use crate::codec::{self, Compression};
use crate::sealing::{Encryption, SEALED};
use crate::{hash, FormatError};

/// The most rows one batch may examine.
pub const MAX_REENCRYPT_BATCH: usize = 10_000;

/// What one batch of re-encryption did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReencryptBatch {
    /// Rows looked at.
    pub examined: u64,
    /// Rows sealed anew under the write key (the others already were).
    pub rewritten: u64,
    /// The last id looked at: pass it as `after` for the next batch. `None` when no row was
    /// left after the one given: the table is done.
    pub last_id: Option<String>,
}

impl ReencryptBatch {
    /// A batch that looked at `examined` rows, the last of them `last_id`, and rewrote none
    /// yet.
    pub fn examined(examined: u64, last_id: Option<String>) -> Self {
        ReencryptBatch {
            examined,
            rewritten: 0,
            last_id,
        }
    }
}

/// Checks a batch's arguments: `limit` rows (1 to [`MAX_REENCRYPT_BATCH`]) with ids after
/// `after` (a valid id, when given). Returns `after`, or `""` to start from the first id.
///
/// # Errors
/// [`Error::InvalidInput`] naming `limit` or `after`.
pub fn check_batch(after: Option<&str>, limit: usize) -> Result<&str> {
    if !(1..=MAX_REENCRYPT_BATCH).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_REENCRYPT_BATCH}, got {limit}"),
        ));
    }
    if let Some(after) = after {
        checkpoint_core::validate::check_id("after", after)?;
    }
    Ok(after.unwrap_or(""))
}

/// `payload` sealed under the write key of `keys`; `None` when it already is. A payload sealed
/// under another key is opened and sealed again (the compressed text inside is kept); a plain
/// one is sealed for the first time, with the content hash its row records (`recorded`), or,
/// for a snapshot that records none, the hash of its state. `limit` bounds how large a plain
/// snapshot may expand when its state must be read for its hash.
///
/// # Errors
/// A payload under a key `keys` does not hold, or that does not authenticate
/// ([`crate::sealing::EncryptionError`]); a plain delta that records no hash, or a snapshot that
/// does not decode ([`FormatError::Damaged`]).
pub fn reseal(
    keys: &Encryption,
    payload: &[u8],
    recorded: Option<i64>,
    is_delta: bool,
    limit: usize,
) -> Result<Option<Vec<u8>>> {
    if keys.is_current(payload) {
        return Ok(None);
    }
    let (content_hash, plain) = if payload.first() == Some(&SEALED) {
        keys.open(payload)?
    } else {
        let hash = match recorded {
            Some(hash) => hash,
            None if is_delta => return Err(damaged("a delta without a recorded state hash")),
            None => {
                let text = codec::decode(payload, limit)?;
                let state: Value = serde_json::from_slice(&text)
                    .map_err(|_| damaged("its snapshot is not JSON"))?;
                hash::state_hash(&state)
            }
        };
        (hash, payload.to_vec())
    };
    Ok(Some(keys.seal(content_hash, &plain)?))
}

/// A whole state (held outside any payload, such as PostgreSQL's JSONB column or an older
/// SQLite row) sealed under the write key of `keys` as a snapshot compressed with
/// `compression`.
///
/// # Errors
/// A state that does not serialize, compress or seal.
pub fn seal_state(keys: &Encryption, state: &Value, compression: Compression) -> Result<Vec<u8>> {
    let plain = codec::encode(&serde_json::to_vec(state)?, compression)?;
    Ok(keys.seal(hash::state_hash(state), &plain)?)
}

fn damaged(reason: &str) -> Error {
    FormatError::Damaged {
        reason: format!("cannot be re-encrypted: {reason}"),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealing::EncryptionKey;
    use serde_json::json;

    fn keys() -> (Encryption, Encryption) {
        let old = EncryptionKey::new("old", &[1; 32]).unwrap();
        let new = EncryptionKey::new("new", &[2; 32]).unwrap();
        (
            Encryption::new(old.clone()),
            Encryption::new(new).read_key(old).unwrap(),
        )
    }

    #[test]
    fn plain_payloads_are_sealed_with_the_hash_of_their_state() {
        let (_, keys) = keys();
        let state = json!({"a": [1, -0.0]});
        let plain = codec::encode(&serde_json::to_vec(&state).unwrap(), Compression::None).unwrap();
        for recorded in [None, Some(hash::state_hash(&state))] {
            let sealed = reseal(&keys, &plain, recorded, false, 1 << 20)
                .unwrap()
                .unwrap();
            let (content_hash, inner) = keys.open(&sealed).unwrap();
            assert_eq!(
                (content_hash, inner.as_slice()),
                (hash::state_hash(&state), plain.as_slice())
            );
        }
        let err = reseal(&keys, &plain, None, true, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("delta"), "{err}");
        let err = reseal(&keys, b"\x01\x00not json", None, false, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("not JSON"), "{err}");
    }

    #[test]
    fn a_payload_under_an_unknown_key_is_a_typed_error() {
        let (old_only, _) = keys();
        let stranger = Encryption::new(EncryptionKey::new("stranger", &[3; 32]).unwrap());
        let sealed = stranger.seal(1, b"\x01\x00{}").unwrap();
        let err = reseal(&old_only, &sealed, None, false, 1 << 20).unwrap_err();
        assert!(crate::sealing::EncryptionError::of(&err).is_some(), "{err}");
    }

    #[test]
    fn a_whole_state_is_sealed_as_a_snapshot() {
        let (_, keys) = keys();
        let state = json!({"n": 1.5});
        let sealed = seal_state(&keys, &state, Compression::Lz4).unwrap();
        let opened = crate::chain::open_payload(&sealed, 1 << 20, Some(&keys)).unwrap();
        assert_eq!(opened.content_hash, Some(hash::state_hash(&state)));
        assert_eq!(
            serde_json::from_slice::<Value>(&opened.text).unwrap(),
            state
        );
    }

    #[test]
    fn batch_bounds_are_checked() {
        assert_eq!(check_batch(None, 1).unwrap(), "");
        assert_eq!(check_batch(Some("a"), MAX_REENCRYPT_BATCH).unwrap(), "a");
        assert!(check_batch(None, 0).unwrap_err().is_invalid_field("limit"));
        assert!(check_batch(None, MAX_REENCRYPT_BATCH + 1)
            .unwrap_err()
            .is_invalid_field("limit"));
        assert!(check_batch(Some(""), 1)
            .unwrap_err()
            .is_invalid_field("after"));
    }
}
