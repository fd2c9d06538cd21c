//! Store errors as adk-graph's [`GraphError`], with the typed error kept.

use adk_graph::error::GraphError;

/// A store error as a [`GraphError`]. adk-graph's checkpoint variant holds only a message, so
/// the error travels as [`GraphError::IoError`] (a store is the graph's I/O), whose source is
/// the store's typed error: [`store_error`] gets it back.
pub(crate) fn to_graph(err: checkpoint_core::Error) -> GraphError {
    GraphError::IoError(std::io::Error::other(err))
}

/// The store's typed error inside a [`GraphError`] that [`AdkCheckpointer`](crate::AdkCheckpointer)
/// returned, if it came from the store.
///
/// ```
/// use adk_graph::checkpoint::Checkpointer;
/// use adk_graph::state::{Checkpoint, State};
/// use checkpoint_adk::{store_error, AdkCheckpointer};
/// use checkpoint_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let adapter = AdkCheckpointer::new(MemoryStore::new());
/// let nameless = Checkpoint::new("", State::new(), 0, vec![]);
/// let err = adapter.save(&nameless).await.unwrap_err();
/// let typed = store_error(&err).expect("a store error");
/// assert!(typed.is_invalid_field("execution_id"));
/// # }
/// ```
pub fn store_error(err: &GraphError) -> Option<&checkpoint_core::Error> {
    match err {
        GraphError::IoError(io) => io.get_ref()?.downcast_ref(),
        // GraphError grows variants under features: never match it exhaustively.
        _ => None,
    }
}
