//! Deploying a new graph while an execution is paused
//! (`checkpoint_workflow::conformance`): version 1 pauses it in a child process that then
//! exits, and version 2 (a field added by a migration, a node renamed) resumes it from the
//! file in this process.

use std::process::Stdio;

use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use checkpoint_workflow::conformance;

const EXECUTION: &str = "doc-1";

#[tokio::test]
async fn an_execution_paused_under_one_graph_resumes_under_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploy.db");
    let status = checkpoint_core::conformance::child::command("child_pausing_under_version_1")
        .env("SQLITE_DEPLOY_PATH", &path)
        .stdout(Stdio::null())
        .status()
        .expect("run the child");
    assert!(status.success(), "the child paused the execution: {status}");

    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    conformance::resume_under_v2(&store, EXECUTION).await;
}

/// The child: pauses the execution under version 1, then the process ends.
#[tokio::test]
#[ignore = "run as a child process by the deploy test"]
async fn child_pausing_under_version_1() {
    let path = std::env::var_os("SQLITE_DEPLOY_PATH").expect("set by the parent");
    let store = SqliteStore::open(SqliteOptions::file(path)).await.unwrap();
    conformance::pause_under_v1(&store, EXECUTION).await;
}
