//! A zombie writer (`checkpoint_core::conformance::zombie`): a process holding an execution's
//! lease is frozen (SIGSTOP) past its expiry, another takes the execution over and saves, and
//! the first is thawed (SIGCONT) and tries to save again. It is refused with `LeaseLost` naming
//! the new holder, nothing of it is stored after the takeover, and both holders' acknowledged
//! saves are in the file.

use std::process::{Child, Stdio};
use std::time::Duration;

use checkpoint_core::conformance::zombie;
use checkpoint_sqlite::{SqliteOptions, SqliteStore};

/// The frozen holder's time to live: short, so the freeze outlasts it.
const ZOMBIE_TTL: Duration = Duration::from_millis(300);

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) };
    assert_eq!(sent, 0, "signal {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_thawed_after_a_takeover_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leases.db");
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let mut child = checkpoint_core::conformance::child::command("child_holding_a_lease")
        .env("SQLITE_ZOMBIE_PATH", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child");
    let mut reports = zombie::Reports::follow(&mut child);
    reports.wait_for_acks(5, Duration::from_secs(30));
    // Between two writes: one frozen inside a write transaction would hold the file's write
    // lock (SQLite cannot take it from a stopped process), and the takeover would wait for
    // its busy timeout.
    signal(&child, libc::SIGSTOP);
    reports.drain();
    tokio::time::sleep(ZOMBIE_TTL * 3).await;
    let takeover = zombie::take_over(&store).await;
    signal(&child, libc::SIGCONT);
    reports.finish(child);
    let acked = zombie::check(&store, &reports, &takeover).await;
    println!(
        "frozen holder: {acked} saves acknowledged before the freeze, refused after the takeover"
    );
}

/// The child of the zombie test ([`zombie::hold_and_save`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the zombie test"]
async fn child_holding_a_lease() {
    let path = std::env::var("SQLITE_ZOMBIE_PATH").expect("run by the zombie test");
    let store = SqliteStore::open(SqliteOptions::file(path))
        .await
        .expect("open");
    zombie::hold_and_save(&store, ZOMBIE_TTL).await;
}
