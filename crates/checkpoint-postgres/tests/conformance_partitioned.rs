//! The conformance suite on the time-partitioned layout (`TableLayout::TimePartitioned`): every
//! checkpoint carries its execution's start, the table is partitioned by it, and the unique
//! indexes include it. The suite's rules (the version rule, id uniqueness, no id moving
//! execution, replace, delete, clear, prune, fork, batches) must hold as on the plain table.
//! The per-execution plans, maintenance and retention are checked in `partitioned.rs`.
//!
//! - `by_start`: the store's defaults;
//! - `grouped`: every save through group commit, even one alone, so that once the store knows
//!   where an execution's rows live its saves go straight to that partition.

mod support;

async fn partitioned_store(
    group: checkpoint_postgres::GroupCommit,
) -> checkpoint_postgres::PostgresStore {
    let options = support::options()
        .await
        .table_layout(checkpoint_postgres::TableLayout::time_partitioned(
            checkpoint_postgres::PartitionPeriod::Day,
        ))
        .group_commit(group);
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

mod by_start {
    use super::*;

    checkpoint_core::conformance_tests!(partitioned_store(
        checkpoint_postgres::GroupCommit::default()
    ));
}

mod grouped {
    use super::*;

    checkpoint_core::conformance_tests!(partitioned_store(
        checkpoint_postgres::GroupCommit::default().lone_saves_grouped(true)
    ));
}
