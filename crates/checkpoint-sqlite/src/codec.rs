//! The stored form of a state in rows written before schema 3 (rows without a `state_hash`):
//! one format byte, then the state's JSON text, compressed with Zstandard when that made it
//! smaller. This release reads it and no longer writes it: new rows hold the shared payload
//! form (`checkpoint_format::codec`), a snapshot or a delta. `encode` stays for the tests that
//! make rows as older releases did.
//!
//! ```text
//! byte 0   format: 0 JSON text, 1 Zstandard frame of the JSON text
//! 1..      the payload
//! ```
//!
//! JSON text (not SQLite's JSON functions) keeps every number exactly as saved, as serde_json
//! writes and reads it.

use serde_json::Value;

use crate::options::SQLITE_MAX_LENGTH;

const PLAIN: u8 = 0;
const ZSTD: u8 = 1;

/// States shorter than this were stored as text: a frame header would eat the gain.
#[cfg(test)]
const COMPRESS_FROM: usize = 256;

/// The Zstandard level older releases wrote with.
#[cfg(test)]
const LEVEL: i32 = 1;

/// The stored bytes of `state`, as releases before schema 3 wrote them.
#[cfg(test)]
pub(crate) fn encode(state: &Value) -> Result<Vec<u8>, String> {
    let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    if text.len() >= COMPRESS_FROM {
        let frame =
            checkpoint_format::zstd_frames::compress(&text, LEVEL).map_err(|e| e.to_string())?;
        if frame.len() < text.len() {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(ZSTD);
            out.extend_from_slice(&frame);
            return Ok(out);
        }
    }
    let mut out = Vec::with_capacity(text.len() + 1);
    out.push(PLAIN);
    out.extend_from_slice(&text);
    Ok(out)
}

/// The state stored as `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, String> {
    let (&format, payload) = bytes.split_first().ok_or("the stored state is empty")?;
    match format {
        PLAIN => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        ZSTD => {
            let text = checkpoint_format::zstd_frames::decompress(payload, SQLITE_MAX_LENGTH)
                .map_err(|e| match e {
                    checkpoint_format::FormatError::TooLarge { size, .. } => {
                        format!("the compressed state claims {size} bytes")
                    }
                    other => format!("the compressed state is not a readable frame: {other}"),
                })?;
            serde_json::from_slice(&text).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown state format {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_core::conformance::strategies::json_value;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #[test]
        fn every_state_round_trips(state in json_value()) {
            let bytes = encode(&state).unwrap();
            prop_assert_eq!(decode(&bytes).unwrap(), state);
        }

        #[test]
        fn damaged_bytes_fail_or_decode_never_panic(state in json_value(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
            let mut bytes = encode(&state).unwrap();
            let at = cut.index(bytes.len());
            bytes[at] ^= flip.max(1);
            let _ = decode(&bytes);
            let _ = decode(&bytes[..at]);
        }
    }

    #[test]
    fn large_repetitive_states_are_compressed_small_ones_are_not() {
        let small = json!({"n": 1});
        assert_eq!(encode(&small).unwrap()[0], PLAIN);
        let large = json!({"messages": vec!["the same sentence, again and again"; 200]});
        let bytes = encode(&large).unwrap();
        assert_eq!(bytes[0], ZSTD);
        assert!(bytes.len() * 10 < serde_json::to_vec(&large).unwrap().len());
        assert_eq!(decode(&bytes).unwrap(), large);
    }

    #[test]
    fn unknown_formats_and_empty_bytes_are_refused() {
        assert!(decode(&[]).unwrap_err().contains("empty"));
        assert!(decode(&[7, b'1']).unwrap_err().contains("format 7"));
        assert!(decode(&[ZSTD, 1, 2, 3]).is_err());
    }
}
