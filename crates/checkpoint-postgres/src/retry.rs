//! Retrying transient failures: bounded exponential backoff with jitter (backon).
//!
//! Only idempotent operations are retried (saves by id, batches as whole transactions, reads,
//! `delete`, `clear`, `prune`), and only on failures that another attempt can fix: a lost or
//! refused connection (SQLSTATE class 08), a server shutting down or starting (57P01, 57P02,
//! 57P03), a server that is no longer writable (25006: a primary demoted by a failover, whose
//! connection is then dropped), too many connections (53300), serialization failures or
//! deadlocks (40001, 40P01), and locks not granted within a `lock_timeout` (55P03). A pool that stays exhausted for its wait timeout is not retried:
//! the caller asked to wait that long and no longer.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use checkpoint_core::telemetry::Meter;
use checkpoint_core::{Error, Result};
use tokio_postgres::error::SqlState;

use crate::error::{DbError, DbErrorKind};
use crate::pool::is_connection_state;

/// How transient failures are retried.
///
/// ```
/// use std::time::Duration;
/// use checkpoint_postgres::RetryPolicy;
///
/// let patient = RetryPolicy::default().max_retries(8).max_delay(Duration::from_secs(5));
/// assert_eq!(patient.retries(), 8);
/// assert_eq!(RetryPolicy::disabled().retries(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: usize,
    min_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    /// 4 retries, backoff from 50 ms doubling up to 2 s, with jitter: rides out a server
    /// restart of a few seconds.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure is returned at once.
    pub fn disabled() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Retries after the first attempt.
    pub fn max_retries(mut self, n: usize) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff.
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.min_delay = delay;
        self
    }

    /// The longest backoff.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Whether backoffs are randomised (default true), so instances do not retry in lockstep.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The configured number of retries.
    pub fn retries(&self) -> usize {
        self.max_retries
    }

    fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries);
        if self.jitter {
            builder.with_jitter()
        } else {
            builder
        }
    }

    /// Runs `operation` until it succeeds, fails for good, or the retries are spent; each
    /// retry is counted in `meter` with its cause.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        meter: &Meter,
        operation: &'static str,
        attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if self.max_retries == 0 {
            let mut attempt = attempt;
            return attempt().await;
        }
        attempt
            .retry(self.backoff())
            .sleep(tokio::time::sleep)
            .when(is_transient)
            .notify(|err: &Error, after: Duration| {
                meter.retried(operation, cause(err));
                tracing::warn!(operation, error = %err, retry_in = ?after, "transient failure, retrying");
            })
            .await
    }
}

/// What a retry is counted under: the server's SQLSTATE, or `connection` when the
/// connection failed.
fn cause(err: &Error) -> String {
    match DbError::of(err) {
        Some(db) => match (db.kind(), db.code()) {
            (DbErrorKind::Server, Some(code)) => code.code().to_owned(),
            _ => "connection".to_owned(),
        },
        None => err.kind().to_owned(),
    }
}

/// Whether trying again can fix `err` (see the module docs).
pub fn is_transient(err: &Error) -> bool {
    let Some(db) = DbError::of(err) else {
        return false;
    };
    match (db.kind(), db.code()) {
        (DbErrorKind::Connection, _) => true,
        (DbErrorKind::Server, Some(code)) => {
            is_connection_state(code)
                || crate::pool::is_shared_connection(db)
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn meter() -> Meter {
        Meter::new(checkpoint_core::telemetry::System::Postgres, "test")
    }

    fn fast() -> RetryPolicy {
        RetryPolicy::default()
            .min_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(2))
    }

    #[test]
    fn only_transient_failures_count() {
        let transient = [
            DbError::connection("reset"),
            DbError::server(SqlState::ADMIN_SHUTDOWN, None, "57P01"),
            DbError::server(SqlState::CANNOT_CONNECT_NOW, None, "57P03"),
            DbError::server(SqlState::TOO_MANY_CONNECTIONS, None, "53300"),
            DbError::server(SqlState::CONNECTION_FAILURE, None, "08006"),
            DbError::server(SqlState::T_R_SERIALIZATION_FAILURE, None, "40001"),
            DbError::server(SqlState::T_R_DEADLOCK_DETECTED, None, "40P01"),
            DbError::server(SqlState::LOCK_NOT_AVAILABLE, None, "55P03"),
            // A primary demoted by a failover, still answering read-only.
            DbError::server(SqlState::READ_ONLY_SQL_TRANSACTION, None, "25006"),
            // A named statement refused behind a transaction-mode pooler: the pool has turned
            // its statement cache off, so the next attempt runs unnamed.
            DbError::server(SqlState::DUPLICATE_PSTATEMENT, None, "42P05"),
            DbError::server(SqlState::INVALID_SQL_STATEMENT_NAME, None, "26000"),
        ];
        for err in transient {
            let core = err.into_core();
            assert!(is_transient(&core), "{core}");
        }
        let final_ = [
            DbError::timeout("pool wait"),
            DbError::closed(),
            DbError::decode("bad row"),
            DbError::server(SqlState::UNIQUE_VIOLATION, Some("x"), "dup"),
            DbError::server(SqlState::INVALID_PASSWORD, None, "auth"),
            DbError::server(SqlState::UNDEFINED_TABLE, None, "missing"),
        ];
        for err in final_ {
            let core = err.into_core();
            assert!(!is_transient(&core), "{core}");
        }
        assert!(!is_transient(&Error::invalid("id", "empty")));
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let result = fast()
            .run(&meter(), "test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(DbError::connection("reset").into_core())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// Each retry is counted once, under the server's SQLSTATE or `connection`; the attempt
    /// that succeeds and a final failure are not retries.
    #[tokio::test]
    async fn each_retry_is_counted_under_its_cause() {
        use checkpoint_core::telemetry::testing::{find, samples};
        use checkpoint_core::telemetry::{COLLECTION, OPERATION, RETRIES, SYSTEM};
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let _installed = metrics::set_default_local_recorder(&recorder);
        let failures = [
            DbError::server(SqlState::T_R_SERIALIZATION_FAILURE, None, "conflict"),
            DbError::server(SqlState::T_R_DEADLOCK_DETECTED, None, "deadlock"),
            DbError::connection("reset"),
            DbError::server(SqlState::T_R_SERIALIZATION_FAILURE, None, "conflict"),
        ];
        let calls = AtomicUsize::new(0);
        let result = fast()
            .max_retries(8)
            .run(&meter(), "save", || async {
                match failures.get(calls.fetch_add(1, Ordering::SeqCst)) {
                    Some(err) => Err(err.copied().into_core()),
                    None => Ok(()),
                }
            })
            .await;
        assert!(result.is_ok());
        let _: Result<()> = fast()
            .run(&meter(), "load", || async {
                Err(DbError::server(SqlState::UNDEFINED_TABLE, None, "gone").into_core())
            })
            .await;
        let all = samples(&recorder);
        for (cause, expected) in [("40001", 2), ("40P01", 1), ("connection", 1)] {
            assert!(
                matches!(
                    find(
                        &all,
                        RETRIES,
                        &[
                            (SYSTEM, "postgresql"),
                            (COLLECTION, "test"),
                            (OPERATION, "save"),
                            ("cause", cause)
                        ]
                    ),
                    Some(DebugValue::Counter(n)) if *n == expected
                ),
                "{cause}: {expected} expected in {all:?}"
            );
        }
        assert_eq!(all.len(), 3, "a final failure is no retry: {all:?}");
    }

    #[tokio::test]
    async fn a_final_failure_is_returned_at_once() {
        let calls = AtomicUsize::new(0);
        let result: Result<()> = fast()
            .run(&meter(), "test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(DbError::server(SqlState::UNDEFINED_TABLE, None, "gone").into_core())
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_are_bounded_and_can_be_turned_off() {
        for (policy, expected) in [(fast().max_retries(3), 4), (RetryPolicy::disabled(), 1)] {
            let calls = AtomicUsize::new(0);
            let result: Result<()> = policy
                .run(&meter(), "test", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(DbError::connection("down").into_core())
                })
                .await;
            assert!(matches!(result, Err(Error::Unavailable { .. })));
            assert_eq!(calls.load(Ordering::SeqCst), expected);
        }
    }
}
