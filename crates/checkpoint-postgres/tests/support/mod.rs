//! The PostgreSQL server the integration tests run against, and an isolated schema per test.
//!
//! - `CHECKPOINT_TEST_DATABASE_URL` set: that server is used, no container is started.
//! - Otherwise one container per test binary from `CHECKPOINT_TEST_POSTGRES_IMAGE`
//!   (`name:tag`), by default the official `postgres` image. It is removed when the binary
//!   exits.
//!
//! No Docker and no URL is a test failure that says how to provide one, never a silent skip.
//! The tests that need a container of their own (they restart, kill or reconfigure the server:
//! `faults.rs`' restarts, `tls.rs`, `failover.rs`, `pgbouncer.rs`) say so and skip when no
//! Docker engine answers or the image lacks a tool they run (pgbouncer), unless
//! `CHECKPOINT_TEST_STRICT` is set (as CI sets it), which makes that a failure.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use checkpoint_postgres::{PostgresOptions, PostgresStore};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ContainerRequest, ImageExt};
use tokio::sync::OnceCell;

/// The official image used when no other is chosen.
pub(crate) const DEFAULT_IMAGE: &str = "postgres:17-alpine";

/// A running server: the URL of its `postgres` database as a superuser.
pub(crate) struct TestServer {
    pub url: String,
    _container: Option<ContainerAsync<Postgres>>,
}

static SERVER: OnceCell<TestServer> = OnceCell::const_new();
static CONTAINER_IDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The shared server, started on first use.
pub(crate) async fn server() -> &'static TestServer {
    SERVER.get_or_init(start).await
}

async fn start() -> TestServer {
    if let Ok(url) = std::env::var("CHECKPOINT_TEST_DATABASE_URL") {
        return TestServer {
            url,
            _container: None,
        };
    }
    let image = std::env::var("CHECKPOINT_TEST_POSTGRES_IMAGE")
        .unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let container = Postgres::default()
        .with_name(name)
        .with_tag(tag)
        .with_cmd(["-c", "fsync=off", "-c", "max_connections=500"])
        .with_startup_timeout(Duration::from_secs(120))
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "could not start PostgreSQL from image {image}: {e}\n\
                 The integration tests need a PostgreSQL server. Either run a Docker engine that \
                 has (or can pull) the image, choose another image with \
                 CHECKPOINT_TEST_POSTGRES_IMAGE=name:tag, or point CHECKPOINT_TEST_DATABASE_URL \
                 at a server you run (README, \"Testing\")."
            )
        });
    remove_at_exit(container.id());
    let host = container.get_host().await.expect("container host");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container port");
    TestServer {
        url: format!("postgres://postgres:postgres@{host}:{port}/postgres"),
        _container: Some(container),
    }
}

/// Statics are never dropped, so testcontainers' own clean-up never runs for a shared
/// container: remove it when the test binary exits.
pub(crate) fn remove_at_exit(id: &str) {
    extern "C" fn remove() {
        let ids = CONTAINER_IDS
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default();
        for id in ids {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &id])
                .output();
        }
    }
    let mut ids = CONTAINER_IDS.lock().unwrap_or_else(|e| e.into_inner());
    if ids.is_empty() {
        // SAFETY: `remove` is a plain extern "C" fn that lives for the whole program.
        unsafe {
            libc::atexit(remove);
        }
    }
    ids.push(id.to_owned());
}

/// Whether a Docker engine answers, for a test that needs a container of its own (`what` says
/// why). Without one it prints that the test is skipped and why, and returns `false`; with
/// `CHECKPOINT_TEST_STRICT` set it fails instead, so that CI never skips.
pub(crate) fn docker_or_skip(what: &str) -> bool {
    match without_docker(what) {
        None => true,
        Some(reason) => {
            eprintln!("skipped: {reason}");
            false
        }
    }
}

/// Why a test (`what`) that needs a container of its own cannot run here, if it cannot: no
/// Docker engine answers. Under `CHECKPOINT_TEST_STRICT` that is a failure instead.
pub(crate) fn without_docker(what: &str) -> Option<String> {
    let answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!answers).then(|| {
        strict(format!(
            "{what} needs a Docker engine, and none answers (`docker info`)"
        ))
    })
}

/// Why a test (`what`) that runs `tool` beside PostgreSQL in the test image cannot run here, if
/// it cannot: no Docker, or an image without the tool (the official image has no pgbouncer).
/// Under `CHECKPOINT_TEST_STRICT` that is a failure instead.
pub(crate) fn without_tool_in_image(what: &str, tool: &str) -> Option<String> {
    if let Some(reason) = without_docker(what) {
        return Some(reason);
    }
    let image = std::env::var("CHECKPOINT_TEST_POSTGRES_IMAGE")
        .unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
    let found = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "sh", &image, "-c"])
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| {
        strict(format!(
            "{what} needs {tool} in the test image, and {image} has none \
             (CHECKPOINT_TEST_POSTGRES_IMAGE=name:tag picks an image that has it)"
        ))
    })
}

/// `reason`, unless `CHECKPOINT_TEST_STRICT` is set, which makes it a failure.
fn strict(reason: String) -> String {
    assert!(
        std::env::var_os("CHECKPOINT_TEST_STRICT").is_none(),
        "{reason}; CHECKPOINT_TEST_STRICT is set, so this is a failure"
    );
    reason
}

/// A server of the test's own, on a fixed host port so that its address survives a restart,
/// for tests that stop, kill and restart it. Needs Docker; removed when dropped (and at exit).
pub(crate) struct DedicatedServer {
    pub url: String,
    pub id: String,
    _container: ContainerAsync<Postgres>,
}

impl DedicatedServer {
    pub(crate) async fn start() -> DedicatedServer {
        Self::start_with(|request| request).await
    }

    /// Starts a server after `customize` adjusted its container (files, commands).
    pub(crate) async fn start_with(
        customize: impl FnOnce(ContainerRequest<Postgres>) -> ContainerRequest<Postgres>,
    ) -> DedicatedServer {
        use testcontainers_modules::testcontainers::core::IntoContainerPort;
        let image = std::env::var("CHECKPOINT_TEST_POSTGRES_IMAGE")
            .unwrap_or_else(|_| DEFAULT_IMAGE.to_owned());
        let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let request = Postgres::default()
            .with_name(name)
            .with_tag(tag)
            .with_mapped_port(port, 5432.tcp())
            .with_startup_timeout(Duration::from_secs(120));
        let container = customize(request)
            .start()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the fault tests restart their own PostgreSQL container and need Docker \
                     with image {image} (CHECKPOINT_TEST_POSTGRES_IMAGE=name:tag picks another): {e}"
                )
            });
        let id = container.id().to_owned();
        remove_at_exit(&id);
        DedicatedServer {
            url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
            id,
            _container: container,
        }
    }

    /// The server's URL with `query` appended (`key=value&...`).
    pub(crate) fn url_with(&self, query: &str) -> String {
        format!("{}?{query}", self.url)
    }

    /// Runs `docker <args> <container>`.
    pub(crate) fn docker(&self, args: &[&str]) {
        let status = Command::new("docker")
            .args(args)
            .arg(&self.id)
            .output()
            .expect("run docker");
        assert!(
            status.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    /// Waits until the server accepts a query again and returns how long that took.
    pub(crate) async fn wait_ready(&self, within: Duration) -> Duration {
        let started = std::time::Instant::now();
        loop {
            if let Ok((client, connection)) =
                tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await
            {
                let driver = tokio::spawn(connection);
                let ok = client.simple_query("SELECT 1").await.is_ok();
                driver.abort();
                if ok {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < within,
                "the server did not return within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A schema name no other test of this run uses.
pub(crate) fn unique_schema(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Options for a fresh, empty schema on the shared server.
pub(crate) async fn options() -> PostgresOptions {
    PostgresOptions::new(&server().await.url)
        .expect("test server URL parses")
        .schema(unique_schema("t"))
        .max_connections(8)
}

/// The layout the conformance suite runs on in `tests/conformance.rs`: `CHECKPOINT_TEST_LAYOUT`
/// (`plain`, `hash:N`, `day`, `week`, `month`, `distributed`), plain when unset. With
/// `CHECKPOINT_TEST_DATABASE_URL` pointing at a Citus coordinator and
/// `CHECKPOINT_TEST_LAYOUT=distributed`, the suite runs on distributed tables.
pub(crate) fn layout_from_env() -> checkpoint_postgres::TableLayout {
    match std::env::var("CHECKPOINT_TEST_LAYOUT") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("CHECKPOINT_TEST_LAYOUT={text:?}: {e}")),
        Err(_) => checkpoint_postgres::TableLayout::Plain,
    }
}

/// A connected store on a fresh, empty schema.
pub(crate) async fn store() -> PostgresStore {
    PostgresStore::connect(options().await)
        .await
        .expect("connect to the test server")
}

/// A plain driver connection to the shared server, for set-up and inspection.
pub(crate) async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server().await.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// A driver connection to `url` through the store's own connection set-up (TLS included),
/// for inspecting servers that refuse plain connections.
pub(crate) async fn client_to(url: &str) -> checkpoint_postgres::DeadpoolPool {
    let options = PostgresOptions::new(url).expect("a valid URL");
    checkpoint_postgres::DeadpoolPool::from_options(&options).expect("a pool")
}

/// The plans of `sql` run as a prepared statement `name` with `args` (SQL literals), under a
/// custom and then a generic plan (the ones cached statements use), one line per plan step.
/// `explain` is the EXPLAIN option list; with `ANALYZE` each run is rolled back.
pub(crate) async fn prepared_plans(
    client: &tokio_postgres::Client,
    name: &str,
    sql: &checkpoint_postgres::Sql,
    args: &str,
    explain: &str,
) -> Vec<(&'static str, Vec<String>)> {
    let types: Vec<&str> = sql.types.iter().map(|t| t.name()).collect();
    client
        .batch_execute(&format!(
            "PREPARE {name} ({}) AS {}",
            types.join(", "),
            sql.text
        ))
        .await
        .unwrap_or_else(|e| panic!("prepare {name}: {e:?}"));
    let mut out = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        client
            .batch_execute(&format!("SET plan_cache_mode = {mode}; BEGIN"))
            .await
            .unwrap();
        let rows = client
            .query(&format!("EXPLAIN ({explain}) EXECUTE {name}({args})"), &[])
            .await
            .unwrap_or_else(|e| panic!("explain {name}: {e}"));
        client.batch_execute("ROLLBACK").await.unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        if std::env::var("SHOW_PLANS").is_ok() {
            println!("{name} {mode}:\n{}", plan.join("\n"));
        }
        out.push((mode, plan));
    }
    out
}

/// The partitions (`<table>_p<digits>`) a plan reads when run, under a custom and under a
/// generic plan.
pub(crate) async fn partitions_read(
    client: &tokio_postgres::Client,
    table: &str,
    name: &str,
    sql: &checkpoint_postgres::Sql,
    args: &str,
) -> Vec<std::collections::BTreeSet<String>> {
    // Run, not only planned: run-time pruning shows only at execution (rolled back).
    let plans = prepared_plans(
        client,
        name,
        sql,
        args,
        "ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF",
    )
    .await;
    let mut out = Vec::new();
    for (_, rows) in plans {
        let prefix = format!("{table}_p");
        let read: std::collections::BTreeSet<String> = rows
            .iter()
            // A partition that run-time pruning removed is never executed; a DELETE lists every
            // partition as a possible target, but scans only those its Append keeps.
            .filter(|line| {
                let step = line.trim_start();
                !line.contains("(never executed)")
                    && !step.starts_with("Delete on ")
                    && !step.starts_with("Update on ")
            })
            .flat_map(|line| {
                line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| {
                        w.strip_prefix(&prefix)
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        out.push(read);
    }
    out
}

/// Saves one id into 16 executions at once, five times, on a layout whose ids are unique per
/// execution: each save is stored as that execution's own checkpoint (no lock, no probe of other
/// partitions), `load_in` reads each back, and `load` by the bare id is `Ambiguous` naming all
/// sixteen, never an arbitrary one of them.
pub(crate) async fn race_one_id_into_many_executions(store: &PostgresStore) {
    use checkpoint_core::{Checkpoint, CheckpointStore, Error, IdScope};
    assert_eq!(store.id_scope(), IdScope::PerExecution);
    for round in 0..5 {
        let id = format!("contested-{round}");
        let saves = (0..16).map(|e| {
            let store = store.clone();
            let cp = Checkpoint::new(format!("exec-{round}-{e:02}"), "n", serde_json::json!(e))
                .with_id(&id);
            tokio::spawn(async move { store.save(&cp).await })
        });
        let handles: Vec<_> = saves.collect();
        for handle in handles {
            assert_eq!(handle.await.unwrap().unwrap(), 1);
        }
        for e in 0..16 {
            let found = store
                .load_in(&format!("exec-{round}-{e:02}"), &id)
                .await
                .unwrap();
            assert_eq!(found.state, serde_json::json!(e));
        }
        match store.load(&id).await {
            Err(Error::Ambiguous {
                id: named,
                executions,
            }) => {
                assert_eq!(named, id);
                let expected: Vec<String> =
                    (0..16).map(|e| format!("exec-{round}-{e:02}")).collect();
                assert_eq!(executions, expected);
            }
            other => panic!("expected Ambiguous, got {other:?}"),
        }
    }
}

/// Fills `store`'s table with `rows` checkpoints, 100 to an execution (`exec-0`, `exec-1`, ...,
/// versions 1 to 100, ids `id-0` up), and analyzes it; `client` is left in the store's schema.
pub(crate) async fn seed_executions(
    client: &tokio_postgres::Client,
    store: &PostgresStore,
    rows: u32,
) {
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\";
             INSERT INTO {table} (id, execution_id, node_name, state, metadata, timestamp, version)
             SELECT 'id-' || g, 'exec-' || (g / 100), 'n', '{{\"a\": 1}}', '{{}}',
                    now() - make_interval(secs => g), g % 100 + 1
               FROM generate_series(0, {last}) AS g;
             ANALYZE {table};",
            schema = store.table().schema().expect("each test's own schema"),
            table = store.table().quoted(),
            last = rows.saturating_sub(1),
        ))
        .await
        .expect("seed the table");
}

/// The statements keyed by one execution (`exec-5` of a seeded table), with SQL literals for
/// their parameters, as the plan guards run them: each should read one partition of a table
/// partitioned by execution.
pub(crate) fn execution_keyed(
    s: &checkpoint_postgres::Statements,
) -> Vec<(&'static str, &checkpoint_postgres::Sql, &'static str)> {
    vec![
        ("latest", &s.latest, "'exec-5'"),
        ("list", &s.list, "'exec-5'"),
        (
            "page_asc",
            &s.page_ascending,
            "'exec-5', 40, 9223372036854775807, NULL, NULL, 21",
        ),
        (
            "page_desc",
            &s.page_descending,
            "'exec-5', -9223372036854775808, 60, 'n', '{\"k\": 1}', 21",
        ),
        ("clear", &s.clear, "'exec-5'"),
        (
            "prune_one",
            &s.prune_execution,
            "'exec-5', 10, now() - interval '1 day'",
        ),
    ]
}

/// A `save_batch` of 100,000 new checkpoints (over 100 executions) on `store`, on a server with
/// the stock `max_locks_per_transaction`: no lock is held per row, so it succeeds (schema 3's id
/// guard failed with `out of shared memory` past about 15,000).
pub(crate) async fn a_batch_of_100_000_is_stored(store: &PostgresStore) {
    use checkpoint_core::{Checkpoint, CheckpointStore};
    let batch: Vec<Checkpoint> = (0..100_000)
        .map(|i| {
            Checkpoint::new(
                format!("big-{}", i % 100),
                "n",
                serde_json::json!({ "i": i }),
            )
        })
        .collect();
    let versions = store.save_batch(&batch).await.expect("a batch of 100,000");
    assert_eq!(versions.len(), 100_000);
    assert_eq!(versions[99_999], 1_000);
    let last = store.latest("big-99").await.unwrap().unwrap();
    assert_eq!(last.state, serde_json::json!({ "i": 99_999 }));
}

/// A plain table of 1,000,000 checkpoints (10,000 executions of 100, timestamps over the past
/// 11.6 days) in a schema of its own, made in SQL; returns its schema.
pub(crate) async fn a_plain_table_of_a_million() -> String {
    let plain = PostgresStore::connect(options().await)
        .await
        .expect("connect");
    let schema = plain.table().schema().expect("a schema").to_owned();
    plain.close();
    client()
        .await
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".checkpoints (id, execution_id, node_name, state, metadata,
                                                  \"timestamp\", version)
             SELECT 'id-' || g, 'exec-' || (g / 100), 'n', '{{\"a\": 1}}', '{{}}',
                    now() - make_interval(secs => g), g % 100 + 1
               FROM generate_series(0, 999999) AS g;
             ANALYZE \"{schema}\".checkpoints;"
        ))
        .await
        .expect("a million rows");
    schema
}

/// Runs `copy` (the documented way over from a plain table, `{old}` and `{new}` standing for the
/// two schemas) from a plain table of 1,000,000 rows into `store`'s, and checks that every row
/// arrived and reads back.
pub(crate) async fn the_documented_copy_of_a_million_rows_succeeds(
    store: &PostgresStore,
    copy: &str,
) {
    use checkpoint_core::CheckpointStore;
    let old = a_plain_table_of_a_million().await;
    let new = store.table().schema().expect("a schema").to_owned();
    let client = client().await;
    client
        .batch_execute(&copy.replace("{old}", &old).replace("{new}", &new))
        .await
        .expect("the documented copy");
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{new}\".checkpoints"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1_000_000);
    let history = store.list("exec-1234").await.unwrap();
    assert_eq!(history.len(), 100);
    assert_eq!(
        store
            .load_in("exec-1234", "id-123456")
            .await
            .unwrap()
            .version,
        57
    );
    client
        .batch_execute(&format!("DROP SCHEMA \"{old}\" CASCADE"))
        .await
        .unwrap();
}
