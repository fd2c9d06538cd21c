//! The `durable_workflow` example on PostgreSQL is killed with SIGKILL mid-run and started
//! again: it finishes, and no node whose checkpoint was saved runs twice.
//!
//! Runs with `cargo test --workspace --all-features` (the README's command), which builds the
//! example with the `postgres` feature before the tests run.
#![cfg(feature = "postgres")]

mod kill;
#[path = "../../crates/checkpoint-postgres/tests/support/mod.rs"]
mod support;

use checkpoint_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_repeating_saved_nodes() {
    let url = support::server().await.url.clone();
    let options = support::options().await;
    let schema = options.table_name().unwrap().schema().unwrap().to_owned();
    let store = PostgresStore::connect(options).await.expect("connect");
    let log = std::env::temp_dir().join(format!("{}.log", support::unique_schema("durable")));
    let env = [
        ("CHECKPOINT_BACKEND", "postgres".to_owned()),
        ("DATABASE_URL", url),
        ("CHECKPOINT_SCHEMA", schema),
    ];
    kill::killed_run_resumes(&store, &env, &log).await;
}
