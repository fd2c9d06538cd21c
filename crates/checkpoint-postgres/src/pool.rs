//! [`DbPool`]: the small, object-safe surface the store needs from a connection pool, and its
//! implementation over deadpool-postgres.
//!
//! The store only ever runs statements and reads rows through this trait, so unit tests can put
//! a mock behind it and check the SQL, the bound arguments and the error mapping without a
//! server. Rows come back as [`Row`], a plain owned value a mock can build.

use checkpoint_core::telemetry::Meter;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Hook;
use deadpool_postgres::{HookError, Manager, ManagerConfig, Object, Pool, Runtime};
use futures_util::{pin_mut, TryStreamExt};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::NoTls;

use crate::error::DbError;
use crate::options::tls;
use crate::options::PostgresOptions;

/// A bound argument.
pub type Param<'a> = &'a (dyn ToSql + Sync);

/// One SQL statement and the types of its parameters, built once per table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sql {
    /// The statement text, with `$1`, `$2`, ... placeholders.
    pub text: String,
    /// The type of each placeholder, in order.
    pub types: Vec<Type>,
}

impl Sql {
    /// A statement with typed placeholders.
    pub fn new(text: impl Into<String>, types: &[Type]) -> Self {
        Sql {
            text: text.into(),
            types: types.to_vec(),
        }
    }
}

/// A pool of connections the store runs its statements on.
///
/// Implemented for deadpool-postgres' [`Pool`] (through [`DeadpoolPool`]); implement it yourself
/// to route the store through your own pool or a test double.
#[async_trait]
pub trait DbPool: Send + Sync + 'static {
    /// Runs a statement and returns how many rows it affected.
    async fn execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError>;

    /// Runs a statement and returns its rows.
    async fn query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError>;

    /// Starts a transaction on one connection.
    async fn begin(&self) -> Result<Box<dyn DbTransaction>, DbError>;

    /// Checks that the server answers.
    async fn ping(&self) -> Result<(), DbError>;

    /// Closes the pool: connections are dropped and later calls fail as unavailable.
    fn close(&self);
}

/// A transaction on one connection. Dropping it without [`commit`](Self::commit) rolls it back.
#[async_trait]
pub trait DbTransaction: Send {
    /// Runs a statement and returns how many rows it affected.
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError>;

    /// Runs a statement and returns its rows.
    async fn query(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError>;

    /// Runs parameterless statements separated by `;` (DDL in migrations).
    async fn batch_execute(&mut self, sql: &str) -> Result<(), DbError>;

    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), DbError>;

    /// Rolls back and returns the connection for reuse.
    async fn rollback(self: Box<Self>) -> Result<(), DbError>;
}

/// One value of a result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// SQL `NULL`.
    Null,
    /// `text`, `varchar`, `name`.
    Text(String),
    /// Any integer column, widened.
    Int(i64),
    /// `bool`.
    Bool(bool),
    /// `json` or `jsonb`.
    Json(Value),
    /// `timestamptz`.
    Timestamp(OffsetDateTime),
    /// `bytea`.
    Bytes(Vec<u8>),
}

/// One result row: its cells in column order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, index: usize) -> Result<&Cell, DbError> {
        self.0
            .get(index)
            .ok_or_else(|| DbError::decode(format!("row has no column {index}")))
    }

    /// Column `index` as text.
    pub fn text(&self, index: usize) -> Result<String, DbError> {
        match self.cell(index)? {
            Cell::Text(s) => Ok(s.clone()),
            other => Err(DbError::decode(format!(
                "column {index}: expected text, got {other:?}"
            ))),
        }
    }

    /// Column `index` as nullable text.
    pub fn opt_text(&self, index: usize) -> Result<Option<String>, DbError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            _ => self.text(index).map(Some),
        }
    }

    /// Column `index` as an integer.
    pub fn int(&self, index: usize) -> Result<i64, DbError> {
        match self.cell(index)? {
            Cell::Int(n) => Ok(*n),
            other => Err(DbError::decode(format!(
                "column {index}: expected an integer, got {other:?}"
            ))),
        }
    }

    /// Column `index` as a nullable integer.
    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, DbError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            _ => self.int(index).map(Some),
        }
    }

    /// Column `index` as nullable JSON.
    pub fn opt_json(&self, index: usize) -> Result<Option<Value>, DbError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Json(v) => Ok(Some(v.clone())),
            other => Err(DbError::decode(format!(
                "column {index}: expected JSON, got {other:?}"
            ))),
        }
    }

    /// Column `index` as nullable bytes.
    pub fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.cell(index)? {
            Cell::Null => Ok(None),
            Cell::Bytes(b) => Ok(Some(b.clone())),
            other => Err(DbError::decode(format!(
                "column {index}: expected bytes, got {other:?}"
            ))),
        }
    }

    /// Moves column `index` out as nullable bytes, leaving `NULL` behind (payloads are large).
    pub fn take_bytes(&mut self, index: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.take(index)? {
            Cell::Null => Ok(None),
            Cell::Bytes(b) => Ok(Some(b)),
            other => Err(DbError::decode(format!(
                "column {index}: expected bytes, got {other:?}"
            ))),
        }
    }

    /// Moves column `index` out as nullable JSON, leaving `NULL` behind.
    pub fn take_json(&mut self, index: usize) -> Result<Option<Value>, DbError> {
        match self.take(index)? {
            Cell::Null => Ok(None),
            Cell::Json(v) => Ok(Some(v)),
            other => Err(DbError::decode(format!(
                "column {index}: expected JSON, got {other:?}"
            ))),
        }
    }

    fn take(&mut self, index: usize) -> Result<Cell, DbError> {
        let cell = self
            .0
            .get_mut(index)
            .ok_or_else(|| DbError::decode(format!("row has no column {index}")))?;
        Ok(std::mem::replace(cell, Cell::Null))
    }

    /// Column `index` as a timestamp.
    pub fn timestamp(&self, index: usize) -> Result<OffsetDateTime, DbError> {
        match self.cell(index)? {
            Cell::Timestamp(t) => Ok(*t),
            other => Err(DbError::decode(format!(
                "column {index}: expected a timestamp, got {other:?}"
            ))),
        }
    }

    /// Column `index` as a boolean.
    pub fn bool(&self, index: usize) -> Result<bool, DbError> {
        match self.cell(index)? {
            Cell::Bool(b) => Ok(*b),
            other => Err(DbError::decode(format!(
                "column {index}: expected a boolean, got {other:?}"
            ))),
        }
    }

    /// Converts a driver row, by column type.
    fn from_driver(row: &tokio_postgres::Row) -> Result<Row, DbError> {
        let mut cells = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let ty = column.type_();
            let cell = if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME {
                row.try_get::<_, Option<String>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(Cell::Text)
            } else if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(Cell::Int)
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(|n| Cell::Int(n.into()))
            } else if *ty == Type::INT2 {
                row.try_get::<_, Option<i16>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(|n| Cell::Int(n.into()))
            } else if *ty == Type::BOOL {
                row.try_get::<_, Option<bool>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(Cell::Bool)
            } else if *ty == Type::JSONB || *ty == Type::JSON {
                row.try_get::<_, Option<Json<Value>>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(|Json(v)| Cell::Json(v))
            } else if *ty == Type::BYTEA {
                row.try_get::<_, Option<Vec<u8>>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(Cell::Bytes)
            } else if *ty == Type::TIMESTAMPTZ {
                row.try_get::<_, Option<OffsetDateTime>>(i)
                    .map_err(DbError::decode_driver)?
                    .map(Cell::Timestamp)
            } else {
                return Err(DbError::decode(format!(
                    "column {} has unsupported type {ty}",
                    column.name()
                )));
            };
            cells.push(cell.unwrap_or(Cell::Null));
        }
        Ok(Row(cells))
    }
}

/// How statements reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatementMode {
    /// Prepared once per connection (named statements) and reused.
    Cached,
    /// Unnamed statements with explicit types: one round trip, safe behind pgbouncer in
    /// transaction mode.
    Unnamed,
}

/// [`DbPool`] over a deadpool-postgres [`Pool`].
///
/// With the statement cache on, a server that refuses named statements because its connection
/// is shared (pgbouncer in transaction mode: `prepared statement "s0" already exists`, 42P05,
/// or `... does not exist`, 26000) turns the cache off for this pool, with a warning in the
/// log; the statement that met it is sent again unnamed, or, inside a transaction, the error
/// is reported as retryable and the retry runs unnamed.
#[derive(Clone)]
pub struct DeadpoolPool {
    pool: Pool,
    cached: Arc<AtomicBool>,
    /// Where checkout waits and connection counts are recorded, when set.
    meter: Option<Meter>,
}

impl fmt::Debug for DeadpoolPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("DeadpoolPool")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .field("mode", &self.mode())
            .finish()
    }
}

impl DeadpoolPool {
    /// Builds a pool as `options` describe: size, timeouts, recycling, connection lifetime.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](checkpoint_core::Error::InvalidInput) when the pool cannot be
    /// built from them.
    pub fn from_options(options: &PostgresOptions) -> checkpoint_core::Result<Self> {
        let manager_config = ManagerConfig {
            recycling_method: options.recycling_method().clone(),
        };
        let config = options.driver_config().clone();
        let manager = match tls::connector(options.tls_mode(), options.root_certificates())? {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let (wait, create, recycle) = options.timeouts();
        let (max_lifetime, max_idle_time) = options.connection_limits();
        let lifetime = ConnectionLifetime {
            max_lifetime,
            max_idle_time,
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_max_size())
            .wait_timeout(Some(wait))
            .create_timeout(Some(create))
            .recycle_timeout(Some(recycle))
            .runtime(Runtime::Tokio1)
            .pre_recycle(Hook::sync_fn(move |_, metrics| {
                if lifetime.expired(metrics.age(), metrics.last_used()) {
                    Err(HookError::message(
                        "connection reached its lifetime or idle limit",
                    ))
                } else {
                    Ok(())
                }
            }))
            .build()
            .map_err(|e| checkpoint_core::Error::invalid("pool", e.to_string()))?;
        Ok(Self::new(pool, options.is_statement_cache()))
    }

    /// Wraps `pool`; `statement_cache` chooses named prepared statements (true) or unnamed
    /// ones (false, for pgbouncer in transaction mode).
    pub fn new(pool: Pool, statement_cache: bool) -> Self {
        DeadpoolPool {
            pool,
            cached: Arc::new(AtomicBool::new(statement_cache)),
            meter: None,
        }
    }

    /// Records each checkout's wait
    /// ([`CONNECTION_WAIT_TIME`](checkpoint_core::telemetry::CONNECTION_WAIT_TIME)) and the
    /// pool's used and idle connections as of that checkout
    /// ([`CONNECTION_COUNT`](checkpoint_core::telemetry::CONNECTION_COUNT)) in `meter`.
    /// [`PostgresStore::connect`](crate::PostgresStore::connect) sets it.
    pub fn metered(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    fn mode(&self) -> StatementMode {
        mode_of(&self.cached)
    }

    /// Runs `sql` on a pooled connection, falling back to unnamed statements for good when
    /// the server's connection turns out to be shared.
    async fn run(
        &self,
        sql: &Sql,
        params: &[Param<'_>],
        decode: bool,
    ) -> Result<(Vec<Row>, u64), DbError> {
        let client = self.get().await?;
        let mode = self.mode();
        let outcome = match run_query(&client, mode, sql, params, decode).await {
            Err(e) if mode == StatementMode::Cached && is_shared_connection(&e) => {
                fall_back(&self.cached);
                // The statement was never run: preparing or finding it failed.
                run_query(&client, StatementMode::Unnamed, sql, params, decode).await
            }
            other => other,
        };
        if outcome.as_ref().is_err_and(is_read_only) {
            // A demoted primary still answers, read-only: never hand this connection out
            // again, so the next attempt connects anew and finds the writable server.
            drop(Object::take(client));
        }
        outcome
    }

    /// The wrapped pool.
    pub fn inner(&self) -> &Pool {
        &self.pool
    }

    async fn get(&self) -> Result<Object, DbError> {
        let Some(meter) = &self.meter else {
            return self.pool.get().await.map_err(DbError::from_pool);
        };
        let started = std::time::Instant::now();
        let object = self.pool.get().await.map_err(DbError::from_pool);
        meter.connection_waited(started.elapsed().as_secs_f64());
        let status = self.pool.status();
        meter.connections(
            status.size.saturating_sub(status.available),
            status.available,
        );
        object
    }
}

/// Runs `sql`; returns its rows (decoded only when `decode`, so statements run for their effect
/// may return anything) and how many rows it affected.
async fn run_query(
    client: &Object,
    mode: StatementMode,
    sql: &Sql,
    params: &[Param<'_>],
    decode: bool,
) -> Result<(Vec<Row>, u64), DbError> {
    let stream = match mode {
        StatementMode::Cached => {
            let statement = client.prepare_typed_cached(&sql.text, &sql.types).await?;
            client.query_raw(&statement, params.iter().copied()).await?
        }
        StatementMode::Unnamed => {
            let typed = params.iter().copied().zip(sql.types.iter().cloned());
            client.query_typed_raw(&sql.text, typed).await?
        }
    };
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        if decode {
            rows.push(Row::from_driver(&row)?);
        }
    }
    let affected = stream.rows_affected().unwrap_or(0);
    Ok((rows, affected))
}

#[async_trait]
impl DbPool for DeadpoolPool {
    async fn execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError> {
        Ok(self.run(sql, params, false).await?.1)
    }

    async fn query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        Ok(self.run(sql, params, true).await?.0)
    }

    async fn begin(&self) -> Result<Box<dyn DbTransaction>, DbError> {
        let client = self.get().await?;
        client.batch_execute("BEGIN").await?;
        Ok(Box::new(DeadpoolTransaction {
            client: Some(client),
            cached: self.cached.clone(),
        }))
    }

    async fn ping(&self) -> Result<(), DbError> {
        let client = self.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    fn close(&self) {
        self.pool.close();
    }
}

/// A transaction holding its pooled connection until it ends.
struct DeadpoolTransaction {
    client: Option<Object>,
    cached: Arc<AtomicBool>,
}

impl DeadpoolTransaction {
    fn client(&self) -> Result<&Object, DbError> {
        self.client.as_ref().ok_or_else(DbError::closed)
    }
}

#[async_trait]
impl DbTransaction for DeadpoolTransaction {
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError> {
        Ok(self.run(sql, params, false).await?.1)
    }

    async fn query(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        Ok(self.run(sql, params, true).await?.0)
    }

    async fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        Ok(self.client()?.batch_execute(sql).await?)
    }

    async fn commit(self: Box<Self>) -> Result<(), DbError> {
        self.finish("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<(), DbError> {
        self.finish("ROLLBACK").await
    }
}

impl DeadpoolTransaction {
    /// As [`DeadpoolPool::run`], but a failed statement has aborted the transaction, so the
    /// error is reported (as retryable) instead of the statement being sent again.
    async fn run(
        &mut self,
        sql: &Sql,
        params: &[Param<'_>],
        decode: bool,
    ) -> Result<(Vec<Row>, u64), DbError> {
        let mode = mode_of(&self.cached);
        let outcome = match run_query(self.client()?, mode, sql, params, decode).await {
            Err(e) if mode == StatementMode::Cached && is_shared_connection(&e) => {
                fall_back(&self.cached);
                Err(e)
            }
            other => other,
        };
        if outcome.as_ref().is_err_and(is_read_only) {
            // As in `DeadpoolPool::run`: the server was demoted; the transaction ends with the
            // connection.
            if let Some(client) = self.client.take() {
                drop(Object::take(client));
            }
        }
        outcome
    }

    async fn finish(mut self: Box<Self>, command: &str) -> Result<(), DbError> {
        let client = self.client.take().ok_or_else(DbError::closed)?;
        match client.batch_execute(command).await {
            Ok(()) => Ok(()),
            Err(err) => {
                // The outcome is unknown to us; never hand this connection out again.
                drop(Object::take(client));
                Err(err.into())
            }
        }
    }
}

impl Drop for DeadpoolTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Rolling back needs a round trip, which a destructor cannot wait for. Detaching
            // the connection from the pool closes it, and the server rolls the transaction
            // back; the pool opens a fresh connection when it needs one.
            drop(Object::take(client));
        }
    }
}

fn mode_of(cached: &AtomicBool) -> StatementMode {
    if cached.load(Ordering::Relaxed) {
        StatementMode::Cached
    } else {
        StatementMode::Unnamed
    }
}

/// Whether the server refused a named statement because its connection is shared with other
/// clients (a transaction-mode pooler): the name is taken (42P05) or unknown (26000).
pub(crate) fn is_shared_connection(err: &DbError) -> bool {
    err.code() == Some(&SqlState::DUPLICATE_PSTATEMENT)
        || err.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME)
}

/// Turns the statement cache off for the pool, once, saying so in the log.
fn fall_back(cached: &AtomicBool) {
    if cached.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            "the server refused a named prepared statement (its connection is shared, as \
             behind pgbouncer in transaction mode): this store now sends unnamed statements; \
             set statement_cache=off in the connection string to start that way"
        );
    }
}

/// Whether the server refused a write because it is read-only (25006): a primary demoted
/// by a failover that still answers, or a standby reached by mistake.
fn is_read_only(err: &DbError) -> bool {
    err.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Whether a server error means the connection or the server is going away, or the server is
/// no longer the writable one (a demoted primary, 25006).
pub(crate) fn is_connection_state(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

/// How long a connection may live and idle before the pool replaces it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionLifetime {
    pub max_lifetime: Option<Duration>,
    pub max_idle_time: Option<Duration>,
}

impl ConnectionLifetime {
    /// Whether a connection of this `age`, unused for `idle`, is past its time.
    pub(crate) fn expired(&self, age: Duration, idle: Duration) -> bool {
        self.max_lifetime.is_some_and(|max| age >= max)
            || self.max_idle_time.is_some_and(|max| idle >= max)
    }
}
