//! The core of **checkpoint**: durable checkpoints for graph and agent workflows.
//!
//! After every node a workflow saves a [`Checkpoint`] of its state; after a crash, a deploy or a
//! human pause it resumes from the latest one, or travels back to any earlier one. This crate
//! holds the model, the [`CheckpointStore`] contract every backend implements, the typed
//! [`Error`], the input rules ([`Limits`]) and, behind the `conformance` feature, the shared
//! conformance suite that proves a backend keeps the contract.
//!
//! Backends: `checkpoint-sqlite` (the zero-setup durable default: one file, no server),
//! `checkpoint-postgres` (production, several service instances sharing one database) and
//! `checkpoint-memory` (tests).
//!
//! ```
//! use checkpoint_core::{Checkpoint, CheckpointStore, ListQuery};
//!
//! async fn history(store: &dyn CheckpointStore) -> checkpoint_core::Result<()> {
//!     let first = Checkpoint::new("run-1", "plan", serde_json::json!({"todo": 3}));
//!     assert_eq!(store.save(&first).await?, 1);
//!     let second = Checkpoint::new("run-1", "act", serde_json::json!({"todo": 2}))
//!         .with_parent(&first.id);
//!     assert_eq!(store.save(&second).await?, 2);
//!
//!     let latest = store.latest("run-1").await?.expect("two checkpoints");
//!     assert_eq!(latest.node_name, "act");
//!     let page = store.list_page(&ListQuery::new("run-1").limit(1)).await?;
//!     assert_eq!(page.items[0].id, first.id);
//!     assert_eq!(page.next_cursor, Some(1));
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

mod checkpoint;
pub mod equal;
mod error;
pub mod lease;
pub mod meta;
pub mod retention;
mod store;
pub mod telemetry;
pub mod validate;
mod verification;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use checkpoint::{normalize_timestamp, Checkpoint};
pub use error::{BoxError, Error, Result};
pub use lease::{Fence, Lease};
pub use store::{
    json_equal, CheckpointStore, ExecutionQuery, ExecutionSummary, IdScope, ListQuery, Order, Page,
    RetentionPolicy,
};
pub use validate::Limits;
pub use verification::{Damage, Verification};
