//! The `scheduled` workload: 16 tasks saving to their own executions on the plain table, with
//! scheduled retention off and on (keep the newest 20 of each execution, a pass every second,
//! then every 100 ms), in the same run, so its cost on the save rate reads as a ratio.

use std::time::Duration;

use checkpoint_core::retention::RetentionSchedule;
use checkpoint_core::{Checkpoint, CheckpointStore, ExecutionQuery, RetentionPolicy};
use checkpoint_postgres::PostgresStore;

use crate::stats::{save_from_tasks, Figures};
use crate::workloads::{Bench, Setup};

const TASKS: usize = 16;
/// The checkpoints each execution keeps.
pub(crate) const KEEP: u64 = 20;

/// The intervals measured.
pub(crate) const EVERY: [Duration; 2] = [Duration::from_secs(1), Duration::from_millis(100)];

/// One run's figures.
pub(crate) struct ScheduledFigures {
    pub off: Figures,
    /// With a pass every [`EVERY`] interval, in that order.
    pub on: Vec<Figures>,
    /// The most checkpoints any execution held at the end of each run with retention on.
    pub most_left: Vec<u64>,
}

async fn run(bench: &Bench, schedule: Option<RetentionSchedule>) -> anyhow::Result<(Figures, u64)> {
    let mut options = bench.options_with("scheduled", TASKS + 1, Setup::default())?;
    if let Some(schedule) = schedule {
        options = options.retention(schedule);
    }
    let store = PostgresStore::connect(options).await?;
    let payload = bench.payload.clone();
    let figures = save_from_tasks(&store, TASKS, bench.seconds, move |t, _| {
        Checkpoint::new(format!("exec-{t}"), "node", payload.clone())
    })
    .await?;
    let most = store
        .list_executions(&ExecutionQuery::new(TASKS))
        .await?
        .iter()
        .map(|e| e.checkpoint_count)
        .max()
        .unwrap_or(0);
    store.close();
    Ok((figures, most))
}

/// Saves with retention off, then on at each interval of [`EVERY`].
pub(crate) async fn measure(bench: &Bench) -> anyhow::Result<ScheduledFigures> {
    let (off, _) = run(bench, None).await?;
    let mut figures = ScheduledFigures {
        off,
        on: Vec::new(),
        most_left: Vec::new(),
    };
    for every in EVERY {
        let schedule = RetentionSchedule::new(RetentionPolicy::keep_last(KEEP), every)
            .pause(Duration::from_millis(1));
        let (on, most_left) = run(bench, Some(schedule)).await?;
        figures.on.push(on);
        figures.most_left.push(most_left);
    }
    Ok(figures)
}
