//! Writes that keep every delta's base in place: `save`, `delete`, `clear`, `prune`, and the
//! rewrite of rows whose base is replaced or removed.
//!
//! The common case is one statement: a save of a new id inserts (a delta only while its base
//! still holds the state it was computed against), a delete of a row nothing is built on
//! deletes. Everything else takes the careful path, one transaction: lock the row, turn the
//! rows built on it into snapshots of the same states, then write. A foreign key from each
//! delta to its base row backs this up: no statement can leave a delta without its base.

use std::sync::atomic::Ordering;

use checkpoint_core::validate::no_version_after;
use checkpoint_core::{Checkpoint, Error, Fence, IdScope, Result, RetentionPolicy};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use crate::error::DbError;
use crate::pool::{DbTransaction, Param};
use crate::state::encoding::Encoded;
use crate::store::{append_backoff, contended, moved, MAX_APPEND_ATTEMPTS};
use crate::PostgresStore;

/// How often a prune or clear that meets a concurrent delta on a row it removes starts again.
const MAX_REMOVE_ATTEMPTS: usize = 8;

/// The bound arguments of the save and upsert statements, in placeholder order.
pub(crate) struct SaveArgs<'a> {
    checkpoint: &'a Checkpoint,
    metadata: Json<&'a Map<String, Value>>,
    pub encoded: Encoded<'a>,
    base_version: Option<i64>,
    base_hash: Option<i64>,
    base_depth: Option<i32>,
    state_hash: Option<i64>,
    /// The floor of the append's read, where the layout takes one.
    floor: Option<i64>,
}

impl<'a> SaveArgs<'a> {
    pub(crate) fn new(
        store: &PostgresStore,
        checkpoint: &'a Checkpoint,
        encoded: Encoded<'a>,
    ) -> Self {
        SaveArgs {
            floor: store
                .floors
                .is_some()
                .then(|| store.floor(&checkpoint.execution_id)),
            checkpoint,
            metadata: Json(&checkpoint.metadata),
            base_version: encoded.base.map(|b| b.version),
            base_hash: encoded.base.map(|b| b.hash),
            base_depth: encoded.base.map(|b| b.depth),
            state_hash: encoded.fingerprint.map(|f| f.hash),
            encoded,
        }
    }

    /// For [`Statements::save`](crate::Statements).
    pub(crate) fn save_params(&self) -> Vec<Param<'_>> {
        let mut params = self.row_params();
        if let Some(floor) = &self.floor {
            params.push(floor);
        }
        params
    }

    /// For a save written straight to a partition: the row, then the execution's start.
    fn partition_params<'b>(&'b self, start: &'b OffsetDateTime) -> Vec<Param<'b>> {
        let mut params = self.row_params();
        params.push(start);
        params
    }

    /// The checkpoint, then how its state is stored.
    fn row_params(&self) -> Vec<Param<'_>> {
        let cp = self.checkpoint;
        vec![
            &cp.id,
            &cp.execution_id,
            &cp.node_name,
            &self.encoded.state,
            &self.metadata,
            &cp.timestamp,
            &cp.version,
            &cp.parent_id,
            &self.encoded.payload,
            &self.base_version,
            &self.base_hash,
            &self.state_hash,
            &self.base_depth,
        ]
    }

    /// For [`Statements::upsert`](crate::Statements): always a whole state, at `version`
    /// (known once the row is locked, so the statement computes none).
    fn upsert_params<'b>(&'b self, version: &'b i64) -> [Param<'b>; 10] {
        let cp = self.checkpoint;
        [
            &cp.id,
            &cp.execution_id,
            &cp.node_name,
            &self.encoded.state,
            &self.metadata,
            &cp.timestamp,
            version,
            &cp.parent_id,
            &self.encoded.payload,
            &self.state_hash,
        ]
    }
}

/// Whether `err` is the foreign key of a delta on its base: the base was removed or moved
/// while the statement ran, or the statement would remove a base.
pub(crate) fn is_base_violation(store: &PostgresStore, err: &Error) -> bool {
    DbError::of(err).is_some_and(|db| store.constraints.is_base_violation(db))
}

/// Whether `err` is the server refusing `MAX(version) + 1` past `i64::MAX` (22003).
fn is_past_the_highest_version(err: &Error) -> bool {
    DbError::of(err).is_some_and(|db| db.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE))
}

/// Ends a transaction: commits when `outcome` holds a value, rolls back otherwise.
pub(crate) async fn finish<T>(
    tx: Box<dyn DbTransaction>,
    outcome: Result<Option<T>>,
) -> Result<Option<T>> {
    match outcome {
        Ok(Some(value)) => {
            tx.commit().await?;
            Ok(Some(value))
        }
        other => {
            // Best effort: a failed rollback closes the connection, and the server rolls back.
            let _ = tx.rollback().await;
            other
        }
    }
}

/// A save in its own statement: one round trip, or the careful path when the id exists or
/// the delta's base changed.
///
/// With `fence`, the statement reads the execution's lease row `FOR SHARE` and stores nothing
/// unless its token is current; nothing stored then takes the careful path under the fence,
/// which tells a lost lease from an existing id. It goes to the partitioned table, never
/// straight to a partition.
pub(crate) async fn save_alone(
    store: &PostgresStore,
    checkpoint: &Checkpoint,
    fence: Option<&Fence>,
) -> Result<i64> {
    save_encoded(
        store,
        checkpoint,
        store.encoder.encode(checkpoint, false)?,
        fence,
    )
    .await
}

/// [`save_alone`] of a checkpoint already encoded.
pub(crate) async fn save_encoded(
    store: &PostgresStore,
    checkpoint: &Checkpoint,
    encoded: Encoded<'_>,
    fence: Option<&Fence>,
) -> Result<i64> {
    let args = SaveArgs::new(store, checkpoint, encoded);
    let mut params = args.save_params();
    let token = fence.map(|f| f.token);
    // A whole state needs no base check: the plain insert, the statement pgbench measures.
    let routed = store.sql.routed.as_ref();
    let (statement, routed) = match (args.base_version.is_some(), &token) {
        (false, None) => (&store.sql.save, routed.map(|r| &r.save)),
        (true, None) => (&store.sql.save_delta, routed.map(|r| &r.save_delta)),
        (false, Some(token)) => {
            params.push(token);
            (&store.sql.save_fenced, routed.map(|r| &r.save_fenced))
        }
        (true, Some(token)) => {
            params.push(token);
            (
                &store.sql.save_delta_fenced,
                routed.map(|r| &r.save_delta_fenced),
            )
        }
    };
    let careful = || careful_save(store, checkpoint, fence);
    // Straight to the partition of the execution's start, where the store knows it. Only a
    // stored row or a failure the partitioned table would meet too ends the save there;
    // nothing stored (the id exists, the base changed, or the partition is no longer attached)
    // and a refusal only the partition makes go through the partitioned table, which tells
    // exactly.
    let mut route = store
        .leaves
        .as_ref()
        .filter(|_| fence.is_none())
        .and_then(|leaves| leaves.route_one(&checkpoint.execution_id, args.base_version.is_some()));
    let mut attempt = 0;
    while attempt < MAX_APPEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(append_backoff(attempt)).await;
        }
        let result = match &route {
            Some(routed) => {
                let with_start = args.partition_params(&routed.starts[0]);
                store.query("save", &routed.statement, &with_start).await
            }
            // On the distributed layout, first the statement Citus sends whole to one shard;
            // where it stores nothing (a new execution among other causes), the general one.
            None => match routed {
                Some(routed) => match store.query("save", routed, &params).await {
                    Ok(rows) if rows.is_empty() => store.query("save", statement, &params).await,
                    result => result,
                },
                None => store.query("save", statement, &params).await,
            },
        };
        if let (Some(routed), Some(leaves)) = (route.take(), &store.leaves) {
            match &result {
                Ok(rows) if rows.is_empty() => continue,
                Err(e) if leaves.reroutes(&routed, e, [checkpoint.execution_id.as_str()]) => {
                    continue
                }
                _ => {}
            }
        }
        attempt += 1;
        match result {
            Ok(rows) => {
                return match rows.first() {
                    Some(row) => {
                        if let (Some(leaves), Ok(start)) = (&store.leaves, row.timestamp(1)) {
                            leaves.learn(&checkpoint.execution_id, start);
                        }
                        acknowledged(store, checkpoint, &args.encoded, row.int(0)?)
                    }
                    // The id exists, the base no longer holds the state the delta needs, or
                    // the fence no longer holds.
                    None => careful().await,
                };
            }
            // An append lost the race for the next version: another writer took it, so
            // take the one after.
            Err(e) if checkpoint.version == 0 && store.is_version_conflict(&e) => {}
            // No version follows the highest; unless the id exists (a retried append keeps its
            // version), which the careful path tells.
            Err(e) if checkpoint.version == 0 && is_past_the_highest_version(&e) => {
                return careful().await
            }
            Err(e) if is_base_violation(store, &e) => return careful().await,
            Err(e) => {
                return Err(store.conflict_or(e, &checkpoint.execution_id, checkpoint.version))
            }
        }
    }
    Err(contended(&checkpoint.execution_id))
}

/// A save stored at `version`: remembered as the next delta's base, counted, and its
/// version kept as the execution's floor.
pub(crate) fn acknowledged(
    store: &PostgresStore,
    checkpoint: &Checkpoint,
    encoded: &Encoded<'_>,
    version: i64,
) -> Result<i64> {
    store.encoder.remember(checkpoint, version, encoded);
    store.wrote(encoded.written());
    store.saved(checkpoint, version);
    Ok(version)
}

/// The careful path of `save`, one transaction: the whole state, after the rows built on the
/// row it replaces have become snapshots; under `fence`, after the fence is checked in it.
async fn careful_save(
    store: &PostgresStore,
    checkpoint: &Checkpoint,
    fence: Option<&Fence>,
) -> Result<i64> {
    if let Some(fence) = fence {
        let guard = crate::store::lease::Guard::Fence(fence);
        return crate::store::lease::careful_save(store, &guard, checkpoint).await;
    }
    let args = SaveArgs::new(store, checkpoint, store.encoder.encode(checkpoint, true)?);
    for attempt in 0..MAX_APPEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(append_backoff(attempt)).await;
        }
        let outcome = store
            .retry
            .run(&store.meter, "save", || async {
                let mut tx = store.pool.begin().await?;
                let outcome = save_in_tx(store, tx.as_mut(), checkpoint, &args).await;
                finish(tx, outcome).await
            })
            .await?;
        if let Some(version) = outcome {
            return acknowledged(store, checkpoint, &args.encoded, version);
        }
    }
    Err(contended(&checkpoint.execution_id))
}

/// Saves `checkpoint` inside `tx` as `args` (a whole state) say: `None` when an append lost a
/// race or the id appeared meanwhile, so the caller should try again.
pub(crate) async fn save_in_tx(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    checkpoint: &Checkpoint,
    args: &SaveArgs<'_>,
) -> Result<Option<i64>> {
    let existing = tx
        .query(
            &store.sql.lock_row,
            &[&checkpoint.id, &checkpoint.execution_id],
        )
        .await?;
    let Some(row) = existing.first() else {
        let params = args.save_params();
        // On the distributed layout, the form Citus sends whole to the shard first (see
        // `save_encoded`); the general one where it stores nothing.
        let inserted = match &store.sql.routed {
            Some(routed) => match tx.query(&routed.save, &params).await {
                Ok(rows) if rows.is_empty() => tx.query(&store.sql.save, &params).await,
                other => other,
            },
            None => tx.query(&store.sql.save, &params).await,
        };
        return match inserted {
            Ok(rows) => Ok(rows.first().map(|r| r.int(0)).transpose()?),
            Err(e) if checkpoint.version == 0 && store.constraints.is_version_conflict(&e) => {
                Ok(None)
            }
            Err(e)
                if checkpoint.version == 0
                    && e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) =>
            {
                Err(no_version_after(&checkpoint.execution_id))
            }
            Err(e) => Err(store.conflict_or(e, &checkpoint.execution_id, checkpoint.version)),
        };
    };
    let (execution, version, hash) = (row.text(0)?, row.int(1)?, row.opt_int(2)?);
    if execution != checkpoint.execution_id {
        return Err(moved(checkpoint));
    }
    let target = if checkpoint.version == 0 {
        version
    } else {
        checkpoint.version
    };
    // Rows built on this one stay valid only if it keeps its version and its state.
    if target != version || hash.is_none() || hash != args.state_hash {
        let dependents = tx
            .query(&store.sql.dependents, &[&execution, &version])
            .await?;
        let rows = dependents
            .iter()
            .map(|r| Ok((execution.clone(), r.text(0)?)))
            .collect::<Result<Vec<_>>>()?;
        rewrite_as_snapshots(store, tx, &rows).await?;
    }
    match tx
        .query(&store.sql.upsert, &args.upsert_params(&target))
        .await
    {
        Ok(rows) => match rows.first() {
            Some(row) => Ok(Some(row.int(0)?)),
            None => Err(moved(checkpoint)),
        },
        Err(e) => Err(store.conflict_or(e, &checkpoint.execution_id, checkpoint.version)),
    }
}

/// Turns the rows named by `(execution, id)` (deltas) into snapshots of the states they hold,
/// inside `tx`: one read and one write per execution, each keyed by it (one partition, one
/// shard).
pub(crate) async fn rewrite_as_snapshots(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    rows: &[(String, String)],
) -> Result<()> {
    let mut by_execution: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (execution, id) in rows {
        by_execution.entry(execution).or_default().push(id);
    }
    for (execution, ids) in by_execution {
        let found = tx.query(&store.sql.chains, &[&execution, &ids]).await?;
        let rebuilt = crate::store::read::rebuild_rows(store, found)?;
        let ids: Vec<&str> = rebuilt.iter().map(|r| r.checkpoint.id.as_str()).collect();
        let payloads = rebuilt
            .iter()
            .map(|r| store.encoder.snapshot(&r.checkpoint.state))
            .collect::<Result<Vec<_>, _>>()?;
        tx.execute(&store.sql.rewrite, &[&execution, &ids, &payloads])
            .await?;
    }
    tracing::debug!(rows = rows.len(), "rewrote deltas as snapshots");
    Ok(())
}

/// `delete`: one statement unless rows are built on the checkpoint. Where ids are unique per
/// execution, the execution that holds the id is found first (an id two hold is ambiguous).
pub(crate) async fn delete(store: &PostgresStore, id: &str) -> Result<bool> {
    let execution = match store.table.layout().id_scope() {
        IdScope::PerExecution => match crate::store::read::execution_of(store, id).await? {
            Some(execution) => Some(execution),
            None => return Ok(false),
        },
        _ => None,
    };
    let execution = execution.as_deref();
    if store.refuse_unleased {
        let delete = crate::store::lease::Delete {
            id,
            execution,
            rule: crate::store::lease::DeleteRule::Unleased,
        };
        let guard = crate::store::lease::Guard::Unleased(Vec::new());
        return crate::store::lease::guarded(store, "delete", &guard, &delete).await;
    }
    match store
        .execute("delete", &store.sql.delete, &[&id, &execution])
        .await
    {
        Ok(removed) => Ok(removed > 0),
        Err(e) if is_base_violation(store, &e) => {
            let removed = store
                .retry
                .run(&store.meter, "delete", || async {
                    let mut tx = store.pool.begin().await?;
                    let outcome = delete_in_tx(store, tx.as_mut(), id, execution).await;
                    finish(tx, outcome.map(Some)).await
                })
                .await?;
            Ok(removed.unwrap_or(false))
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn delete_in_tx(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    id: &str,
    in_execution: Option<&str>,
) -> Result<bool> {
    let existing = tx.query(&store.sql.lock_row, &[&id, &in_execution]).await?;
    let Some(row) = existing.first() else {
        return Ok(false);
    };
    let (execution, version) = (row.text(0)?, row.int(1)?);
    let dependents = tx
        .query(&store.sql.dependents, &[&execution, &version])
        .await?;
    let rows = dependents
        .iter()
        .map(|r| Ok((execution.clone(), r.text(0)?)))
        .collect::<Result<Vec<_>>>()?;
    rewrite_as_snapshots(store, tx, &rows).await?;
    Ok(tx.execute(&store.sql.delete, &[&id, &in_execution]).await? > 0)
}

/// `clear`: the rows of an execution only reference each other, so one statement removes
/// them all; a delta another writer adds meanwhile on one of them makes it start again.
pub(crate) async fn clear(store: &PostgresStore, execution_id: &str) -> Result<u64> {
    store.encoder.format.cache.forget(execution_id);
    store.forget_floors(Some(execution_id));
    let mut attempt = 0;
    loop {
        match store
            .execute("clear", &store.sql.clear, &[&execution_id])
            .await
        {
            Err(e) if is_base_violation(store, &e) && attempt + 1 < MAX_REMOVE_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `prune`: a prune of one execution joins the group commit when a write is in flight; any
/// other is made at once ([`prune_now`]).
pub(crate) async fn prune(store: &PostgresStore, policy: &RetentionPolicy) -> Result<u64> {
    // A prune that keeps no checkpoint removes the newest too.
    store.forget_floors(policy.execution_id.as_deref());
    // On the distributed layout a prune of every execution is one prune per execution, each
    // routed to its shard: Citus locks rows only in a query it sends whole to one shard.
    if policy.execution_id.is_none() && store.table.layout() == crate::TableLayout::Distributed {
        let mut removed = 0u64;
        let mut query = checkpoint_core::ExecutionQuery::new(500);
        loop {
            let page = checkpoint_core::CheckpointStore::list_executions(store, &query).await?;
            for summary in &page {
                let mut one = policy.clone();
                one.execution_id = Some(summary.execution_id.clone());
                removed = removed.saturating_add(Box::pin(prune(store, &one)).await?);
            }
            match page.last() {
                Some(last) if page.len() == 500 => {
                    query = checkpoint_core::ExecutionQuery::new(500).after(&last.execution_id);
                }
                _ => return Ok(removed),
            }
        }
    }
    let cutoff = policy.cutoff(OffsetDateTime::now_utc());
    // Validated to fit in i64.
    let keep = i64::try_from(policy.keep_last.unwrap_or(0)).unwrap_or(i64::MAX);
    let execution = policy.execution_id.as_deref();
    // Group commit is on (it never is on the distributed layout), and no prune has kept deltas
    // to rewrite lately (those go alone: see `prune_now`).
    if let (Some(execution), Some(committer)) = (execution, &store.group) {
        if !store.prunes_rewrite.load(Ordering::Relaxed) {
            return crate::store::group::prune(
                store,
                committer,
                execution,
                keep,
                cutoff,
                policy.lazy_flush,
            )
            .await;
        }
    }
    prune_now(store, execution, keep, cutoff, policy.lazy_flush).await
}

/// A prune of `execution` (or of every execution) made at once: the rows at or below the
/// (`keep` + 1)-th newest version of each and older than `cutoff` go, in one statement, or in
/// one transaction in which the rows it keeps whose base it removes become snapshots first;
/// `lazy` commits it without waiting for the flush.
pub(crate) async fn prune_now(
    store: &PostgresStore,
    execution: Option<&str>,
    keep: i64,
    cutoff: Option<OffsetDateTime>,
    lazy: bool,
) -> Result<u64> {
    let rewrote_last_time = store.prunes_rewrite.load(Ordering::Relaxed);
    if let Some(execution) = execution.filter(|_| !rewrote_last_time) {
        // One statement, one index range, when no row it keeps is a delta on a row it removes
        // (retention after every save, on whole states): the delta key refuses the statement
        // otherwise, and the transaction below rewrites those rows first. After a prune that
        // had rows to rewrite, the next goes to the transaction at once (deltas on a chain
        // keep needing it), until one finds nothing to rewrite.
        let statement = if lazy {
            &store.sql.prune_execution_lazy
        } else {
            &store.sql.prune_execution
        };
        match store
            .execute("prune", statement, &[&execution, &keep, &cutoff])
            .await
        {
            Err(e) if is_base_violation(store, &e) => {
                store.prunes_rewrite.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    for attempt in 0..MAX_REMOVE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(append_backoff(attempt)).await;
        }
        let outcome = store
            .retry
            .run(&store.meter, "prune", || async {
                let mut tx = store.pool.begin().await?;
                if lazy {
                    tx.batch_execute("SET LOCAL synchronous_commit TO off")
                        .await?;
                }
                let outcome = prune_in_tx(store, tx.as_mut(), execution, keep, cutoff).await;
                match outcome {
                    // A delta on a row this prune removes arrived meanwhile: start again.
                    Err(e) if is_base_violation(store, &e) => finish(tx, Ok(None)).await,
                    other => finish(tx, other.map(Some)).await,
                }
            })
            .await?;
        if let Some(removed) = outcome {
            return Ok(removed);
        }
    }
    Err(Error::Backend {
        message: format!(
            "gave up pruning after {MAX_REMOVE_ATTEMPTS} attempts lost to concurrent writers"
        ),
        retryable: true,
        source: "too much contention on the rows being pruned".into(),
    })
}

pub(crate) async fn prune_in_tx(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    execution: Option<&str>,
    keep: i64,
    cutoff: Option<OffsetDateTime>,
) -> Result<u64> {
    let survivors = match execution {
        Some(execution) => {
            tx.query(
                &store.sql.prune_survivors_execution,
                &[&execution, &keep, &cutoff],
            )
            .await?
        }
        None => {
            tx.query(&store.sql.prune_survivors_all, &[&keep, &cutoff])
                .await?
        }
    };
    let rows = survivors
        .iter()
        .map(|r| Ok((r.text(0)?, r.text(1)?)))
        .collect::<Result<Vec<_>>>()?;
    if execution.is_some() {
        store
            .prunes_rewrite
            .store(!rows.is_empty(), Ordering::Relaxed);
    }
    rewrite_as_snapshots(store, tx, &rows).await?;
    let removed = match execution {
        Some(execution) => {
            tx.execute(&store.sql.prune_execution, &[&execution, &keep, &cutoff])
                .await?
        }
        None => tx.execute(&store.sql.prune_all, &[&keep, &cutoff]).await?,
    };
    Ok(removed)
}
