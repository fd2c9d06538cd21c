//! adk-graph's checkpointer contract on PostgreSQL (the test server of
//! `checkpoint-postgres`'s tests: `CHECKPOINT_TEST_DATABASE_URL`, or a container), with the
//! default options (delta storage, group commit).

mod contract;
#[path = "../../checkpoint-postgres/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use checkpoint_postgres::PostgresStore;

#[tokio::test]
async fn the_contract_holds_on_postgres() {
    let store = PostgresStore::connect(support::options().await)
        .await
        .unwrap();
    contract::run_all(Arc::new(store)).await;
}
