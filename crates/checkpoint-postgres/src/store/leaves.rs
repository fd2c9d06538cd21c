//! Saves written straight to one partition of the time-partitioned layout.
//!
//! A statement on the partitioned table is planned once for every partition: under generic
//! plans the server locks every partition for each statement, and a group (its executions
//! bound as an array) also opens every partition's indexes and looks each row's start up:
//! with 33 daily partitions a group of 16 cost about 1.7× the plain table's (`pgbench`, same
//! statement, same run), written to its partition about 1.2×.
//!
//! The store learns each execution's start from the rows its saves return. A save whose
//! execution's start is known, or a group whose executions' starts are all known and fall in
//! one period, is written to that period's partition (`<table>_p<YYYYMMDD>`, as the store
//! names them), each row with its start bound.
//! Nothing here is trusted: the statement writes a start only if the registry holds it for
//! the row's execution (a NULL start otherwise, which the column refuses), and the partition's
//! bounds refuse one outside it. A save or group the partition
//! refuses for any reason, or a partition that is not there (dropped by retention, or made
//! under another name), is written through the partitioned table instead, which gives every
//! save its exact outcome; its executions' starts are forgotten, and a partition that is
//! missing or has other bounds is not tried again by this store.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lru::LruCache;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;

use checkpoint_core::Error;

use crate::error::{DbError, DbErrorKind};
use crate::pool::Sql;
use crate::schema::layout::PartitionPeriod;
use crate::schema::statements::{group_save_leaf, save_leaf};
use crate::schema::table::TableName;
use crate::store::partitions::{partition_name, period_bounds};

/// Most executions whose start is remembered; the least recently used goes first.
const MAX_STARTS: usize = 100_000;

/// The statements written to one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Group { deltas: bool },
    Save { delta: bool },
}

/// The partition one group goes to, and each of its saves' start, in order.
pub(crate) struct Route {
    pub period: OffsetDateTime,
    pub statement: Arc<Sql>,
    pub starts: Vec<OffsetDateTime>,
}

/// The starts this store has seen and the statements of the partitions it has written to.
pub(crate) struct Leaves {
    table: TableName,
    period: PartitionPeriod,
    starts: Mutex<LruCache<String, OffsetDateTime>>,
    /// By the first instant of a partition's period and what the statement writes.
    statements: Mutex<HashMap<(OffsetDateTime, Kind), Arc<Sql>>>,
    /// Periods whose partition was missing or refused a start of its period.
    unusable: Mutex<HashSet<OffsetDateTime>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Hints only: a map left mid-update by a panic is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Leaves {
    /// For a time-partitioned table; `None` for the other layouts.
    pub(crate) fn of(table: &TableName) -> Option<Self> {
        let period = table.layout().period()?;
        Some(Leaves {
            table: table.clone(),
            period,
            starts: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_STARTS).unwrap_or(NonZeroUsize::MIN),
            )),
            statements: Mutex::new(HashMap::new()),
            unusable: Mutex::new(HashSet::new()),
        })
    }

    /// Remembers that `execution` started at `start`, as a row the server wrote says.
    pub(crate) fn learn(&self, execution: &str, start: OffsetDateTime) {
        lock(&self.starts).put(execution.to_owned(), start);
    }

    /// Forgets the starts of `executions`.
    pub(crate) fn forget<'a>(&self, executions: impl IntoIterator<Item = &'a str>) {
        let mut starts = lock(&self.starts);
        for execution in executions {
            starts.pop(execution);
        }
    }

    /// Whether the store knows the start of `execution`.
    #[cfg(test)]
    pub(crate) fn knows(&self, execution: &str) -> bool {
        lock(&self.starts).contains(execution)
    }

    /// The partition every execution of a group (given in order) started in, when this store
    /// knows all their starts, they share one period, and that period's partition is usable.
    pub(crate) fn route<'a>(
        &self,
        executions: impl IntoIterator<Item = &'a str>,
        deltas: bool,
    ) -> Option<Route> {
        let mut period = None;
        let starts = {
            let mut known = lock(&self.starts);
            let mut starts = Vec::new();
            for execution in executions {
                let start = *known.get(execution)?;
                let (first, _) = period_bounds(self.period, start)?;
                if *period.get_or_insert(first) != first {
                    return None;
                }
                starts.push(start);
            }
            starts
        };
        let period = period?;
        let statement = self.statement(period, Kind::Group { deltas })?;
        Some(Route {
            period,
            statement,
            starts,
        })
    }

    /// The partition a single save of `execution` goes to, with its statement (`save`, or
    /// `save_delta` for a `delta`) and the execution's start, when this store knows the start
    /// and the partition is usable.
    pub(crate) fn route_one(&self, execution: &str, delta: bool) -> Option<Route> {
        let start = *lock(&self.starts).get(execution)?;
        let (period, _) = period_bounds(self.period, start)?;
        let statement = self.statement(period, Kind::Save { delta })?;
        Some(Route {
            period,
            statement,
            starts: vec![start],
        })
    }

    /// The statement of `kind` on the partition of `period`, unless that partition is unusable.
    fn statement(&self, period: OffsetDateTime, kind: Kind) -> Option<Arc<Sql>> {
        if lock(&self.unusable).contains(&period) {
            return None;
        }
        let mut statements = lock(&self.statements);
        let statement = statements.entry((period, kind)).or_insert_with(|| {
            let suffix = crate::store::partitions::date_suffix(period);
            let leaf = self.table.qualify(&partition_name(&self.table, &suffix));
            Arc::new(match kind {
                Kind::Group { deltas } => group_save_leaf(&leaf, &self.table, deltas),
                Kind::Save { delta } => {
                    let [save, save_delta] = save_leaf(&leaf, &self.table);
                    if delta {
                        save_delta
                    } else {
                        save
                    }
                }
            })
        });
        Some(Arc::clone(statement))
    }

    /// Whether a save or group that `route`'s partition refused with `err` goes through the
    /// partitioned table instead: for what a partition can refuse that the partitioned table
    /// may not (a constraint: a start the registry does not hold, the partition's bounds, a
    /// unique index; or a partition that is gone), not for a lost connection or any other
    /// failure, which the partitioned table would meet too. The starts of `executions` are
    /// then forgotten, and a partition that is missing, or whose bounds do not hold its
    /// period's starts, is not tried again.
    pub(crate) fn reroutes<'a>(
        &self,
        route: &Route,
        err: &Error,
        executions: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let Some(db) = DbError::of(err).filter(|db| {
            db.kind() == DbErrorKind::Server
                && db.code().is_some_and(|code| {
                    code.code().starts_with("23") || *code == SqlState::UNDEFINED_TABLE
                })
        }) else {
            return false;
        };
        let missing = db.code().is_some_and(|code| {
            *code == SqlState::UNDEFINED_TABLE || *code == SqlState::CHECK_VIOLATION
        });
        if missing {
            self.unusable(route.period);
        }
        self.forget(executions);
        true
    }

    /// After a group written to `route`'s partition stored nothing (the partition is no
    /// longer attached to the table): it is not tried again, and the group's starts are
    /// forgotten.
    pub(crate) fn detached<'a>(
        &self,
        route: &Route,
        executions: impl IntoIterator<Item = &'a str>,
    ) {
        self.unusable(route.period);
        self.forget(executions);
    }

    fn unusable(&self, period: OffsetDateTime) {
        lock(&self.unusable).insert(period);
        lock(&self.statements).retain(|(p, _), _| *p != period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::layout::TableLayout;
    use time::macros::datetime;

    fn leaves() -> Leaves {
        let table = TableName::new(None, "checkpoints")
            .expect("a valid name")
            .with_layout(TableLayout::time_partitioned(PartitionPeriod::Day));
        Leaves::of(&table).expect("a time-partitioned table")
    }

    #[test]
    fn a_group_goes_to_a_partition_only_when_every_start_is_known_and_in_it() {
        let leaves = leaves();
        assert!(leaves.route(["a"], false).is_none(), "nothing known yet");
        leaves.learn("a", datetime!(2026-12-06 01:00 UTC));
        leaves.learn("b", datetime!(2026-12-06 23:59 UTC));
        leaves.learn("c", datetime!(2026-12-05 12:00 UTC));
        let route = leaves.route(["a", "b", "a"], false).expect("one day");
        assert_eq!(route.period, datetime!(2026-12-06 00:00 UTC));
        assert_eq!(
            route.starts,
            [
                datetime!(2026-12-06 01:00 UTC),
                datetime!(2026-12-06 23:59 UTC),
                datetime!(2026-12-06 01:00 UTC)
            ]
        );
        assert!(route
            .statement
            .text
            .contains("INSERT INTO \"checkpoints_p20261206\""));
        assert!(leaves.route(["a", "c"], false).is_none(), "two days");
        let one = leaves.route_one("c", true).expect("c's start is known");
        assert_eq!(one.starts, [datetime!(2026-12-05 12:00 UTC)]);
        assert!(one
            .statement
            .text
            .contains("INSERT INTO \"checkpoints_p20261205\""));
        assert!(
            one.statement.text.contains("FOR SHARE"),
            "a delta checks its base"
        );
        assert!(leaves.route_one("d", false).is_none());
        assert!(leaves.route(["a", "d"], false).is_none(), "one unknown");
        leaves.forget(["a"]);
        assert!(!leaves.knows("a"));
        assert!(leaves.route(["a", "b"], false).is_none());
    }

    #[test]
    fn a_missing_partition_is_not_tried_again_and_other_refusals_keep_it() {
        let leaves = leaves();
        let learn = || leaves.learn("a", datetime!(2026-12-06 01:00 UTC));
        learn();
        let route = leaves.route(["a"], true).expect("a's start is known");

        // A lost connection, or a failure the partitioned table would meet too, is not the
        // partition's doing: nothing changes.
        let lost = DbError::connection("reset").into_core();
        let syntax = DbError::server(SqlState::SYNTAX_ERROR, None, "bad").into_core();
        for err in [lost, syntax] {
            assert!(!leaves.reroutes(&route, &err, ["a"]), "{err}");
            assert!(leaves.route(["a"], true).is_some());
        }

        // Another refusal reroutes and forgets the start, but keeps the partition.
        let unique = DbError::server(SqlState::UNIQUE_VIOLATION, Some("x"), "dup").into_core();
        assert!(leaves.reroutes(&route, &unique, ["a"]));
        assert!(!leaves.knows("a"));
        learn();
        assert!(leaves.route(["a"], true).is_some());

        // A missing partition, or one out of its bounds, is not tried again.
        for code in [SqlState::UNDEFINED_TABLE, SqlState::CHECK_VIOLATION] {
            let fresh = super::tests::leaves();
            fresh.learn("a", datetime!(2026-12-06 01:00 UTC));
            let route = fresh.route(["a"], false).expect("known");
            let err = DbError::server(code.clone(), None, "refused").into_core();
            assert!(fresh.reroutes(&route, &err, ["a"]));
            fresh.learn("a", datetime!(2026-12-06 01:00 UTC));
            assert!(fresh.route(["a"], true).is_none(), "{code:?}");
            assert!(fresh.route_one("a", false).is_none(), "{code:?}");
        }

        // A partition that stored nothing (detached) is not tried again either.
        leaves.detached(&route, ["a"]);
        learn();
        assert!(leaves.route(["a"], false).is_none());
    }
}
