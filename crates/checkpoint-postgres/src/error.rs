//! [`DbError`], what the pool reports, and its mapping into the core [`Error`].
//!
//! Mapping goes by kind and SQLSTATE, never by message text. The original driver error stays
//! reachable as the source, and [`DbError`] itself is the source of the core error, so callers
//! can downcast to it and read the SQLSTATE:
//!
//! ```
//! use checkpoint_postgres::DbError;
//!
//! fn sqlstate(err: &checkpoint_core::Error) -> Option<&str> {
//!     Some(DbError::of(err)?.code()?.code())
//! }
//! ```

use std::fmt;

use checkpoint_core::{BoxError, Error};
use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use crate::pool::is_connection_state;

/// What kind of failure a [`DbError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbErrorKind {
    /// The server answered with an error (it has a SQLSTATE).
    Server,
    /// The connection could not be made or was lost.
    Connection,
    /// No connection became free, or none could be made or checked, in time.
    Timeout,
    /// The pool was closed.
    Closed,
    /// A row could not be decoded into the expected types.
    Decode,
    /// The TLS handshake failed: the server's certificate was refused, or the server does not
    /// offer TLS where it is required. Not retryable: the configuration must change.
    Tls,
    /// Anything else (configuration, TLS set-up, a failed pool hook).
    Other,
}

/// An error from the pool or the server, as [`DbPool`](crate::DbPool) reports it.
#[derive(Debug)]
pub struct DbError {
    kind: DbErrorKind,
    code: Option<SqlState>,
    constraint: Option<String>,
    message: String,
    source: Option<BoxError>,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} (SQLSTATE {})", self.message, code.code()),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl DbError {
    /// A server error with `code`, as a mock pool would report it.
    pub fn server(code: SqlState, constraint: Option<&str>, message: impl Into<String>) -> Self {
        DbError {
            kind: DbErrorKind::Server,
            code: Some(code),
            constraint: constraint.map(str::to_owned),
            message: message.into(),
            source: None,
        }
    }

    /// A lost or refused connection.
    pub fn connection(message: impl Into<String>) -> Self {
        Self::of_kind(DbErrorKind::Connection, message)
    }

    /// A timeout waiting for the pool.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::of_kind(DbErrorKind::Timeout, message)
    }

    /// The pool is closed.
    pub fn closed() -> Self {
        Self::of_kind(DbErrorKind::Closed, "the connection pool is closed")
    }

    /// A row that does not decode.
    pub fn decode(message: impl Into<String>) -> Self {
        Self::of_kind(DbErrorKind::Decode, message)
    }

    fn of_kind(kind: DbErrorKind, message: impl Into<String>) -> Self {
        DbError {
            kind,
            code: None,
            constraint: None,
            message: message.into(),
            source: None,
        }
    }

    /// A driver error met while decoding a row.
    pub(crate) fn decode_driver(err: tokio_postgres::Error) -> Self {
        DbError {
            message: err.to_string(),
            source: Some(Box::new(err)),
            ..Self::of_kind(DbErrorKind::Decode, "")
        }
    }

    /// The [`DbError`] behind a core error, if it came from the database.
    pub fn of(err: &Error) -> Option<&DbError> {
        std::error::Error::source(err)?.downcast_ref::<DbError>()
    }

    /// The same failure for another caller: kind, SQLSTATE, constraint and message, without
    /// the driver's error (which cannot be cloned).
    pub(crate) fn copied(&self) -> DbError {
        DbError {
            kind: self.kind,
            code: self.code.clone(),
            constraint: self.constraint.clone(),
            message: self.message.clone(),
            source: None,
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    /// The SQLSTATE, for server errors.
    pub fn code(&self) -> Option<&SqlState> {
        self.code.as_ref()
    }

    /// The violated constraint or index, when the server named one.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }

    /// Whether this is a unique violation of `index`.
    pub fn is_unique_violation_of(&self, index: &str) -> bool {
        self.code == Some(SqlState::UNIQUE_VIOLATION) && self.constraint.as_deref() == Some(index)
    }

    pub(crate) fn from_pool(err: PoolError) -> Self {
        match err {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(which) => {
                let what = match which {
                    TimeoutType::Wait => "no pooled connection became free within the wait timeout",
                    TimeoutType::Create => {
                        "opening a connection took longer than the create timeout"
                    }
                    TimeoutType::Recycle => {
                        "checking a pooled connection took longer than the recycle timeout"
                    }
                };
                DbError::timeout(what)
            }
            PoolError::Closed => DbError::closed(),
            other => DbError {
                message: other.to_string(),
                source: Some(Box::new(other)),
                ..Self::of_kind(DbErrorKind::Other, "")
            },
        }
    }

    /// Maps into the core error: connection trouble is `Unavailable`, transient server states
    /// are retryable `Backend` errors, everything else a plain `Backend` error.
    pub fn into_core(self) -> Error {
        // A lock not granted within `lock_timeout` (partition maintenance sets one) is as
        // transient as a deadlock: the same call can succeed once the holder is done.
        let retryable_state = |code: &SqlState| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
        };
        match (&self.kind, &self.code) {
            (DbErrorKind::Connection | DbErrorKind::Timeout | DbErrorKind::Closed, _) => {
                Error::Unavailable {
                    message: self.to_string(),
                    source: Some(Box::new(self)),
                }
            }
            (DbErrorKind::Server, Some(code)) if is_connection_state(code) => Error::Unavailable {
                message: self.to_string(),
                source: Some(Box::new(self)),
            },
            // A time-partitioned table without the partition of an execution's start.
            (DbErrorKind::Server, Some(code))
                if *code == SqlState::CHECK_VIOLATION
                    && self.message.contains("no partition of relation") =>
            {
                Error::Backend {
                    message: format!(
                        "{self}: no partition holds this execution's start; make the \
                         partitions with PostgresStore::ensure_partitions or `checkpointctl \
                         partitions ensure` as the table's owner"
                    ),
                    retryable: false,
                    source: Box::new(self),
                }
            }
            (_, code) => Error::Backend {
                message: self.to_string(),
                retryable: code.as_ref().is_some_and(retryable_state),
                source: Box::new(self),
            },
        }
    }
}

/// The causes of `err`, outermost first (not `err` itself).
fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(err.source(), |cause| cause.source())
}

/// Whether `E` appears anywhere in the source chain of `err`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    causes(err).any(|cause| cause.is::<E>())
}

/// A handshake that rustls refused (an I/O error wrapping a rustls error), or any other failure
/// of the driver's TLS step, such as a server that does not offer TLS where it is required. The
/// driver keeps its error kinds private; its TLS kind is told by the text it displays.
fn refused_by_tls(err: &tokio_postgres::Error) -> bool {
    let rustls_refused = causes(err).any(|cause| {
        cause.is::<rustls::Error>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
    });
    rustls_refused || err.to_string() == "error performing TLS handshake"
}

/// The constraint a violation's message names (`… violates unique constraint "name"`): Citus
/// relays a shard's error to the coordinator without the constraint field.
fn constraint_in(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" constraint \"")?;
    rest.split_once('"').map(|(name, _)| name)
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            return DbError {
                kind: DbErrorKind::Server,
                code: Some(db.code().clone()),
                constraint: db
                    .constraint()
                    .or_else(|| constraint_in(db.message()))
                    .map(str::to_owned),
                message: db.message().to_owned(),
                source: Some(Box::new(err)),
            };
        }
        let kind = if refused_by_tls(&err) {
            DbErrorKind::Tls
        } else if err.is_closed() || caused_by::<std::io::Error>(&err) {
            DbErrorKind::Connection
        } else {
            DbErrorKind::Other
        };
        DbError {
            kind,
            code: None,
            constraint: None,
            message: err.to_string(),
            source: Some(Box::new(err)),
        }
    }
}

impl From<DbError> for Error {
    fn from(err: DbError) -> Self {
        err.into_core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_violation_names_its_constraint_in_the_message() {
        assert_eq!(
            constraint_in(
                "duplicate key value violates unique constraint \"cp_execution_version_key_102008\""
            ),
            Some("cp_execution_version_key_102008")
        );
        assert_eq!(
            constraint_in(
                "update or delete on table \"cp_102008\" violates foreign key constraint \"cp_base_fkey_102008\" on table \"cp_102008\""
            ),
            Some("cp_base_fkey_102008")
        );
        assert_eq!(constraint_in("connection reset"), None);
        assert_eq!(
            constraint_in("violates unique constraint \"unterminated"),
            None
        );
    }

    fn code_of(err: &Error) -> Option<SqlState> {
        DbError::of(err)?.code().cloned()
    }

    #[test]
    fn a_missing_partition_says_how_to_make_it() {
        let err = DbError::server(
            SqlState::CHECK_VIOLATION,
            None,
            "no partition of relation \"cp\" found for row",
        )
        .into_core();
        assert!(err.to_string().contains("ensure_partitions"), "{err}");
        assert_eq!(code_of(&err), Some(SqlState::CHECK_VIOLATION));
        assert!(!err.is_retryable());
        let other =
            DbError::server(SqlState::CHECK_VIOLATION, Some("cp_state_check"), "check").into_core();
        assert!(!other.to_string().contains("ensure_partitions"), "{other}");
    }

    #[test]
    fn lost_connections_and_timeouts_are_unavailable() {
        for err in [
            DbError::connection("reset"),
            DbError::timeout("pool"),
            DbError::closed(),
            DbError::server(SqlState::ADMIN_SHUTDOWN, None, "terminating"),
            DbError::server(SqlState::CANNOT_CONNECT_NOW, None, "starting up"),
            DbError::server(SqlState::TOO_MANY_CONNECTIONS, None, "too many"),
            DbError::server(SqlState::CONNECTION_FAILURE, None, "08006"),
        ] {
            let core = err.into_core();
            assert!(matches!(core, Error::Unavailable { .. }), "{core:?}");
            assert!(core.is_retryable());
        }
    }

    #[test]
    fn serialization_failures_deadlocks_and_lock_timeouts_are_retryable_backend_errors() {
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
        ] {
            let core = DbError::server(code.clone(), None, "retry").into_core();
            assert!(
                matches!(
                    core,
                    Error::Backend {
                        retryable: true,
                        ..
                    }
                ),
                "{core:?}"
            );
            assert_eq!(code_of(&core), Some(code));
        }
    }

    #[test]
    fn other_server_errors_keep_their_sqlstate_and_are_final() {
        let core = DbError::server(SqlState::UNDEFINED_TABLE, None, "no table").into_core();
        assert!(
            matches!(
                core,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ),
            "{core:?}"
        );
        assert_eq!(code_of(&core), Some(SqlState::UNDEFINED_TABLE));
        assert!(core.to_string().contains("42P01"), "{core}");

        let auth = DbError::server(SqlState::INVALID_PASSWORD, None, "password").into_core();
        assert!(!auth.is_retryable());
    }

    #[test]
    fn decode_failures_are_final() {
        let core = DbError::decode("column 3: expected JSON").into_core();
        assert!(
            matches!(
                core,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ),
            "{core:?}"
        );
    }

    #[test]
    fn unique_violation_is_matched_by_index_name() {
        let err = DbError::server(SqlState::UNIQUE_VIOLATION, Some("cp_version"), "dup");
        assert!(err.is_unique_violation_of("cp_version"));
        assert!(!err.is_unique_violation_of("cp_pkey"));
    }

    #[test]
    fn pool_wait_timeout_is_unavailable() {
        let err = DbError::from_pool(PoolError::Timeout(TimeoutType::Wait));
        assert_eq!(err.kind(), DbErrorKind::Timeout);
        assert!(matches!(err.into_core(), Error::Unavailable { .. }));
        let closed = DbError::from_pool(PoolError::Closed);
        assert_eq!(closed.kind(), DbErrorKind::Closed);
    }
}
