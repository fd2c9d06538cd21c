//! The PostgreSQL [`CheckpointStore`](checkpoint_core::CheckpointStore): the production home of workflow checkpoints, shared by
//! several service instances.
//!
//! - One round trip per `save`; the version rule is the unique index on
//!   `(execution_id, version)`, so racing writers across instances are decided by the server.
//! - `save_batch` is one transaction and one insert of arrays (`unnest`).
//! - Reads that touch one execution are index range scans: their cost does not grow with the
//!   table; pages are keyset, never `OFFSET`.
//! - Versioned migrations under an advisory lock; a table made by LangGraphGo's
//!   `PostgresCheckpointStore` is adopted in place.
//! - Errors are typed: lost connections and pool timeouts are `Error::Unavailable`
//!   (retryable), the SQLSTATE stays in the source of `Error::Backend`.
//!
//! ```no_run
//! use checkpoint_core::{Checkpoint, CheckpointStore};
//! use checkpoint_postgres::{PostgresOptions, PostgresStore};
//!
//! # async fn run() -> checkpoint_core::Result<()> {
//! let options = PostgresOptions::new("postgres://app:secret@localhost/app")?
//!     .table("checkpoints")
//!     .max_connections(32);
//! let store = PostgresStore::connect(options).await?;
//! let version = store.save(&Checkpoint::new("run-1", "plan", serde_json::json!({}))).await?;
//! assert_eq!(version, 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod error;
#[cfg(test)]
mod mock;
mod options;
mod pool;
mod retry;
mod schema;
mod state;
mod store;

pub use checkpoint_format::sealing::{Encryption, EncryptionError, EncryptionKey};
pub use error::{DbError, DbErrorKind};
pub use options::tls::SslMode;
pub use options::PostgresOptions;
pub use pool::{Cell, DbPool, DbTransaction, DeadpoolPool, Param, Row, Sql};
pub use retry::{is_transient, RetryPolicy};
pub use schema::layout::{PartitionPeriod, TableLayout, MAX_HASH_PARTITIONS};
pub use schema::leases::LeaseStatements;
pub use schema::statements::{RoutedSaves, Statements};
pub use schema::table::{check_identifier, TableName, MAX_TABLE_BYTES};
pub use schema::{MigrationReport, SchemaError, ADOPTED_WITHOUT_EXECUTION, SCHEMA_VERSION};
pub use state::encoding::StateEncoding;
pub use state::payload::Compression;
pub use store::group::settings::{GroupCommit, GroupCommitStats};
pub use store::notify::Listener;
pub use store::partitions::{
    DroppedPartitions, PartitionInfo, MAX_PARTITIONS_AHEAD, MAX_PARTITIONS_PER_CALL,
};
pub use store::reencrypt::{ReencryptBatch, MAX_REENCRYPT_BATCH};
pub use store::PostgresStore;

/// Re-exported so users can name the recycling method without depending on deadpool.
pub use deadpool_postgres::RecyclingMethod;
/// The parameter types of [`Sql`], re-exported so a [`DbPool`] can be written without
/// depending on tokio-postgres directly.
pub use tokio_postgres::types::Type;
