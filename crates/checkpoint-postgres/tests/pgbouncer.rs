//! The store behind a real pgbouncer in transaction mode: the whole conformance suite with the
//! statement cache off (`statement_cache=off` in the URL), and a store left with the cache on,
//! which notices the shared server connections and turns its cache off itself.
//!
//! Needs Docker and an image that carries pgbouncer next to PostgreSQL
//! (`CHECKPOINT_TEST_POSTGRES_IMAGE`); the official image has none. Without them every test
//! here prints why it is skipped, unless `CHECKPOINT_TEST_STRICT` makes that a failure.

mod support;

use std::time::Duration;

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::{PostgresOptions, PostgresStore};
use serde_json::json;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::core::IntoContainerPort;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;

/// Started by the image's init step: pgbouncer in transaction mode on port 6432, in front of
/// the server, with two server connections per database so that clients share them.
const START_PGBOUNCER: &str = r#"#!/bin/sh
set -e
if ! command -v pgbouncer >/dev/null; then
  echo "this image has no pgbouncer" >&2
  exit 1
fi
cat > /tmp/pgbouncer.ini <<EOF
[databases]
* = host=127.0.0.1 port=5432 user=postgres password=postgres
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
auth_type = trust
auth_file = /tmp/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 500
ignore_startup_parameters = extra_float_digits,options
unix_socket_dir = /tmp
pidfile = /tmp/pgbouncer.pid
logfile = /tmp/pgbouncer.log
EOF
echo '"postgres" ""' > /tmp/userlist.txt
pgbouncer -d /tmp/pgbouncer.ini
"#;

struct Bouncer {
    url: String,
    _container: ContainerAsync<Postgres>,
}

static BOUNCER: OnceCell<Bouncer> = OnceCell::const_new();

async fn bouncer() -> &'static Bouncer {
    BOUNCER
        .get_or_init(|| async {
            let image = std::env::var("CHECKPOINT_TEST_POSTGRES_IMAGE")
                .unwrap_or_else(|_| support::DEFAULT_IMAGE.to_owned());
            let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let container = Postgres::default()
                .with_name(name)
                .with_tag(tag)
                .with_copy_to(
                    "/docker-entrypoint-initdb.d/pgbouncer.sh",
                    START_PGBOUNCER.as_bytes().to_vec(),
                )
                .with_mapped_port(port, 6432.tcp())
                .with_cmd(["-c", "fsync=off", "-c", "max_connections=200"])
                .with_startup_timeout(Duration::from_secs(120))
                .start()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "could not start PostgreSQL with pgbouncer from image {image}: {e}\n\
                         These tests need an image with pgbouncer next to PostgreSQL: \
                         CHECKPOINT_TEST_POSTGRES_IMAGE=$(bash ../shared/postgres-image/build.sh \
                         | tail -n 1)"
                    )
                });
            // A static is never dropped: remove the container when the binary exits.
            support::remove_at_exit(container.id());
            Bouncer {
                url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
                _container: container,
            }
        })
        .await
}

/// Why these tests cannot run here, if they cannot (asked of Docker once per test binary).
fn without_pgbouncer() -> Option<String> {
    static REASON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    REASON
        .get_or_init(|| support::without_tool_in_image("pgbouncer.rs", "pgbouncer"))
        .clone()
}

/// A store through pgbouncer on a schema of its own; `query` is appended to the URL.
async fn store_through_bouncer(query: &str) -> PostgresStore {
    let url = format!("{}?{query}", bouncer().await.url);
    let options = PostgresOptions::new(&url)
        .expect("a valid URL")
        .schema(support::unique_schema("pgb"))
        .max_connections(8);
    PostgresStore::connect(options)
        .await
        .expect("connect through pgbouncer")
}

#[tokio::test]
async fn with_the_cache_on_the_store_falls_back_to_unnamed_statements() {
    if let Some(reason) = without_pgbouncer() {
        eprintln!("skipped: {reason}");
        return;
    }
    let store = store_through_bouncer("statement_cache=on").await;
    // Many tasks over 8 client connections and 2 server connections: named statements meet
    // server connections that do not know them, or already hold their names.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    let cp = Checkpoint::new(format!("e{t}"), "n", json!({"t": t, "i": i}));
                    store.save(&cp).await.expect("save through pgbouncer");
                    let latest = store.latest(&cp.execution_id).await.expect("latest");
                    assert_eq!(latest.map(|l| l.id), Some(cp.id.clone()));
                    ids.push(cp.id);
                }
                ids
            })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        for id in task.expect("task") {
            store.load(&id).await.expect("every save is there");
        }
    }
    for t in 0..16 {
        assert_eq!(store.list(&format!("e{t}")).await.unwrap().len(), 20);
    }
    // Group commit (on by default) sent saves together through the pooler.
    let groups = store.group_commit_stats().expect("on by default");
    assert!(groups.largest() >= 2, "{groups:?}");
}

checkpoint_core::conformance_tests!(
    store_through_bouncer("statement_cache=off"),
    unless = without_pgbouncer()
);
