//! The `durable_workflow` example on SQLite, with no server: killed with SIGKILL mid-run and
//! started again, it finishes from the file, and no node whose checkpoint was saved runs twice.
//!
//! Runs with `cargo test --workspace` (the example's default feature is `sqlite`) and with
//! `--all-features`, where `CHECKPOINT_BACKEND=sqlite` picks SQLite over PostgreSQL.
#![cfg(feature = "sqlite")]

mod kill;

use checkpoint_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_the_file_without_repeating_saved_nodes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("durable.db");
    let store = SqliteStore::open(SqliteOptions::file(&path))
        .await
        .expect("open");
    let env = [
        ("CHECKPOINT_BACKEND", "sqlite".to_owned()),
        ("CHECKPOINT_SQLITE_PATH", path.display().to_string()),
    ];
    kill::killed_run_resumes(&store, &env, &dir.path().join("runs.log")).await;
}
