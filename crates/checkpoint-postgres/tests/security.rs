//! Least privilege and secrets.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use checkpoint_core::conformance::assert_backend;
use checkpoint_core::{Checkpoint, CheckpointStore, Error, RetentionPolicy};
use checkpoint_postgres::{PostgresOptions, PostgresStore, SchemaError};
use serde_json::json;

/// The shared server's URL as `user` with `password`.
async fn url_as(user: &str, password: &str) -> String {
    support::server()
        .await
        .url
        .replace("postgres:postgres@", &format!("{user}:{password}@"))
}

/// A schema migrated by the administrator and a login role that may only read and write its
/// checkpoints (plus read the migration record, which the schema check reads).
async fn schema_with_app_role(grant_dml: bool) -> (String, String) {
    let admin_options = support::options().await;
    let schema = admin_options
        .table_name()
        .unwrap()
        .schema()
        .unwrap()
        .to_owned();
    PostgresStore::connect(admin_options)
        .await
        .expect("administrator migrates");
    let role = format!("app_{}", support::unique_schema("r").to_lowercase());
    let dml = if grant_dml {
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON \"{schema}\".checkpoints TO {role};")
    } else {
        String::new()
    };
    support::client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'app-secret';
             GRANT USAGE ON SCHEMA \"{schema}\" TO {role};
             GRANT SELECT ON \"{schema}\".checkpoints_migrations TO {role};
             {dml}"
        ))
        .await
        .unwrap();
    (schema, role)
}

#[tokio::test]
async fn a_role_limited_to_reading_and_writing_checkpoints_runs_the_store() {
    let (schema, role) = schema_with_app_role(true).await;
    for auto_migrate in [false, true] {
        let options = PostgresOptions::new(&url_as(&role, "app-secret").await)
            .unwrap()
            .schema(&schema)
            .auto_migrate(auto_migrate);
        let store = PostgresStore::connect(options)
            .await
            .expect("a current schema needs no DDL");
        let exec = format!("least-privilege-{auto_migrate}");
        let cp = Checkpoint::new(&exec, "n", json!({"ok": true}));
        store.save(&cp).await.unwrap();
        store
            .save_batch(&[
                Checkpoint::new(&exec, "b", json!(1)),
                Checkpoint::new(&exec, "c", json!(2)),
            ])
            .await
            .unwrap();
        store.fork(&cp.id, &format!("{exec}-fork")).await.unwrap();
        assert_eq!(store.list(&exec).await.unwrap().len(), 3);
        store
            .prune(&RetentionPolicy::keep_last(1).for_execution(&exec))
            .await
            .unwrap();
        assert_eq!(store.clear(&exec).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn a_role_that_may_not_migrate_is_told_what_to_do() {
    let role = format!("app_{}", support::unique_schema("r").to_lowercase());
    support::client()
        .await
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'app-secret';"))
        .await
        .unwrap();
    // A fresh schema in a database where the role may not create one.
    let options = PostgresOptions::new(&url_as(&role, "app-secret").await)
        .unwrap()
        .schema(support::unique_schema("t"));
    let err = PostgresStore::connect(options).await.unwrap_err();
    let source = SchemaError::of(&err);
    assert!(
        matches!(source, Some(SchemaError::Privilege { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_role_without_table_rights_gets_a_clear_error() {
    let (schema, role) = schema_with_app_role(false).await;
    let options = PostgresOptions::new(&url_as(&role, "app-secret").await)
        .unwrap()
        .schema(&schema)
        .auto_migrate(false);
    let store = PostgresStore::connect(options).await.unwrap();
    let err = assert_backend(
        store.save(&Checkpoint::new("e", "n", json!(1))).await,
        false,
        "permission denied for table checkpoints",
    );
    assert!(
        err.to_string()
            .contains("permission denied for table checkpoints"),
        "{err}"
    );
    assert!(err.to_string().contains("42501"), "{err}");
}

/// A tracing writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every trace event of this thread, at TRACE level, until the guard is dropped.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn passwords_appear_in_no_debug_display_error_or_trace() {
    const SECRET: &str = "hunter2-do-not-leak";
    let (captured, _guard) = capture();

    let url = url_as("postgres", SECRET).await;
    let options = PostgresOptions::new(&url)
        .unwrap()
        .schema(support::unique_schema("t"));
    let shown = format!("{options:?}");
    let err = PostgresStore::connect(options).await.unwrap_err();
    let key_value = PostgresOptions::new(&format!("host=localhost password={SECRET}")).unwrap();

    let trace = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        trace.contains("checkpoint_connect"),
        "the connection attempt is traced: {trace}"
    );
    assert!(trace.contains("<redacted>"), "{trace}");
    for (what, text) in [
        ("Debug of the options", shown),
        ("Debug of key=value options", format!("{key_value:?}")),
        ("Display of the error", err.to_string()),
        ("Debug of the error", format!("{err:?}")),
        ("the trace", trace),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the password: {text}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn encryption_keys_appear_in_no_debug_display_error_or_trace() {
    use checkpoint_core::{Checkpoint, CheckpointStore};
    use checkpoint_postgres::{Encryption, EncryptionKey};
    // A key whose bytes spell text, so that any leak of them would be visible.
    const RAW: &[u8; 32] = b"key-bytes-that-must-never-appear";
    let base64 = "a2V5LWJ5dGVzLXRoYXQtbXVzdC1uZXZlci1hcHBlYXI=";
    let (captured, _guard) = capture();

    let keys = Encryption::parse(&format!("writer:{base64}\nreader:{base64}")).unwrap();
    let options = support::options()
        .await
        .encryption(keys.clone())
        .min_delta_bytes(0);
    let store = PostgresStore::connect(options.clone()).await.unwrap();
    let cp = Checkpoint::new("e", "n", serde_json::json!({"x": 1}));
    store.save(&cp).await.unwrap();
    // A reader with the same id but other bytes: an authentication error.
    let other = Encryption::new(EncryptionKey::new("writer", &[9u8; 32]).unwrap());
    let reader = PostgresStore::connect(options.clone().encryption(other).auto_migrate(false))
        .await
        .unwrap();
    let err = reader.load(&cp.id).await.unwrap_err();
    let bad_key = Encryption::parse("writer:AQID").unwrap_err();

    let trace = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let raw = String::from_utf8_lossy(RAW).into_owned();
    for (what, text) in [
        ("Debug of the keys", format!("{keys:?}")),
        ("Debug of the options", format!("{options:?}")),
        ("Debug of the store", format!("{store:?}")),
        ("Display of the error", err.to_string()),
        ("Debug of the error", format!("{err:?}")),
        ("a refused key", format!("{bad_key} {bad_key:?}")),
        ("the trace", trace),
    ] {
        assert!(!text.contains(&raw), "{what} shows the key: {text}");
        assert!(!text.contains(base64), "{what} shows the key: {text}");
        assert!(
            !text.contains("107, 101, 121"),
            "{what} shows key bytes: {text}"
        );
    }
    assert!(
        err.to_string().contains("\"writer\""),
        "the error names the key id: {err}"
    );
    assert!(
        format!("{options:?}").contains("writer"),
        "Debug names the key ids"
    );
}

/// A role that may write checkpoints but not create tables runs a time-partitioned store: its
/// upkeep fails (logged, not returned), its saves land in the partitions the owner made, and
/// asking it to make partitions is refused by the server, with nothing made.
#[tokio::test]
async fn a_role_that_may_not_make_partitions_still_saves_into_the_existing_ones() {
    let by_day = checkpoint_postgres::TableLayout::time_partitioned(
        checkpoint_postgres::PartitionPeriod::Day,
    );
    let admin_options = support::options().await.table_layout(by_day);
    let schema = admin_options
        .table_name()
        .unwrap()
        .schema()
        .unwrap()
        .to_owned();
    let admin = PostgresStore::connect(admin_options).await.unwrap();
    let made = admin.partitions().await.unwrap();
    let role = format!("app_{}", support::unique_schema("r").to_lowercase());
    support::client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'app-secret';
             GRANT USAGE ON SCHEMA \"{schema}\" TO {role};
             GRANT SELECT ON \"{schema}\".checkpoints_migrations TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON \"{schema}\".checkpoints,
                   \"{schema}\".checkpoints_executions TO {role};"
        ))
        .await
        .unwrap();
    // More partitions ahead than the owner made: the upkeep at connect tries, and fails.
    let options = PostgresOptions::new(&url_as(&role, "app-secret").await)
        .unwrap()
        .schema(&schema)
        .table_layout(by_day)
        .partitions_ahead(5);
    let store = PostgresStore::connect(options)
        .await
        .expect("a failed upkeep does not fail connect");
    let cp = Checkpoint::new("limited", "n", json!({"ok": true}));
    assert_eq!(store.save(&cp).await.unwrap(), 1);
    assert_eq!(store.latest("limited").await.unwrap().unwrap().id, cp.id);
    let err = store.ensure_partitions().await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert_eq!(admin.partitions().await.unwrap(), made);
}
