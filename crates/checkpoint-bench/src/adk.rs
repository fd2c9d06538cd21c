//! The `adk` workloads (feature `adk`): adk-graph's checkpointer
//! ([`checkpoint_adk::AdkCheckpointer`]) over `PostgresStore` and over `SqliteStore`, saving
//! without a retention policy and with one (adk's executor prunes after every save), against
//! the store's own save of the same state, at 1 and 16 tasks (1 and 4 on SQLite), each task on
//! its own thread. Each figure is the mean of two rounds, the second in
//! reverse order.

use std::sync::Arc;
use std::time::Instant;

use adk_graph::checkpoint::{Checkpointer, RetentionPolicy};
use adk_graph::state::{Checkpoint as AdkCheckpoint, State};
use checkpoint_adk::AdkCheckpointer;
use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};

use crate::stats::{Figures, Samples};
use crate::workloads::{Bench, Setup};

/// The checkpoints a policy keeps per thread.
pub(crate) const KEEP: usize = 20;

/// What one round measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// `PostgresStore::save` of the adk checkpoint's JSON: the store underneath.
    Store,
    /// The adapter's `save`.
    Adapter,
    /// The adapter's `save`, then `prune` with `keep_last(KEEP)`.
    AdapterPruning,
}

const WAYS: [Way; 3] = [Way::Store, Way::Adapter, Way::AdapterPruning];

/// The figures at one task count.
pub(crate) struct AdkFigures {
    pub store: Figures,
    pub adapter: Figures,
    pub pruning: Figures,
}

/// Each way at `tasks` tasks on `PostgresStore`, two rounds, the second in reverse order.
pub(crate) async fn measure(bench: &Bench, tasks: usize) -> anyhow::Result<AdkFigures> {
    let store = bench.store_with("adk", tasks, Setup::default()).await?;
    let figures = measure_on(bench, &store, tasks).await;
    store.close();
    figures
}

/// The same on `SqliteStore` (its defaults: `Durability::Full`, deltas) on a new file.
pub(crate) async fn measure_sqlite(bench: &Bench, tasks: usize) -> anyhow::Result<AdkFigures> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(SqliteOptions::file(dir.path().join("adk.db"))).await?;
    let figures = measure_on(bench, &store, tasks).await;
    store.close();
    figures
}

async fn measure_on<S>(bench: &Bench, store: &S, tasks: usize) -> anyhow::Result<AdkFigures>
where
    S: CheckpointStore + Clone + 'static,
{
    let adapter = Arc::new(AdkCheckpointer::new(store.clone()));
    let mut first = Vec::with_capacity(WAYS.len());
    for (round, way) in WAYS.iter().enumerate() {
        first.push(run(bench, store, &adapter, *way, tasks, round).await?);
    }
    let mut second = Vec::with_capacity(WAYS.len());
    for (round, way) in WAYS.iter().rev().enumerate() {
        second.push(run(bench, store, &adapter, *way, tasks, WAYS.len() + round).await?);
    }
    second.reverse();
    let [store_figures, adapter_figures, pruning] = [0, 1, 2].map(|i| first[i].mean(&second[i]));
    Ok(AdkFigures {
        store: store_figures,
        adapter: adapter_figures,
        pruning,
    })
}

async fn run<S>(
    bench: &Bench,
    store: &S,
    adapter: &Arc<AdkCheckpointer<S>>,
    way: Way,
    tasks: usize,
    round: usize,
) -> anyhow::Result<Figures>
where
    S: CheckpointStore + Clone + 'static,
{
    let budget = bench.seconds;
    let mut state = State::new();
    state.insert("messages".into(), bench.payload.clone());
    let policy = RetentionPolicy::keep_last(KEEP);
    let started = Instant::now();
    let runs = (0..tasks).map(|t| {
        let store = store.clone();
        let adapter = Arc::clone(adapter);
        let state = state.clone();
        let policy = policy.clone();
        // A thread per task and round: every way starts on threads without history.
        let thread = format!("adk-{round}-{t}");
        tokio::spawn(async move {
            let mut samples = Samples::new();
            let begun = Instant::now();
            let mut step = 0usize;
            while begun.elapsed() < budget {
                let checkpoint =
                    AdkCheckpoint::new(&thread, state.clone(), step, vec!["node".into()]);
                let t0 = Instant::now();
                match way {
                    Way::Store => {
                        let json = serde_json::to_value(&checkpoint)?;
                        let stored = Checkpoint::new(thread.clone(), "node", json)
                            .with_id(checkpoint.checkpoint_id.clone());
                        store.save(&stored).await?;
                    }
                    Way::Adapter => {
                        adapter.save(&checkpoint).await?;
                    }
                    Way::AdapterPruning => {
                        adapter.save(&checkpoint).await?;
                        adapter.prune(&thread, &policy).await?;
                    }
                }
                samples.record(t0.elapsed());
                step += 1;
            }
            anyhow::Ok(samples)
        })
    });
    let mut all = Samples::new();
    for run in futures::future::join_all(runs).await {
        all.merge(run??);
    }
    all.set_elapsed(started.elapsed());
    Ok(all.figures())
}
