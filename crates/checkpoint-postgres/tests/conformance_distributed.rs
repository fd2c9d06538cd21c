//! The conformance suite on the layouts keyed by `execution_id`, where ids are unique per
//! execution (`IdScope::PerExecution`, which the suite tests as that promise):
//!
//! - `hash`: `TableLayout::HashPartitioned`, 8 partitions;
//! - `distributed`: `TableLayout::Distributed`, the layout for Citus, here undistributed on
//!   plain PostgreSQL (every statement of it has a shape Citus runs: `tests/plans.rs`).

mod support;

async fn store(layout: checkpoint_postgres::TableLayout) -> checkpoint_postgres::PostgresStore {
    let options = support::options().await.table_layout(layout);
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

mod hash {
    use super::*;

    checkpoint_core::conformance_tests!(store(
        checkpoint_postgres::TableLayout::hash_partitioned(8).expect("a valid layout")
    ));
}

mod distributed {
    use super::*;

    checkpoint_core::conformance_tests!(store(checkpoint_postgres::TableLayout::Distributed));
}
