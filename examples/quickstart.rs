//! A short multi-step job: save after each step, stop, list the history, then open the store
//! again and resume from the latest checkpoint as a restarted process would.
//!
//! Run it with `cargo run --example quickstart`. By default the checkpoints go to a SQLite file
//! under the system temp dir (printed), so the resumed half reads them back from disk; no
//! server is needed. `--no-default-features --features memory` runs it in memory instead.

use checkpoint_core::{Checkpoint, ListQuery};
use checkpoint_examples::Backend;
use serde::{Deserialize, Serialize};

/// The job's state: which words it has counted so far.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    done: Vec<String>,
    letters: usize,
}

const STEPS: [&str; 4] = ["fetch", "parse", "enrich", "store"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let backend = Backend::chosen()?;
    let store = checkpoint_examples::open(backend).await?;
    let execution = &format!("quickstart-{}", checkpoint_examples::run_suffix());
    println!("saving to {}", backend.location());

    // Run the first three steps, then "crash".
    let mut progress = Progress::default();
    let mut parent: Option<String> = None;
    for step in &STEPS[..3] {
        progress.done.push(step.to_string());
        progress.letters += step.len();
        let mut cp = Checkpoint::from_state(execution, *step, &progress)?
            .with_metadata("step", progress.done.len());
        if let Some(parent) = &parent {
            cp = cp.with_parent(parent);
        }
        let version = store.save(&cp).await?;
        println!("saved after {step:<7} version {version}  id {}", cp.id);
        parent = Some(cp.id);
    }
    println!("-- the process stops here --");
    // A durable store is opened again from scratch, as a new process would; the memory
    // store has only the one copy it had.
    let store = if backend.durable() {
        drop(store);
        let reopened = checkpoint_examples::open(backend).await?;
        println!("-- opened {} again --", backend.location());
        reopened
    } else {
        store
    };

    // The history, oldest first, one page at a time.
    let query = ListQuery::new(execution).limit(2);
    let mut next = Some(query);
    while let Some(query) = next {
        let page = store.list_page(&query).await?;
        for cp in &page.items {
            println!("history: v{} after {}", cp.version, cp.node_name);
        }
        next = query.next(&page);
    }

    // Resume from the latest checkpoint: skip what is done, run what is left.
    let latest = store
        .latest(execution)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no checkpoint to resume from"))?;
    let mut progress: Progress = latest.state_as()?;
    println!(
        "resuming after {} (version {})",
        latest.node_name, latest.version
    );
    let mut parent = latest.id;
    let remaining: Vec<&str> = STEPS
        .into_iter()
        .filter(|s| !progress.done.iter().any(|d| d == s))
        .collect();
    for step in remaining {
        progress.done.push(step.to_string());
        progress.letters += step.len();
        let cp = Checkpoint::from_state(execution, step, &progress)?
            .with_metadata("step", progress.done.len())
            .with_parent(&parent);
        let version = store.save(&cp).await?;
        println!("saved after {step:<7} version {version}");
        parent = cp.id;
    }

    let history = store.list(execution).await?;
    println!(
        "finished: {} steps, {} letters, {} checkpoints",
        progress.done.len(),
        progress.letters,
        history.len()
    );
    Ok(())
}
