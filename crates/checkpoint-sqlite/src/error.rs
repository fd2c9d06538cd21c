//! How SQLite's failures become [`checkpoint_core::Error`]s, and the [`SqliteError`] kept as
//! their source so callers can match on what went wrong.

use checkpoint_core::Error;
use deadpool::managed::PoolError;
use deadpool_sync::InteractError;
use rusqlite::ErrorCode;

/// What failed inside the SQLite backend; found with [`SqliteError::of`] as the source of a
/// [`checkpoint_core::Error`].
///
/// ```
/// use checkpoint_sqlite::SqliteError;
///
/// fn explain(err: &checkpoint_core::Error) -> String {
///     match SqliteError::of(err) {
///         Some(SqliteError::Sqlite { code, extended_code, .. }) => {
///             format!("SQLite said {code:?} (extended code {extended_code})")
///         }
///         Some(other) => other.to_string(),
///         None => err.to_string(),
///     }
/// }
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// SQLite refused a statement; `code` is its primary result code, `extended_code` the
    /// full one (for example 2067, `SQLITE_CONSTRAINT_UNIQUE`).
    #[error("SQLite error {extended_code} ({code:?}): {message}")]
    Sqlite {
        /// The primary result code.
        code: ErrorCode,
        /// The extended result code.
        extended_code: i32,
        /// SQLite's own message.
        message: String,
    },
    /// The driver failed outside SQLite (a value of an unexpected type, an invalid path).
    #[error("SQLite driver: {0}")]
    Driver(String),
    /// The file was migrated by a newer release of this crate; this one cannot read it safely.
    #[error(
        "the database is at schema version {found}, newer than the {known} this release knows: \
         upgrade checkpoint-sqlite"
    )]
    SchemaTooNew {
        /// The version recorded in the file.
        found: i64,
        /// The newest version this release applies.
        known: i64,
    },
    /// The file's schema is older than this release's and migrating on open is off.
    #[error(
        "the database is at schema version {found}, this release needs {expected}: open it with \
         auto_migrate on, or run `checkpointctl migrate`"
    )]
    SchemaOutdated {
        /// The version recorded in the file (0 for a file without the tables).
        found: i64,
        /// The version this release needs.
        expected: i64,
    },
    /// A migration recorded in the file is not the one this release would apply under that
    /// version: the file was made by a different schema.
    #[error("migration {version} in the database is {found:?}, this release's is {expected:?}")]
    SchemaMismatch {
        /// The migration version.
        version: i64,
        /// The name recorded in the file.
        found: String,
        /// The name this release has.
        expected: String,
    },
    /// A stored row cannot be read back (its state or metadata does not decode).
    #[error("checkpoint {id} is unreadable: {reason}")]
    Corrupt {
        /// The checkpoint's id.
        id: String,
        /// What failed.
        reason: String,
    },
    /// The connection pool failed (closed, or a connection could not be set up).
    #[error("connection pool: {0}")]
    Pool(String),
    /// The blocking task running a database call panicked; the connection is discarded.
    #[error("a database call panicked: {0}")]
    Panicked(String),
}

impl SqliteError {
    /// The `SqliteError` behind `err`, if it came from this backend.
    pub fn of(err: &Error) -> Option<&SqliteError> {
        std::error::Error::source(err)?.downcast_ref::<SqliteError>()
    }

    /// SQLite's primary result code, when SQLite itself refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SqliteError::Sqlite { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn into_core(self) -> Error {
        match &self {
            SqliteError::Sqlite {
                code: ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked,
                ..
            } => Error::Unavailable {
                message: format!("the database stayed locked past the busy timeout: {self}"),
                source: Some(Box::new(self)),
            },
            SqliteError::Pool(_) => Error::Unavailable {
                message: self.to_string(),
                source: Some(Box::new(self)),
            },
            _ => Error::Backend {
                message: self.to_string(),
                retryable: false,
                source: Box::new(self),
            },
        }
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            rusqlite::Error::SqliteFailure(failure, message) => SqliteError::Sqlite {
                code: failure.code,
                extended_code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            },
            other => SqliteError::Driver(other.to_string()),
        }
    }
}

/// A copy of `err` for another caller: every save of a group that failed as a whole gets the
/// same error, with its typed source when it has one.
pub(crate) fn copy(err: &Error) -> Error {
    let typed = || SqliteError::of(err).cloned();
    match err {
        Error::NotFound { id } => Error::NotFound { id: id.clone() },
        Error::Conflict {
            execution_id,
            version,
        } => Error::Conflict {
            execution_id: execution_id.clone(),
            version: *version,
        },
        Error::InvalidInput { field, reason } => Error::invalid(field.clone(), reason.clone()),
        Error::Unavailable { message, .. } => Error::Unavailable {
            message: message.clone(),
            source: typed().map(|e| Box::new(e) as checkpoint_core::BoxError),
        },
        Error::Backend {
            message, retryable, ..
        } => Error::Backend {
            message: message.clone(),
            retryable: *retryable,
            source: Box::new(typed().unwrap_or_else(|| SqliteError::Driver(message.clone()))),
        },
        other => SqliteError::Driver(other.to_string()).into_core(),
    }
}

/// The core error for a driver error.
pub(crate) fn driver(err: rusqlite::Error) -> Error {
    SqliteError::from(err).into_core()
}

/// Whether `err` is SQLite saying another connection holds a lock it needs (`SQLITE_BUSY`,
/// `SQLITE_LOCKED`): worth waiting for, not a failure of the statement.
pub(crate) fn is_busy(err: &Error) -> bool {
    SqliteError::of(err)
        .and_then(SqliteError::code)
        .is_some_and(|code| matches!(code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Whether `err` is the unique index on `(execution_id, version)` refusing a second holder of
/// one version: the database enforcing the version rule.
pub(crate) fn is_version_taken(err: &rusqlite::Error) -> bool {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => {
            failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message
                    .as_deref()
                    .is_some_and(|m| m.contains("checkpoints.execution_id"))
        }
        _ => false,
    }
}

pub(crate) fn pool(err: PoolError<SqliteError>) -> Error {
    match err {
        PoolError::Backend(e) => e.into_core(),
        PoolError::Timeout(_) => Error::Unavailable {
            message: "no pooled SQLite connection became free in time".into(),
            source: Some(Box::new(err)),
        },
        other => SqliteError::Pool(other.to_string()).into_core(),
    }
}

pub(crate) fn interact(err: InteractError) -> Error {
    match err {
        InteractError::Panic(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            SqliteError::Panicked(what).into_core()
        }
        InteractError::Cancelled => Error::Unavailable {
            message: "the SQLite call was cancelled before it ran".into(),
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32, message: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(message.into()))
    }

    #[test]
    fn busy_and_locked_are_retryable_unavailability() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            let err = driver(failure(code, "database is locked"));
            assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
            assert!(err.is_retryable());
            assert_eq!(
                SqliteError::of(&err).and_then(SqliteError::code),
                Some(if code == rusqlite::ffi::SQLITE_LOCKED {
                    ErrorCode::DatabaseLocked
                } else {
                    ErrorCode::DatabaseBusy
                })
            );
        }
    }

    #[test]
    fn other_codes_are_backend_errors_keeping_the_code() {
        let err = driver(failure(rusqlite::ffi::SQLITE_CORRUPT, "malformed"));
        let Error::Backend { retryable, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(!retryable);
        match SqliteError::of(&err) {
            Some(SqliteError::Sqlite {
                code,
                extended_code,
                message,
            }) => {
                assert_eq!(*code, ErrorCode::DatabaseCorrupt);
                assert_eq!(*extended_code, rusqlite::ffi::SQLITE_CORRUPT);
                assert_eq!(message, "malformed");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("11"), "{err}");
    }

    #[test]
    fn only_the_version_index_counts_as_a_taken_version() {
        let version = failure(
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
            "UNIQUE constraint failed: checkpoints.execution_id, checkpoints.version",
        );
        assert!(is_version_taken(&version));
        let other = failure(
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK,
            "CHECK constraint failed: version > 0",
        );
        assert!(!is_version_taken(&other));
        assert!(!is_version_taken(&rusqlite::Error::QueryReturnedNoRows));
    }

    #[test]
    fn copies_keep_kind_retryability_and_typed_source() {
        let originals = [
            driver(failure(rusqlite::ffi::SQLITE_BUSY, "locked")),
            driver(failure(rusqlite::ffi::SQLITE_FULL, "disk full")),
            Error::Conflict {
                execution_id: "e".into(),
                version: 3,
            },
            Error::invalid("state", "too large"),
            Error::NotFound { id: "x".into() },
            SqliteError::Pool("closed".into()).into_core(),
        ];
        for original in &originals {
            let copied = copy(original);
            assert_eq!(copied.to_string(), original.to_string());
            assert_eq!(copied.is_retryable(), original.is_retryable());
            assert_eq!(
                SqliteError::of(&copied).map(ToString::to_string),
                SqliteError::of(original).map(ToString::to_string)
            );
        }
    }

    #[test]
    fn a_panicking_call_is_a_backend_error_with_its_message() {
        let err = interact(InteractError::Panic(Box::new("boom")));
        assert!(matches!(
            SqliteError::of(&err),
            Some(SqliteError::Panicked(m)) if m == "boom"
        ));
        assert!(!err.is_retryable());
        assert!(interact(InteractError::Cancelled).is_retryable());
    }
}
