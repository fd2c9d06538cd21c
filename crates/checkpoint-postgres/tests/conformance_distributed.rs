//! The conformance suite on the hash-partitioned layout (`TableLayout::HashPartitioned`), the
//! local stand-in for a table distributed by `execution_id` in Citus: every unique index
//! includes `execution_id`, and an id's uniqueness across partitions is kept by the layout's
//! trigger instead of a primary key.

mod support;

async fn distributed_store() -> checkpoint_postgres::PostgresStore {
    let options = support::options().await.table_layout(
        checkpoint_postgres::TableLayout::hash_partitioned(8).expect("a valid layout"),
    );
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(distributed_store());
