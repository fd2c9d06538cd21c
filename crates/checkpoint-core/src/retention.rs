//! Scheduled retention: a [`RetentionPolicy`] applied every interval, in small batches, by a
//! task the store runs in the background.
//!
//! A batch is one execution's [`prune`](CheckpointStore::prune): one short transaction over one
//! execution's rows (one partition, one shard), so no batch holds locks on more than the rows
//! it removes, and saves to other executions never wait for it. Between batches the task
//! pauses ([`RetentionSchedule::pause`]), which bounds the share of the server it takes.
//!
//! The durable stores take a schedule as an option (`PostgresOptions::retention`,
//! `SqliteOptions::retention`); the task stops when the last clone of the store is dropped (a
//! batch in flight is rolled back, whole) or when the store is closed. Each pass is counted in
//! [`RUNS`], [`REMOVED`] and [`PASS_DURATION`], and logged by the backend.
//!
//! ```
//! use std::time::Duration;
//! use checkpoint_core::retention::RetentionSchedule;
//! use checkpoint_core::RetentionPolicy;
//!
//! let schedule = RetentionSchedule::new(RetentionPolicy::keep_last(50), Duration::from_secs(600))
//!     .pause(Duration::from_millis(20));
//! assert_eq!(schedule.every(), Duration::from_secs(600));
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};

use crate::telemetry::{Meter, COLLECTION, SYSTEM};
use crate::{CheckpointStore, Error, ExecutionQuery, Limits, Result, RetentionPolicy};

/// Counter: passes of scheduled retention, by `outcome` (`ok` or `error`).
pub const RUNS: &str = "checkpoint.retention.runs";
/// Counter: checkpoints removed by scheduled retention.
pub const REMOVED: &str = "checkpoint.retention.removed";
/// Histogram, seconds: how long one pass took, pauses included.
pub const PASS_DURATION: &str = "checkpoint.retention.pass.duration";

/// Executions listed per page while a pass walks them.
const PAGE: usize = 500;

/// The shortest interval between passes.
pub const MIN_EVERY: Duration = Duration::from_millis(10);

/// When and how scheduled retention runs: the policy, the interval between the starts of two
/// passes, and the pause between two batches of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSchedule {
    policy: RetentionPolicy,
    every: Duration,
    pause: Duration,
}

impl RetentionSchedule {
    /// Applies `policy` every `every` (from the start of one pass to the start of the next;
    /// a pass that takes longer is followed at once by the next). The default pause between
    /// batches is 5 ms.
    pub fn new(policy: RetentionPolicy, every: Duration) -> Self {
        RetentionSchedule {
            policy,
            every,
            pause: Duration::from_millis(5),
        }
    }

    /// The pause between two batches (executions) of a pass.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &RetentionPolicy {
        &self.policy
    }

    /// The interval between passes.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// The pause between batches.
    pub fn pause_between_batches(&self) -> Duration {
        self.pause
    }

    /// Checks the schedule: the policy as [`Limits::check_retention`] does, an interval of at
    /// least [`MIN_EVERY`], and a pause shorter than the interval.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `retention`, `keep_last` or `execution_id`.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        limits.check_retention(&self.policy)?;
        if self.every < MIN_EVERY {
            return Err(Error::invalid(
                "retention",
                format!(
                    "the interval {:?} is shorter than {MIN_EVERY:?}",
                    self.every
                ),
            ));
        }
        if self.pause >= self.every {
            return Err(Error::invalid(
                "retention",
                format!(
                    "the pause between batches ({:?}) must be shorter than the interval ({:?})",
                    self.pause, self.every
                ),
            ));
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Batches run (executions pruned, or partitions dropped).
    pub batches: u64,
    /// Checkpoints removed.
    pub removed: u64,
}

/// One pass of `policy` over `store`, one execution per batch, awaiting `pause()` between
/// batches. A policy naming an execution is one batch.
///
/// # Errors
/// The first error of a batch; the batches before it stay applied (each is atomic).
pub async fn prune_in_batches<S, P, F>(
    store: &S,
    policy: &RetentionPolicy,
    mut pause: P,
) -> Result<RetentionPass>
where
    S: CheckpointStore + ?Sized,
    P: FnMut() -> F,
    F: Future<Output = ()>,
{
    if policy.execution_id.is_some() {
        let removed = store.prune(policy).await?;
        return Ok(RetentionPass {
            batches: 1,
            removed,
        });
    }
    let mut pass = RetentionPass::default();
    let mut query = ExecutionQuery::new(PAGE);
    loop {
        let page = store.list_executions(&query).await?;
        for summary in &page {
            if pass.batches > 0 {
                pause().await;
            }
            let one = policy.clone().for_execution(summary.execution_id.clone());
            let removed = store.prune(&one).await?;
            pass.batches = pass.batches.saturating_add(1);
            pass.removed = pass.removed.saturating_add(removed);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                query = ExecutionQuery::new(PAGE).after(&last.execution_id);
            }
            _ => return Ok(pass),
        }
    }
}

/// Runs `pass` and records it in `meter`'s labels: [`RUNS`] by outcome, [`REMOVED`],
/// [`PASS_DURATION`].
pub async fn recorded<F>(meter: &Meter, pass: F) -> Result<RetentionPass>
where
    F: Future<Output = Result<RetentionPass>>,
{
    let started = Instant::now();
    let outcome = pass.await;
    let labels = [
        (SYSTEM, meter.system().to_owned()),
        (COLLECTION, meter.collection().to_owned()),
    ];
    histogram!(PASS_DURATION, &labels).record(started.elapsed().as_secs_f64());
    let result = if outcome.is_ok() { "ok" } else { "error" };
    counter!(
        RUNS,
        &[
            (SYSTEM, meter.system().to_owned()),
            (COLLECTION, meter.collection().to_owned()),
            ("outcome", result.to_owned()),
        ]
    )
    .increment(1);
    if let Ok(pass) = &outcome {
        counter!(REMOVED, &labels).increment(pass.removed);
    }
    outcome
}

/// The background task of a schedule: runs `pass` every [`RetentionSchedule::every`] until it
/// is stopped, logging each outcome through `log`. Dropping it (or [`stop`](Self::stop)) ends
/// the task; a pass in flight is abandoned, and each of its batches is atomic.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct RetentionTask {
    handle: tokio::task::JoinHandle<()>,
}

#[cfg(feature = "tokio")]
impl RetentionTask {
    /// Spawns the task on the current Tokio runtime. The first pass starts one interval from
    /// now.
    pub fn spawn<P, F, L>(every: Duration, mut pass: P, mut log: L) -> Self
    where
        P: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<RetentionPass>> + Send,
        L: FnMut(&Result<RetentionPass>) + Send + 'static,
    {
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let outcome = pass().await;
                log(&outcome);
            }
        });
        RetentionTask { handle }
    }

    /// Ends the task now.
    pub fn stop(&self) {
        self.handle.abort();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

#[cfg(feature = "tokio")]
impl Drop for RetentionTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_checked() {
        let limits = Limits::default();
        let every = Duration::from_secs(60);
        assert!(RetentionSchedule::new(RetentionPolicy::keep_last(3), every)
            .validate(&limits)
            .is_ok());
        let cases = [
            (
                RetentionSchedule::new(RetentionPolicy::default(), every),
                "retention",
            ),
            (
                RetentionSchedule::new(RetentionPolicy::keep_last(0), every),
                "keep_last",
            ),
            (
                RetentionSchedule::new(RetentionPolicy::keep_last(1), Duration::from_millis(1)),
                "retention",
            ),
            (
                RetentionSchedule::new(RetentionPolicy::keep_last(1), every).pause(every),
                "retention",
            ),
            (
                RetentionSchedule::new(RetentionPolicy::keep_last(1).for_execution(""), every),
                "execution_id",
            ),
        ];
        for (schedule, field) in cases {
            let err = schedule.validate(&limits).unwrap_err();
            assert!(err.is_invalid_field(field), "{schedule:?}: {err}");
        }
    }
}
