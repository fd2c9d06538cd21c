//! The stored form of a state in the `payload` column: the codec's header and compressed JSON
//! ([`checkpoint_format::codec`]), sealed whole when encryption is on.
//!
//! ```text
//! byte 0   format, 1
//! byte 1   codec: 0 none, 1 lz4, 2 zstd
//! byte 2.. the JSON text, compressed by the codec
//! ```
//!
//! Whether the JSON is a whole state or a delta is not in the payload: the row says so (a row
//! with a `base_version` holds a delta against that version). With encryption on, this payload
//! is sealed whole (format 2, `checkpoint_format::sealing`). The content hash is
//! `checkpoint_format::hash`.

use checkpoint_format::sealing::{self as encryption, Encryption, EncryptionError};

use crate::error::DbError;

pub use checkpoint_format::codec::Compression;

/// `json` (a state or a delta as JSON text) in the stored form ([`checkpoint_format::codec`]).
pub(crate) fn encode(json: &[u8], compression: Compression) -> Result<Vec<u8>, DbError> {
    checkpoint_format::codec::encode(json, compression).map_err(|e| DbError::decode(e.to_string()))
}

/// What a stored payload holds.
pub(crate) struct Opened {
    /// The JSON text (a state or a delta).
    pub text: Vec<u8>,
    /// For a sealed payload, the content hash of the whole state sealed with it (the
    /// `state_hash` column then holds an opaque tag).
    pub content_hash: Option<i64>,
}

/// The JSON text of a stored payload, plain or sealed (opened with `keys`), refused when it
/// would expand past `limit` bytes.
pub(crate) fn open(
    payload: &[u8],
    limit: usize,
    keys: Option<&Encryption>,
) -> checkpoint_core::Result<Opened> {
    if payload.first() != Some(&encryption::SEALED) {
        return Ok(Opened {
            text: decode(payload, limit)?,
            content_hash: None,
        });
    }
    let Some(keys) = keys else {
        let key_id = encryption::sealed_key_id(payload)?.to_owned();
        return Err(EncryptionError::NotConfigured { key_id }.into());
    };
    let (content_hash, inner) = keys.open(payload)?;
    Ok(Opened {
        text: decode(&inner, limit)?,
        content_hash: Some(content_hash),
    })
}

/// An opaque tag for a sealed payload, stored in `state_hash` in place of the content hash:
/// it changes with every write and tells nothing about the state.
pub(crate) fn payload_tag(payload: &[u8]) -> i64 {
    xxhash_rust::xxh3::xxh3_64(payload).cast_signed()
}

/// The JSON text of a plain stored payload, refused when it would expand past `limit` bytes.
pub(crate) fn decode(payload: &[u8], limit: usize) -> Result<Vec<u8>, DbError> {
    checkpoint_format::codec::decode(payload, limit).map_err(|e| DbError::decode(e.to_string()))
}
