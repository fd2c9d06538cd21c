//! Timing one workload: operations per second and latency percentiles.

use std::time::{Duration, Instant};

/// Latencies of one workload.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Units of work per operation (rows per batch), for the throughput figure.
    units_per_op: f64,
}

/// The figures of one workload.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Figures {
    pub ops: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Figures {
    /// The figures of two rounds of one workload as one: operations added, rates and
    /// percentiles averaged.
    pub(crate) fn mean(&self, other: &Figures) -> Figures {
        Figures {
            ops: self.ops.saturating_add(other.ops),
            per_second: (self.per_second + other.per_second) / 2.0,
            p50_ms: (self.p50_ms + other.p50_ms) / 2.0,
            p99_ms: (self.p99_ms + other.p99_ms) / 2.0,
        }
    }
}

impl Samples {
    pub(crate) fn new() -> Self {
        Samples {
            units_per_op: 1.0,
            ..Samples::default()
        }
    }

    /// Counts each operation as `units` (rows of a batch).
    pub(crate) fn with_units(units: usize) -> Self {
        Samples {
            units_per_op: units as f64,
            ..Samples::default()
        }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
    }

    pub(crate) fn set_elapsed(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
    }

    pub(crate) fn figures(mut self) -> Figures {
        self.latencies.sort_unstable();
        let pick = |q: f64| {
            if self.latencies.is_empty() {
                return 0.0;
            }
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a float cast saturates, and the value is an index of latencies"
            )]
            let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        let ops = self.latencies.len();
        Figures {
            ops,
            per_second: ops as f64 * self.units_per_op / self.elapsed.as_secs_f64().max(1e-9),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
        }
    }
}

/// Runs `op` repeatedly until `budget` has passed or `max_ops` ran, one after another.
pub(crate) async fn run_for<F, Fut>(
    budget: Duration,
    max_ops: usize,
    mut op: F,
) -> anyhow::Result<Samples>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Samples::new();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < budget && i < max_ops {
        let t = Instant::now();
        op(i).await?;
        samples.record(t.elapsed());
        i += 1;
    }
    samples.set_elapsed(started.elapsed());
    Ok(samples)
}

/// `latest` of random executions among `e{0}`..`e{executions - 1}` (each must have a
/// checkpoint), for `budget`.
pub(crate) async fn time_latest(
    store: &dyn checkpoint_core::CheckpointStore,
    budget: Duration,
    executions: usize,
    seed: u64,
) -> anyhow::Result<Figures> {
    let mut picker = crate::workloads::Picker::new(seed);
    Ok(run_for(budget, usize::MAX, |_| {
        let execution = format!("e{}", picker.below(executions));
        async move {
            anyhow::ensure!(store.latest(&execution).await?.is_some());
            Ok(())
        }
    })
    .await?
    .figures())
}

/// `load` of random ids among `ids`, for `budget`.
pub(crate) async fn time_load(
    store: &dyn checkpoint_core::CheckpointStore,
    budget: Duration,
    ids: &[String],
    seed: u64,
) -> anyhow::Result<Figures> {
    anyhow::ensure!(!ids.is_empty(), "no checkpoints to load");
    let mut picker = crate::workloads::Picker::new(seed);
    Ok(run_for(budget, usize::MAX, |_| {
        let id = ids[picker.below(ids.len())].clone();
        async move {
            store.load(&id).await?;
            Ok(())
        }
    })
    .await?
    .figures())
}

/// `load_in` of random `(execution, id)` pairs from `keys` for `budget`: the routed read by id.
pub(crate) async fn time_load_in(
    store: &dyn checkpoint_core::CheckpointStore,
    budget: Duration,
    keys: &[(String, String)],
    seed: u64,
) -> anyhow::Result<Figures> {
    anyhow::ensure!(!keys.is_empty(), "no checkpoints to load");
    let mut picker = crate::workloads::Picker::new(seed);
    Ok(run_for(budget, usize::MAX, |_| {
        let (execution, id) = keys[picker.below(keys.len())].clone();
        async move {
            store.load_in(&execution, &id).await?;
            Ok(())
        }
    })
    .await?
    .figures())
}

/// `tasks` tasks saving for `budget`, each its own checkpoints: task `t`'s `i`-th save is
/// `checkpoint(t, i)`. Every latency counts; the throughput is of all tasks together.
pub(crate) async fn save_from_tasks<S, F>(
    store: &S,
    tasks: usize,
    budget: Duration,
    checkpoint: F,
) -> anyhow::Result<Figures>
where
    S: checkpoint_core::CheckpointStore + Clone + 'static,
    F: Fn(usize, usize) -> checkpoint_core::Checkpoint + Clone + Send + Sync + 'static,
{
    fenced_saves_from_tasks(store, tasks, budget, None, checkpoint).await
}

/// [`save_from_tasks`], each task's saves fenced by `fences[task]` when `fences` is given.
pub(crate) async fn fenced_saves_from_tasks<S, F>(
    store: &S,
    tasks: usize,
    budget: Duration,
    fences: Option<std::sync::Arc<Vec<checkpoint_core::Fence>>>,
    checkpoint: F,
) -> anyhow::Result<Figures>
where
    S: checkpoint_core::CheckpointStore + Clone + 'static,
    F: Fn(usize, usize) -> checkpoint_core::Checkpoint + Clone + Send + Sync + 'static,
{
    let started = Instant::now();
    let runs = (0..tasks).map(|t| {
        let store = store.clone();
        let checkpoint = checkpoint.clone();
        let fence = fences.as_ref().and_then(|all| all.get(t).cloned());
        tokio::spawn(async move {
            run_for(budget, usize::MAX, |i| {
                let cp = checkpoint(t, i);
                let store = &store;
                let fence = fence.as_ref();
                async move {
                    match fence {
                        Some(fence) => store.save_fenced(fence, &cp).await?,
                        None => store.save(&cp).await?,
                    };
                    Ok(())
                }
            })
            .await
        })
    });
    let mut all = Samples::new();
    for run in futures::future::join_all(runs).await {
        all.merge(run??);
    }
    all.set_elapsed(started.elapsed());
    Ok(all.figures())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let mut s = Samples::new();
        for ms in 1..=100 {
            s.record(Duration::from_millis(ms));
        }
        s.set_elapsed(Duration::from_secs(2));
        let f = s.figures();
        assert_eq!(f.ops, 100);
        assert_eq!(f.per_second, 50.0);
        assert!(
            (f.p50_ms - 51.0).abs() < 1e-6 || (f.p50_ms - 50.0).abs() < 1e-6,
            "{f:?}"
        );
        assert!((f.p99_ms - 99.0).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn batches_count_rows() {
        let mut s = Samples::with_units(1000);
        s.record(Duration::from_millis(10));
        s.set_elapsed(Duration::from_secs(1));
        assert_eq!(s.figures().per_second, 1000.0);
    }
}
