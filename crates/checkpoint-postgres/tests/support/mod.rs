//! The PostgreSQL server the integration tests run against, and an isolated schema per test.
//!
//! - `CHECKPOINT_TEST_DATABASE_URL` set: that server is used, no container is started.
//! - Otherwise one container per test binary from `CHECKPOINT_TEST_POSTGRES_IMAGE`
//!   (`name:tag`), by default the official `postgres` image. It is removed when the binary
//!   exits.
//!
//! No Docker and no URL is a test failure that says how to provide one, never a silent skip.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use checkpoint_postgres::{PostgresOptions, PostgresStore};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;

/// The official image used when no other is chosen.
pub const DEFAULT_IMAGE: &str = "postgres:17-alpine";

/// A running server: the URL of its `postgres` database as a superuser.
pub struct TestServer {
    pub url: String,
    _container: Option<ContainerAsync<Postgres>>,
}

static SERVER: OnceCell<TestServer> = OnceCell::const_new();
static CONTAINER_ID: OnceLock<String> = OnceLock::new();

/// The shared server, started on first use.
pub async fn server() -> &'static TestServer {
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
                 CHECKPOINT_TEST_POSTGRES_IMAGE=name:tag (on machines without a registry: \
                 CHECKPOINT_TEST_POSTGRES_IMAGE=$(bash ../shared/postgres-image/build.sh | tail -n 1)), \
                 or point CHECKPOINT_TEST_DATABASE_URL at a server you run."
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
fn remove_at_exit(id: &str) {
    extern "C" fn remove() {
        if let Some(id) = CONTAINER_ID.get() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
    }
    if CONTAINER_ID.set(id.to_owned()).is_ok() {
        // SAFETY: `remove` is a plain extern "C" fn that lives for the whole program.
        unsafe {
            libc::atexit(remove);
        }
    }
}

/// A schema name no other test of this run uses.
pub fn unique_schema(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Options for a fresh, empty schema on the shared server.
pub async fn options() -> PostgresOptions {
    PostgresOptions::new(&server().await.url)
        .expect("test server URL parses")
        .schema(unique_schema("t"))
        .max_connections(8)
}

/// A connected store on a fresh, empty schema.
pub async fn store() -> PostgresStore {
    PostgresStore::connect(options().await)
        .await
        .expect("connect to the test server")
}

/// A plain driver connection to the shared server, for set-up and inspection.
pub async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server().await.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}
