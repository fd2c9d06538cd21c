//! A [`CheckpointStore`] in one SQLite file: durable, embedded, no server.
//!
//! `SqliteStore` keeps the whole contract of `checkpoint-core` (the conformance suite proves
//! it), like `MemoryStore`, but what it saves survives the process: kill the program, start it
//! again, and the workflow resumes.
//!
//! - **WAL mode**, with the durability of an acknowledged save chosen by [`Durability`]: by
//!   default (`Full`) every commit is on disk before `save` returns.
//! - **The version rule is the database's**: a unique index on `(execution_id, version)`.
//! - **Several processes may share one file.** Writes take SQLite's write lock at `BEGIN`
//!   (immediate transactions) and wait for it up to the busy timeout, then fail with the
//!   retryable [`Error::Unavailable`]; within one process they take turns on an async lock.
//! - **Versioned migrations** are recorded in the file (`checkpoint_migrations`); a file from a
//!   newer release is refused, not misread.
//! - **Group commit**: saves made while another write is in flight share one transaction and
//!   one sync to disk; each keeps its own outcome (a savepoint each) and is answered after the
//!   commit.
//! - **Deltas**: a state is stored as a delta against the state this store last saved or read
//!   for its execution, with a full snapshot at least every
//!   [`snapshot_every`](SqliteOptions::snapshot_every) versions, by the rule every backend
//!   shares (`checkpoint_format`). Every read rebuilds and checks the state against the content
//!   hash recorded when it was saved. Rows written by releases before schema 3 (whole JSON
//!   text) stay readable as they are.
//!
//! ```
//! use checkpoint_core::{Checkpoint, CheckpointStore};
//! use checkpoint_sqlite::{SqliteOptions, SqliteStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> checkpoint_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("checkpoints.db");
//! let store = SqliteStore::open(SqliteOptions::file(&path)).await?;
//! store.save(&Checkpoint::new("run-1", "start", serde_json::json!({"n": 1}))).await?;
//! drop(store);
//!
//! // A new process, the same file: the checkpoint is there.
//! let store = SqliteStore::open(SqliteOptions::file(&path)).await?;
//! assert_eq!(store.latest("run-1").await?.expect("saved").version, 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod chain;
mod codec;
mod commit;
mod error;
mod lease;
mod options;
mod pool;
mod read;
mod reencrypt;
mod row;
mod schema;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use checkpoint_core::lease::{check_fence, check_lease_request, check_ttl, LeaseRequest};
use checkpoint_core::retention::{self, RetentionSchedule, RetentionTask};
use checkpoint_core::telemetry::{Meter, System};
use checkpoint_core::validate::check_id;
use checkpoint_core::{
    Checkpoint, CheckpointStore, Error, ExecutionQuery, ExecutionSummary, Fence, Lease, Limits,
    ListQuery, Page, Result, RetentionPolicy, Verification,
};

pub use checkpoint_format::reseal::{ReencryptBatch, MAX_REENCRYPT_BATCH};
pub use commit::CommitStats;
pub use error::SqliteError;
pub use options::{Durability, Location, SqliteOptions, DEFAULT_BUSY_TIMEOUT, SQLITE_MAX_LENGTH};
pub use schema::SCHEMA_VERSION;

use checkpoint_format::cache::StateCache;
use checkpoint_format::codec::Compression;
use checkpoint_format::encoder::Encoder;

use crate::chain::Fetched;
use crate::pool::Db;
use crate::row::{RawRow, StoredRow};

/// The version of the SQLite library linked in (bundled with this crate), such as `3.50.2`.
pub fn sqlite_version() -> &'static str {
    rusqlite::version()
}

/// A checkpoint store in one SQLite database. Cloning it shares the pool.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// How states are stored: snapshots and deltas, by the rule every backend shares.
    encoder: Arc<Encoder>,
    options: SqliteOptions,
    migrated: Vec<i64>,
    /// Every operation's duration, as `db.system.name = sqlite`
    /// ([`telemetry`](checkpoint_core::telemetry)).
    meter: Meter,
    /// Scheduled retention, when the options ask for it; it holds the store weakly, so it ends
    /// with the last clone of the store.
    retention: Option<RetentionTask>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.options.location)
            .field("durability", &self.inner.options.durability)
            .finish_non_exhaustive()
    }
}

/// What [`SqliteStore::stats`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteStats {
    /// The highest migration recorded in the file.
    pub schema_version: Option<i64>,
    /// Checkpoints stored.
    pub checkpoints: u64,
    /// Executions with at least one checkpoint.
    pub executions: u64,
    /// The database's size (pages in use or free, times the page size), without its WAL.
    pub database_bytes: u64,
    /// The stored (compressed) states' bytes.
    pub state_bytes: u64,
}

impl SqliteStore {
    /// Opens (creating when missing) the database `options` name and brings its schema up to
    /// date.
    ///
    /// # Errors
    /// - [`Error::InvalidInput`] for invalid options;
    /// - [`Error::Unavailable`] when the file stays locked past the busy timeout;
    /// - [`Error::Backend`] when it cannot be opened, is not an SQLite database, or holds a
    ///   schema from a newer release ([`SqliteError::SchemaTooNew`]).
    pub async fn open(options: SqliteOptions) -> Result<SqliteStore> {
        let db = Db::open(&options)?;
        let migrated = if options.auto_migrate {
            db.read(|conn| schema::migrate(conn).map_err(SqliteError::into_core))
                .await?
        } else {
            db.read(|conn| schema::check(conn).map_err(SqliteError::into_core))
                .await?;
            Vec::new()
        };
        if !migrated.is_empty() {
            tracing::info!(?migrated, location = ?options.location, "migrated the checkpoint schema");
        }
        // Once the file and its schema exist.
        db.open_readers().await;
        let schedule = options.retention.clone();
        let encoder = Arc::new(Encoder {
            snapshot_every: options.snapshot_every,
            compression: Compression::Zstd { level: ZSTD_LEVEL },
            cache: Arc::new(StateCache::new(options.state_cache_bytes)),
            min_delta_bytes: options.min_delta_bytes,
            encryption: options.encryption.clone(),
            plain_below: PLAIN_BELOW,
            lz4_below: LZ4_BELOW,
        });
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            retention: schedule.map(|schedule| retention_task(weak.clone(), schedule)),
            db,
            encoder,
            options,
            migrated,
            meter: Meter::new(System::Sqlite, "checkpoints"),
        });
        Ok(SqliteStore { inner })
    }

    /// Opens the database a `sqlite:` URL names; see [`SqliteOptions::new`].
    ///
    /// # Errors
    /// As [`SqliteOptions::new`] and [`SqliteStore::open`].
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        Self::open(SqliteOptions::new(url)?).await
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    /// The migrations this store applied when it opened (empty when the file was current).
    pub fn migrated(&self) -> &[i64] {
        &self.inner.migrated
    }

    /// Counts and sizes, for operators.
    ///
    /// # Errors
    /// As any read.
    pub async fn stats(&self) -> Result<SqliteStats> {
        self.inner.db.read(|conn| read::stats(conn)).await
    }

    /// Checks that every checkpoint of `execution_id` (or, with `None`, of the whole file)
    /// reads back: each row's state, metadata and timestamp are decoded on their own, and each
    /// row that does not decode is reported with the reason, rather than stopping at the first.
    /// Nothing is written; writers go on meanwhile (the check reads one snapshot of the file).
    ///
    /// # Errors
    /// [`checkpoint_core::Error::InvalidInput`] for a bad execution id; as any read otherwise.
    /// Damage is reported in the result, never as an error.
    pub async fn verify(&self, execution_id: Option<&str>) -> Result<Verification> {
        if let Some(id) = execution_id {
            check_id("execution_id", id)?;
        }
        let execution_id = execution_id.map(str::to_owned);
        let encoder = Arc::clone(&self.inner.encoder);
        self.read(move |conn| read::verify(conn, &encoder, execution_id.as_deref()))
            .await
    }

    /// One batch of re-encryption: the rows with ids after `after` (from the first with
    /// `None`), at most `limit`, each state sealed under the write key of the store's keys
    /// ([`SqliteOptions::encryption`]) unless it already is; in one write transaction, the rows
    /// built on a rewritten row given its new tag, so every chain stays valid. Run batches,
    /// passing each one's `last_id` to the next, until `last_id` is `None`; writers go on
    /// between them, and a stopped run resumes from its last `last_id`. Rows of schema 1 and 2
    /// are sealed as snapshots.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `encryption` without keys, `limit` outside 1 to
    /// [`MAX_REENCRYPT_BATCH`], or `after` for a bad id; an
    /// [`EncryptionError`](checkpoint_format::sealing::EncryptionError) for a row sealed under a
    /// key the store does not hold (the batch changes nothing); as any write otherwise.
    pub async fn reencrypt(&self, after: Option<&str>, limit: usize) -> Result<ReencryptBatch> {
        self.inner
            .meter
            .observe("reencrypt", async {
                let after = checkpoint_format::reseal::check_batch(after, limit)?.to_owned();
                let encoder = Arc::clone(&self.inner.encoder);
                if encoder.encryption.is_none() {
                    return Err(Error::invalid(
                        "encryption",
                        "re-encryption needs encryption keys (SqliteOptions::encryption)",
                    ));
                }
                let batch = self
                    .inner
                    .db
                    .write(move |tx| reencrypt::batch(tx, &encoder, &after, limit))
                    .await?;
                // Remembered bases name the tags the rows had before.
                if batch.rewritten > 0 {
                    self.inner.encoder.cache.clear();
                }
                Ok(batch)
            })
            .await
    }

    /// How many saves went out in how many transactions: concurrent saves share one (group
    /// commit).
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.db.commit_stats()
    }

    /// Closes the pool and stops scheduled retention; every later call fails with
    /// [`Error::Unavailable`].
    pub fn close(&self) {
        if let Some(task) = &self.inner.retention {
            task.stop();
        }
        self.inner.db.close();
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.inner.db.read(move |conn| f(conn)).await
    }

    /// A short read of undecoded rows (`f`: by an index, a bounded number of rows) and the
    /// chains their deltas need, then their states rebuilt and handed to `finish`: the read
    /// runs on this thread when a quick reader is idle, through the pool otherwise; the states
    /// are rebuilt here when their stored bytes are few, on a blocking thread when not (a
    /// large state takes milliseconds to decompress and parse). With `remember`, the newest
    /// state read becomes the base of this store's next delta of its execution.
    async fn read_states<T, F, D>(&self, f: F, remember: bool, finish: D) -> Result<T>
    where
        F: Fn(&rusqlite::Connection) -> Result<Vec<RawRow>> + Send + 'static,
        D: FnOnce(Vec<Checkpoint>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let encoder = Arc::clone(&self.inner.encoder);
        let fetched: Fetched = match self
            .inner
            .db
            .read_here(|conn| chain::fetch(conn, &encoder, &f))
        {
            Some(fetched) => fetched?,
            None => {
                let encoder = Arc::clone(&encoder);
                self.read(move |conn| chain::fetch(conn, &encoder, &f))
                    .await?
            }
        };
        let small = fetched.state_bytes() <= DECODE_HERE;
        let rebuild = move || finish(chain::rebuild(fetched, &encoder, remember)?);
        if small {
            return rebuild();
        }
        tokio::task::spawn_blocking(rebuild)
            .await
            .map_err(|e| SqliteError::Panicked(e.to_string()).into_core())?
    }

    /// The row encoding of `checkpoint`: a delta when this store holds a usable base, never
    /// when `full`.
    fn stored_row(&self, checkpoint: &Checkpoint, full: bool) -> Result<StoredRow> {
        StoredRow::from_checkpoint(checkpoint, &self.inner.encoder, full)
    }
}

/// Stored state bytes up to which rows read quickly are decoded on the calling thread: a few
/// tens of microseconds of work at most.
const DECODE_HERE: usize = 16 * 1024;

/// Zstandard's level 1: most of the ratio of level 3 on JSON at a fraction of the time, which
/// matters while a save holds the write lock.
const ZSTD_LEVEL: i32 = 1;

/// JSON texts shorter than this are stored uncompressed: a frame header would eat the gain.
const PLAIN_BELOW: usize = 256;

/// JSON texts shorter than this (and not plain) are compressed with LZ4, not Zstandard: on
/// states of one or two kilobytes that reads each about 1.3 µs faster and writes it about
/// 3 µs faster, for some 30% more stored bytes (see `docs/sqlite.md`, "State storage").
const LZ4_BELOW: usize = 2 * 1024;

/// The background task of `schedule` over the store `weak` points to: each pass runs while the
/// store is alive, and the task ends once it is gone.
fn retention_task(weak: std::sync::Weak<Inner>, schedule: RetentionSchedule) -> RetentionTask {
    let every = schedule.every();
    RetentionTask::spawn(
        every,
        move || {
            let weak = weak.clone();
            let schedule = schedule.clone();
            async move {
                let Some(inner) = weak.upgrade() else {
                    return Err(Error::Unavailable {
                        message: "the store was dropped".into(),
                        source: None,
                    });
                };
                let store = SqliteStore { inner };
                let pause = schedule.pause_between_batches();
                retention::recorded(
                    &store.inner.meter,
                    retention::prune_in_batches(&store, schedule.policy(), || {
                        tokio::time::sleep(pause)
                    }),
                )
                .await
            }
        },
        |outcome| match outcome {
            Ok(pass) => tracing::info!(
                batches = pass.batches,
                removed = pass.removed,
                "scheduled retention pass"
            ),
            Err(err) => tracing::warn!(error = %err, "scheduled retention pass failed"),
        },
    )
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    fn limits(&self) -> Limits {
        self.inner.options.limits
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<i64> {
        self.inner
            .meter
            .observe("save", async {
                self.limits().check_checkpoint(checkpoint)?;
                let row = self.stored_row(checkpoint, false)?;
                if self.inner.options.refuse_unleased {
                    let execution = checkpoint.execution_id.clone();
                    return self
                        .inner
                        .db
                        .write(move |tx| {
                            lease::unleased(tx, &execution)?;
                            write::save(tx, &row)
                        })
                        .await;
                }
                self.inner.db.save(row).await
            })
            .await
    }

    async fn load(&self, id: &str) -> Result<Checkpoint> {
        self.inner
            .meter
            .observe("load", async {
                check_id("id", id)?;
                let wanted = id.to_owned();
                let missing = id.to_owned();
                self.read_states(
                    move |conn| Ok(read::load(conn, &wanted)?.into_iter().collect()),
                    true,
                    move |mut found| found.pop().ok_or(Error::NotFound { id: missing }),
                )
                .await
            })
            .await
    }

    async fn list(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        self.inner
            .meter
            .observe("list", async {
                check_id("execution_id", execution_id)?;
                let execution_id = execution_id.to_owned();
                self.read_states(move |conn| read::list(conn, &execution_id), false, Ok)
                    .await
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        self.inner
            .meter
            .observe("delete", async {
                check_id("id", id)?;
                let id = id.to_owned();
                let guarded = self.inner.options.refuse_unleased;
                let encoder = Arc::clone(&self.inner.encoder);
                self.inner
                    .db
                    .write(move |tx| {
                        if guarded {
                            if let Some(execution) = read::execution_of(tx, &id)? {
                                lease::unleased(tx, &execution)?;
                            }
                        }
                        write::delete(tx, &encoder, &id, None)
                    })
                    .await
            })
            .await
    }

    async fn clear(&self, execution_id: &str) -> Result<u64> {
        self.inner
            .meter
            .observe("clear", async {
                check_id("execution_id", execution_id)?;
                self.inner.encoder.cache.forget(execution_id);
                let execution_id = execution_id.to_owned();
                let guarded = self.inner.options.refuse_unleased;
                self.inner
                    .db
                    .write(move |tx| {
                        if guarded {
                            lease::unleased(tx, &execution_id)?;
                        }
                        write::clear(tx, &execution_id)
                    })
                    .await
            })
            .await
    }

    async fn latest(&self, execution_id: &str) -> Result<Option<Checkpoint>> {
        self.inner
            .meter
            .observe("latest", async {
                check_id("execution_id", execution_id)?;
                let execution_id = execution_id.to_owned();
                self.read_states(
                    move |conn| Ok(read::latest(conn, &execution_id)?.into_iter().collect()),
                    true,
                    |mut found| Ok(found.pop()),
                )
                .await
            })
            .await
    }

    async fn list_page(&self, query: &ListQuery) -> Result<Page> {
        self.inner
            .meter
            .observe("list_page", async {
                self.limits().check_list_query(query)?;
                let query = query.clone();
                let limit = query.limit;
                let finish = move |items| Ok(Page::from_overfetch(items, limit));
                if !read::unfiltered(&query) {
                    // Metadata filters may skip any number of rows: not a short read.
                    let encoder = Arc::clone(&self.inner.encoder);
                    return self
                        .read(move |conn| {
                            let fetched = chain::fetch(conn, &encoder, |conn| {
                                read::page_matches(conn, &query)
                            })?;
                            finish(chain::rebuild(fetched, &encoder, false)?)
                        })
                        .await;
                }
                self.read_states(move |conn| read::page_rows(conn, &query), false, finish)
                    .await
            })
            .await
    }

    async fn save_batch(&self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
        self.inner
            .meter
            .observe("save_batch", async {
                self.limits().check_batch(checkpoints)?;
                if checkpoints.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = checkpoints
                    .iter()
                    .map(|c| self.stored_row(c, true))
                    .collect::<Result<Vec<_>>>()?;
                let guarded = self.inner.options.refuse_unleased;
                self.inner
                    .db
                    .write(move |tx| {
                        if guarded {
                            rows.iter()
                                .try_for_each(|row| lease::unleased(tx, &row.execution_id))?;
                        }
                        write::save_all(tx, &rows)
                    })
                    .await
            })
            .await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionSummary>> {
        self.inner
            .meter
            .observe("list_executions", async {
                self.limits().check_execution_query(query)?;
                let query = query.clone();
                self.read(move |conn| read::executions(conn, &query)).await
            })
            .await
    }

    async fn prune(&self, policy: &RetentionPolicy) -> Result<u64> {
        self.inner
            .meter
            .observe("prune", async {
                self.limits().check_retention(policy)?;
                let policy = policy.clone();
                let guarded = self.inner.options.refuse_unleased;
                let lazily = policy.lazy_flush;
                let encoder = Arc::clone(&self.inner.encoder);
                if policy.execution_id.is_some() && !guarded {
                    // Retention after a save: shares a commit with waiting saves.
                    return self.inner.db.prune_execution(policy, encoder).await;
                }
                let prune = move |tx: &rusqlite::Transaction<'_>| {
                    if let Some(execution) = policy.execution_id.as_deref().filter(|_| guarded) {
                        lease::unleased(tx, execution)?;
                    }
                    write::prune(tx, &encoder, &policy)
                };
                if lazily {
                    self.inner.db.write_lazily(prune).await
                } else {
                    self.inner.db.write(prune).await
                }
            })
            .await
    }

    async fn fork(&self, checkpoint_id: &str, new_execution_id: &str) -> Result<Checkpoint> {
        self.inner
            .meter
            .observe("fork", async {
                check_id("id", checkpoint_id)?;
                check_id("execution_id", new_execution_id)?;
                let (id, target, limits) = (
                    checkpoint_id.to_owned(),
                    new_execution_id.to_owned(),
                    self.limits(),
                );
                let guarded = self.inner.options.refuse_unleased;
                let encoder = Arc::clone(&self.inner.encoder);
                self.inner
                    .db
                    .write(move |tx| {
                        if guarded {
                            lease::unleased(tx, &target)?;
                        }
                        write::fork(tx, &encoder, &limits, &id, &target)
                    })
                    .await
            })
            .await
    }

    async fn acquire(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.inner
            .meter
            .observe("acquire", async {
                let ttl = check_lease_request(execution_id, owner, ttl)?;
                let (execution_id, owner) = (execution_id.to_owned(), owner.to_owned());
                self.inner
                    .db
                    .write(move |tx| {
                        let request = LeaseRequest::Acquire { owner: &owner, ttl };
                        lease::change(tx, &execution_id, request)
                    })
                    .await
            })
            .await
    }

    async fn take_over(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.inner
            .meter
            .observe("take_over", async {
                let ttl = check_lease_request(execution_id, owner, ttl)?;
                let (execution_id, owner) = (execution_id.to_owned(), owner.to_owned());
                self.inner
                    .db
                    .write(move |tx| {
                        let request = LeaseRequest::TakeOver { owner: &owner, ttl };
                        lease::change(tx, &execution_id, request)
                    })
                    .await
            })
            .await
    }

    async fn renew(&self, held: &Lease, ttl: Duration) -> Result<Lease> {
        self.inner
            .meter
            .observe("renew", async {
                check_fence(&held.fence())?;
                let request = LeaseRequest::Renew {
                    token: held.token,
                    ttl: check_ttl(ttl)?,
                };
                let execution_id = held.execution_id.clone();
                self.inner
                    .db
                    .write(move |tx| lease::change(tx, &execution_id, request))
                    .await
            })
            .await
    }

    async fn release(&self, held: &Lease) -> Result<()> {
        self.inner
            .meter
            .observe("release", async {
                check_fence(&held.fence())?;
                let request = LeaseRequest::Release { token: held.token };
                let execution_id = held.execution_id.clone();
                self.inner
                    .db
                    .write(move |tx| lease::change(tx, &execution_id, request).map(drop))
                    .await
            })
            .await
    }

    async fn lease(&self, execution_id: &str) -> Result<Option<Lease>> {
        self.inner
            .meter
            .observe("lease", async {
                check_id("execution_id", execution_id)?;
                let execution_id = execution_id.to_owned();
                self.read(move |conn| lease::live(conn, &execution_id))
                    .await
            })
            .await
    }

    async fn save_fenced(&self, fence: &Fence, checkpoint: &Checkpoint) -> Result<i64> {
        self.inner
            .meter
            .observe("save", async {
                self.limits().check_fenced_checkpoint(fence, checkpoint)?;
                let row = self.stored_row(checkpoint, false)?;
                self.fenced(fence, move |tx| write::save(tx, &row)).await
            })
            .await
    }

    async fn save_batch_fenced(
        &self,
        fence: &Fence,
        checkpoints: &[Checkpoint],
    ) -> Result<Vec<i64>> {
        self.inner
            .meter
            .observe("save_batch", async {
                self.limits().check_fenced_batch(fence, checkpoints)?;
                let rows = checkpoints
                    .iter()
                    .map(|c| self.stored_row(c, true))
                    .collect::<Result<Vec<_>>>()?;
                self.fenced(fence, move |tx| write::save_all(tx, &rows))
                    .await
            })
            .await
    }

    async fn delete_fenced(&self, fence: &Fence, id: &str) -> Result<bool> {
        self.inner
            .meter
            .observe("delete", async {
                check_fence(fence)?;
                check_id("id", id)?;
                let (id, execution_id) = (id.to_owned(), fence.execution_id.clone());
                let encoder = Arc::clone(&self.inner.encoder);
                self.fenced(fence, move |tx| {
                    write::delete(tx, &encoder, &id, Some(&execution_id))
                })
                .await
            })
            .await
    }

    async fn clear_fenced(&self, fence: &Fence) -> Result<u64> {
        self.inner
            .meter
            .observe("clear", async {
                check_fence(fence)?;
                self.inner.encoder.cache.forget(&fence.execution_id);
                let execution_id = fence.execution_id.clone();
                self.fenced(fence, move |tx| write::clear(tx, &execution_id))
                    .await
            })
            .await
    }

    async fn prune_fenced(&self, fence: &Fence, policy: &RetentionPolicy) -> Result<u64> {
        self.inner
            .meter
            .observe("prune", async {
                let policy = self.limits().check_fenced_retention(fence, policy)?;
                let encoder = Arc::clone(&self.inner.encoder);
                self.fenced(fence, move |tx| write::prune(tx, &encoder, &policy))
                    .await
            })
            .await
    }

    async fn fork_fenced(&self, fence: &Fence, checkpoint_id: &str) -> Result<Checkpoint> {
        self.inner
            .meter
            .observe("fork", async {
                check_fence(fence)?;
                check_id("id", checkpoint_id)?;
                let (id, target, limits) = (
                    checkpoint_id.to_owned(),
                    fence.execution_id.clone(),
                    self.limits(),
                );
                let encoder = Arc::clone(&self.inner.encoder);
                self.fenced(fence, move |tx| {
                    write::fork(tx, &encoder, &limits, &id, &target)
                })
                .await
            })
            .await
    }
}

impl SqliteStore {
    /// Runs the write `f` in one immediate transaction after checking `fence` in it: no other
    /// process can take the lease over between the check and the commit.
    async fn fenced<T, F>(&self, fence: &Fence, f: F) -> Result<T>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let fence = fence.clone();
        self.inner
            .db
            .write(move |tx| {
                lease::check(tx, &fence)?;
                f(tx)
            })
            .await
    }
}

impl From<SqliteError> for Error {
    fn from(err: SqliteError) -> Self {
        err.into_core()
    }
}
