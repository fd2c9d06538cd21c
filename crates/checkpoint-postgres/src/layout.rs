//! How the checkpoint table is laid out: one plain table, or one hash-partitioned by
//! `execution_id` so that every unique index includes it, as Citus requires of a table
//! distributed by that column.

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
    /// `execution_id`: the version rule is `(execution_id, version)`, and an id's uniqueness
    /// across executions is kept by a trigger that takes an advisory lock on the id and
    /// looks it up in every partition. Every statement keyed by an execution touches one
    /// partition: the same shape as a table distributed by `execution_id` in Citus.
    HashPartitioned {
        /// How many partitions (1 to [`MAX_HASH_PARTITIONS`]).
        partitions: u16,
    },
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

    /// The columns `ON CONFLICT` names to find the row of an id: a unique index on `id` alone
    /// cannot exist on a table partitioned by anything else.
    pub(crate) fn id_conflict_target(self) -> &'static str {
        match self {
            TableLayout::Plain => "(id)",
            TableLayout::HashPartitioned { .. } => "(execution_id, id)",
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
    }
}
