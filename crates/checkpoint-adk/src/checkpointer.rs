//! [`AdkCheckpointer`]: adk-graph's `Checkpointer` over a [`CheckpointStore`].

use adk_graph::checkpoint::{Checkpointer, RetentionPolicy as AdkRetention};
use adk_graph::error::{GraphError, Result};
use adk_graph::state::Checkpoint as AdkCheckpoint;
use async_trait::async_trait;
use checkpoint_core::{Checkpoint, CheckpointStore, Error, RetentionPolicy};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::to_graph;

/// The node name of a checkpoint with no pending node (the run finished).
const NO_PENDING_NODE: &str = adk_graph::edge::END;

/// The longest namespace, in bytes.
const MAX_NAMESPACE_BYTES: usize = 64;

/// adk-graph's [`Checkpointer`] over the store `S` (a `PostgresStore`, a `SqliteStore`, a
/// `MemoryStore`, an `Arc<dyn CheckpointStore>`, or a reference to one).
///
/// - `load` is the thread's last saved checkpoint (its highest version), `list` is the thread
///   in save order, `load_by_id` reads one checkpoint (`None` for an unknown id, or one of
///   another namespace).
/// - `prune` keeps adk-graph's rules: at most `max_per_thread` checkpoints, none older than
///   `max_age` (by `created_at`), the newest always kept, where "newest" is the last saved,
///   the one `load` returns (adk-graph's memory backend does the same; its SQLite backend
///   sorts by `created_at`, which differs only for checkpoints backdated out of save order).
///   Each limit is one statement on the thread's execution (an index range below one index
///   probe), committed without waiting for its flush to disk
///   ([`RetentionPolicy::lazy_flush`]): adk-graph's executor prunes after every save, and a
///   crash that undoes a prune only leaves old checkpoints for the next prune to remove.
/// - Errors are [`GraphError::IoError`] whose source is the store's typed
///   [`checkpoint_core::Error`]; [`store_error`](crate::store_error) gets it back.
#[derive(Clone, Debug)]
pub struct AdkCheckpointer<S> {
    store: S,
    /// `Some("ns")` puts thread `t` in execution `ns/t`.
    namespace: Option<String>,
}

impl<S: CheckpointStore> AdkCheckpointer<S> {
    /// The threads of `store`, one execution each, named as the thread.
    pub fn new(store: S) -> Self {
        AdkCheckpointer {
            store,
            namespace: None,
        }
    }

    /// The threads of `store` under `namespace`: thread `t` is execution `namespace/t`, so
    /// several applications (or tests) share one table without seeing each other's threads.
    /// Use a namespace for every adapter on a table, or for none.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `namespace` when it is empty, longer than 64 bytes, or
    /// holds a `/` or a NUL character.
    pub fn namespaced(store: S, namespace: impl Into<String>) -> checkpoint_core::Result<Self> {
        let namespace = namespace.into();
        let problem = if namespace.is_empty() {
            Some("must not be empty".to_owned())
        } else if namespace.len() > MAX_NAMESPACE_BYTES {
            Some(format!(
                "is {} bytes, the limit is {MAX_NAMESPACE_BYTES}",
                namespace.len()
            ))
        } else if namespace.contains(['/', '\0']) {
            Some("must not contain '/' or a NUL character".to_owned())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Error::invalid("namespace", problem));
        }
        Ok(AdkCheckpointer {
            store,
            namespace: Some(namespace),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The execution that holds `thread_id`.
    pub fn execution_id(&self, thread_id: &str) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{thread_id}"),
            None => thread_id.to_owned(),
        }
    }

    /// Whether `execution_id` belongs to this adapter's namespace.
    fn owns(&self, execution_id: &str) -> bool {
        match &self.namespace {
            Some(namespace) => execution_id
                .strip_prefix(namespace.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
            None => true,
        }
    }

    fn to_store(&self, checkpoint: &AdkCheckpoint) -> Result<Checkpoint> {
        let node = checkpoint
            .pending_nodes
            .first()
            .map_or(NO_PENDING_NODE, String::as_str);
        let state = serde_json::to_value(checkpoint)?;
        let metadata: Map<String, Value> = checkpoint
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let created = &checkpoint.created_at;
        let timestamp = OffsetDateTime::from_unix_timestamp(created.timestamp())
            .map(|t| t + time::Duration::nanoseconds(i64::from(created.timestamp_subsec_nanos())))
            .map_err(|e| {
                to_graph(Error::invalid(
                    "timestamp",
                    format!("created_at {created} is out of range: {e}"),
                ))
            })?;
        let mut stored = Checkpoint::new(self.execution_id(&checkpoint.thread_id), node, state)
            .with_id(&checkpoint.checkpoint_id)
            .with_timestamp(timestamp);
        stored.metadata = metadata;
        Ok(stored)
    }
}

/// The adk checkpoint a stored one holds.
fn from_store(stored: Checkpoint) -> Result<AdkCheckpoint> {
    serde_json::from_value(stored.state).map_err(|e| {
        GraphError::SerializationError(format!(
            "checkpoint {} of execution {} is not an adk-graph checkpoint: {e}",
            stored.id, stored.execution_id
        ))
    })
}

fn removed(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}

#[async_trait]
impl<S: CheckpointStore> Checkpointer for AdkCheckpointer<S> {
    async fn save(&self, checkpoint: &AdkCheckpoint) -> Result<String> {
        let stored = self.to_store(checkpoint)?;
        self.store.save(&stored).await.map_err(to_graph)?;
        Ok(checkpoint.checkpoint_id.clone())
    }

    async fn load(&self, thread_id: &str) -> Result<Option<AdkCheckpoint>> {
        let latest = self
            .store
            .latest(&self.execution_id(thread_id))
            .await
            .map_err(to_graph)?;
        latest.map(from_store).transpose()
    }

    async fn load_by_id(&self, checkpoint_id: &str) -> Result<Option<AdkCheckpoint>> {
        match self.store.load(checkpoint_id).await {
            Ok(stored) if self.owns(&stored.execution_id) => from_store(stored).map(Some),
            Ok(_) | Err(Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(to_graph(err)),
        }
    }

    async fn list(&self, thread_id: &str) -> Result<Vec<AdkCheckpoint>> {
        self.store
            .list(&self.execution_id(thread_id))
            .await
            .map_err(to_graph)?
            .into_iter()
            .map(from_store)
            .collect()
    }

    async fn delete(&self, thread_id: &str) -> Result<()> {
        self.store
            .clear(&self.execution_id(thread_id))
            .await
            .map_err(to_graph)?;
        Ok(())
    }

    async fn prune(&self, thread_id: &str, policy: &AdkRetention) -> Result<usize> {
        let execution = self.execution_id(thread_id);
        let mut total = 0usize;
        if let Some(count) = policy.max_per_thread {
            let keep = u64::try_from(count.max(1)).unwrap_or(u64::MAX);
            let by_count = RetentionPolicy::keep_last(keep)
                .for_execution(&execution)
                .lazy_flush();
            let gone = self.store.prune(&by_count).await.map_err(to_graph)?;
            total = total.saturating_add(removed(gone));
        }
        if let Some(age) = policy.max_age {
            // Older than `age`, the newest always kept.
            let by_age = RetentionPolicy::keep_last(1)
                .and_older_than(age)
                .for_execution(&execution)
                .lazy_flush();
            let gone = self.store.prune(&by_age).await.map_err(to_graph)?;
            total = total.saturating_add(removed(gone));
        }
        Ok(total)
    }
}
