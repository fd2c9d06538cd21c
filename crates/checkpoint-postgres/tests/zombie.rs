//! A zombie writer: a process holding an execution's lease is frozen (SIGSTOP) past its
//! expiry, another process takes the execution over and saves, and the first is thawed
//! (SIGCONT) and tries to save again. It is refused with `LeaseLost` naming the new holder,
//! nothing of it is stored after the takeover, and both holders' acknowledged saves are in the
//! table. Once on the shared server, once with the server restarted while the holder is
//! frozen.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use checkpoint_core::conformance::zombie;
use checkpoint_postgres::{PostgresOptions, PostgresStore, RetryPolicy};

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
    let mut child = checkpoint_core::conformance::child::command("child_holding_a_lease")
        .env("ZOMBIE_URL", url)
        .env("ZOMBIE_SCHEMA", &schema)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child");
    let mut reports = zombie::Reports::follow(&mut child);
    reports.wait_for_acks(5, Duration::from_secs(60));
    signal(&child, libc::SIGSTOP);
    reports.drain();
    while_frozen();
    tokio::time::sleep(ZOMBIE_TTL * 3).await;
    let takeover = zombie::take_over(&store).await;
    signal(&child, libc::SIGCONT);
    reports.finish(child);
    let acked = zombie::check(&store, &reports, &takeover).await;
    println!(
        "frozen holder: {acked} saves acknowledged before the freeze, refused after the takeover"
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

/// The child of the zombie tests ([`zombie::hold_and_save`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the zombie tests"]
async fn child_holding_a_lease() {
    let url = std::env::var("ZOMBIE_URL").expect("run by the zombie test");
    let schema = std::env::var("ZOMBIE_SCHEMA").expect("run by the zombie test");
    let store = PostgresStore::connect(options(&url, &schema))
        .await
        .expect("connect");
    zombie::hold_and_save(&store, ZOMBIE_TTL).await;
}
