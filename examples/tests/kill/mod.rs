//! The kill-and-resume scenario shared by the backends' tests: the `durable_workflow` example
//! is killed with SIGKILL mid-run and started again; it must finish, and no node whose
//! checkpoint was saved may run twice.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use checkpoint_core::CheckpointStore;
use tokio::process::Command;

mod binary;

pub(crate) const NODES: [&str; 5] = ["download", "parse", "enrich", "summarize", "publish"];

fn example(execution: &str, env: &[(&str, String)], log: &Path) -> Command {
    let mut command = Command::new(binary::example_binary("durable_workflow"));
    command
        .arg(execution)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("STEP_MS", "250")
        .env("RUN_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs the scenario on `store`, the example reaching the same store through `env`; `log` is a
/// fresh file path for the nodes' run log.
pub(crate) async fn killed_run_resumes(
    store: &dyn CheckpointStore,
    env: &[(&str, String)],
    log: &Path,
) {
    let execution = "crash-me";

    let mut first = example(execution, env, log)
        .spawn()
        .expect("start the example");
    // Kill it once two nodes are durable and before the last one is.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let saved = store.list(execution).await.unwrap().len();
        if saved >= 2 {
            break;
        }
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the example exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no progress within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().expect("SIGKILL");
    first.wait().await.unwrap();
    let saved_at_kill: Vec<String> = store
        .list(execution)
        .await
        .unwrap()
        .into_iter()
        .map(|cp| cp.node_name)
        .collect();
    assert!(
        (2..NODES.len()).contains(&saved_at_kill.len()),
        "killed mid-run, after {saved_at_kill:?}"
    );

    let second = example(execution, env, log)
        .output()
        .await
        .expect("restart the example");
    assert!(
        second.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );

    let history = store.list(execution).await.unwrap();
    let nodes: Vec<&str> = history.iter().map(|cp| cp.node_name.as_str()).collect();
    assert_eq!(nodes, NODES, "one checkpoint per node, in order");
    let last = history.last().unwrap();
    assert_eq!(last.metadata["outcome"], "finished");
    assert_eq!(last.state["completed"], serde_json::json!(NODES));
    assert_eq!(last.state["records"], 150);

    let mut runs: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        *runs.entry(line.to_owned()).or_default() += 1;
    }
    let _ = std::fs::remove_file(log);
    for node in NODES {
        let count = runs.get(node).copied().unwrap_or(0);
        if saved_at_kill.iter().any(|saved| saved == node) {
            assert_eq!(
                count, 1,
                "{node} was saved before the kill but ran {count} times"
            );
        } else {
            assert!((1..=2).contains(&count), "{node} ran {count} times");
        }
    }
}
