//! The conformance suite with states written whole to the JSONB column
//! (`StateEncoding::Jsonb`, the format of releases before schema 3) and group commit off, so
//! the plain single-save path is held to the contract on its own.

mod support;

async fn jsonb_store() -> checkpoint_postgres::PostgresStore {
    let options = support::options()
        .await
        .state_encoding(checkpoint_postgres::StateEncoding::Jsonb)
        .group_commit(checkpoint_postgres::GroupCommit::disabled());
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(jsonb_store());
