//! [`Checkpointer`]: saves the states of one execution, one version after another.

use std::num::NonZeroU32;
use std::time::Duration;

use checkpoint_core::{Checkpoint, CheckpointStore, Fence, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

/// When [`Checkpointer::record`] writes to the store. Whatever the policy, the runner always
/// saves when a run finishes, pauses or fails, and [`Checkpointer::flush`] writes what is held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SavePolicy {
    /// After every node (the default): a crash never repeats a completed node.
    #[default]
    EveryNode,
    /// After every N-th node: fewer writes; a crash repeats at most N - 1 nodes.
    EveryNodes(NonZeroU32),
    /// At most once per interval: the first record saves, later ones only once the interval
    /// has passed since the last save.
    Interval(Duration),
}

/// The last checkpoint written (or found) for the execution.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Head {
    id: String,
    version: i64,
}

/// Saves the states of one execution to any [`CheckpointStore`], each as the next version.
///
/// Every write carries an explicit version (the previous + 1) and `parent_id` = the previous
/// checkpoint, so two checkpointers advancing the same execution at once cannot both succeed:
/// the second gets [`Error::Conflict`](checkpoint_core::Error::Conflict) and nothing of its
/// write is stored.
///
/// ```
/// use checkpoint_memory::MemoryStore;
/// use checkpoint_workflow::Checkpointer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> checkpoint_core::Result<()> {
/// let mut checkpointer = Checkpointer::new(MemoryStore::new(), "run-1");
/// let first = checkpointer.record("plan", &vec!["a", "b"]).await?.expect("saved");
/// let second = checkpointer.record("act", &vec!["b"]).await?.expect("saved");
/// assert_eq!((first.version, second.version), (1, 2));
/// assert_eq!(second.parent_id.as_deref(), Some(first.id.as_str()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Checkpointer<S> {
    store: S,
    execution_id: String,
    policy: SavePolicy,
    /// `None` until read from the store or set by [`Checkpointer::continue_from`].
    head: Option<Option<Head>>,
    pending: Option<Checkpoint>,
    since_save: u32,
    last_save: Option<Instant>,
    /// The lease every write carries, when the writer holds one.
    fence: Option<Fence>,
}

impl<S: CheckpointStore> Checkpointer<S> {
    /// A checkpointer for `execution_id` saving after every node. The execution's latest
    /// checkpoint is read on the first write.
    pub fn new(store: S, execution_id: impl Into<String>) -> Self {
        Checkpointer {
            store,
            execution_id: execution_id.into(),
            policy: SavePolicy::EveryNode,
            head: None,
            pending: None,
            since_save: 0,
            last_save: None,
            fence: None,
        }
    }

    /// Writes under `fence` (a lease of this execution, see [`checkpoint_core::lease`]): every
    /// save is refused with [`Error::LeaseLost`](checkpoint_core::Error::LeaseLost), and
    /// stores nothing, once another worker took the lease over.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// Sets the save policy.
    pub fn with_policy(mut self, policy: SavePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Continues after `latest` (normally the execution's latest checkpoint, already read),
    /// sparing the first write a read.
    pub fn continue_from(mut self, latest: Option<&Checkpoint>) -> Self {
        self.head = Some(latest.map(|cp| Head {
            id: cp.id.clone(),
            version: cp.version,
        }));
        self
    }

    /// The execution this checkpointer writes.
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Whether a recorded state is held back by the policy, waiting for the next save.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Records the state after `node`: saved now when the policy says so (and returned once
    /// durable), otherwise held until the next save or [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`Error::Serialization`](checkpoint_core::Error::Serialization) when `state` is not
    /// JSON; the store's errors, [`Error::Conflict`](checkpoint_core::Error::Conflict) when
    /// another writer advanced the execution.
    pub async fn record<T: Serialize + ?Sized>(
        &mut self,
        node: &str,
        state: &T,
    ) -> Result<Option<Checkpoint>> {
        self.record_with(node, state, Map::new()).await
    }

    /// [`record`](Self::record) with metadata.
    pub async fn record_with<T: Serialize + ?Sized>(
        &mut self,
        node: &str,
        state: &T,
        metadata: Map<String, Value>,
    ) -> Result<Option<Checkpoint>> {
        let checkpoint = self.build(node, state, metadata)?;
        self.since_save = self.since_save.saturating_add(1);
        if self.due() {
            self.write(checkpoint).await.map(Some)
        } else {
            self.pending = Some(checkpoint);
            Ok(None)
        }
    }

    /// Saves the state after `node` now, whatever the policy (a finished run, a pause, an
    /// error). A held state is superseded by this newer one.
    pub async fn save_now<T: Serialize + ?Sized>(
        &mut self,
        node: &str,
        state: &T,
        metadata: Map<String, Value>,
    ) -> Result<Checkpoint> {
        let checkpoint = self.build(node, state, metadata)?;
        self.write(checkpoint).await
    }

    /// Writes the held state, if any.
    pub async fn flush(&mut self) -> Result<Option<Checkpoint>> {
        match self.pending.take() {
            Some(checkpoint) => self.write(checkpoint).await.map(Some),
            None => Ok(None),
        }
    }

    fn build<T: Serialize + ?Sized>(
        &self,
        node: &str,
        state: &T,
        metadata: Map<String, Value>,
    ) -> Result<Checkpoint> {
        let mut checkpoint = Checkpoint::from_state(self.execution_id.clone(), node, state)?;
        checkpoint.metadata = metadata;
        Ok(checkpoint)
    }

    fn due(&self) -> bool {
        match self.policy {
            SavePolicy::EveryNode => true,
            SavePolicy::EveryNodes(n) => self.since_save >= n.get(),
            SavePolicy::Interval(every) => self.last_save.is_none_or(|t| t.elapsed() >= every),
        }
    }

    async fn head(&mut self) -> Result<Option<Head>> {
        if let Some(head) = &self.head {
            return Ok(head.clone());
        }
        let latest = self.store.latest(&self.execution_id).await?;
        let head = latest.map(|cp| Head {
            id: cp.id,
            version: cp.version,
        });
        self.head = Some(head.clone());
        Ok(head)
    }

    async fn write(&mut self, mut checkpoint: Checkpoint) -> Result<Checkpoint> {
        let head = self.head().await?;
        checkpoint.version = match &head {
            Some(h) => {
                checkpoint_core::validate::next_version(&checkpoint.execution_id, h.version)?
            }
            None => 1,
        };
        checkpoint.parent_id = head.map(|h| h.id);
        match &self.fence {
            Some(fence) => self.store.save_fenced(fence, &checkpoint).await?,
            None => self.store.save(&checkpoint).await?,
        };
        self.head = Some(Some(Head {
            id: checkpoint.id.clone(),
            version: checkpoint.version,
        }));
        self.pending = None;
        self.since_save = 0;
        self.last_save = Some(Instant::now());
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_core::Error;
    use checkpoint_memory::MemoryStore;
    use serde_json::json;

    #[tokio::test]
    async fn every_node_saves_each_record_with_lineage() {
        let store = MemoryStore::new();
        let mut cp = Checkpointer::new(store.clone(), "e");
        let a = cp.record("a", &json!(1)).await.unwrap().unwrap();
        let b = cp.record("b", &json!(2)).await.unwrap().unwrap();
        assert_eq!((a.version, a.parent_id.clone()), (1, None));
        assert_eq!(
            (b.version, b.parent_id.as_deref()),
            (2, Some(a.id.as_str()))
        );
        assert_eq!(store.list("e").await.unwrap(), vec![a, b]);
    }

    #[tokio::test]
    async fn every_n_nodes_holds_the_rest_until_flush() {
        let store = MemoryStore::new();
        let policy = SavePolicy::EveryNodes(NonZeroU32::new(3).unwrap());
        let mut cp = Checkpointer::new(store.clone(), "e").with_policy(policy);
        assert!(cp.record("a", &1).await.unwrap().is_none());
        assert!(cp.record("b", &2).await.unwrap().is_none());
        assert!(cp.has_pending());
        let third = cp.record("c", &3).await.unwrap().expect("every third node");
        assert_eq!((third.node_name.as_str(), third.version), ("c", 1));
        assert!(cp.record("d", &4).await.unwrap().is_none());
        assert_eq!(store.list("e").await.unwrap().len(), 1);
        let flushed = cp.flush().await.unwrap().expect("the held state");
        assert_eq!((flushed.node_name.as_str(), flushed.version), ("d", 2));
        assert!(cp.flush().await.unwrap().is_none(), "nothing left to flush");
    }

    #[tokio::test(start_paused = true)]
    async fn interval_saves_at_most_once_per_interval() {
        let store = MemoryStore::new();
        let policy = SavePolicy::Interval(Duration::from_secs(10));
        let mut cp = Checkpointer::new(store.clone(), "e").with_policy(policy);
        assert!(
            cp.record("a", &1).await.unwrap().is_some(),
            "the first record saves"
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(cp.record("b", &2).await.unwrap().is_none());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cp.record("c", &3).await.unwrap().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        let saved = cp.record("d", &4).await.unwrap().expect("10 s passed");
        assert_eq!((saved.node_name.as_str(), saved.version), ("d", 2));
        assert_eq!(store.list("e").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn save_now_ignores_the_policy_and_supersedes_the_held_state() {
        let store = MemoryStore::new();
        let policy = SavePolicy::EveryNodes(NonZeroU32::new(10).unwrap());
        let mut cp = Checkpointer::new(store.clone(), "e").with_policy(policy);
        cp.record("a", &1).await.unwrap();
        let done = cp.save_now("b", &2, Map::new()).await.unwrap();
        assert_eq!(done.version, 1);
        assert!(!cp.has_pending());
        assert_eq!(store.list("e").await.unwrap(), vec![done]);
    }

    #[tokio::test]
    async fn continues_an_existing_execution() {
        let store = MemoryStore::new();
        let mut first = Checkpointer::new(store.clone(), "e");
        first.record("a", &1).await.unwrap();
        let last = first.record("b", &2).await.unwrap().unwrap();
        let mut later = Checkpointer::new(store.clone(), "e");
        let next = later.record("c", &3).await.unwrap().unwrap();
        assert_eq!(next.version, 3);
        assert_eq!(next.parent_id, Some(last.id));
    }

    #[tokio::test]
    async fn two_writers_on_one_execution_one_wins_the_other_stores_nothing() {
        let store = MemoryStore::new();
        let mut a = Checkpointer::new(store.clone(), "e");
        let mut b = Checkpointer::new(store.clone(), "e");
        a.record("start", &0).await.unwrap();
        b = b.continue_from(store.latest("e").await.unwrap().as_ref());
        a.record("a-step", &1).await.unwrap();
        let lost = b.record("b-step", &2).await.unwrap_err();
        assert!(
            matches!(lost, Error::Conflict { version: 2, .. }),
            "{lost:?}"
        );
        let nodes: Vec<String> = store
            .list("e")
            .await
            .unwrap()
            .into_iter()
            .map(|cp| cp.node_name)
            .collect();
        assert_eq!(nodes, ["start", "a-step"]);
    }

    #[tokio::test]
    async fn unserializable_state_is_refused_before_the_store() {
        let store = MemoryStore::new();
        let mut cp = Checkpointer::new(store.clone(), "e");
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        let err = cp.record("a", &bad).await.unwrap_err();
        assert!(matches!(err, Error::Serialization(_)), "{err:?}");
        assert!(store.list("e").await.unwrap().is_empty());
    }
}
