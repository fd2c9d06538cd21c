//! The state pipeline: how a state becomes the bytes a row stores and back. The
//! [`StateEncoding`](encoding::StateEncoding) option and the encoder that picks a snapshot or a
//! delta (`encoding`), the payload's header and compression (`payload`), the decoding of rows
//! for the rebuild of states (`chain`); the choice of a snapshot or a delta and the cache of
//! base states are `checkpoint_format::encoder` and `checkpoint_format::cache`, diff and apply
//! `checkpoint_format::delta`, sealing `checkpoint_format::sealing`, the rebuild itself
//! `checkpoint_format::chain`. Nothing here runs a statement.

pub(crate) mod chain;
pub(crate) mod encoding;
pub(crate) mod payload;
