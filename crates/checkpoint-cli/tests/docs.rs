//! The `checkpointctl` sessions written in the README run as written: each command, its output
//! and its exit code (trycmd reads the `console` blocks). They run from the repository's root,
//! as a reader copies them, on a SQLite file the test starts from scratch.

use std::path::Path;

/// The SQLite file the README's tour writes.
const TOUR_DATABASE: &str = "/tmp/checkpointctl-tour.db";

#[test]
fn the_readme_session_runs_as_written() {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{TOUR_DATABASE}{suffix}"));
    }
    // Commands run in the test's directory: the repository's root, as the README says.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::env::set_current_dir(&root).expect("the repository's root");
    trycmd::TestCases::new()
        .register_bin("checkpointctl", trycmd::cargo::cargo_bin!("checkpointctl"))
        .env("NO_COLOR", "1")
        .case(root.join("README.md"));
}
