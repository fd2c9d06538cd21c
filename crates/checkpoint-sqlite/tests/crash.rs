//! Two processes append to one file at once and are killed with SIGKILL mid-write: every save
//! either process acknowledged is in the file with its version and state, every history is dense,
//! the file passes SQLite's integrity check, and saving goes on.
//!
//! One child writes with `Durability::Normal`, the other with the default `Full`: both settings
//! promise that a save survives the process being killed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, RetentionPolicy};
use checkpoint_sqlite::{Durability, SqliteOptions, SqliteStore};
use serde_json::{json, Value};

const TASKS: usize = 4;
const EXECUTIONS: usize = 4;
const ACKS_PER_CHILD: usize = 300;

fn state(step: usize) -> Value {
    json!({"step": step, "messages": vec!["a message of the conversation"; step % 30 + 1]})
}

/// The children store a delta on every save they can (chains of eight), so the kills land in
/// the middle of deltas, of the rewrites of prunes, and of bases another process replaced.
fn deltas(options: SqliteOptions) -> SqliteOptions {
    options.min_delta_bytes(0).snapshot_every(8)
}

/// Panics unless every row of the file reads back through its chain, and returns how many rows
/// hold deltas.
async fn assert_chains_read(store: &SqliteStore, path: &std::path::Path) -> i64 {
    let report = store.verify(None).await.expect("verify");
    assert!(report.damaged.is_empty(), "{report:?}");
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT count(*) FROM checkpoints WHERE base_version IS NOT NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn spawn_child(path: &std::path::Path, durability: &str, name: &str) -> Child {
    checkpoint_core::conformance::child::command("child_appending_until_killed")
        .env("SQLITE_CHILD_PATH", path)
        .env("SQLITE_CHILD_DURABILITY", durability)
        .env("SQLITE_CHILD_NAME", name)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child")
}

#[derive(Debug)]
struct Ack {
    id: String,
    execution: String,
    step: usize,
    version: i64,
}

/// Panics unless the file at `path` passes SQLite's integrity check.
fn assert_intact(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// Reads `child`'s acknowledgements (`ack <id> <execution> <step> <version>` lines) on a
/// thread of its own and sends each, tagged with `index`, until the child's output ends.
fn forward_acks(child: &mut Child, index: usize, tx: mpsc::Sender<(usize, Ack)>) {
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first() == Some(&"ack") {
                let ack = Ack {
                    id: fields[1].to_owned(),
                    execution: fields[2].to_owned(),
                    step: fields[3].parse().expect("step"),
                    version: fields[4].parse().expect("version"),
                };
                if tx.send((index, ack)).is_err() {
                    break;
                }
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_killed_mid_write_lose_no_acknowledged_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    // Created (and migrated) first, so the children race only on saves.
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();

    let mut children = vec![
        spawn_child(&path, "normal", "a"),
        spawn_child(&path, "full", "b"),
    ];
    let (tx, rx) = mpsc::channel::<(usize, Ack)>();
    for (index, child) in children.iter_mut().enumerate() {
        forward_acks(child, index, tx.clone());
    }
    drop(tx);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut acked: Vec<Ack> = Vec::new();
    let mut per_child = [0usize; 2];
    while per_child.iter().any(|&n| n < ACKS_PER_CHILD) && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((index, ack)) => {
                per_child[index] += 1;
                acked.push(ack);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for child in &mut children {
        // SIGKILL: no destructor, no close, the WAL left as it is mid-write.
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGKILL);
        }
    }
    for child in &mut children {
        let _ = child.wait();
    }
    // Acks printed before the kill but read after it still count.
    acked.extend(rx.try_iter().map(|(_, ack)| ack));
    assert!(
        per_child.iter().all(|&n| n >= ACKS_PER_CHILD),
        "each child acknowledged {per_child:?} saves"
    );

    for ack in &acked {
        let cp = store
            .load(&ack.id)
            .await
            .expect("an acknowledged checkpoint");
        assert_eq!(
            (&cp.execution_id, cp.version, &cp.state),
            (&ack.execution, ack.version, &state(ack.step)),
            "{ack:?}"
        );
    }
    let mut total = 0;
    for e in 0..EXECUTIONS {
        let execution = format!("x{e}");
        let history = store.list(&execution).await.expect("whole history");
        let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
        assert_eq!(
            versions,
            (1..=i64::try_from(history.len()).unwrap()).collect::<Vec<_>>()
        );
        total += history.len();
        let next = Checkpoint::new(&*execution, "n", json!({"after": "kill"}));
        assert_eq!(
            store.save(&next).await.expect("save after the kill"),
            i64::try_from(history.len()).unwrap() + 1
        );
    }
    assert!(
        total >= acked.len(),
        "{total} stored, {} acked",
        acked.len()
    );
    let deltas = assert_chains_read(&store, &path).await;
    assert!(deltas > 0, "the children stored deltas");
    drop(store);

    assert_intact(&path);
    println!(
        "acknowledged {} saves from two killed processes, lost 0, {total} stored, {deltas} as deltas",
        acked.len()
    );
}

/// The child of the kill test: four tasks appending to four executions shared with the other
/// child until killed, printing each acknowledged save. Run only by
/// `processes_killed_mid_write_lose_no_acknowledged_save`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the kill test"]
async fn child_appending_until_killed() {
    let path = std::env::var("SQLITE_CHILD_PATH").expect("run by the kill test");
    let durability: Durability = std::env::var("SQLITE_CHILD_DURABILITY")
        .expect("run by the kill test")
        .parse()
        .expect("a durability");
    let name = std::env::var("SQLITE_CHILD_NAME").expect("run by the kill test");
    let store = SqliteStore::open(
        deltas(SqliteOptions::file(path))
            .durability(durability)
            .busy_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("open");
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            let name = name.clone();
            tokio::spawn(async move {
                for step in (t..).step_by(TASKS) {
                    let execution = format!("x{}", step % EXECUTIONS);
                    let cp = Checkpoint::new(&*execution, format!("{name}{t}"), state(step));
                    let version = store.save(&cp).await.expect("save");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {execution} {step} {version}", cp.id).expect("stdout");
                    out.flush().expect("stdout");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
}

/// The checkpoints the pruning child keeps per execution.
const KEEP: u64 = 3;

/// A process that saves and then prunes lazily (`RetentionPolicy::lazy_flush`, committed with
/// `synchronous=NORMAL`) after every save is killed with SIGKILL: every acknowledged save is in
/// the file exactly, or its execution holds at least `KEEP` newer rows (only a prune that kept
/// those removes it); the file passes the integrity check, and saving goes on. (A process
/// kill loses no commit under either setting; that the setting comes back after a lazy write
/// is `pool.rs`'s unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_pruning_lazily_loses_no_kept_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pruned.db");
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let mut child = checkpoint_core::conformance::child::command("child_pruning_until_killed")
        .env("SQLITE_CHILD_PATH", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child");
    let (tx, rx) = mpsc::channel::<(usize, Ack)>();
    forward_acks(&mut child, 0, tx);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut acked: Vec<Ack> = Vec::new();
    while acked.len() < ACKS_PER_CHILD && Instant::now() < deadline {
        if let Ok((_, ack)) = rx.recv_timeout(Duration::from_millis(200)) {
            acked.push(ack);
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGKILL);
    }
    let _ = child.wait();
    acked.extend(rx.try_iter().map(|(_, ack)| ack));
    assert!(
        acked.len() >= ACKS_PER_CHILD,
        "{} acknowledged",
        acked.len()
    );

    let mut histories = std::collections::HashMap::new();
    for e in 0..EXECUTIONS {
        let execution = format!("p{e}");
        let history = store.list(&execution).await.expect("history");
        histories.insert(execution, history);
    }
    let mut present = 0;
    for ack in &acked {
        let history = &histories[&ack.execution];
        match history.iter().find(|c| c.id == ack.id) {
            Some(cp) => {
                assert_eq!((cp.version, &cp.state), (ack.version, &state(ack.step)));
                present += 1;
            }
            None => {
                let newer = history.iter().filter(|c| c.version > ack.version).count();
                assert!(newer as u64 >= KEEP, "{ack:?} lost: {newer} newer rows");
            }
        }
    }
    for (execution, history) in &histories {
        let next = Checkpoint::new(&**execution, "n", json!({"after": "kill"}));
        let last = history.last().map_or(0, |c| c.version);
        assert_eq!(
            store.save(&next).await.expect("save after the kill"),
            last + 1
        );
    }
    let deltas = assert_chains_read(&store, &path).await;
    drop(store);
    assert_intact(&path);
    println!(
        "acknowledged {} saves, each followed by a lazy prune, from a killed process: {present} \
         kept, the rest pruned, lost 0; {deltas} rows left as deltas",
        acked.len()
    );
}

/// The child of the lazy-prune kill test: tasks saving to their executions, each save followed
/// by a lazy prune to the newest `KEEP`, printing each acknowledged save. Run only by
/// `a_process_killed_while_pruning_lazily_loses_no_kept_save`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the kill test"]
async fn child_pruning_until_killed() {
    let path = std::env::var("SQLITE_CHILD_PATH").expect("run by the kill test");
    let store =
        SqliteStore::open(deltas(SqliteOptions::file(path)).busy_timeout(Duration::from_secs(30)))
            .await
            .expect("open");
    let tasks: Vec<_> = (0..EXECUTIONS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let execution = format!("p{t}");
                let policy = RetentionPolicy::keep_last(KEEP)
                    .for_execution(&execution)
                    .lazy_flush();
                for step in (t..).step_by(EXECUTIONS) {
                    let cp = Checkpoint::new(&*execution, "n", state(step));
                    let version = store.save(&cp).await.expect("save");
                    {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {} {execution} {step} {version}", cp.id)
                            .expect("stdout");
                        out.flush().expect("stdout");
                    }
                    store.prune(&policy).await.expect("prune");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a task");
    }
}
