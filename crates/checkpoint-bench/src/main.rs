//! `checkpoint-bench`: throughput and latency of the checkpoint stores, measured against
//! PostgreSQL's own limit for the same statement (pgbench) in the same run.
//!
//! ```sh
//! cargo run --release -p checkpoint-bench                      # starts a container (fsync on)
//! cargo run --release -p checkpoint-bench -- --database-url postgres://...
//! cargo run --release -p checkpoint-bench -- --scale           # adds the 1,000,000-row check
//! cargo run --release -p checkpoint-bench -- --only save       # save workloads and pgbench
//! cargo run --release -p checkpoint-bench -- --only growth     # a growing state, each storage
//! cargo run --release -p checkpoint-bench -- --only encryption # encryption at rest off and on
//! cargo run --release -p checkpoint-bench -- --only sqlite     # SQLite, no server needed
//! cargo run --release -p checkpoint-bench -- --only layout     # plain vs partitioned and distributed
//! cargo run --release -p checkpoint-bench -- --only retention  # prune's DELETE vs dropping partitions
//! cargo run --release -p checkpoint-bench --features adk -- --only adk  # adk-graph's checkpointer
//! ```
//!
//! Prints a table and, last, one JSON line with every figure.

#[cfg(feature = "adk")]
mod adk;
mod encryption;
mod growth;
mod layout;
mod retention;
mod scheduled;
mod server;
mod sqlite;
mod stats;
mod workloads;

use std::time::Duration;

use checkpoint_postgres::{Compression, GroupCommit, StateEncoding};
use checkpoint_sqlite::Durability;
use clap::{Parser, ValueEnum};
use serde_json::{json, Map, Value};

use crate::server::{Server, DEFAULT_IMAGE};
use crate::stats::Figures;
use crate::workloads::{Bench, Setup};

#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// An existing server to measure; without it a container is started (fsync on).
    #[arg(long)]
    database_url: Option<String>,
    /// The image for the container and for pgbench (name:tag).
    #[arg(long, env = "CHECKPOINT_TEST_POSTGRES_IMAGE", default_value = DEFAULT_IMAGE)]
    image: String,
    /// Seconds per timed workload.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Size of each checkpoint's state, as compact JSON.
    #[arg(long, default_value_t = 1024)]
    state_bytes: usize,
    /// Also load 1,000,000 rows and compare read latencies at 10,000 and 1,000,000 rows.
    #[arg(long)]
    scale: bool,
    /// Rows for --scale.
    #[arg(long, default_value_t = 1_000_000)]
    scale_rows: usize,
    /// Skip pgbench (no ratios).
    #[arg(long)]
    skip_pgbench: bool,
    /// Run one group of workloads only.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Groups in flight at once for the grouped save workloads (default: the store's).
    #[arg(long)]
    group_in_flight: Option<usize>,
    /// Old checkpoints the retention workload removes (from each of two tables).
    #[arg(long, default_value_t = 1_000_000)]
    retention_rows: usize,
    /// Steps of the growth workload.
    #[arg(long, default_value_t = 500)]
    growth_steps: usize,
}

/// A group of workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Only {
    /// The save workloads and their pgbench baselines.
    Save,
    /// One execution whose state grows by ~1 KiB a step, under each way of storing states.
    Growth,
    /// A sequential save and `latest` with encryption at rest off and on.
    Encryption,
    /// `SqliteStore` on a temp file under each durability setting; needs no server.
    Sqlite,
    /// The plain table against the hash-partitioned layout (16 partitions), the
    /// time-partitioned one (33 daily partitions) and the distributed one (undistributed).
    Layout,
    /// 16 tasks saving with scheduled retention off and on (keep the newest 20, a pass every
    /// second, then every 100 ms), twice; not part of the default run.
    Scheduled,
    /// Removing the same old checkpoints with `prune` (plain table) and by dropping
    /// partitions (time-partitioned table); not part of the default run (it loads two tables
    /// of 1,100,000 rows).
    Retention,
    /// adk-graph's checkpointer over the store, without and with a retention policy, against
    /// the store's own save (needs the `adk` feature); not part of the default run.
    Adk,
}

struct Report {
    json: Map<String, Value>,
}

impl Report {
    fn row(&mut self, key: &str, label: &str, f: &Figures) {
        println!(
            "{label:<44} {:>12.0} {:>9.3} {:>9.3}",
            f.per_second, f.p50_ms, f.p99_ms
        );
        self.json.insert(
            key.into(),
            json!({"per_second": round(f.per_second), "p50_ms": round(f.p50_ms), "p99_ms": round(f.p99_ms), "ops": f.ops}),
        );
    }

    fn value(&mut self, key: &str, label: &str, value: f64) {
        println!("{label:<44} {value:>12.2}");
        self.json.insert(key.into(), json!(round(value)));
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut report = Report { json: Map::new() };
    if args.only == Some(Only::Sqlite) {
        header(&format!(
            "SQLite {}, state {} bytes, {} s per workload",
            checkpoint_sqlite::sqlite_version(),
            args.state_bytes,
            args.seconds
        ));
        sqlite(&args, &mut report).await?;
        report
            .json
            .insert("state_bytes".into(), json!(args.state_bytes));
        println!("{}", json!({ "checkpoint_bench": report.json }));
        return Ok(());
    }
    let server = Server::start(args.database_url.clone(), &args.image).await?;
    let client = server.client().await?;
    let fsync: String = client.query_one("SHOW fsync", &[]).await?.get(0);
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let bench = Bench::new(server, Duration::from_secs(args.seconds), args.state_bytes);
    header(&format!(
        "PostgreSQL {version}, fsync={fsync}, state {} bytes, {} s per workload",
        args.state_bytes, args.seconds
    ));

    if args.only.is_none() || args.only == Some(Only::Save) {
        saves(&bench, &args, &mut report).await?;
    }
    if args.only.is_none() || args.only == Some(Only::Growth) {
        growth(&bench, &args, &mut report).await?;
    }
    if args.only.is_none() || args.only == Some(Only::Encryption) {
        encrypted(&bench, &args, &mut report).await?;
    }
    if args.only.is_none() || args.only == Some(Only::Layout) {
        layouts(&bench, &mut report).await?;
    }
    if args.only == Some(Only::Scheduled) {
        scheduled_retention(&bench, &mut report).await?;
    }
    if args.only == Some(Only::Retention) {
        retention_by_drop(&bench, &args, &mut report).await?;
    }
    if args.only == Some(Only::Adk) {
        adk_checkpointer(&bench, &mut report).await?;
    }
    if args.only.is_none() {
        rest(&bench, &args, &mut report).await?;
        sqlite(&args, &mut report).await?;
    }

    report.json.insert("fsync".into(), json!(fsync));
    report.json.insert("server_version".into(), json!(version));
    report
        .json
        .insert("state_bytes".into(), json!(args.state_bytes));
    println!("{}", json!({ "checkpoint_bench": report.json }));
    Ok(())
}

/// The save workloads with group commit on (the default) and off, with pgbench running the
/// same single-row statement as the baseline.
async fn saves(bench: &Bench, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let mut on = Setup::default();
    if let Some(n) = args.group_in_flight {
        on.group = on.group.max_in_flight(n);
    }
    let off = Setup {
        group: GroupCommit::disabled(),
        ..on
    };
    let mut per_second = std::collections::HashMap::new();
    let mut p99 = std::collections::HashMap::new();
    for tasks in [1, 4, 16, 64] {
        for (mode, setup) in [("grouped", on), ("alone", off)] {
            let (f, groups) = bench.save_with(tasks, setup).await?;
            let label = match tasks {
                1 => format!("save, 1 task, {mode}"),
                n => format!("save, {n} tasks (own executions), {mode}"),
            };
            let key = match (tasks, mode) {
                (1, "grouped") => "save_sequential".to_owned(),
                (1, _) => format!("save_sequential_{mode}"),
                (n, "grouped") => format!("save_concurrent_{n}"),
                (n, _) => format!("save_concurrent_{n}_{mode}"),
            };
            report.row(&key, &label, &f);
            if let Some(groups) = groups.filter(|_| tasks > 1) {
                report.value(
                    &format!("group_size_mean_{tasks}"),
                    &format!("  group size at {tasks} tasks, mean"),
                    groups.mean_size(),
                );
                report.value(
                    &format!("group_size_p99_{tasks}"),
                    &format!("  group size at {tasks} tasks, p99"),
                    groups.size_quantile(0.99) as f64,
                );
            }
            per_second.insert((tasks, mode), f.per_second);
            p99.insert((tasks, mode), f.p99_ms);
        }
    }
    let rate = |tasks, mode| per_second.get(&(tasks, mode)).copied().unwrap_or(0.0);
    report.value(
        "ratio_grouped_vs_alone_16",
        "ratio: 16 tasks grouped / alone",
        rate(16, "grouped") / rate(16, "alone"),
    );
    let tail = |mode| p99.get(&(16, mode)).copied().unwrap_or(0.0);
    report.value(
        "ratio_p99_grouped_vs_alone_16",
        "ratio: p99 at 16 tasks grouped / alone",
        tail("grouped") / tail("alone"),
    );

    if !args.skip_pgbench {
        let pg1 = bench.pgbench(1).await?;
        let pg16 = bench.pgbench(16).await?;
        report.value("pgbench_c1_tps", "pgbench same insert, 1 client (tps)", pg1);
        report.value(
            "pgbench_c16_tps",
            "pgbench same insert, 16 clients (tps)",
            pg16,
        );
        report.value(
            "ratio_save_vs_pgbench_c1",
            "ratio: save 1 task / pgbench c1",
            rate(1, "grouped") / pg1,
        );
        report.value(
            "ratio_save_vs_pgbench_c16",
            "ratio: save 16 tasks / pgbench c16",
            rate(16, "grouped") / pg16,
        );
        report.value(
            "ratio_save_64_vs_pgbench_c16",
            "ratio: save 64 tasks / pgbench c16",
            rate(64, "grouped") / pg16,
        );
    }

    for tasks in [1, 16] {
        let (plain, leased) = bench.save_leased(tasks).await?;
        report.row(
            &format!("save_unleased_{tasks}"),
            &format!("save, {tasks} task(s), no lease (beside the leased rounds)"),
            &plain,
        );
        report.row(
            &format!("save_leased_{tasks}"),
            &format!("save, {tasks} task(s), each save fenced by a lease"),
            &leased,
        );
        report.value(
            &format!("ratio_leased_vs_unleased_{tasks}"),
            &format!("ratio: leased / unleased saves, {tasks} task(s)"),
            leased.per_second / plain.per_second,
        );
    }

    let jsonb = Setup {
        encoding: StateEncoding::Jsonb,
        ..on
    };
    let (jsonb_seq, _) = bench.save_with(1, jsonb).await?;
    report.row(
        "save_sequential_jsonb",
        "save, 1 task, JSONB storage",
        &jsonb_seq,
    );

    let relaxed_seq = bench.save(1, false).await?;
    let relaxed_16 = bench.save(16, false).await?;
    report.row(
        "save_sequential_async_commit",
        "save, 1 task, synchronous_commit off",
        &relaxed_seq,
    );
    report.row(
        "save_concurrent_16_async_commit",
        "save, 16 tasks, synchronous_commit off",
        &relaxed_16,
    );

    Ok(())
}

/// adk-graph's checkpointer over PostgreSQL and SQLite ([`adk`]).
#[cfg(feature = "adk")]
async fn adk_checkpointer(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    for tasks in [1, 16] {
        adk_rows(
            report,
            "adk",
            "adk",
            tasks,
            &adk::measure(bench, tasks).await?,
        );
    }
    for tasks in [1, 4] {
        let f = adk::measure_sqlite(bench, tasks).await?;
        adk_rows(report, "adk_sqlite", "adk on sqlite", tasks, &f);
    }
    Ok(())
}

/// The rows of one backend's adk figures at `tasks` tasks, keys starting with `key`.
#[cfg(feature = "adk")]
fn adk_rows(report: &mut Report, key: &str, label: &str, tasks: usize, f: &adk::AdkFigures) {
    report.row(
        &format!("{key}_store_save_{tasks}"),
        &format!("{label}: store save, {tasks} tasks"),
        &f.store,
    );
    report.row(
        &format!("{key}_save_{tasks}"),
        &format!("{label}: adapter save, {tasks} tasks"),
        &f.adapter,
    );
    report.row(
        &format!("{key}_save_prune_{tasks}"),
        &format!("{label}: adapter save + prune, {tasks} tasks"),
        &f.pruning,
    );
    report.value(
        &format!("ratio_{key}_save_vs_store_{tasks}"),
        "  ratio: adapter / store",
        f.adapter.per_second / f.store.per_second,
    );
    report.value(
        &format!("ratio_{key}_prune_vs_save_{tasks}"),
        &format!("  ratio: with keep_last({}) / without", adk::KEEP),
        f.pruning.per_second / f.adapter.per_second,
    );
}

#[cfg(not(feature = "adk"))]
async fn adk_checkpointer(_bench: &Bench, _report: &mut Report) -> anyhow::Result<()> {
    anyhow::bail!("the adk workloads need the `adk` feature: cargo run --release -p checkpoint-bench --features adk -- --only adk")
}

/// Saves beside scheduled retention, against saves without it, twice.
async fn scheduled_retention(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    for round in 1..=2 {
        let f = scheduled::measure(bench).await?;
        report.row(
            &format!("scheduled_off_{round}"),
            &format!("save, 16 tasks, no retention ({round})"),
            &f.off,
        );
        for ((every, on), most) in scheduled::EVERY.iter().zip(&f.on).zip(&f.most_left) {
            let ms = every.as_millis();
            report.row(
                &format!("scheduled_every_{ms}ms_{round}"),
                &format!("save, 16 tasks, retention every {ms} ms ({round})"),
                on,
            );
            report.value(
                &format!("scheduled_every_{ms}ms_most_left_{round}"),
                "  most checkpoints left in one execution",
                *most as f64,
            );
            report.value(
                &format!("ratio_scheduled_every_{ms}ms_vs_off_{round}"),
                "  ratio: save with / without retention",
                on.per_second / f.off.per_second,
            );
        }
    }
    report
        .json
        .insert("scheduled_keep_last".into(), json!(scheduled::KEEP));
    Ok(())
}

/// Retention of `--retention-rows` old checkpoints: `prune`'s DELETE on the plain table
/// against dropping partitions of the time-partitioned one.
async fn retention_by_drop(bench: &Bench, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let f = retention::measure(bench, args.retention_rows).await?;
    for (name, r) in [("delete", &f.delete), ("drop", &f.drop)] {
        report.value(
            &format!("retention_{name}_seconds"),
            &format!("retention by {name}: seconds"),
            r.seconds,
        );
        report.value(
            &format!("retention_{name}_vacuum_seconds"),
            &format!("retention by {name}: VACUUM after, seconds"),
            r.vacuum_seconds,
        );
        report.value(
            &format!("retention_{name}_rows_removed"),
            &format!("retention by {name}: rows removed"),
            r.rows_removed as f64,
        );
        report.value(
            &format!("retention_{name}_wal_mb"),
            &format!("retention by {name}: WAL written, MB"),
            r.wal_bytes as f64 / 1e6,
        );
        report.value(
            &format!("retention_{name}_rows_left"),
            &format!("retention by {name}: rows left"),
            r.rows_left as f64,
        );
        report.value(
            &format!("retention_{name}_mb_left"),
            &format!("retention by {name}: table MB after VACUUM"),
            r.bytes_left as f64 / 1e6,
        );
    }
    report.value(
        "retention_partitions_dropped",
        "retention by drop: partitions dropped",
        f.partitions_dropped as f64,
    );
    report.value(
        "ratio_retention_delete_vs_drop",
        "ratio: time, DELETE / drop",
        f.delete.seconds / f.drop.seconds,
    );
    report.value(
        "ratio_retention_delete_vacuum_vs_drop_vacuum",
        "ratio: time with VACUUM, DELETE / drop",
        (f.delete.seconds + f.delete.vacuum_seconds) / (f.drop.seconds + f.drop.vacuum_seconds),
    );
    report.value(
        "ratio_retention_wal_delete_vs_drop",
        "ratio: WAL, DELETE / drop",
        f.delete.wal_bytes as f64 / (f.drop.wal_bytes.max(1)) as f64,
    );
    Ok(())
}

/// Every layout (two rounds, see [`layout`]), then each one's ratios to the plain table.
async fn layouts(bench: &Bench, report: &mut Report) -> anyhow::Result<()> {
    use checkpoint_postgres::{PartitionPeriod, TableLayout};
    // Daily partitions for the past 30 days, today and two ahead (see Bench::store_with).
    let [plain, hashed, timed, distributed]: [layout::LayoutFigures; 4] = layout::measure_all(
        bench,
        &[
            TableLayout::Plain,
            TableLayout::hash_partitioned(16)?,
            TableLayout::time_partitioned(PartitionPeriod::Day),
            TableLayout::Distributed,
        ],
    )
    .await?
    .try_into()
    .map_err(|_| anyhow::anyhow!("one figure per layout"))?;
    for (name, f) in [
        ("plain", &plain),
        ("hash16", &hashed),
        ("day33", &timed),
        ("distributed", &distributed),
    ] {
        report.row(
            &format!("layout_{name}_save_1"),
            &format!("{name}: save, 1 task"),
            &f.save_1,
        );
        report.row(
            &format!("layout_{name}_save_16"),
            &format!("{name}: save, 16 tasks"),
            &f.save_16,
        );
        report.row(
            &format!("layout_{name}_latest"),
            &format!("{name}: latest"),
            &f.latest,
        );
        report.row(
            &format!("layout_{name}_load"),
            &format!("{name}: load by id"),
            &f.load,
        );
        report.row(
            &format!("layout_{name}_load_in"),
            &format!("{name}: load_in (execution, id)"),
            &f.load_in,
        );
    }
    for (name, f) in [
        ("hash", &hashed),
        ("day33", &timed),
        ("distributed", &distributed),
    ] {
        report.value(
            &format!("ratio_layout_save_1_{name}_vs_plain"),
            &format!("ratio: save 1 task, {name} / plain"),
            f.save_1.per_second / plain.save_1.per_second,
        );
        report.value(
            &format!("ratio_layout_save_16_{name}_vs_plain"),
            &format!("ratio: save 16 tasks, {name} / plain"),
            f.save_16.per_second / plain.save_16.per_second,
        );
        report.value(
            &format!("ratio_layout_latest_p50_{name}_vs_plain"),
            &format!("ratio: latest p50, {name} / plain"),
            f.latest.p50_ms / plain.latest.p50_ms,
        );
        report.value(
            &format!("ratio_layout_load_p50_{name}_vs_plain"),
            &format!("ratio: load p50, {name} / plain"),
            f.load.p50_ms / plain.load.p50_ms,
        );
        report.value(
            &format!("ratio_layout_load_in_p50_{name}_vs_plain_load"),
            &format!("ratio: load_in p50, {name} / plain load"),
            f.load_in.p50_ms / plain.load.p50_ms,
        );
    }
    Ok(())
}

fn header(title: &str) {
    println!("{title}");
    println!(
        "{:<44} {:>12} {:>9} {:>9}",
        "workload", "ops/s", "p50 ms", "p99 ms"
    );
}

/// The SQLite workloads under full durability (the default, and the baseline) and normal.
async fn sqlite(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let seconds = Duration::from_secs(args.seconds);
    let mut runs = Vec::new();
    for durability in [Durability::Full, Durability::Normal] {
        let f = sqlite::measure(durability, seconds, args.state_bytes).await?;
        let d = f.durability;
        report.row(
            &format!("sqlite_{d}_save_1"),
            &format!("sqlite {d}: save, 1 task"),
            &f.save_1,
        );
        report.row(
            &format!("sqlite_{d}_save_4"),
            &format!("sqlite {d}: save, 4 tasks"),
            &f.save_4,
        );
        report.value(
            &format!("sqlite_{d}_save_4_mean_group"),
            &format!("sqlite {d}: saves per commit at 4 tasks"),
            f.mean_group_4,
        );
        report.row(
            &format!("sqlite_{d}_save_batch_1000"),
            &format!("sqlite {d}: save_batch of 1,000 (rows/s)"),
            &f.batch_1000,
        );
        report.row(
            &format!("sqlite_{d}_latest"),
            &format!("sqlite {d}: latest"),
            &f.latest,
        );
        report.row(
            &format!("sqlite_{d}_page_20"),
            &format!("sqlite {d}: 20 newest (list_page)"),
            &f.page_20,
        );
        report.row(
            &format!("sqlite_{d}_load"),
            &format!("sqlite {d}: load by id"),
            &f.load,
        );
        report.row(
            &format!("sqlite_{d}_bare_insert"),
            &format!("sqlite {d}: bare rusqlite insert + commit"),
            &f.bare.insert,
        );
        report.row(
            &format!("sqlite_{d}_bare_read_1"),
            &format!("sqlite {d}: bare rusqlite read, newest row"),
            &f.bare.read_1,
        );
        report.row(
            &format!("sqlite_{d}_bare_read_20"),
            &format!("sqlite {d}: bare rusqlite read, 20 newest"),
            &f.bare.read_20,
        );
        report.value(
            &format!("ratio_sqlite_{d}_save_1_vs_bare_insert"),
            &format!("ratio: sqlite {d} save, 1 task / bare insert + commit"),
            f.save_1.per_second / f.bare.insert.per_second,
        );
        report.value(
            &format!("ratio_sqlite_{d}_latest_p50_vs_bare"),
            &format!("ratio: sqlite {d} latest p50 / bare read"),
            f.latest.p50_ms / f.bare.read_1.p50_ms,
        );
        report.value(
            &format!("ratio_sqlite_{d}_page_20_p50_vs_bare"),
            &format!("ratio: sqlite {d} 20 newest p50 / bare read of 20"),
            f.page_20.p50_ms / f.bare.read_20.p50_ms,
        );
        report.value(
            &format!("sqlite_{d}_bytes_per_checkpoint"),
            &format!("sqlite {d}: file bytes per checkpoint"),
            f.bytes_per_checkpoint,
        );
        report.value(
            &format!("sqlite_{d}_state_bytes_per_checkpoint"),
            &format!("sqlite {d}: stored state bytes per checkpoint"),
            f.state_bytes_per_checkpoint,
        );
        runs.push(f);
    }
    if let [full, normal] = &runs[..] {
        report.value(
            "ratio_sqlite_save_1_normal_vs_full",
            "ratio: sqlite save, 1 task, normal / full",
            normal.save_1.per_second / full.save_1.per_second,
        );
        report.value(
            "ratio_sqlite_save_4_vs_1_full",
            "ratio: sqlite full save, 4 tasks / 1 task",
            full.save_4.per_second / full.save_1.per_second,
        );
    }
    sqlite_growth(args, report).await
}

/// The header of a growth table, `title` naming the backend.
fn growth_header(title: &str, steps: usize) {
    println!(
        "{title}, {steps} steps of ~1 KiB: {:<20} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "storage", "bytes/step", "save 1-10", "save last", "latest", "load mid"
    );
}

/// One row of a growth table.
fn growth_row(name: &str, g: &growth::Growth) {
    println!(
        "{:<46} {:>12.0} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
        name,
        g.bytes_per_step,
        g.save_p50_ms_first10,
        g.save_p50_ms_last10,
        g.latest_p50_ms,
        g.load_middle_p50_ms
    );
}

/// The growth workload on SQLite: whole states, deltas at the default snapshot distance, and
/// the distances the default was chosen from.
async fn sqlite_growth(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    // Whole states last: writing 45 MB leaves the disk busy flushing for a while after, which
    // would weigh on the run that follows.
    let runs = [
        (
            "delta",
            checkpoint_sqlite::SqliteOptions::DEFAULT_SNAPSHOT_EVERY,
        ),
        ("delta_k8", 8),
        ("delta_k16", 16),
        ("delta_k32", 32),
        ("delta_k128", 128),
        ("whole", 1),
    ];
    let mut all = Map::new();
    growth_header("sqlite growth", args.growth_steps);
    for (name, every) in runs {
        let g = sqlite::growth(every, args.growth_steps).await?;
        growth_row(name, &g);
        all.insert(name.into(), g.json());
    }
    let field = |key: &str, field: &str| {
        all.get(key)
            .and_then(|g| g[field].as_f64())
            .unwrap_or(f64::NAN)
    };
    report.value(
        "ratio_sqlite_growth_bytes_whole_vs_delta",
        "ratio: sqlite growth bytes/step whole / delta",
        field("whole", "bytes_per_step") / field("delta", "bytes_per_step"),
    );
    report.value(
        "ratio_sqlite_growth_delta_save_last10_vs_first10",
        "ratio: sqlite growth delta save p50 last 10 / first 10",
        field("delta", "save_p50_ms_last10") / field("delta", "save_p50_ms_first10"),
    );
    report.value(
        "ratio_sqlite_growth_whole_save_last10_vs_first10",
        "ratio: sqlite growth whole save p50 last 10 / first 10",
        field("whole", "save_p50_ms_last10") / field("whole", "save_p50_ms_first10"),
    );
    report.value(
        "sqlite_growth_delta_latest_p50_ms",
        "sqlite growth delta: latest p50 at the last step (ms)",
        field("delta", "latest_p50_ms"),
    );
    report
        .json
        .insert("sqlite_growth".into(), Value::Object(all));
    Ok(())
}

/// A sequential save and `latest` with encryption off and on, at the configured state size and
/// at 256 KiB of text stored whole.
async fn encrypted(bench: &Bench, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    for bytes in [args.state_bytes, 256 * 1024] {
        let plain = encryption::measure(bench, bytes, false).await?;
        let sealed = encryption::measure(bench, bytes, true).await?;
        let kib = bytes / 1024;
        report.row(
            &format!("save_plain_{kib}k"),
            &format!("save, 1 task, {kib} KiB, plain"),
            &plain.save,
        );
        report.row(
            &format!("save_encrypted_{kib}k"),
            &format!("save, 1 task, {kib} KiB, encrypted"),
            &sealed.save,
        );
        report.row(
            &format!("latest_plain_{kib}k"),
            &format!("latest, {kib} KiB, plain"),
            &plain.latest,
        );
        report.row(
            &format!("latest_encrypted_{kib}k"),
            &format!("latest, {kib} KiB, encrypted"),
            &sealed.latest,
        );
        report.value(
            &format!("ratio_save_encrypted_vs_plain_{kib}k"),
            &format!("ratio: save encrypted / plain, {kib} KiB"),
            sealed.save.per_second / plain.save.per_second,
        );
        report.value(
            &format!("ratio_latest_p50_encrypted_vs_plain_{kib}k"),
            &format!("ratio: latest p50 encrypted / plain, {kib} KiB"),
            sealed.latest.p50_ms / plain.latest.p50_ms,
        );
    }
    Ok(())
}

/// The growth workload under full (JSONB) and delta storage, and the delta variants the
/// defaults were chosen from.
async fn growth(bench: &Bench, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let zstd = Compression::default();
    let delta = |every| StateEncoding::delta(every).expect("a valid distance");
    let runs = [
        ("full", StateEncoding::Jsonb, zstd),
        ("delta", StateEncoding::default(), zstd),
        ("delta_lz4", StateEncoding::default(), Compression::Lz4),
        (
            "delta_uncompressed",
            StateEncoding::default(),
            Compression::None,
        ),
        ("delta_k16", delta(16), zstd),
        ("delta_k256", delta(256), zstd),
        ("snapshots_zstd", delta(1), zstd),
    ];
    let mut all = Map::new();
    growth_header("growth", args.growth_steps);
    for (name, encoding, compression) in runs {
        let g = bench
            .growth(
                growth::Storage {
                    name,
                    encoding,
                    compression,
                },
                args.growth_steps,
            )
            .await?;
        growth_row(name, &g);
        all.insert(name.into(), g.json());
    }
    let ratio = |key: &str, field: &str| {
        all.get(key)
            .and_then(|g| g[field].as_f64())
            .unwrap_or(f64::NAN)
    };
    let bytes_ratio = ratio("full", "bytes_per_step") / ratio("delta", "bytes_per_step");
    let save_growth = ratio("delta", "save_p50_ms_last10") / ratio("delta", "save_p50_ms_first10");
    report.value(
        "growth_bytes_ratio_full_vs_delta",
        "growth: bytes/step full / delta",
        bytes_ratio,
    );
    report.value(
        "growth_delta_save_last10_vs_first10",
        "growth: delta save p50 last 10 / first 10",
        save_growth,
    );
    report.json.insert("growth".into(), Value::Object(all));
    Ok(())
}

/// Batches, reads, removals, scale and the memory backend.
async fn rest(bench: &Bench, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let seq = bench.save(1, true).await?;
    let batch = bench.save_batch(1000, 20).await?;
    report.row(
        "save_batch_1000_rows",
        "save_batch of 1,000 (rows/s)",
        &batch,
    );
    report.value(
        "ratio_batch_vs_sequential",
        "ratio: batch rows/s / sequential save",
        batch.per_second / seq.per_second,
    );

    let reads = bench.reads().await?;
    report.row("load", "load by id (20,000 rows)", &reads.load);
    report.row("latest", "latest", &reads.latest);
    report.row(
        "list_page_start",
        "list_page 20, start of 10,000",
        &reads.page_start,
    );
    report.row(
        "list_page_middle",
        "list_page 20, middle of 10,000",
        &reads.page_middle,
    );
    report.row(
        "list_page_end",
        "list_page 20, end of 10,000",
        &reads.page_end,
    );
    report.value(
        "ratio_page_end_vs_start",
        "ratio: page at end / at start (p50)",
        reads.page_end.p50_ms / reads.page_start.p50_ms,
    );
    report.value(
        "bytes_per_checkpoint",
        "storage bytes per checkpoint (table+indexes)",
        reads.bytes_per_checkpoint,
    );

    report.row(
        "clear_100",
        "clear of an execution of 100",
        &bench.clear(50).await?,
    );
    report.row(
        "prune_keep_10_of_100",
        "prune keep 10 of 100, one execution",
        &bench.prune(50).await?,
    );

    if args.scale {
        let scale = bench.scale(args.scale_rows).await?;
        report.value("scale_rows", "scale: rows loaded", scale.rows as f64);
        report.value(
            "scale_load_rows_per_second",
            "scale: load rate (rows/s, 4 loaders)",
            scale.load_rows_per_second,
        );
        for (i, name) in ["latest", "load", "list_page"].iter().enumerate() {
            report.value(
                &format!("scale_{name}_p50_ms_small"),
                &format!("scale: {name} p50 ms at 10,000"),
                scale.small[i],
            );
            report.value(
                &format!("scale_{name}_p50_ms_large"),
                &format!("scale: {name} p50 ms at {}", scale.rows),
                scale.large[i],
            );
            report.value(
                &format!("scale_{name}_ratio"),
                &format!("scale: {name} large / small"),
                scale.large[i] / scale.small[i],
            );
        }
    }

    let (latest, few, many) = workloads::memory(&bench.payload).await?;
    report.value(
        "memory_latest_per_second",
        "memory: latest calls/s, one task",
        latest,
    );
    report.value(
        "memory_save_per_second_1k_executions",
        "memory: save/s with 1,000 executions",
        few,
    );
    report.value(
        "memory_save_per_second_100k_executions",
        "memory: save/s with 100,000 executions",
        many,
    );
    report.value(
        "memory_save_ratio_many_vs_few",
        "memory: save rate 100k / 1k executions",
        many / few,
    );
    Ok(())
}
