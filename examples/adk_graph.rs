//! An adk-graph graph on our store: a refund waits for approval at an interrupt, the process
//! ends, and a later process resumes it from the same file (or database) past the gate.
//!
//! ```sh
//! cargo run --features adk --example adk_graph -- refund-7   # pauses before `refund`
//! cargo run --features adk --example adk_graph -- refund-7   # a new process: approves, refunds
//! ```
//!
//! Add `postgres` to the features (and `DATABASE_URL`) to keep the thread in PostgreSQL.

use adk_graph::edge::{END, START};
use adk_graph::error::GraphError;
use adk_graph::graph::StateGraph;
use adk_graph::node::{ExecutionConfig, NodeOutput};
use adk_graph::state::State;
use checkpoint_adk::AdkCheckpointer;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = checkpoint_examples::Backend::chosen()?;
    let store = checkpoint_examples::open(backend).await?;
    let thread = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("refund-{}", checkpoint_examples::run_suffix()));

    let graph = StateGraph::with_channels(&["amount", "status"])
        .add_node_fn("prepare", |_ctx| async move {
            println!("  prepare: drafting a refund of 250");
            Ok(NodeOutput::new()
                .with_update("amount", json!(250))
                .with_update("status", json!("awaiting approval")))
        })
        .add_node_fn("refund", |ctx| async move {
            let amount = ctx.get("amount").and_then(|v| v.as_i64()).unwrap_or(0);
            println!("  refund: issuing {amount}");
            Ok(NodeOutput::new().with_update("status", json!("refunded")))
        })
        .add_edge(START, "prepare")
        .add_edge("prepare", "refund")
        .add_edge("refund", END)
        .compile()?
        .with_checkpointer(AdkCheckpointer::new(store))
        // `refund` moves money, so it waits for a person.
        .with_interrupt_before(&["refund"]);

    println!("thread {thread} on {}", backend.location());
    match graph
        .invoke(State::new(), ExecutionConfig::new(&thread))
        .await
    {
        Err(GraphError::Interrupted(paused)) => {
            println!(
                "paused before {:?} at checkpoint {}; run again with `-- {thread}` to approve",
                paused.interrupt, paused.checkpoint_id
            );
            if !backend.durable() {
                println!("(the memory store forgets the pause when this process ends)");
            }
        }
        Ok(state) => println!("done: status {}", state["status"]),
        Err(other) => return Err(other.into()),
    }
    Ok(())
}
