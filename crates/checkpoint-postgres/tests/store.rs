//! The PostgreSQL store's own behaviour on a real server: names, connection handling, pool
//! settings and error mapping.

mod support;

use std::time::{Duration, Instant};

use checkpoint_core::conformance::assert_backend;
use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{DbError, PostgresOptions, PostgresStore};
use serde_json::json;
use tokio_postgres::error::SqlState;

fn sqlstate(err: &Error) -> Option<SqlState> {
    DbError::of(err)?.code().cloned()
}

/// The shared server's URL with its password replaced.
async fn url_with_password(password: &str) -> String {
    support::server()
        .await
        .url
        .replace("postgres:postgres@", &format!("postgres:{password}@"))
}

#[tokio::test]
async fn injection_attempts_in_names_are_refused_before_anything_runs() {
    let victim = support::unique_schema("victim");
    let client = support::client().await;
    client
        .batch_execute(&format!("CREATE TABLE \"{victim}\" (x int)"))
        .await
        .unwrap();
    let url = support::server().await.url.clone();
    let attempts = [
        (format!("checkpoints; DROP TABLE \"{victim}\"; --"), None),
        (format!("x\" ; DROP TABLE \"{victim}\" ; --"), None),
        (
            "checkpoints".to_owned(),
            Some(format!("public\"; DROP TABLE \"{victim}\"; --")),
        ),
        (
            "checkpoints".to_owned(),
            Some("pg_catalog.pg_class".to_owned()),
        ),
        ("".to_owned(), None),
    ];
    for (table, schema) in attempts {
        let mut options = PostgresOptions::new(&url).unwrap().table(&table);
        if let Some(schema) = &schema {
            options = options.schema(schema);
        }
        let err = PostgresStore::connect(options).await.unwrap_err();
        let field = if schema.is_some() { "schema" } else { "table" };
        assert!(err.is_invalid_field(field), "{table:?} / {schema:?}: {err}");
    }
    let still_there: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = $1",
            &[&victim],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still_there, 1);
}

#[tokio::test]
async fn mixed_case_names_are_quoted_everywhere() {
    let schema = format!("Tenant_{}", support::unique_schema("X"));
    let options = PostgresOptions::new(&support::server().await.url)
        .unwrap()
        .schema(&schema)
        .table("Workflow_Checkpoints");
    let store = PostgresStore::connect(options).await.unwrap();
    let cp = Checkpoint::new("e", "n", json!({"a": 1}));
    store.save(&cp).await.unwrap();
    assert_eq!(store.load(&cp.id).await.unwrap().state, json!({"a": 1}));
    let found: i64 = support::client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'Workflow_Checkpoints'",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
}

#[tokio::test]
async fn pool_parameters_in_the_url_are_honoured_and_hidden_from_the_driver() {
    let app = support::unique_schema("app");
    let url = format!(
        "{}?application_name={app}&pool_min_conns=3&pool_max_conns=4&pool_max_conn_lifetime=1h",
        support::server().await.url
    );
    let options = PostgresOptions::new(&url)
        .unwrap()
        .schema(support::unique_schema("t"));
    let store = PostgresStore::connect(options).await.unwrap();
    let open: i64 = support::client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!((3..=4).contains(&open), "{open} connections open");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn ping_answers_and_close_makes_calls_unavailable() {
    let store = support::store().await;
    store.ping().await.unwrap();
    store.close();
    let err = store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(store.ping().await.is_err());
}

#[tokio::test]
async fn a_wrong_password_is_a_final_error_with_its_sqlstate() {
    let options = PostgresOptions::new(&url_with_password("wrong").await)
        .unwrap()
        .schema(support::unique_schema("t"));
    let err = PostgresStore::connect(options).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(sqlstate(&err), Some(SqlState::INVALID_PASSWORD), "{err:?}");
}

#[tokio::test]
async fn a_closed_port_is_unavailable_at_once() {
    // Bind a port and let it go, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PostgresOptions::new(&format!("host=127.0.0.1 port={port} user=u")).unwrap();
    let err = PostgresStore::connect(options).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_create_timeout() {
    // Accepts connections but never speaks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = PostgresOptions::new(&format!("host=127.0.0.1 port={port} user=u"))
        .unwrap()
        .create_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = PostgresStore::connect(options).await.unwrap_err();
    let took = started.elapsed();
    silent.abort();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn server_errors_keep_their_sqlstate() {
    let store = support::store().await;
    let table = store.table().quoted();
    support::client()
        .await
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    let err = assert_backend(store.load("any").await, false, "");
    assert_eq!(sqlstate(&err), Some(SqlState::UNDEFINED_TABLE));
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_for_that_row_only() {
    let store = support::store().await;
    let good = Checkpoint::new("e", "n", json!(1));
    store.save(&good).await.unwrap();
    let table = store.table().quoted();
    support::client()
        .await
        .batch_execute(&format!(
            "INSERT INTO {table} (id, execution_id, node_name, state, metadata, timestamp, version) \
             VALUES ('bad', 'e2', 'n', '1', '[\"not an object\"]', now(), 1)"
        ))
        .await
        .unwrap();
    assert_backend(store.load("bad").await, false, "bad");
    assert_eq!(store.load(&good.id).await.unwrap().state, json!(1));
}

#[tokio::test]
async fn a_store_is_shared_by_clones_and_dyn_handles() {
    let store = support::store().await;
    let shared: std::sync::Arc<dyn CheckpointStore> = std::sync::Arc::new(store.clone());
    shared
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();
    assert_eq!(store.list("e").await.unwrap().len(), 1);
}

#[tokio::test]
async fn relaxed_durability_turns_synchronous_commit_off_for_the_stores_sessions_only() {
    use checkpoint_postgres::{DbPool, DeadpoolPool, Sql};
    let setting = |options: PostgresOptions| async move {
        let pool = DeadpoolPool::from_options(&options).unwrap();
        let show = Sql::new("SHOW synchronous_commit", &[]);
        let rows = pool.query(&show, &[]).await.unwrap();
        rows[0].text(0).unwrap()
    };
    let options = support::options().await;
    assert_eq!(setting(options.clone()).await, "on", "durable by default");
    assert_eq!(
        setting(options.clone().synchronous_commit(false)).await,
        "off"
    );
    let store = PostgresStore::connect(options.synchronous_commit(false))
        .await
        .unwrap();
    let cp = Checkpoint::new("e", "n", json!(1));
    store.save(&cp).await.unwrap();
    assert_eq!(store.load(&cp.id).await.unwrap().state, json!(1));
}

#[tokio::test]
async fn requiring_tls_from_a_server_without_it_is_a_final_tls_error() {
    use checkpoint_postgres::{DbErrorKind, SslMode};
    let options = support::options().await.ssl_mode(SslMode::Require);
    let err = PostgresStore::connect(options).await.unwrap_err();
    assert_eq!(
        DbError::of(&err).map(DbError::kind),
        Some(DbErrorKind::Tls),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn table_names_work_up_to_the_limit_and_are_refused_past_it() {
    let schema = support::unique_schema("names");
    let longest = "t".repeat(checkpoint_postgres::MAX_TABLE_BYTES);
    let store = PostgresStore::connect(support::options().await.schema(&schema).table(&longest))
        .await
        .expect("the longest table name works");
    let mut cp = Checkpoint::new("e", "n", json!({"x": 1}));
    cp.version = store.save(&cp).await.unwrap();
    assert_eq!(store.load(&cp.id).await.unwrap(), cp);
    assert_eq!(store.migrate().await.unwrap().applied, Vec::<i32>::new());
    let conflict = Checkpoint::new("e", "n", json!(2)).with_version(1);
    assert!(matches!(
        store.save(&conflict).await,
        Err(Error::Conflict { version: 1, .. })
    ));
    for len in checkpoint_postgres::MAX_TABLE_BYTES + 1..=63 {
        let err = PostgresStore::connect(
            support::options()
                .await
                .schema(&schema)
                .table("t".repeat(len)),
        )
        .await
        .unwrap_err();
        assert!(err.is_invalid_field("table"), "{len}: {err}");
        assert!(err.to_string().contains("at most 52 bytes"), "{err}");
    }
}
