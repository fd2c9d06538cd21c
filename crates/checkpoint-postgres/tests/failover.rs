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
