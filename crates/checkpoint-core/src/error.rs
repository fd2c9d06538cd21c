//! The error every [`CheckpointStore`](crate::CheckpointStore) returns.

use std::error::Error as StdError;

/// A boxed error from a backend, kept as the source of [`Error::Backend`] and
/// [`Error::Unavailable`] so callers can downcast it (for example to a driver error carrying a
/// SQLSTATE).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong in a store operation.
///
/// Match on the variant to decide what to do; [`Error::is_retryable`] tells whether the same call
/// may succeed if tried again. New variants may be added, so keep a catch-all arm.
///
/// ```
/// use checkpoint_core::Error;
///
/// fn describe(err: &Error) -> &'static str {
///     match err {
///         Error::NotFound { .. } => "no such checkpoint",
///         Error::Conflict { .. } => "someone else saved that version first: re-read and retry",
///         Error::InvalidInput { .. } => "fix the input",
///         e if e.is_retryable() => "try again later",
///         _ => "give up",
///     }
/// }
/// assert_eq!(describe(&Error::NotFound { id: "x".into() }), "no such checkpoint");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No checkpoint has this id.
    #[error("checkpoint not found: {id}")]
    NotFound {
        /// The id that was looked up.
        id: String,
    },

    /// The version is already held by another checkpoint of the execution: another writer got
    /// there first. Re-read the latest checkpoint and decide again; retrying the same call fails
    /// the same way.
    #[error("version {version} of execution {execution_id} is already taken")]
    Conflict {
        /// The execution whose version was taken.
        execution_id: String,
        /// The version that was taken.
        version: i64,
    },

    /// The id names checkpoints of several executions, in a store whose ids are unique per
    /// execution ([`IdScope::PerExecution`](crate::IdScope::PerExecution)); nothing was read
    /// or changed. Name the execution (`load_in`).
    #[error("checkpoint id {id} is held by {} executions ({}); name the execution", executions.len(), executions.join(", "))]
    Ambiguous {
        /// The id that was looked up.
        id: String,
        /// The executions that hold it (at least two).
        executions: Vec<String>,
    },

    /// The execution's lease is held by another worker and has not expired
    /// ([`CheckpointStore::acquire`](crate::CheckpointStore::acquire)); nothing changed. Try
    /// again after `expires_at`, or take it over as an operator
    /// ([`CheckpointStore::take_over`](crate::CheckpointStore::take_over)).
    #[error("execution {execution_id} is leased to {owner} (token {token}) until {expires_at}")]
    LeaseHeld {
        /// The execution.
        execution_id: String,
        /// Who holds its lease.
        owner: String,
        /// The holder's fencing token.
        token: i64,
        /// When the lease expires, by the store's clock.
        expires_at: time::OffsetDateTime,
    },

    /// A fenced write, a renewal or a release carried a token that is not the execution's
    /// current one: another worker took the lease over (or there is no lease). Nothing was
    /// stored or changed. Stop working on the execution; retrying the same call fails the same
    /// way.
    #[error("lease of execution {execution_id} with token {token} is lost{}", match (holder, current_token) {
        (Some(holder), Some(current)) => format!(" to {holder} (token {current})"),
        _ => ": the execution has no lease".to_owned(),
    })]
    LeaseLost {
        /// The execution.
        execution_id: String,
        /// The token the call carried.
        token: i64,
        /// Who holds the lease now (`None` when the execution has no lease).
        holder: Option<String>,
        /// The current token (`None` when the execution has no lease).
        current_token: Option<i64>,
    },

    /// The input breaks a rule of the contract; nothing was stored.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field (or option) at fault, e.g. `id`, `state`, `limit`.
        field: String,
        /// Why it was refused.
        reason: String,
    },

    /// A state or value could not be converted to or from JSON.
    #[error("serialization failed: {0}")]
    Serialization(#[source] serde_json::Error),

    /// The backend could not be reached or did not answer in time (connection lost, pool
    /// exhausted, server shutting down). Retryable.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed, for people.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Any other backend failure. `retryable` is set for transient conditions such as a
    /// serialization failure or a deadlock that the backend detected.
    #[error("backend error: {message}")]
    Backend {
        /// What failed, for people.
        message: String,
        /// Whether trying the same call again can help.
        retryable: bool,
        /// The underlying error (for PostgreSQL, a `tokio_postgres::Error` with its SQLSTATE).
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether trying the same call again can succeed: true for [`Error::Unavailable`] and for a
    /// [`Error::Backend`] the backend marked transient; false for everything else.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// A stable short name of the variant, for logs and metric labels
    /// ([`telemetry::ERROR_TYPE`](crate::telemetry::ERROR_TYPE)): `not_found`, `conflict`,
    /// `ambiguous`, `lease_held`, `lease_lost`, `invalid_input`, `serialization`, `unavailable`
    /// or `backend`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Conflict { .. } => "conflict",
            Error::Ambiguous { .. } => "ambiguous",
            Error::LeaseHeld { .. } => "lease_held",
            Error::LeaseLost { .. } => "lease_lost",
            Error::InvalidInput { .. } => "invalid_input",
            Error::Serialization(_) => "serialization",
            Error::Unavailable { .. } => "unavailable",
            Error::Backend { .. } => "backend",
        }
    }

    /// An [`Error::InvalidInput`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True when this is an [`Error::InvalidInput`] naming `field`.
    pub fn is_invalid_field(&self, field: &str) -> bool {
        matches!(self, Error::InvalidInput { field: f, .. } if f == field)
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::Serialization(err)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        let io = || Box::new(std::io::Error::other("x")) as BoxError;
        assert!(Error::Unavailable {
            message: "down".into(),
            source: None
        }
        .is_retryable());
        assert!(Error::Backend {
            message: "deadlock".into(),
            retryable: true,
            source: io()
        }
        .is_retryable());
        assert!(!Error::Backend {
            message: "syntax".into(),
            retryable: false,
            source: io()
        }
        .is_retryable());
        assert!(!Error::NotFound { id: "a".into() }.is_retryable());
        assert!(!Error::Conflict {
            execution_id: "e".into(),
            version: 1
        }
        .is_retryable());
        assert!(!Error::invalid("id", "empty").is_retryable());
    }

    #[test]
    fn invalid_input_names_its_field() {
        let err = Error::invalid("state", "too large");
        assert!(err.is_invalid_field("state"));
        assert!(!err.is_invalid_field("id"));
        assert_eq!(err.to_string(), "invalid state: too large");
    }
}
