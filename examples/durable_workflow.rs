//! A five-node job that survives `kill -9`: run it, kill it at any point, run it again with the
//! same execution id, and it finishes without repeating a node whose checkpoint was saved.
//!
//! With no server, on a SQLite file under the system temp dir (the default feature):
//!
//! ```sh
//! cargo run --example durable_workflow -- job-1   # kill it mid-run (Ctrl-C, kill -9)...
//! cargo run --example durable_workflow -- job-1   # ...and it finishes
//! ```
//!
//! On PostgreSQL:
//!
//! ```sh
//! docker compose up -d postgres
//! export DATABASE_URL=postgres://checkpoint:checkpoint@localhost:5432/checkpoint
//! cargo run --features postgres --example durable_workflow -- job-1
//! ```
//!
//! `STEP_MS` sets how long each node works (default 400); `RUN_LOG` names a file each node
//! appends its name to when it has done its work, so repeats can be counted.

use std::io::Write;
use std::time::Duration;

use checkpoint_workflow::{Next, RunStatus, Workflow, WorkflowStoreExt};
use serde::{Deserialize, Serialize};

const NODES: [&str; 5] = ["download", "parse", "enrich", "summarize", "publish"];

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Job {
    completed: Vec<String>,
    records: u64,
}

fn log_run(node: &str) -> std::io::Result<()> {
    if let Ok(path) = std::env::var("RUN_LOG") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{node}")?;
    }
    Ok(())
}

fn job_workflow(step: Duration) -> Workflow<Job> {
    let mut workflow = Workflow::new(NODES[0]);
    for (i, node) in NODES.iter().enumerate() {
        let next = NODES.get(i + 1).map_or(Next::End, |n| Next::to(*n));
        workflow = workflow.node(*node, move |mut job: Job| {
            let next = next.clone();
            async move {
                tokio::time::sleep(step).await;
                job.records += 10 * (i as u64 + 1);
                job.completed.push(node.to_string());
                log_run(node)?;
                println!("  ran {node}");
                Ok((job, next))
            }
        });
    }
    workflow
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let execution = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("durable-{}", checkpoint_examples::run_suffix()));
    let step_ms = std::env::var("STEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let backend = checkpoint_examples::Backend::chosen()?;
    let store = checkpoint_examples::open(backend).await?;
    println!("execution {execution} in {}", backend.location());
    if !backend.durable() {
        println!(
            "note: the memory store forgets everything when the process ends; surviving a \
             crash needs a durable store (the default sqlite feature, or postgres)"
        );
    }

    match store.resume::<Job>(&execution).await? {
        Some(resumed) => println!(
            "resuming after {} (step {}, next {:?}); already done: {:?}",
            resumed.node, resumed.step, resumed.next, resumed.state.completed
        ),
        None => println!("starting a new run"),
    }

    let outcome = job_workflow(Duration::from_millis(step_ms))
        .run(store.as_ref(), &execution, Job::default())
        .await?;
    match outcome.status {
        RunStatus::Finished => println!(
            "finished: {:?}, {} records (this process ran {:?})",
            outcome.state.completed, outcome.state.records, outcome.ran
        ),
        RunStatus::Interrupted { next } => println!("paused before {next}"),
    }

    let mut history = store.history(&execution, 10);
    while let Some(page) = history.next_page().await? {
        for cp in page {
            println!(
                "  v{} after {:<10} {}",
                cp.version, cp.node_name, cp.metadata["outcome"]
            );
        }
    }
    Ok(())
}
