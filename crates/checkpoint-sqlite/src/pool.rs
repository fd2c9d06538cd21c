//! The connection pool (deadpool, with a manager of our own), each connection set up for WAL,
//! the chosen durability and the busy timeout; and the one path every call takes to a
//! connection.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::{Error, Result};
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool::Runtime;
use deadpool_sync::SyncWrapper;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::commit::{self, CommitStats, Queue};
use crate::error::{self, SqliteError};
use crate::options::{Location, SqliteOptions};
use crate::row::StoredRow;

/// Statements kept prepared per connection: every statement the store runs, with room.
const STATEMENT_CACHE: usize = 64;

/// Opens connections set up for this store. Unlike deadpool-sqlite's manager, it does not run a
/// query on a blocking thread each time a pooled connection is handed out: a connection is
/// only discarded when a call panicked while holding it.
struct Manager {
    path: PathBuf,
    busy_timeout: Duration,
    synchronous: &'static str,
    memory: bool,
}

impl managed::Manager for Manager {
    type Type = SyncWrapper<Connection>;
    type Error = SqliteError;

    async fn create(&self) -> Result<Self::Type, SqliteError> {
        let (path, busy_timeout, synchronous, memory) = (
            self.path.clone(),
            self.busy_timeout,
            self.synchronous,
            self.memory,
        );
        SyncWrapper::new(Runtime::Tokio1, move || {
            let mut conn = Connection::open(path)?;
            set_up(&mut conn, busy_timeout, synchronous, memory)?;
            Ok(conn)
        })
        .await
    }

    async fn recycle(&self, conn: &mut Self::Type, _: &Metrics) -> RecycleResult<SqliteError> {
        if conn.is_mutex_poisoned() {
            return Err(RecycleError::message(
                "a call panicked while holding this connection",
            ));
        }
        Ok(())
    }
}

type Pool = managed::Pool<Manager>;

/// A pool of connections to one database, and the lock that lets this process's writes take
/// turns without spinning in SQLite's busy handler.
pub(crate) struct Db {
    pool: Pool,
    write_turn: tokio::sync::Mutex<()>,
    busy_timeout: Duration,
    saves: Arc<Queue>,
}

/// The path SQLite should open: relative paths that SQLite would read as something other than
/// a file (`:memory:`, a `file:` URI) are made explicit with `./`.
fn literal(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    let special = text == ":memory:" || text.starts_with("file:");
    if special && path.components().next() != Some(Component::RootDir) {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

/// Switches the database to WAL mode. The switch needs the exclusive lock, which SQLite does
/// not wait for through the busy handler when waiting could deadlock (another connection is
/// switching too, as when several processes open a new file at once); so this waits itself, up
/// to the busy timeout.
fn wal_mode(conn: &Connection, busy_timeout: Duration) -> Result<String, SqliteError> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < busy_timeout =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

fn set_up(
    conn: &mut Connection,
    busy_timeout: Duration,
    synchronous: &str,
    memory: bool,
) -> Result<(), SqliteError> {
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode = wal_mode(conn, busy_timeout)?;
    if !memory && !mode.eq_ignore_ascii_case("wal") {
        return Err(SqliteError::Driver(format!(
            "the database would not switch to WAL mode (it stays in {mode} mode); WAL needs a \
             local file system with shared memory"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(())
}

impl Db {
    pub(crate) fn open(options: &SqliteOptions) -> Result<Db> {
        options.validate()?;
        let (path, memory) = match &options.location {
            Location::File(path) => (literal(path), false),
            Location::Memory => (PathBuf::from(":memory:"), true),
        };
        let manager = Manager {
            path,
            busy_timeout: options.busy_timeout,
            synchronous: options.durability.pragma(),
            memory,
        };
        let busy_timeout = options.busy_timeout;
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .max_size(options.max_connections)
            .wait_timeout(Some(busy_timeout))
            .build()
            .map_err(|e| SqliteError::Pool(e.to_string()).into_core())?;
        Ok(Db {
            pool,
            write_turn: tokio::sync::Mutex::new(()),
            busy_timeout,
            saves: Arc::default(),
        })
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.pool.get().await.map_err(error::pool)?;
        conn.interact(f).await.map_err(error::interact)?
    }

    /// Stores `row` through group commit (see [`commit`]): queued, then written by whichever
    /// save next holds the write turn, together with every save queued by then.
    pub(crate) async fn save(&self, row: StoredRow) -> Result<i64> {
        let (token, mut answer) = self.saves.push(row);
        let deadline = tokio::time::Instant::now() + self.busy_timeout;
        loop {
            let turn = match tokio::time::timeout_at(deadline, self.write_turn.lock()).await {
                Ok(turn) => turn,
                Err(_) if self.saves.withdraw(token) => return Err(self.turn_timeout()),
                // A group already carries it: its answer follows that group's commit.
                Err(_) => return answer.await.unwrap_or_else(|_| Err(commit::lost())),
            };
            if let Ok(result) = answer.try_recv() {
                return result;
            }
            let group = self.saves.take();
            if group.is_empty() {
                // Taken by a group whose leader stopped waiting: that group still answers.
                drop(turn);
                return answer.await.unwrap_or_else(|_| Err(commit::lost()));
            }
            let conn = match self.pool.get().await {
                Ok(conn) => conn,
                Err(e) => {
                    let err = error::pool(e);
                    commit::refuse(group, &err);
                    continue;
                }
            };
            let queue = Arc::clone(&self.saves);
            // The blocking call answers every save of the group itself, so the answers arrive
            // even if this future is dropped while it runs.
            let ran = conn
                .interact(move |c| commit::write_group(c, &queue, group))
                .await;
            drop(turn);
            if let Err(e) = ran {
                tracing::error!(error = %e, "a group commit call failed");
            }
        }
    }

    /// What group commit has done so far.
    pub(crate) fn commit_stats(&self) -> CommitStats {
        self.saves.stats()
    }

    fn turn_timeout(&self) -> Error {
        Error::Unavailable {
            message: format!(
                "another write of this store held the database past the busy timeout of {:?}",
                self.busy_timeout
            ),
            source: None,
        }
    }

    /// Runs `f` in an immediate transaction (the write lock taken at `BEGIN`, so a transaction
    /// never fails half-way for want of it) and commits when `f` succeeds; anything else rolls
    /// back and leaves the database as it was.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _turn = tokio::time::timeout(self.busy_timeout, self.write_turn.lock())
            .await
            .map_err(|_| self.turn_timeout())?;
        self.read(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(error::driver)?;
            let out = f(&tx)?;
            tx.commit().map_err(error::driver)?;
            Ok(out)
        })
        .await
    }

    /// Closes the pool: calls after this fail with [`Error::Unavailable`].
    pub(crate) fn close(&self) {
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sqlite_would_misread_are_made_literal() {
        assert_eq!(literal(Path::new(":memory:")), Path::new("./:memory:"));
        assert_eq!(literal(Path::new("file:x.db")), Path::new("./file:x.db"));
        assert_eq!(literal(Path::new("/tmp/file:x")), Path::new("/tmp/file:x"));
        assert_eq!(literal(Path::new("data.db")), Path::new("data.db"));
    }
}
