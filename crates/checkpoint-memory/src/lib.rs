//! An in-memory [`CheckpointStore`]: the zero-setup default and the store to use in tests.
//!
//! It keeps the whole contract of `checkpoint-core` (the conformance suite proves it), so code
//! tested against it behaves the same on PostgreSQL, but it keeps nothing across a restart.
//!
//! ```
//! use checkpoint_core::{Checkpoint, CheckpointStore};
//! use checkpoint_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> checkpoint_core::Result<()> {
//! let store = MemoryStore::new();
//! store.save(&Checkpoint::new("run-1", "start", serde_json::json!({"n": 1}))).await?;
//! let latest = store.latest("run-1").await?.expect("saved");
//! assert_eq!(latest.version, 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use checkpoint_core::lease::{
    check_fence, check_lease_request, check_ttl, next_lease, refuse_unleased, LeaseRequest,
};
use checkpoint_core::telemetry::{Meter, System};
use checkpoint_core::validate::check_id;
use checkpoint_core::{
    Checkpoint, CheckpointStore, Error, ExecutionQuery, ExecutionSummary, Fence, Lease, Limits,
    ListQuery, Order, Page, Result, RetentionPolicy,
};
use time::OffsetDateTime;

/// A thread-safe in-memory store. Cloning it shares the data; reads return copies, never
/// references into what is stored.
///
/// Executions are found by hash and each keeps its checkpoints ordered by version, so `save`,
/// `latest` and `list_page` cost O(log n + page) in the execution's own history, whatever the
/// number of executions stored; a sorted set of execution ids serves `list_executions`.
#[derive(Clone)]
pub struct MemoryStore {
    data: Arc<RwLock<Data>>,
    limits: Limits,
    /// Every operation's duration, as `db.system.name = memory`
    /// ([`telemetry`](checkpoint_core::telemetry)).
    meter: Meter,
    /// Whether unfenced writes of an execution with an unexpired lease are refused.
    refuse_unleased: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            data: Arc::default(),
            limits: Limits::default(),
            meter: Meter::new(System::Memory, "checkpoints"),
            refuse_unleased: false,
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.read();
        f.debug_struct("MemoryStore")
            .field("checkpoints", &data.locations.len())
            .field("executions", &data.executions.len())
            .field("limits", &self.limits)
            .finish()
    }
}

#[derive(Default)]
struct Data {
    /// Where each checkpoint id lives: its execution and version.
    locations: HashMap<String, (String, i64)>,
    /// Each execution's checkpoints by version. Executions without checkpoints are removed.
    executions: HashMap<String, BTreeMap<i64, Checkpoint>>,
    /// The ids of `executions`, sorted, for paging through them.
    order: BTreeSet<String>,
    /// Each execution's lease, expired ones included (they keep the token).
    leases: HashMap<String, Lease>,
}

/// What undoes one applied save: remove the saved id, put back what it replaced.
struct Undo {
    id: String,
    replaced: Option<Checkpoint>,
}

impl MemoryStore {
    /// An empty store with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store enforcing `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        MemoryStore {
            limits,
            ..Self::default()
        }
    }

    /// The same store, refusing every unfenced write (save, batch, delete, clear, prune of one
    /// execution, fork into one) of an execution whose lease is unexpired with
    /// [`Error::LeaseHeld`] (see [`checkpoint_core::lease`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use checkpoint_core::{Checkpoint, CheckpointStore, Error};
    /// use checkpoint_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> checkpoint_core::Result<()> {
    /// let store = MemoryStore::new().refusing_unleased_writes();
    /// store.acquire("run-1", "worker-a", Duration::from_secs(30)).await?;
    /// let unleased = store.save(&Checkpoint::new("run-1", "n", serde_json::json!(1))).await;
    /// assert!(matches!(unleased, Err(Error::LeaseHeld { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn refusing_unleased_writes(mut self) -> Self {
        self.refuse_unleased = true;
        self
    }

    /// Refuses an unfenced write of `executions` when the store says so and one is leased.
    fn unleased<'a>(
        &self,
        data: &Data,
        executions: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        if !self.refuse_unleased {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        executions
            .into_iter()
            .try_for_each(|execution| refuse_unleased(execution, data.leases.get(execution), now))
    }

    fn read(&self) -> RwLockReadGuard<'_, Data> {
        // A panic while holding the lock cannot leave the maps half-updated (every mutation
        // is checked before it starts), so a poisoned lock is still consistent.
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Data {
    fn get(&self, id: &str) -> Option<&Checkpoint> {
        let (execution, version) = self.locations.get(id)?;
        self.executions.get(execution)?.get(version)
    }

    /// Applies one validated save and returns the version stored and how to undo it.
    fn save(&mut self, checkpoint: &Checkpoint) -> Result<(i64, Undo)> {
        let existing = self.locations.get(&checkpoint.id);
        if let Some((execution, _)) = existing {
            if *execution != checkpoint.execution_id {
                return Err(Error::invalid(
                    "execution_id",
                    format!(
                        "checkpoint {} belongs to execution {execution}; ids never move",
                        checkpoint.id
                    ),
                ));
            }
        }
        let history = self.executions.get(&checkpoint.execution_id);
        let version = match (checkpoint.version, existing) {
            (0, Some((_, current))) => *current,
            (0, None) => match history.and_then(|h| h.last_key_value()) {
                Some((highest, _)) => {
                    checkpoint_core::validate::next_version(&checkpoint.execution_id, *highest)?
                }
                None => 1,
            },
            (explicit, _) => explicit,
        };
        if let Some(holder) = history.and_then(|h| h.get(&version)) {
            if holder.id != checkpoint.id {
                return Err(Error::Conflict {
                    execution_id: checkpoint.execution_id.clone(),
                    version,
                });
            }
        }
        let replaced = self.remove(&checkpoint.id);
        let mut stored = checkpoint.clone();
        stored.version = version;
        self.insert(stored);
        Ok((
            version,
            Undo {
                id: checkpoint.id.clone(),
                replaced,
            },
        ))
    }

    fn undo(&mut self, undo: Undo) {
        self.remove(&undo.id);
        if let Some(previous) = undo.replaced {
            self.insert(previous);
        }
    }

    fn insert(&mut self, checkpoint: Checkpoint) {
        self.locations.insert(
            checkpoint.id.clone(),
            (checkpoint.execution_id.clone(), checkpoint.version),
        );
        if !self.executions.contains_key(&checkpoint.execution_id) {
            self.order.insert(checkpoint.execution_id.clone());
        }
        self.executions
            .entry(checkpoint.execution_id.clone())
            .or_default()
            .insert(checkpoint.version, checkpoint);
    }

    /// Applies a validated batch, all or nothing.
    fn save_batch(&mut self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
        let mut versions = Vec::with_capacity(checkpoints.len());
        let mut undo = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            match self.save(checkpoint) {
                Ok((version, step)) => {
                    versions.push(version);
                    undo.push(step);
                }
                Err(err) => {
                    for step in undo.into_iter().rev() {
                        self.undo(step);
                    }
                    return Err(err);
                }
            }
        }
        Ok(versions)
    }

    fn clear(&mut self, execution_id: &str) -> u64 {
        let Some(history) = self.executions.remove(execution_id) else {
            return 0;
        };
        self.order.remove(execution_id);
        for checkpoint in history.values() {
            self.locations.remove(&checkpoint.id);
        }
        history.len() as u64
    }

    /// Applies a validated retention policy.
    fn prune(&mut self, policy: &RetentionPolicy) -> u64 {
        let cutoff = policy.cutoff(OffsetDateTime::now_utc());
        let histories: Vec<&BTreeMap<i64, Checkpoint>> = match &policy.execution_id {
            Some(execution) => self.executions.get(execution).into_iter().collect(),
            None => self.executions.values().collect(),
        };
        let doomed: Vec<String> = histories
            .into_iter()
            .flat_map(|history| {
                history
                    .values()
                    .rev()
                    .zip(0u64..)
                    .filter(|(cp, rank)| policy.removes(*rank, cp.timestamp, cutoff))
                    .map(|(cp, _)| cp.id.clone())
            })
            .collect();
        for id in &doomed {
            self.remove(id);
        }
        doomed.len() as u64
    }

    /// Checks `fence` against its execution's lease.
    fn fence(&self, fence: &Fence) -> Result<()> {
        fence.check(
            self.leases
                .get(&fence.execution_id)
                .map(|lease| (lease.owner.clone(), lease.token)),
        )
    }

    /// Applies a lease request (validated) by the process clock and stores the result.
    fn change_lease(&mut self, execution_id: &str, request: LeaseRequest<'_>) -> Result<Lease> {
        let lease = next_lease(
            execution_id,
            self.leases.get(execution_id),
            request,
            OffsetDateTime::now_utc(),
        )?;
        self.leases.insert(execution_id.to_owned(), lease.clone());
        Ok(lease)
    }

    fn remove(&mut self, id: &str) -> Option<Checkpoint> {
        let (execution, version) = self.locations.remove(id)?;
        let history = self.executions.get_mut(&execution)?;
        let removed = history.remove(&version);
        if history.is_empty() {
            self.executions.remove(&execution);
            self.order.remove(&execution);
        }
        removed
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    fn limits(&self) -> Limits {
        self.limits
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<i64> {
        self.meter
            .observe("save", async {
                self.limits.check_checkpoint(checkpoint)?;
                let mut data = self.write();
                self.unleased(&data, [checkpoint.execution_id.as_str()])?;
                let (version, _) = data.save(checkpoint)?;
                Ok(version)
            })
            .await
    }

    async fn load(&self, id: &str) -> Result<Checkpoint> {
        self.meter
            .observe("load", async {
                check_id("id", id)?;
                self.read()
                    .get(id)
                    .cloned()
                    .ok_or_else(|| Error::NotFound { id: id.to_owned() })
            })
            .await
    }

    async fn list(&self, execution_id: &str) -> Result<Vec<Checkpoint>> {
        self.meter
            .observe("list", async {
                check_id("execution_id", execution_id)?;
                Ok(self
                    .read()
                    .executions
                    .get(execution_id)
                    .map(|h| h.values().cloned().collect())
                    .unwrap_or_default())
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        self.meter
            .observe("delete", async {
                check_id("id", id)?;
                let mut data = self.write();
                let execution = data.locations.get(id).map(|(e, _)| e.clone());
                self.unleased(&data, execution.as_deref())?;
                Ok(data.remove(id).is_some())
            })
            .await
    }

    async fn clear(&self, execution_id: &str) -> Result<u64> {
        self.meter
            .observe("clear", async {
                check_id("execution_id", execution_id)?;
                let mut data = self.write();
                self.unleased(&data, [execution_id])?;
                Ok(data.clear(execution_id))
            })
            .await
    }

    async fn latest(&self, execution_id: &str) -> Result<Option<Checkpoint>> {
        self.meter
            .observe("latest", async {
                check_id("execution_id", execution_id)?;
                Ok(self
                    .read()
                    .executions
                    .get(execution_id)
                    .and_then(|h| h.last_key_value())
                    .map(|(_, cp)| cp.clone()))
            })
            .await
    }

    async fn list_page(&self, query: &ListQuery) -> Result<Page> {
        self.meter
            .observe("list_page", async {
                self.limits.check_list_query(query)?;
                let lower = query
                    .after_version
                    .map_or(Bound::Unbounded, Bound::Excluded);
                let upper = query
                    .before_version
                    .map_or(Bound::Unbounded, Bound::Excluded);
                if let (Some(after), Some(before)) = (query.after_version, query.before_version) {
                    // An empty window; BTreeMap::range refuses it.
                    if after >= before {
                        return Ok(Page::default());
                    }
                }
                let data = self.read();
                let Some(history) = data.executions.get(&query.execution_id) else {
                    return Ok(Page::default());
                };
                let window = history.range((lower, upper)).map(|(_, cp)| cp);
                let matching: Box<dyn Iterator<Item = &Checkpoint>> = match query.order {
                    Order::Ascending => Box::new(window.filter(|cp| query.matches(cp))),
                    Order::Descending => Box::new(window.rev().filter(|cp| query.matches(cp))),
                };
                let items = matching.take(query.limit + 1).cloned().collect();
                Ok(Page::from_overfetch(items, query.limit))
            })
            .await
    }

    async fn save_batch(&self, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
        self.meter
            .observe("save_batch", async {
                self.limits.check_batch(checkpoints)?;
                let mut data = self.write();
                self.unleased(&data, checkpoints.iter().map(|cp| cp.execution_id.as_str()))?;
                data.save_batch(checkpoints)
            })
            .await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Vec<ExecutionSummary>> {
        self.meter
            .observe("list_executions", async {
                self.limits.check_execution_query(query)?;
                let lower = query
                    .after
                    .as_ref()
                    .map_or(Bound::Unbounded, |after| Bound::Excluded(after.clone()));
                let data = self.read();
                Ok(data
                    .order
                    .range((lower, Bound::Unbounded))
                    .take(query.limit)
                    .filter_map(|execution_id| {
                        let history = data.executions.get(execution_id)?;
                        let (latest_version, _) = history.last_key_value()?;
                        let last_timestamp = history.values().map(|cp| cp.timestamp).max()?;
                        Some(ExecutionSummary {
                            execution_id: execution_id.clone(),
                            checkpoint_count: history.len() as u64,
                            latest_version: *latest_version,
                            last_timestamp,
                        })
                    })
                    .collect())
            })
            .await
    }

    async fn prune(&self, policy: &RetentionPolicy) -> Result<u64> {
        self.meter
            .observe("prune", async {
                self.limits.check_retention(policy)?;
                let mut data = self.write();
                self.unleased(&data, policy.execution_id.as_deref())?;
                Ok(data.prune(policy))
            })
            .await
    }

    async fn acquire(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.meter
            .observe("acquire", async {
                let ttl = check_lease_request(execution_id, owner, ttl)?;
                self.write()
                    .change_lease(execution_id, LeaseRequest::Acquire { owner, ttl })
            })
            .await
    }

    async fn take_over(&self, execution_id: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.meter
            .observe("take_over", async {
                let ttl = check_lease_request(execution_id, owner, ttl)?;
                self.write()
                    .change_lease(execution_id, LeaseRequest::TakeOver { owner, ttl })
            })
            .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.meter
            .observe("renew", async {
                check_fence(&lease.fence())?;
                let ttl = check_ttl(ttl)?;
                let token = lease.token;
                self.write()
                    .change_lease(&lease.execution_id, LeaseRequest::Renew { token, ttl })
            })
            .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.meter
            .observe("release", async {
                check_fence(&lease.fence())?;
                let token = lease.token;
                self.write()
                    .change_lease(&lease.execution_id, LeaseRequest::Release { token })
                    .map(drop)
            })
            .await
    }

    async fn lease(&self, execution_id: &str) -> Result<Option<Lease>> {
        self.meter
            .observe("lease", async {
                check_id("execution_id", execution_id)?;
                let now = OffsetDateTime::now_utc();
                Ok(self
                    .read()
                    .leases
                    .get(execution_id)
                    .filter(|lease| lease.is_live_at(now))
                    .cloned())
            })
            .await
    }

    async fn save_fenced(&self, fence: &Fence, checkpoint: &Checkpoint) -> Result<i64> {
        self.meter
            .observe("save", async {
                self.limits.check_fenced_checkpoint(fence, checkpoint)?;
                let mut data = self.write();
                data.fence(fence)?;
                Ok(data.save(checkpoint)?.0)
            })
            .await
    }

    async fn save_batch_fenced(
        &self,
        fence: &Fence,
        checkpoints: &[Checkpoint],
    ) -> Result<Vec<i64>> {
        self.meter
            .observe("save_batch", async {
                self.limits.check_fenced_batch(fence, checkpoints)?;
                let mut data = self.write();
                data.fence(fence)?;
                data.save_batch(checkpoints)
            })
            .await
    }

    async fn delete_fenced(&self, fence: &Fence, id: &str) -> Result<bool> {
        self.meter
            .observe("delete", async {
                check_fence(fence)?;
                check_id("id", id)?;
                let mut data = self.write();
                data.fence(fence)?;
                let ours = data
                    .locations
                    .get(id)
                    .is_some_and(|(execution, _)| *execution == fence.execution_id);
                Ok(ours && data.remove(id).is_some())
            })
            .await
    }

    async fn clear_fenced(&self, fence: &Fence) -> Result<u64> {
        self.meter
            .observe("clear", async {
                check_fence(fence)?;
                let mut data = self.write();
                data.fence(fence)?;
                Ok(data.clear(&fence.execution_id))
            })
            .await
    }

    async fn prune_fenced(&self, fence: &Fence, policy: &RetentionPolicy) -> Result<u64> {
        self.meter
            .observe("prune", async {
                let policy = self.limits.check_fenced_retention(fence, policy)?;
                let mut data = self.write();
                data.fence(fence)?;
                Ok(data.prune(&policy))
            })
            .await
    }

    async fn fork_fenced(&self, fence: &Fence, checkpoint_id: &str) -> Result<Checkpoint> {
        self.meter
            .observe("fork", async {
                check_fence(fence)?;
                check_id("id", checkpoint_id)?;
                let mut data = self.write();
                data.fence(fence)?;
                let source = data.get(checkpoint_id).ok_or_else(|| Error::NotFound {
                    id: checkpoint_id.to_owned(),
                })?;
                if data.executions.contains_key(&fence.execution_id) {
                    return Err(Error::Conflict {
                        execution_id: fence.execution_id.clone(),
                        version: 1,
                    });
                }
                let forked = source.forked_into(&fence.execution_id);
                data.save(&forked)?;
                Ok(forked)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn clones_share_data() {
        let a = MemoryStore::new();
        let b = a.clone();
        a.save(&Checkpoint::new("e", "n", json!(1))).await.unwrap();
        assert_eq!(b.list("e").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn emptied_executions_leave_no_trace() {
        let store = MemoryStore::new();
        let cp = Checkpoint::new("e", "n", json!(1));
        store.save(&cp).await.unwrap();
        assert!(store.delete(&cp.id).await.unwrap());
        let data = store.read();
        assert!(data.executions.is_empty());
        assert!(data.order.is_empty());
        assert!(data.locations.is_empty());
    }

    #[tokio::test]
    async fn configured_limits_apply() {
        let limits = Limits::default().with_max_state_bytes(8);
        let store = MemoryStore::with_limits(limits);
        assert_eq!(store.limits(), limits);
        let err = store
            .save(&Checkpoint::new("e", "n", json!("more than eight")))
            .await
            .unwrap_err();
        assert!(err.is_invalid_field("state"), "{err}");
        assert!(store.list("e").await.unwrap().is_empty());
    }
}
