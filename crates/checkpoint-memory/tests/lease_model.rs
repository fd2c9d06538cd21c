//! Leases on the memory store under generated interleavings of several workers
//! (`checkpoint_core::conformance::lease_model`), by the process clock.

use std::sync::{Arc, OnceLock};

use checkpoint_core::conformance::lease_model;
use checkpoint_memory::MemoryStore;
use proptest::prelude::*;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a runtime"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn leases_keep_their_rules_on_every_sequence(ops in lease_model::ops()) {
        runtime().block_on(lease_model::check(Arc::new(MemoryStore::new()), &ops));
    }
}
