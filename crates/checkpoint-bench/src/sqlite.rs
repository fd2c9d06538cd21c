//! The `sqlite` workloads: `SqliteStore` on a file in the system temp dir, no server, under each
//! durability setting in the same run (`Full`, the default, is the baseline the others are
//! compared with).

use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_sqlite::{Durability, SqliteOptions, SqliteStore};

use crate::stats::{save_from_tasks, time_latest, time_load, Figures, Samples};
use crate::workloads::payload;

/// Executions the sequential saves rotate over, so reads meet histories of several rows.
const EXECUTIONS: usize = 50;

/// Every figure of one durability setting.
pub struct SqliteFigures {
    pub durability: Durability,
    pub save_1: Figures,
    pub save_4: Figures,
    /// Saves per transaction during the 4-task workload (group commit).
    pub mean_group_4: f64,
    pub batch_1000: Figures,
    pub latest: Figures,
    pub load: Figures,
    /// The database file (and its WAL) per stored checkpoint.
    pub bytes_per_checkpoint: f64,
    /// The stored (compressed) state per checkpoint.
    pub state_bytes_per_checkpoint: f64,
}

fn file_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Runs every workload on a new file with `durability`, states of `state_bytes`, `seconds` per
/// timed workload.
pub async fn measure(
    durability: Durability,
    seconds: Duration,
    state_bytes: usize,
) -> anyhow::Result<SqliteFigures> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(SqliteOptions::file(&path).durability(durability)).await?;
    let state = payload(state_bytes);

    let rotating = |tasks: usize| {
        let state = state.clone();
        move |t: usize, i: usize| {
            let execution = format!("e{}", (i * tasks + t) % EXECUTIONS);
            Checkpoint::new(execution, "node", state.clone())
        }
    };
    let save_1 = save_from_tasks(&store, 1, seconds, rotating(1)).await?;
    let before = store.commit_stats();
    let save_4 = save_from_tasks(&store, 4, seconds, rotating(4)).await?;
    let after = store.commit_stats();
    let mean_group_4 =
        (after.saves - before.saves) as f64 / (after.groups - before.groups).max(1) as f64;

    let mut batches = Samples::with_units(1_000);
    let started = Instant::now();
    for b in 0..10 {
        let items: Vec<Checkpoint> = (0..1_000)
            .map(|_| Checkpoint::new(format!("batch-{b}"), "node", state.clone()))
            .collect();
        let t = Instant::now();
        store.save_batch(&items).await?;
        batches.record(t.elapsed());
    }
    batches.set_elapsed(started.elapsed());
    let batch_1000 = batches.figures();

    let latest = time_latest(&store, seconds, EXECUTIONS, 7).await?;
    let ids: Vec<String> = store
        .list("e0")
        .await?
        .into_iter()
        .map(|cp| cp.id)
        .collect();
    let load = time_load(&store, seconds, &ids, 11).await?;

    let stats = store.stats().await?;
    let checkpoints = stats.checkpoints.max(1) as f64;
    let bytes_per_checkpoint = file_bytes(&path) as f64 / checkpoints;
    let state_bytes_per_checkpoint = stats.state_bytes as f64 / checkpoints;
    store.close();
    Ok(SqliteFigures {
        durability,
        save_1,
        save_4,
        mean_group_4,
        batch_1000,
        latest,
        load,
        bytes_per_checkpoint,
        state_bytes_per_checkpoint,
    })
}
