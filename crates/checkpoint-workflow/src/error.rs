//! [`WorkflowError`].

use checkpoint_core::BoxError;

use crate::graph::GraphChange;
use crate::migrate::MigrationError;

/// Why a run stopped without finishing or pausing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The store failed; [`checkpoint_core::Error::Conflict`] here means another runner
    /// advanced the execution first, and nothing of this run's last write was stored.
    #[error(transparent)]
    Store(#[from] checkpoint_core::Error),

    /// A node returned an error. A checkpoint with the state the node was given, the error in
    /// its metadata and `next` = this node was saved, so running again retries the node.
    #[error("node {node} failed: {source}")]
    Node {
        /// The node that failed.
        node: String,
        /// Its error.
        #[source]
        source: BoxError,
    },

    /// A node named a successor that the workflow does not have (or the start node is missing).
    #[error("unknown node {node:?}")]
    UnknownNode {
        /// The missing node.
        node: String,
    },

    /// The run executed more nodes than the workflow allows in one call (a loop that never
    /// ends). What was recorded so far is saved.
    #[error("the run exceeded {limit} steps")]
    StepLimit {
        /// The limit.
        limit: u64,
    },

    /// Node `from` returned a successor it does not declare
    /// ([`Workflow::edges`](crate::Workflow::edges)). Its result was not saved, so a run of
    /// fixed code runs the node again.
    #[error("node {from} went to {to:?}, which is not among its declared successors")]
    UndeclaredEdge {
        /// The node.
        from: String,
        /// The successor it returned ([`crate::meta::END`] for the end).
        to: String,
    },

    /// The execution's state cannot be read as this workflow's state: saved by newer code, a
    /// migration missing or failing, or a malformed registry. Nothing ran.
    #[error("execution {execution_id}: {source}")]
    Migration {
        /// The execution.
        execution_id: String,
        /// Why.
        #[source]
        source: MigrationError,
    },

    /// The execution was saved under another graph, and this workflow neither allows that
    /// ([`Workflow::allow_graph_changes`](crate::Workflow::allow_graph_changes)) nor maps
    /// renamed nodes ([`Workflow::renamed`](crate::Workflow::renamed)). Nothing ran.
    #[error(
        "execution {execution_id} was saved under another graph ({change}); allow it with \
         Workflow::allow_graph_changes or map renamed nodes with Workflow::renamed"
    )]
    GraphChanged {
        /// The execution.
        execution_id: String,
        /// What changed.
        change: Box<GraphChange>,
    },

    /// The execution was saved under another graph and resumes at a node this graph does not
    /// have, even through its renames. Nothing ran.
    #[error(
        "execution {execution_id} resumes at node {node:?}, which this graph does not have ({change})"
    )]
    NodeGone {
        /// The execution.
        execution_id: String,
        /// The node it would resume at (after renames).
        node: String,
        /// What changed.
        change: Box<GraphChange>,
    },
}

impl WorkflowError {
    /// The store error, if the run stopped because of one.
    pub fn as_store(&self) -> Option<&checkpoint_core::Error> {
        match self {
            WorkflowError::Store(e) => Some(e),
            _ => None,
        }
    }
}
