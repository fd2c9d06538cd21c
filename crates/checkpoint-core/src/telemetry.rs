//! Metrics every backend records, through the [`metrics`] facade.
//!
//! The store records; the application chooses where the figures go by installing a recorder
//! (for example `metrics-exporter-prometheus`, or an OpenTelemetry bridge). With no recorder
//! installed nothing leaves the process and a record costs a fraction of a microsecond (its
//! labels are built, then dropped), so no exporter is forced on anyone. The `metrics` facade was chosen over OpenTelemetry's metrics API for that reason:
//! it is a small crate with no runtime of its own, and every exporter (Prometheus, StatsD,
//! OpenTelemetry itself) plugs into it.
//!
//! Names and labels follow the OpenTelemetry semantic conventions for database clients where
//! they apply ([`OPERATION_DURATION`], [`CONNECTION_WAIT_TIME`], [`CONNECTION_COUNT`] and the
//! `db.*` and `error.type` labels); the store's own figures are named under `checkpoint.`.
//! Exporters that do not allow dots (Prometheus) turn them into underscores and add the unit:
//! `db_client_operation_duration_seconds`.
//!
//! ```
//! use checkpoint_core::telemetry::{Meter, System};
//!
//! # async fn run() -> checkpoint_core::Result<()> {
//! let meter = Meter::new(System::Other("example"), "checkpoints");
//! let version = meter.observe("save", async { Ok(1_i64) }).await?;
//! assert_eq!(version, 1);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Once;
use std::time::Instant;

use std::sync::Arc;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, histogram, SharedString, Unit,
};

use crate::Result;

/// Histogram, seconds: how long each store operation took, from the call to its result.
/// Labels: [`SYSTEM`], [`COLLECTION`], [`OPERATION`], and [`ERROR_TYPE`] when it failed.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// Histogram, seconds: how long an operation waited for a pooled connection.
pub const CONNECTION_WAIT_TIME: &str = "db.client.connection.wait_time";
/// Gauge: the pool's connections, by [`CONNECTION_STATE`] (`used` or `idle`).
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// Counter: statements sent again after a transient failure, by [`OPERATION`] and `cause`
/// (the SQLSTATE, or `connection`).
pub const RETRIES: &str = "checkpoint.retries";
/// Histogram: how many saves one group commit wrote in one statement.
pub const GROUP_SIZE: &str = "checkpoint.group_commit.size";
/// Counter: groups the server refused whose saves were then made one by one.
pub const GROUP_SPLITS: &str = "checkpoint.group_commit.splits";
/// Counter: states written, by `storage`: `snapshot` (whole and compressed), `delta`
/// (against a base version) or `jsonb` (whole, as JSONB). The snapshot ratio is
/// `snapshot / (snapshot + delta)`.
pub const STATES_WRITTEN: &str = "checkpoint.states.written";
/// Counter, bytes: the stored size of the states written (payload or JSONB text).
pub const STATE_BYTES_WRITTEN: &str = "checkpoint.states.bytes_written";
/// Histogram: the depth of each delta written (1 = built on a snapshot).
pub const CHAIN_DEPTH: &str = "checkpoint.states.chain_depth";
/// Counter: sealed states that could not be opened, by `kind` (`unknown_key`,
/// `authentication`, `malformed`).
pub const ENCRYPTION_FAILURES: &str = "checkpoint.encryption.failures";

/// Label: the backend, `postgresql`, `sqlite` or `memory`.
pub const SYSTEM: &str = "db.system.name";
/// Label: the table (or, in memory, the store's name).
pub const COLLECTION: &str = "db.collection.name";
/// Label: the [`CheckpointStore`](crate::CheckpointStore) method, `save`, `load`, …
pub const OPERATION: &str = "db.operation.name";
/// Label on failures: [`Error::kind`](crate::Error::kind).
pub const ERROR_TYPE: &str = "error.type";
/// Label of [`CONNECTION_COUNT`]: `used` or `idle`.
pub const CONNECTION_STATE: &str = "db.client.connection.state";

/// The backend a [`Meter`] names in [`SYSTEM`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum System {
    /// `postgresql`.
    Postgres,
    /// `sqlite`.
    Sqlite,
    /// `memory`.
    Memory,
    /// Another backend's name.
    Other(&'static str),
}

impl System {
    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            System::Postgres => "postgresql",
            System::Sqlite => "sqlite",
            System::Memory => "memory",
            System::Other(name) => name,
        }
    }
}

/// What one store records its operations under: the backend and the table.
#[derive(Clone, Debug)]
pub struct Meter {
    system: &'static str,
    /// Shared, so the label costs a reference count per record, not a copy of the name.
    collection: SharedString,
}

impl Meter {
    /// A meter for `collection` (the table) on `system`; the first one also describes every
    /// metric above to the installed recorder.
    pub fn new(system: System, collection: impl Into<String>) -> Self {
        describe();
        let collection: String = collection.into();
        Meter {
            system: system.name(),
            collection: SharedString::from_shared(Arc::from(collection)),
        }
    }

    /// The label value of [`SYSTEM`].
    pub fn system(&self) -> &'static str {
        self.system
    }

    /// The label value of [`COLLECTION`].
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Runs `operation` and records its duration in [`OPERATION_DURATION`], with the kind of
    /// its error when it fails.
    pub async fn observe<T, F>(&self, operation: &'static str, run: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let outcome = run.await;
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Ok(_) => histogram!(
                OPERATION_DURATION,
                SYSTEM => self.system,
                COLLECTION => self.collection.clone(),
                OPERATION => operation,
            )
            .record(seconds),
            Err(err) => histogram!(
                OPERATION_DURATION,
                SYSTEM => self.system,
                COLLECTION => self.collection.clone(),
                OPERATION => operation,
                ERROR_TYPE => err.kind(),
            )
            .record(seconds),
        }
        outcome
    }

    /// Counts one retry of `operation` for `cause`.
    pub fn retried(&self, operation: &'static str, cause: String) {
        counter!(
            RETRIES,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
            OPERATION => operation,
            "cause" => cause,
        )
        .increment(1);
    }

    /// Records a state written: how it was stored, its stored size, and a delta's depth.
    pub fn state_written(&self, storage: &'static str, bytes: usize, depth: Option<u32>) {
        counter!(
            STATES_WRITTEN,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
            "storage" => storage,
        )
        .increment(1);
        counter!(
            STATE_BYTES_WRITTEN,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
        )
        .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
        if let Some(depth) = depth {
            histogram!(
                CHAIN_DEPTH,
                SYSTEM => self.system,
                COLLECTION => self.collection.clone(),
            )
            .record(f64::from(depth));
        }
    }

    /// Records a group commit of `saves` saves.
    pub fn group_written(&self, saves: usize) {
        histogram!(
            GROUP_SIZE,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
        )
        .record(saves as f64);
    }

    /// Counts a group the server refused, whose saves were made one by one.
    pub fn group_split(&self) {
        counter!(
            GROUP_SPLITS,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
        )
        .increment(1);
    }

    /// Records how long a checkout waited for a pooled connection.
    pub fn connection_waited(&self, seconds: f64) {
        histogram!(
            CONNECTION_WAIT_TIME,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
        )
        .record(seconds);
    }

    /// Sets the pool's connection counts.
    pub fn connections(&self, used: usize, idle: usize) {
        for (state, n) in [("used", used), ("idle", idle)] {
            metrics::gauge!(
                CONNECTION_COUNT,
                SYSTEM => self.system,
                COLLECTION => self.collection.clone(),
                CONNECTION_STATE => state,
            )
            .set(n as f64);
        }
    }

    /// Counts a sealed state that could not be opened.
    pub fn encryption_failed(&self, kind: &'static str) {
        counter!(
            ENCRYPTION_FAILURES,
            SYSTEM => self.system,
            COLLECTION => self.collection.clone(),
            "kind" => kind,
        )
        .increment(1);
    }
}

/// Describes every metric (unit and meaning) to the installed recorder, once per process.
/// A recorder installed after the first store was made misses the descriptions, never the
/// figures.
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_histogram!(
            OPERATION_DURATION,
            Unit::Seconds,
            "Duration of checkpoint store operations."
        );
        describe_histogram!(
            CONNECTION_WAIT_TIME,
            Unit::Seconds,
            "Time an operation waited for a pooled connection."
        );
        describe_gauge!(
            CONNECTION_COUNT,
            Unit::Count,
            "Connections in the pool, by state (used or idle)."
        );
        describe_counter!(
            RETRIES,
            Unit::Count,
            "Statements sent again after a transient failure, by cause."
        );
        describe_histogram!(
            GROUP_SIZE,
            Unit::Count,
            "Saves written by one group commit."
        );
        describe_counter!(
            GROUP_SPLITS,
            Unit::Count,
            "Group commits refused by the server and made one save at a time."
        );
        describe_counter!(
            STATES_WRITTEN,
            Unit::Count,
            "States written, by storage (snapshot, delta or jsonb)."
        );
        describe_counter!(
            STATE_BYTES_WRITTEN,
            Unit::Bytes,
            "Stored bytes of the states written."
        );
        describe_histogram!(
            CHAIN_DEPTH,
            Unit::Count,
            "Depth of each delta written (1 = built on a snapshot)."
        );
        describe_counter!(
            ENCRYPTION_FAILURES,
            Unit::Count,
            "Sealed states that could not be opened, by kind."
        );
    });
}

/// Reading what a store recorded, for tests: a [`DebuggingRecorder`] installed for the test's
/// thread, then [`samples`](testing::samples) of it.
///
/// [`DebuggingRecorder`]: metrics_util::debugging::DebuggingRecorder
#[cfg(any(test, feature = "conformance"))]
pub mod testing {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;

    /// One recorded metric: its name, kind, labels (sorted) and value.
    #[derive(Debug)]
    pub struct Sample {
        /// The metric's name.
        pub name: String,
        /// Counter, gauge or histogram.
        pub kind: MetricKind,
        /// Its labels as (key, value), sorted.
        pub labels: Vec<(String, String)>,
        /// Its value since the last snapshot.
        pub value: DebugValue,
    }

    /// Everything `recorder` holds (taking the snapshot empties its histograms).
    pub fn samples(recorder: &DebuggingRecorder) -> Vec<Sample> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| Sample {
                name: key.key().name().to_owned(),
                kind: key.kind(),
                labels: labels(
                    &key.key()
                        .labels()
                        .map(|l| (l.key(), l.value()))
                        .collect::<Vec<_>>(),
                ),
                value,
            })
            .collect()
    }

    /// `pairs` as owned, sorted labels, to compare with [`Sample::labels`].
    pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        v
    }

    /// The value of the metric named `name` with exactly the labels `pairs`.
    pub fn find<'a>(
        all: &'a [Sample],
        name: &str,
        pairs: &[(&str, &str)],
    ) -> Option<&'a DebugValue> {
        let want = labels(pairs);
        all.iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| &s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{find, samples};
    use super::*;
    use crate::Error;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::MetricKind;

    #[test]
    fn an_operation_is_timed_with_its_outcome() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let meter = Meter::new(System::Sqlite, "checkpoints");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                assert_eq!(meter.observe("save", async { Ok(3) }).await.ok(), Some(3));
                let err = meter
                    .observe::<(), _>("load", async { Err(Error::NotFound { id: "x".into() }) })
                    .await;
                assert!(matches!(err, Err(Error::NotFound { .. })));
            });
        });
        let all = samples(&recorder);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(
            all.iter().all(|s| s.kind == MetricKind::Histogram),
            "{all:?}"
        );
        let table = [(SYSTEM, "sqlite"), (COLLECTION, "checkpoints")];
        let ok = find(
            &all,
            OPERATION_DURATION,
            &[table[0], table[1], (OPERATION, "save")],
        );
        let failed = find(
            &all,
            OPERATION_DURATION,
            &[
                table[0],
                table[1],
                (OPERATION, "load"),
                (ERROR_TYPE, "not_found"),
            ],
        );
        for found in [ok, failed] {
            match found {
                Some(DebugValue::Histogram(values)) => {
                    assert_eq!(values.len(), 1, "{values:?}");
                    let seconds = values[0].into_inner();
                    assert!(seconds >= 0.0 && seconds.is_finite(), "{values:?}");
                }
                other => panic!("one histogram sample expected, found {other:?}"),
            }
        }
    }

    #[test]
    fn states_written_count_storage_bytes_and_depth() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let meter = Meter::new(System::Postgres, "t");
            meter.state_written("delta", 120, Some(3));
            meter.state_written("snapshot", 900, None);
            meter.state_written("delta", 80, Some(4));
        });
        let all = samples(&recorder);
        let table = [(SYSTEM, "postgresql"), (COLLECTION, "t")];
        let count = |storage: &str| match find(
            &all,
            STATES_WRITTEN,
            &[table[0], table[1], ("storage", storage)],
        ) {
            Some(DebugValue::Counter(n)) => Some(*n),
            _ => None,
        };
        assert_eq!(count("delta"), Some(2));
        assert_eq!(count("snapshot"), Some(1));
        assert!(
            matches!(
                find(&all, STATE_BYTES_WRITTEN, &table),
                Some(DebugValue::Counter(1_100))
            ),
            "{all:?}"
        );
        match find(&all, CHAIN_DEPTH, &table) {
            Some(DebugValue::Histogram(values)) => {
                let depths: Vec<f64> = values.iter().map(|v| v.into_inner()).collect();
                assert_eq!(depths, vec![3.0, 4.0]);
            }
            other => panic!("one depth histogram expected, found {other:?}"),
        }
    }

    #[test]
    fn every_error_has_a_stable_kind() {
        let io = || Box::new(std::io::Error::other("x")) as crate::BoxError;
        let kinds = [
            (Error::NotFound { id: "a".into() }, "not_found"),
            (
                Error::Conflict {
                    execution_id: "e".into(),
                    version: 1,
                },
                "conflict",
            ),
            (
                Error::Ambiguous {
                    id: "a".into(),
                    executions: vec![],
                },
                "ambiguous",
            ),
            (
                Error::LeaseHeld {
                    execution_id: "e".into(),
                    owner: "w".into(),
                    token: 1,
                    expires_at: time::OffsetDateTime::UNIX_EPOCH,
                },
                "lease_held",
            ),
            (crate::Fence::new("e", 1).lost(None), "lease_lost"),
            (Error::invalid("id", "empty"), "invalid_input"),
            (
                Error::Serialization(serde_json::from_str::<u8>("x").unwrap_err()),
                "serialization",
            ),
            (
                Error::Unavailable {
                    message: "down".into(),
                    source: None,
                },
                "unavailable",
            ),
            (
                Error::Backend {
                    message: "m".into(),
                    retryable: false,
                    source: io(),
                },
                "backend",
            ),
        ];
        for (err, kind) in kinds {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
