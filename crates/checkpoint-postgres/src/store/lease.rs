//! Leases and fenced writes ([`checkpoint_core::lease`]) on `<table>_leases`.
//!
//! A lease change is one transaction: lock the execution's row, apply [`next_lease`] by the
//! server's clock (`now()`), write the result.
//!
//! A fenced save is the save's own statement with the check in it: the execution's lease row
//! read `FOR SHARE` in a CTE, and nothing inserted unless its token is current. With group
//! commit it joins groups, whose statement checks each member's token the same way and leaves
//! out a member whose token is not current, which then goes alone. A save that stored nothing
//! takes the careful path under the fence: one transaction that reads the lease row `FOR
//! SHARE`, refuses the write with `LeaseLost` unless its token is current, then writes as a
//! save whose id exists does (whole states, rows built on a replaced one rewritten first).
//! The other fenced writes take that transactional path, and so does every fenced save on the
//! distributed layout: Citus locks a row only in a query it sends whole to one shard, which a
//! save with a locking CTE is not known to be, while each statement of the transaction is.
//!
//! The share lock makes a takeover (which updates the row) wait for every write already
//! checked, and every write checked after the takeover commits sees the new token, so no
//! write with an old token lands after a new holder's.

use std::future::Future;

use checkpoint_core::lease::{next_lease, refuse_unleased, LeaseRequest};
use checkpoint_core::{Checkpoint, Error, Fence, Lease, Result, RetentionPolicy};
use time::OffsetDateTime;

use crate::pool::{DbTransaction, Param};
use crate::store::write::{
    acknowledged, delete_in_tx, finish, is_base_violation, prune_in_tx, save_in_tx, SaveArgs,
};
use crate::store::{
    append_backoff, batch, contended, group, partitions, read, write, MAX_APPEND_ATTEMPTS,
};
use crate::{PostgresStore, TableLayout};

/// How often a lease change that met another writer making the execution's first lease row
/// starts again: the second attempt finds the row and waits for its lock.
const MAX_LEASE_ATTEMPTS: usize = 4;

/// Applies `request` to the lease of `execution_id` and returns the lease as stored.
pub(crate) async fn change(
    store: &PostgresStore,
    execution_id: &str,
    request: LeaseRequest<'_>,
) -> Result<Lease> {
    for _ in 0..MAX_LEASE_ATTEMPTS {
        let outcome = store
            .retry
            .run(&store.meter, "lease", || async {
                let mut tx = store.pool.begin().await?;
                let outcome = change_in_tx(store, tx.as_mut(), execution_id, request).await;
                finish(tx, outcome).await
            })
            .await?;
        if let Some(lease) = outcome {
            return Ok(lease);
        }
    }
    Err(Error::Backend {
        message: format!(
            "gave up changing the lease of execution {execution_id} after \
             {MAX_LEASE_ATTEMPTS} attempts"
        ),
        retryable: true,
        source: "the lease row kept appearing under a concurrent writer".into(),
    })
}

/// `None` when another writer made the execution's first lease row meanwhile.
async fn change_in_tx(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    execution_id: &str,
    request: LeaseRequest<'_>,
) -> Result<Option<Lease>> {
    let sql = &store.sql.leases;
    let locked = tx.query(&sql.lock, &[&execution_id]).await?;
    let (current, now) = match locked.first() {
        Some(row) => (
            Some(Lease::new(
                execution_id,
                row.text(0)?,
                row.int(1)?,
                row.timestamp(2)?,
            )),
            row.timestamp(3)?,
        ),
        None => {
            // The first lease row of the execution: taken under the gate that unleased writes
            // check (see `unleased`).
            tx.execute(&sql.gate, &[&gate_key(store, execution_id)])
                .await?;
            (None, server_now(tx, store).await?)
        }
    };
    let lease = next_lease(execution_id, current.as_ref(), request, now)?;
    let params: [Param<'_>; 4] = [&execution_id, &lease.owner, &lease.token, &lease.expires_at];
    if current.is_some() {
        tx.execute(&sql.update, &params).await?;
        Ok(Some(lease))
    } else if tx.execute(&sql.insert, &params).await? == 1 {
        Ok(Some(lease))
    } else {
        Ok(None)
    }
}

async fn server_now(tx: &mut dyn DbTransaction, store: &PostgresStore) -> Result<OffsetDateTime> {
    let rows = tx.query(&store.sql.leases.now, &[]).await?;
    let row = rows.first().ok_or_else(|| Error::Backend {
        message: "SELECT now() returned no row".into(),
        retryable: false,
        source: "the server answered nothing".into(),
    })?;
    Ok(row.timestamp(0)?)
}

/// The unexpired lease of `execution_id`, by the server's clock.
pub(crate) async fn live(store: &PostgresStore, execution_id: &str) -> Result<Option<Lease>> {
    let rows = store
        .query("lease", &store.sql.leases.live, &[&execution_id])
        .await?;
    rows.first()
        .map(|row| {
            Ok(Lease::new(
                execution_id,
                row.text(0)?,
                row.int(1)?,
                row.timestamp(2)?,
            ))
        })
        .transpose()
}

/// `save_fenced`, input checked: the save's own statement carries the check (in the next
/// group with group commit on), except on the distributed layout, whose fenced saves take the
/// careful path under the fence.
pub(crate) async fn save(
    store: &PostgresStore,
    fence: &Fence,
    checkpoint: &Checkpoint,
) -> Result<i64> {
    partitions::upkeep(store).await;
    let version = match (&store.group, store.table.layout()) {
        (_, TableLayout::Distributed) => {
            careful_save(store, &Guard::Fence(fence), checkpoint).await?
        }
        (Some(committer), _) => group::save(store, committer, checkpoint, Some(fence)).await?,
        (None, _) => write::save_alone(store, checkpoint, Some(fence)).await?,
    };
    store.announce([checkpoint.execution_id.as_str()]).await;
    Ok(version)
}

/// The careful path of a guarded save: one transaction of the guard's check, the row's lock
/// and the write of the whole state.
pub(crate) async fn careful_save(
    store: &PostgresStore,
    guard: &Guard<'_>,
    checkpoint: &Checkpoint,
) -> Result<i64> {
    let encoded = store.encoder.encode(checkpoint, true)?;
    let save = Save {
        checkpoint,
        args: SaveArgs::new(store, checkpoint, encoded),
    };
    let version = guarded(store, "save", guard, &save).await?;
    save.acknowledged(store, version)
}

/// A guarded batch, input checked: the batch's replay (one save after another, in one
/// transaction) under the guard.
pub(crate) async fn save_batch(
    store: &PostgresStore,
    guard: &Guard<'_>,
    checkpoints: &[Checkpoint],
) -> Result<Vec<i64>> {
    // What the encoding refuses is refused before anything is written.
    for checkpoint in checkpoints {
        store.encoder.admit(checkpoint)?;
    }
    partitions::upkeep(store).await;
    let versions = guarded(store, "save_batch", guard, &Batch(checkpoints)).await?;
    let versions = store.saved_all(checkpoints, versions);
    store
        .announce(checkpoints.iter().map(|cp| cp.execution_id.as_str()))
        .await;
    Ok(versions)
}

/// A guarded clear: the execution's rows, forgotten by the caches first.
pub(crate) async fn clear(
    store: &PostgresStore,
    guard: &Guard<'_>,
    execution_id: &str,
) -> Result<u64> {
    store.encoder.format.cache.forget(execution_id);
    store.forget_floors(Some(execution_id));
    guarded(store, "clear", guard, &Clear(execution_id)).await
}

/// A guarded prune of `execution_id`, `policy` checked.
pub(crate) async fn prune(
    store: &PostgresStore,
    guard: &Guard<'_>,
    execution_id: &str,
    policy: &RetentionPolicy,
) -> Result<u64> {
    store.forget_floors(Some(execution_id));
    let prune = Prune {
        execution_id,
        // Validated to fit in i64.
        keep: i64::try_from(policy.keep_last.unwrap_or(0)).unwrap_or(i64::MAX),
        cutoff: policy.cutoff(OffsetDateTime::now_utc()),
        lazy_flush: policy.lazy_flush,
    };
    guarded(store, "prune", guard, &prune).await
}

/// A guarded fork: the source read as `load` reads it (a fan-out where ids are unique per
/// execution), its copy saved whole as version 1 of `new_execution_id`.
pub(crate) async fn fork(
    store: &PostgresStore,
    guard: &Guard<'_>,
    checkpoint_id: &str,
    new_execution_id: &str,
) -> Result<Checkpoint> {
    partitions::upkeep(store).await;
    let forked = read::load(store, checkpoint_id)
        .await?
        .forked_into(new_execution_id);
    let encoded = store.encoder.encode(&forked, true)?;
    let fork = Fork(Save {
        checkpoint: &forked,
        args: SaveArgs::new(store, &forked, encoded),
    });
    let version = guarded(store, "fork", guard, &fork).await?;
    fork.0.acknowledged(store, version)?;
    store.announce([new_execution_id]).await;
    Ok(forked)
}

/// A write a fenced transaction makes after its fence holds: `None` when it lost a race it
/// should start again from (an append's next version, a delta added on a row it removes).
pub(crate) trait FencedWrite: Sync {
    type Output: Send;

    fn write<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut dyn DbTransaction,
    ) -> impl Future<Output = Result<Option<Self::Output>>> + Send + 'a;
}

/// What a guarded write's transaction checks before it writes.
pub(crate) enum Guard<'a> {
    /// The fence holds its execution's current token.
    Fence(&'a Fence),
    /// None of these executions has an unexpired lease (a store refusing unleased writes).
    Unleased(Vec<&'a str>),
}

/// Runs `write` in one transaction after checking `guard` in it, starting again when it lost
/// a race, and retrying transient failures as every write does.
pub(crate) async fn guarded<W: FencedWrite>(
    store: &PostgresStore,
    operation: &'static str,
    guard: &Guard<'_>,
    write: &W,
) -> Result<W::Output> {
    for attempt in 0..MAX_APPEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(append_backoff(attempt)).await;
        }
        let outcome = store
            .retry
            .run(&store.meter, operation, || async {
                let mut tx = store.pool.begin().await?;
                let outcome = match check(store, tx.as_mut(), guard).await {
                    Ok(()) => write.write(store, tx.as_mut()).await,
                    Err(err) => Err(err),
                };
                finish(tx, outcome).await
            })
            .await?;
        if let Some(output) = outcome {
            return Ok(output);
        }
    }
    let execution = match guard {
        Guard::Fence(fence) => fence.execution_id.as_str(),
        Guard::Unleased(executions) => executions.first().copied().unwrap_or_default(),
    };
    Err(contended(execution))
}

/// Refuses the transaction's write unless `guard` holds; the share locks it takes keep that so
/// until the transaction ends.
async fn check(store: &PostgresStore, tx: &mut dyn DbTransaction, guard: &Guard<'_>) -> Result<()> {
    match guard {
        Guard::Fence(fence) => {
            let rows = tx
                .query(&store.sql.leases.fence, &[&fence.execution_id])
                .await?;
            let current = rows
                .first()
                .map(|row| Ok::<_, Error>((row.text(0)?, row.int(1)?)))
                .transpose()?;
            fence.check(current)
        }
        Guard::Unleased(executions) => {
            // In one order, so that two writes of the same executions cannot deadlock.
            let mut executions = executions.clone();
            executions.sort_unstable();
            executions.dedup();
            for execution in executions {
                unleased(store, tx, execution).await?;
            }
            Ok(())
        }
    }
}

/// The key of the transaction lock on `execution_id`'s lease, for its first lease row.
fn gate_key(store: &PostgresStore, execution_id: &str) -> String {
    format!("{}:{execution_id}", store.table.quoted())
}

/// Refuses an unfenced write of `execution_id` while its lease is unexpired. The gate comes
/// first: an acquire making the execution's first lease row holds it, so this either waits
/// and then reads that row, or is done before the row exists.
async fn unleased(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    execution_id: &str,
) -> Result<()> {
    let sql = &store.sql.leases;
    tx.execute(&sql.gate_shared, &[&gate_key(store, execution_id)])
        .await?;
    let rows = tx.query(&sql.guard, &[&execution_id]).await?;
    match rows.first() {
        Some(row) => {
            let current = Lease::new(execution_id, row.text(0)?, row.int(1)?, row.timestamp(2)?);
            refuse_unleased(execution_id, Some(&current), row.timestamp(3)?)
        }
        None => Ok(()),
    }
}

/// A save, whole state, by the careful path.
struct Save<'c> {
    checkpoint: &'c Checkpoint,
    args: SaveArgs<'c>,
}

impl FencedWrite for Save<'_> {
    type Output = i64;

    fn write<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut dyn DbTransaction,
    ) -> impl Future<Output = Result<Option<i64>>> + Send + 'a {
        save_in_tx(store, tx, self.checkpoint, &self.args)
    }
}

impl Save<'_> {
    /// The save's version, counted and remembered as the save of this path is.
    fn acknowledged(&self, store: &PostgresStore, version: i64) -> Result<i64> {
        acknowledged(store, self.checkpoint, &self.args.encoded, version)
    }
}

/// A batch, item by item in order.
struct Batch<'c>(&'c [Checkpoint]);

impl FencedWrite for Batch<'_> {
    type Output = Vec<i64>;

    fn write<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut dyn DbTransaction,
    ) -> impl Future<Output = Result<Option<Vec<i64>>>> + Send + 'a {
        batch::write_one_by_one(store, tx, self.0)
    }
}

/// A delete of checkpoint `id` under a guard: the row is locked (in `execution`, where ids
/// are unique per execution; the plain table's lock reads the id in any execution), then its
/// execution checked as `rule` says.
pub(crate) struct Delete<'c> {
    pub(crate) id: &'c str,
    pub(crate) execution: Option<&'c str>,
    pub(crate) rule: DeleteRule,
}

/// What a guarded delete checks of the locked row's execution.
pub(crate) enum DeleteRule {
    /// It is the fenced one (`execution`); a row of another is left alone.
    Fenced,
    /// It has no unexpired lease.
    Unleased,
}

impl FencedWrite for Delete<'_> {
    type Output = bool;

    async fn write(
        &self,
        store: &PostgresStore,
        tx: &mut dyn DbTransaction,
    ) -> Result<Option<bool>> {
        let locked = tx
            .query(&store.sql.lock_row, &[&self.id, &self.execution])
            .await?;
        let Some(holder) = locked.first().map(|row| row.text(0)).transpose()? else {
            return Ok(Some(false));
        };
        match self.rule {
            DeleteRule::Fenced if Some(holder.as_str()) != self.execution => {
                return Ok(Some(false))
            }
            DeleteRule::Fenced => {}
            DeleteRule::Unleased => unleased(store, tx, &holder).await?,
        }
        delete_in_tx(store, tx, self.id, self.execution)
            .await
            .map(Some)
    }
}

/// A clear of `execution_id`.
struct Clear<'c>(&'c str);

impl FencedWrite for Clear<'_> {
    type Output = u64;

    async fn write(
        &self,
        store: &PostgresStore,
        tx: &mut dyn DbTransaction,
    ) -> Result<Option<u64>> {
        match tx.execute(&store.sql.clear, &[&self.0]).await {
            Ok(removed) => Ok(Some(removed)),
            // A delta added meanwhile on a row this clear removes: start again.
            Err(e) if store.constraints.is_base_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A prune of `execution_id`.
struct Prune<'c> {
    execution_id: &'c str,
    keep: i64,
    cutoff: Option<OffsetDateTime>,
    lazy_flush: bool,
}

impl FencedWrite for Prune<'_> {
    type Output = u64;

    async fn write(
        &self,
        store: &PostgresStore,
        tx: &mut dyn DbTransaction,
    ) -> Result<Option<u64>> {
        let execution = Some(self.execution_id);
        if self.lazy_flush {
            tx.batch_execute("SET LOCAL synchronous_commit TO off")
                .await?;
        }
        match prune_in_tx(store, tx, execution, self.keep, self.cutoff).await {
            Ok(removed) => Ok(Some(removed)),
            Err(e) if is_base_violation(store, &e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A fork: the copy saved as version 1 of its execution, which must have no checkpoint.
struct Fork<'c>(Save<'c>);

impl FencedWrite for Fork<'_> {
    type Output = i64;

    async fn write(
        &self,
        store: &PostgresStore,
        tx: &mut dyn DbTransaction,
    ) -> Result<Option<i64>> {
        let execution = &self.0.checkpoint.execution_id;
        if !tx.query(&store.sql.latest, &[execution]).await?.is_empty() {
            return Err(Error::Conflict {
                execution_id: execution.clone(),
                version: 1,
            });
        }
        self.0.write(store, tx).await
    }
}
