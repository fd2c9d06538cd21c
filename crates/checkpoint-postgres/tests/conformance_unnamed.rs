//! The conformance suite again with the statement cache off: every statement goes out unnamed
//! with its parameter types, as it must behind pgbouncer in transaction mode.

mod support;

async fn store_without_statement_cache() -> checkpoint_postgres::PostgresStore {
    let options = support::options().await.statement_cache(false);
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(store_without_statement_cache());
