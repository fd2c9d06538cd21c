//! Shared set-up for the examples: the store the chosen cargo feature selects.
//!
//! - `sqlite` (default): a SQLite file, `checkpoint-examples.db` under the system temp dir or
//!   the path in `CHECKPOINT_SQLITE_PATH`; it survives the process, no server needed.
//! - `memory`: an in-memory store; nothing survives the process.
//! - `postgres`: PostgreSQL at `DATABASE_URL` (and `CHECKPOINT_SCHEMA`, when set); the schema
//!   is migrated on connect.
//!
//! When several are built in, PostgreSQL is used before SQLite and SQLite before memory, unless
//! `CHECKPOINT_BACKEND` (`postgres`, `sqlite` or `memory`) names one of them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use checkpoint_core::CheckpointStore;

/// A store the examples can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryStore`: nothing survives the process.
    Memory,
    /// `SqliteStore` on [`sqlite_path`].
    Sqlite,
    /// `PostgresStore` at `DATABASE_URL`.
    Postgres,
}

impl Backend {
    /// The backends this build has, preferred first.
    pub fn built() -> Vec<Backend> {
        let mut built = Vec::new();
        if cfg!(feature = "postgres") {
            built.push(Backend::Postgres);
        }
        if cfg!(feature = "sqlite") {
            built.push(Backend::Sqlite);
        }
        built.push(Backend::Memory);
        built
    }

    /// The backend to use: `CHECKPOINT_BACKEND` when set, else the preferred one built in.
    ///
    /// # Errors
    /// `CHECKPOINT_BACKEND` names a backend this build does not have.
    pub fn chosen() -> anyhow::Result<Backend> {
        let built = Self::built();
        let Ok(name) = std::env::var("CHECKPOINT_BACKEND") else {
            return Ok(built[0]);
        };
        match built.iter().find(|b| b.name() == name) {
            Some(backend) => Ok(*backend),
            None => bail!(
                "CHECKPOINT_BACKEND={name:?}, but this build has only {:?} (cargo features pick them)",
                built.iter().map(|b| b.name()).collect::<Vec<_>>()
            ),
        }
    }

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Whether what it saves survives the process.
    pub fn durable(self) -> bool {
        self != Backend::Memory
    }

    /// Where it keeps checkpoints, for the examples to print.
    pub fn location(self) -> String {
        match self {
            Backend::Postgres => "PostgreSQL at DATABASE_URL".to_owned(),
            Backend::Sqlite => format!("the SQLite file {}", sqlite_path().display()),
            Backend::Memory => "memory (gone when the process ends)".to_owned(),
        }
    }
}

/// The SQLite file the `sqlite` backend uses: `CHECKPOINT_SQLITE_PATH`, or
/// `checkpoint-examples.db` in the system temp dir.
pub fn sqlite_path() -> PathBuf {
    std::env::var_os("CHECKPOINT_SQLITE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("checkpoint-examples.db"))
}

/// The store of the [chosen](Backend::chosen) backend.
///
/// # Errors
/// With `postgres`: `DATABASE_URL` unset, or the server unreachable. With `sqlite`: the file
/// cannot be opened or created.
pub async fn store() -> anyhow::Result<Arc<dyn CheckpointStore>> {
    open(Backend::chosen()?).await
}

/// The store of `backend`.
///
/// # Errors
/// As [`store`].
pub async fn open(backend: Backend) -> anyhow::Result<Arc<dyn CheckpointStore>> {
    match backend {
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
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
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => {
            let options = checkpoint_sqlite::SqliteOptions::file(sqlite_path());
            Ok(Arc::new(
                checkpoint_sqlite::SqliteStore::open(options).await?,
            ))
        }
        Backend::Memory => Ok(Arc::new(checkpoint_memory::MemoryStore::new())),
        #[allow(unreachable_patterns)]
        other => bail!("this build has no {} store", other.name()),
    }
}

/// A suffix that makes an execution id unique to this run of an example.
pub fn run_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos)
}

// The README's and the docs' code samples compile as doc tests (those that name PostgreSQL
// or SQLite types with the backend's feature, as `--all-features` builds them in CI).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../../docs/postgres.md")]
struct PostgresDocDoctests;

#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../../docs/scaling.md")]
struct ScalingDocDoctests;

#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../../docs/sqlite.md")]
struct SqliteDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/workflows.md")]
struct WorkflowsDocDoctests;

#[cfg(doctest)]
#[doc = include_str!("../../docs/metrics.md")]
struct MetricsDocDoctests;
