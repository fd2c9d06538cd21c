//! The connection pool (deadpool, with a manager of our own), each connection set up for WAL,
//! the chosen durability and the busy timeout; and the one path every call takes to a
//! connection.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::{Error, Result, RetentionPolicy};
use checkpoint_format::encoder::Encoder;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool::Runtime;
use deadpool_sync::{InteractError, SyncWrapper};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::commit::{self, CommitStats, Done, Queue, Work};
use crate::error::{self, SqliteError};
use crate::options::{Durability, Location, SqliteOptions};
use crate::row::StoredRow;
use crate::write;

/// Statements kept prepared per connection: every statement the store runs, with room.
const STATEMENT_CACHE: usize = 64;

/// Connections kept for quick reads (see [`Db::read_here`]), at most.
const READERS: usize = 4;

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
    /// Idle connections for quick reads, and whether the store is closed (then none is
    /// handed out or taken back).
    readers: std::sync::Mutex<(Vec<Connection>, bool)>,
    /// The file quick reads open, `None` for an in-memory database (each connection to
    /// `:memory:` is a database of its own).
    reader_path: Option<PathBuf>,
    /// The `synchronous` setting of every pooled connection, put back after a lazy write.
    synchronous: &'static str,
}

/// The error of a group answer of the wrong kind: a defect, never an outcome of the write.
fn mismatch(done: &Done) -> Error {
    crate::SqliteError::Panicked(format!("a group commit answered {done:?} to another write"))
        .into_core()
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

/// Runs `f` on the pooled connection `conn`, where [`place`] says: on a worker thread of a
/// multi-threaded runtime right there, the worker's other tasks handed to another thread
/// meanwhile (`block_in_place`); on the thread that drives a multi-threaded runtime's
/// `block_on` (`#[tokio::main]`'s future) right there too. Either way there is no trip to a
/// blocking thread and back, which cost a sequential save more than SQLite's own work short of
/// the sync, and 20 to 80 µs from `block_on` (`docs/performance.md`, "Against the bare
/// library"). Elsewhere, or where the runtime refuses
/// to block in place (it panics before running anything), `f` runs on a blocking thread.
/// Wherever it runs, a panic in `f` poisons the connection's lock, so the pool drops the
/// connection, and is returned as [`SqliteError::Panicked`].
async fn on_connection<T, F>(conn: &managed::Object<Manager>, f: F) -> Result<T>
where
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    let mut f = Some(f);
    // Inside the closure: a panic in `f` unwinds through the guard and poisons it.
    let mut run = || {
        let f = f.take()?;
        Some(match conn.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(_) => Err(SqliteError::Panicked(
                "an earlier call panicked while holding this connection".into(),
            )
            .into_core()),
        })
    };
    let ran = match place() {
        Place::Worker => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::task::block_in_place(&mut run)
        })),
        Place::Here => std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut run)),
        Place::Blocking => Ok(None),
    };
    match ran {
        Ok(Some(out)) => return out,
        Err(payload) if f.is_none() => {
            return Err(error::interact(InteractError::Panic(payload)));
        }
        Ok(None) => {}
        // Refused before `f` ran: the blocking thread below, from now on for this thread.
        Err(_) => REFUSED_HERE.set(true),
    }
    let Some(f) = f else {
        return Err(SqliteError::Panicked("the call ran already".into()).into_core());
    };
    conn.interact(f).await.map_err(error::interact)?
}

/// The names tokio gives the threads of a runtime unless told otherwise (1.x before and
/// after it shortened the name).
const WORKER_THREAD_NAMES: [&str; 2] = ["tokio-rt-worker", "tokio-runtime-worker"];

thread_local! {
    /// Set once the runtime refused to block in place on this thread.
    static REFUSED_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Where a call to a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// On this worker thread of a multi-threaded runtime, its other tasks handed to another
    /// thread meanwhile (`block_in_place`).
    Worker,
    /// Right here, on a thread of a multi-threaded runtime that runs no task: the one that
    /// drives the future given to `block_on`, whose spawned tasks all run on the workers, so
    /// the call holds up nothing but the future that waits for it.
    Here,
    /// On a blocking thread: a current-thread runtime (its one thread runs every task), a task
    /// on a thread tokio does not name as a worker, or a thread where tokio refused to block.
    Blocking,
}

/// Where a call to a connection runs. Tokio offers no way to ask whether a thread may block,
/// and refuses `block_in_place` by panicking (on a current-thread runtime, inside a
/// `LocalSet`), so block-in-place is tried only on the threads tokio names as its workers
/// (the tasks a server spawns run there), and only once on a thread where it refused. A
/// thread in a multi-threaded runtime's context that is not running a task is the one
/// driving `block_on`, or a thread of the caller's own: the call runs there directly. (A
/// future driven by `LocalSet::run_until` on that thread is not a task either: its local
/// tasks wait while the call runs, as they wait for any other code of that future.)
fn place() -> Place {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !multi_threaded {
        return Place::Blocking;
    }
    let worker = std::thread::current()
        .name()
        .is_some_and(|name| WORKER_THREAD_NAMES.iter().any(|w| name.starts_with(w)));
    if worker && !REFUSED_HERE.get() {
        Place::Worker
    } else if !worker && tokio::task::try_id().is_none() {
        Place::Here
    } else {
        Place::Blocking
    }
}

/// Runs `f` in an immediate transaction (the write lock taken at `BEGIN`) and commits when it
/// succeeds; anything else rolls back.
fn in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(error::driver)?;
    let out = f(&tx)?;
    tx.commit().map_err(error::driver)?;
    Ok(out)
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

/// A connection for quick reads: it only reads (`query_only`), and never waits for a lock (a
/// busy database sends the read through the pool instead).
fn reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
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
        let synchronous = manager.synchronous;
        let reader_path = (!memory).then(|| manager.path.clone());
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
            readers: std::sync::Mutex::new((Vec::new(), false)),
            reader_path,
            synchronous,
        })
    }

    /// Opens the connections for quick reads, on a blocking thread. A file that cannot be
    /// opened again leaves the store with none: every read then takes the pool.
    pub(crate) async fn open_readers(&self) {
        let Some(path) = self.reader_path.clone() else {
            return;
        };
        let opened = tokio::task::spawn_blocking(move || {
            (0..READERS)
                .map_while(|_| reader(&path).ok())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        self.idle_readers().0.extend(opened);
    }

    fn idle_readers(&self) -> std::sync::MutexGuard<'_, (Vec<Connection>, bool)> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the short read `f` on an idle reader connection, on the calling thread: no trip to
    /// a blocking thread and back, which cost more than SQLite's own work on one indexed row
    /// (measured: `latest` p50 28 µs through the pool, 5 µs here; the bare read, 2–4 µs).
    /// `None` when no reader is idle (they are all busy, or the store is in memory or closed)
    /// or when the database is busy (a reader never waits for a lock): the caller then reads
    /// through the pool, which waits up to the busy timeout. `f` must be short (rows by an
    /// index, a bounded number, not decoded): it holds the calling thread.
    pub(crate) fn read_here<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Option<Result<T>> {
        let conn = {
            let mut idle = self.idle_readers();
            if idle.1 {
                return None;
            }
            idle.0.pop()?
        };
        let out = f(&conn);
        let busy = matches!(&out, Err(e) if error::is_busy(e));
        let mut idle = self.idle_readers();
        if !idle.1 {
            idle.0.push(conn);
        }
        if busy {
            None
        } else {
            Some(out)
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let conn = self.pool.get().await.map_err(error::pool)?;
        on_connection(&conn, f).await
    }

    /// Stores `row` through group commit (see [`commit`]): queued, then written by whichever
    /// write next holds the write turn, together with every write queued by then.
    pub(crate) async fn save(&self, row: StoredRow) -> Result<i64> {
        match self.grouped(Work::Save(row)).await? {
            Done::Saved(version) => Ok(version),
            other => Err(mismatch(&other)),
        }
    }

    /// Prunes the one execution `policy` names. While saves wait for the write turn it joins
    /// their group and shares their commit; otherwise it writes alone, committed without a
    /// sync when the policy asks for a lazy flush (see [`write_lazily`](Self::write_lazily)).
    pub(crate) async fn prune_execution(
        &self,
        policy: RetentionPolicy,
        encoder: Arc<Encoder>,
    ) -> Result<u64> {
        debug_assert!(policy.execution_id.is_some());
        if self.saves.is_empty() {
            let lazily = policy.lazy_flush;
            let prune = move |tx: &Transaction<'_>| write::prune(tx, &encoder, &policy);
            return if lazily {
                self.write_lazily(prune).await
            } else {
                self.write(prune).await
            };
        }
        match self.grouped(Work::Prune { policy, encoder }).await? {
            Done::Pruned(removed) => Ok(removed),
            other => Err(mismatch(&other)),
        }
    }

    /// Queues `work` for group commit and waits for its answer.
    async fn grouped(&self, work: Work) -> Result<Done> {
        let (token, mut answer) = self.saves.push(work);
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
            // The call answers every write of the group itself, so the answers arrive even if
            // this future is dropped while it runs on a blocking thread.
            let ran = on_connection(&conn, move |c| {
                commit::write_group(c, &queue, group);
                Ok(())
            })
            .await;
            if let Err(e) = ran {
                tracing::error!(error = %e, "a group commit call failed");
            }
            drop(turn);
        }
    }

    /// What group commit has done so far.
    pub(crate) fn commit_stats(&self) -> CommitStats {
        self.saves.stats()
    }

    /// This process's turn to write, waited for up to the busy timeout.
    async fn write_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>> {
        tokio::time::timeout(self.busy_timeout, self.write_turn.lock())
            .await
            .map_err(|_| self.turn_timeout())
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
        let _turn = self.write_turn().await?;
        self.read(move |conn| in_transaction(conn, f)).await
    }

    /// As [`write`](Self::write), committed with `synchronous=NORMAL`: in WAL mode the commit
    /// is not synced, and reaches disk with the next synced commit or checkpoint. For
    /// `RetentionPolicy::lazy_flush`. The connection's own setting is put back after the
    /// transaction (SQLite refuses to change it inside one); a connection where that fails
    /// leaves the pool, so no later save is committed unsynced.
    pub(crate) async fn write_lazily<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let synchronous = self.synchronous;
        if synchronous == Durability::Normal.pragma() {
            return self.write(f).await;
        }
        let _turn = self.write_turn().await?;
        let conn = self.pool.get().await.map_err(error::pool)?;
        let (out, restored) = on_connection(&conn, move |conn| {
            if let Err(e) = conn.pragma_update(None, "synchronous", Durability::Normal.pragma()) {
                return Ok((Err(error::driver(e)), true));
            }
            let out = in_transaction(conn, f);
            let restored = conn.pragma_update(None, "synchronous", synchronous).is_ok();
            Ok((out, restored))
        })
        .await?;
        if !restored {
            tracing::warn!("a connection kept synchronous=NORMAL after a lazy write: dropped");
            drop(managed::Object::take(conn));
        }
        out
    }

    /// Closes the pool and the quick readers: calls after this fail with
    /// [`Error::Unavailable`].
    pub(crate) fn close(&self) {
        let mut idle = self.idle_readers();
        idle.1 = true;
        idle.0.clear();
        drop(idle);
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Error {
        error::driver(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ))
    }

    /// The one number `query` (a count) returns, read through the pool.
    async fn count(db: &Db, query: &'static str) -> i64 {
        db.read(move |conn| {
            conn.query_row(query, [], |r| r.get(0))
                .map_err(error::driver)
        })
        .await
        .unwrap()
    }

    /// The connection's `synchronous` setting, as SQLite's number (1 NORMAL, 2 FULL, 3 EXTRA).
    fn synchronous(conn: &Connection) -> Result<i64> {
        conn.pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(error::driver)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_write_commits_unsynced_and_gives_its_connection_back_synced() {
        let dir = tempfile::tempdir().unwrap();
        for (durability, number) in [(Durability::Full, 2), (Durability::Extra, 3)] {
            let options = SqliteOptions::file(dir.path().join(format!("{durability}.db")))
                .durability(durability)
                .max_connections(1);
            let db = Db::open(&options).unwrap();
            assert_eq!(db.read(|conn| synchronous(conn)).await.unwrap(), number);
            let inside = db.write_lazily(|tx| synchronous(tx)).await.unwrap();
            assert_eq!(inside, 1, "{durability}: NORMAL inside the lazy write");
            // One connection: the pool's next call gets the same one, set back.
            assert_eq!(db.read(|conn| synchronous(conn)).await.unwrap(), number);
            assert_eq!(db.write(|tx| synchronous(tx)).await.unwrap(), number);
            // A lazy write that fails rolls back and sets the connection back too.
            let failed = db
                .write_lazily(|tx| {
                    tx.execute_batch("CREATE TABLE t (x INTEGER)")
                        .map_err(error::driver)?;
                    Err::<(), _>(Error::invalid("x", "refused"))
                })
                .await;
            assert!(matches!(failed, Err(Error::InvalidInput { .. })));
            assert_eq!(db.read(|conn| synchronous(conn)).await.unwrap(), number);
            let tables = count(&db, "SELECT count(*) FROM sqlite_master WHERE name = 't'").await;
            assert_eq!(tables, 0, "the failed lazy write was rolled back");
        }
        // Already NORMAL: a lazy write is an ordinary one.
        let options = SqliteOptions::file(dir.path().join("normal.db"))
            .durability(Durability::Normal)
            .max_connections(1);
        let db = Db::open(&options).unwrap();
        assert_eq!(db.write_lazily(|tx| synchronous(tx)).await.unwrap(), 1);
    }

    /// A call that panics, in place on a worker, right on the thread of a multi-threaded
    /// runtime's `block_on`, and on a blocking thread: a typed error with its message, the
    /// connection dropped, the next call on a fresh one.
    #[test]
    fn a_panicking_call_is_an_error_and_its_connection_is_dropped() {
        for (multi, spawned) in [(true, true), (true, false), (false, false)] {
            let runtime = if multi {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap();
            let case = async move {
                let dir = tempfile::tempdir().unwrap();
                let options = SqliteOptions::file(dir.path().join("p.db")).max_connections(1);
                let db = Db::open(&options).unwrap();
                // In place on a worker (inside the calling task), on a blocking thread (a task
                // of its own) otherwise.
                let caller = tokio::task::try_id();
                let ran_in = db.read(|_| Ok(tokio::task::try_id())).await.unwrap();
                assert_eq!(ran_in == caller, multi, "multi-threaded: {multi}");
                // A temporary table lives and dies with its connection.
                db.read(|conn| {
                    conn.execute_batch("CREATE TEMP TABLE marker (x INTEGER)")
                        .map_err(error::driver)
                })
                .await
                .unwrap();
                let err = db
                    .read(|_| -> Result<()> { panic!("boom") })
                    .await
                    .unwrap_err();
                assert!(
                    matches!(SqliteError::of(&err), Some(SqliteError::Panicked(m)) if m == "boom"),
                    "{err}"
                );
                // The one connection was dropped: the next call opens a new one, which works.
                let markers = count(
                    &db,
                    "SELECT count(*) FROM sqlite_temp_master WHERE name = 'marker'",
                )
                .await;
                assert_eq!(markers, 0, "a new connection");
                assert_eq!(db.pool.status().size, 1);
                drop(db);
            };
            if spawned {
                // Spawned: on a worker thread, as a server's tasks run.
                runtime.block_on(runtime.spawn(case)).unwrap();
            } else {
                runtime.block_on(case);
            }
        }
    }

    /// Where each kind of caller's calls run: in place on a worker; right there on the thread
    /// of a multi-threaded runtime's `block_on`, and in a `LocalSet`'s own future there; on a
    /// blocking thread from a current-thread runtime, from a local task, from a task on
    /// threads named otherwise, and outside any runtime.
    #[test]
    fn each_kind_of_caller_runs_its_calls_where_it_may_block() {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            multi.block_on(multi.spawn(async { place() })).unwrap(),
            Place::Worker
        );
        assert_eq!(multi.block_on(async { place() }), Place::Here);
        let local = tokio::task::LocalSet::new();
        assert_eq!(local.block_on(&multi, async { place() }), Place::Here);
        let in_local_task = local.block_on(&multi, async {
            tokio::task::spawn_local(async { place() }).await.unwrap()
        });
        assert_eq!(in_local_task, Place::Blocking);
        let named = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("app-thread")
            .build()
            .unwrap();
        assert_eq!(
            named.block_on(named.spawn(async { place() })).unwrap(),
            Place::Blocking
        );
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(current.block_on(async { place() }), Place::Blocking);
        assert_eq!(place(), Place::Blocking);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quick_read_that_meets_a_busy_database_gives_way_and_keeps_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&SqliteOptions::file(dir.path().join("q.db"))).unwrap();
        db.read(|conn| crate::schema::migrate(conn).map_err(SqliteError::into_core))
            .await
            .unwrap();
        db.open_readers().await;
        assert_eq!(db.idle_readers().0.len(), READERS);

        // Busy: no answer here, the caller reads through the pool; the reader stays.
        assert!(db.read_here(|_| Err::<(), _>(busy())).is_none());
        assert_eq!(db.idle_readers().0.len(), READERS);
        // Any other error is the read's answer.
        let refused = db.read_here(|_| Err::<(), _>(Error::invalid("x", "no")));
        assert!(matches!(refused, Some(Err(Error::InvalidInput { .. }))));
        // Readers read the file and only read it.
        let n = db.read_here(|conn| {
            conn.query_row("SELECT count(*) FROM checkpoints", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(error::driver)
        });
        assert!(matches!(n, Some(Ok(0))));
        let write = db.read_here(|conn| {
            conn.execute("DELETE FROM checkpoints", [])
                .map_err(error::driver)
        });
        assert!(matches!(write, Some(Err(_))), "a quick reader never writes");

        // All taken: the next read finds none idle.
        let taken: Vec<_> = std::iter::from_fn(|| db.idle_readers().0.pop()).collect();
        assert_eq!(taken.len(), READERS);
        assert!(db.read_here(|_| Ok(())).is_none());
        db.idle_readers().0.extend(taken);

        db.close();
        assert!(db.read_here(|_| Ok(())).is_none());
        assert!(db.idle_readers().0.is_empty());
    }

    #[tokio::test]
    async fn an_in_memory_database_has_no_quick_readers() {
        let db = Db::open(&SqliteOptions::in_memory()).unwrap();
        db.open_readers().await;
        assert!(db.read_here(|_| Ok(())).is_none());
    }

    #[test]
    fn names_sqlite_would_misread_are_made_literal() {
        assert_eq!(literal(Path::new(":memory:")), Path::new("./:memory:"));
        assert_eq!(literal(Path::new("file:x.db")), Path::new("./file:x.db"));
        assert_eq!(literal(Path::new("/tmp/file:x")), Path::new("/tmp/file:x"));
        assert_eq!(literal(Path::new("data.db")), Path::new("data.db"));
    }
}
