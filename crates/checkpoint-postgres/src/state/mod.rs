//! The state pipeline: how a state becomes the bytes a row stores and back. The
//! [`StateEncoding`](encoding::StateEncoding) option and the encoder that picks a snapshot or a
//! delta (`encoding`), the payload's header and compression (`payload`), the decoding of rows
//! for the rebuild of states (`chain`) and the cache of base states (`cache`); diff and apply
//! are `checkpoint_format::delta`, sealing is `checkpoint_format::sealing`, the rebuild itself
//! is `checkpoint_format::chain`. Nothing here runs a statement.

pub(crate) mod cache;
pub(crate) mod chain;
pub(crate) mod encoding;
pub(crate) mod payload;
