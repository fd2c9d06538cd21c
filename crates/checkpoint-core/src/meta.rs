//! Metadata keys with a meaning shared by the store (`fork`) and the workflow runner.
//!
//! Everything else in [`Checkpoint::metadata`](crate::Checkpoint::metadata) is free-form.

/// How the checkpoint came to be: `"run"` (a node ran), `"update"` (a person edited the
/// state), `"fork"` (copied from another execution).
pub const SOURCE: &str = "source";

/// On a forked checkpoint: `{checkpoint_id, execution_id, version}` of the original.
pub const FORKED_FROM: &str = "forked_from";
