//! The shared conformance suite on a real PostgreSQL, one fresh schema per case, on the layout
//! `CHECKPOINT_TEST_LAYOUT` names (plain when unset; `distributed` on a Citus coordinator runs
//! it on distributed tables: see `docs/scaling.md`).

mod support;

async fn store() -> checkpoint_postgres::PostgresStore {
    let options = support::options()
        .await
        .table_layout(support::layout_from_env());
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(store());
