//! A zombie writer: a process holding an execution's lease is frozen (SIGSTOP) past its
//! expiry, another takes the execution over and saves, and the first is thawed (SIGCONT) and
//! tries to save again. It is refused with `LeaseLost` naming the new holder, nothing of it is
//! stored after the takeover, and both holders' acknowledged saves are in the file.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

/// The frozen holder's time to live: short, so the freeze outlasts it.
const ZOMBIE_TTL: Duration = Duration::from_millis(300);

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) };
    assert_eq!(sent, 0, "signal {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_thawed_after_a_takeover_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();

    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_holding_a_lease",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SQLITE_ZOMBIE_PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a child");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        // The test harness of the child may print on the same line before a report: each
        // report starts at its `@`.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some((_, report)) = line.split_once('@') else {
                continue;
            };
            if tx.send(report.to_owned()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines
        .iter()
        .filter(|l: &&String| l.starts_with("ack "))
        .count()
        < 5
    {
        assert!(
            Instant::now() < deadline,
            "the child saved too little: {lines:?}"
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(line);
        }
    }
    signal(&child, libc::SIGSTOP);
    // Acks written before the freeze.
    std::thread::sleep(Duration::from_millis(50));
    lines.extend(rx.try_iter());
    tokio::time::sleep(ZOMBIE_TTL * 3).await;

    let new = store
        .acquire("run", "worker-b", Duration::from_secs(600))
        .await
        .expect("the frozen lease expired");
    assert_eq!(new.token, 2);
    let mark = Checkpoint::new("run", "taken-over", json!({"by": "worker-b"}));
    let mark_version = store.save_fenced(&new.fence(), &mark).await.unwrap();

    signal(&child, libc::SIGCONT);
    let status = child.wait().expect("the child ends");
    lines.extend(rx.iter());
    assert!(status.success(), "{status}: {lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("lost worker-b 2"),
        "{lines:?}"
    );

    let acked: Vec<(String, i64)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|l| {
            let (id, version) = l.split_once(' ').expect("id version");
            (id.to_owned(), version.parse().expect("version"))
        })
        .collect();
    let history = store.list("run").await.unwrap();
    let stored: Vec<(String, i64)> = history
        .iter()
        .filter(|cp| cp.node_name == "zombie")
        .map(|cp| (cp.id.clone(), cp.version))
        .collect();
    assert_eq!(
        stored, acked,
        "exactly the frozen holder's acknowledged saves"
    );
    assert!(stored.iter().all(|(_, v)| *v < mark_version));
    assert_eq!(history.last().map(|cp| &cp.id), Some(&mark.id));
    assert_eq!(store.lease("run").await.unwrap(), Some(new));
    println!(
        "frozen holder: {} saves acknowledged before the freeze, refused after the takeover",
        acked.len()
    );
}

/// The child of the zombie test: takes the lease of `run` and saves under it every 100 ms,
/// printing each acknowledged save, until a save is refused; then prints who holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the zombie test"]
async fn child_holding_a_lease() {
    let path = std::env::var("SQLITE_ZOMBIE_PATH").expect("run by the zombie test");
    let store = SqliteStore::open(SqliteOptions::file(path))
        .await
        .expect("open");
    let lease = store
        .acquire("run", "worker-a", ZOMBIE_TTL)
        .await
        .expect("acquire");
    for step in 0.. {
        let cp = Checkpoint::new("run", "zombie", json!({"step": step}));
        let outcome = store.save_fenced(&lease.fence(), &cp).await;
        let mut out = std::io::stdout().lock();
        match outcome {
            Ok(version) => writeln!(out, "@ack {} {version}", cp.id),
            Err(Error::LeaseLost {
                holder: Some(holder),
                current_token: Some(token),
                ..
            }) => {
                writeln!(out, "@lost {holder} {token}").expect("stdout");
                return;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        .expect("stdout");
        out.flush().expect("stdout");
        drop(out);
        // Long enough that the parent freezes this process between writes: one frozen inside
        // a write transaction would hold the file's write lock (SQLite has no way to take it
        // from a stopped process), and the new holder would wait for its busy timeout.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
