//! The workloads, on PostgreSQL and in memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, ListQuery, RetentionPolicy};
use checkpoint_memory::MemoryStore;
use checkpoint_postgres::{
    GroupCommit, GroupCommitStats, PostgresOptions, PostgresStore, StateEncoding, TableLayout,
};
use serde_json::{json, Value};

use crate::server::Server;
use crate::stats::{fenced_saves_from_tasks, run_for, save_from_tasks, Figures, Samples};

/// A JSON state of `bytes` bytes (compact text), varied so it does not compress to nothing.
pub(crate) fn payload(bytes: usize) -> Value {
    let overhead = r#"{"data":""}"#.len();
    let data: String = (0..bytes.saturating_sub(overhead))
        .map(|i| char::from(b'a' + u8::try_from((i * 7 + i / 26) % 26).unwrap_or(0)))
        .collect();
    json!({ "data": data })
}

/// A cheap deterministic sequence for picking ids and executions.
pub(crate) struct Picker(u64);

impl Picker {
    pub(crate) fn new(seed: u64) -> Self {
        Picker(seed.max(1))
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// A mark that tells this run from earlier ones: the start time and the process, in base 36
/// (schema names stay well inside PostgreSQL's 63 bytes).
fn run_mark() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut n = (seconds << 20) ^ u64::from(std::process::id());
    let mut mark = String::new();
    while n > 0 {
        let digit = (n % 36) as u32;
        mark.insert(0, char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    mark
}

/// How a measured store is set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup {
    /// `synchronous_commit` on.
    pub durable: bool,
    pub encoding: StateEncoding,
    pub group: GroupCommit,
    pub layout: TableLayout,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            durable: true,
            encoding: StateEncoding::default(),
            group: GroupCommit::default(),
            layout: TableLayout::Plain,
        }
    }
}

pub(crate) struct Bench {
    pub server: Server,
    pub seconds: Duration,
    pub payload: Value,
    /// This run's mark in its schemas' names: a database may hold earlier runs' schemas.
    run: String,
    schemas: AtomicUsize,
}

impl Bench {
    pub(crate) fn new(server: Server, seconds: Duration, state_bytes: usize) -> Self {
        Bench {
            server,
            seconds,
            payload: payload(state_bytes),
            run: run_mark(),
            schemas: AtomicUsize::new(0),
        }
    }

    /// A fresh schema's name, `bench_<run>_<tag>_<n>`: no earlier run, and no other workload of
    /// this one, has used it, so every workload starts from empty tables whatever the database
    /// already holds.
    pub(crate) fn schema(&self, tag: &str) -> String {
        let n = self.schemas.fetch_add(1, Ordering::Relaxed);
        format!("bench_{}_{tag}_{n}", self.run)
    }

    /// A store on a fresh schema of its own, with the default state storage.
    pub(crate) async fn store(
        &self,
        tag: &str,
        pool: usize,
        durable: bool,
    ) -> anyhow::Result<PostgresStore> {
        let setup = Setup {
            durable,
            ..Setup::default()
        };
        self.store_with(tag, pool, setup).await
    }

    /// The options of a store on a fresh schema of its own, set up as `setup` says.
    pub(crate) fn options_with(
        &self,
        tag: &str,
        pool: usize,
        setup: Setup,
    ) -> anyhow::Result<PostgresOptions> {
        Ok(PostgresOptions::new(&self.server.url)?
            .schema(self.schema(tag))
            .max_connections(pool)
            .min_connections(pool)
            .synchronous_commit(setup.durable)
            .state_encoding(setup.encoding)
            .group_commit(setup.group)
            .table_layout(setup.layout))
    }

    /// A store on a fresh schema of its own, set up as `setup` says.
    pub(crate) async fn store_with(
        &self,
        tag: &str,
        pool: usize,
        setup: Setup,
    ) -> anyhow::Result<PostgresStore> {
        let store = PostgresStore::connect(self.options_with(tag, pool, setup)?).await?;
        if setup.layout.period().is_some() {
            // A month of daily partitions behind today's, as a table in use for a while has:
            // a statement that cannot name its partition opens them all.
            let now = time::OffsetDateTime::now_utc();
            store
                .create_partitions(now - time::Duration::days(30), now)
                .await?;
        }
        Ok(store)
    }

    fn checkpoint(&self, execution: &str) -> Checkpoint {
        Checkpoint::new(execution, "node", self.payload.clone())
    }

    /// `tasks` tasks appending to their own executions for the configured time.
    pub(crate) async fn save(&self, tasks: usize, durable: bool) -> anyhow::Result<Figures> {
        let setup = Setup {
            durable,
            ..Setup::default()
        };
        Ok(self.save_with(tasks, setup).await?.0)
    }

    /// As [`Self::save`], with the store set up as `setup` says; also what group commit did
    /// during the timed part, when it is on.
    pub(crate) async fn save_with(
        &self,
        tasks: usize,
        setup: Setup,
    ) -> anyhow::Result<(Figures, Option<GroupCommitStats>)> {
        let store = self.store_with("save", tasks, setup).await?;
        for t in 0..tasks {
            store.save(&self.checkpoint(&format!("exec-{t}"))).await?;
        }
        let groups_before = store.group_commit_stats();
        let payload = self.payload.clone();
        let figures = save_from_tasks(&store, tasks, self.seconds, move |t, _| {
            Checkpoint::new(format!("exec-{t}"), "node", payload.clone())
        })
        .await?;
        let groups = store
            .group_commit_stats()
            .zip(groups_before)
            .map(|(after, before)| after.since(&before));
        store.close();
        Ok((figures, groups))
    }

    /// `tasks` tasks appending to their own executions with group commit on, without and
    /// with a lease on each execution (every save fenced): four rounds, unfenced, fenced,
    /// fenced, unfenced, so that a drifting machine weighs on both alike; each the mean of
    /// its two rounds.
    pub(crate) async fn save_leased(&self, tasks: usize) -> anyhow::Result<(Figures, Figures)> {
        let store = self.store_with("lease", tasks, Setup::default()).await?;
        let mut fences = Vec::with_capacity(tasks);
        for t in 0..tasks {
            let execution = format!("exec-{t}");
            store.save(&self.checkpoint(&execution)).await?;
            let lease = store
                .acquire(&execution, "bench", Duration::from_secs(3600))
                .await?;
            fences.push(lease.fence());
        }
        let fences = Arc::new(fences);
        let payload = self.payload.clone();
        let make = move |t: usize, _| Checkpoint::new(format!("exec-{t}"), "node", payload.clone());
        let mut rounds: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
        for fenced in [false, true, true, false] {
            let fences = fenced.then(|| Arc::clone(&fences));
            let figures =
                fenced_saves_from_tasks(&store, tasks, self.seconds, fences, make.clone()).await?;
            rounds[usize::from(fenced)].push(figures);
        }
        store.close();
        let [plain, leased] = rounds;
        Ok((plain[0].mean(&plain[1]), leased[0].mean(&leased[1])))
    }

    /// pgbench running the store's own save statement, prepared, with the same payload as a
    /// whole JSONB state (the single-row statement every save is measured against).
    pub(crate) async fn pgbench(&self, clients: usize) -> anyhow::Result<f64> {
        let store = self
            .store_with(
                "pgbench",
                1,
                Setup {
                    encoding: StateEncoding::Jsonb,
                    ..Setup::default()
                },
            )
            .await?;
        let script = pgbench_script(&store.statements().save.text);
        let dir = std::env::temp_dir().join(format!("checkpoint-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("save.sql"), script)?;
        let payload = self.payload.to_string();
        let server = &self.server;
        let seconds = self.seconds.as_secs().max(1);
        let tps = tokio::task::block_in_place(|| {
            server.pgbench(&dir, clients, seconds, &[("payload", payload.as_str())])
        })?;
        store.close();
        Ok(tps)
    }

    /// `save_batch` of `size` new checkpoints, `batches` times.
    pub(crate) async fn save_batch(&self, size: usize, batches: usize) -> anyhow::Result<Figures> {
        let store = self.store("batch", 2, true).await?;
        let mut samples = Samples::with_units(size);
        let started = Instant::now();
        for b in 0..batches {
            let items: Vec<Checkpoint> = (0..size)
                .map(|_| self.checkpoint(&format!("batch-{b}")))
                .collect();
            let t = Instant::now();
            store.save_batch(&items).await?;
            samples.record(t.elapsed());
        }
        samples.set_elapsed(started.elapsed());
        store.close();
        Ok(samples.figures())
    }

    /// Saves `executions` × `each` checkpoints with batches of 1,000 and returns their ids.
    pub(crate) async fn fill(
        &self,
        store: &PostgresStore,
        prefix: &str,
        executions: usize,
        each: usize,
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(executions * each);
        let mut batch = Vec::with_capacity(1000);
        for e in 0..executions {
            for _ in 0..each {
                batch.push(self.checkpoint(&format!("{prefix}-{e}")));
                if batch.len() == 1000 {
                    store.save_batch(&batch).await?;
                    ids.extend(batch.drain(..).map(|cp| cp.id));
                }
            }
        }
        if !batch.is_empty() {
            store.save_batch(&batch).await?;
            ids.extend(batch.drain(..).map(|cp| cp.id));
        }
        Ok(ids)
    }

    /// Reads on 100 executions of 100 plus one history of 10,000.
    pub(crate) async fn reads(&self) -> anyhow::Result<Reads> {
        let store = self.store("reads", 2, true).await?;
        let ids = self.fill(&store, "exec", 100, 100).await?;
        self.fill(&store, "long", 1, 10_000).await?;
        let client = self.server.client().await?;
        client
            .batch_execute(&format!("ANALYZE {}", store.table().quoted()))
            .await?;
        let mut pick = Picker::new(7);
        let load = run_for(self.seconds, 50_000, |_| {
            let id = ids[pick.below(ids.len())].clone();
            let store = &store;
            async move {
                store.load(&id).await?;
                Ok(())
            }
        })
        .await?
        .figures();
        let latest = run_for(self.seconds, 50_000, |_| {
            let execution = format!("exec-{}", pick.below(100));
            let store = &store;
            async move {
                store.latest(&execution).await?;
                Ok(())
            }
        })
        .await?
        .figures();
        let page = |after: i64| {
            let store = &store;
            run_for(self.seconds, 50_000, move |_| async move {
                let page = store
                    .list_page(&ListQuery::new("long-0").after(after).limit(20))
                    .await?;
                anyhow::ensure!(page.items.len() == 20, "a full page");
                Ok(())
            })
        };
        let page_start = page(0).await?.figures();
        let page_middle = page(5_000).await?.figures();
        let page_end = page(9_979).await?.figures();
        let row = client
            .query_one(
                &format!(
                    "SELECT pg_total_relation_size('{table}')::float8 / count(*) FROM {table}",
                    table = store.table().quoted().replace('\'', "''")
                ),
                &[],
            )
            .await?;
        let bytes_per_checkpoint: f64 = row.get(0);
        store.close();
        Ok(Reads {
            load,
            latest,
            page_start,
            page_middle,
            page_end,
            bytes_per_checkpoint,
        })
    }

    /// `clear` of executions of 100 checkpoints.
    pub(crate) async fn clear(&self, executions: usize) -> anyhow::Result<Figures> {
        let store = self.store("clear", 2, true).await?;
        self.fill(&store, "clear", executions, 100).await?;
        let samples = run_for(Duration::from_secs(3600), executions, |i| {
            let store = &store;
            async move {
                anyhow::ensure!(store.clear(&format!("clear-{i}")).await? == 100);
                Ok(())
            }
        })
        .await?;
        store.close();
        Ok(samples.figures())
    }

    /// `prune` keeping the newest 10 of executions of 100 checkpoints.
    pub(crate) async fn prune(&self, executions: usize) -> anyhow::Result<Figures> {
        let store = self.store("prune", 2, true).await?;
        self.fill(&store, "prune", executions, 100).await?;
        let samples = run_for(Duration::from_secs(3600), executions, |i| {
            let store = &store;
            async move {
                let policy = RetentionPolicy::keep_last(10).for_execution(format!("prune-{i}"));
                anyhow::ensure!(store.prune(&policy).await? == 90);
                Ok(())
            }
        })
        .await?;
        store.close();
        Ok(samples.figures())
    }

    /// Median latencies of `latest`, `load` and `list_page` at 10,000 rows and at `total`.
    pub(crate) async fn scale(&self, total: usize) -> anyhow::Result<Scale> {
        let store = self.store("scale", 8, true).await?;
        let ids = self.fill(&store, "exec", 100, 100).await?;
        let client = self.server.client().await?;
        let analyze = format!("ANALYZE {}", store.table().quoted());
        client.batch_execute(&analyze).await?;
        let small = self.probe(&store, &ids).await?;

        // The rest with four loaders in parallel: 100 checkpoints in each new execution.
        let started = Instant::now();
        let executions = total.saturating_sub(10_000) / 100;
        let chunks = executions.div_ceil(10);
        let loaders = (0..4).map(|l| {
            let store = store.clone();
            let payload = self.payload.clone();
            tokio::spawn(async move {
                // Chunks of 10 executions (1,000 rows), every fourth chunk for this loader.
                for chunk in (l..chunks).step_by(4) {
                    let first = 100 + chunk * 10;
                    let last = (first + 10).min(100 + executions);
                    let batch: Vec<Checkpoint> = (first..last)
                        .flat_map(|x| (0..100).map(move |_| x))
                        .map(|x| Checkpoint::new(format!("exec-{x}"), "node", payload.clone()))
                        .collect();
                    store.save_batch(&batch).await?;
                }
                anyhow::Ok(())
            })
        });
        for loader in futures::future::join_all(loaders).await {
            loader??;
        }
        let load_seconds = started.elapsed().as_secs_f64();
        client.batch_execute(&analyze).await?;
        let rows: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {}", store.table().quoted()),
                &[],
            )
            .await?
            .get(0);
        let large = self.probe(&store, &ids).await?;
        store.close();
        Ok(Scale {
            rows: usize::try_from(rows)?,
            load_rows_per_second: (rows as f64 - 10_000.0) / load_seconds,
            small,
            large,
        })
    }

    async fn probe(&self, store: &PostgresStore, ids: &[String]) -> anyhow::Result<[f64; 3]> {
        let mut pick = Picker::new(11);
        let n = 3_000;
        let latest = run_for(Duration::from_secs(3600), n, |_| {
            let execution = format!("exec-{}", pick.below(100));
            async move {
                store.latest(&execution).await?;
                Ok(())
            }
        })
        .await?
        .figures();
        let load = run_for(Duration::from_secs(3600), n, |_| {
            let id = ids[pick.below(ids.len())].clone();
            async move {
                store.load(&id).await?;
                Ok(())
            }
        })
        .await?
        .figures();
        let page = run_for(Duration::from_secs(3600), n, |_| {
            let execution = format!("exec-{}", pick.below(100));
            async move {
                store
                    .list_page(&ListQuery::new(execution).after(50).limit(20))
                    .await?;
                Ok(())
            }
        })
        .await?
        .figures();
        Ok([latest.p50_ms, load.p50_ms, page.p50_ms])
    }
}

/// Turns the store's save statement into a pgbench script with the same shape of arguments.
pub(crate) fn pgbench_script(save: &str) -> String {
    // Highest placeholders first, so that `$1` never eats the start of `$13`.
    let arguments = [
        ("$13", "NULL"),
        ("$12", "NULL"),
        ("$11", "NULL"),
        ("$10", "NULL"),
        ("$9", "NULL"),
        ("$8", "NULL"),
        ("$7", ":v"),
        ("$6", "now()"),
        ("$5", "'{}'"),
        ("$4", ":payload"),
        ("$3", "'node'"),
        ("$2", "('pgb-exec-' || :client_id)"),
        ("$1", "('pgb-' || :client_id || '-' || :r)"),
    ];
    let mut statement = save.to_owned();
    for (placeholder, value) in arguments {
        statement = statement.replace(placeholder, value);
    }
    format!("\\set r random(1, 1000000000000000)\n\\set v 0\n{statement};\n")
}

pub(crate) struct Reads {
    pub load: Figures,
    pub latest: Figures,
    pub page_start: Figures,
    pub page_middle: Figures,
    pub page_end: Figures,
    pub bytes_per_checkpoint: f64,
}

pub(crate) struct Scale {
    pub rows: usize,
    pub load_rows_per_second: f64,
    /// Median ms of latest, load, list_page at 10,000 rows.
    pub small: [f64; 3],
    /// The same at `rows`.
    pub large: [f64; 3],
}

/// The memory backend: `latest` calls per second on one task, and `save` cost with few and
/// many executions stored.
pub(crate) async fn memory(state: &Value) -> anyhow::Result<(f64, f64, f64)> {
    let store = MemoryStore::new();
    for e in 0..100 {
        for _ in 0..10 {
            store
                .save(&Checkpoint::new(format!("m-{e}"), "node", state.clone()))
                .await?;
        }
    }
    let names: Vec<String> = (0..100).map(|e| format!("m-{e}")).collect();
    let calls = 1_000_000;
    let started = Instant::now();
    for i in 0..calls {
        std::hint::black_box(store.latest(&names[i % 100]).await?);
    }
    let latest_per_second = calls as f64 / started.elapsed().as_secs_f64();

    let save_rate = |executions: usize| {
        let state = state.clone();
        async move {
            let store = Arc::new(MemoryStore::new());
            let prefill: Vec<Checkpoint> = (0..executions)
                .map(|e| Checkpoint::new(format!("m-{e}"), "node", state.clone()))
                .collect();
            store.save_batch(&prefill).await?;
            let mut pick = Picker::new(3);
            let n = 200_000;
            let items: Vec<Checkpoint> = (0..n)
                .map(|_| {
                    Checkpoint::new(
                        format!("m-{}", pick.below(executions)),
                        "node",
                        state.clone(),
                    )
                })
                .collect();
            let started = Instant::now();
            for cp in &items {
                store.save(cp).await?;
            }
            anyhow::Ok(f64::from(n) / started.elapsed().as_secs_f64())
        }
    };
    let few = save_rate(1_000).await?;
    let many = save_rate(100_000).await?;
    Ok((latest_per_second, few, many))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_marks_are_short_identifiers() {
        let mark = run_mark();
        assert!(!mark.is_empty() && mark.len() <= 16, "{mark}");
        assert!(mark
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        // The longest schema a workload names stays within PostgreSQL's 63 bytes.
        let longest = format!("bench_{mark}_growth_delta_zstd_{}", usize::MAX);
        assert!(longest.len() <= 63, "{longest}");
    }

    #[test]
    fn payload_has_the_requested_size() {
        for bytes in [64, 1024, 4096] {
            assert_eq!(payload(bytes).to_string().len(), bytes);
        }
    }

    #[test]
    fn the_pgbench_script_runs_the_same_statement() {
        let save = "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 = 0 THEN 1 ELSE $7 END, $8, $9, $10, $11, $12, $13 + 1)";
        let script = pgbench_script(save);
        assert!(!script.contains('$'), "{script}");
        assert!(script.contains(":payload"));
        assert!(script.contains("CASE WHEN :v = 0 THEN 1 ELSE :v END"));
        assert!(script.starts_with("\\set r random("));
        assert!(script.contains("NULL + 1"), "{script}");
    }

    #[test]
    fn the_picker_stays_in_range() {
        let mut p = Picker::new(5);
        assert!((0..1000).all(|_| p.below(7) < 7));
    }
}
