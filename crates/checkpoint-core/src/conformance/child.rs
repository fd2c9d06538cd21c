//! A test's own child process: the test binary running one of its ignored tests alone, so a
//! test can kill it (SIGKILL), freeze it (SIGSTOP) or let it exit, and then check what it left
//! in the store. What the child needs (a URL, a schema, a file) goes in its environment.
//!
//! ```ignore
//! let mut child = checkpoint_core::conformance::child::command("child_saving_until_killed")
//!     .env("CHILD_URL", &url)
//!     .stdout(std::process::Stdio::piped())
//!     .spawn()
//!     .expect("start the child");
//! ```

use std::process::{Command, Stdio};

/// The command that runs test `test` of the current test binary alone, ignored or not, with
/// its output not captured (so it can report on standard output) and standard error
/// discarded. Add the environment and the standard output the caller needs, then spawn it.
///
/// # Panics
/// When the current executable cannot be found (a test binary always can).
pub fn command(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .stderr(Stdio::null());
    command
}
