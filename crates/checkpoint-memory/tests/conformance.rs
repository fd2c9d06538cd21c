//! The shared conformance suite on the in-memory store.

use checkpoint_memory::MemoryStore;

checkpoint_core::conformance_tests!(async { MemoryStore::new() });

#[tokio::test]
async fn unleased_writes_are_refused_while_leased_when_asked() {
    checkpoint_core::conformance::lease::unleased_writes_are_refused_while_leased(
        std::sync::Arc::new(checkpoint_memory::MemoryStore::new().refusing_unleased_writes()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unleased_saves_racing_a_first_acquire_never_land_after_it() {
    checkpoint_core::conformance::lease::unleased_saves_racing_a_first_acquire_never_land_after_it(
        std::sync::Arc::new(checkpoint_memory::MemoryStore::new().refusing_unleased_writes()),
    )
    .await;
}
