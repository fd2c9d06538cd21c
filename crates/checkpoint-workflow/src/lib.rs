//! Durable workflows on any [`CheckpointStore`](checkpoint_core::CheckpointStore): save after
//! every node, resume after a crash, travel back, fork, and let a person pause, edit and
//! continue.
//!
//! - [`Checkpointer`] saves the states of one execution as consecutive versions with lineage,
//!   under a [`SavePolicy`]; each save returns once it is durable in the store.
//! - [`WorkflowStoreExt`] reads an execution back ([`resume`](WorkflowStoreExt::resume),
//!   [`resume_from`](WorkflowStoreExt::resume_from), [`history`](WorkflowStoreExt::history))
//!   and records a person's edit ([`update_state`](WorkflowStoreExt::update_state)); forks are
//!   [`CheckpointStore::fork`](checkpoint_core::CheckpointStore::fork).
//! - [`Workflow`] runs named async nodes over a typed state, checkpointing as it goes, and
//!   resumes an execution at the node after its latest checkpoint.
//!
//! ```
//! use checkpoint_core::CheckpointStore;
//! use checkpoint_memory::MemoryStore;
//! use checkpoint_workflow::{Next, RunStatus, Workflow, WorkflowStoreExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), checkpoint_workflow::WorkflowError> {
//! let workflow = Workflow::new("draft")
//!     .node("draft", |s: String| async move { Ok((s + " draft", Next::to("publish"))) })
//!     .node("publish", |s: String| async move { Ok((s + " published", Next::End)) })
//!     .interrupt_before("publish");
//! let store = MemoryStore::new();
//!
//! let paused = workflow.run(&store, "post-1", "a".to_string()).await?;
//! assert_eq!(paused.status, RunStatus::Interrupted { next: "publish".into() });
//! store.update_state("post-1", "editor", &"a reviewed draft").await?;
//! let done = workflow.run(&store, "post-1", String::new()).await?;
//! assert_eq!(done.state, "a reviewed draft published");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod checkpointer;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod graph;
pub mod meta;
pub mod migrate;
mod read;
mod workflow;

pub use checkpointer::{Checkpointer, SavePolicy};
pub use error::WorkflowError;
pub use graph::{Fingerprint, GraphChange, GraphShape};
pub use migrate::{MigrationError, Migrations, VersionedState};
pub use read::{History, Resumed, WorkflowStoreExt};
pub use workflow::{Next, NodeResult, RunOutcome, RunStatus, Workflow};

#[cfg(test)]
mod tests;
