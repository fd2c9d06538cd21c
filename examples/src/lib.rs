//! Runnable examples live beside this file; see `cargo run --example quickstart`.

// The README's code sample compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
