//! Group commit: saves that arrive while another save of this store is being written travel
//! together in the next statement and share its commit; each caller is answered only once that
//! commit has returned, so nothing is acknowledged before it is durable.
//!
//! - No timer: a save that finds no write in flight goes out at once, alone, by the same path
//!   as without group commit. Saves arriving meanwhile queue up and leave together, in a task
//!   of their own, when the write ahead of them ends.
//! - A group is one `INSERT ... SELECT FROM unnest(...)`, a transaction on its own, and
//!   all or nothing: it either stores every save in it or none. Appends to one execution get
//!   consecutive versions in arrival order; explicit versions are written as given.
//! - When the unique index, the foreign key or a delta's base check refuses the group, its
//!   saves are made one by one, in arrival order per execution and per id, by the same path a
//!   save takes without group commit, so each gets exactly the outcome it would have had alone (a
//!   conflict, a replaced row, a snapshot instead of a delta) and the others are stored. The
//!   next group waits until they are done, so a save made alone keeps its place in arrival
//!   order. A group of appends that only lost a race for the next versions is sent again.
//! - A group that fails transiently is retried whole (every save is idempotent by its id); a
//!   failure that outlasts the retries is reported to every save in it.
//! - The write runs in its own task, so a caller that gives up waiting cannot cut a group
//!   short; a group lost anyway (its runtime shut down) sends its saves back to their callers,
//!   who make them alone: by id, so a group that did commit is found, not written twice.
//! - Prunes of one execution (retention after every save, as adk-graph's executor makes them)
//!   queue the same way while a write is in flight, and the prunes of one group go in one
//!   statement beside its saves, one execution each, instead of a round trip each. When a
//!   kept delta's base would go (the delta key refuses the statement), a prune is made
//!   alone, as without group commit.

pub(crate) mod settings;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoint_core::{Checkpoint, Error, Fence, Result};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio_postgres::types::Json;

use crate::error::{DbError, DbErrorKind};
use crate::pool::Param;
use crate::state::encoding::Encoded;
use crate::store::append_backoff;
use crate::store::group::settings::{GroupCommit, GroupCommitStats};
use crate::store::leaves::Route;
use crate::PostgresStore;

/// How often a group of appends that lost the race for its versions to another writer is sent
/// again before its saves are made one by one.
const MAX_GROUP_RACES: usize = 8;

/// How often a writer yields, at most, for answered callers to queue their next saves.
const MAX_GATHER_YIELDS: usize = 8;

/// The queue of one store and the groups in flight.
pub(crate) struct Committer {
    settings: GroupCommit,
    queue: Mutex<Queue>,
    stats: Mutex<GroupCommitStats>,
}

struct Queue {
    pending: VecDeque<Member>,
    prunes: VecDeque<Prune>,
    in_flight: usize,
}

/// What one writer takes from the queue: saves for the group statement and prunes for the
/// prune statement, either possibly empty, never both.
struct Batch {
    saves: Vec<Member>,
    prunes: Vec<Prune>,
}

impl Batch {
    fn len(&self) -> usize {
        self.saves.len() + self.prunes.len()
    }
}

/// One prune of one execution waiting for its group.
struct Prune {
    execution_id: String,
    keep: i64,
    cutoff: Option<OffsetDateTime>,
    lazy: bool,
    reply: oneshot::Sender<PruneReply>,
}

/// What a group tells one of its prunes.
enum PruneReply {
    /// Committed, with this many checkpoints removed.
    Pruned(u64),
    /// The statement failed for a reason every prune of the group shares.
    Failed(Error),
    /// The statement was refused (a kept delta's base would go): prune alone, which rewrites
    /// such deltas first; dropping `turn` lets the writer go on to the next group.
    Alone { turn: watch::Sender<()> },
}

/// One save waiting for its group: the row, owned, and where its answer goes.
struct Member {
    id: String,
    execution_id: String,
    node_name: String,
    state: Option<Json<Box<RawValue>>>,
    metadata: Json<Box<RawValue>>,
    timestamp: OffsetDateTime,
    version: i64,
    parent_id: Option<String>,
    payload: Option<Vec<u8>>,
    base_version: Option<i64>,
    base_hash: Option<i64>,
    state_hash: Option<i64>,
    base_depth: Option<i32>,
    /// The floor of the append's read of the highest version (0: none known).
    floor: i64,
    /// The fencing token of a fenced save.
    fence: Option<i64>,
    bytes: usize,
    reply: oneshot::Sender<Reply>,
}

/// What a group tells one of its saves.
enum Reply {
    /// Stored and committed at this version.
    Stored(i64),
    /// The group failed for a reason every save shares (the server is unreachable).
    Failed(Error),
    /// The group was refused: make this save alone, once the saves before it of the same
    /// execution or id (`after`) are done, that is once their senders are dropped; dropping
    /// `turn` lets the saves after this one go.
    Alone {
        after: Vec<watch::Receiver<()>>,
        turn: watch::Sender<()>,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic elsewhere cannot break it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Committer {
    pub(crate) fn new(settings: GroupCommit) -> Self {
        Committer {
            settings,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                prunes: VecDeque::new(),
                in_flight: 0,
            }),
            stats: Mutex::new(GroupCommitStats::default()),
        }
    }

    pub(crate) fn settings(&self) -> GroupCommit {
        self.settings
    }

    pub(crate) fn stats(&self) -> GroupCommitStats {
        lock(&self.stats).clone()
    }

    /// Whether a save may go out at once, alone, as it would without group commit: nothing is
    /// queued and fewer than the allowed groups are in flight. It then counts as one in flight
    /// until [`Lead`] is dropped.
    fn try_lead(&self) -> bool {
        let mut queue = lock(&self.queue);
        if queue.pending.is_empty()
            && queue.prunes.is_empty()
            && queue.in_flight < self.settings.max_in_flight
        {
            queue.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Queues what `push` adds; starts a writer when fewer than the allowed groups are in
    /// flight.
    fn submit(self: &Arc<Self>, store: &PostgresStore, push: impl FnOnce(&mut Queue)) {
        let group = {
            let mut queue = lock(&self.queue);
            push(&mut queue);
            if queue.in_flight >= self.settings.max_in_flight {
                return;
            }
            queue.in_flight += 1;
            self.take_group(&mut queue)
        };
        tokio::spawn(write_groups(store.clone(), Arc::clone(self), group));
    }

    /// Ends a write in flight: what queued up meanwhile goes to a new writer, or there is one
    /// write fewer in flight.
    fn hand_off(self: &Arc<Self>, store: &PostgresStore) {
        let Some(group) = self.next_group() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write_groups(store.clone(), Arc::clone(self), group));
            }
            Err(_) => {
                // No runtime to write on: the saves go back to their callers (dropping their
                // reply senders), who make them alone.
                drop(group);
                self.abandon();
            }
        }
    }

    /// One write fewer in flight, for a writer that will not finish; when it was the last, the
    /// queued saves and prunes go back to their callers.
    fn abandon(&self) {
        let abandoned = {
            let mut queue = lock(&self.queue);
            queue.in_flight -= 1;
            if queue.in_flight == 0 {
                (
                    std::mem::take(&mut queue.pending),
                    std::mem::take(&mut queue.prunes),
                )
            } else {
                (VecDeque::new(), VecDeque::new())
            }
        };
        // Dropping a member's reply sender tells its caller to save (or prune) alone.
        drop(abandoned);
    }

    /// The oldest queued saves, within the group bounds, and the oldest queued prunes, as many
    /// as a group holds saves and one per execution (a second prune of an execution waits for
    /// the next group, so that each prune's count is its own); never nothing while anything is
    /// queued.
    fn take_group(&self, queue: &mut Queue) -> Batch {
        let mut prunes: Vec<Prune> = Vec::new();
        let mut later = VecDeque::new();
        while let Some(prune) = queue.prunes.pop_front() {
            if prunes.len() >= self.settings.max_saves
                || prunes.iter().any(|p| p.execution_id == prune.execution_id)
            {
                later.push_back(prune);
            } else {
                prunes.push(prune);
            }
        }
        queue.prunes = later;
        Batch {
            saves: self.take_saves(queue),
            prunes,
        }
    }

    /// The oldest queued saves, within the group bounds (at least one while any is queued).
    fn take_saves(&self, queue: &mut Queue) -> Vec<Member> {
        let mut group = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = queue.pending.front() {
            let full = group.len() >= self.settings.max_saves
                || bytes.saturating_add(next.bytes) > self.settings.max_bytes;
            if !group.is_empty() && full {
                break;
            }
            bytes = bytes.saturating_add(next.bytes);
            match queue.pending.pop_front() {
                Some(member) => group.push(member),
                None => break,
            }
        }
        group
    }

    /// Under load, lets the callers just answered queue their next saves before the next group
    /// leaves: without this, the callers of one group would always arrive just after the next
    /// one left, and groups would settle at half the callers. It yields to the runtime while
    /// the queue still grows, a few times at most; no timer.
    async fn gather(&self) {
        let queued_now = || {
            let queue = lock(&self.queue);
            queue.pending.len() + queue.prunes.len()
        };
        let mut queued = queued_now();
        for _ in 0..MAX_GATHER_YIELDS {
            tokio::task::yield_now().await;
            let now = queued_now();
            if now == queued || now >= self.settings.max_saves {
                return;
            }
            queued = now;
        }
    }

    /// The next group for a writer that has finished one, or `None` (and one writer fewer).
    fn next_group(&self) -> Option<Batch> {
        let mut queue = lock(&self.queue);
        if queue.pending.is_empty() && queue.prunes.is_empty() {
            queue.in_flight -= 1;
            return None;
        }
        Some(self.take_group(&mut queue))
    }
}

/// Leaves the writer count right when a writer task is dropped before it ends (its runtime
/// shut down).
struct Writer<'a> {
    committer: &'a Committer,
    finished: bool,
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.committer.abandon();
        }
    }
}

/// A save written alone, at once, by its own caller: when it ends (or its caller gives up), the
/// saves that queued up meanwhile go to a writer.
struct Lead<'a> {
    committer: &'a Arc<Committer>,
    store: &'a PostgresStore,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        self.committer.hand_off(self.store);
    }
}

/// A writer: writes `group`, then the groups that queued up meanwhile, until none is left. A
/// group's saves and prunes go side by side, each statement on a connection of its own.
async fn write_groups(store: PostgresStore, committer: Arc<Committer>, group: Batch) {
    let mut writer = Writer {
        committer: &committer,
        finished: false,
    };
    let mut group = group;
    loop {
        let size = group.len();
        let Batch { saves, prunes } = group;
        tokio::join!(
            async {
                if !saves.is_empty() {
                    write_group(&store, &committer, saves).await;
                }
            },
            async {
                if !prunes.is_empty() {
                    write_prunes(&store, &committer, prunes).await;
                }
            }
        );
        if size > 1 {
            committer.gather().await;
        }
        match committer.next_group() {
            Some(next) => group = next,
            None => {
                writer.finished = true;
                return;
            }
        }
    }
}

/// Writes one group and answers each of its saves.
async fn write_group(store: &PostgresStore, committer: &Committer, group: Vec<Member>) {
    if !numbered_in_order(&group) {
        lock(&committer.stats).record(group.len(), 0, true);
        store.meter.group_split();
        settle(one_by_one(group)).await;
        return;
    }
    let columns = Columns::of(&group);
    let mut route = store.leaves.as_ref().and_then(|leaves| {
        leaves.route(
            group.iter().map(|m| m.execution_id.as_str()),
            columns.deltas,
        )
    });
    let executions = || group.iter().map(|m| m.execution_id.as_str());
    let (result, races) = loop {
        let (result, races) = write_columns(store, &columns, route.as_ref()).await;
        let (Some(routed), Some(leaves)) = (route.take(), &store.leaves) else {
            break (result, races);
        };
        match &result {
            // Stored nothing: the partition is no longer attached to the table.
            Ok(rows) if rows.is_empty() => leaves.detached(&routed, executions()),
            // Refused by the partition: the partitioned table gives each save its exact
            // outcome, and the starts of the group's executions are learnt again.
            Err(e) if leaves.reroutes(&routed, e, executions()) => {}
            _ => {
                if result.is_ok() {
                    lock(&committer.stats).routed(true);
                }
                break (result, races);
            }
        }
        lock(&committer.stats).routed(false);
    };
    drop(columns);
    let split = matches!(&result, Err(e) if is_refusal(e));
    lock(&committer.stats).record(group.len(), races, split);
    if split {
        store.meter.group_split();
    } else if result.is_ok() {
        store.meter.group_written(group.len());
    }
    match result {
        Ok(rows) => {
            let mut left_out = Vec::new();
            let mut versions = HashMap::with_capacity(rows.len());
            for row in &rows {
                if let (Ok(id), Ok(version)) = (row.text(0), row.int(1)) {
                    versions.insert(id, (version, row.timestamp(2).ok()));
                }
            }
            for member in group {
                let reply = match versions.remove(&member.id) {
                    Some((version, start)) => {
                        if let (Some(leaves), Some(start)) = (&store.leaves, start) {
                            leaves.learn(&member.execution_id, start);
                        }
                        Reply::Stored(version)
                    }
                    // Left out (a fenced save whose lease moved on), or not reported back
                    // (it cannot happen with one row per save): made alone below, where it
                    // meets `LeaseLost` or finds the row by its id.
                    None => {
                        left_out.push(member);
                        continue;
                    }
                };
                let _ = member.reply.send(reply);
            }
            // In arrival order among themselves, as the saves of a refused group.
            settle(one_by_one(left_out)).await;
        }
        Err(e) if split => {
            tracing::debug!(saves = group.len(), error = %e, "a group was refused; saving its members one by one");
            settle(one_by_one(group)).await;
        }
        Err(e) => {
            for member in group {
                let _ = member.reply.send(Reply::Failed(copy_error(&e)));
            }
        }
    }
}

/// Runs the group statement, on the partitioned table or on `route`'s partition, sending it
/// again while it only lost the race for its versions; returns its outcome and the races lost.
async fn write_columns(
    store: &PostgresStore,
    columns: &Columns<'_>,
    route: Option<&Route>,
) -> (Result<Vec<crate::pool::Row>>, usize) {
    // The columns, then the starts of a partition's statement, then the fencing tokens.
    let mut params: Vec<Param<'_>> = columns.params().to_vec();
    let statement = match route {
        Some(route) => {
            params.push(&route.starts);
            &route.statement
        }
        None if columns.deltas => &store.sql.group_save_delta,
        None => &store.sql.group_save,
    };
    params.push(&columns.fences);
    let params = params.as_slice();
    let all_append = columns.versions.iter().all(|v| *v == 0);
    let mut races = 0;
    loop {
        let result = store
            .retry
            .run(&store.meter, "save", || async {
                Ok(store.pool.query(statement, params).await?)
            })
            .await;
        match result {
            // Another writer took versions this group numbered: number them again.
            Err(e) if all_append && store.is_version_conflict(&e) && races < MAX_GROUP_RACES => {
                races += 1;
                tokio::time::sleep(append_backoff(races)).await;
            }
            other => return (other, races),
        }
    }
}

/// Prunes the executions of `prunes` in one statement and answers each; when the delta key
/// refuses it (a kept delta's base would go), each prune is made alone, which rewrites such
/// deltas first.
async fn write_prunes(store: &PostgresStore, committer: &Committer, prunes: Vec<Prune>) {
    let executions: Vec<&str> = prunes.iter().map(|p| p.execution_id.as_str()).collect();
    let keeps: Vec<i64> = prunes.iter().map(|p| p.keep).collect();
    let cutoffs: Vec<Option<OffsetDateTime>> = prunes.iter().map(|p| p.cutoff).collect();
    // Flushed unless every prune of the group asked not to wait for it.
    let statement = if prunes.iter().all(|p| p.lazy) {
        &store.sql.prune_executions_lazy
    } else {
        &store.sql.prune_executions
    };
    let result = store
        .retry
        .run(&store.meter, "prune", || async {
            Ok(store
                .pool
                .query(statement, &[&executions, &keeps, &cutoffs])
                .await?)
        })
        .await;
    drop((executions, keeps, cutoffs));
    lock(&committer.stats).pruned(prunes.len());
    match result {
        Ok(rows) => {
            let mut removed: HashMap<String, u64> = HashMap::with_capacity(rows.len());
            for row in &rows {
                if let (Ok(execution), Ok(count)) = (row.text(0), row.int(1)) {
                    removed.insert(execution, u64::try_from(count).unwrap_or(0));
                }
            }
            for prune in prunes {
                let count = removed.remove(&prune.execution_id).unwrap_or(0);
                let _ = prune.reply.send(PruneReply::Pruned(count));
            }
        }
        Err(e) if crate::store::write::is_base_violation(store, &e) => {
            let mut alone = Vec::with_capacity(prunes.len());
            for prune in prunes {
                let (turn, done) = watch::channel(());
                alone.push(done);
                let _ = prune.reply.send(PruneReply::Alone { turn });
            }
            settle(alone).await;
        }
        Err(e) => {
            for prune in prunes {
                let _ = prune.reply.send(PruneReply::Failed(copy_error(&e)));
            }
        }
    }
}

/// Whether the group statement numbers the group's appends as saving them in order would:
/// not when an append follows an explicit version of its execution, since the append must
/// then come after that version, which the statement does not look at.
fn numbered_in_order(group: &[Member]) -> bool {
    let mut explicit: Vec<&str> = Vec::new();
    for member in group {
        if member.version != 0 {
            explicit.push(&member.execution_id);
        } else if explicit.contains(&member.execution_id.as_str()) {
            return false;
        }
    }
    true
}

/// Sends every save of `group` back to its caller to be made alone, each after the saves
/// before it in the group with the same execution or the same id: the outcomes are those of
/// saving the group in arrival order, while saves of unrelated executions run side by side.
/// Returns what ends as each of them is done, for the writer to [`settle`].
fn one_by_one(group: Vec<Member>) -> Vec<watch::Receiver<()>> {
    let mut last_of_execution: HashMap<String, watch::Receiver<()>> = HashMap::new();
    let mut last_of_id: HashMap<String, watch::Receiver<()>> = HashMap::new();
    let mut every = Vec::with_capacity(group.len());
    for member in group {
        let (turn, done) = watch::channel(());
        every.push(done.clone());
        let after = [
            last_of_execution.insert(member.execution_id, done.clone()),
            last_of_id.insert(member.id, done),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = member.reply.send(Reply::Alone { after, turn });
    }
    every
}

/// Waits until every save or prune sent back to be made alone is done (its `turn` dropped,
/// also when its caller gives up), so that the next group, whose saves arrived later, is
/// written after them: a save sent alone keeps its place in arrival order.
async fn settle(alone: Vec<watch::Receiver<()>>) {
    for mut done in alone {
        // Nothing is ever sent: `changed` fails once the sender is dropped.
        while done.changed().await.is_ok() {}
    }
}

/// Whether the server refused the group for what one of its saves holds (a constraint, a
/// value out of range, a delta whose base changed), rather than for a reason all share.
fn is_refusal(err: &Error) -> bool {
    DbError::of(err).is_some_and(|db| {
        db.kind() == DbErrorKind::Server
            && db.code().is_some_and(|code| {
                let class = &code.code()[..2];
                class == "22" || class == "23"
            })
    })
}

/// The same failure for another save of the group.
fn copy_error(err: &Error) -> Error {
    match DbError::of(err) {
        Some(db) => db.copied().into_core(),
        None => Error::Backend {
            message: err.to_string(),
            retryable: err.is_retryable(),
            source: format!("the group this save was sent in failed: {err}").into(),
        },
    }
}

/// The group as one array per column, in the placeholder order of the group statements.
struct Columns<'a> {
    ids: Vec<&'a str>,
    executions: Vec<&'a str>,
    nodes: Vec<&'a str>,
    states: Vec<Option<&'a Json<Box<RawValue>>>>,
    metadata: Vec<&'a Json<Box<RawValue>>>,
    timestamps: Vec<OffsetDateTime>,
    versions: Vec<i64>,
    parents: Vec<Option<&'a str>>,
    payloads: Vec<Option<&'a [u8]>>,
    base_versions: Vec<Option<i64>>,
    base_hashes: Vec<Option<i64>>,
    state_hashes: Vec<Option<i64>>,
    base_depths: Vec<Option<i32>>,
    floors: Vec<i64>,
    fences: Vec<Option<i64>>,
    deltas: bool,
}

impl<'a> Columns<'a> {
    fn of(group: &'a [Member]) -> Self {
        Columns {
            ids: group.iter().map(|m| m.id.as_str()).collect(),
            executions: group.iter().map(|m| m.execution_id.as_str()).collect(),
            nodes: group.iter().map(|m| m.node_name.as_str()).collect(),
            states: group.iter().map(|m| m.state.as_ref()).collect(),
            metadata: group.iter().map(|m| &m.metadata).collect(),
            timestamps: group.iter().map(|m| m.timestamp).collect(),
            versions: group.iter().map(|m| m.version).collect(),
            parents: group.iter().map(|m| m.parent_id.as_deref()).collect(),
            payloads: group.iter().map(|m| m.payload.as_deref()).collect(),
            base_versions: group.iter().map(|m| m.base_version).collect(),
            base_hashes: group.iter().map(|m| m.base_hash).collect(),
            state_hashes: group.iter().map(|m| m.state_hash).collect(),
            base_depths: group.iter().map(|m| m.base_depth).collect(),
            floors: group.iter().map(|m| m.floor).collect(),
            fences: group.iter().map(|m| m.fence).collect(),
            deltas: group.iter().any(|m| m.base_version.is_some()),
        }
    }

    fn params(&self) -> [Param<'_>; 14] {
        [
            &self.ids,
            &self.executions,
            &self.nodes,
            &self.states,
            &self.metadata,
            &self.timestamps,
            &self.versions,
            &self.parents,
            &self.payloads,
            &self.base_versions,
            &self.base_hashes,
            &self.state_hashes,
            &self.base_depths,
            &self.floors,
        ]
    }
}

/// `save` with group commit: the save joins the next group unless it is larger than a whole
/// group may be.
///
/// A fenced save joins groups too: the group statement checks its token, and one whose token
/// is no longer current is left out and made alone, where it meets `LeaseLost`.
pub(crate) async fn save(
    store: &PostgresStore,
    committer: &Arc<Committer>,
    checkpoint: &Checkpoint,
    fence: Option<&Fence>,
) -> Result<i64> {
    let encoded = store.encoder.encode(checkpoint, false)?;
    if !committer.settings.lone_saves_grouped && committer.try_lead() {
        let _lead = Lead { committer, store };
        let outcome = crate::store::write::save_encoded(store, checkpoint, encoded, fence).await;
        lock(&committer.stats).record(1, 0, false);
        if outcome.is_ok() {
            store.meter.group_written(1);
        }
        return outcome;
    }
    let state = match &encoded.state {
        Some(Json(state)) => Some(Json(serde_json::value::to_raw_value(state)?)),
        None => None,
    };
    let metadata = Json(serde_json::value::to_raw_value(&checkpoint.metadata)?);
    let bytes = state.as_ref().map_or(0, |s| s.0.get().len())
        + encoded.payload.as_ref().map_or(0, Vec::len)
        + metadata.0.get().len();
    if bytes > committer.settings.max_bytes {
        return crate::store::write::save_encoded(store, checkpoint, encoded, fence).await;
    }
    let written = encoded.written();
    let Encoded {
        payload,
        base,
        fingerprint,
        ..
    } = encoded;
    let (reply, answer) = oneshot::channel();
    let member = Member {
        id: checkpoint.id.clone(),
        execution_id: checkpoint.execution_id.clone(),
        node_name: checkpoint.node_name.clone(),
        state,
        metadata,
        timestamp: checkpoint.timestamp,
        version: checkpoint.version,
        parent_id: checkpoint.parent_id.clone(),
        payload,
        base_version: base.map(|b| b.version),
        base_hash: base.map(|b| b.hash),
        state_hash: fingerprint.map(|f| f.hash),
        base_depth: base.map(|b| b.depth),
        floor: store.floor(&checkpoint.execution_id),
        fence: fence.map(|f| f.token),
        bytes,
        reply,
    };
    committer.submit(store, |queue| queue.pending.push_back(member));
    match answer.await {
        Ok(Reply::Stored(version)) => {
            let stored = Encoded {
                state: None,
                payload: None,
                base,
                fingerprint,
            };
            store.encoder.remember(checkpoint, version, &stored);
            store.wrote(written);
            store.saved(checkpoint, version);
            Ok(version)
        }
        Ok(Reply::Failed(err)) => Err(err),
        Ok(Reply::Alone { after, turn }) => {
            for mut before in after {
                // Nothing is ever sent: `changed` fails once the earlier save is done (or its
                // caller gave up waiting).
                while before.changed().await.is_ok() {}
            }
            let outcome = crate::store::write::save_alone(store, checkpoint, fence).await;
            drop(turn);
            outcome
        }
        // The group was lost before it answered (its runtime shut down): saving alone finds
        // the row by id if the group did commit.
        Err(_) => crate::store::write::save_alone(store, checkpoint, fence).await,
    }
}

/// A prune of one execution (`keep` newest kept, older than `cutoff` removed) with group
/// commit: at once, alone, when nothing is in flight; otherwise in the next group, beside its
/// saves.
pub(crate) async fn prune(
    store: &PostgresStore,
    committer: &Arc<Committer>,
    execution_id: &str,
    keep: i64,
    cutoff: Option<OffsetDateTime>,
    lazy: bool,
) -> Result<u64> {
    let alone = || crate::store::write::prune_now(store, Some(execution_id), keep, cutoff, lazy);
    if !committer.settings.lone_saves_grouped && committer.try_lead() {
        let _lead = Lead { committer, store };
        return alone().await;
    }
    let (reply, answer) = oneshot::channel();
    let prune = Prune {
        execution_id: execution_id.to_owned(),
        keep,
        cutoff,
        lazy,
        reply,
    };
    committer.submit(store, |queue| queue.prunes.push_back(prune));
    match answer.await {
        Ok(PruneReply::Pruned(removed)) => Ok(removed),
        Ok(PruneReply::Failed(err)) => Err(err),
        // Refused: made alone, the writer waiting for it before the next group.
        Ok(PruneReply::Alone { turn }) => {
            let outcome = alone().await;
            drop(turn);
            outcome
        }
        // The group was lost before it answered: a prune made again removes what is still
        // there.
        Err(_) => alone().await,
    }
}

#[cfg(test)]
mod tests;
