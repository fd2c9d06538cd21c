//! The [`CheckpointStore`] contract and the types its methods take and return.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::lease::{Fence, Lease};
use crate::validate::{check_id, Limits};

/// Where checkpoints live. Every backend implements this one contract, and the conformance suite
/// (feature `conformance`) proves it does so identically.
///
/// The trait is object safe: `Arc<dyn CheckpointStore>` works, so the backend can be chosen at
/// run time as well as at compile time.
///
/// # The version rule
/// Within one execution a version belongs to exactly one checkpoint.
/// - Version `0` appends: the store assigns the execution's highest version + 1 atomically, so
///   racing appenders all succeed with distinct versions.
/// - An explicit version is an optimistic lock: a writer that read version N saves N + 1, and of
///   two writers racing for the same version exactly one wins; the other gets
///   [`Error::Conflict`](crate::Error::Conflict).
/// - Saving an id that exists replaces that checkpoint (an idempotent retry). With version `0` it
///   keeps its version; with an explicit one it takes that version, subject to the rule above.
///   An id never moves to another execution.
///
/// # Input rules
/// Every method first applies [`Limits`] (see [`crate::validate`]): ids of 1 to 256 bytes, no
/// NUL character in any string or JSON text, no negative version, bounded state size and depth.
/// A refused call stores nothing.
///
/// ```
/// use std::sync::Arc;
/// use checkpoint_core::{Checkpoint, CheckpointStore};
///
/// async fn step(store: Arc<dyn CheckpointStore>) -> checkpoint_core::Result<i64> {
///     let cp = Checkpoint::new("run-1", "fetch", serde_json::json!({"page": 1}));
///     store.save(&cp).await
/// }
/// ```
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The limits this store enforces.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Saves `checkpoint` (insert, or replace the checkpoint with the same id) and returns the
    /// version stored.
    ///
    /// # Errors
    /// - [`Error::Conflict`](crate::Error::Conflict) when another checkpoint of the execution
    ///   holds the explicit version;
    /// - [`Error::InvalidInput`](crate::Error::InvalidInput) when the checkpoint breaks an input
    ///   rule or its id already belongs to another execution.
    async fn save(&self, checkpoint: &Checkpoint) -> Result<i64>;

    /// How far a checkpoint id is unique: across the store ([`IdScope::Global`], the default)
    /// or within its execution ([`IdScope::PerExecution`], tables partitioned or distributed
    /// by execution). The conformance suite tests exactly the rules of the scope a store
    /// declares.
    fn id_scope(&self) -> IdScope {
        IdScope::Global
    }

    /// The checkpoint with this id.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) when there is none;
    /// [`Error::Ambiguous`](crate::Error::Ambiguous) when the store's ids are unique per
    /// execution ([`IdScope::PerExecution`]) and several executions hold this one (use
    /// [`load_in`](Self::load_in)).
    async fn load(&self, id: &str) -> Result<Checkpoint>;

    /// The checkpoint with this id in `execution_id`. A store partitioned or distributed by
    /// execution reads one partition or shard for it, where [`load`](Self::load) asks every
    /// one. The default implementation loads by id and checks the execution.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) when the execution holds no checkpoint with
    /// this id.
    async fn load_in(&self, execution_id: &str, id: &str) -> Result<Checkpoint> {
        check_id("execution_id", execution_id)?;
        match self.load(id).await {
            Ok(found) if found.execution_id == execution_id => Ok(found),
            Ok(_) => Err(crate::Error::NotFound { id: id.to_owned() }),
            Err(err) => Err(err),
        }
    }

    /// The whole history of an execution, ascending by version; empty for an unknown execution.
    async fn list(&self, execution_id: &str) -> Result<Vec<Checkpoint>>;

    /// Removes one checkpoint; `true` when something was removed. An absent id is not an error.
    async fn delete(&self, id: &str) -> Result<bool>;

    /// Removes every checkpoint of an execution and returns how many there were.
    async fn clear(&self, execution_id: &str) -> Result<u64>;

    /// The checkpoint with the highest version of an execution.
    async fn latest(&self, execution_id: &str) -> Result<Option<Checkpoint>>;

    /// One page of an execution's history (keyset pagination over versions). See [`ListQuery`].
    async fn list_page(&self, query: &ListQuery) -> Result<Page>;

    /// Saves several checkpoints, all or nothing: if one is invalid or conflicts, none is stored.
    /// Version-0 items of one execution get consecutive versions in their order. Returns the
    /// stored versions in input order.
    ///
    /// # Errors
    /// As [`save`](Self::save); an id given twice is
    /// [`Error::InvalidInput`](crate::Error::InvalidInput), an explicit version given twice for
    /// one execution is [`Error::Conflict`](crate::Error::Conflict).
    async fn save_batch(&self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>>;

    /// Executions that have checkpoints, ascending by execution id, one page at a time.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionSummary>>;

    /// Removes checkpoints according to `policy` and returns how many were removed.
    async fn prune(&self, policy: &RetentionPolicy) -> Result<u64>;

    /// Starts execution `new_execution_id` from checkpoint `checkpoint_id` of any execution:
    /// its first checkpoint (version 1) has the source's node, state and metadata, a fresh id,
    /// the current time, `parent_id` = the source, and metadata `source: "fork"` and
    /// `forked_from: {checkpoint_id, execution_id, version}` (see
    /// [`Checkpoint::forked_into`]). Returns it as stored.
    ///
    /// The default implementation loads the source and saves the copy with version 1, so it
    /// is atomic through the version rule; backends may do it in one statement.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown source;
    /// [`Error::Conflict`](crate::Error::Conflict) at version 1 when `new_execution_id`
    /// already has checkpoints.
    async fn fork(&self, checkpoint_id: &str, new_execution_id: &str) -> Result<Checkpoint> {
        check_id("id", checkpoint_id)?;
        check_id("execution_id", new_execution_id)?;
        let source = self.load(checkpoint_id).await?;
        if self.latest(new_execution_id).await?.is_some() {
            return Err(crate::Error::Conflict {
                execution_id: new_execution_id.to_owned(),
                version: 1,
            });
        }
        let forked = source.forked_into(new_execution_id);
        self.save(&forked).await?;
        Ok(forked)
    }

    /// Takes the lease of `execution_id` for `owner`, for `ttl` by the store's clock (see
    /// [`lease`](crate::lease)): the first lease of an execution has token 1; a lease that
    /// expired or was released is taken over with the next token.
    ///
    /// # Errors
    /// [`Error::LeaseHeld`](crate::Error::LeaseHeld) with the holder and its expiry while
    /// another lease is unexpired (whoever holds it, `owner` included);
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) on `execution_id`, `owner`, or a
    /// `ttl` outside [`MIN_LEASE_TTL`](crate::lease::MIN_LEASE_TTL) to
    /// [`MAX_LEASE_TTL`](crate::lease::MAX_LEASE_TTL).
    async fn acquire(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease>;

    /// Takes the lease of `execution_id` for `owner` whether or not it is held, with the next
    /// token: an operator breaking a lease. Every write carrying the old token is refused from
    /// then on.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), without `LeaseHeld`.
    async fn take_over(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease>;

    /// Extends `lease` to `ttl` from now, by the store's clock; a lease that expired is
    /// renewed as long as nobody took it over. Returns the lease with its new expiry.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when its token is no longer the
    /// execution's; [`Error::InvalidInput`](crate::Error::InvalidInput) as
    /// [`acquire`](Self::acquire).
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;

    /// Ends `lease` now, so that the next [`acquire`](Self::acquire) takes the execution over
    /// at once. Releasing twice is not an error.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when its token is no longer the
    /// execution's.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// The unexpired lease of `execution_id`, if any.
    async fn lease(&self, execution_id: &str) -> Result<Option<Lease>>;

    /// [`save`](Self::save), only while `fence` holds the execution's current token, checked
    /// atomically with the write.
    ///
    /// # Errors
    /// As [`save`](Self::save); [`Error::LeaseLost`](crate::Error::LeaseLost) when the token is
    /// not the execution's current one; [`Error::InvalidInput`](crate::Error::InvalidInput) on
    /// `execution_id` when the checkpoint is of another execution than the fence's. A refused
    /// write stores nothing.
    async fn save_fenced(&self, fence: &Fence, checkpoint: &Checkpoint) -> Result<i64>;

    /// [`save_batch`](Self::save_batch) under `fence`: every checkpoint must be of the fenced
    /// execution.
    ///
    /// # Errors
    /// As [`save_fenced`](Self::save_fenced) and [`save_batch`](Self::save_batch).
    async fn save_batch_fenced(
        &self,
        fence: &Fence,
        checkpoints: &[Checkpoint],
    ) -> Result<Vec<i64>>;

    /// [`delete`](Self::delete) of checkpoint `id` of the fenced execution under `fence`; an id
    /// of another execution is left alone (`false`).
    ///
    /// # Errors
    /// As [`save_fenced`](Self::save_fenced).
    async fn delete_fenced(&self, fence: &Fence, id: &str) -> Result<bool>;

    /// [`clear`](Self::clear) of the fenced execution under `fence`. Its lease stays.
    ///
    /// # Errors
    /// As [`save_fenced`](Self::save_fenced).
    async fn clear_fenced(&self, fence: &Fence) -> Result<u64>;

    /// [`prune`](Self::prune) of the fenced execution under `fence`: the policy's
    /// `execution_id` must be the fenced one or unset.
    ///
    /// # Errors
    /// As [`save_fenced`](Self::save_fenced) and [`prune`](Self::prune).
    async fn prune_fenced(&self, fence: &Fence, policy: &RetentionPolicy) -> Result<u64>;

    /// [`fork`](Self::fork) of checkpoint `checkpoint_id` (of any execution) into the fenced
    /// execution, under `fence`.
    ///
    /// # Errors
    /// As [`save_fenced`](Self::save_fenced) and [`fork`](Self::fork).
    async fn fork_fenced(&self, fence: &Fence, checkpoint_id: &str) -> Result<Checkpoint>;
}

/// Forwards every method to the store behind a pointer, so `Arc<dyn CheckpointStore>`,
/// `Arc<MyStore>` and `&MyStore` are stores too.
macro_rules! forward_store {
    ($($pointer:ty),*) => {$(
        #[async_trait]
        impl<S: CheckpointStore + ?Sized> CheckpointStore for $pointer {
            fn limits(&self) -> Limits {
                (**self).limits()
            }
            async fn save(&self, checkpoint: &Checkpoint) -> Result<i64> {
                (**self).save(checkpoint).await
            }
            fn id_scope(&self) -> IdScope {
                (**self).id_scope()
            }
            async fn load(&self, id: &str) -> Result<Checkpoint> {
                (**self).load(id).await
            }
            async fn load_in(&self, execution_id: &str, id: &str) -> Result<Checkpoint> {
                (**self).load_in(execution_id, id).await
            }
            async fn list(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
                (**self).list(execution_id).await
            }
            async fn delete(&self, id: &str) -> Result<bool> {
                (**self).delete(id).await
            }
            async fn clear(&self, execution_id: &str) -> Result<u64> {
                (**self).clear(execution_id).await
            }
            async fn latest(&self, execution_id: &str) -> Result<Option<Checkpoint>> {
                (**self).latest(execution_id).await
            }
            async fn list_page(&self, query: &ListQuery) -> Result<Page> {
                (**self).list_page(query).await
            }
            async fn save_batch(&self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
                (**self).save_batch(checkpoints).await
            }
            async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionSummary>> {
                (**self).list_executions(query).await
            }
            async fn prune(&self, policy: &RetentionPolicy) -> Result<u64> {
                (**self).prune(policy).await
            }
            async fn fork(&self, checkpoint_id: &str, new_execution_id: &str) -> Result<Checkpoint> {
                (**self).fork(checkpoint_id, new_execution_id).await
            }
            async fn acquire(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
                (**self).acquire(execution_id, owner, ttl).await
            }
            async fn take_over(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
                (**self).take_over(execution_id, owner, ttl).await
            }
            async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
                (**self).renew(lease, ttl).await
            }
            async fn release(&self, lease: &Lease) -> Result<()> {
                (**self).release(lease).await
            }
            async fn lease(&self, execution_id: &str) -> Result<Option<Lease>> {
                (**self).lease(execution_id).await
            }
            async fn save_fenced(&self, fence: &Fence, checkpoint: &Checkpoint) -> Result<i64> {
                (**self).save_fenced(fence, checkpoint).await
            }
            async fn save_batch_fenced(&self, fence: &Fence, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
                (**self).save_batch_fenced(fence, checkpoints).await
            }
            async fn delete_fenced(&self, fence: &Fence, id: &str) -> Result<bool> {
                (**self).delete_fenced(fence, id).await
            }
            async fn clear_fenced(&self, fence: &Fence) -> Result<u64> {
                (**self).clear_fenced(fence).await
            }
            async fn prune_fenced(&self, fence: &Fence, policy: &RetentionPolicy) -> Result<u64> {
                (**self).prune_fenced(fence, policy).await
            }
            async fn fork_fenced(&self, fence: &Fence, checkpoint_id: &str) -> Result<Checkpoint> {
                (**self).fork_fenced(fence, checkpoint_id).await
            }
        }
    )*};
}

forward_store!(Arc<S>, &S, Box<S>);

/// How far a checkpoint id is unique, as [`CheckpointStore::id_scope`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum IdScope {
    /// An id names one checkpoint in the whole store: saving it into another execution is
    /// refused (`InvalidInput` on `execution_id`).
    #[default]
    Global,
    /// An id names one checkpoint within its execution; two executions may each hold a
    /// checkpoint with the same id (store-made ids are UUIDv7, so only ids callers choose can
    /// meet). `load`, `delete` and `fork` by an id that several executions hold are
    /// [`Error::Ambiguous`](crate::Error::Ambiguous); `load_in` names the execution.
    PerExecution,
}

/// Direction of a page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// Oldest version first.
    #[default]
    Ascending,
    /// Newest version first.
    Descending,
}

/// A request for one page of an execution's history.
///
/// Cursors are versions and both bounds are exclusive: `after_version` keeps versions above it,
/// `before_version` versions below it. Filters narrow the page without changing how cursors
/// work. Continue with [`ListQuery::next`].
///
/// ```
/// use checkpoint_core::{ListQuery, Order};
///
/// let q = ListQuery::new("run-1").limit(20).descending().node("review")
///     .metadata_eq("source", "run");
/// assert_eq!(q.order, Order::Descending);
/// assert_eq!(q.limit, 20);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ListQuery {
    /// The execution to page through.
    pub execution_id: String,
    /// Only versions greater than this.
    pub after_version: Option<i64>,
    /// Only versions smaller than this.
    pub before_version: Option<i64>,
    /// Most items on the page, 1 to [`MAX_PAGE_LIMIT`](crate::validate::MAX_PAGE_LIMIT).
    pub limit: usize,
    /// Direction.
    pub order: Order,
    /// Only checkpoints saved after this node.
    pub node_name: Option<String>,
    /// Only checkpoints whose metadata has every one of these keys with an equal value.
    pub metadata: Map<String, Value>,
}

impl ListQuery {
    /// The default page size.
    pub const DEFAULT_LIMIT: usize = 20;

    /// The first page of `execution_id`, ascending, [`Self::DEFAULT_LIMIT`] items, no filter.
    pub fn new(execution_id: impl Into<String>) -> Self {
        ListQuery {
            execution_id: execution_id.into(),
            after_version: None,
            before_version: None,
            limit: Self::DEFAULT_LIMIT,
            order: Order::Ascending,
            node_name: None,
            metadata: Map::new(),
        }
    }

    /// Only versions greater than `version`.
    pub fn after(mut self, version: i64) -> Self {
        self.after_version = Some(version);
        self
    }

    /// Only versions smaller than `version`.
    pub fn before(mut self, version: i64) -> Self {
        self.before_version = Some(version);
        self
    }

    /// At most `limit` items.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.order = Order::Descending;
        self
    }

    /// Only checkpoints saved after node `name`.
    pub fn node(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// Only checkpoints whose metadata `key` equals `value`.
    pub fn metadata_eq(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The query for the page after `page`, or `None` when `page` was the last.
    pub fn next(&self, page: &Page) -> Option<ListQuery> {
        let cursor = page.next_cursor?;
        let mut next = self.clone();
        match self.order {
            Order::Ascending => next.after_version = Some(cursor),
            Order::Descending => next.before_version = Some(cursor),
        }
        Some(next)
    }

    /// Whether `checkpoint` passes the query's version window and filters (not its limit).
    /// Backends that filter in memory use this so that all of them agree.
    pub fn matches(&self, checkpoint: &Checkpoint) -> bool {
        checkpoint.execution_id == self.execution_id
            && self.after_version.is_none_or(|v| checkpoint.version > v)
            && self.before_version.is_none_or(|v| checkpoint.version < v)
            && self
                .node_name
                .as_ref()
                .is_none_or(|n| &checkpoint.node_name == n)
            && self.metadata_matches(&checkpoint.metadata)
    }

    /// Whether `metadata` passes the query's metadata filters: each key present and
    /// [`json_equal`] to the wanted value. Backends that filter before they decode a state
    /// (SQLite reads a row's metadata first) use this, as [`ListQuery::matches`] does.
    ///
    /// ```
    /// use checkpoint_core::ListQuery;
    /// let query = ListQuery::new("e").metadata_eq("step", 1);
    /// let metadata = serde_json::json!({"step": 1.0, "node": "a"});
    /// assert!(query.metadata_matches(metadata.as_object().unwrap()));
    /// assert!(!ListQuery::new("e").metadata_eq("step", 2).metadata_matches(metadata.as_object().unwrap()));
    /// ```
    pub fn metadata_matches(&self, metadata: &Map<String, Value>) -> bool {
        self.metadata
            .iter()
            .all(|(key, want)| metadata.get(key).is_some_and(|have| json_equal(have, want)))
    }
}

/// JSON equality as PostgreSQL's `jsonb` defines it: numbers compare by value (`1` equals
/// `1.0`), objects regardless of key order, arrays element by element.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// One page of checkpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The checkpoints, in the query's order.
    pub items: Vec<Checkpoint>,
    /// The version to continue from when more items follow; `None` on the last page.
    pub next_cursor: Option<i64>,
}

impl Page {
    /// The page from up to `limit + 1` matching items in page order: a backend fetches one more
    /// than asked to learn whether another page follows, without a second query.
    pub fn from_overfetch(mut items: Vec<Checkpoint>, limit: usize) -> Page {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|cp| cp.version)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// A request for one page of executions, ascending by execution id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutionQuery {
    /// Only executions whose id sorts after this one (the last id of the previous page).
    pub after: Option<String>,
    /// Most executions returned, 1 to [`MAX_PAGE_LIMIT`](crate::validate::MAX_PAGE_LIMIT).
    pub limit: usize,
}

impl Default for ExecutionQuery {
    fn default() -> Self {
        ExecutionQuery {
            after: None,
            limit: 100,
        }
    }
}

impl ExecutionQuery {
    /// The first page of `limit` executions.
    pub fn new(limit: usize) -> Self {
        ExecutionQuery { after: None, limit }
    }

    /// Continue after execution `id`.
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }
}

/// What a store knows about one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// The execution.
    pub execution_id: String,
    /// How many checkpoints it has.
    pub checkpoint_count: u64,
    /// Its highest version.
    pub latest_version: i64,
    /// The most recent checkpoint timestamp.
    #[serde(with = "time::serde::rfc3339")]
    pub last_timestamp: OffsetDateTime,
}

/// Which checkpoints [`CheckpointStore::prune`] removes.
///
/// A checkpoint is removed when every rule that is set says so: it is not among the newest
/// `keep_last` of its execution, and it is older than `older_than`. So `keep_last` alone trims
/// each history to its newest N; `older_than` alone drops everything older than the cutoff; both
/// together drop old checkpoints while always keeping the newest N.
///
/// ```
/// use std::time::Duration;
/// use checkpoint_core::RetentionPolicy;
///
/// let policy = RetentionPolicy::keep_last(10)
///     .and_older_than(Duration::from_secs(30 * 24 * 3600))
///     .for_execution("run-1");
/// assert_eq!(policy.keep_last, Some(10));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Keep the newest N checkpoints of each execution (N ≥ 1).
    pub keep_last: Option<u64>,
    /// Remove checkpoints whose timestamp is older than now minus this.
    pub older_than: Option<Duration>,
    /// Only this execution; all executions when `None`.
    pub execution_id: Option<String>,
    /// `prune` may return before its removal is flushed to disk; see
    /// [`lazy_flush`](Self::lazy_flush).
    pub lazy_flush: bool,
}

impl RetentionPolicy {
    /// Keep the newest `n` checkpoints of each execution.
    pub fn keep_last(n: u64) -> Self {
        RetentionPolicy {
            keep_last: Some(n),
            ..Self::default()
        }
    }

    /// Remove checkpoints older than `age`.
    pub fn older_than(age: Duration) -> Self {
        RetentionPolicy {
            older_than: Some(age),
            ..Self::default()
        }
    }

    /// Also require checkpoints to be older than `age` before removing them.
    pub fn and_older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }

    /// Also keep the newest `n` of each execution.
    pub fn and_keep_last(mut self, n: u64) -> Self {
        self.keep_last = Some(n);
        self
    }

    /// Only prune `execution_id`.
    pub fn for_execution(mut self, execution_id: impl Into<String>) -> Self {
        self.execution_id = Some(execution_id.into());
        self
    }

    /// Lets `prune` return once its removal is committed, before it is flushed to disk, for
    /// retention applied after every save. It removes exactly what the policy removes and is
    /// seen at once by every reader; only its durability is relaxed: it reaches disk with the
    /// next flushed commit (the next save) or within about a second, so a crash of the server
    /// or the machine in between brings the removed checkpoints back (the next prune removes
    /// them again), and never loses or changes anything else. PostgreSQL commits the prune
    /// with `synchronous_commit = off`, SQLite with `synchronous = NORMAL`; the memory store
    /// has nothing to flush.
    ///
    /// ```
    /// use checkpoint_core::RetentionPolicy;
    ///
    /// let after_each_save = RetentionPolicy::keep_last(20).for_execution("run-1").lazy_flush();
    /// assert!(after_each_save.lazy_flush);
    /// ```
    pub fn lazy_flush(mut self) -> Self {
        self.lazy_flush = true;
        self
    }

    /// The instant before which checkpoints count as old, seen from `now`; `None` without an
    /// `older_than` rule. An age reaching before year 1 gives year 1 (nothing is older).
    pub fn cutoff(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let age = self.older_than?;
        let earliest = time::macros::datetime!(0001-01-01 00:00 UTC);
        Some(
            time::Duration::try_from(age)
                .ok()
                .and_then(|age| now.checked_sub(age))
                .map_or(earliest, |t| t.max(earliest)),
        )
    }

    /// Whether a checkpoint that is the `rank`-th newest of its execution (0 = latest) with this
    /// `timestamp` is removed, given the [`cutoff`](Self::cutoff).
    pub fn removes(
        &self,
        rank: u64,
        timestamp: OffsetDateTime,
        cutoff: Option<OffsetDateTime>,
    ) -> bool {
        self.keep_last.is_none_or(|keep| rank >= keep) && cutoff.is_none_or(|c| timestamp < c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn numbers_compare_by_value_like_jsonb() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(
            &json!({"a": [1, {"b": 2.0}]}),
            &json!({"a": [1.0, {"b": 2}]})
        ));
        assert!(!json_equal(&json!([1, 2]), &json!([1])));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!("1"), &json!(1)));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn an_overfetched_page_has_a_cursor_only_when_more_follow() {
        let cps: Vec<Checkpoint> = (1..=3)
            .map(|v| Checkpoint::new("e", "n", json!(v)).with_version(v))
            .collect();
        let full = Page::from_overfetch(cps.clone(), 2);
        assert_eq!((full.items.len(), full.next_cursor), (2, Some(2)));
        let last = Page::from_overfetch(cps, 3);
        assert_eq!((last.items.len(), last.next_cursor), (3, None));
    }

    #[test]
    fn next_query_moves_the_cursor_in_the_query_direction() {
        let page = Page {
            items: vec![],
            next_cursor: Some(7),
        };
        let asc = ListQuery::new("e");
        assert_eq!(asc.next(&page).map(|q| q.after_version), Some(Some(7)));
        let desc = ListQuery::new("e").descending();
        assert_eq!(desc.next(&page).map(|q| q.before_version), Some(Some(7)));
        assert_eq!(asc.next(&Page::default()), None);
    }

    #[test]
    fn prune_removes_only_what_every_rule_allows() {
        let now = datetime!(2024-06-01 00:00 UTC);
        let old = datetime!(2024-01-01 00:00 UTC);
        let day = Duration::from_secs(86_400);

        let both = RetentionPolicy::keep_last(2).and_older_than(day);
        let cutoff = both.cutoff(now);
        assert!(both.removes(2, old, cutoff));
        assert!(!both.removes(1, old, cutoff), "kept by keep_last");
        assert!(!both.removes(5, now, cutoff), "kept because recent");

        let keep = RetentionPolicy::keep_last(1);
        assert_eq!(keep.cutoff(now), None);
        assert!(keep.removes(1, now, None));
        assert!(!keep.removes(0, old, None));
    }

    #[test]
    fn huge_ages_clamp_to_year_one() {
        let policy = RetentionPolicy::older_than(Duration::MAX);
        assert_eq!(
            policy.cutoff(datetime!(2024-06-01 00:00 UTC)),
            Some(datetime!(0001-01-01 00:00 UTC))
        );
    }
}
