//! [`PostgresStore`] and its [`CheckpointStore`] implementation: each method checks its input,
//! then hands over to the module that does the work (`read`, `write`, `batch`, the coalescing
//! writer in `group`, `partitions`, `reencrypt`, `verify`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use checkpoint_core::lease::{check_fence, check_lease_request, check_ttl, LeaseRequest};
use checkpoint_core::telemetry::{Meter, System};
use checkpoint_core::validate::check_id;
use checkpoint_core::{
    Checkpoint, CheckpointStore, Error, ExecutionQuery, ExecutionSummary, Fence, IdScope, Lease,
    Limits, ListQuery, Page, Result, RetentionPolicy, Verification,
};
use tracing::instrument;

use crate::error::DbError;
use crate::schema::{self, constraints, statements, MigrationReport};
use checkpoint_format::cache::StateCache;

use crate::state::encoding;
use crate::{
    DbPool, DeadpoolPool, GroupCommitStats, Param, PostgresOptions, ReencryptBatch, RetryPolicy,
    Row, Sql, StateEncoding, Statements, TableLayout, TableName,
};

pub(crate) mod batch;
pub(crate) mod floors;
pub(crate) mod group;
pub(crate) mod lease;
pub(crate) mod leaves;
pub(crate) mod notify;
pub(crate) mod partitions;
pub(crate) mod read;
pub(crate) mod reencrypt;
pub(crate) mod retention;
pub(crate) mod verify;
pub(crate) mod write;

/// How often an append that keeps losing races for the next version tries again before it
/// reports a retryable error. Each loss means another writer succeeded; with the jittered
/// backoff below, 32 writers racing on one execution never come near it.
pub(crate) const MAX_APPEND_ATTEMPTS: usize = 1_000;

/// The pause after losing the race for the next version `attempt` times: random, growing from
/// 0.1 ms to at most 10 ms, so racing appenders spread out instead of colliding again in step.
pub(crate) fn append_backoff(attempt: usize) -> std::time::Duration {
    let ceiling_micros = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    std::time::Duration::from_micros(fastrand::u64(0..=ceiling_micros))
}

/// A [`CheckpointStore`] on PostgreSQL. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<dyn DbPool>,
    table: TableName,
    sql: Arc<statements::Statements>,
    constraints: Arc<constraints::Constraints>,
    limits: Limits,
    retry: RetryPolicy,
    encoder: encoding::Encoder,
    group: Option<Arc<group::Committer>>,
    floors: Option<Arc<floors::VersionFloors>>,
    /// On the time-partitioned layout: where each execution's rows live, once seen.
    leaves: Option<Arc<leaves::Leaves>>,
    upkeep: Option<Arc<partitions::Upkeep>>,
    partitions_ahead: u16,
    migrated: Option<Arc<MigrationReport>>,
    /// Scheduled retention, when the options ask for it: the task ends when the last clone
    /// of this store goes (the task's own clone holds none).
    retention: Option<Arc<checkpoint_core::retention::RetentionTask>>,
    /// The table's channel, where acknowledged writes are announced (`notify.rs`); `None`
    /// when notifications are off.
    notify: Option<Arc<str>>,
    /// Operation durations, retries, group sizes, states written
    /// ([`telemetry`](checkpoint_core::telemetry)), labelled with the table.
    meter: Meter,
    /// Whether unfenced writes of an execution with an unexpired lease are refused.
    refuse_unleased: bool,
    /// Whether this store's last prune of one execution had kept deltas on removed rows to
    /// rewrite: the next one then goes straight to the transaction that does it, instead of
    /// first trying the one statement the delta key would refuse (`write::prune`).
    prunes_rewrite: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.table)
            .field("limits", &self.limits)
            .field("encoding", &self.encoder.encoding)
            .field("compression", &self.encoder.format.compression)
            .field("group_commit", &self.group.as_ref().map(|g| g.settings()))
            .field("encryption", &self.encoder.format.encryption)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Builds a pool from `options`, checks that the server answers, and migrates the schema
    /// (or, with `auto_migrate` off, checks that it is current).
    ///
    /// # Errors
    /// - [`Error::InvalidInput`] for a bad table or schema name or pool setting;
    /// - [`Error::Unavailable`] when the server cannot be reached within the create timeout;
    /// - [`Error::Backend`] with a [`SchemaError`](crate::SchemaError) source when the schema is newer than this
    ///   release, or outdated while `auto_migrate` is off; with the server's error (for
    ///   example a wrong password, or no right to create the table) otherwise.
    #[instrument(level = "info", name = "checkpoint_connect", skip(options), fields(options = ?options), err)]
    pub async fn connect(options: PostgresOptions) -> Result<Self> {
        options.validate()?;
        let pool = DeadpoolPool::from_options(&options)?.metered(meter_for(&options.table_name()?));
        let warm = options.pool_min_size();
        let store = Self::with_pool(pool.clone(), &options).await?;
        if warm > 0 {
            // Open the minimum number of connections now, so the first calls do not wait.
            let held = futures_util::future::join_all((0..warm).map(|_| pool.inner().get())).await;
            drop(held);
        }
        Ok(store)
    }

    /// Uses an existing pool (yours, or a test double). Checks the server answers and
    /// migrates or verifies the schema as `options` say; the pool settings of `options` are
    /// not used.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn with_pool(pool: impl DbPool, options: &PostgresOptions) -> Result<Self> {
        options.validate()?;
        let table = options.table_name()?;
        let group_commit = options.group_commit_settings();
        let partitions_ahead = options.partitions_ahead_periods();
        let upkeep = table
            .layout()
            .period()
            .filter(|_| options.is_partition_upkeep())
            .map(|_| Arc::new(partitions::Upkeep::default()));
        // On the distributed layout a group of executions would be a multi-shard transaction
        // per group, in a statement that joins rows Citus cannot: every save is its own
        // statement there, routed to its shard.
        let grouped = group_commit.is_enabled() && table.layout() != TableLayout::Distributed;
        let floors = table
            .layout()
            .floored_appends()
            .then(|| Arc::new(floors::VersionFloors::default()));
        let group = grouped.then(|| Arc::new(group::Committer::new(group_commit)));
        let leaves = leaves::Leaves::of(&table).map(Arc::new);
        let store = PostgresStore {
            refuse_unleased: options.is_refusing_unleased_writes(),
            retention: None,
            notify: options
                .is_notify()
                .then(|| Arc::from(notify::channel_of(&table))),
            meter: meter_for(&table),
            pool: Arc::new(pool),
            sql: Arc::new(statements::Statements::new(&table)),
            constraints: Arc::new(constraints::Constraints::new(&table)),
            table,
            limits: options.input_limits(),
            retry: options.retry_policy(),
            encoder: encoding::Encoder {
                encoding: options.encoding(),
                format: checkpoint_format::encoder::Encoder {
                    snapshot_every: options.encoding().snapshot_every().unwrap_or(1),
                    compression: options.state_compression(),
                    cache: Arc::new(StateCache::new(options.state_cache_budget())),
                    min_delta_bytes: options.delta_threshold(),
                    encryption: options.encryption_keys().cloned(),
                    plain_below: 0,
                    lz4_below: 0,
                },
            },
            group,
            floors,
            leaves,
            upkeep,
            partitions_ahead,
            migrated: None,
            prunes_rewrite: Arc::default(),
        };
        let mut store = store;
        store.ping().await?;
        if options.is_auto_migrate() {
            store.migrated = Some(Arc::new(store.migrate().await?));
        } else {
            schema::verify(store.pool.as_ref(), &store.table).await?;
        }
        if store.table.layout() != TableLayout::Plain {
            store
                .constraints
                .load_aliases(store.pool.as_ref(), &store.table)
                .await?;
        }
        // A time-partitioned table needs the partition of now before the first save.
        partitions::upkeep(&store).await;
        if let Some(schedule) = options.retention_schedule() {
            let task = retention::spawn(store.clone(), schedule.clone());
            store.retention = Some(Arc::new(task));
        }
        Ok(store)
    }

    /// The layout of the table `options` name, as it was made (`None` when it has no schema
    /// yet), so that a tool can open a table without knowing how it was laid out:
    /// `options.table_layout(layout)`. It opens one connection of its own.
    ///
    /// ```no_run
    /// # async fn run() -> checkpoint_core::Result<()> {
    /// use checkpoint_postgres::{PostgresOptions, PostgresStore};
    ///
    /// let mut options = PostgresOptions::new("postgres://app@localhost/app")?;
    /// if let Some(layout) = PostgresStore::table_layout_of(&options).await? {
    ///     options = options.table_layout(layout);
    /// }
    /// let store = PostgresStore::connect(options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect), for the connection.
    pub async fn table_layout_of(options: &PostgresOptions) -> Result<Option<TableLayout>> {
        let table = options.table_name()?;
        let pool = DeadpoolPool::from_options(&options.clone().max_connections(1))?;
        let layout = schema::detect_layout(&pool, &table).await;
        pool.close();
        layout
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        Ok(self.pool.ping().await?)
    }

    /// Closes the pool and stops scheduled retention; later calls fail with
    /// [`Error::Unavailable`].
    pub fn close(&self) {
        if let Some(task) = &self.retention {
            task.stop();
        }
        self.pool.close();
    }

    /// Applies pending migrations under the table's advisory lock; a no-op when current.
    ///
    /// # Errors
    /// [`Error::Backend`] with a [`SchemaError`](crate::SchemaError) source when the schema is newer than this
    /// release or was changed; the server's error when a step fails (nothing is applied then).
    pub async fn migrate(&self) -> Result<MigrationReport> {
        schema::migrate(self.pool.as_ref(), &self.table).await
    }

    /// What `connect` (or `with_pool`) did to the schema, when `auto_migrate` was on.
    pub fn migration_report(&self) -> Option<&MigrationReport> {
        self.migrated.as_deref()
    }

    /// The schema version recorded in the database (0 when never migrated).
    pub async fn schema_version(&self) -> Result<i32> {
        schema::current_version(self.pool.as_ref(), &self.table).await
    }

    /// The table this store uses.
    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// How this store writes states.
    pub fn encoding(&self) -> StateEncoding {
        self.encoder.encoding
    }

    /// What group commit has done on this store (and its clones) so far; `None` when it is
    /// off. Take two snapshots and [`GroupCommitStats::since`] to see one stretch of work.
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.group.as_ref().map(|committer| committer.stats())
    }

    /// Seals the states of up to `limit` rows (ids after `after`, in id order) under the
    /// current write key, in one transaction: rows under an older key, plain payloads and JSONB
    /// states alike; rows already under the write key are left as they are. Call it again with
    /// the returned `last_id` until that is `None`; it can stop and resume at any batch, and
    /// runs beside live traffic. Once every row is done, older keys can be dropped.
    ///
    /// ```no_run
    /// # async fn run(store: checkpoint_postgres::PostgresStore) -> checkpoint_core::Result<()> {
    /// let mut after: Option<String> = None;
    /// loop {
    ///     let batch = store.reencrypt(after.as_deref(), 500).await?;
    ///     match batch.last_id {
    ///         Some(last) => after = Some(last),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidInput`] naming `encryption` when the store has no keys, `limit`
    ///   outside 1 to [`MAX_REENCRYPT_BATCH`](crate::MAX_REENCRYPT_BATCH), or `after` for a bad id;
    /// - [`Error::Backend`] with an [`EncryptionError`](crate::EncryptionError) source for a row sealed under a key the
    ///   store was not given, or one that fails authentication (nothing of the batch is written).
    pub async fn reencrypt(&self, after: Option<&str>, limit: usize) -> Result<ReencryptBatch> {
        reencrypt::reencrypt(self, after, limit).await
    }

    /// Checks that every checkpoint of `execution_id` (or, with `None`, of the whole table)
    /// reads back as it was saved: each is rebuilt on its own, every delta's link to its base
    /// and every content hash is checked (a sealed payload must also authenticate), and each
    /// damaged checkpoint is reported with the reason, rather than stopping at the first.
    /// Nothing is written. The whole table is read one execution at a time.
    ///
    /// ```no_run
    /// # async fn run(store: checkpoint_postgres::PostgresStore) -> checkpoint_core::Result<()> {
    /// let report = store.verify(None).await?;
    /// for damage in &report.damaged {
    ///     eprintln!("{} v{} ({}): {}", damage.execution_id, damage.version, damage.id, damage.reason);
    /// }
    /// assert!(report.is_intact());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad execution id; a backend error when the server cannot
    /// be read. Damage is reported in the result, never as an error.
    pub async fn verify(&self, execution_id: Option<&str>) -> Result<Verification> {
        verify::verify(self, execution_id).await
    }

    /// The most bytes one stored payload may expand to when read: well above any state the
    /// limits admit, so only a damaged payload meets it.
    fn payload_limit(&self) -> usize {
        self.limits
            .max_state_bytes
            .max(Limits::default().max_state_bytes)
            .saturating_mul(4)
    }

    /// The statements this store runs, for `EXPLAIN`, benchmarks and reviews.
    pub fn statements(&self) -> &Statements {
        &self.sql
    }

    /// Whether `err` is a unique violation of the version rule.
    fn is_version_conflict(&self, err: &Error) -> bool {
        DbError::of(err).is_some_and(|db| self.constraints.is_version_conflict(db))
    }

    /// `err` as a [`Error::Conflict`] when it broke the version rule, unchanged otherwise.
    fn conflict_or(&self, err: impl Into<Error>, execution_id: &str, version: i64) -> Error {
        let err = err.into();
        if self.is_version_conflict(&err) {
            Error::Conflict {
                execution_id: execution_id.to_owned(),
                version,
            }
        } else {
            err
        }
    }

    /// The floor of the next append's read of `execution`'s highest version (0 when none is
    /// known, or the layout takes none).
    fn floor(&self, execution: &str) -> i64 {
        self.floors.as_ref().map_or(0, |f| f.get(execution))
    }

    /// Runs one operation of the [`CheckpointStore`] API under the meter: its duration and
    /// outcome, and, when a sealed state could not be opened or sealed, the kind of failure.
    async fn observe<T>(
        &self,
        operation: &'static str,
        run: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let outcome = self.meter.observe(operation, run).await;
        if let Some(failure) = outcome.as_ref().err().and_then(crate::EncryptionError::of) {
            self.meter.encryption_failed(failure.kind());
        }
        outcome
    }

    /// Counts a state written by a save, a group or a fork
    /// ([`STATES_WRITTEN`](checkpoint_core::telemetry::STATES_WRITTEN) and the byte and depth
    /// figures beside it).
    fn wrote(&self, written: encoding::Written) {
        self.meter
            .state_written(written.storage, written.bytes, written.depth);
    }

    /// Records the version a save of `checkpoint` stored, as the floor of its execution.
    fn saved(&self, checkpoint: &Checkpoint, version: i64) {
        if let Some(floors) = &self.floors {
            floors.saved(&checkpoint.execution_id, version, checkpoint.version == 0);
        }
    }

    /// [`saved`](Self::saved) for each item of a batch, in order; returns `versions`.
    fn saved_all(&self, checkpoints: &[Checkpoint], versions: Vec<i64>) -> Vec<i64> {
        if self.floors.is_some() {
            for (checkpoint, version) in checkpoints.iter().zip(&versions) {
                self.saved(checkpoint, *version);
            }
        }
        versions
    }

    /// Forgets the floor of `execution` (all of them for `None`), whose newest rows go.
    fn forget_floors(&self, execution: Option<&str>) {
        match (&self.floors, execution) {
            (Some(floors), Some(execution)) => floors.forget(execution),
            (Some(floors), None) => floors.clear(),
            (None, _) => {}
        }
    }

    /// Runs a statement for its rows, retrying transient failures.
    async fn query(
        &self,
        operation: &'static str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>> {
        self.retry
            .run(&self.meter, operation, || async {
                Ok(self.pool.query(sql, params).await?)
            })
            .await
    }

    /// Runs a statement for its effect, retrying transient failures.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &Sql,
        params: &[Param<'_>],
    ) -> Result<u64> {
        self.retry
            .run(&self.meter, operation, || async {
                Ok(self.pool.execute(sql, params).await?)
            })
            .await
    }
}

/// The error for a save whose id belongs to another execution (the upsert matched no row).
pub(crate) fn moved(checkpoint: &Checkpoint) -> Error {
    Error::invalid(
        "execution_id",
        format!(
            "checkpoint {} belongs to another execution than {}; ids never move",
            checkpoint.id, checkpoint.execution_id
        ),
    )
}

/// The meter of a store on `table`: `db.collection.name` is the table, schema-qualified when a
/// schema is set.
fn meter_for(table: &TableName) -> Meter {
    Meter::new(
        System::Postgres,
        match table.schema() {
            Some(schema) => format!("{schema}.{}", table.table()),
            None => table.table().to_owned(),
        },
    )
}

/// The error for an append that lost every race it ran.
pub(crate) fn contended(execution_id: &str) -> Error {
    Error::Backend {
        message: format!(
            "gave up appending to execution {execution_id} after {MAX_APPEND_ATTEMPTS} \
             attempts lost to concurrent writers"
        ),
        retryable: true,
        source: "too much contention on one execution".into(),
    }
}

#[async_trait]
impl CheckpointStore for PostgresStore {
    fn limits(&self) -> Limits {
        self.limits
    }

    #[instrument(level = "debug", skip_all, fields(id = %checkpoint.id, execution_id = %checkpoint.execution_id))]
    async fn save(&self, checkpoint: &Checkpoint) -> Result<i64> {
        self.observe("save", async {
            self.limits.check_checkpoint(checkpoint)?;
            partitions::upkeep(self).await;
            // In the next group when group commit is on, alone otherwise.
            let version = match &self.group {
                _ if self.refuse_unleased => {
                    let guard = lease::Guard::Unleased(vec![checkpoint.execution_id.as_str()]);
                    lease::careful_save(self, &guard, checkpoint).await?
                }
                Some(committer) => group::save(self, committer, checkpoint, None).await?,
                None => write::save_alone(self, checkpoint, None).await?,
            };
            self.announce([checkpoint.execution_id.as_str()]).await;
            Ok(version)
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn load(&self, id: &str) -> Result<Checkpoint> {
        self.observe("load", async {
            check_id("id", id)?;
            read::load(self, id).await
        })
        .await
    }

    fn id_scope(&self) -> IdScope {
        self.table.layout().id_scope()
    }

    #[instrument(level = "debug", skip(self))]
    async fn load_in(&self, execution_id: &str, id: &str) -> Result<Checkpoint> {
        self.observe("load_in", async {
            check_id("execution_id", execution_id)?;
            check_id("id", id)?;
            read::load_in(self, execution_id, id).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn list(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        self.observe("list", async {
            check_id("execution_id", execution_id)?;
            read::list(self, execution_id).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn delete(&self, id: &str) -> Result<bool> {
        self.observe("delete", async {
            check_id("id", id)?;
            write::delete(self, id).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn clear(&self, execution_id: &str) -> Result<u64> {
        self.observe("clear", async {
            check_id("execution_id", execution_id)?;
            if self.refuse_unleased {
                let guard = lease::Guard::Unleased(vec![execution_id]);
                return lease::clear(self, &guard, execution_id).await;
            }
            write::clear(self, execution_id).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn latest(&self, execution_id: &str) -> Result<Option<Checkpoint>> {
        self.observe("latest", async {
            check_id("execution_id", execution_id)?;
            read::latest(self, execution_id).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(execution_id = %query.execution_id, limit = query.limit))]
    async fn list_page(&self, query: &ListQuery) -> Result<Page> {
        self.observe("list_page", async {
            self.limits.check_list_query(query)?;
            read::list_page(self, query).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(items = checkpoints.len()))]
    async fn save_batch(&self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
        if self.refuse_unleased {
            return self
                .observe("save_batch", async {
                    self.limits.check_batch(checkpoints)?;
                    let executions = checkpoints.iter().map(|cp| cp.execution_id.as_str());
                    let guard = lease::Guard::Unleased(executions.collect());
                    lease::save_batch(self, &guard, checkpoints).await
                })
                .await;
        }
        let versions = self
            .observe("save_batch", batch::save(self, checkpoints))
            .await?;
        self.announce(checkpoints.iter().map(|cp| cp.execution_id.as_str()))
            .await;
        Ok(versions)
    }

    #[instrument(level = "debug", skip_all, fields(after = ?query.after, limit = query.limit))]
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionSummary>> {
        self.observe("list_executions", async {
            self.limits.check_execution_query(query)?;
            let after = query.after.as_deref().unwrap_or("");
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let rows = self
                .query("list_executions", &self.sql.executions, &[&after, &limit])
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ExecutionSummary {
                        execution_id: row.text(0)?,
                        checkpoint_count: u64::try_from(row.int(1)?).unwrap_or(0),
                        latest_version: row.int(2)?,
                        last_timestamp: row.timestamp(3)?,
                    })
                })
                .collect()
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(execution_id = ?policy.execution_id))]
    async fn prune(&self, policy: &RetentionPolicy) -> Result<u64> {
        self.observe("prune", async {
            self.limits.check_retention(policy)?;
            if let Some(execution) = policy
                .execution_id
                .as_deref()
                .filter(|_| self.refuse_unleased)
            {
                let guard = lease::Guard::Unleased(vec![execution]);
                return lease::prune(self, &guard, execution, policy).await;
            }
            write::prune(self, policy).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn fork(&self, checkpoint_id: &str, new_execution_id: &str) -> Result<Checkpoint> {
        self.observe("fork", async {
            check_id("id", checkpoint_id)?;
            check_id("execution_id", new_execution_id)?;
            if self.refuse_unleased {
                let guard = lease::Guard::Unleased(vec![new_execution_id]);
                return lease::fork(self, &guard, checkpoint_id, new_execution_id).await;
            }
            partitions::upkeep(self).await;
            let forked = read::fork(self, checkpoint_id, new_execution_id).await?;
            self.announce([new_execution_id]).await;
            Ok(forked)
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn acquire(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.observe("acquire", async {
            let ttl = check_lease_request(execution_id, owner, ttl)?;
            lease::change(self, execution_id, LeaseRequest::Acquire { owner, ttl }).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn take_over(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.observe("take_over", async {
            let ttl = check_lease_request(execution_id, owner, ttl)?;
            lease::change(self, execution_id, LeaseRequest::TakeOver { owner, ttl }).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn renew(&self, held: &Lease, ttl: Duration) -> Result<Lease> {
        self.observe("renew", async {
            check_fence(&held.fence())?;
            let request = LeaseRequest::Renew {
                token: held.token,
                ttl: check_ttl(ttl)?,
            };
            lease::change(self, &held.execution_id, request).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn release(&self, held: &Lease) -> Result<()> {
        self.observe("release", async {
            check_fence(&held.fence())?;
            let request = LeaseRequest::Release { token: held.token };
            lease::change(self, &held.execution_id, request)
                .await
                .map(drop)
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn lease(&self, execution_id: &str) -> Result<Option<Lease>> {
        self.observe("lease", async {
            check_id("execution_id", execution_id)?;
            lease::live(self, execution_id).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(id = %checkpoint.id, execution_id = %checkpoint.execution_id))]
    async fn save_fenced(&self, fence: &Fence, checkpoint: &Checkpoint) -> Result<i64> {
        self.observe("save", async {
            self.limits.check_fenced_checkpoint(fence, checkpoint)?;
            lease::save(self, fence, checkpoint).await
        })
        .await
    }

    #[instrument(level = "debug", skip_all, fields(items = checkpoints.len()))]
    async fn save_batch_fenced(
        &self,
        fence: &Fence,
        checkpoints: &[Checkpoint],
    ) -> Result<Vec<i64>> {
        self.observe("save_batch", async {
            self.limits.check_fenced_batch(fence, checkpoints)?;
            lease::save_batch(self, &lease::Guard::Fence(fence), checkpoints).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn delete_fenced(&self, fence: &Fence, id: &str) -> Result<bool> {
        self.observe("delete", async {
            check_fence(fence)?;
            check_id("id", id)?;
            let delete = lease::Delete {
                id,
                execution: Some(&fence.execution_id),
                rule: lease::DeleteRule::Fenced,
            };
            lease::guarded(self, "delete", &lease::Guard::Fence(fence), &delete).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn clear_fenced(&self, fence: &Fence) -> Result<u64> {
        self.observe("clear", async {
            check_fence(fence)?;
            lease::clear(self, &lease::Guard::Fence(fence), &fence.execution_id).await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn prune_fenced(&self, fence: &Fence, policy: &RetentionPolicy) -> Result<u64> {
        self.observe("prune", async {
            let policy = self.limits.check_fenced_retention(fence, policy)?;
            lease::prune(
                self,
                &lease::Guard::Fence(fence),
                &fence.execution_id,
                &policy,
            )
            .await
        })
        .await
    }

    #[instrument(level = "debug", skip(self))]
    async fn fork_fenced(&self, fence: &Fence, checkpoint_id: &str) -> Result<Checkpoint> {
        self.observe("fork", async {
            check_fence(fence)?;
            check_id("id", checkpoint_id)?;
            lease::fork(
                self,
                &lease::Guard::Fence(fence),
                checkpoint_id,
                &fence.execution_id,
            )
            .await
        })
        .await
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn append_backoff_is_bounded_and_grows() {
        for attempt in 0..2_000 {
            assert!(append_backoff(attempt) <= std::time::Duration::from_millis(10));
        }
        let early = (0..200).map(|_| append_backoff(1)).max().unwrap();
        assert!(early <= std::time::Duration::from_micros(200));
    }
}

#[cfg(test)]
mod telemetry_tests;
#[cfg(test)]
pub(crate) mod tests;
