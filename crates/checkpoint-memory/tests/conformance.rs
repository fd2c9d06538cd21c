//! The shared conformance suite on the in-memory store.

use checkpoint_memory::MemoryStore;

checkpoint_core::conformance_tests!(async { MemoryStore::new() });
