//! Reading an execution back: resume, history, human edits.

use async_trait::async_trait;
use checkpoint_core::{Checkpoint, CheckpointStore, Error, ListQuery, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::meta;
use crate::migrate::Migrations;
use crate::WorkflowError;

/// A checkpoint with its state typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed<T> {
    /// The node after which the state was saved.
    pub node: String,
    /// The node that runs next, `None` when the run had finished.
    pub next: Option<String>,
    /// Nodes completed so far.
    pub step: u64,
    /// The typed state.
    pub state: T,
    /// The checkpoint itself.
    pub checkpoint: Checkpoint,
}

impl<T: DeserializeOwned> Resumed<T> {
    fn from_checkpoint(checkpoint: Checkpoint) -> Result<Self> {
        Ok(Resumed {
            node: checkpoint.node_name.clone(),
            next: meta::next(&checkpoint),
            step: meta::step(&checkpoint),
            state: checkpoint.state_as()?,
            checkpoint,
        })
    }

    /// Upgrades `checkpoint` in memory ([`Migrations::upgrade_checkpoint`]) and types it.
    fn migrated(
        mut checkpoint: Checkpoint,
        migrations: &Migrations,
    ) -> std::result::Result<Self, WorkflowError> {
        let execution_id = checkpoint.execution_id.clone();
        let failed = |source| WorkflowError::Migration {
            execution_id: execution_id.clone(),
            source,
        };
        migrations
            .upgrade_checkpoint(&mut checkpoint)
            .map_err(failed)?;
        let state = migrations.state_as(&checkpoint).map_err(failed)?;
        Ok(Resumed {
            node: checkpoint.node_name.clone(),
            next: meta::next(&checkpoint),
            step: meta::step(&checkpoint),
            state,
            checkpoint,
        })
    }
}

/// Walks an execution's history one page at a time (keyset pagination), oldest first.
pub struct History<'a, S: ?Sized> {
    store: &'a S,
    next: Option<ListQuery>,
}

impl<S: ?Sized> std::fmt::Debug for History<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<S: CheckpointStore + ?Sized> History<'_, S> {
    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Checkpoint>>> {
        let Some(query) = self.next.take() else {
            return Ok(None);
        };
        let page = self.store.list_page(&query).await?;
        self.next = query.next(&page);
        Ok(Some(page.items))
    }

    /// The next page with every state upgraded to `migrations`' current version (in memory;
    /// the stored checkpoints are untouched), or `None` after the last.
    ///
    /// # Errors
    /// [`WorkflowError::Store`], or [`WorkflowError::Migration`] for the first checkpoint of
    /// the page that cannot be upgraded (the page is then lost, the walk goes on after it).
    pub async fn next_page_migrated(
        &mut self,
        migrations: &Migrations,
    ) -> std::result::Result<Option<Vec<Checkpoint>>, WorkflowError> {
        let Some(mut page) = self.next_page().await? else {
            return Ok(None);
        };
        for checkpoint in &mut page {
            migrations
                .upgrade_checkpoint(checkpoint)
                .map_err(|source| WorkflowError::Migration {
                    execution_id: checkpoint.execution_id.clone(),
                    source,
                })?;
        }
        Ok(Some(page))
    }
}

/// The checkpoint an edit of `execution_id` follows.
pub(crate) async fn latest_to_edit<S: CheckpointStore + ?Sized>(
    store: &S,
    execution_id: &str,
) -> Result<Checkpoint> {
    store.latest(execution_id).await?.ok_or_else(|| {
        Error::invalid(
            "execution_id",
            format!("{execution_id} has no checkpoint to update"),
        )
    })
}

/// An edit of `latest`: `state` as its next version, keeping its progress, its pause, its
/// graph and its state version.
pub(crate) fn edit_of<T: Serialize + ?Sized>(
    latest: &Checkpoint,
    execution_id: &str,
    as_node: &str,
    state: &T,
) -> Result<Checkpoint> {
    let mut edit = Checkpoint::from_state(execution_id, as_node, state)?
        .with_parent(&latest.id)
        .with_version(checkpoint_core::validate::next_version(
            execution_id,
            latest.version,
        )?);
    for key in [
        meta::STEP,
        meta::NEXT,
        meta::INTERRUPT,
        meta::GRAPH,
        meta::GRAPH_NODES,
        meta::STATE_VERSION,
    ] {
        if let Some(value) = latest.metadata.get(key) {
            edit.metadata.insert(key.into(), value.clone());
        }
    }
    edit.metadata
        .insert(meta::SOURCE.into(), Value::from("update"));
    edit.metadata
        .insert(meta::OUTCOME.into(), Value::from("updated"));
    Ok(edit)
}

/// Workflow reads and edits on any store.
///
/// ```
/// use checkpoint_core::CheckpointStore;
/// use checkpoint_memory::MemoryStore;
/// use checkpoint_workflow::{Checkpointer, WorkflowStoreExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> checkpoint_core::Result<()> {
/// let store = MemoryStore::new();
/// Checkpointer::new(&store, "run-1").record("draft", &"hello").await?;
/// let edit = store.update_state("run-1", "review", &"hello, world").await?;
/// let resumed = store.resume::<String>("run-1").await?.expect("two checkpoints");
/// assert_eq!(resumed.state, "hello, world");
/// assert_eq!(resumed.checkpoint.id, edit.id);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait WorkflowStoreExt: CheckpointStore {
    /// The latest checkpoint of `execution_id` with its state as `T`; `None` for an execution
    /// without checkpoints.
    ///
    /// # Errors
    /// [`Error::Serialization`] when the state is not a `T`.
    async fn resume<T: DeserializeOwned>(&self, execution_id: &str) -> Result<Option<Resumed<T>>> {
        match self.latest(execution_id).await? {
            Some(checkpoint) => Resumed::from_checkpoint(checkpoint).map(Some),
            None => Ok(None),
        }
    }

    /// [`resume`](Self::resume) with the state upgraded to `migrations`' current version
    /// ([`crate::migrate`]); the stored checkpoint is untouched.
    ///
    /// # Errors
    /// [`WorkflowError::Store`]; [`WorkflowError::Migration`] when the state cannot be
    /// upgraded or is not a `T`.
    async fn resume_migrated<T: DeserializeOwned>(
        &self,
        execution_id: &str,
        migrations: &Migrations,
    ) -> std::result::Result<Option<Resumed<T>>, WorkflowError> {
        match self.latest(execution_id).await? {
            Some(checkpoint) => Resumed::migrated(checkpoint, migrations).map(Some),
            None => Ok(None),
        }
    }

    /// [`resume_from`](Self::resume_from) with the state upgraded to `migrations`' current
    /// version: time travel to a checkpoint saved by older code.
    ///
    /// # Errors
    /// As [`resume_migrated`](Self::resume_migrated); [`Error::NotFound`] (as
    /// [`WorkflowError::Store`]) for an unknown id.
    async fn resume_from_migrated<T: DeserializeOwned>(
        &self,
        id: &str,
        migrations: &Migrations,
    ) -> std::result::Result<Resumed<T>, WorkflowError> {
        Resumed::migrated(self.load(id).await?, migrations)
    }

    /// Checkpoint `id` with its state as `T`.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; [`Error::Serialization`] when the state is not a
    /// `T`.
    async fn resume_from<T: DeserializeOwned>(&self, id: &str) -> Result<Resumed<T>> {
        Resumed::from_checkpoint(self.load(id).await?)
    }

    /// The history of `execution_id`, `page_size` checkpoints a page, oldest first.
    fn history(&self, execution_id: &str, page_size: usize) -> History<'_, Self> {
        History {
            store: self,
            next: Some(ListQuery::new(execution_id).limit(page_size)),
        }
    }

    /// A person's edit: `state` becomes the next version of `execution_id`, saved as if node
    /// `as_node` had produced it. It keeps the latest checkpoint's step, next node and pause,
    /// so a paused run continues with the edited state; metadata `source` is `"update"`. It
    /// also keeps the latest checkpoint's graph and state version: the edit is taken to be
    /// in the shape of the state it replaces. To record the running code's version instead
    /// (the edited state was read through migrations), use
    /// [`Workflow::update_state`](crate::Workflow::update_state).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the execution has no checkpoint;
    /// [`Error::Conflict`] when another writer advanced it meanwhile.
    async fn update_state<T: Serialize + Sync + ?Sized>(
        &self,
        execution_id: &str,
        as_node: &str,
        state: &T,
    ) -> Result<Checkpoint> {
        let latest = latest_to_edit(self, execution_id).await?;
        let edit = edit_of(&latest, execution_id, as_node, state)?;
        self.save(&edit).await?;
        Ok(edit)
    }
}

impl<S: CheckpointStore + ?Sized> WorkflowStoreExt for S {}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_memory::MemoryStore;
    use serde_json::json;

    use crate::Checkpointer;

    #[tokio::test]
    async fn resume_types_the_latest_state() {
        let store = MemoryStore::new();
        assert!(store.resume::<u32>("e").await.unwrap().is_none());
        let mut cp = Checkpointer::new(&store, "e");
        cp.record_with("a", &1u32, meta::run(1, Some("b"), "ok"))
            .await
            .unwrap();
        let resumed = store.resume::<u32>("e").await.unwrap().unwrap();
        assert_eq!(resumed.state, 1);
        assert_eq!(resumed.node, "a");
        assert_eq!(resumed.next.as_deref(), Some("b"));
        assert_eq!(resumed.step, 1);
        let err = store.resume::<Vec<String>>("e").await.unwrap_err();
        assert!(matches!(err, Error::Serialization(_)), "{err:?}");
    }

    #[tokio::test]
    async fn resume_from_reads_any_checkpoint() {
        let store = MemoryStore::new();
        let mut cp = Checkpointer::new(&store, "e");
        let first = cp.record("a", &"one").await.unwrap().unwrap();
        cp.record("b", &"two").await.unwrap();
        let back: Resumed<String> = store.resume_from(&first.id).await.unwrap();
        assert_eq!(back.state, "one");
        assert!(matches!(
            store.resume_from::<String>("nope").await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn history_pages_through_everything_in_order() {
        let store = MemoryStore::new();
        let mut cp = Checkpointer::new(&store, "e");
        for i in 0..7 {
            cp.record("n", &i).await.unwrap();
        }
        let mut history = store.history("e", 3);
        let mut sizes = Vec::new();
        let mut states = Vec::new();
        while let Some(page) = history.next_page().await.unwrap() {
            sizes.push(page.len());
            states.extend(page.into_iter().map(|c| c.state));
        }
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(states, (0..7).map(|i| json!(i)).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn update_becomes_the_next_version_and_keeps_the_pause() {
        let store = MemoryStore::new();
        let mut cp = Checkpointer::new(&store, "e");
        let mut pause = meta::run(2, Some("publish"), "interrupted");
        pause.insert(meta::INTERRUPT.into(), "before".into());
        let paused = cp
            .record_with("review", &"draft", pause)
            .await
            .unwrap()
            .unwrap();
        let edit = store.update_state("e", "human", &"edited").await.unwrap();
        assert_eq!(edit.version, 2);
        assert_eq!(edit.parent_id.as_deref(), Some(paused.id.as_str()));
        assert_eq!(edit.metadata[meta::SOURCE], "update");
        assert_eq!(meta::next(&edit).as_deref(), Some("publish"));
        assert_eq!(meta::paused_before(&edit).as_deref(), Some("publish"));
        assert_eq!(meta::step(&edit), 2);
    }

    #[tokio::test]
    async fn update_of_an_empty_execution_is_refused() {
        let store = MemoryStore::new();
        let err = store.update_state("nobody", "n", &1).await.unwrap_err();
        assert!(err.is_invalid_field("execution_id"), "{err}");
        assert!(store.list("nobody").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn update_racing_a_writer_conflicts() {
        let store = MemoryStore::new();
        let mut a = Checkpointer::new(&store, "e");
        a.record("a", &1).await.unwrap();
        let mut b = Checkpointer::new(&store, "e");
        b = b.continue_from(store.latest("e").await.unwrap().as_ref());
        store.update_state("e", "human", &2).await.unwrap();
        assert!(matches!(
            b.record("b", &3).await,
            Err(Error::Conflict { version: 2, .. })
        ));
    }
}
