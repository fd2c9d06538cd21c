//! adk-graph's checkpointer contract on the memory store.

mod contract;

use std::sync::Arc;

use checkpoint_memory::MemoryStore;

#[tokio::test]
async fn the_contract_holds_on_memory() {
    contract::run_all(Arc::new(MemoryStore::new())).await;
}
