//! Group commit: saves made while another write holds the write turn queue up, and the next
//! save to get the turn writes every queued save in one transaction, so they share one commit
//! and, under `Durability::Full`, one sync to disk. Prunes of one execution (retention after
//! each save) made while saves wait join the queue too: a save and its prune then cost one
//! commit between them, not two.
//!
//! Each write keeps its own outcome: it runs inside a savepoint of its own, and one that fails
//! is rolled back to that savepoint alone while the others commit. Each caller is answered only
//! after the commit, from inside the blocking call that made it, so an answer reaches its caller
//! even if the save that led the group stops waiting.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use std::sync::Arc;

use checkpoint_core::{Error, Result, RetentionPolicy};
use checkpoint_format::encoder::Encoder;
use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use crate::error::{copy, driver};
use crate::row::StoredRow;
use crate::write;

/// Most saves in one transaction: bounds how long the leader of a group holds the write lock.
pub(crate) const MAX_GROUP_SAVES: usize = 256;

/// Most encoded bytes in one transaction (a save larger than this goes alone).
pub(crate) const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// What a queued write does.
pub(crate) enum Work {
    /// A save.
    Save(StoredRow),
    /// A prune of the one execution `policy` names.
    Prune {
        policy: RetentionPolicy,
        encoder: Arc<Encoder>,
    },
}

/// What a queued write did.
#[derive(Debug)]
pub(crate) enum Done {
    /// The saved checkpoint's version.
    Saved(i64),
    /// How many checkpoints the prune removed.
    Pruned(u64),
}

/// One write waiting for a group.
pub(crate) struct Pending {
    token: u64,
    work: Work,
    reply: oneshot::Sender<Result<Done>>,
}

impl Pending {
    fn bytes(&self) -> usize {
        match &self.work {
            Work::Save(row) => row.bytes(),
            Work::Prune { .. } => 0,
        }
    }
}

impl Work {
    /// Runs the write in `tx`.
    fn run(&self, tx: &rusqlite::Transaction<'_>) -> Result<Done> {
        match self {
            Work::Save(row) => write::save(tx, row).map(Done::Saved),
            Work::Prune { policy, encoder } => write::prune(tx, encoder, policy).map(Done::Pruned),
        }
    }
}

/// How many saves went out and in how many transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitStats {
    /// Saves written (stored or refused).
    pub saves: u64,
    /// Transactions they were written in.
    pub groups: u64,
    /// The most saves one transaction carried.
    pub largest: u64,
    /// Prunes of one execution that joined a group (and shared its commit).
    pub prunes: u64,
}

impl CommitStats {
    /// Saves per transaction on average (1.0 when nothing was grouped).
    pub fn mean_group(&self) -> f64 {
        if self.groups == 0 {
            0.0
        } else {
            self.saves as f64 / self.groups as f64
        }
    }
}

/// The saves waiting for the write turn.
#[derive(Default)]
pub(crate) struct Queue {
    waiting: Mutex<VecDeque<Pending>>,
    next_token: AtomicU64,
    saves: AtomicU64,
    groups: AtomicU64,
    largest: AtomicU64,
    prunes: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        // Every change to the queue is one push, pop or removal: a panic cannot leave it torn.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `work`; returns its token and where its answer will come.
    pub(crate) fn push(&self, work: Work) -> (u64, oneshot::Receiver<Result<Done>>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(Pending { token, work, reply });
        (token, answer)
    }

    /// Whether no write waits for a group.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Takes the save `token` back if no group has taken it yet.
    pub(crate) fn withdraw(&self, token: u64) -> bool {
        let mut waiting = self.lock();
        match waiting.iter().position(|p| p.token == token) {
            Some(at) => waiting.remove(at).is_some(),
            None => false,
        }
    }

    /// The next group: queued saves in arrival order, within the bounds (at least one).
    pub(crate) fn take(&self) -> Vec<Pending> {
        let mut waiting = self.lock();
        let mut group: Vec<Pending> = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = waiting.front() {
            let size = next.bytes();
            if !group.is_empty()
                && (group.len() >= MAX_GROUP_SAVES || bytes.saturating_add(size) > MAX_GROUP_BYTES)
            {
                break;
            }
            bytes = bytes.saturating_add(size);
            group.extend(waiting.pop_front());
        }
        group
    }

    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            saves: self.saves.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
            prunes: self.prunes.load(Ordering::Relaxed),
        }
    }

    /// Counts a group: its saves, and its prunes apart (a group of prunes alone is no group
    /// of saves).
    fn count(&self, group: &[Pending]) {
        let saves = group
            .iter()
            .filter(|p| matches!(p.work, Work::Save(_)))
            .count() as u64;
        let prunes = group.len() as u64 - saves;
        self.prunes.fetch_add(prunes, Ordering::Relaxed);
        if saves > 0 {
            self.saves.fetch_add(saves, Ordering::Relaxed);
            self.groups.fetch_add(1, Ordering::Relaxed);
            self.largest.fetch_max(saves, Ordering::Relaxed);
        }
    }
}

/// Answers every save of `group` with a copy of `err`.
pub(crate) fn refuse(group: Vec<Pending>, err: &Error) {
    for pending in group {
        // A caller that stopped waiting has nobody to tell.
        let _ = pending.reply.send(Err(copy(err)));
    }
}

/// Writes `group` in one immediate transaction on `conn` and answers each save. Runs on a
/// blocking thread.
pub(crate) fn write_group(conn: &mut rusqlite::Connection, queue: &Queue, group: Vec<Pending>) {
    queue.count(&group);
    let outcome = (|| -> Result<Vec<Result<Done>>> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(driver)?;
        let results = if let [lone] = &group[..] {
            // Alone, a failed write rolls the whole transaction back: no savepoint needed.
            vec![Ok(lone.work.run(&tx)?)]
        } else {
            let mut results = Vec::with_capacity(group.len());
            for pending in &group {
                tx.execute_batch("SAVEPOINT grouped_save").map_err(driver)?;
                let result = pending.work.run(&tx);
                if result.is_err() {
                    tx.execute_batch("ROLLBACK TO grouped_save")
                        .map_err(driver)?;
                }
                tx.execute_batch("RELEASE grouped_save").map_err(driver)?;
                results.push(result);
            }
            results
        };
        tx.commit().map_err(driver)?;
        Ok(results)
    })();
    match outcome {
        Ok(results) => {
            for (pending, result) in group.into_iter().zip(results) {
                // The row goes before its caller hears: it shares the saved state with the
                // store's cache, which the caller's next delta takes over without a copy.
                let Pending { reply, work, .. } = pending;
                drop(work);
                let _ = reply.send(result);
            }
        }
        Err(err) => refuse(group, &err),
    }
}

/// The answer a save gets when its group was lost without answering (a panic in the blocking
/// call): whether it committed is unknown, and saving it again is safe (a save of the same id
/// replaces it, keeping its version).
pub(crate) fn lost() -> Error {
    crate::SqliteError::Panicked("the group carrying this save was lost; save it again".into())
        .into_core()
}
