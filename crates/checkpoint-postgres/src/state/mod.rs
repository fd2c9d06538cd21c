//! The state pipeline: how a state becomes the bytes a row stores and back. The
//! [`StateEncoding`](encoding::StateEncoding) option and the encoder that picks a snapshot or a
//! delta (`encoding`), the payload's header and compression (`payload`), the rebuild of states
//! from rows (`chain`) and the cache of base states (`cache`); diff and apply are
//! `checkpoint_format::delta`, sealing is `checkpoint_format::sealing`. Nothing here runs a
//! statement.

pub(crate) mod cache;
pub(crate) mod chain;
pub(crate) mod encoding;
pub(crate) mod payload;
