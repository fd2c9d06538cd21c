//! Model-based test: proptest generates sequences of operations
//! (`checkpoint_core::conformance::model`), applies each to `MemoryStore` (the model) and to
//! `SqliteStore` on a file, closed and opened again now and then, and requires every observable
//! result to be equal. Bursts of concurrent saves go through group commit's queue. Failing sequences
//! are kept in `model.proptest-regressions` and replayed first on every run. It runs in a task
//! of a multi-threaded runtime (the store's calls in place on a worker) and on a current-thread
//! runtime (the calls on a blocking thread): the first storing deltas wherever it can, the
//! second every state whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use checkpoint_core::conformance::lease_model;
use checkpoint_core::conformance::model::{self, Op};
use checkpoint_memory::MemoryStore;
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// `cases` generated sequences (or `MODEL_CASES`), shrunk at most `shrink` times, failures kept
/// in `model.proptest-regressions` and replayed first.
fn config(cases: u32, shrink: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("MODEL_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        max_shrink_iters: shrink,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/model.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a runtime"))
}

async fn open(path: &Path) -> SqliteStore {
    open_with(path, Storage::Whole).await
}

/// How the store under test stores states.
#[derive(Clone, Copy)]
enum Storage {
    /// Every state whole.
    Whole,
    /// A delta on every save the cache allows, however small, chains of four.
    Deltas,
}

async fn open_with(path: &Path, storage: Storage) -> SqliteStore {
    let options = SqliteOptions::file(path);
    let options = match storage {
        Storage::Whole => options.snapshot_every(1),
        Storage::Deltas => options.min_delta_bytes(0).snapshot_every(4),
    };
    SqliteStore::open(options).await.expect("open the file")
}

async fn check(ops: Vec<Op>, storage: Storage) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path: PathBuf = dir.path().join("model.db");
    let store = open_with(&path, storage).await;
    let reopen: model::Reopen<'_> = Box::new(|| {
        let path = path.clone();
        Box::pin(async move { Arc::new(open_with(&path, storage).await) as model::Store })
    });
    // Bursts are compared with the model, not counted as groups: polled from one task, a save
    // on SQLite can finish within its first poll, before the next one queues. That saves
    // share commits under concurrency is asserted in group_commit.rs, with tasks of their own.
    model::check(
        &MemoryStore::new(),
        Arc::new(store),
        Some(reopen),
        model::StateNumbers::Exact,
        &ops,
    )
    .await;
}

proptest! {
    #![proptest_config(config(256, 200))]

    /// Spawned, so the store's calls run in place on a worker thread, as a server's tasks do;
    /// states stored as deltas wherever the store can.
    #[test]
    fn memory_and_sqlite_agree_on_every_sequence(ops in model::ops(true)) {
        if let Err(failed) = runtime().block_on(runtime().spawn(check(ops, Storage::Deltas))) {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Two stores open on one file, as two processes would be, storing deltas: each `Op::Reopen`
/// hands the next operations to the other store, whose remembered bases the first one may
/// have replaced, moved or removed meanwhile.
async fn check_taking_turns(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path: PathBuf = dir.path().join("shared.db");
    let first: model::Store = Arc::new(open_with(&path, Storage::Deltas).await);
    let second: model::Store = Arc::new(open_with(&path, Storage::Deltas).await);
    let stores = [Arc::clone(&first), second];
    let mut turn = 0usize;
    let reopen: model::Reopen<'_> = Box::new(move || {
        turn += 1;
        let next = Arc::clone(&stores[turn % 2]);
        Box::pin(async move { next })
    });
    model::check(
        &MemoryStore::new(),
        first,
        Some(reopen),
        model::StateNumbers::Exact,
        &ops,
    )
    .await;
}

proptest! {
    #![proptest_config(config(128, 200))]

    /// Two stores sharing one file in turns, both storing deltas, agree with the model.
    #[test]
    fn two_stores_taking_turns_on_one_file_agree_with_the_model(ops in model::ops(true)) {
        if let Err(failed) = runtime().block_on(runtime().spawn(check_taking_turns(ops))) {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// A current-thread runtime, where the store's calls take a blocking thread instead of running
/// in place on a worker.
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

proptest! {
    #![proptest_config(config(64, 100))]

    /// The same on a current-thread runtime: every write and pooled read on a blocking thread;
    /// every state stored whole.
    #[test]
    fn memory_and_sqlite_agree_on_a_current_thread_runtime(ops in model::ops(true)) {
        current_thread().block_on(check(ops, Storage::Whole));
    }
}

proptest! {
    #![proptest_config(config(32, 50))]

    /// Leases keep their rules under generated interleavings of several workers, by SQLite's
    /// clock.
    #[test]
    fn leases_keep_their_rules_on_every_sequence(ops in lease_model::ops()) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().expect("a temp dir");
            let store = open(&dir.path().join("leases.db")).await;
            lease_model::check(Arc::new(store), &ops).await;
        });
    }
}
