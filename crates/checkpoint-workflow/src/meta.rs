//! The metadata the runner writes on every checkpoint, and how it reads it back.
//!
//! | key | value |
//! | --- | --- |
//! | `source` | `"run"`, `"update"` or `"fork"` ([`checkpoint_core::meta::SOURCE`]) |
//! | `step` | nodes completed in the execution so far |
//! | `next` | the node that runs next, `null` when the run is finished |
//! | `outcome` | `"ok"`, `"finished"`, `"interrupted"`, `"error"` or `"updated"` |
//! | `interrupt` | `"before"` or `"after"` on a pause |
//! | `error` | the node's error message when `outcome` is `"error"` |
//! | `state_version` | the version of the state's shape ([`crate::Migrations`]) |
//! | `graph` | the workflow's [`Fingerprint`](crate::Fingerprint) |
//! | `graph_nodes` | the workflow's node names, sorted, to say what changed on resume |

use checkpoint_core::Checkpoint;
use serde_json::{Map, Value};

pub use checkpoint_core::meta::SOURCE;

/// Nodes completed in the execution so far.
pub const STEP: &str = "step";
/// The node that runs next (`null` when finished).
pub const NEXT: &str = "next";
/// What happened: `ok`, `finished`, `interrupted`, `error`, `updated`.
pub const OUTCOME: &str = "outcome";
/// `before` or `after` on a pause.
pub const INTERRUPT: &str = "interrupt";
/// The node's error message.
pub const ERROR: &str = "error";

/// The version of the state's shape ([`crate::Migrations`]); absent means version 1.
pub const STATE_VERSION: &str = "state_version";
/// The fingerprint of the workflow's graph ([`crate::Fingerprint`]).
pub const GRAPH: &str = "graph";
/// The workflow's node names, sorted.
pub const GRAPH_NODES: &str = "graph_nodes";

/// The successor that ends a run, in [`Workflow::edges`](crate::Workflow::edges).
pub const END: &str = "__end__";

/// The node the runner starts from when a pause comes before any node ran.
pub const START: &str = "__start__";

/// The step recorded on `checkpoint` (0 when absent).
pub fn step(checkpoint: &Checkpoint) -> u64 {
    checkpoint
        .metadata
        .get(STEP)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The node that runs after `checkpoint`, `None` when its run finished or it says nothing.
pub fn next(checkpoint: &Checkpoint) -> Option<String> {
    checkpoint
        .metadata
        .get(NEXT)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether `checkpoint` says which node runs next (runner checkpoints always do).
pub fn has_next(checkpoint: &Checkpoint) -> bool {
    checkpoint.metadata.contains_key(NEXT)
}

/// The node `checkpoint` pauses before, if it is such a pause (or an edit of one).
pub fn paused_before(checkpoint: &Checkpoint) -> Option<String> {
    let before = checkpoint.metadata.get(INTERRUPT).and_then(Value::as_str) == Some("before");
    before.then(|| next(checkpoint)).flatten()
}

/// The graph fingerprint recorded on `checkpoint`, if any.
pub fn graph(checkpoint: &Checkpoint) -> Option<&str> {
    checkpoint.metadata.get(GRAPH).and_then(Value::as_str)
}

/// The state version recorded on `checkpoint`, if it records a valid one.
pub fn state_version(checkpoint: &Checkpoint) -> Option<u64> {
    checkpoint
        .metadata
        .get(STATE_VERSION)
        .and_then(Value::as_u64)
}

/// Metadata for a checkpoint the runner writes.
pub(crate) fn run(step: u64, next: Option<&str>, outcome: &str) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(SOURCE.into(), "run".into());
    map.insert(STEP.into(), step.into());
    map.insert(NEXT.into(), next.map_or(Value::Null, Value::from));
    map.insert(OUTCOME.into(), outcome.into());
    map
}
