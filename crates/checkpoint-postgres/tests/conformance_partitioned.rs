//! The conformance suite on the time-partitioned layout (`TableLayout::TimePartitioned`): every
//! checkpoint carries its execution's start, the table is partitioned by it, and the unique
//! indexes include it. The suite's rules (the version rule, id uniqueness, no id moving
//! execution, replace, delete, clear, prune, fork, batches) must hold as on the plain table.
//! The per-execution plans, maintenance and retention are checked in `partitioned.rs`.

mod support;

async fn partitioned_store() -> checkpoint_postgres::PostgresStore {
    let options =
        support::options()
            .await
            .table_layout(checkpoint_postgres::TableLayout::time_partitioned(
                checkpoint_postgres::PartitionPeriod::Day,
            ));
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(partitioned_store());
