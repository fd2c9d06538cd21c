//! Durable checkpoints for [adk-graph](https://docs.rs/adk-graph): its
//! [`Checkpointer`](adk_graph::checkpoint::Checkpointer) over any
//! [`CheckpointStore`](checkpoint_core::CheckpointStore), so a graph keeps its state in
//! PostgreSQL or SQLite (or memory, for tests) with everything the store does: delta storage,
//! group commit, encryption, retention.
//!
//! ```
//! use adk_graph::edge::{END, START};
//! use adk_graph::error::GraphError;
//! use adk_graph::graph::StateGraph;
//! use adk_graph::node::{ExecutionConfig, NodeOutput};
//! use adk_graph::state::State;
//! use checkpoint_adk::AdkCheckpointer;
//! use checkpoint_memory::MemoryStore;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), GraphError> {
//! let store = MemoryStore::new(); // or SqliteStore, PostgresStore
//! let graph = StateGraph::with_channels(&["status"])
//!     .add_node_fn("prepare", |_ctx| async move {
//!         Ok(NodeOutput::new().with_update("status", json!("drafted")))
//!     })
//!     .add_node_fn("send", |_ctx| async move {
//!         Ok(NodeOutput::new().with_update("status", json!("sent")))
//!     })
//!     .add_edge(START, "prepare")
//!     .add_edge("prepare", "send")
//!     .add_edge("send", END)
//!     .compile()?
//!     .with_checkpointer(AdkCheckpointer::new(store.clone()))
//!     .with_interrupt_before(&["send"]);
//!
//! let paused = graph.invoke(State::new(), ExecutionConfig::new("mail-1")).await;
//! assert!(matches!(paused, Err(GraphError::Interrupted(_))));
//! // Later, in another process: the same thread continues past the gate.
//! let done = graph.invoke(State::new(), ExecutionConfig::new("mail-1")).await?;
//! assert_eq!(done.get("status"), Some(&json!("sent")));
//! # Ok(())
//! # }
//! ```
//!
//! # Mapping
//!
//! | adk-graph | checkpoint |
//! | --- | --- |
//! | thread | execution (`namespace/thread` with a [namespace](AdkCheckpointer::namespaced)) |
//! | checkpoint id | id |
//! | the whole checkpoint (state, step, pending nodes, ...) | state, as JSON, read back exactly |
//! | metadata | metadata |
//! | first pending node (`__end__` when none) | node name |
//! | `created_at` | timestamp (so age-based retention follows it) |
//! | save order | version, assigned by the store |
//!
//! `load` returns the last *saved* checkpoint of a thread and `list` returns them in save
//! order, as adk-graph's own backends do; `step` is not a version (one step is often saved
//! twice). Saving a checkpoint id that exists replaces that checkpoint in place. `delete`
//! clears the thread. `prune` applies adk-graph's [`RetentionPolicy`] through the store's
//! retention for that one execution (index probes, never a read of the thread); see
//! [`AdkCheckpointer`] for what "newest" means.
//!
//! [`RetentionPolicy`]: adk_graph::checkpoint::RetentionPolicy

mod checkpointer;
mod error;

pub use checkpointer::AdkCheckpointer;
pub use error::store_error;
