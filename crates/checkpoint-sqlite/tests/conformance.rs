//! The shared conformance suite on SQLite: every case on a fresh file of its own (the default
//! options: WAL, full durability, four connections), and again on an in-memory database.

use checkpoint_sqlite::{SqliteOptions, SqliteStore};

/// A store on a new file in a directory removed when the test binary's temp dir is cleaned;
/// the directory handle is leaked so the file outlives the case's store.
async fn file_store() -> SqliteStore {
    let dir = tempfile::tempdir().expect("a temp dir").keep();
    SqliteStore::open(SqliteOptions::file(dir.join("checkpoints.db")))
        .await
        .expect("open")
}

checkpoint_core::conformance_tests!(file_store());

mod in_memory {
    use super::*;
    checkpoint_core::conformance_tests!(async {
        SqliteStore::open(SqliteOptions::in_memory())
            .await
            .expect("open")
    });
}
