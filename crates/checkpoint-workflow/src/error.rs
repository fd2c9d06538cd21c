//! [`WorkflowError`].

use checkpoint_core::BoxError;

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
