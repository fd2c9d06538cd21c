//! The `growth` workload: one execution whose state gains a ~1 KiB message per step (an agent
//! conversation), saved after every step, under each way of storing states: on PostgreSQL
//! here, on SQLite in `sqlite.rs`, by the same conversation ([`converse`]).

use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::{Compression, PostgresOptions, PostgresStore, StateEncoding};
use serde_json::{json, Value};

use crate::stats::Samples;
use crate::workloads::{Bench, Picker};

/// How one run stores its states.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Storage {
    pub name: &'static str,
    pub encoding: StateEncoding,
    pub compression: Compression,
}

/// The figures of one run.
#[derive(Debug)]
pub(crate) struct Growth {
    pub bytes_per_step: f64,
    pub save_p50_ms_first10: f64,
    pub save_p50_ms_last10: f64,
    pub latest_p50_ms: f64,
    pub load_middle_p50_ms: f64,
}

impl Growth {
    pub(crate) fn json(&self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "bytes_per_step": r(self.bytes_per_step),
            "save_p50_ms_first10": r(self.save_p50_ms_first10),
            "save_p50_ms_last10": r(self.save_p50_ms_last10),
            "latest_p50_ms": r(self.latest_p50_ms),
            "load_middle_p50_ms": r(self.load_middle_p50_ms),
        })
    }
}

/// A vocabulary of pseudo-random words, so messages compress like text rather than like
/// repeated bytes or noise.
pub(crate) fn vocabulary(picker: &mut Picker) -> Vec<String> {
    (0..1024)
        .map(|_| {
            let len = 2 + picker.below(8);
            (0..len)
                .map(|_| char::from(b'a' + u8::try_from(picker.below(26)).unwrap_or(0)))
                .collect()
        })
        .collect()
}

/// A message of about `bytes` bytes of words.
pub(crate) fn message(picker: &mut Picker, words: &[String], bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&words[picker.below(words.len())]);
    }
    text
}

fn median(mut xs: Vec<Duration>) -> f64 {
    xs.sort_unstable();
    xs.get(xs.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// What a run of the conversation measured on its store, before the store's own size.
pub(crate) struct Timed {
    pub save_p50_ms_first10: f64,
    pub save_p50_ms_last10: f64,
    pub latest_p50_ms: f64,
    pub load_middle_p50_ms: f64,
}

/// `steps` saves of a growing conversation on `store` (execution `conversation`), then 100
/// `latest` and 100 loads of checkpoints from the middle of it. `between` runs after the saves
/// and before the reads (a backend's upkeep, such as `VACUUM ANALYZE`).
pub(crate) async fn converse<F, Fut>(
    store: &dyn CheckpointStore,
    steps: usize,
    between: F,
) -> anyhow::Result<Timed>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut picker = Picker::new(42);
    let words = vocabulary(&mut picker);
    let mut messages: Vec<Value> = Vec::with_capacity(steps);
    let mut ids = Vec::with_capacity(steps);
    let mut save_times = Vec::with_capacity(steps);
    for step in 1..=steps {
        let role = if step % 2 == 1 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": message(&mut picker, &words, 1000)}));
        let state = json!({"messages": messages, "step": step});
        let cp = Checkpoint::new("conversation", "node", state);
        let started = Instant::now();
        store.save(&cp).await?;
        save_times.push(started.elapsed());
        ids.push(cp.id);
    }
    between().await?;
    let mut latest = Samples::new();
    for _ in 0..100 {
        let started = Instant::now();
        let cp = store.latest("conversation").await?;
        latest.record(started.elapsed());
        anyhow::ensure!(cp.is_some_and(|cp| i64::try_from(steps).is_ok_and(|s| cp.version == s)));
    }
    let mut middle = Samples::new();
    let (low, high) = (steps * 2 / 5, steps * 3 / 5);
    for _ in 0..100 {
        let id = &ids[low + picker.below(high - low)];
        let started = Instant::now();
        store.load(id).await?;
        middle.record(started.elapsed());
    }
    let last = save_times.len().saturating_sub(10);
    Ok(Timed {
        save_p50_ms_first10: median(save_times[..10.min(save_times.len())].to_vec()),
        save_p50_ms_last10: median(save_times[last..].to_vec()),
        latest_p50_ms: latest.figures().p50_ms,
        load_middle_p50_ms: middle.figures().p50_ms,
    })
}

impl Growth {
    /// The figures of a run whose store holds `bytes` for `steps` steps.
    pub(crate) fn of(timed: Timed, bytes: f64, steps: usize) -> Growth {
        Growth {
            bytes_per_step: bytes / steps.max(1) as f64,
            save_p50_ms_first10: timed.save_p50_ms_first10,
            save_p50_ms_last10: timed.save_p50_ms_last10,
            latest_p50_ms: timed.latest_p50_ms,
            load_middle_p50_ms: timed.load_middle_p50_ms,
        }
    }
}

impl Bench {
    /// `steps` saves of a growing conversation on a fresh schema, then reads.
    pub(crate) async fn growth(&self, storage: Storage, steps: usize) -> anyhow::Result<Growth> {
        let options = PostgresOptions::new(&self.server.url)?
            .schema(self.schema(&format!("growth_{}", storage.name)))
            .max_connections(2)
            .min_connections(2)
            .state_encoding(storage.encoding)
            .compression(storage.compression);
        let store = PostgresStore::connect(options).await?;
        let client = self.server.client().await?;
        let table = store.table().quoted();
        let timed = converse(&store, steps, || async {
            client
                .batch_execute(&format!("VACUUM ANALYZE {table}"))
                .await?;
            Ok(())
        })
        .await?;
        let bytes: i64 = client
            .query_one(
                &format!(
                    "SELECT pg_total_relation_size('{}')",
                    table.replace('\'', "''")
                ),
                &[],
            )
            .await?
            .get(0);
        store.close();
        Ok(Growth::of(timed, bytes as f64, steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_about_the_size_asked_and_vary() {
        let mut picker = Picker::new(1);
        let words = vocabulary(&mut picker);
        let a = message(&mut picker, &words, 1000);
        let b = message(&mut picker, &words, 1000);
        assert!((1000..1012).contains(&a.len()), "{}", a.len());
        assert_ne!(a, b);
    }

    #[test]
    fn the_median_of_nothing_is_zero() {
        assert_eq!(median(Vec::new()), 0.0);
        let ms = |n| Duration::from_millis(n);
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), 2.0);
    }
}
