//! What a failover looks like to the store, on a real server: a primary that was demoted but
//! still answers refuses writes read-only (SQLSTATE 25006). The store must report that as
//! retryable unavailability and drop the connection, so the next attempt connects anew and
//! reaches the writable server through the same store object.
//!
//! The demotion is played by a role whose sessions default to read-only: connections opened
//! while it is set stay read-only for their whole life, as connections to a demoted primary do,
//! while connections opened after it is reset are writable, as connections to the new primary
//! are.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{PostgresOptions, PostgresStore, RetryPolicy};
use serde_json::json;

#[tokio::test]
async fn a_demoted_primary_is_unavailable_and_its_connections_are_never_reused() {
    let admin = support::client().await;
    let role = support::unique_schema("demoted").to_lowercase();
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN SUPERUSER PASSWORD 'pw'"
        ))
        .await
        .unwrap();
    let url = support::server()
        .await
        .url
        .replace("postgres:postgres@", &format!("{role}:pw@"));
    let options = PostgresOptions::new(&url)
        .unwrap()
        .schema(support::unique_schema("t"))
        // One connection, so a connection kept after the refusal would be used again.
        .max_connections(1)
        .retry(RetryPolicy::disabled());
    // Migrated while the server is writable.
    let store = PostgresStore::connect(options.clone()).await.unwrap();
    store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();

    // Demoted: the connection the pool holds is dropped at once (it is writable), and the
    // next one it opens is read-only.
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    store.close();
    let store = PostgresStore::connect(options.clone().auto_migrate(false))
        .await
        .unwrap();
    let err = store
        .save(&Checkpoint::new("e", "n", json!(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
        "a read-only server is unavailable, retryably: {err:?}"
    );
    assert!(err.to_string().contains("25006"), "{err}");

    // Promoted elsewhere: new sessions are writable, the read-only one would stay read-only.
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" RESET default_transaction_read_only"
        ))
        .await
        .unwrap();
    let version = store
        .save(&Checkpoint::new("e", "n", json!(3)))
        .await
        .expect("the next attempt uses a new connection");
    assert_eq!(version, 2);
    assert_eq!(store.list("e").await.unwrap().len(), 2);
}

/// A primary and a streaming standby in containers of their own on a private network, reached
/// by their addresses on it (no published ports: a proxy in between would hide the primary's
/// death). Removed when dropped.
struct Cluster {
    network: String,
    primary: String,
    standby: String,
    primary_ip: String,
    standby_ip: String,
}

/// The standby's data directory: outside the image's PGDATA, so the same commands work on the
/// official image and on ours.
const STANDBY_DATA: &str = "/tmp/standby";

fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn container_ip(name: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ])
}

async fn sql(
    url: &str,
    statement: &str,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, String> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = client
        .simple_query(statement)
        .await
        .map_err(|e| e.to_string());
    driver.abort();
    result
}

/// The first column of the first row `statement` returns.
async fn scalar(url: &str, statement: &str) -> Option<String> {
    sql(url, statement)
        .await
        .ok()?
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// Starts the primary, then a standby cloned from it with `pg_basebackup`, and waits until
    /// it streams; with `synchronous`, the primary then waits for the standby at every commit.
    async fn start(synchronous: bool) -> Cluster {
        let image = std::env::var("CHECKPOINT_TEST_POSTGRES_IMAGE")
            .unwrap_or_else(|_| support::DEFAULT_IMAGE.to_owned());
        let tag = support::unique_schema("fo").replace('_', "-");
        let mut cluster = Cluster {
            network: format!("{tag}-net"),
            primary: format!("{tag}-primary"),
            standby: format!("{tag}-standby"),
            primary_ip: String::new(),
            standby_ip: String::new(),
        };
        docker(&["network", "create", &cluster.network]);
        let started = docker(&[
            "run",
            "-d",
            "--name",
            &cluster.primary,
            "--network",
            &cluster.network,
            "-e",
            "POSTGRES_PASSWORD=postgres",
            "-e",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            &image,
            "-c",
            "wal_level=replica",
            "-c",
            "max_wal_senders=4",
            "-c",
            "max_connections=200",
            "-c",
            "fsync=off",
        ]);
        support::remove_at_exit(&started);
        cluster.primary_ip = container_ip(&cluster.primary);
        let primary_ip = cluster.primary_ip.clone();
        let primary_url = format!("postgres://postgres:postgres@{primary_ip}:5432/postgres");
        wait_for(
            "the primary accepts connections",
            Duration::from_secs(60),
            async || scalar(&primary_url, "SELECT 1").await.is_some(),
        )
        .await;
        // The image's rules admit every database but not replication connections.
        docker(&[
            "exec",
            "-u",
            "postgres",
            &cluster.primary,
            "sh",
            "-c",
            "echo 'host replication all all trust' >> \"$PGDATA/pg_hba.conf\" \
             && psql -q -c 'SELECT pg_reload_conf()'",
        ]);
        let clone = format!(
            "until pg_basebackup -h {primary} -U postgres -D {STANDBY_DATA} -R -X stream -c fast; \
             do rm -rf {STANDBY_DATA}; sleep 0.5; done; chmod 700 {STANDBY_DATA}; \
             exec postgres -D {STANDBY_DATA} -c listen_addresses='*' -c hot_standby=on -c fsync=off \
             -c max_connections=200",
            primary = cluster.primary
        );
        let started = docker(&[
            "run",
            "-d",
            "--name",
            &cluster.standby,
            "--network",
            &cluster.network,
            "--user",
            "postgres",
            "--entrypoint",
            "sh",
            &image,
            "-c",
            &clone,
        ]);
        support::remove_at_exit(&started);
        cluster.standby_ip = container_ip(&cluster.standby);
        // The standby itself, not pg_basebackup's own WAL stream (which is listed too while the
        // copy runs): a setting made before the copy ends would be copied with it.
        let standby_url = format!(
            "postgres://postgres:postgres@{}:5432/postgres",
            cluster.standby_ip
        );
        wait_for("the standby streams", Duration::from_secs(90), async || {
            scalar(&standby_url, "SELECT pg_is_in_recovery()")
                .await
                .as_deref()
                == Some("t")
                && scalar(
                    &primary_url,
                    "SELECT count(*) FROM pg_stat_replication \
                     WHERE state = 'streaming' AND application_name <> 'pg_basebackup'",
                )
                .await
                .as_deref()
                    == Some("1")
        })
        .await;
        if synchronous {
            // Set on the primary only (ALTER SYSTEM is not replicated): once promoted, the standby
            // has no standby of its own to wait for.
            sql(
                &primary_url,
                "ALTER SYSTEM SET synchronous_standby_names = '*'",
            )
            .await
            .expect("set synchronous replication");
            sql(&primary_url, "SELECT pg_reload_conf()")
                .await
                .expect("reload");
            wait_for(
                "the standby is synchronous",
                Duration::from_secs(30),
                async || {
                    scalar(&primary_url, "SELECT sync_state FROM pg_stat_replication")
                        .await
                        .as_deref()
                        == Some("sync")
                },
            )
            .await;
        }
        cluster
    }

    /// Both servers, the writable one chosen by the driver, with timeouts short enough that a
    /// vanished primary is given up on in seconds.
    fn url(&self) -> String {
        format!(
            "postgres://postgres:postgres@{}:5432,{}:5432/postgres?target_session_attrs=read-write\
             &connect_timeout=1&tcp_user_timeout=2&keepalives_idle=1&keepalives_interval=1\
             &keepalives_retries=2",
            self.primary_ip, self.standby_ip
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for name in [&self.primary, &self.standby] {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
        }
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

const WRITERS: usize = 16;

/// Longer than any save may take, failover included: one that takes longer hangs.
const SAVE_LIMIT: Duration = Duration::from_secs(20);

/// What one failover did.
struct Failover {
    acknowledged: usize,
    lost: usize,
    failed_attempts: usize,
    first_save_after_promotion: Duration,
}

/// 16 writers through one store; the primary container is killed mid-load and the standby
/// promoted. Returns what was acknowledged and what the new primary has of it.
async fn fail_over(synchronous: bool) -> Failover {
    let cluster = Cluster::start(synchronous).await;
    let store = PostgresStore::connect(
        PostgresOptions::new(&cluster.url())
            .unwrap()
            .schema(support::unique_schema("fo"))
            .max_connections(8),
    )
    .await
    .expect("connect to the primary");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    // Set at the promotion; each writer counts itself once it has saved after it.
    let promoted_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let resumed = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop, failures) = (store.clone(), stop.clone(), failures.clone());
            let (promoted_at, resumed) = (promoted_at.clone(), resumed.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut counted = false;
                for n in 0.. {
                    let cp = Checkpoint::new(format!("fo{}", w % 4), "n", json!({"w": w, "n": n}));
                    // The same checkpoint again until it is stored: a save is idempotent by id.
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return acked;
                        }
                        let attempt = tokio::time::timeout(SAVE_LIMIT, store.save(&cp)).await;
                        match attempt {
                            Ok(Ok(version)) => {
                                let at = Instant::now();
                                if !counted && promoted_at.get().is_some_and(|p| at > *p) {
                                    counted = true;
                                    resumed.fetch_add(1, Ordering::Relaxed);
                                }
                                acked.push((at, cp.id.clone(), version, cp.state.clone()));
                                break;
                            }
                            Ok(Err(e)) => {
                                assert!(e.is_retryable(), "a failover error is retryable: {e:?}");
                                failures.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(_) => panic!("a save hung for {SAVE_LIMIT:?}"),
                        }
                    }
                }
                acked
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    docker(&["kill", &cluster.primary]);
    docker(&[
        "exec",
        "-u",
        "postgres",
        &cluster.standby,
        "pg_ctl",
        "promote",
        "-w",
        "-D",
        STANDBY_DATA,
    ]);
    let promoted = Instant::now();
    let _ = promoted_at.set(promoted);
    // Load goes on until every writer has saved on the new primary (or 30 s have passed).
    let deadline = promoted + Duration::from_secs(30);
    while resumed.load(Ordering::Relaxed) < WRITERS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("a writer"));
    }

    let first_save_after_promotion = acked
        .iter()
        .filter(|(at, ..)| *at > promoted)
        .map(|(at, ..)| *at - promoted)
        .min()
        .expect("a save succeeded after the promotion");
    // Read back through the same store object, now on the new primary.
    let mut lost = 0;
    for (_, id, version, state) in &acked {
        match store.load(id).await {
            Ok(cp) => assert_eq!((cp.version, &cp.state), (*version, state), "{id}"),
            Err(Error::NotFound { .. }) => lost += 1,
            Err(e) => panic!("reading {id} back: {e:?}"),
        }
    }
    // Histories stay dense on the new primary, and it takes saves.
    for e in 0..4 {
        let history = store.list(&format!("fo{e}")).await.unwrap();
        let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
        if lost == 0 {
            assert_eq!(
                versions,
                (1..=i64::try_from(history.len()).unwrap()).collect::<Vec<_>>()
            );
        }
    }
    Failover {
        acknowledged: acked.len(),
        lost,
        failed_attempts: failures.load(Ordering::Relaxed),
        first_save_after_promotion,
    }
}

/// Synchronous replication: no acknowledged save is lost, and saves resume on the promoted
/// standby within 10 s, through the same store object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_to_its_synchronous_standby_losing_nothing() {
    if !support::docker_or_skip("a primary and a standby on a network of their own") {
        return;
    }
    let run = fail_over(true).await;
    println!(
        "synchronous failover: {} saves acknowledged, {} lost, {} failed attempts retried, \
         first save {:?} after the promotion",
        run.acknowledged, run.lost, run.failed_attempts, run.first_save_after_promotion
    );
    assert_eq!(run.lost, 0, "acknowledged saves lost");
    assert!(
        run.first_save_after_promotion <= Duration::from_secs(10),
        "first save {:?} after the promotion",
        run.first_save_after_promotion
    );
}

/// Asynchronous replication, measured, not asserted to lose nothing: what a save acknowledged by
/// the old primary but not yet received by the standby costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_fails_over_to_an_asynchronous_standby_measured() {
    if !support::docker_or_skip("a primary and a standby on a network of their own") {
        return;
    }
    let run = fail_over(false).await;
    println!(
        "asynchronous failover: {} saves acknowledged, {} lost, {} failed attempts retried, \
         first save {:?} after the promotion",
        run.acknowledged, run.lost, run.failed_attempts, run.first_save_after_promotion
    );
    assert!(run.acknowledged > 0);
}
