//! The input rules every backend applies before touching storage, so that a test on the memory
//! backend fails exactly where production on PostgreSQL would.

use std::collections::HashSet;
use std::io;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::store::{ExecutionQuery, ListQuery, RetentionPolicy};

/// The longest id (checkpoint, execution or parent), node name, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The most items one page may ask for.
pub const MAX_PAGE_LIMIT: usize = 1_000;

/// Size and shape limits a store enforces; [`Limits::default`] suits most deployments.
///
/// ```
/// use checkpoint_core::Limits;
///
/// let limits = Limits::default().with_max_state_bytes(1 << 20);
/// assert_eq!(limits.max_state_bytes, 1 << 20);
/// assert_eq!(limits.max_json_depth, 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest state, measured as compact JSON text. Default 16 MiB.
    pub max_state_bytes: usize,
    /// Largest metadata object, measured as compact JSON text. Default 1 MiB.
    pub max_metadata_bytes: usize,
    /// Deepest nesting of arrays and objects in state and metadata. Default 100: JSON parsers
    /// (serde_json among them) refuse to read back documents nested deeper than 128 levels, so a
    /// deeper state could be written but never loaded again.
    pub max_json_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_state_bytes: 16 * 1024 * 1024,
            max_metadata_bytes: 1024 * 1024,
            max_json_depth: 100,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_state_bytes`].
    pub fn with_max_state_bytes(mut self, bytes: usize) -> Self {
        self.max_state_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_metadata_bytes`].
    pub fn with_max_metadata_bytes(mut self, bytes: usize) -> Self {
        self.max_metadata_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_json_depth`]; values above 100 are lowered to 100, the deepest
    /// document every backend can read back.
    pub fn with_max_json_depth(mut self, depth: usize) -> Self {
        self.max_json_depth = depth.min(100);
        self
    }

    /// The input rules of a fenced save ([`save_fenced`](crate::CheckpointStore::save_fenced)):
    /// the fence's, the checkpoint's, and that it is of the fenced execution.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first field at fault.
    pub fn check_fenced_checkpoint(
        &self,
        fence: &crate::Fence,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        crate::lease::check_fence(fence)?;
        self.check_checkpoint(checkpoint)?;
        fence.covers(&checkpoint.execution_id)
    }

    /// The input rules of a fenced batch
    /// ([`save_batch_fenced`](crate::CheckpointStore::save_batch_fenced)): the fence's, the
    /// batch's, and that every checkpoint is of the fenced execution.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first field at fault.
    pub fn check_fenced_batch(
        &self,
        fence: &crate::Fence,
        checkpoints: &[Checkpoint],
    ) -> Result<()> {
        crate::lease::check_fence(fence)?;
        self.check_batch(checkpoints)?;
        checkpoints
            .iter()
            .try_for_each(|checkpoint| fence.covers(&checkpoint.execution_id))
    }

    /// The input rules of a fenced prune
    /// ([`prune_fenced`](crate::CheckpointStore::prune_fenced)), and the policy it applies:
    /// `policy` for the fenced execution alone.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first field at fault; on `execution_id` when the
    /// policy names another execution.
    pub fn check_fenced_retention(
        &self,
        fence: &crate::Fence,
        policy: &RetentionPolicy,
    ) -> Result<RetentionPolicy> {
        crate::lease::check_fence(fence)?;
        if let Some(execution) = &policy.execution_id {
            fence.covers(execution)?;
        }
        let policy = policy.clone().for_execution(&fence.execution_id);
        self.check_retention(&policy)?;
        Ok(policy)
    }

    /// Checks every field of `checkpoint`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first field at fault.
    pub fn check_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        check_id("id", &checkpoint.id)?;
        check_id("execution_id", &checkpoint.execution_id)?;
        check_id("node_name", &checkpoint.node_name)?;
        if let Some(parent) = &checkpoint.parent_id {
            check_id("parent_id", parent)?;
        }
        if checkpoint.version < 0 {
            return Err(Error::invalid(
                "version",
                format!("must be 0 (assign) or positive, got {}", checkpoint.version),
            ));
        }
        check_timestamp(&checkpoint.timestamp)?;
        self.check_json("state", &checkpoint.state, self.max_state_bytes)?;
        self.check_metadata("metadata", &checkpoint.metadata)
    }

    /// Checks a metadata object (keys, values, depth and size).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `field`.
    pub fn check_metadata(&self, field: &str, metadata: &Map<String, Value>) -> Result<()> {
        for (key, value) in metadata {
            check_text(field, key)?;
            // The object itself is one level.
            check_shape(field, value, self.max_json_depth.saturating_sub(1))?;
            // Metadata is queried by the database (filters), so every backend keeps it in a
            // form the database reads back; refuse what that form would change, everywhere.
            check_jsonb_numbers(field, value)?;
        }
        check_size(field, metadata, self.max_metadata_bytes)
    }

    fn check_json(&self, field: &str, value: &Value, max_bytes: usize) -> Result<()> {
        // First a walk that looks at each string only for NUL (a vectorised search) and
        // counts it unescaped: escaping adds at most five bytes to a byte of a string
        // (`\u001f`), so that walk bounds the text from both sides, and only a document
        // within five times its strings of the limit is measured exactly. A long conversation
        // is then checked at the speed of the search, not of a byte-by-byte count.
        let mut string_bytes = 0usize;
        let unescaped = walk_shape(field, value, self.max_json_depth, |s| {
            refuse_nul(field, s)?;
            string_bytes = string_bytes.saturating_add(s.len());
            Ok(s.len().saturating_add(2))
        })?;
        if unescaped.saturating_add(string_bytes.saturating_mul(5)) <= max_bytes {
            return Ok(());
        }
        let size = if unescaped > max_bytes {
            unescaped
        } else {
            check_shape(field, value, self.max_json_depth)?
        };
        if size > max_bytes {
            return Err(Error::invalid(
                field,
                format!("is larger than {max_bytes} bytes"),
            ));
        }
        Ok(())
    }

    /// Checks a batch: every item, no id twice, no explicit version twice in one execution.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad item or a repeated id; [`Error::Conflict`] for a
    /// repeated explicit version.
    pub fn check_batch(&self, checkpoints: &[Checkpoint]) -> Result<()> {
        let mut ids = HashSet::with_capacity(checkpoints.len());
        let mut versions = HashSet::new();
        for checkpoint in checkpoints {
            self.check_checkpoint(checkpoint)?;
            if !ids.insert(checkpoint.id.as_str()) {
                return Err(Error::invalid(
                    "id",
                    format!("{} appears more than once in the batch", checkpoint.id),
                ));
            }
            if checkpoint.version > 0
                && !versions.insert((checkpoint.execution_id.as_str(), checkpoint.version))
            {
                return Err(Error::Conflict {
                    execution_id: checkpoint.execution_id.clone(),
                    version: checkpoint.version,
                });
            }
        }
        Ok(())
    }

    /// Checks a page request.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad execution id, a limit of 0 or over [`MAX_PAGE_LIMIT`],
    /// a NUL in a filter, or an empty cursor window.
    pub fn check_list_query(&self, query: &ListQuery) -> Result<()> {
        check_id("execution_id", &query.execution_id)?;
        check_limit(query.limit)?;
        if let Some(node) = &query.node_name {
            check_id("node_name", node)?;
        }
        self.check_metadata("metadata", &query.metadata)?;
        for (field, cursor) in [
            ("after_version", query.after_version),
            ("before_version", query.before_version),
        ] {
            if cursor.is_some_and(|v| v < 0) {
                return Err(Error::invalid(field, "must not be negative"));
            }
        }
        Ok(())
    }

    /// Checks an execution listing request.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit of 0 or over [`MAX_PAGE_LIMIT`] or a bad cursor.
    pub fn check_execution_query(&self, query: &ExecutionQuery) -> Result<()> {
        if let Some(after) = &query.after {
            check_id("after", after)?;
        }
        check_limit(query.limit)
    }

    /// Checks a retention policy.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the policy names no rule, keeps 0 checkpoints or names a bad
    /// execution id.
    pub fn check_retention(&self, policy: &RetentionPolicy) -> Result<()> {
        if policy.keep_last.is_none() && policy.older_than.is_none() {
            return Err(Error::invalid(
                "retention",
                "set keep_last and/or older_than (use clear to remove a whole execution)",
            ));
        }
        if policy.keep_last == Some(0) {
            return Err(Error::invalid(
                "keep_last",
                "must be at least 1 (use clear to remove a whole execution)",
            ));
        }
        if policy.keep_last.is_some_and(|n| n > i64::MAX as u64) {
            return Err(Error::invalid("keep_last", "too large"));
        }
        if let Some(execution) = &policy.execution_id {
            check_id("execution_id", execution)?;
        }
        Ok(())
    }
}

/// The version an append takes after `highest`, the highest version `execution_id` holds.
///
/// # Errors
/// [`Error::InvalidInput`] naming `version` when `highest` is `i64::MAX`: no version follows,
/// and nothing is stored.
///
/// ```
/// use checkpoint_core::validate::next_version;
///
/// assert_eq!(next_version("run-1", 41).unwrap(), 42);
/// assert!(next_version("run-1", i64::MAX).unwrap_err().is_invalid_field("version"));
/// ```
pub fn next_version(execution_id: &str, highest: i64) -> Result<i64> {
    highest
        .checked_add(1)
        .ok_or_else(|| no_version_after(execution_id))
}

/// The error for an append to an execution that already holds `i64::MAX`.
pub fn no_version_after(execution_id: &str) -> Error {
    Error::invalid(
        "version",
        format!(
            "execution {execution_id} already holds the highest version ({}); no append can \
             follow it",
            i64::MAX
        ),
    )
}

/// Refuses numbers that PostgreSQL's `jsonb` would not give back as they were: a float with a
/// whole value of 1e16 or more that fits a 64-bit integer is written with an exponent
/// (`1e16`), stored by `jsonb` as the decimal `10000000000000000`, and read back as an
/// integer. `-0.0` comes back as `0.0` (a `numeric` has no negative zero). Every other finite
/// `f64` (up to `f64::MAX` and down to the smallest subnormal) and every `i64`/`u64` comes back
/// exactly.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
///
/// ```
/// use checkpoint_core::validate::check_jsonb_numbers;
/// use serde_json::json;
///
/// assert!(check_jsonb_numbers("metadata", &json!({"n": 1e15, "big": 1e300, "i": 10_000_000_000_000_000u64})).is_ok());
/// assert!(check_jsonb_numbers("metadata", &json!({"n": 1e16})).is_err());
/// assert!(check_jsonb_numbers("metadata", &json!({"n": [-0.0]})).is_err());
/// assert!(check_jsonb_numbers("metadata", &json!({"n": 0.0, "i": 0})).is_ok());
/// ```
pub fn check_jsonb_numbers(field: &str, value: &Value) -> Result<()> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                // 2^64 and -2^63: the integer range serde_json reads a plain number into.
                let fits_an_integer =
                    (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f);
                if f == 0.0 && f.is_sign_negative() {
                    return Err(Error::invalid(
                        field,
                        "holds -0.0, which PostgreSQL's jsonb returns as 0.0 (its numbers \
                         have no negative zero); write 0.0, or the sign as its own value",
                    ));
                }
                if f.fract() == 0.0 && f.abs() >= 1e16 && fits_an_integer {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "holds the float {n}, which PostgreSQL's jsonb returns as the \
                             integer {f:.0}; write it as an integer or a string"
                        ),
                    ));
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    Ok(())
}

/// Checks an id-like string: not empty, at most [`MAX_ID_BYTES`] bytes, no NUL.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
pub fn check_id(field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, the limit is {MAX_ID_BYTES}", value.len()),
        ));
    }
    check_text(field, value)
}

fn check_text(field: &str, value: &str) -> Result<()> {
    refuse_nul(field, value)
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_LIMIT}, got {limit}"),
        ));
    }
    Ok(())
}

fn check_timestamp(timestamp: &OffsetDateTime) -> Result<()> {
    if !timestamp.nanosecond().is_multiple_of(1_000) {
        return Err(Error::invalid(
            "timestamp",
            "has sub-microsecond precision (use Checkpoint::with_timestamp to truncate it)",
        ));
    }
    let outside = |year: String| {
        Error::invalid(
            "timestamp",
            format!("{timestamp} falls in year {year} in UTC, outside 1..=9999"),
        )
    };
    // `to_offset` would panic where the UTC date passes what `time` holds (9999-12-31T12:00
    // at -12:00 is 10000-01-01 in UTC).
    let Some(utc) = timestamp.checked_to_offset(time::UtcOffset::UTC) else {
        let year = if timestamp.year() > 0 {
            "10000"
        } else {
            "-10000"
        };
        return Err(outside(year.into()));
    };
    if !(1..=9999).contains(&utc.year()) {
        return Err(outside(utc.year().to_string()));
    }
    Ok(())
}

/// Walks `value` without recursion (a hostile document may be nested thousands of levels deep),
/// refuses NUL characters and nesting deeper than `max_depth`, and returns the length of its
/// compact JSON text (as serde_json writes it), measured in the same walk instead of by
/// serializing the document.
fn check_shape(field: &str, value: &Value, max_depth: usize) -> Result<usize> {
    walk_shape(field, value, max_depth, |s| text_len(field, s))
}

/// Walks `value` without recursion, refuses nesting deeper than `max_depth`, and returns the
/// length of its compact JSON text with each string (keys included) measured by `string`,
/// which refuses what it must.
fn walk_shape(
    field: &str,
    value: &Value,
    max_depth: usize,
    mut string: impl FnMut(&str) -> Result<usize>,
) -> Result<usize> {
    let mut size = 0usize;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let own = match value {
            Value::String(s) => string(s)?,
            Value::Array(items) => {
                if depth + 1 > max_depth {
                    return Err(too_deep(field, max_depth));
                }
                stack.extend(items.iter().map(|v| (v, depth + 1)));
                // Brackets and commas.
                2 + items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                if depth + 1 > max_depth {
                    return Err(too_deep(field, max_depth));
                }
                let mut own = 2 + map.len().saturating_sub(1);
                for (key, v) in map {
                    // The key, quoted and escaped, and its colon.
                    own = own.saturating_add(string(key)?.saturating_add(1));
                    stack.push((v, depth + 1));
                }
                own
            }
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(n) => {
                let mut counter = CharCounter(0);
                // Display writes exactly what the serializer writes (itoa / ryu).
                let _ = std::fmt::Write::write_fmt(&mut counter, format_args!("{n}"));
                counter.0
            }
        };
        size = size.saturating_add(own);
    }
    Ok(size)
}

/// The length of `s` as a JSON string (quotes and escapes included); refuses NUL.
fn text_len(field: &str, s: &str) -> Result<usize> {
    // Extra bytes each byte costs when escaped: a table lookup per byte, no branch, so long
    // strings (a conversation's messages) are measured at memory speed.
    const EXTRA: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut b = 0;
        while b < 0x20 {
            table[b] = 5;
            b += 1;
        }
        table[0x08] = 1;
        table[0x0c] = 1;
        table[b'\n' as usize] = 1;
        table[b'\r' as usize] = 1;
        table[b'\t' as usize] = 1;
        table[b'"' as usize] = 1;
        table[b'\\' as usize] = 1;
        table
    };
    let by_table = |bytes: &[u8]| -> usize {
        bytes
            .iter()
            .map(|&b| usize::from(EXTRA[usize::from(b)]))
            .sum()
    };
    // Eight bytes at a time: a word with no control byte, quote or backslash (most of any
    // text) costs nothing extra and skips the table. Each test is exact about whether such a
    // byte is in the word, so only words that hold one are counted byte by byte.
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let plain = |w: u64| {
        !(has_zero(w ^ (ONES * u64::from(b'"')))
            || has_zero(w ^ (ONES * u64::from(b'\\')))
            || w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0)
    };
    let words = s.as_bytes().chunks_exact(8);
    let tail = by_table(words.remainder());
    let extra: usize = words
        .map(|word| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            if plain(u64::from_ne_bytes(bytes)) {
                0
            } else {
                by_table(word)
            }
        })
        .fold(tail, usize::saturating_add);
    if extra != 0 {
        refuse_nul(field, s)?;
    }
    Ok(s.len().saturating_add(extra).saturating_add(2))
}

/// Refuses text holding a NUL character, which PostgreSQL's text and JSONB cannot store: the
/// one check every input rule uses, a vectorised search.
fn refuse_nul(field: &str, text: &str) -> Result<()> {
    match memchr::memchr(0, text.as_bytes()) {
        Some(_) => Err(Error::invalid(field, "contains a NUL character")),
        None => Ok(()),
    }
}

/// Counts what is written to it.
struct CharCounter(usize);

impl std::fmt::Write for CharCounter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn too_deep(field: &str, max_depth: usize) -> Error {
    Error::invalid(field, format!("is nested deeper than {max_depth} levels"))
}

/// Measures the compact JSON text of `value` without building it.
fn check_size<T: serde::Serialize + ?Sized>(
    field: &str,
    value: &T,
    max_bytes: usize,
) -> Result<()> {
    let mut counter = ByteCounter {
        bytes: 0,
        max: max_bytes,
    };
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => Ok(()),
        Err(e) if e.is_io() => Err(Error::invalid(
            field,
            format!("is larger than {max_bytes} bytes"),
        )),
        Err(e) => Err(Error::Serialization(e)),
    }
}

/// Counts bytes and stops the writer as soon as the limit is passed.
struct ByteCounter {
    bytes: usize,
    max: usize,
}

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len();
        if self.bytes > self.max {
            return Err(io::Error::other("over the size limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The conformance suite's generated JSON, for the unit tests: its module when the
/// `conformance` feature builds it, its file otherwise.
#[cfg(all(test, not(feature = "conformance")))]
#[path = "conformance/strategies.rs"]
pub(crate) mod generated;
#[cfg(all(test, feature = "conformance"))]
pub(crate) use crate::conformance::strategies as generated;

#[cfg(test)]
mod tests {
    use super::generated;
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn depth_limit_cannot_exceed_what_parsers_read_back() {
        assert_eq!(
            Limits::default().with_max_json_depth(500).max_json_depth,
            100
        );
        assert_eq!(Limits::default().with_max_json_depth(10).max_json_depth, 10);
    }

    #[test]
    fn depth_limit_is_exact() {
        let limits = Limits::default();
        assert!(check_shape("state", &nested(100), limits.max_json_depth).is_ok());
        let err = check_shape("state", &nested(101), limits.max_json_depth).unwrap_err();
        assert!(err.is_invalid_field("state"), "{err}");
    }

    #[test]
    fn ten_thousand_levels_are_refused_without_overflowing_the_stack() {
        let deep = nested(10_000);
        let err = check_shape("state", &deep, 100).unwrap_err();
        assert!(err.to_string().contains("deeper than 100"), "{err}");
        // Dropping a Value recurses; unwrap it level by level so the test itself cannot overflow.
        let mut v = deep;
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn size_limit_counts_compact_json_text() {
        let value = json!("abcd"); // 6 bytes with quotes
        assert!(check_size("state", &value, 6).is_ok());
        assert!(check_size("state", &value, 5)
            .unwrap_err()
            .is_invalid_field("state"));
    }

    #[test]
    fn the_measured_size_is_the_compact_text_length() {
        let value = json!({"a\"b": ["x\\y\n\u{1}\u{7f}é", 1, -2.5e-300, u64::MAX, null, true, false, {}],
                           "": [[]], "n": 1.0});
        assert_eq!(
            check_shape("state", &value, 100).unwrap(),
            serde_json::to_vec(&value).unwrap().len()
        );
        assert!(Limits::default()
            .with_max_state_bytes(6)
            .check_json("state", &json!("abcd"), 6)
            .is_ok());
        assert!(Limits::default()
            .check_json("state", &json!("abcd"), 5)
            .unwrap_err()
            .is_invalid_field("state"));
    }

    proptest::proptest! {
        /// Strings of every length around the eight-byte words, made of plain text, every
        /// byte that is escaped, and multi-byte characters, wherever they fall in a word.
        #[test]
        fn a_string_measures_as_serde_json_writes_it(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::char::range('a', 'z'),
                    proptest::char::range('\u{1}', '\u{1f}'),
                    proptest::sample::select(vec!['"', '\\', '\u{7f}', 'é', '€', '😀', ' ', '!', '#', '[']),
                ],
                0..40,
            )
        ) {
            let text: String = text.into_iter().collect();
            proptest::prop_assert_eq!(
                text_len("state", &text).unwrap(),
                serde_json::to_string(&text).unwrap().len()
            );
        }

        /// The size limit holds to the byte whichever walk decides it (the bound from the
        /// unescaped strings, or the exact count): generated documents, escapes among them,
        /// against limits at, around and far from the length of their text.
        #[test]
        fn the_size_limit_holds_to_the_byte(
            value in generated::json_value(),
            slack in 0usize..16,
        ) {
            let len = serde_json::to_vec(&value).unwrap().len();
            let limits = Limits::default();
            for max in [
                len,
                len.saturating_sub(1),
                len + 1,
                len + slack,
                len.saturating_sub(slack),
                len / 2,
                len * 6 + 2,
            ] {
                let checked = limits.check_json("state", &value, max);
                proptest::prop_assert_eq!(checked.is_ok(), len <= max, "{} bytes, limit {}", len, max);
                if let Err(err) = checked {
                    proptest::prop_assert!(err.to_string().contains("larger than"), "{}", err);
                }
            }
        }

        #[test]
        fn the_measured_size_matches_serde_json(value in generated::json_value()) {
            proptest::prop_assert_eq!(
                check_shape("state", &value, 100).unwrap(),
                serde_json::to_vec(&value).unwrap().len()
            );
        }
    }

    #[test]
    fn floats_jsonb_turns_into_integers_are_refused_and_only_those() {
        for bad in [
            1e16,
            1.5e16,
            -1e16,
            1.8e19,
            1e17,
            -9.2e18,
            12345678901234567.0,
        ] {
            let err = check_jsonb_numbers("metadata", &json!({"x": [bad]})).unwrap_err();
            assert!(err.is_invalid_field("metadata"), "{bad}: {err}");
        }
        for good in [
            json!(1e15),
            json!(9_999_999_999_999_998.0),
            json!(2e19),
            json!(-9.3e18),
            json!(f64::MAX),
            json!(f64::MIN),
            json!(5e-324),
            json!(-5e-324),
            json!(0.0),
            json!(u64::MAX),
            json!(i64::MIN),
        ] {
            assert!(check_jsonb_numbers("metadata", &good).is_ok(), "{good}");
        }
    }

    #[test]
    fn nul_in_keys_and_strings_is_refused() {
        let limits = Limits::default();
        for v in [
            json!({"a\u{0}": 1}),
            json!(["x\u{0}y"]),
            json!({"a": {"b": "\u{0}"}}),
            json!({"long": format!("{}\u{0}", "a".repeat(5000))}),
        ] {
            assert!(check_shape("state", &v, 100)
                .unwrap_err()
                .is_invalid_field("state"));
            // The bounded walk, far below the limit, refuses it too.
            let err = limits.check_json("state", &v, 1 << 20).unwrap_err();
            assert!(err.to_string().contains("NUL"), "{err}");
        }
    }

    /// Text that escaping makes larger than the limit, though its characters are fewer: the
    /// bound cannot decide it, and the exact count refuses it; a byte more of limit accepts it.
    #[test]
    fn escapes_that_cross_the_limit_are_counted() {
        let value = json!(["\u{1}".repeat(100), "\"\n"]);
        let len = serde_json::to_vec(&value).unwrap().len();
        assert_eq!(len, 2 + 602 + 1 + 6);
        let limits = Limits::default();
        let err = limits.check_json("state", &value, len - 1).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(limits.check_json("state", &value, len).is_ok());
        // Deeper than the limit is refused before any size.
        let err = limits
            .check_json("state", &nested(101), 1 << 20)
            .unwrap_err();
        assert!(err.to_string().contains("deeper"), "{err}");
    }

    #[test]
    fn ids_are_bounded_and_clean() {
        assert!(check_id("id", &"a".repeat(MAX_ID_BYTES)).is_ok());
        assert!(check_id("id", &"a".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", "a\0b").is_err());
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        assert!(check_id("id", &"é".repeat(129)).is_err());
    }

    #[test]
    fn timestamps_outside_postgres_precision_or_range_are_refused() {
        use time::macros::datetime;
        assert!(check_timestamp(&datetime!(2024-01-01 00:00:00.000001 UTC)).is_ok());
        assert!(check_timestamp(&datetime!(2024-01-01 00:00:00.0000001 UTC)).is_err());
        assert!(check_timestamp(&datetime!(0000-12-31 00:00:00 UTC)).is_err());
    }

    #[test]
    fn negative_zero_is_refused_where_jsonb_keeps_it() {
        for bad in [json!(-0.0), json!({"a": [1, {"t": -0.0}]})] {
            let err = check_jsonb_numbers("metadata", &bad).unwrap_err();
            assert!(err.is_invalid_field("metadata"), "{bad}: {err}");
            assert!(err.to_string().contains("-0.0"), "{err}");
        }
    }

    #[test]
    fn instants_past_year_9999_in_utc_are_refused_not_a_panic() {
        use time::macros::datetime;
        for (at, year) in [
            (datetime!(9999-12-31 12:00:00 -12:00), "10000"),
            (datetime!(-9999-01-01 00:00:00 +01:00), "-10000"),
            (datetime!(9999-12-31 23:59:59.999999 -00:00:01), "10000"),
        ] {
            let err = check_timestamp(&at).unwrap_err();
            assert!(err.is_invalid_field("timestamp"), "{at}: {err}");
            assert!(err.to_string().contains(year), "{at}: {err}");
        }
        assert!(check_timestamp(&datetime!(9999-12-31 23:59:59.999999 UTC)).is_ok());
        assert!(check_timestamp(&datetime!(0001-01-01 01:00:00 +01:00)).is_ok());
        assert!(check_timestamp(&datetime!(0001-01-01 00:59:59 +01:00)).is_err());
    }

    proptest::proptest! {
        /// Every instant `time` can hold, at any offset: accepted exactly when its UTC form is in
        /// years 1 to 9999 with whole microseconds, refused as `timestamp` otherwise, and the
        /// builder never panics (its result passes exactly when the input's instant is in range).
        #[test]
        fn every_instant_is_accepted_or_refused_by_its_utc_year(at in generated::timestamp()) {
            let utc = at.checked_to_offset(time::UtcOffset::UTC);
            let in_range = utc.is_some_and(|u| (1..=9999).contains(&u.year()));
            let whole = at.nanosecond() % 1_000 == 0;
            match check_timestamp(&at) {
                Ok(()) => proptest::prop_assert!(in_range && whole, "{at}"),
                Err(err) => {
                    proptest::prop_assert!(!(in_range && whole), "{at}: {err}");
                    proptest::prop_assert!(err.is_invalid_field("timestamp"));
                }
            }
            let cp = crate::Checkpoint::new("e", "n", json!(1)).with_timestamp(at);
            proptest::prop_assert_eq!(check_timestamp(&cp.timestamp).is_ok(), in_range);
            if let Some(utc) = utc {
                proptest::prop_assert_eq!(cp.timestamp.offset(), time::UtcOffset::UTC);
                proptest::prop_assert_eq!(cp.timestamp, utc.replace_nanosecond(utc.nanosecond() / 1_000 * 1_000).unwrap());
            }
        }
    }
}
