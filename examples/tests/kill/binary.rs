//! Where cargo put the examples' binaries: beside the test binaries, under
//! `target/<profile>/examples`.

use std::path::PathBuf;

/// The example `name`, built by `cargo test` beside this test binary.
///
/// # Panics
/// When it was not built (the tests were run without `--workspace`).
pub(super) fn example_binary(name: &str) -> PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let target_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = target_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace --all-features`",
        path.display()
    );
    path
}
