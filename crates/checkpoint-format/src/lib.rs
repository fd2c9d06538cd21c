//! The stored form of checkpoint states, shared by every backend that stores them.
//!
//! A backend crate owns its driver and its rows; what a state becomes on its way into a row
//! lives here, once, with no driver: the structural deltas between two states ([`delta`]:
//! diff and apply), the content hash of a state ([`hash`]), the header and compression of a
//! stored state ([`codec`]), sealing at rest ([`sealing`]: AES-256-GCM under named keys, rotation) and
//! re-encryption under a new key ([`reseal`]), the Zstandard frames that PostgreSQL's payloads and SQLite's stored states are written as
//! ([`zstd_frames`]), the choice of a snapshot or a delta for each save against the bases a
//! store remembers ([`encoder`], [`cache`]), and the rebuild of states from a chain of rows
//! handed to it ([`chain`]: snapshots and deltas, every link and content hash checked, damage
//! reported row by row). Its errors are its own ([`FormatError`], [`delta::ApplyError`],
//! [`sealing::EncryptionError`]), for each backend to report in its terms.
//!
//! ```
//! let text = br#"{"messages": ["hello", "hello", "hello", "hello"]}"#.repeat(20);
//! let frame = checkpoint_format::zstd_frames::compress(&text, 1)?;
//! assert!(frame.len() < text.len());
//! assert_eq!(checkpoint_format::zstd_frames::decompress(&frame, text.len())?, text);
//! # Ok::<(), checkpoint_format::FormatError>(())
//! ```

#![warn(missing_docs)]

pub mod cache;
pub mod chain;
pub mod codec;
pub mod delta;
pub mod encoder;
pub mod hash;
pub mod reseal;
pub mod sealing;
pub mod zstd_frames;

/// Why a state could not be put into, or read from, its stored form.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A frame records that it expands to more bytes than the caller reads.
    #[error("the frame expands to {size} bytes, more than the {limit} allowed")]
    TooLarge {
        /// What the frame says it expands to, or what was read before giving up.
        size: u64,
        /// The most the caller reads.
        limit: usize,
    },
    /// Zstandard refused the bytes (not a frame, damaged, truncated) or could not set up.
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    /// A stored payload is not one this release can read: damaged, truncated, or of a format
    /// or codec it does not know.
    #[error("{reason}")]
    Damaged {
        /// What is wrong with it.
        reason: String,
    },
}
