//! How the checkpoint table is laid out: one plain table; one hash-partitioned by
//! `execution_id`; one range-partitioned by the execution's start, so that retention drops
//! whole partitions; or one keyed by `execution_id` in every index and statement, distributed by
//! it when Citus is there.

use checkpoint_core::{Error, Result};

/// The most partitions [`TableLayout::hash_partitioned`] accepts.
pub const MAX_HASH_PARTITIONS: u16 = 1024;

/// The shape of the checkpoint table, chosen when it is created.
///
/// ```
/// use checkpoint_postgres::{PostgresOptions, TableLayout};
///
/// let options = PostgresOptions::new("postgres://app@localhost/app")?
///     .table_layout(TableLayout::hash_partitioned(16)?);
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TableLayout {
    /// One table with a primary key on `id` (the default).
    #[default]
    Plain,
    /// `PARTITION BY HASH (execution_id)` into `partitions` tables. Every unique index includes
    /// `execution_id`: the version rule is `(execution_id, version)`, and an id is unique
    /// within its execution ([`IdScope::PerExecution`](checkpoint_core::IdScope)). Every
    /// statement keyed by an execution touches one partition; `load` by id alone reads the
    /// id's row in every partition (one statement), and a delta's chain then in its own.
    HashPartitioned {
        /// How many partitions (1 to [`MAX_HASH_PARTITIONS`]).
        partitions: u16,
    },
    /// `PARTITION BY RANGE (execution_start)`, one partition per `period`. Every checkpoint
    /// carries its execution's start, fixed by the first save of the execution in the
    /// unpartitioned `<table>_executions`, so an execution's checkpoints all live in one
    /// partition and the unique indexes on `(execution_id, version, execution_start)` and
    /// `(id, execution_id, execution_start)` keep the version rule exactly. An id is unique
    /// within its execution, as in [`HashPartitioned`](Self::HashPartitioned).
    ///
    /// Retention drops whole partitions
    /// ([`PostgresStore::drop_partitions_before`](crate::PostgresStore::drop_partitions_before)):
    /// an execution goes, whole, with the partition of its start. The store creates
    /// partitions ahead of time (see
    /// [`PostgresOptions::partitions_ahead`](crate::PostgresOptions::partitions_ahead)).
    TimePartitioned {
        /// The span of one partition.
        period: PartitionPeriod,
    },
    /// One table keyed by `execution_id` everywhere, for Citus: the primary key is
    /// `(execution_id, id)`, the version rule `(execution_id, version)`, the delta foreign key
    /// `(execution_id, base_version)`; ids are unique per execution; no trigger, no function,
    /// no forced generic plan; every statement has a shape Citus runs (no subquery in
    /// `INSERT … VALUES`). When the `citus` extension is present, the migration distributes
    /// the table by `execution_id` from the coordinator (`create_distributed_table`); on plain
    /// PostgreSQL the same table runs undistributed. `load` by id alone reads the id's row
    /// on every shard (one query), and a delta's chain then on its execution's shard;
    /// [`load_in`](checkpoint_core::CheckpointStore::load_in) goes straight there. Group
    /// commit is not used on this layout (each save is routed to its own shard), a batch saves
    /// its items in one transaction of routed statements, and a prune of every execution
    /// prunes them one by one. The whole conformance suite passes on a Citus 13 cluster (see
    /// `docs/scaling.md`).
    Distributed,
}

/// The span of one partition of [`TableLayout::TimePartitioned`], in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartitionPeriod {
    /// One calendar day.
    Day,
    /// One ISO week, from Monday.
    Week,
    /// One calendar month.
    Month,
}

impl PartitionPeriod {
    /// The name used in the schema's record and in `checkpointctl`.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionPeriod::Day => "day",
            PartitionPeriod::Week => "week",
            PartitionPeriod::Month => "month",
        }
    }
}

impl std::str::FromStr for PartitionPeriod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "day" => Ok(PartitionPeriod::Day),
            "week" => Ok(PartitionPeriod::Week),
            "month" => Ok(PartitionPeriod::Month),
            _ => Err(Error::invalid(
                "table_layout",
                format!("{s:?} is not a partition period (day, week or month)"),
            )),
        }
    }
}

impl std::str::FromStr for TableLayout {
    type Err = Error;

    /// `plain`, `hash:N`, `day`, `week`, `month` or `distributed`, as `checkpointctl migrate
    /// --layout` and `CHECKPOINT_TEST_LAYOUT` spell them.
    ///
    /// ```
    /// use checkpoint_postgres::TableLayout;
    ///
    /// assert_eq!("distributed".parse::<TableLayout>()?, TableLayout::Distributed);
    /// assert_eq!("hash:16".parse::<TableLayout>()?, TableLayout::hash_partitioned(16)?);
    /// assert!("hash:0".parse::<TableLayout>().is_err());
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    fn from_str(text: &str) -> Result<Self> {
        let expected = "expected plain, hash:N, day, week, month or distributed";
        match text.split_once(':') {
            Some(("hash", n)) => {
                let n: u16 = n.parse().map_err(|e| {
                    Error::invalid(
                        "table_layout",
                        format!("{n:?} is not a partition count: {e}"),
                    )
                })?;
                TableLayout::hash_partitioned(n)
            }
            None if text == "plain" => Ok(TableLayout::Plain),
            None if text == "distributed" => Ok(TableLayout::Distributed),
            None => text
                .parse::<PartitionPeriod>()
                .map(TableLayout::time_partitioned)
                .map_err(|_| Error::invalid("table_layout", format!("{text:?}: {expected}"))),
            Some(_) => Err(Error::invalid(
                "table_layout",
                format!("{text:?}: {expected}"),
            )),
        }
    }
}

/// The layout as [`FromStr`](std::str::FromStr) reads it: `plain`, `hash:N`, `day`, `week`,
/// `month` or `distributed`.
///
/// ```
/// use checkpoint_postgres::{PartitionPeriod, TableLayout};
///
/// assert_eq!(TableLayout::hash_partitioned(16)?.to_string(), "hash:16");
/// assert_eq!(TableLayout::time_partitioned(PartitionPeriod::Week).to_string(), "week");
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
impl std::fmt::Display for TableLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableLayout::Plain => f.write_str("plain"),
            TableLayout::HashPartitioned { partitions } => write!(f, "hash:{partitions}"),
            TableLayout::TimePartitioned { period } => f.write_str(period.as_str()),
            TableLayout::Distributed => f.write_str("distributed"),
        }
    }
}

impl TableLayout {
    /// A table hash-partitioned by `execution_id` into `partitions` partitions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (field `table_layout`) for 0 or more than
    /// [`MAX_HASH_PARTITIONS`].
    pub fn hash_partitioned(partitions: u16) -> Result<TableLayout> {
        if !(1..=MAX_HASH_PARTITIONS).contains(&partitions) {
            return Err(Error::invalid(
                "table_layout",
                format!("{partitions} partitions is outside 1..={MAX_HASH_PARTITIONS}"),
            ));
        }
        Ok(TableLayout::HashPartitioned { partitions })
    }

    /// A table range-partitioned by each execution's start, one partition per `period`.
    ///
    /// ```
    /// use checkpoint_postgres::{PartitionPeriod, PostgresOptions, TableLayout};
    ///
    /// let options = PostgresOptions::new("postgres://app@localhost/app")?
    ///     .table_layout(TableLayout::time_partitioned(PartitionPeriod::Month));
    /// # Ok::<(), checkpoint_core::Error>(())
    /// ```
    pub fn time_partitioned(period: PartitionPeriod) -> TableLayout {
        TableLayout::TimePartitioned { period }
    }

    /// The partition period, for a time-partitioned layout.
    pub fn period(self) -> Option<PartitionPeriod> {
        match self {
            TableLayout::TimePartitioned { period } => Some(period),
            _ => None,
        }
    }

    /// How far an id is unique in this layout: across the table on the plain table (its
    /// primary key), within its execution on the layouts partitioned by execution or by start,
    /// whose every unique index must hold the partition key (a global id would need a lock
    /// and a probe of every partition per inserted row).
    pub fn id_scope(self) -> checkpoint_core::IdScope {
        match self {
            TableLayout::Plain => checkpoint_core::IdScope::Global,
            TableLayout::HashPartitioned { .. }
            | TableLayout::TimePartitioned { .. }
            | TableLayout::Distributed => checkpoint_core::IdScope::PerExecution,
        }
    }

    /// Whether the store's sessions plan every statement once (`plan_cache_mode =
    /// force_generic_plan`) and prune partitions at execution: the partitioned layouts. Citus
    /// cannot plan parameterised `INSERT … SELECT` or the recursive chain read generically, so
    /// the distributed layout keeps the server's default.
    pub(crate) fn generic_plans(self) -> bool {
        matches!(
            self,
            TableLayout::HashPartitioned { .. } | TableLayout::TimePartitioned { .. }
        )
    }

    /// Whether an append reads the highest version above a floor the store keeps per execution
    /// (`store/floors.rs`): the time-partitioned layout, whose generic plans cannot tell that
    /// an execution lives in one partition and would otherwise read every row of it.
    pub(crate) fn floored_appends(self) -> bool {
        self.period().is_some()
    }

    /// The columns `ON CONFLICT` names to find the row of an id: a unique index on `id` alone
    /// cannot exist on a table partitioned by anything else.
    pub(crate) fn id_conflict_target(self) -> &'static str {
        match self {
            TableLayout::Plain => "(id)",
            TableLayout::HashPartitioned { .. } | TableLayout::Distributed => "(execution_id, id)",
            TableLayout::TimePartitioned { .. } => "(execution_id, id, execution_start)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn partition_counts_are_accepted_exactly_in_range(n in any::<u16>()) {
            let layout = TableLayout::hash_partitioned(n);
            prop_assert_eq!(layout.is_ok(), (1..=MAX_HASH_PARTITIONS).contains(&n));
            if let Err(e) = layout {
                prop_assert!(e.is_invalid_field("table_layout"));
            }
        }

        #[test]
        fn every_layout_reads_back_from_its_name(n in 1..=MAX_HASH_PARTITIONS, pick in 0..6usize) {
            let layout = [
                TableLayout::Plain,
                TableLayout::HashPartitioned { partitions: n },
                TableLayout::time_partitioned(PartitionPeriod::Day),
                TableLayout::time_partitioned(PartitionPeriod::Week),
                TableLayout::time_partitioned(PartitionPeriod::Month),
                TableLayout::Distributed,
            ][pick];
            prop_assert_eq!(layout.to_string().parse::<TableLayout>().unwrap(), layout);
        }

        #[test]
        fn periods_parse_from_their_names_only(name in "[A-Za-z]{0,8}") {
            let parsed = name.parse::<PartitionPeriod>();
            match name.to_ascii_lowercase().as_str() {
                "day" | "week" | "month" => {
                    prop_assert_eq!(parsed.unwrap().as_str(), name.to_ascii_lowercase());
                }
                _ => prop_assert!(parsed.unwrap_err().is_invalid_field("table_layout")),
            }
        }
    }
}
