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
//! `checkpoint_format::hash`; opening a payload, plain or sealed, and the tag of a sealed one
//! are `checkpoint_format::chain`.

pub use checkpoint_format::codec::Compression;
