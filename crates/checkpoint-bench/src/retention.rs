//! The `retention` workload: removing the same old checkpoints from the plain table with
//! `prune`'s `DELETE`, and from the time-partitioned table by dropping partitions, in the same
//! run.
//!
//! Both tables hold the same rows: `old` checkpoints in executions that started 31 to 60 days
//! ago, one of 30 days each, and 100,000 current ones. The plain table is filled through the
//! store; the partitioned one is copied from it in SQL, each execution's start being its first
//! checkpoint's time (the way over from the plain layout that `docs/scaling.md` gives). Each
//! side is timed with the work the server must do afterwards: the `DELETE` leaves dead rows
//! that `VACUUM` must clear before the space is reused; a dropped partition leaves nothing.

use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, RetentionPolicy};
use checkpoint_postgres::{PartitionPeriod, PostgresStore, TableLayout};
use time::OffsetDateTime;

use crate::workloads::{Bench, Setup};

/// Checkpoints per execution.
const EACH: usize = 100;
/// Current executions (kept by both).
const CURRENT: usize = 1_000;
/// The age past which checkpoints go, in days.
const RETAIN_DAYS: i64 = 30;

/// One side's figures.
pub(crate) struct Removal {
    pub seconds: f64,
    pub vacuum_seconds: f64,
    pub rows_removed: u64,
    pub wal_bytes: i64,
    pub rows_left: i64,
    pub bytes_left: i64,
}

pub(crate) struct RetentionFigures {
    pub delete: Removal,
    pub drop: Removal,
    pub partitions_dropped: usize,
}

/// Fills `store` with `old` old checkpoints and the current ones, in batches of 1,000.
async fn fill(bench: &Bench, store: &PostgresStore, old: usize) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let mut batch = Vec::with_capacity(1000);
    let old_executions = old / EACH;
    for e in 0..old_executions + CURRENT {
        let (execution, started) = if e < old_executions {
            let days = RETAIN_DAYS + 1 + i64::try_from(e % 30)?;
            (format!("old-{e}"), now - time::Duration::days(days))
        } else {
            (format!("current-{e}"), now)
        };
        for i in 0..EACH {
            let cp = Checkpoint::new(execution.as_str(), "node", bench.payload.clone())
                .with_timestamp(started + time::Duration::seconds(i64::try_from(i)?));
            batch.push(cp);
            if batch.len() == 1000 {
                store.save_batch(&batch).await?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        store.save_batch(&batch).await?;
    }
    Ok(())
}

/// The columns both layouts share, in order.
const COLUMNS: &str = "id, execution_id, node_name, state, metadata, \"timestamp\", version, \
                       parent_id, payload, base_version, base_hash, state_hash, depth";

pub(crate) async fn measure(bench: &Bench, old: usize) -> anyhow::Result<RetentionFigures> {
    let plain = bench
        .store_with("retention_plain", 4, Setup::default())
        .await?;
    let partitioned = bench
        .store_with(
            "retention_partitioned",
            4,
            Setup {
                layout: TableLayout::time_partitioned(PartitionPeriod::Day),
                ..Setup::default()
            },
        )
        .await?;
    let client = bench.server.client().await?;
    let started = Instant::now();
    fill(bench, &plain, old).await?;
    let now = OffsetDateTime::now_utc();
    partitioned
        .create_partitions(now - time::Duration::days(RETAIN_DAYS + 32), now)
        .await?;
    let (p, t) = (plain.table(), partitioned.table());
    let executions = t.qualify(&format!("{}_executions", t.table()));
    // A copy of rows already checked: without the per-row trigger (the id guard).
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO {executions} (execution_id, started)
               SELECT execution_id, min(\"timestamp\") FROM {plain} GROUP BY execution_id;
             INSERT INTO {table} ({COLUMNS}, execution_start)
               SELECT {columns}, x.started FROM {plain} c JOIN {executions} x USING (execution_id);
             SET session_replication_role = DEFAULT;
             ANALYZE {plain}; ANALYZE {table};",
            plain = p.quoted(),
            table = t.quoted(),
            columns = COLUMNS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
        ))
        .await?;
    println!(
        "retention: filled two tables of {} checkpoints in {:.0} s",
        old + CURRENT * EACH,
        started.elapsed().as_secs_f64()
    );

    let (delete, _) = timed(&client, p, || async {
        let removed = plain
            .prune(&RetentionPolicy::older_than(Duration::from_secs(
                u64::try_from(RETAIN_DAYS)? * 86_400,
            )))
            .await?;
        Ok(removed)
    })
    .await?;
    let (drop, partitions_dropped) = timed(&client, t, || async {
        let dropped = partitioned
            .drop_partitions_before(OffsetDateTime::now_utc() - time::Duration::days(RETAIN_DAYS))
            .await?;
        Ok(u64::try_from(dropped.partitions.len())?)
    })
    .await?;
    let partitions_dropped = usize::try_from(partitions_dropped)?;
    plain.close();
    partitioned.close();
    Ok(RetentionFigures {
        delete,
        drop,
        partitions_dropped,
    })
}

/// Times `remove`, then a `VACUUM` of the table, and reads the WAL written and what is left;
/// returns what `remove` returned beside.
async fn timed<F, Fut>(
    client: &tokio_postgres::Client,
    table: &checkpoint_postgres::TableName,
    remove: F,
) -> anyhow::Result<(Removal, u64)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let quoted = table.quoted();
    let count = format!("SELECT count(*) FROM {quoted}");
    let rows_before: i64 = client.query_one(&count, &[]).await?.get(0);
    let lsn = "SELECT pg_current_wal_lsn()::text";
    let before: String = client.query_one(lsn, &[]).await?.get(0);
    let started = Instant::now();
    let returned = remove().await?;
    let seconds = started.elapsed().as_secs_f64();
    let after: String = client.query_one(lsn, &[]).await?.get(0);
    let wal_bytes: i64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::int8",
            &[&after, &before],
        )
        .await?
        .get(0);
    let started = Instant::now();
    client
        .batch_execute(&format!("VACUUM {}", table.quoted()))
        .await?;
    let vacuum_seconds = started.elapsed().as_secs_f64();
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM {quoted}), pg_total_relation_size($1::text::regclass) \
                 + (SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0)::int8 \
                    FROM pg_inherits WHERE inhparent = $1::text::regclass)"
            ),
            &[&quoted],
        )
        .await?;
    let rows_left: i64 = row.get(0);
    Ok((
        Removal {
            seconds,
            vacuum_seconds,
            rows_removed: u64::try_from(rows_before - rows_left)?,
            wal_bytes,
            rows_left,
            bytes_left: row.get(1),
        },
        returned,
    ))
}
