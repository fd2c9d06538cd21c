//! Scheduled retention ([`PostgresOptions::retention`](crate::PostgresOptions::retention)):
//! the task, and what one pass does on each layout.

use checkpoint_core::retention::{self, RetentionPass, RetentionSchedule, RetentionTask};
use checkpoint_core::{Result, RetentionPolicy};
use time::OffsetDateTime;

use crate::PostgresStore;

/// Spawns the task of `schedule` over `store` (a clone that holds no task of its own, so the
/// task ends when the store that holds it goes).
pub(crate) fn spawn(store: PostgresStore, schedule: RetentionSchedule) -> RetentionTask {
    let every = schedule.every();
    let collection = store.meter.collection().to_owned();
    RetentionTask::spawn(
        every,
        move || {
            let store = store.clone();
            let schedule = schedule.clone();
            async move { retention::recorded(&store.meter, pass(&store, &schedule)).await }
        },
        move |outcome| match outcome {
            Ok(pass) => tracing::info!(
                table = %collection,
                batches = pass.batches,
                removed = pass.removed,
                "scheduled retention pass"
            ),
            Err(err) => {
                tracing::warn!(table = %collection, error = %err, "scheduled retention pass failed")
            }
        },
    )
}

/// One pass: execution by execution; on a time-partitioned table, the age rule by dropping the
/// partitions it covers first (their removed rows are the server's estimate), then `keep_last`
/// execution by execution.
async fn pass(store: &PostgresStore, schedule: &RetentionSchedule) -> Result<RetentionPass> {
    let policy = schedule.policy();
    let pause = schedule.pause_between_batches();
    let sleep = || tokio::time::sleep(pause);
    let by_partition = store.table.layout().period().is_some() && policy.execution_id.is_none();
    if !by_partition {
        return retention::prune_in_batches(store, policy, sleep).await;
    }
    let mut done = RetentionPass::default();
    if let Some(cutoff) = policy.cutoff(OffsetDateTime::now_utc()) {
        let dropped = store.drop_partitions_before(cutoff).await?;
        done.batches = dropped.partitions.len() as u64;
        done.removed = dropped
            .partitions
            .iter()
            .map(|p| u64::try_from(p.estimated_rows).unwrap_or(0))
            .fold(0u64, u64::saturating_add);
    }
    if let Some(keep) = policy.keep_last {
        let trimmed =
            retention::prune_in_batches(store, &RetentionPolicy::keep_last(keep), sleep).await?;
        done.batches = done.batches.saturating_add(trimmed.batches);
        done.removed = done.removed.saturating_add(trimmed.removed);
    }
    Ok(done)
}
