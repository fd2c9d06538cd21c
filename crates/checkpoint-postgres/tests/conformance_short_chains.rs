//! The conformance suite with delta storage at its most demanding: a snapshot only every third
//! version and deltas whatever the state's size, so nearly every operation meets a chain of
//! deltas, and LZ4 instead of the default zstd, so both codecs are held to the contract. Every
//! save goes through the group commit statement, even when it is alone (a group of one), so
//! that path meets every rule of the contract too.

mod support;

use checkpoint_postgres::{Compression, GroupCommit, PostgresStore, StateEncoding};

async fn short_chain_store() -> PostgresStore {
    let options = support::options()
        .await
        .state_encoding(StateEncoding::delta(3).expect("a valid distance"))
        .compression(Compression::Lz4)
        .min_delta_bytes(0)
        .group_commit(GroupCommit::default().lone_saves_grouped(true));
    PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(short_chain_store());
