//! Time travel: run a workflow, then fork from an earlier checkpoint with a changed state and
//! watch the fork take a different branch. Both histories are printed.
//!
//! `cargo run --example time_travel` (add `--features postgres` and `DATABASE_URL` to keep the
//! histories in PostgreSQL).

use checkpoint_core::CheckpointStore;
use checkpoint_workflow::{Next, Workflow, WorkflowStoreExt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Trip {
    budget: u32,
    plan: Vec<String>,
}

fn trip_workflow() -> Workflow<Trip> {
    Workflow::new("choose_city")
        .node("choose_city", |mut t: Trip| async move {
            t.plan.push("Lisbon".into());
            Ok((t, Next::to("book_stay")))
        })
        .node("book_stay", |mut t: Trip| async move {
            // The branch depends on the state: a big budget books a hotel, a small one a hostel.
            if t.budget >= 1000 {
                t.plan.push("hotel".into());
                Ok((t, Next::to("fine_dining")))
            } else {
                t.plan.push("hostel".into());
                Ok((t, Next::to("street_food")))
            }
        })
        .node("fine_dining", |mut t: Trip| async move {
            t.plan.push("fine dining".into());
            Ok((t, Next::End))
        })
        .node("street_food", |mut t: Trip| async move {
            t.plan.push("street food".into());
            Ok((t, Next::End))
        })
}

async fn print_history(store: &dyn CheckpointStore, execution: &str) -> anyhow::Result<()> {
    println!("history of {execution}:");
    for cp in store.list(execution).await? {
        println!(
            "  v{} {:<12} source={:<4} {}",
            cp.version, cp.node_name, cp.metadata["source"], cp.state
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = checkpoint_examples::store().await?;
    let suffix = checkpoint_examples::run_suffix();
    let main_run = format!("trip-{suffix}");
    let workflow = trip_workflow();

    let first = workflow
        .run(
            store.as_ref(),
            &main_run,
            Trip {
                budget: 400,
                plan: vec![],
            },
        )
        .await?;
    println!("original plan: {:?}", first.state.plan);

    // Travel back to the checkpoint after choose_city, and ask "what if the budget were 2000?"
    let after_city = store
        .list(&main_run)
        .await?
        .into_iter()
        .find(|cp| cp.node_name == "choose_city")
        .ok_or_else(|| anyhow::anyhow!("no checkpoint after choose_city"))?;
    let branch = format!("trip-{suffix}-rich");
    let fork = store.fork(&after_city.id, &branch).await?;
    let mut what_if: Trip = fork.state_as()?;
    what_if.budget = 2000;
    store.update_state(&branch, "what_if", &what_if).await?;
    let second = workflow
        .run(store.as_ref(), &branch, Trip::default())
        .await?;
    println!("forked plan:   {:?}", second.state.plan);

    print_history(store.as_ref(), &main_run).await?;
    print_history(store.as_ref(), &branch).await?;
    Ok(())
}
