//! adk-graph's checkpointer contract on a SQLite file.

mod contract;

use std::sync::Arc;

use checkpoint_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test]
async fn the_contract_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::file(dir.path().join("adk.db")))
        .await
        .unwrap();
    contract::run_all(Arc::new(store)).await;
}
