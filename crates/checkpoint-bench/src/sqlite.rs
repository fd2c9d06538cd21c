//! The `sqlite` workloads: `SqliteStore` on a file in the system temp dir, no server, under each
//! durability setting in the same run (`Full`, the default, is the baseline the others are
//! compared with); and the physical limit underneath, the same file driven by a bare
//! `rusqlite` loop on one connection (no pool, no async, no encoding): an insert and its
//! commit, the read of the newest row of an execution, the read of its 20 newest. And the
//! growth workload (`growth.rs`'s conversation) with whole states and with deltas.

use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, ListQuery};
use checkpoint_sqlite::{Durability, SqliteOptions, SqliteStore};

use crate::growth::{self, Growth};
use crate::stats::{save_from_tasks, time_latest, time_load, Figures, Samples};
use crate::workloads::payload;

/// Executions the sequential saves rotate over, so reads meet histories of several rows.
const EXECUTIONS: usize = 50;

/// Every figure of one durability setting.
pub(crate) struct SqliteFigures {
    pub durability: Durability,
    pub save_1: Figures,
    pub save_4: Figures,
    /// Saves per transaction during the 4-task workload (group commit).
    pub mean_group_4: f64,
    pub batch_1000: Figures,
    pub latest: Figures,
    /// `list_page` of an execution's 20 newest checkpoints.
    pub page_20: Figures,
    pub load: Figures,
    /// The bare `rusqlite` loop on the same file.
    pub bare: BareFigures,
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
pub(crate) async fn measure(
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
    // The sequential saves and the bare inserts and commits on the same file, in alternating
    // rounds of half the time each (store, bare, bare, store), each figure the mean of its
    // two: a machine that slows down during the run weighs on both alike, as in the layout
    // bench. The bare rows (execution `bare`, the bytes the store wrote for a state) stay in
    // the file for the rest of the run, as the store's own do.
    let half = seconds / 2;
    let store_first = save_from_tasks(&store, 1, half, rotating(1)).await?;
    let stored_state = sample_state(&path)?;
    let (bare_first, next) =
        tokio::task::block_in_place(|| bare_inserts(&path, durability, half, &stored_state, 0))?;
    let (bare_second, _) =
        tokio::task::block_in_place(|| bare_inserts(&path, durability, half, &stored_state, next))?;
    let store_second = save_from_tasks(&store, 1, half, rotating(1)).await?;
    let save_1 = store_first.mean(&store_second);
    let insert = bare_first.mean(&bare_second);
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
    let page_20 = time_page(&store, seconds, 13).await?;
    // Right after the store's reads, on the file as they found it.
    let (read_1, read_20) = tokio::task::block_in_place(|| bare_reads(&path, seconds))?;

    let stats = store.stats().await?;
    let checkpoints = stats.checkpoints.max(1) as f64;
    let bytes_per_checkpoint = file_bytes(&path) as f64 / checkpoints;
    let state_bytes_per_checkpoint = stats.state_bytes as f64 / checkpoints;
    store.close();
    let bare = BareFigures {
        insert,
        read_1,
        read_20,
    };
    Ok(SqliteFigures {
        durability,
        save_1,
        save_4,
        mean_group_4,
        batch_1000,
        latest,
        page_20,
        load,
        bare,
        bytes_per_checkpoint,
        state_bytes_per_checkpoint,
    })
}

/// The growth workload on a new file: `steps` saves of one conversation that gains a ~1 KiB
/// message a step, states stored with a snapshot every `snapshot_every` versions (1: whole),
/// then reads. Its bytes are the stored states' (compressed, as written), so that whole and
/// delta storage compare by what each writes, not by the file's free pages and log.
pub(crate) async fn growth(snapshot_every: u32, steps: usize) -> anyhow::Result<Growth> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("growth.db");
    let store =
        SqliteStore::open(SqliteOptions::file(&path).snapshot_every(snapshot_every)).await?;
    let timed = growth::converse(&store, steps, || async { Ok(()) }).await?;
    let stats = store.stats().await?;
    store.close();
    Ok(Growth::of(timed, stats.state_bytes as f64, steps))
}

/// `list_page` of the 20 newest checkpoints of random executions, for `budget`.
async fn time_page(
    store: &dyn CheckpointStore,
    budget: Duration,
    seed: u64,
) -> anyhow::Result<Figures> {
    let mut picker = crate::workloads::Picker::new(seed);
    Ok(crate::stats::run_for(budget, usize::MAX, |_| {
        let query = ListQuery::new(format!("e{}", picker.below(EXECUTIONS)))
            .descending()
            .limit(20);
        async move {
            anyhow::ensure!(store.list_page(&query).await?.items.len() == 20);
            Ok(())
        }
    })
    .await?
    .figures())
}

/// What a bare `rusqlite` loop does on the store's file, with the store's settings.
pub(crate) struct BareFigures {
    /// `BEGIN IMMEDIATE`, one insert of a stored row, `COMMIT`.
    pub insert: Figures,
    /// The newest row of an execution, by the `(execution_id, version)` index.
    pub read_1: Figures,
    /// The 20 newest rows of an execution.
    pub read_20: Figures,
}

/// One state as the store wrote it, for the bare inserts to write the same bytes.
fn sample_state(path: &Path) -> anyhow::Result<Vec<u8>> {
    let conn = rusqlite::Connection::open(path)?;
    Ok(conn.query_row(
        "SELECT state FROM checkpoints WHERE execution_id = 'e0' ORDER BY version DESC LIMIT 1",
        [],
        |r| r.get(0),
    )?)
}

/// The bare inserts: one connection in WAL mode with the store's `synchronous`, each insert of
/// a row as the store writes it (a snapshot: its state and its hash) in a transaction of its
/// own, numbered from `from`; returns the figures and the number the next round starts from.
fn bare_inserts(
    path: &Path,
    durability: Durability,
    budget: Duration,
    state: &[u8],
    from: i64,
) -> anyhow::Result<(Figures, i64)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;

    let mut insert = Samples::new();
    let started = Instant::now();
    let mut i = from;
    while started.elapsed() < budget {
        let t = Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.prepare_cached(
            "INSERT INTO checkpoints (id, execution_id, version, node_name, parent_id, \
             timestamp_us, metadata, state, state_hash) \
             VALUES (?1, ?2, ?3, 'node', NULL, ?4, '{}', ?5, ?4)",
        )?
        .execute(rusqlite::params![
            format!("bare-{i}"),
            "bare",
            i + 1,
            i,
            state
        ])?;
        conn.execute_batch("COMMIT")?;
        insert.record(t.elapsed());
        i = i
            .checked_add(1)
            .ok_or_else(|| anyhow::anyhow!("too many bare inserts"))?;
    }
    insert.set_elapsed(started.elapsed());
    Ok((insert.figures(), i))
}

/// The bare reads: one connection, the store's statement, every column read into owned
/// values and nothing decoded; the newest row, then the 20 newest, of random executions.
fn bare_reads(path: &Path, budget: Duration) -> anyhow::Result<(Figures, Figures)> {
    let conn = rusqlite::Connection::open(path)?;
    let read = |limit: i64, seed: u64| -> anyhow::Result<Figures> {
        let mut picker = crate::workloads::Picker::new(seed);
        let mut samples = Samples::new();
        let started = Instant::now();
        while started.elapsed() < budget {
            let execution = format!("e{}", picker.below(EXECUTIONS));
            let t = Instant::now();
            // The limit written into the statement, as the store's `latest` has it.
            let mut statement = conn.prepare_cached(&format!(
                "SELECT id, execution_id, version, node_name, parent_id, timestamp_us, \
                 metadata, state, base_version, base_hash, state_hash, depth \
                 FROM checkpoints WHERE execution_id = ?1 \
                 ORDER BY version DESC LIMIT {limit}"
            ))?;
            let mut rows = statement.query([&execution])?;
            let mut read = 0;
            while let Some(row) = rows.next()? {
                let owned: BareRow = (
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                );
                let links: BareLinks = (row.get(8)?, row.get(9)?, row.get(10)?, row.get(11)?);
                std::hint::black_box((owned, links));
                read += 1;
            }
            anyhow::ensure!(
                read == limit,
                "execution {execution} has fewer than {limit} rows"
            );
            samples.record(t.elapsed());
        }
        samples.set_elapsed(started.elapsed());
        Ok(samples.figures())
    };
    Ok((read(1, 7)?, read(20, 13)?))
}

/// A row's chain columns as the bare loop reads them.
type BareLinks = (Option<i64>, Option<i64>, Option<i64>, i64);

/// A row as the bare loop reads it: every column, owned, nothing decoded.
type BareRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    i64,
    String,
    Vec<u8>,
);
