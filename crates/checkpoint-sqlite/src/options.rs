//! [`SqliteOptions`]: where the database is and how durable each save is.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use checkpoint_core::retention::RetentionSchedule;
use checkpoint_core::{Error, Limits, Result};
use checkpoint_format::sealing::Encryption;
use percent_encoding::percent_decode_str;

/// SQLite's largest string or blob (its compiled-in `SQLITE_MAX_LENGTH`), which also bounds a
/// whole row: state, metadata and ids together must fit.
pub const SQLITE_MAX_LENGTH: usize = 1_000_000_000;

/// Room kept in a row for everything but state and metadata (four ids, the header of each
/// value).
const ROW_OVERHEAD: usize = 64 * 1024;

/// How long a statement waits for another connection's lock before failing with
/// [`Error::Unavailable`], unless set: 5 s.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// When an acknowledged save is safe: SQLite's `synchronous` setting, in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=NORMAL`: a save survives the process crashing or being killed, but the last
    /// saves before a power loss or an operating-system crash may be rolled back (never
    /// corrupted). The fastest setting: the write-ahead log is synced only at checkpoints.
    Normal,
    /// `synchronous=FULL` (the default): every commit is synced to disk before `save`
    /// returns, so an acknowledged save also survives a power loss.
    #[default]
    Full,
    /// `synchronous=EXTRA`: as `Full`, and the directory is synced too when the log is reset,
    /// for file systems that need it.
    Extra,
}

impl Durability {
    /// The value of SQLite's `synchronous` pragma this setting stands for.
    ///
    /// ```
    /// assert_eq!(checkpoint_sqlite::Durability::Full.pragma(), "FULL");
    /// ```
    pub fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
            Durability::Extra => "EXTRA",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pragma().to_ascii_lowercase())
    }
}

impl FromStr for Durability {
    type Err = Error;

    /// `normal`, `full` or `extra`, in any case.
    fn from_str(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "normal" => Ok(Durability::Normal),
            "full" => Ok(Durability::Full),
            "extra" => Ok(Durability::Extra),
            _ => Err(Error::invalid(
                "synchronous",
                format!("{text:?} is not normal, full or extra"),
            )),
        }
    }
}

/// Where the database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A file, created when missing.
    File(PathBuf),
    /// A private in-memory database, gone when the store is dropped.
    Memory,
}

/// How to open a [`SqliteStore`](crate::SqliteStore).
///
/// ```
/// use std::time::Duration;
/// use checkpoint_sqlite::{Durability, SqliteOptions};
///
/// let options = SqliteOptions::file("/var/lib/app/checkpoints.db")
///     .durability(Durability::Normal)
///     .busy_timeout(Duration::from_secs(10));
/// let same = SqliteOptions::new(
///     "sqlite:///var/lib/app/checkpoints.db?synchronous=normal&busy_timeout_ms=10000",
/// )?;
/// assert_eq!(options, same);
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SqliteOptions {
    pub(crate) location: Location,
    pub(crate) durability: Durability,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) limits: Limits,
    pub(crate) auto_migrate: bool,
    pub(crate) retention: Option<RetentionSchedule>,
    pub(crate) refuse_unleased: bool,
    pub(crate) snapshot_every: u32,
    pub(crate) state_cache_bytes: usize,
    pub(crate) min_delta_bytes: usize,
    pub(crate) encryption: Option<Encryption>,
}

impl SqliteOptions {
    /// Default longest chain of rows a read rebuilds a state from: a full snapshot at least
    /// every 64 versions, as on PostgreSQL (see `docs/sqlite.md`, "State storage", for the
    /// measurements).
    pub const DEFAULT_SNAPSHOT_EVERY: u32 = 64;
    /// Default budget of the states kept as the bases of the next deltas: 32 MiB.
    pub const DEFAULT_STATE_CACHE_BYTES: usize = 32 * 1024 * 1024;
    /// Default smallest state stored as a delta: 2 KiB.
    pub const DEFAULT_MIN_DELTA_BYTES: usize = 2048;

    /// The database in the file at `path` (created when missing), with the defaults: full
    /// durability, a 5 s busy timeout, four connections.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            location: Location::File(path.into()),
            durability: Durability::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_connections: 4,
            limits: Limits::default(),
            auto_migrate: true,
            retention: None,
            refuse_unleased: false,
            snapshot_every: Self::DEFAULT_SNAPSHOT_EVERY,
            state_cache_bytes: Self::DEFAULT_STATE_CACHE_BYTES,
            min_delta_bytes: Self::DEFAULT_MIN_DELTA_BYTES,
            encryption: None,
        }
    }

    /// A private in-memory database: nothing survives the store. It has one connection,
    /// because each SQLite connection to `:memory:` is a database of its own.
    pub fn in_memory() -> Self {
        SqliteOptions {
            location: Location::Memory,
            max_connections: 1,
            ..Self::file(":memory:")
        }
    }

    /// Options from a URL: `sqlite://PATH` (`sqlite:///abs/path.db` or `sqlite://relative.db`),
    /// `sqlite:PATH`, or `sqlite::memory:`. The path is percent-decoded. Query parameters:
    /// `synchronous=normal|full|extra`, `busy_timeout_ms=N`, `max_connections=N`,
    /// `snapshot_every=N`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the part at fault (`database_url`, or the parameter).
    pub fn new(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| Error::invalid("database_url", "does not start with sqlite:"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = path.strip_prefix("//").unwrap_or(path);
        let decoded = percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| Error::invalid("database_url", "the path is not UTF-8 once decoded"))?;
        let mut options = match &*decoded {
            "" => return Err(Error::invalid("database_url", "names no file")),
            ":memory:" => Self::in_memory(),
            path if path.contains('\0') => {
                return Err(Error::invalid("database_url", "the path contains NUL"))
            }
            path => Self::file(path),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "synchronous" => options = options.durability(value.parse()?),
                "busy_timeout_ms" => {
                    let ms = parse_number(key, value)?;
                    options = options.busy_timeout(Duration::from_millis(ms));
                }
                "snapshot_every" => {
                    let n = parse_number(key, value)?;
                    let n = u32::try_from(n)
                        .map_err(|_| Error::invalid(key, format!("{value} is too large")))?;
                    options = options.snapshot_every(n);
                }
                "max_connections" => {
                    let n = parse_number(key, value)?;
                    let n = usize::try_from(n)
                        .map_err(|_| Error::invalid(key, format!("{value} is too large")))?;
                    options = options.max_connections(n);
                }
                _ => {
                    return Err(Error::invalid(
                        "database_url",
                        format!(
                            "unknown parameter {key:?} (known: synchronous, busy_timeout_ms, \
                             max_connections, snapshot_every)"
                        ),
                    ))
                }
            }
        }
        options.validate()?;
        Ok(options)
    }

    /// When a save is acknowledged; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a statement waits for a lock held by another connection or process before
    /// failing with [`Error::Unavailable`]: 0 ms to `i32::MAX` ms.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Most open connections (1 to 64). Writes take turns whatever the number; more
    /// connections let more reads run beside them. An in-memory database always has one.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// The size and shape limits saves must keep. State and metadata together must fit in one
    /// SQLite row (under [`SQLITE_MAX_LENGTH`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether opening the store brings the file's schema up to date (the default), creating
    /// the tables in a new file. Off, a file that is not current is refused with
    /// [`SqliteError::SchemaOutdated`](crate::SqliteError::SchemaOutdated) and left unchanged:
    /// for tools that must not write, and for deployments that migrate in a separate step.
    pub fn auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
        self
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The file, unless the database is in memory.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// Refuses every unfenced write (save, batch, delete, clear, prune of one execution, fork
    /// into one) of an execution whose lease is unexpired with
    /// [`Error::LeaseHeld`](checkpoint_core::Error::LeaseHeld), checked in the write's own
    /// transaction (default: off; see [`checkpoint_core::lease`]). Unfenced saves then do not
    /// join group commit.
    pub fn refuse_unleased_writes(mut self, on: bool) -> Self {
        self.refuse_unleased = on;
        self
    }

    /// How states are stored: a delta against the state this store last saved or read for
    /// the execution, with a full snapshot at least every `n` versions (1 to
    /// [`checkpoint_format::encoder::MAX_SNAPSHOT_EVERY`]; default
    /// [`Self::DEFAULT_SNAPSHOT_EVERY`]). 1 stores every state whole. A read rebuilds a state
    /// from at most `n` rows of its execution, read in one statement. Every store reads every
    /// form, so the setting can change at any time and processes with different settings can
    /// share a file; it decides only how new checkpoints are written. Checked by
    /// [`validate`](Self::validate).
    ///
    /// ```
    /// use checkpoint_sqlite::SqliteOptions;
    ///
    /// let whole = SqliteOptions::file("checkpoints.db").snapshot_every(1);
    /// assert!(whole.validate().is_ok());
    /// let err = SqliteOptions::file("checkpoints.db").snapshot_every(0).validate().unwrap_err();
    /// assert!(err.is_invalid_field("snapshot_every"));
    /// ```
    pub fn snapshot_every(mut self, n: u32) -> Self {
        self.snapshot_every = n;
        self
    }

    /// How many bytes of states (counted as compact JSON) the store keeps as the bases of its
    /// next deltas, one per execution, least recently used first out (default
    /// [`Self::DEFAULT_STATE_CACHE_BYTES`]). 0 keeps none, so every save is a full snapshot.
    pub fn state_cache_bytes(mut self, bytes: usize) -> Self {
        self.state_cache_bytes = bytes;
        self
    }

    /// States smaller than this (as compact JSON) are stored whole (default
    /// [`Self::DEFAULT_MIN_DELTA_BYTES`]): a delta would save a few hundred bytes and lengthen
    /// every later read of its chain.
    pub fn min_delta_bytes(mut self, bytes: usize) -> Self {
        self.min_delta_bytes = bytes;
        self
    }

    /// Seals every state this store writes (snapshots and deltas) with AES-256-GCM under the
    /// write key of `keys`, and opens states sealed under any key `keys` holds (default: none;
    /// states are then written plain, and sealed ones are refused with
    /// [`EncryptionError`](checkpoint_format::sealing::EncryptionError) naming their key). The
    /// same payloads as PostgreSQL's: the content hash travels inside the seal, and the row
    /// records an opaque tag. Rotate with a new write key and the old one as a read key, then
    /// [`SqliteStore::reencrypt`](crate::SqliteStore::reencrypt). The keys never appear in
    /// `Debug` output.
    ///
    /// ```
    /// use checkpoint_format::sealing::{Encryption, EncryptionKey};
    /// use checkpoint_sqlite::SqliteOptions;
    ///
    /// let keys = Encryption::new(EncryptionKey::new("2026-12", &[7; 32])?);
    /// let options = SqliteOptions::file("checkpoints.db").encryption(keys);
    /// assert_eq!(options.encryption_keys().map(|k| k.write_key_id()), Some("2026-12"));
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    pub fn encryption(mut self, keys: Encryption) -> Self {
        self.encryption = Some(keys);
        self
    }

    /// The keys set by [`encryption`](Self::encryption).
    pub fn encryption_keys(&self) -> Option<&Encryption> {
        self.encryption.as_ref()
    }

    /// The snapshot distance set by [`snapshot_every`](Self::snapshot_every).
    pub fn snapshot_distance(&self) -> u32 {
        self.snapshot_every
    }

    /// The chosen durability.
    pub fn durability_setting(&self) -> Durability {
        self.durability
    }

    /// Applies `schedule` in the background while the store is open (default: none): every
    /// interval, one execution at a time, each in its own short transaction, pausing between
    /// them (see [`checkpoint_core::retention`]). The task ends when the last clone of the
    /// store is dropped or the store is closed. Checked by [`validate`](Self::validate).
    ///
    /// ```
    /// use std::time::Duration;
    /// use checkpoint_core::{retention::RetentionSchedule, RetentionPolicy};
    /// use checkpoint_sqlite::SqliteOptions;
    ///
    /// let options = SqliteOptions::file("checkpoints.db").retention(RetentionSchedule::new(
    ///     RetentionPolicy::keep_last(100),
    ///     Duration::from_secs(3600),
    /// ));
    /// assert!(options.validate().is_ok());
    /// ```
    pub fn retention(mut self, schedule: RetentionSchedule) -> Self {
        self.retention = Some(schedule);
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the setting at fault.
    pub fn validate(&self) -> Result<()> {
        if self.busy_timeout.as_millis() > i32::MAX as u128 {
            return Err(Error::invalid(
                "busy_timeout",
                format!("{:?} is longer than i32::MAX ms", self.busy_timeout),
            ));
        }
        checkpoint_format::encoder::check_snapshot_every(self.snapshot_every)?;
        if !(1..=64).contains(&self.max_connections) {
            return Err(Error::invalid(
                "max_connections",
                format!("{} is outside 1..=64", self.max_connections),
            ));
        }
        if let Some(schedule) = &self.retention {
            schedule.validate(&self.limits)?;
        }
        if self.location == Location::Memory && self.max_connections != 1 {
            return Err(Error::invalid(
                "max_connections",
                "an in-memory database has exactly one connection",
            ));
        }
        let row = self
            .limits
            .max_state_bytes
            .checked_add(self.limits.max_metadata_bytes)
            .and_then(|n| n.checked_add(ROW_OVERHEAD));
        if row.is_none_or(|n| n > SQLITE_MAX_LENGTH) {
            return Err(Error::invalid(
                "limits",
                format!(
                    "max_state_bytes ({}) plus max_metadata_bytes ({}) must stay below SQLite's \
                     row limit of {} bytes less {} for the rest of the row",
                    self.limits.max_state_bytes,
                    self.limits.max_metadata_bytes,
                    SQLITE_MAX_LENGTH,
                    ROW_OVERHEAD
                ),
            ));
        }
        Ok(())
    }
}

fn parse_number(key: &str, value: &str) -> Result<u64> {
    value
        .parse()
        .map_err(|_| Error::invalid(key, format!("{value:?} is not a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn url_forms() {
        let abs = SqliteOptions::new("sqlite:///tmp/a.db").unwrap();
        assert_eq!(abs.path(), Some(Path::new("/tmp/a.db")));
        let rel = SqliteOptions::new("sqlite://data/a.db").unwrap();
        assert_eq!(rel.path(), Some(Path::new("data/a.db")));
        let bare = SqliteOptions::new("sqlite:a.db").unwrap();
        assert_eq!(bare.path(), Some(Path::new("a.db")));
        let spaced = SqliteOptions::new("sqlite:///tmp/my%20db%3F.db").unwrap();
        assert_eq!(spaced.path(), Some(Path::new("/tmp/my db?.db")));
        for memory in ["sqlite::memory:", "sqlite://:memory:"] {
            let options = SqliteOptions::new(memory).unwrap();
            assert_eq!(options.location(), &Location::Memory);
            assert_eq!(options.max_connections, 1);
        }
        let tuned = SqliteOptions::new(
            "sqlite:x.db?synchronous=EXTRA&busy_timeout_ms=250&max_connections=2",
        )
        .unwrap();
        assert_eq!(tuned.durability, Durability::Extra);
        assert_eq!(tuned.busy_timeout, Duration::from_millis(250));
        assert_eq!(tuned.max_connections, 2);
    }

    #[test]
    fn bad_urls_name_their_fault() {
        let cases = [
            ("postgres://x", "database_url"),
            ("sqlite://", "database_url"),
            ("sqlite:", "database_url"),
            ("sqlite:a.db?synchronous=off", "synchronous"),
            ("sqlite:a.db?busy_timeout_ms=-1", "busy_timeout_ms"),
            ("sqlite:a.db?busy_timeout_ms=99999999999", "busy_timeout"),
            ("sqlite:a.db?max_connections=0", "max_connections"),
            ("sqlite:a.db?max_connections=65", "max_connections"),
            ("sqlite::memory:?max_connections=2", "max_connections"),
            ("sqlite:a.db?cache=shared", "database_url"),
            ("sqlite:%FF.db", "database_url"),
            ("sqlite:a%00.db", "database_url"),
        ];
        for (url, field) in cases {
            let err = SqliteOptions::new(url).expect_err(url);
            assert!(err.is_invalid_field(field), "{url}: {err}");
        }
    }

    #[test]
    fn limits_must_fit_one_row() {
        let fits = Limits::default().with_max_state_bytes(900_000_000);
        assert!(SqliteOptions::in_memory().limits(fits).validate().is_ok());
        for state in [SQLITE_MAX_LENGTH, usize::MAX] {
            let err = SqliteOptions::in_memory()
                .limits(Limits::default().with_max_state_bytes(state))
                .validate()
                .unwrap_err();
            assert!(err.is_invalid_field("limits"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn any_path_round_trips_through_a_percent_encoded_url(path in "[^\u{0}]{1,64}") {
            let encoded: String = percent_encoding::utf8_percent_encode(
                &path,
                percent_encoding::NON_ALPHANUMERIC,
            )
            .collect();
            let options = SqliteOptions::new(&format!("sqlite://{encoded}")).unwrap();
            if path == ":memory:" {
                prop_assert_eq!(options.location(), &Location::Memory);
            } else {
                prop_assert_eq!(options.path(), Some(Path::new(&path)));
            }
        }

        #[test]
        fn busy_timeouts_are_accepted_exactly_up_to_the_ceiling(ms in 0u64..=u64::MAX / 2) {
            let result = SqliteOptions::file("a.db")
                .busy_timeout(Duration::from_millis(ms))
                .validate();
            prop_assert_eq!(result.is_ok(), ms <= i32::MAX as u64);
        }

        #[test]
        fn connection_counts_are_accepted_exactly_in_range(n in 0usize..200) {
            let result = SqliteOptions::file("a.db").max_connections(n).validate();
            prop_assert_eq!(result.is_ok(), (1..=64).contains(&n));
        }
    }
}
