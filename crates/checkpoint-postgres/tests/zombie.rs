//! A zombie writer: a process holding an execution's lease is frozen (SIGSTOP) past its
//! expiry, another process takes the execution over and saves, and the first is thawed
//! (SIGCONT) and tries to save again. It is refused with `LeaseLost` naming the new holder,
//! nothing of it is stored after the takeover, and both holders' acknowledged saves are in the
//! table. Once on the shared server, once with the server restarted while the holder is
//! frozen.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{PostgresOptions, PostgresStore, RetryPolicy};
use serde_json::json;

/// The frozen holder's time to live: short, so the freeze outlasts it.
const ZOMBIE_TTL: Duration = Duration::from_millis(300);

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) };
    assert_eq!(sent, 0, "signal {signal}");
}

fn options(url: &str, schema: &str) -> PostgresOptions {
    PostgresOptions::new(url)
        .expect("a test URL")
        .schema(schema)
        .max_connections(2)
        .wait_timeout(Duration::from_secs(2))
        .create_timeout(Duration::from_secs(2))
        .retry(RetryPolicy::default().max_retries(3))
}

/// Runs the zombie scenario on `url`; `while_frozen` runs after the freeze and before the
/// takeover (a server restart, or nothing).
async fn frozen_holder_thawed_after_a_takeover(url: &str, while_frozen: impl FnOnce()) {
    let schema = support::unique_schema("zombie");
    let store = PostgresStore::connect(options(url, &schema)).await.unwrap();
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--ignored",
            "--exact",
            "child_holding_a_lease",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZOMBIE_URL", url)
        .env("ZOMBIE_SCHEMA", &schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a child");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        // The child's test harness may print on the same line before a report: each report
        // starts at its `@`.
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
    let deadline = Instant::now() + Duration::from_secs(60);
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
    std::thread::sleep(Duration::from_millis(50));
    lines.extend(rx.try_iter());
    while_frozen();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_thawed_after_a_takeover_stores_nothing() {
    let url = support::server().await.url.clone();
    frozen_holder_thawed_after_a_takeover(&url, || {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_thawed_after_a_server_restart_and_a_takeover_stores_nothing() {
    if !support::docker_or_skip("restarting the server under a frozen lease holder") {
        return;
    }
    let server = support::DedicatedServer::start().await;
    let url = server.url.clone();
    frozen_holder_thawed_after_a_takeover(&url, || {
        server.docker(&["stop", "-t", "30"]);
        server.docker(&["start"]);
        let ready = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(server.wait_ready(Duration::from_secs(60)))
        });
        println!("server back after {ready:?}");
    })
    .await;
}

/// The child of the zombie tests: takes the lease of `run` and saves under it every 100 ms,
/// printing each acknowledged save, until a save is refused; then prints who holds the lease.
/// A save that fails for a reason that may pass (the server restarting) is tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the zombie tests"]
async fn child_holding_a_lease() {
    let url = std::env::var("ZOMBIE_URL").expect("run by the zombie test");
    let schema = std::env::var("ZOMBIE_SCHEMA").expect("run by the zombie test");
    let store = PostgresStore::connect(options(&url, &schema))
        .await
        .expect("connect");
    let lease = store
        .acquire("run", "worker-a", ZOMBIE_TTL)
        .await
        .expect("acquire");
    let mut transient = 0;
    for step in 0.. {
        let cp = Checkpoint::new("run", "zombie", json!({"step": step}));
        let outcome = store.save_fenced(&lease.fence(), &cp).await;
        let mut out = std::io::stdout().lock();
        match outcome {
            Ok(version) => writeln!(out, "@ack {} {version}", cp.id).expect("stdout"),
            Err(Error::LeaseLost {
                holder: Some(holder),
                current_token: Some(token),
                ..
            }) => {
                writeln!(out, "@lost {holder} {token}").expect("stdout");
                return;
            }
            Err(e) if e.is_retryable() && transient < 100 => transient += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        out.flush().expect("stdout");
        drop(out);
        // Long enough that the parent freezes this process between writes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
