//! The partitions of a time-partitioned table ([`TableLayout::TimePartitioned`]): made ahead of
//! time, listed, and dropped behind for retention.
//!
//! Every change runs in one transaction under an advisory lock of its own, so instances that
//! maintain the same table at once take turns. A partition is made as a table of its own, with
//! its indexes named by the store and its delta foreign key on itself, then attached: attaching
//! blocks no reads or writes of the table, and the names let the store tell the version rule's
//! violations from others without asking the catalog.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use checkpoint_core::{Error, Result};
use time::{Date, Month, OffsetDateTime, Time};
use tokio_postgres::types::Type;

use crate::pool::{DbTransaction, Sql};
use crate::schema::layout::{PartitionPeriod, TableLayout};
use crate::schema::table::TableName;
use crate::PostgresStore;

/// The most periods [`PostgresOptions::partitions_ahead`](crate::PostgresOptions::partitions_ahead)
/// accepts.
pub const MAX_PARTITIONS_AHEAD: u16 = 400;

/// How long maintenance waits for a lock on the table before it gives up, so that it never
/// queues every reader and writer behind it for long.
const LOCK_TIMEOUT: &str = "5s";

/// One partition of a time-partitioned table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionInfo {
    /// The partition's table name (without schema).
    pub name: String,
    /// The first execution start it holds.
    pub from: OffsetDateTime,
    /// The first execution start it no longer holds.
    pub to: OffsetDateTime,
    /// The server's estimate of its rows (`pg_class.reltuples`; -1 before the first
    /// `VACUUM` or `ANALYZE`).
    pub estimated_rows: i64,
}

/// What [`PostgresStore::drop_partitions_before`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedPartitions {
    /// The partitions dropped, oldest first.
    pub partitions: Vec<PartitionInfo>,
    /// The executions whose start was in them, removed from the registry of starts.
    pub executions: u64,
}

/// An error of the store's own making, not the server's.
fn internal(message: String) -> Error {
    Error::Backend {
        source: message.clone().into(),
        message,
        retryable: false,
    }
}

/// The first instant of the period holding `at`, and of the next period.
pub(crate) fn period_bounds(
    period: PartitionPeriod,
    at: OffsetDateTime,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    // A caller's instant whose UTC date `time` cannot hold has no period (no panic).
    let day = at.checked_to_offset(time::UtcOffset::UTC)?.date();
    let (first, next) = match period {
        PartitionPeriod::Day => (day, day.next_day()?),
        PartitionPeriod::Week => {
            let monday = day.checked_sub(time::Duration::days(
                day.weekday().number_days_from_monday().into(),
            ))?;
            (monday, monday.checked_add(time::Duration::days(7))?)
        }
        PartitionPeriod::Month => {
            let first = Date::from_calendar_date(day.year(), day.month(), 1).ok()?;
            let next = match day.month() {
                Month::December => {
                    Date::from_calendar_date(day.year().checked_add(1)?, Month::January, 1)
                }
                month => Date::from_calendar_date(day.year(), month.next(), 1),
            }
            .ok()?;
            (first, next)
        }
    };
    Some((
        first.with_time(Time::MIDNIGHT).assume_utc(),
        next.with_time(Time::MIDNIGHT).assume_utc(),
    ))
}

/// `YYYYMMDD` of an instant's UTC date: the suffix of a partition's name and its indexes'.
pub(crate) fn date_suffix(at: OffsetDateTime) -> String {
    let day = at.to_offset(time::UtcOffset::UTC).date();
    format!(
        "{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// A timestamp literal for DDL, which cannot bind parameters. Only instants the store computed
/// reach it.
fn literal(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    format!(
        "'{} {:02}:{:02}:{:02}+00'",
        date_suffix_dashed(utc.date()),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

fn date_suffix_dashed(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The DDL that makes the partition for `[from, to)`: the table, its two named unique indexes,
/// its delta foreign key on itself, then the attachment (which adds the other indexes and the
/// trigger from the parent).
fn create_partition_ddl(table: &TableName, from: OffsetDateTime, to: OffsetDateTime) -> String {
    let suffix = date_suffix(from);
    let name = partition_name(table, &suffix);
    let partition = table.qualify(&name);
    let parent = table.quoted();
    format!(
        "CREATE TABLE {partition} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
           INCLUDING STORAGE);
         CREATE UNIQUE INDEX \"{version}\" ON {partition} (execution_id, version, execution_start);
         CREATE UNIQUE INDEX \"{id}\" ON {partition} (id, execution_id, execution_start);
         ALTER TABLE {partition} ADD CONSTRAINT \"{base_key}\"
           FOREIGN KEY (execution_id, base_version, execution_start)
           REFERENCES {partition} (execution_id, version, execution_start);
         ALTER TABLE {parent} ATTACH PARTITION {partition}
           FOR VALUES FROM ({from}) TO ({to});",
        version = version_index_name(table, &suffix),
        id = id_key_name(table, &suffix),
        base_key = table.base_key(),
        from = literal(from),
        to = literal(to),
    )
}

/// `<table>_p<YYYYMMDD>`: at most 62 bytes, since a table name has at most 52.
pub(crate) fn partition_name(table: &TableName, suffix: &str) -> String {
    format!("{}_p{suffix}", table.table())
}

/// The partition's index of the version rule: `<table>_v<YYYYMMDD>`.
pub(crate) fn version_index_name(table: &TableName, suffix: &str) -> String {
    format!("{}_v{suffix}", table.table())
}

/// The partition's unique index of `(id, execution_id, execution_start)`: `<table>_k<YYYYMMDD>`.
pub(crate) fn id_key_name(table: &TableName, suffix: &str) -> String {
    format!("{}_k{suffix}", table.table())
}

/// Whether `name` is one of `table`'s partition indexes made by [`create_partition_ddl`] with
/// the given kind letter (`v` or `k`).
pub(crate) fn is_partition_index(table: &TableName, name: &str, kind: char) -> bool {
    name.strip_prefix(table.table())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_prefix(kind))
        .is_some_and(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// When the store next makes sure its partitions exist, ahead of a write.
#[derive(Default)]
pub(crate) struct Upkeep {
    due: Mutex<Option<Instant>>,
    running: tokio::sync::Mutex<()>,
}

/// How long after a successful upkeep the next one is due: partitions exist `ahead` periods
/// ahead, so once an hour is ample and also repairs a partition someone dropped.
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// How long after a failed upkeep (for example, a role that may not create tables) the next
/// one is due.
const UPKEEP_RETRY: Duration = Duration::from_secs(60);

impl Upkeep {
    fn is_due(&self) -> bool {
        let due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        due.is_none_or(|at| Instant::now() >= at)
    }

    fn schedule(&self, after: Duration) {
        *self.due.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + after);
    }
}

/// Before a write: makes the partitions when they are due, once per process at a time. A
/// failure is logged, not returned: the write goes on, and succeeds whenever the partition it
/// needs exists.
pub(crate) async fn upkeep(store: &PostgresStore) {
    let Some(upkeep) = store.upkeep.as_deref() else {
        return;
    };
    if !upkeep.is_due() {
        return;
    }
    let _turn = upkeep.running.lock().await;
    if !upkeep.is_due() {
        return;
    }
    match store.ensure_partitions().await {
        Ok(created) => {
            if !created.is_empty() {
                tracing::info!(table = store.table.table(), ?created, "created partitions");
            }
            upkeep.schedule(UPKEEP_EVERY);
        }
        Err(err) => {
            tracing::warn!(
                table = store.table.table(),
                error = %err,
                "could not create the checkpoint table's partitions ahead; saves need the \
                 partition of their execution's start (run PostgresStore::ensure_partitions or \
                 `checkpointctl partitions ensure` as the table's owner)"
            );
            upkeep.schedule(UPKEEP_RETRY);
        }
    }
}

/// The layout's period, or the error for a table that is not time-partitioned.
pub(crate) fn period_of(table: &TableName) -> Result<PartitionPeriod> {
    match table.layout() {
        TableLayout::TimePartitioned { period } => Ok(period),
        other => Err(Error::invalid(
            "table_layout",
            format!("the table is not time-partitioned ({other:?}); only TableLayout::TimePartitioned has partitions by time"),
        )),
    }
}

/// Begins a maintenance transaction: the table's partition lock, and a bounded wait for locks.
async fn begin(store: &PostgresStore) -> Result<Box<dyn DbTransaction>> {
    let mut tx = store.pool.begin().await?;
    let setup = async {
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await?;
        let lock = Sql::new(
            "SELECT pg_advisory_xact_lock(hashtext($1)::bigint)",
            &[Type::TEXT],
        );
        tx.execute(&lock, &[&format!("{}:partitions", store.table.lock_key())])
            .await?;
        Ok::<(), Error>(())
    }
    .await;
    match setup {
        Ok(()) => Ok(tx),
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// Ends a maintenance transaction: commits what succeeded, rolls back what failed.
async fn settle<T>(tx: Box<dyn DbTransaction>, outcome: Result<T>) -> Result<T> {
    match outcome {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            // Best effort: a failed rollback closes the connection, and the server rolls back.
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

/// The server's clock: partitions follow the `now()` that inserts record as starts.
async fn server_now(tx: &mut dyn DbTransaction) -> Result<OffsetDateTime> {
    let rows = tx.query(&Sql::new("SELECT now()", &[]), &[]).await?;
    let row = rows
        .first()
        .ok_or_else(|| internal("SELECT now() returned no row".to_owned()))?;
    Ok(row.timestamp(0)?)
}

/// The partitions of `table` with range bounds, oldest first (a partition with other bounds,
/// such as a default partition someone added, is not listed and never dropped).
async fn read_partitions(
    tx: &mut dyn DbTransaction,
    table: &TableName,
) -> Result<Vec<PartitionInfo>> {
    let sql = Sql::new(
        "SELECT c.relname::text, b[1]::timestamptz, b[2]::timestamptz, c.reltuples::int8 \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), \
           'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS b \
         WHERE i.inhparent = to_regclass($1) AND b IS NOT NULL ORDER BY 2",
        &[Type::TEXT],
    );
    let rows = tx.query(&sql, &[&table.quoted()]).await?;
    rows.iter()
        .map(|row| {
            Ok(PartitionInfo {
                name: row.text(0)?,
                from: row.timestamp(1)?,
                to: row.timestamp(2)?,
                estimated_rows: row.int(3)?,
            })
        })
        .collect()
}

/// The most partitions one call makes.
pub const MAX_PARTITIONS_PER_CALL: usize = 1000;

/// Which periods [`create`] covers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Span {
    /// The current period and this many after it, by the server's clock.
    Ahead(u16),
    /// Every period that overlaps `[from, to)`.
    Between(OffsetDateTime, OffsetDateTime),
}

/// Makes the partitions of `span` that no partition covers yet. Returns the names made.
pub(crate) async fn create(
    store: &PostgresStore,
    period: PartitionPeriod,
    span: Span,
) -> Result<Vec<String>> {
    if let Span::Between(from, to) = span {
        if from >= to {
            return Err(Error::invalid(
                "to",
                format!("the range [{from}, {to}) is empty"),
            ));
        }
    }
    let mut tx = begin(store).await?;
    let outcome = async {
        let (mut at, end) = match span {
            Span::Ahead(ahead) => {
                let now = server_now(tx.as_mut()).await?;
                let mut end = now;
                for _ in 0..=ahead {
                    end = period_bounds(period, end)
                        .ok_or_else(|| internal(format!("no partition period follows {end}")))?
                        .1;
                }
                (now, end)
            }
            Span::Between(from, to) => (from, to),
        };
        let existing = read_partitions(tx.as_mut(), &store.table).await?;
        let mut created = Vec::new();
        let mut periods = 0usize;
        while at < end {
            periods += 1;
            if periods > MAX_PARTITIONS_PER_CALL {
                return Err(Error::invalid(
                    "to",
                    format!("the range needs more than {MAX_PARTITIONS_PER_CALL} partitions"),
                ));
            }
            let (from, to) = period_bounds(period, at)
                .ok_or_else(|| internal(format!("no partition period follows {at}")))?;
            if !existing.iter().any(|p| p.from < to && p.to > from) {
                tx.batch_execute(&create_partition_ddl(&store.table, from, to))
                    .await?;
                created.push(partition_name(&store.table, &date_suffix(from)));
            }
            at = to;
        }
        Ok(created)
    }
    .await;
    settle(tx, outcome).await
}

/// The partitions of the table, oldest first.
pub(crate) async fn list(store: &PostgresStore) -> Result<Vec<PartitionInfo>> {
    period_of(&store.table)?;
    let mut tx = store.pool.begin().await?;
    let outcome = read_partitions(tx.as_mut(), &store.table).await;
    let _ = tx.rollback().await;
    outcome
}

/// Drops every partition that ends at or before `cutoff`, with its executions' starts, in one
/// transaction.
pub(crate) async fn drop_before(
    store: &PostgresStore,
    cutoff: OffsetDateTime,
) -> Result<DroppedPartitions> {
    period_of(&store.table)?;
    let mut tx = begin(store).await?;
    let outcome = async {
        let now = server_now(tx.as_mut()).await?;
        if cutoff > now {
            return Err(Error::invalid(
                "cutoff",
                format!(
                    "{cutoff} is after the server's current time {now}: retention drops only \
                     partitions that have ended"
                ),
            ));
        }
        let doomed: Vec<PartitionInfo> = read_partitions(tx.as_mut(), &store.table)
            .await?
            .into_iter()
            .filter(|p| p.to <= cutoff)
            .collect();
        let Some(end) = doomed.iter().map(|p| p.to).max() else {
            return Ok(DroppedPartitions::default());
        };
        // Every statement on the table finishes first, and none starts until the partitions
        // and their starts are gone together: a save never records a start whose partition is
        // about to go, nor writes to a partition without its start.
        tx.batch_execute(&format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            store.table.quoted()
        ))
        .await?;
        let forget = Sql::new(
            format!(
                "DELETE FROM {} WHERE started < $1",
                store.table.qualify(&store.table.executions_table())
            ),
            &[Type::TIMESTAMPTZ],
        );
        for partition in &doomed {
            tx.batch_execute(&format!(
                "DROP TABLE {}",
                store.table.qualify(&partition.name)
            ))
            .await?;
        }
        // After the rows that name them (each row's start is a foreign key to its entry).
        let executions = tx.execute(&forget, &[&end]).await?;
        Ok(DroppedPartitions {
            partitions: doomed,
            executions,
        })
    }
    .await;
    settle(tx, outcome).await
}

/// Partition maintenance of a time-partitioned table ([`TableLayout::TimePartitioned`]).
impl PostgresStore {
    /// Makes the partitions of a time-partitioned table from the current period through
    /// [`partitions_ahead`](crate::PostgresOptions::partitions_ahead) periods after it, where none
    /// covers them yet, under an advisory lock shared by every instance. The store does this
    /// itself when it connects and, before a write, once an hour; call it (or `checkpointctl
    /// partitions ensure`) from a scheduled job when the store's role may not create tables.
    /// Returns the names of the partitions made.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `table_layout`) when the table is not time-partitioned;
    /// the server's error otherwise (for example, a role that does not own the table).
    pub async fn ensure_partitions(&self) -> Result<Vec<String>> {
        let period = period_of(&self.table)?;
        create(self, period, Span::Ahead(self.partitions_ahead)).await
    }

    /// Makes the partitions of a time-partitioned table for every period that overlaps
    /// `[from, to)`, where none covers it yet: for rows copied in with past starts, such as a
    /// move from the plain layout. Returns the names of the partitions made.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `table_layout`) when the table is not time-partitioned,
    /// (field `to`) for an empty range or one of more than [`MAX_PARTITIONS_PER_CALL`]
    /// periods; the server's error otherwise.
    pub async fn create_partitions(
        &self,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
    ) -> Result<Vec<String>> {
        let period = period_of(&self.table)?;
        create(self, period, Span::Between(from, to)).await
    }

    /// The partitions of a time-partitioned table, oldest first.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `table_layout`) when the table is not time-partitioned.
    pub async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        list(self).await
    }

    /// Retention for a time-partitioned table: drops every partition whose range ends at or
    /// before `cutoff`, and forgets the starts of the executions in them, in one transaction.
    /// Every checkpoint of an execution that started before the dropped partitions' end goes,
    /// however recent; nothing else is touched. It takes the table's exclusive lock for the
    /// moment of the drop (waiting at most 5 s for it), so no save writes to a partition that
    /// is going.
    ///
    /// ```no_run
    /// # async fn run(store: checkpoint_postgres::PostgresStore) -> checkpoint_core::Result<()> {
    /// let cutoff = time::OffsetDateTime::now_utc() - time::Duration::days(90);
    /// let dropped = store.drop_partitions_before(cutoff).await?;
    /// println!("dropped {} partitions", dropped.partitions.len());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// - [`Error::InvalidInput`] (field `table_layout`) when the table is not
    ///   time-partitioned, or (field `cutoff`) for a cutoff after the server's current time;
    /// - the server's error (nothing is dropped then), for example a lock not granted within
    ///   5 s (SQLSTATE 55P03, retryable).
    pub async fn drop_partitions_before(
        &self,
        cutoff: time::OffsetDateTime,
    ) -> Result<DroppedPartitions> {
        drop_before(self, cutoff).await
    }

    /// Gathers the planner's statistics of the table (`ANALYZE`). A partitioned table's parent
    /// is never analysed by autovacuum, so run this after large loads or drops (`checkpointctl
    /// partitions maintain` does).
    ///
    /// # Errors
    /// The server's error.
    pub async fn analyze(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let analyzed = tx
            .batch_execute(&format!("ANALYZE {}", self.table.quoted()))
            .await;
        crate::store::write::finish(tx, analyzed.map(Some).map_err(Error::from))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn instant() -> impl Strategy<Value = OffsetDateTime> {
        // Year 1 to 9998: every period that holds one has a successor.
        (-62_135_596_800i64..253_370_764_800i64)
            .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
    }

    fn period() -> impl Strategy<Value = PartitionPeriod> {
        prop_oneof![
            Just(PartitionPeriod::Day),
            Just(PartitionPeriod::Week),
            Just(PartitionPeriod::Month),
        ]
    }

    proptest! {
        #[test]
        fn every_instant_falls_in_exactly_one_period(at in instant(), period in period()) {
            let (from, to) = period_bounds(period, at).unwrap();
            prop_assert!(from <= at && at < to, "{from} <= {at} < {to}");
            // The next period starts where this one ends: no gaps, no overlaps.
            let (next_from, _) = period_bounds(period, to).unwrap();
            prop_assert_eq!(next_from, to);
            let days = (to - from).whole_days();
            match period {
                PartitionPeriod::Day => prop_assert_eq!(days, 1),
                PartitionPeriod::Week => {
                    prop_assert_eq!(days, 7);
                    prop_assert_eq!(from.weekday(), time::Weekday::Monday);
                }
                PartitionPeriod::Month => {
                    prop_assert!((28..=31).contains(&days));
                    prop_assert_eq!(from.day(), 1);
                }
            }
        }

        #[test]
        fn partition_names_fit_and_their_indexes_are_recognised(
            len in 1usize..=crate::MAX_TABLE_BYTES,
            at in instant(),
        ) {
            let table = TableName::new(None, &"t".repeat(len)).unwrap();
            let suffix = date_suffix(at);
            let names = [
                partition_name(&table, &suffix),
                version_index_name(&table, &suffix),
                id_key_name(&table, &suffix),
            ];
            for name in &names {
                prop_assert!(name.len() <= 63, "{name}");
            }
            prop_assert!(is_partition_index(&table, &names[1], 'v'));
            prop_assert!(is_partition_index(&table, &names[2], 'k'));
            prop_assert!(!is_partition_index(&table, &names[1], 'k'));
            prop_assert!(!is_partition_index(&table, &names[0], 'v'));
            prop_assert!(!is_partition_index(&table, &table.version_index(), 'v'));
        }
    }

    #[test]
    fn ddl_names_the_bounds_in_utc() {
        let table = TableName::new(Some("s"), "cp")
            .unwrap()
            .with_layout(TableLayout::time_partitioned(PartitionPeriod::Month));
        let at = time::macros::datetime!(2026-12-31 23:30 -02:00);
        let (from, to) = period_bounds(PartitionPeriod::Month, at).unwrap();
        let ddl = create_partition_ddl(&table, from, to);
        assert!(ddl.contains("\"s\".\"cp_p20270101\""), "{ddl}");
        assert!(
            ddl.contains("FROM ('2027-01-01 00:00:00+00') TO ('2027-02-01 00:00:00+00')"),
            "{ddl}"
        );
        assert!(ddl.contains("\"cp_v20270101\"") && ddl.contains("\"cp_k20270101\""));
    }
}
