//! Shared set-up for the examples: the store the chosen cargo feature selects.
//!
//! - `memory` (default): an in-memory store; nothing survives the process.
//! - `postgres`: PostgreSQL at `DATABASE_URL` (and `CHECKPOINT_SCHEMA`, when set); the schema
//!   is migrated on connect.

use std::sync::Arc;

use checkpoint_core::CheckpointStore;

/// Whether the chosen store survives the process.
pub const DURABLE: bool = cfg!(feature = "postgres");

/// The name of the chosen backend.
pub const BACKEND: &str = if DURABLE { "postgres" } else { "memory" };

/// The store the chosen feature selects.
///
/// # Errors
/// With `postgres`: `DATABASE_URL` unset, or the server unreachable.
pub async fn store() -> anyhow::Result<Arc<dyn CheckpointStore>> {
    #[cfg(feature = "postgres")]
    {
        use anyhow::Context;
        let url = std::env::var("DATABASE_URL").context(
            "set DATABASE_URL (docker compose up -d postgres, then \
             DATABASE_URL=postgres://checkpoint:checkpoint@localhost:5432/checkpoint)",
        )?;
        let mut options = checkpoint_postgres::PostgresOptions::new(&url)?.max_connections(4);
        if let Ok(schema) = std::env::var("CHECKPOINT_SCHEMA") {
            options = options.schema(schema);
        }
        let store = checkpoint_postgres::PostgresStore::connect(options).await?;
        Ok(Arc::new(store))
    }
    #[cfg(not(feature = "postgres"))]
    {
        Ok(Arc::new(checkpoint_memory::MemoryStore::new()))
    }
}

/// A suffix that makes an execution id unique to this run of an example.
pub fn run_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos)
}

// The README's code sample compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
