//! The codec of a stored state: a small header, then JSON (a whole state or a delta)
//! compressed on the client.
//!
//! ```text
//! byte 0   format, 1
//! byte 1   codec: 0 none, 1 lz4, 2 zstd
//! byte 2.. the JSON text, compressed by the codec
//! ```
//!
//! Whether the JSON is a whole state or a delta is not in the payload: the row says so. A
//! sealed payload ([`crate::sealing`], format 2) holds one of these inside.
//!
//! ```
//! use checkpoint_format::codec::{decode, encode, Compression};
//!
//! let text = br#"{"messages": ["hello", "hello", "hello", "hello"]}"#.repeat(20);
//! let stored = encode(&text, Compression::default())?;
//! assert!(stored.len() < text.len());
//! assert_eq!(decode(&stored, 1 << 20)?, text);
//! # Ok::<(), checkpoint_format::FormatError>(())
//! ```

use std::fmt;

use crate::FormatError;

const FORMAT: u8 = 1;

/// How a store compresses states before it writes them (`PostgresOptions::compression`).
/// Every codec is always readable, whichever one a store writes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Plain JSON text.
    None,
    /// LZ4 (block format): the fastest, the least compact.
    Lz4,
    /// Zstandard at `level` (1 to 22; 3 is zstd's own default). The default, at level 3: see
    /// `docs/postgres.md`, "State storage", for the measurements behind it.
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd { level: 3 }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = checkpoint_core::Error;

    /// `none`, `lz4`, `zstd` or `zstd:<level>`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            checkpoint_core::Error::invalid(
                "compression",
                format!("{text:?} is not none, lz4, zstd or zstd:<level 1..=22>"),
            )
        };
        match text {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::default()),
            other => {
                let level = other
                    .strip_prefix("zstd:")
                    .and_then(|l| l.parse::<i32>().ok())
                    .ok_or_else(bad)?;
                Compression::zstd(level).map_err(|_| bad())
            }
        }
    }
}

impl Compression {
    /// Zstandard at `level`.
    ///
    /// # Errors
    /// [`checkpoint_core::Error::InvalidInput`] for a level outside 1..=22.
    pub fn zstd(level: i32) -> checkpoint_core::Result<Self> {
        if !(1..=22).contains(&level) {
            return Err(checkpoint_core::Error::invalid(
                "compression",
                format!("zstd level {level} is outside 1..=22"),
            ));
        }
        Ok(Compression::Zstd { level })
    }

    fn tag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd { .. } => 2,
        }
    }
}

/// `json` (a state or a delta as JSON text) in the stored form.
pub fn encode(json: &[u8], compression: Compression) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(json.len() / 2 + 2);
    out.push(FORMAT);
    out.push(compression.tag());
    match compression {
        Compression::None => out.extend_from_slice(json),
        Compression::Lz4 => out.extend_from_slice(&lz4_flex::compress_prepend_size(json)),
        Compression::Zstd { level } => {
            let packed = crate::zstd_frames::compress(json, level)?;
            out.extend_from_slice(&packed);
        }
    }
    Ok(out)
}

/// The JSON text of a plain stored payload, refused when it would expand past `limit` bytes.
pub fn decode(payload: &[u8], limit: usize) -> Result<Vec<u8>, FormatError> {
    let (header, body) = payload
        .split_at_checked(2)
        .ok_or_else(|| damaged(format!("a stored payload of {} bytes", payload.len())))?;
    if header[0] != FORMAT {
        return Err(damaged(format!(
            "stored payload format {} is unknown to this release (it reads {FORMAT}); upgrade \
             the store",
            header[0]
        )));
    }
    let text = match header[1] {
        0 => body.to_vec(),
        1 => {
            // The prepended size comes from storage: check it before it sizes a buffer.
            let size = body
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| damaged("a truncated lz4 payload"))?;
            if size > limit {
                return Err(too_large(size, limit));
            }
            let text = lz4_flex::decompress_size_prepended(body)
                .map_err(|e| damaged(format!("lz4 payload: {e}")))?;
            if text.len() != size {
                return Err(damaged("a truncated lz4 payload"));
            }
            text
        }
        2 => crate::zstd_frames::decompress(body, limit).map_err(|e| match e {
            FormatError::TooLarge { size, limit } => damaged(format!(
                "zstd payload: the payload expands to {size} bytes, more than the {limit} this \
                 store reads"
            )),
            other => damaged(format!("zstd payload: {other}")),
        })?,
        other => {
            return Err(damaged(format!(
                "stored payload codec {other} is unknown to this release"
            )))
        }
    };
    if text.len() > limit {
        return Err(too_large(text.len(), limit));
    }
    Ok(text)
}

fn too_large(size: usize, limit: usize) -> FormatError {
    damaged(format!(
        "a stored payload expands to {size} bytes, more than the {limit} this store reads"
    ))
}

fn damaged(reason: impl Into<String>) -> FormatError {
    FormatError::Damaged {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_codec_round_trips() {
        let text = serde_json::to_vec(&json!({"messages": vec!["hello world"; 200]})).unwrap();
        for codec in [
            Compression::None,
            Compression::Lz4,
            Compression::default(),
            Compression::zstd(19).unwrap(),
        ] {
            let stored = encode(&text, codec).unwrap();
            assert_eq!(decode(&stored, 1 << 20).unwrap(), text, "{codec}");
            if codec != Compression::None {
                assert!(stored.len() < text.len() / 4, "{codec}: {}", stored.len());
            }
        }
    }

    #[test]
    fn damaged_payloads_are_decode_errors() {
        let stored = encode(b"{\"a\":1}", Compression::default()).unwrap();
        for bad in [
            vec![],
            vec![1],
            vec![9, 0, b'1'],
            vec![1, 7, b'1'],
            vec![1, 2, 0, 1, 2, 3],
            vec![1, 1, 200, 0, 0, 0, 1],
            stored[..stored.len() - 2].to_vec(),
        ] {
            assert!(decode(&bad, 1 << 20).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compression_parses_from_text() {
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert_eq!(
            "zstd:7".parse::<Compression>().unwrap(),
            Compression::Zstd { level: 7 }
        );
        for bad in ["zstd:0", "zstd:23", "gzip", "zstd:x", ""] {
            let err = bad.parse::<Compression>().unwrap_err();
            assert!(err.is_invalid_field("compression"), "{bad}: {err}");
        }
    }
}
