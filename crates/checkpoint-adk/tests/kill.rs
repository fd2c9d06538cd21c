//! An adk-graph run killed with SIGKILL mid-run resumes at the next node, from SQLite and from
//! PostgreSQL: every checkpoint the adapter acknowledged before the kill is there, and a new
//! graph instance finishes the thread with each node's work in the state exactly once.
//!
//! The child is this test binary running the ignored `child_running_a_slow_graph`: a graph of
//! eight nodes, each taking 150 ms, whose checkpointer prints `saved <id> <step>` once a save
//! returns. The parent kills it after three acknowledgements.

#[path = "../../checkpoint-postgres/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adk_graph::checkpoint::{Checkpointer, RetentionPolicy};
use adk_graph::edge::{END, START};
use adk_graph::error::Result as GraphResult;
use adk_graph::graph::{CompiledGraph, StateGraph};
use adk_graph::node::{ExecutionConfig, NodeOutput};
use adk_graph::state::{Checkpoint, State};
use async_trait::async_trait;
use checkpoint_adk::AdkCheckpointer;
use checkpoint_core::CheckpointStore;
use checkpoint_postgres::{PostgresOptions, PostgresStore};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};

const THREAD: &str = "killed";
const NODES: usize = 8;
/// How many acknowledged saves the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 3;

/// The adapter, printing each save once it has returned (the acknowledgement).
struct Reporting<C>(C);

#[async_trait]
impl<C: Checkpointer> Checkpointer for Reporting<C> {
    async fn save(&self, checkpoint: &Checkpoint) -> GraphResult<String> {
        let id = self.0.save(checkpoint).await?;
        println!("saved {id} {}", checkpoint.step);
        Ok(id)
    }
    async fn load(&self, thread_id: &str) -> GraphResult<Option<Checkpoint>> {
        self.0.load(thread_id).await
    }
    async fn load_by_id(&self, checkpoint_id: &str) -> GraphResult<Option<Checkpoint>> {
        self.0.load_by_id(checkpoint_id).await
    }
    async fn list(&self, thread_id: &str) -> GraphResult<Vec<Checkpoint>> {
        self.0.list(thread_id).await
    }
    async fn delete(&self, thread_id: &str) -> GraphResult<()> {
        self.0.delete(thread_id).await
    }
    async fn prune(&self, thread_id: &str, policy: &RetentionPolicy) -> GraphResult<usize> {
        self.0.prune(thread_id, policy).await
    }
}

/// `n0 -> n1 -> ... -> n7`, each appending its name to `log` after `delay`.
fn slow_graph(checkpointer: Arc<dyn Checkpointer>, delay: Duration) -> CompiledGraph {
    let mut graph = StateGraph::with_channels(&["log"]);
    for i in 0..NODES {
        let name = format!("n{i}");
        let own = name.clone();
        graph = graph.add_node_fn(&name, move |ctx| {
            let own = own.clone();
            async move {
                tokio::time::sleep(delay).await;
                let mut log = ctx
                    .get("log")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                log.push(json!(own));
                Ok(NodeOutput::new().with_update("log", Value::Array(log)))
            }
        });
    }
    graph = graph.add_edge(START, "n0");
    for i in 1..NODES {
        graph = graph.add_edge(&format!("n{}", i - 1), &format!("n{i}"));
    }
    graph
        .add_edge(&format!("n{}", NODES - 1), END)
        .compile()
        .expect("compiles")
        .with_checkpointer_arc(checkpointer)
}

/// Runs the child with `env`, kills it after [`ACKS_BEFORE_KILL`] acknowledged saves, and
/// returns the acknowledged checkpoint ids.
fn kill_after_acks(env: &[(&str, String)]) -> Vec<String> {
    let mut child = checkpoint_core::conformance::child::command("child_running_a_slow_graph")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let started = Instant::now();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("saved ") {
            let id = rest.split(' ').next().expect("an id");
            acked.push(id.to_owned());
            if acked.len() == ACKS_BEFORE_KILL {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the child is stuck"
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    assert_eq!(
        acked.len(),
        ACKS_BEFORE_KILL,
        "the child acknowledged saves"
    );
    acked
}

/// After the kill: every acknowledged checkpoint is there, and a new graph finishes the
/// thread with each node's entry once.
async fn resumes_with_nothing_lost(store: Arc<dyn CheckpointStore>, acked: &[String]) {
    let adapter = AdkCheckpointer::new(Arc::clone(&store));
    for id in acked {
        assert!(
            adapter.load_by_id(id).await.unwrap().is_some(),
            "acknowledged checkpoint {id} is stored"
        );
    }
    let before = adapter.load(THREAD).await.unwrap().expect("the last save");
    assert!(!before.pending_nodes.is_empty(), "killed mid-run");

    let graph = slow_graph(Arc::new(adapter), Duration::ZERO);
    let done = graph
        .invoke(State::new(), ExecutionConfig::new(THREAD))
        .await
        .expect("the thread finishes");
    let expected: Vec<Value> = (0..NODES).map(|i| json!(format!("n{i}"))).collect();
    assert_eq!(
        done["log"],
        Value::Array(expected),
        "each node once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_sqlite_at_the_next_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.db");
    // Made here first, so the child opens a file of the current schema.
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let acked = kill_after_acks(&[("ADK_KILL_SQLITE", path.display().to_string())]);
    resumes_with_nothing_lost(Arc::new(store), &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_from_postgres_at_the_next_node() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("adk_kill");
    let options = PostgresOptions::new(&url).unwrap().schema(&schema);
    let store = PostgresStore::connect(options).await.unwrap();
    let acked = kill_after_acks(&[("ADK_KILL_URL", url), ("ADK_KILL_SCHEMA", schema)]);
    resumes_with_nothing_lost(Arc::new(store), &acked).await;
}

/// The child: runs the slow graph on the store the parent named until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the kill tests"]
async fn child_running_a_slow_graph() {
    let store: Arc<dyn CheckpointStore> = if let Some(path) = std::env::var_os("ADK_KILL_SQLITE") {
        Arc::new(SqliteStore::open(SqliteOptions::file(path)).await.unwrap())
    } else {
        let url = std::env::var("ADK_KILL_URL").expect("set by the parent");
        let schema = std::env::var("ADK_KILL_SCHEMA").expect("set by the parent");
        let options = PostgresOptions::new(&url).unwrap().schema(&schema);
        Arc::new(PostgresStore::connect(options).await.unwrap())
    };
    let checkpointer = Arc::new(Reporting(AdkCheckpointer::new(store)));
    let graph = slow_graph(checkpointer, Duration::from_millis(150));
    graph
        .invoke(State::new(), ExecutionConfig::new(THREAD))
        .await
        .expect("runs until killed");
}
