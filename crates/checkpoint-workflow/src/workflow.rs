//! [`Workflow`]: named async nodes over a typed state, run durably.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::{BoxError, Checkpoint, CheckpointStore, Lease};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::checkpointer::{Checkpointer, SavePolicy};
use crate::error::WorkflowError;
use crate::graph::{Fingerprint, GraphChange, GraphShape};
use crate::meta;
use crate::migrate::Migrations;

/// Where a node sends the run next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run this node.
    Node(String),
    /// The run is finished.
    End,
}

impl Next {
    /// Run node `name` next.
    pub fn to(name: impl Into<String>) -> Self {
        Next::Node(name.into())
    }
}

/// What a node returns: its new state and where to go next.
pub type NodeResult<S> = Result<(S, Next), BoxError>;

type NodeFuture<S> = Pin<Box<dyn Future<Output = NodeResult<S>> + Send>>;
type NodeFn<S> = Arc<dyn Fn(S) -> NodeFuture<S> + Send + Sync>;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// A node returned [`Next::End`].
    Finished,
    /// The run paused; `next` runs when it is run again.
    Interrupted {
        /// The node that runs on the next call.
        next: String,
    },
}

/// The result of [`Workflow::run`].
#[derive(Clone, Debug)]
pub struct RunOutcome<S> {
    /// Finished or paused.
    pub status: RunStatus,
    /// The state at that point.
    pub state: S,
    /// The checkpoint that records it (the last one written, or the one the run found).
    pub checkpoint: Option<Checkpoint>,
    /// The nodes this call ran, in order.
    pub ran: Vec<String>,
}

/// A workflow: named async nodes over a state `S`, each returning the next node or the end.
///
/// [`run`](Self::run) saves checkpoints as the [`SavePolicy`] says (after every node by
/// default), always when the run finishes, pauses or a node fails. Each checkpoint records
/// the step, the source (`run`), the outcome and the node that runs next, so a run of an
/// execution that has checkpoints resumes at that node: a node whose checkpoint was saved
/// never runs again.
///
/// ```
/// use checkpoint_memory::MemoryStore;
/// use checkpoint_workflow::{Next, RunStatus, Workflow};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), checkpoint_workflow::WorkflowError> {
/// let workflow = Workflow::new("double")
///     .node("double", |n: u64| async move { Ok((n * 2, Next::to("check"))) })
///     .node("check", |n: u64| async move {
///         Ok((n, if n < 100 { Next::to("double") } else { Next::End }))
///     });
/// let store = MemoryStore::new();
/// let outcome = workflow.run(&store, "run-1", 3).await?;
/// assert_eq!(outcome.status, RunStatus::Finished);
/// assert_eq!(outcome.state, 192);
/// # Ok(())
/// # }
/// ```
pub struct Workflow<S> {
    start: String,
    nodes: HashMap<String, NodeFn<S>>,
    interrupt_before: HashSet<String>,
    interrupt_after: HashSet<String>,
    policy: SavePolicy,
    max_steps: u64,
    lease: Option<LeaseSettings>,
    migrations: Migrations,
    edges: BTreeMap<String, BTreeSet<String>>,
    renames: BTreeMap<String, String>,
    allow_graph_changes: bool,
}

/// Who a run holds its execution's lease as, and for how long at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseSettings {
    owner: String,
    ttl: Duration,
}

impl<S> std::fmt::Debug for Workflow<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut nodes: Vec<&String> = self.nodes.keys().collect();
        nodes.sort();
        f.debug_struct("Workflow")
            .field("start", &self.start)
            .field("nodes", &nodes)
            .field("interrupt_before", &self.interrupt_before)
            .field("interrupt_after", &self.interrupt_after)
            .field("policy", &self.policy)
            .field("max_steps", &self.max_steps)
            .field("lease", &self.lease)
            .field("migrations", &self.migrations)
            .field("edges", &self.edges)
            .field("renames", &self.renames)
            .field("allow_graph_changes", &self.allow_graph_changes)
            .finish()
    }
}

impl<S> Workflow<S>
where
    S: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The most nodes one call of [`run`](Self::run) executes by default.
    pub const DEFAULT_MAX_STEPS: u64 = 10_000;

    /// A workflow that starts at node `start`.
    pub fn new(start: impl Into<String>) -> Self {
        Workflow {
            start: start.into(),
            nodes: HashMap::new(),
            interrupt_before: HashSet::new(),
            interrupt_after: HashSet::new(),
            policy: SavePolicy::EveryNode,
            max_steps: Self::DEFAULT_MAX_STEPS,
            lease: None,
            migrations: Migrations::default(),
            edges: BTreeMap::new(),
            renames: BTreeMap::new(),
            allow_graph_changes: false,
        }
    }

    /// Adds node `name`. A node takes the state and returns the new state and the next node.
    pub fn node<F, Fut>(mut self, name: impl Into<String>, node: F) -> Self
    where
        F: Fn(S) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = NodeResult<S>> + Send + 'static,
    {
        let node: NodeFn<S> = Arc::new(move |state| Box::pin(node(state)));
        self.nodes.insert(name.into(), node);
        self
    }

    /// Pause before node `name` runs: the run saves a checkpoint and returns
    /// [`RunStatus::Interrupted`]; the next run (after an optional
    /// [`update_state`](crate::WorkflowStoreExt::update_state)) runs `name`.
    pub fn interrupt_before(mut self, name: impl Into<String>) -> Self {
        self.interrupt_before.insert(name.into());
        self
    }

    /// Pause after node `name` has run and its checkpoint is saved.
    pub fn interrupt_after(mut self, name: impl Into<String>) -> Self {
        self.interrupt_after.insert(name.into());
        self
    }

    /// When checkpoints are saved between nodes (default: after every node).
    pub fn save_policy(mut self, policy: SavePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The most nodes one call of [`run`](Self::run) executes before it stops with
    /// [`WorkflowError::StepLimit`].
    pub fn max_steps(mut self, limit: u64) -> Self {
        self.max_steps = limit;
        self
    }

    /// Declares the successors of node `from` ([`meta::END`] for the end of the run): they
    /// become part of the graph's [`fingerprint`](Self::fingerprint), and a run whose node
    /// `from` returns another successor stops with [`WorkflowError::UndeclaredEdge`] before
    /// that node's result is saved. Nodes without declared successors may go anywhere.
    /// Calling it again for one node adds to its successors.
    pub fn edges<I, T>(mut self, from: impl Into<String>, to: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.edges
            .entry(from.into())
            .or_default()
            .extend(to.into_iter().map(Into::into));
        self
    }

    /// The state versions this workflow reads and writes ([`crate::migrate`]). Every
    /// checkpoint it saves records [`Migrations::current`]; an execution saved at an older
    /// version is upgraded step by step when it resumes (and saved at the current version
    /// with its next checkpoint), and one saved at a newer version is refused with
    /// [`WorkflowError::Migration`]. Default: version 1, no migrations.
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = migrations;
        self
    }

    /// Resumes executions saved under another graph (another [`fingerprint`](Self::fingerprint))
    /// as long as the node they resume at still exists. Without this or a
    /// [`renamed`](Self::renamed) mapping, such an execution is refused with
    /// [`WorkflowError::GraphChanged`].
    pub fn allow_graph_changes(mut self) -> Self {
        self.allow_graph_changes = true;
        self
    }

    /// Node `old` of an earlier graph is node `new` in this one: an execution saved under
    /// another graph that resumes at (or paused before) `old` resumes at `new`. Giving a
    /// mapping allows resuming under a changed graph, as
    /// [`allow_graph_changes`](Self::allow_graph_changes) does.
    pub fn renamed(mut self, old: impl Into<String>, new: impl Into<String>) -> Self {
        self.renames.insert(old.into(), new.into());
        self
    }

    /// The workflow's structure: start node, node names, declared edges, interrupt points.
    pub fn shape(&self) -> GraphShape {
        GraphShape {
            start: self.start.clone(),
            nodes: self.nodes.keys().cloned().collect(),
            edges: self.edges.clone(),
            interrupt_before: self.interrupt_before.iter().cloned().collect(),
            interrupt_after: self.interrupt_after.iter().cloned().collect(),
        }
    }

    /// The fingerprint of [`shape`](Self::shape), recorded in every checkpoint the workflow
    /// saves ([`crate::graph`]).
    pub fn fingerprint(&self) -> Fingerprint {
        self.shape().fingerprint()
    }

    /// A person's edit, as [`WorkflowStoreExt::update_state`](crate::WorkflowStoreExt::update_state),
    /// recording this workflow's state version and graph on it: use it when the state is
    /// versioned, so the edit is read back at the version it was written in.
    ///
    /// # Errors
    /// As [`WorkflowStoreExt::update_state`](crate::WorkflowStoreExt::update_state).
    pub async fn update_state<St>(
        &self,
        store: &St,
        execution_id: &str,
        as_node: &str,
        state: &S,
    ) -> Result<Checkpoint, WorkflowError>
    where
        St: CheckpointStore + ?Sized,
    {
        let latest = crate::read::latest_to_edit(store, execution_id).await?;
        let mut edit = crate::read::edit_of(&latest, execution_id, as_node, state)?;
        Stamp::new(&self.shape(), &self.migrations).apply(&mut edit.metadata);
        store.save(&edit).await?;
        Ok(edit)
    }

    /// Runs every execution under a lease ([`checkpoint_core::lease`]) held as `owner` for
    /// `ttl` at a time: [`run`](Self::run) takes the execution's lease first (an execution
    /// another worker holds is refused with
    /// [`Error::LeaseHeld`](checkpoint_core::Error::LeaseHeld), naming the holder, and nothing
    /// runs), fences every save with it, renews it every third of `ttl` while a node runs, and
    /// releases it when the run finishes, pauses or fails. When the lease is lost (another
    /// worker or an operator took it over), the run stops at once with
    /// [`Error::LeaseLost`](checkpoint_core::Error::LeaseLost), naming the new holder, and
    /// nothing more of it is stored. `owner` should name this worker uniquely.
    ///
    /// ```
    /// use std::time::Duration;
    /// use checkpoint_memory::MemoryStore;
    /// use checkpoint_workflow::{Next, Workflow};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), checkpoint_workflow::WorkflowError> {
    /// let workflow = Workflow::new("step")
    ///     .node("step", |n: u64| async move { Ok((n + 1, Next::End)) })
    ///     .lease("worker-7", Duration::from_secs(30));
    /// let store = MemoryStore::new();
    /// workflow.run(&store, "run-1", 0).await?;
    /// assert!(checkpoint_core::CheckpointStore::lease(&store, "run-1").await?.is_none(), "released");
    /// # Ok(())
    /// # }
    /// ```
    pub fn lease(mut self, owner: impl Into<String>, ttl: Duration) -> Self {
        self.lease = Some(LeaseSettings {
            owner: owner.into(),
            ttl,
        });
        self
    }

    /// Runs execution `execution_id`: from `initial` at the start node when it has no
    /// checkpoint, otherwise from its latest checkpoint at the node that runs next (`initial`
    /// is then unused). Returns when the run finishes or pauses.
    ///
    /// # Errors
    /// - [`WorkflowError::Node`] when a node fails (its checkpoint, with the error, is saved);
    /// - [`WorkflowError::Store`] when the store fails, including
    ///   [`Error::Conflict`](checkpoint_core::Error::Conflict) when another runner advanced
    ///   the same execution first, and, with a [`lease`](Self::lease),
    ///   [`Error::LeaseHeld`](checkpoint_core::Error::LeaseHeld) and
    ///   [`Error::LeaseLost`](checkpoint_core::Error::LeaseLost);
    /// - [`WorkflowError::UnknownNode`], [`WorkflowError::StepLimit`],
    ///   [`WorkflowError::UndeclaredEdge`];
    /// - before any node runs: [`WorkflowError::Migration`] when the execution's state cannot
    ///   be read at this workflow's state version, [`WorkflowError::GraphChanged`] and
    ///   [`WorkflowError::NodeGone`] when it was saved under another graph ([`crate::graph`]).
    pub async fn run<St>(
        &self,
        store: &St,
        execution_id: &str,
        initial: S,
    ) -> Result<RunOutcome<S>, WorkflowError>
    where
        St: CheckpointStore + ?Sized,
    {
        self.migrations
            .check()
            .map_err(|source| WorkflowError::Migration {
                execution_id: execution_id.to_owned(),
                source,
            })?;
        let Some(settings) = &self.lease else {
            return self.run_held(store, execution_id, initial, None).await;
        };
        let mut held = Held {
            lease: store
                .acquire(execution_id, &settings.owner, settings.ttl)
                .await?,
            ttl: settings.ttl,
        };
        let outcome = self
            .run_held(store, execution_id, initial, Some(&mut held))
            .await;
        let lost = matches!(
            &outcome,
            Err(WorkflowError::Store(
                checkpoint_core::Error::LeaseLost { .. }
            ))
        );
        if !lost {
            // The run's outcome stands either way: a lease not released expires.
            if let Err(err) = store.release(&held.lease).await {
                tracing::warn!(execution_id, error = %err, "could not release the run's lease");
            }
        }
        outcome
    }

    async fn run_held<St>(
        &self,
        store: &St,
        execution_id: &str,
        initial: S,
        mut held: Option<&mut Held>,
    ) -> Result<RunOutcome<S>, WorkflowError>
    where
        St: CheckpointStore + ?Sized,
    {
        let shape = self.shape();
        let stamp = Stamp::new(&shape, &self.migrations);
        let latest = store.latest(execution_id).await?;
        let mut checkpointer = Checkpointer::new(store, execution_id)
            .with_policy(self.policy)
            .continue_from(latest.as_ref());
        if let Some(held) = &held {
            checkpointer = checkpointer.fenced(held.lease.fence());
        }
        let mut run = match &latest {
            None => Progress {
                state: initial,
                next: Some(self.start.clone()),
                last_node: meta::START.to_owned(),
                step: 0,
                resuming_pause: None,
                checkpoint: None,
                ran: Vec::new(),
            },
            Some(cp) => {
                let route = self.route(execution_id, cp, &shape, &stamp)?;
                let state =
                    self.migrations
                        .state_as(cp)
                        .map_err(|source| WorkflowError::Migration {
                            execution_id: execution_id.to_owned(),
                            source,
                        })?;
                Progress {
                    state,
                    next: route.next,
                    last_node: route.last_node,
                    step: meta::step(cp),
                    resuming_pause: route.paused_before,
                    checkpoint: latest.clone(),
                    ran: Vec::new(),
                }
            }
        };

        while let Some(node) = run.next.clone() {
            let Some(body) = self.nodes.get(&node) else {
                checkpointer.flush().await?;
                return Err(WorkflowError::UnknownNode { node });
            };
            if self.interrupt_before.contains(&node)
                && run.resuming_pause.take().as_deref() != Some(node.as_str())
            {
                let mut metadata = stamp.run(run.step, Some(&node), "interrupted");
                metadata.insert(meta::INTERRUPT.into(), Value::from("before"));
                let saved = checkpointer
                    .save_now(&run.last_node, &run.state, metadata)
                    .await?;
                return Ok(run.paused(node, saved));
            }
            run.resuming_pause = None;
            if run.ran.len() as u64 >= self.max_steps {
                checkpointer.flush().await?;
                return Err(WorkflowError::StepLimit {
                    limit: self.max_steps,
                });
            }

            let input = run.state.clone();
            let work = body(run.state.clone());
            let result = match held.as_deref_mut() {
                Some(held) => held.renewing(store, work).await?,
                None => work.await,
            };
            let (state, next) = match result {
                Ok(done) => done,
                Err(source) => {
                    let mut metadata = stamp.run(run.step, Some(&node), "error");
                    metadata.insert(meta::ERROR.into(), Value::from(source.to_string()));
                    checkpointer.save_now(&node, &input, metadata).await?;
                    return Err(WorkflowError::Node { node, source });
                }
            };
            if let Some(allowed) = self.edges.get(&node) {
                let to = match &next {
                    Next::Node(name) => name.as_str(),
                    Next::End => meta::END,
                };
                if !allowed.contains(to) {
                    checkpointer.flush().await?;
                    return Err(WorkflowError::UndeclaredEdge {
                        from: node,
                        to: to.to_owned(),
                    });
                }
            }
            run.ran.push(node.clone());
            run.step += 1;
            run.state = state;
            run.last_node = node.clone();
            let next = match next {
                Next::Node(name) => Some(name),
                Next::End => None,
            };
            run.next = next.clone();

            match next {
                None => {
                    let metadata = stamp.run(run.step, None, "finished");
                    let saved = checkpointer.save_now(&node, &run.state, metadata).await?;
                    run.checkpoint = Some(saved);
                }
                Some(following) if self.interrupt_after.contains(&node) => {
                    let mut metadata = stamp.run(run.step, Some(&following), "interrupted");
                    metadata.insert(meta::INTERRUPT.into(), Value::from("after"));
                    let saved = checkpointer.save_now(&node, &run.state, metadata).await?;
                    return Ok(run.paused(following, saved));
                }
                Some(following) => {
                    let metadata = stamp.run(run.step, Some(&following), "ok");
                    if let Some(saved) = checkpointer
                        .record_with(&node, &run.state, metadata)
                        .await?
                    {
                        run.checkpoint = Some(saved);
                    }
                }
            }
        }
        Ok(RunOutcome {
            status: RunStatus::Finished,
            state: run.state,
            checkpoint: run.checkpoint,
            ran: run.ran,
        })
    }
}

/// Where a resumed execution goes on, its node names read through this graph's renames.
struct Route {
    next: Option<String>,
    last_node: String,
    paused_before: Option<String>,
}

impl<S> Workflow<S> {
    /// Where `latest` resumes under this graph, or why it may not.
    fn route(
        &self,
        execution_id: &str,
        latest: &Checkpoint,
        shape: &GraphShape,
        stamp: &Stamp,
    ) -> Result<Route, WorkflowError> {
        let mut route = Route {
            // A checkpoint written outside the runner says nothing of what comes next: start
            // over at the start node with its state.
            next: if meta::has_next(latest) {
                meta::next(latest)
            } else {
                Some(self.start.clone())
            },
            last_node: latest.node_name.clone(),
            paused_before: meta::paused_before(latest),
        };
        // Checkpoints written outside the runner, or before fingerprints, say nothing of
        // their graph: they resume as they always did.
        let Some(stored) = meta::graph(latest) else {
            return Ok(route);
        };
        if stored == stamp.graph {
            return Ok(route);
        }
        let stored_nodes: BTreeSet<String> = latest
            .metadata
            .get(meta::GRAPH_NODES)
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let change = Box::new(GraphChange::between(
            stored.to_owned(),
            &stored_nodes,
            shape,
            &self.renames,
        ));
        if !self.allow_graph_changes && self.renames.is_empty() {
            return Err(WorkflowError::GraphChanged {
                execution_id: execution_id.to_owned(),
                change,
            });
        }
        let rename = |name: String| self.renames.get(&name).cloned().unwrap_or(name);
        route.next = route.next.map(rename);
        route.last_node = rename(route.last_node);
        route.paused_before = route.paused_before.map(rename);
        match &route.next {
            Some(node) if !shape.nodes.contains(node) => Err(WorkflowError::NodeGone {
                execution_id: execution_id.to_owned(),
                node: node.clone(),
                change,
            }),
            _ => Ok(route),
        }
    }
}

/// What every checkpoint of this workflow records besides its progress: its graph and its
/// state version.
struct Stamp {
    graph: String,
    nodes: Value,
    version: u32,
}

impl Stamp {
    fn new(shape: &GraphShape, migrations: &Migrations) -> Self {
        Stamp {
            graph: shape.fingerprint().to_string(),
            nodes: shape
                .nodes
                .iter()
                .map(|n| Value::from(n.as_str()))
                .collect(),
            version: migrations.current(),
        }
    }

    fn apply(&self, metadata: &mut Map<String, Value>) {
        metadata.insert(meta::GRAPH.into(), Value::from(self.graph.as_str()));
        metadata.insert(meta::GRAPH_NODES.into(), self.nodes.clone());
        metadata.insert(meta::STATE_VERSION.into(), Value::from(self.version));
    }

    /// [`meta::run`] with the stamp.
    fn run(&self, step: u64, next: Option<&str>, outcome: &str) -> Map<String, Value> {
        let mut metadata = meta::run(step, next, outcome);
        self.apply(&mut metadata);
        metadata
    }
}

/// The lease a run holds, and how long it asks for at each renewal.
struct Held {
    lease: Lease,
    ttl: Duration,
}

impl Held {
    /// Runs `work` (a node), renewing the lease every third of its time to live meanwhile;
    /// stops at once, dropping `work`, when a renewal finds the lease lost.
    async fn renewing<St, F>(&mut self, store: &St, work: F) -> Result<F::Output, WorkflowError>
    where
        St: CheckpointStore + ?Sized,
        F: Future,
    {
        let every = self.ttl / 3;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                () = tokio::time::sleep(every) => {
                    self.lease = store.renew(&self.lease, self.ttl).await?;
                }
            }
        }
    }
}

/// Where a run stands.
struct Progress<S> {
    state: S,
    next: Option<String>,
    /// The node the state was saved after (or [`meta::START`]).
    last_node: String,
    step: u64,
    /// The node the run starts paused before, so it runs instead of pausing again.
    resuming_pause: Option<String>,
    checkpoint: Option<Checkpoint>,
    ran: Vec<String>,
}

impl<S> Progress<S> {
    fn paused(self, next: String, checkpoint: Checkpoint) -> RunOutcome<S> {
        RunOutcome {
            status: RunStatus::Interrupted { next },
            state: self.state,
            checkpoint: Some(checkpoint),
            ran: self.ran,
        }
    }
}
