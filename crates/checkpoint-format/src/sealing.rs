//! Encryption at rest: every stored state (snapshot or delta) sealed on the client with
//! AES-256-GCM (ring) under a named key, after compression, so the server and its backups only
//! ever hold ciphertext.
//!
//! ```text
//! byte 0        format, 2 (sealed)
//! byte 1        n, the length of the key id (1 to 64)
//! bytes 2..2+n  the key id (ASCII)
//! 12 bytes      the nonce (random)
//! rest          AES-256-GCM of [content hash, 8 bytes little-endian][a plain payload], with
//!               its 16-byte tag; the header (bytes 0..2+n) is authenticated as well
//! ```
//!
//! The content hash of the whole state travels inside the seal, so a reader still checks every
//! rebuilt state against the one saved, while the `state_hash` column holds only an opaque tag
//! (a hash of the sealed bytes) that tells nothing about the state.
//!
//! ```
//! use checkpoint_format::sealing::{Encryption, EncryptionKey};
//!
//! let keys = Encryption::new(EncryptionKey::new("k1", &[7u8; 32])?);
//! let sealed = keys.seal(42, b"a compressed state")?;
//! assert_eq!(checkpoint_format::sealing::sealed_key_id(&sealed)?, "k1");
//! assert_eq!(keys.open(&sealed)?, (42, b"a compressed state".to_vec()));
//! # Ok::<(), checkpoint_core::Error>(())
//! ```

use std::fmt;
use std::sync::Arc;

use checkpoint_core::{Error, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The format byte of a sealed payload.
pub const SEALED: u8 = 2;

/// Bytes in a key.
pub const KEY_BYTES: usize = 32;

/// The longest key id.
pub const MAX_KEY_ID_BYTES: usize = 64;

/// Why a state could not be sealed or opened. The source of [`Error::Backend`] (never
/// retryable), so callers can match on it:
///
/// ```
/// use checkpoint_format::sealing::EncryptionError;
///
/// fn missing_key(err: &checkpoint_core::Error) -> Option<&str> {
///     match EncryptionError::of(err)? {
///         EncryptionError::UnknownKey { key_id } => Some(key_id),
///         _ => None,
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// The payload was sealed under a key this store was not given.
    #[error(
        "checkpoint state is encrypted under key {key_id:?}, which this store was not given \
         (add it to the store's read keys)"
    )]
    UnknownKey {
        /// The key the payload names.
        key_id: String,
    },
    /// The payload did not authenticate: it was changed after it was written, or the key given
    /// under its id is not the key it was written with.
    #[error(
        "checkpoint state failed authentication under key {key_id:?}: it was altered after it \
         was written, or the key given under that id is not the one it was written with"
    )]
    Authentication {
        /// The key the payload names.
        key_id: String,
    },
    /// The payload is too short or its header is damaged.
    #[error("an encrypted checkpoint state is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The payload is sealed and this store has no keys at all.
    #[error(
        "checkpoint state is encrypted under key {key_id:?} and this store has no encryption \
         keys (set them with the store's encryption option)"
    )]
    NotConfigured {
        /// The key the payload names.
        key_id: String,
    },
    /// The system's random number generator failed.
    #[error("no random nonce could be drawn to encrypt a state")]
    Random,
}

impl EncryptionError {
    /// A stable short name of the variant, the `kind` label of
    /// [`ENCRYPTION_FAILURES`](checkpoint_core::telemetry::ENCRYPTION_FAILURES):
    /// `unknown_key`, `authentication`, `malformed`, `not_configured` or `random`.
    pub fn kind(&self) -> &'static str {
        match self {
            EncryptionError::UnknownKey { .. } => "unknown_key",
            EncryptionError::Authentication { .. } => "authentication",
            EncryptionError::Malformed { .. } => "malformed",
            EncryptionError::NotConfigured { .. } => "not_configured",
            EncryptionError::Random => "random",
        }
    }

    /// The encryption error behind a core error, if there is one.
    pub fn of(err: &Error) -> Option<&EncryptionError> {
        std::error::Error::source(err)?.downcast_ref::<EncryptionError>()
    }
}

impl From<EncryptionError> for Error {
    fn from(err: EncryptionError) -> Self {
        Error::Backend {
            message: err.to_string(),
            retryable: false,
            source: Box::new(err),
        }
    }
}

/// One named AES-256 key. `Debug` shows the id only; the key bytes are kept by ring alone.
///
/// ```
/// use checkpoint_format::sealing::EncryptionKey;
///
/// let key = EncryptionKey::new("2026-11", &[7u8; 32])?;
/// assert_eq!(key.id(), "2026-11");
/// assert!(!format!("{key:?}").contains("7, 7"));
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    key: Arc<LessSafeKey>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl EncryptionKey {
    /// A key named `id` (1 to 64 bytes of `[A-Za-z0-9_.-]`) from its 32 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `encryption_key` for a bad id or a key that is not 32
    /// bytes (the message never shows the key).
    pub fn new(id: impl Into<String>, bytes: &[u8]) -> Result<Self> {
        let id = id.into();
        check_key_id(&id)?;
        if bytes.len() != KEY_BYTES {
            return Err(Error::invalid(
                "encryption_key",
                format!(
                    "key {id:?} has {} bytes; AES-256 keys have {KEY_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::invalid("encryption_key", format!("key {id:?} is unusable")))?;
        Ok(EncryptionKey {
            id,
            key: Arc::new(LessSafeKey::new(unbound)),
        })
    }

    /// A key named `id` from its 32 bytes in standard base64 (44 characters).
    ///
    /// # Errors
    /// As [`EncryptionKey::new`], and for text that is not base64.
    pub fn from_base64(id: impl Into<String>, text: &str) -> Result<Self> {
        use base64::Engine;
        let id = id.into();
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| {
                    Error::invalid("encryption_key", format!("key {id:?} is not base64"))
                })?,
        );
        Self::new(id, &bytes)
    }

    /// The key's id, recorded in every payload sealed under it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn check_key_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "encryption_key",
            format!("key id {id:?} must be 1 to {MAX_KEY_ID_BYTES} bytes of [A-Za-z0-9_.-]"),
        ))
    }
}

/// The keys a store encrypts with: one to write, any number more to read (rotation). `Debug`
/// shows the key ids only.
///
/// The text form, for an environment variable or a key file, is one `id:base64` entry per line
/// (or separated by commas), the first being the write key; blank lines and lines starting with
/// `#` are skipped:
///
/// ```
/// use checkpoint_format::sealing::Encryption;
///
/// let keys = Encryption::parse(
///     "# newest first\n\
///      k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\
///      k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n",
/// )?;
/// assert_eq!(keys.write_key_id(), "k2");
/// assert_eq!(keys.key_ids(), vec!["k2", "k1"]);
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Encryption {
    /// The write key first.
    keys: Vec<EncryptionKey>,
    random: SystemRandom,
}

/// Two sets of keys are equal when they are the same keys (clones of the same
/// [`EncryptionKey`]s: the key material is never compared, nor kept where it could be) in the
/// same order, the write key first.
impl PartialEq for Encryption {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|(a, b)| a.id == b.id && Arc::ptr_eq(&a.key, &b.key))
    }
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryption")
            .field("write_key", &self.write_key_id())
            .field("keys", &self.key_ids())
            .finish()
    }
}

impl Encryption {
    /// Encrypts with `write` (which also reads).
    pub fn new(write: EncryptionKey) -> Self {
        Encryption {
            keys: vec![write],
            random: SystemRandom::new(),
        }
    }

    /// Also reads payloads sealed under `key` (an older key, during a rotation).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `encryption_key` when a key with the same id is held.
    pub fn read_key(mut self, key: EncryptionKey) -> Result<Self> {
        if self.keys.iter().any(|k| k.id == key.id) {
            return Err(Error::invalid(
                "encryption_key",
                format!("key id {:?} is given twice", key.id),
            ));
        }
        self.keys.push(key);
        Ok(self)
    }

    /// Keys from their text form (see the type's docs).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `encryption_key` for an entry that is not `id:base64`, a
    /// bad key, a repeated id, or no key at all; messages name the key id, never the key.
    pub fn parse(text: &str) -> Result<Self> {
        let mut keys: Option<Encryption> = None;
        for entry in text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
        {
            let (id, key) = entry.split_once(':').ok_or_else(|| {
                Error::invalid("encryption_key", "each key must be written as id:base64")
            })?;
            let key = EncryptionKey::from_base64(id.trim(), key)?;
            keys = Some(match keys {
                None => Encryption::new(key),
                Some(keys) => keys.read_key(key)?,
            });
        }
        keys.ok_or_else(|| Error::invalid("encryption_key", "no key was given"))
    }

    /// The id of the key new states are sealed under.
    pub fn write_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key id, the write key first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// `inner` (a plain payload) and the content hash of its state, sealed under the write key.
    pub fn seal(&self, content_hash: i64, inner: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| EncryptionError::Random)?;
        let header_len = 2 + key.id.len();
        let mut out = Vec::with_capacity(header_len + NONCE_LEN + 8 + inner.len() + 16);
        out.push(SEALED);
        // Checked by `check_key_id`: at most 64 bytes.
        out.push(
            u8::try_from(key.id.len()).map_err(|_| EncryptionError::Malformed {
                reason: format!("key id of {} bytes", key.id.len()),
            })?,
        );
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        let mut sealed = Vec::with_capacity(8 + inner.len() + 16);
        sealed.extend_from_slice(&content_hash.to_le_bytes());
        sealed.extend_from_slice(inner);
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..header_len]),
                &mut sealed,
            )
            .map_err(|_| EncryptionError::Malformed {
                reason: "a state too large to encrypt".into(),
            })?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The content hash and the plain payload inside `payload` (format [`SEALED`]).
    pub fn open(&self, payload: &[u8]) -> Result<(i64, Vec<u8>), EncryptionError> {
        let key_id = sealed_key_id(payload)?;
        let key = self.keys.iter().find(|k| k.id == key_id).ok_or_else(|| {
            EncryptionError::UnknownKey {
                key_id: key_id.to_owned(),
            }
        })?;
        let header_len = 2 + key_id.len();
        let (nonce, body) = payload[header_len..].split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed("nonce"))?;
        let mut body = body.to_vec();
        let authentication = || EncryptionError::Authentication {
            key_id: key_id.to_owned(),
        };
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(&payload[..header_len]), &mut body)
            .map_err(|_| authentication())?;
        let (hash, inner) = plain.split_at_checked(8).ok_or_else(authentication)?;
        let hash = i64::from_le_bytes(hash.try_into().map_err(|_| authentication())?);
        Ok((hash, inner.to_vec()))
    }

    /// Whether `payload` is already sealed under the write key.
    pub fn is_current(&self, payload: &[u8]) -> bool {
        sealed_key_id(payload).is_ok_and(|id| id == self.write_key_id())
    }
}

fn malformed(what: &str) -> EncryptionError {
    EncryptionError::Malformed {
        reason: format!("its {what} is damaged"),
    }
}

/// The key id a sealed payload names, checked to leave room for a nonce and a tag.
pub fn sealed_key_id(payload: &[u8]) -> Result<&str, EncryptionError> {
    let (&format, rest) = payload.split_first().ok_or_else(|| malformed("header"))?;
    let (&len, rest) = rest.split_first().ok_or_else(|| malformed("header"))?;
    if format != SEALED || len == 0 || usize::from(len) > MAX_KEY_ID_BYTES {
        return Err(malformed("header"));
    }
    let id = rest
        .get(..usize::from(len))
        .and_then(|id| std::str::from_utf8(id).ok())
        .ok_or_else(|| malformed("key id"))?;
    if rest.len() < usize::from(len) + NONCE_LEN + 16 + 8 {
        return Err(malformed("length"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        EncryptionKey::new(id, &[byte; KEY_BYTES]).unwrap()
    }

    #[test]
    fn a_sealed_payload_opens_under_its_key_only() {
        let keys = Encryption::new(key("k1", 1));
        let sealed = keys.seal(42, b"\x01\x00{\"secret\":1}").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            keys.open(&sealed).unwrap(),
            (42, b"\x01\x00{\"secret\":1}".to_vec())
        );
        assert!(keys.is_current(&sealed));

        let other = Encryption::new(key("k2", 2));
        assert!(matches!(
            other.open(&sealed),
            Err(EncryptionError::UnknownKey { key_id }) if key_id == "k1"
        ));
        let impostor = Encryption::new(key("k1", 9));
        assert!(matches!(
            impostor.open(&sealed),
            Err(EncryptionError::Authentication { key_id }) if key_id == "k1"
        ));
    }

    #[test]
    fn every_flipped_bit_fails_authentication_or_the_header_check() {
        let keys = Encryption::new(key("k1", 1));
        let sealed = keys.seal(7, b"\x01\x00[1,2,3]").unwrap();
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = sealed.clone();
                tampered[i] ^= bit;
                let err = keys.open(&tampered).unwrap_err();
                assert!(
                    matches!(
                        err,
                        EncryptionError::Authentication { .. }
                            | EncryptionError::Malformed { .. }
                            | EncryptionError::UnknownKey { .. }
                    ),
                    "byte {i}: {err:?}"
                );
            }
        }
        for len in 0..sealed.len() {
            assert!(keys.open(&sealed[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn nonces_differ_so_equal_states_seal_differently() {
        let keys = Encryption::new(key("k1", 1));
        assert_ne!(
            keys.seal(1, b"same").unwrap(),
            keys.seal(1, b"same").unwrap()
        );
    }

    #[test]
    fn rotation_reads_old_keys_and_writes_the_new_one() {
        let old = Encryption::new(key("k1", 1));
        let sealed_old = old.seal(1, b"old").unwrap();
        let rotated = Encryption::new(key("k2", 2))
            .read_key(key("k1", 1))
            .unwrap();
        assert_eq!(rotated.open(&sealed_old).unwrap().1, b"old");
        assert!(!rotated.is_current(&sealed_old));
        let sealed_new = rotated.seal(2, b"new").unwrap();
        assert_eq!(sealed_key_id(&sealed_new).unwrap(), "k2");
        assert!(rotated.read_key(key("k2", 3)).is_err(), "an id given twice");
    }

    #[test]
    fn bad_keys_and_key_texts_are_refused_without_showing_the_key() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";
        for (text, shown) in [
            ("", "no key"),
            ("k1", "id:base64"),
            ("k1:not base64!", "not base64"),
            ("k1:AQID", "has 3 bytes"),
            ("bad id:AQID", "key id"),
            (&format!("k1:{secret},k1:{secret}"), "given twice"),
        ] {
            let err = Encryption::parse(text).unwrap_err();
            assert!(err.is_invalid_field("encryption_key"), "{text}: {err}");
            assert!(err.to_string().contains(shown), "{text}: {err}");
            assert!(!err.to_string().contains(secret), "{err}");
        }
        assert!(EncryptionKey::new("x".repeat(65), &[0; 32]).is_err());
        assert!(EncryptionKey::new("", &[0; 32]).is_err());
        let keys = Encryption::parse(&format!("# comment\nk1:{secret}\n\n")).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("k1") && !shown.contains(secret), "{shown}");
    }
}
