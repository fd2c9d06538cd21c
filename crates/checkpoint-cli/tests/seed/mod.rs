//! The checkpoints every CLI test starts from, on any store, and how the tests run
//! `checkpointctl`.

use checkpoint_core::{Checkpoint, CheckpointStore};
use serde_json::json;

/// Saves two executions: `a` (3 checkpoints, returned with their versions), `b` (2).
pub(crate) async fn two_executions(store: &dyn CheckpointStore) -> Vec<Checkpoint> {
    let mut a = Vec::new();
    for (i, state) in [
        json!({"n": 1, "items": ["x"]}),
        json!({"n": 2, "items": ["x", "y"]}),
        json!({"n": 3}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cp = Checkpoint::new("a", format!("step{i}"), state).with_metadata("i", i);
        cp.version = store.save(&cp).await.unwrap();
        a.push(cp);
    }
    for i in 0..2 {
        store
            .save(&Checkpoint::new("b", "n", json!(i)))
            .await
            .unwrap();
    }
    a
}

/// Runs `checkpointctl` on `database_url` with `leading` arguments (such as `--schema s`)
/// before `args`, without encryption keys from the environment, and returns (exit code,
/// stdout, stderr).
pub(crate) fn run_ctl(
    database_url: &str,
    leading: &[&str],
    args: &[&str],
) -> (i32, String, String) {
    let output = assert_cmd::Command::cargo_bin("checkpointctl")
        .unwrap()
        .env("DATABASE_URL", database_url)
        .env_remove("CHECKPOINT_ENCRYPTION_KEYS")
        .args(leading)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The damage `checkpointctl verify --json` reported: (execution, version, reason) per
/// damaged checkpoint, in its order.
pub(crate) fn damaged(found: &serde_json::Value) -> Vec<(String, i64, String)> {
    found["damaged"]
        .as_array()
        .expect("a list of damage")
        .iter()
        .map(|d| {
            (
                d["execution_id"].as_str().expect("an execution").to_owned(),
                d["version"].as_i64().expect("a version"),
                d["reason"].as_str().expect("a reason").to_owned(),
            )
        })
        .collect()
}

/// A running `checkpointctl watch --json`, its printed checkpoints read line by line.
pub(crate) struct Watch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watch {
    /// Starts `checkpointctl watch EXECUTION --json --after 0` with `args` on `database_url`
    /// (a `--schema` or `--interval` goes in `args`).
    pub(crate) fn start(database_url: &str, execution: &str, args: &[&str]) -> Watch {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("checkpointctl"))
            .env("DATABASE_URL", database_url)
            .env_remove("CHECKPOINT_ENCRYPTION_KEYS")
            .args(["watch", execution, "--json", "--after", "0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("checkpointctl starts");
        let stdout = child.stdout.take().expect("its output");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// The version of the next checkpoint printed, waiting at most `wait`.
    pub(crate) fn next_version(&self, wait: std::time::Duration) -> Option<i64> {
        let line = self.lines.recv_timeout(wait).ok()?;
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        value["version"].as_i64()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
