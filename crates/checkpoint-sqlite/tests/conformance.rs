//! The shared conformance suite on SQLite: every case on a fresh file of its own (the default
//! options: WAL, full durability, four connections, deltas for states from 2 KiB), and again
//! in each way of storing states (every state whole; a delta on every save, chains of three;
//! the same sealed)
//! and on an in-memory database.

use checkpoint_sqlite::{SqliteOptions, SqliteStore};

/// A store on a new file in a directory removed when the test binary's temp dir is cleaned;
/// the directory handle is leaked so the file outlives the case's store.
async fn file_store_with(options: impl FnOnce(SqliteOptions) -> SqliteOptions) -> SqliteStore {
    let dir = tempfile::tempdir().expect("a temp dir").keep();
    SqliteStore::open(options(SqliteOptions::file(dir.join("checkpoints.db"))))
        .await
        .expect("open")
}

async fn file_store() -> SqliteStore {
    file_store_with(|options| options).await
}

checkpoint_core::conformance_tests!(file_store());

/// Every state stored whole: no delta, no base kept.
mod whole {
    use super::*;
    checkpoint_core::conformance_tests!(file_store_with(|o| o.snapshot_every(1)));
}

/// A delta on every save the cache allows, however small the state, and a snapshot every third
/// version: replaces, deletes, prunes and forks meet deltas and their bases at every step.
mod deltas {
    use super::*;
    checkpoint_core::conformance_tests!(file_store_with(|o| o
        .min_delta_bytes(0)
        .snapshot_every(3)));
}

/// The same deltas, every payload sealed (AES-256-GCM): the contract holds on sealed chains.
mod sealed {
    use super::*;
    use checkpoint_format::sealing::{Encryption, EncryptionKey};

    fn keys() -> Encryption {
        Encryption::new(EncryptionKey::new("conformance", &[42; 32]).expect("a key"))
    }

    checkpoint_core::conformance_tests!(file_store_with(|o| o
        .min_delta_bytes(0)
        .snapshot_every(3)
        .encryption(keys())));
}

mod in_memory {
    use super::*;
    checkpoint_core::conformance_tests!(async {
        SqliteStore::open(SqliteOptions::in_memory())
            .await
            .expect("open")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unleased_writes_are_refused_while_leased_when_asked() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = SqliteOptions::file(dir.path().join("leased.db")).refuse_unleased_writes(true);
    let store = SqliteStore::open(options).await.expect("open");
    checkpoint_core::conformance::lease::unleased_writes_are_refused_while_leased(
        std::sync::Arc::new(store),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unleased_saves_racing_a_first_acquire_never_land_after_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let options = SqliteOptions::file(dir.path().join("leased.db")).refuse_unleased_writes(true);
    let store = SqliteStore::open(options).await.expect("open");
    checkpoint_core::conformance::lease::unleased_saves_racing_a_first_acquire_never_land_after_it(
        std::sync::Arc::new(store),
    )
    .await;
}
