//! What the store records through the `metrics` facade, over the scripted mock pool: each
//! operation's duration and outcome, retries with their cause, and the states written.

use checkpoint_core::telemetry::testing::{find, samples};
use checkpoint_core::telemetry::{
    COLLECTION, ERROR_TYPE, OPERATION, OPERATION_DURATION, RETRIES, STATES_WRITTEN,
    STATE_BYTES_WRITTEN, SYSTEM,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;

use super::tests::{fast_retries, options, store_with};
use super::*;
use crate::mock::{MockPool, Reply};
use crate::pool::Row;
use crate::Cell;

#[tokio::test]
async fn operations_retries_and_states_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(fast_retries())).await;
    let state = json!({"k": "v", "n": [1, 2, 3]});
    let checkpoint = Checkpoint::new("exec-1", "plan", state.clone()).with_id("cp-1");

    // A save that meets a dropped connection once, then lands.
    pool.reply(Reply::Fail(crate::error::DbError::connection("reset")))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(1)])]));
    assert_eq!(store.save(&checkpoint).await.unwrap(), 1);
    // A load of an id that is not there.
    pool.reply(Reply::Rows(vec![]));
    assert!(matches!(
        store.load("nope").await,
        Err(Error::NotFound { .. })
    ));

    let all = samples(&recorder);
    let find = |name: &str, l: &[(&str, &str)]| find(&all, name, l);
    let table = [(SYSTEM, "postgresql"), (COLLECTION, "checkpoints")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l = table.to_vec();
        l.extend_from_slice(extra);
        l
    };
    match find(OPERATION_DURATION, &with(&[(OPERATION, "save")])) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 1),
        other => panic!("one timed save expected: {other:?} in {all:?}"),
    }
    match find(
        OPERATION_DURATION,
        &with(&[(OPERATION, "load"), (ERROR_TYPE, "not_found")]),
    ) {
        Some(DebugValue::Histogram(samples)) => assert_eq!(samples.len(), 1),
        other => panic!("one failed load expected: {other:?} in {all:?}"),
    }
    assert!(
        matches!(
            find(
                RETRIES,
                &with(&[(OPERATION, "save"), ("cause", "connection")])
            ),
            Some(DebugValue::Counter(1))
        ),
        "{all:?}"
    );
    assert!(
        matches!(
            find(STATES_WRITTEN, &with(&[("storage", "jsonb")])),
            Some(DebugValue::Counter(1))
        ),
        "{all:?}"
    );
    let text_len = serde_json::to_vec(&state).unwrap().len() as u64;
    assert!(
        matches!(find(STATE_BYTES_WRITTEN, &table), Some(DebugValue::Counter(n)) if *n == text_len),
        "{text_len} bytes expected in {all:?}"
    );
}

/// A state sealed under a key this store does not hold fails the read, and the failure is
/// counted by kind, beside the failed operation.
#[tokio::test]
async fn a_state_that_cannot_be_opened_is_counted_by_kind() {
    use checkpoint_core::telemetry::ENCRYPTION_FAILURES;
    use checkpoint_format::sealing::{Encryption, EncryptionKey, KEY_BYTES};

    let recorder = DebuggingRecorder::new();
    let _installed = metrics::set_default_local_recorder(&recorder);
    let ours = Encryption::new(EncryptionKey::new("ours", &[2; KEY_BYTES]).unwrap());
    let theirs = Encryption::new(EncryptionKey::new("theirs", &[3; KEY_BYTES]).unwrap());
    let sealed = theirs.seal(42, b"\x01\x00{\"secret\":1}").unwrap();
    let pool = MockPool::default();
    let store = store_with(
        &pool,
        options()
            .state_encoding(crate::StateEncoding::delta(1).unwrap())
            .encryption(ours),
    )
    .await;
    let checkpoint = Checkpoint::new("exec-1", "plan", json!(null)).with_id("cp-1");
    pool.reply(Reply::Rows(vec![Row(vec![
        Cell::Text(checkpoint.id.clone()),
        Cell::Text(checkpoint.execution_id.clone()),
        Cell::Text(checkpoint.node_name.clone()),
        Cell::Null,
        Cell::Json(json!({})),
        Cell::Timestamp(checkpoint.timestamp),
        Cell::Int(1),
        Cell::Null,
        Cell::Bytes(sealed),
        Cell::Null,
        Cell::Null,
        Cell::Int(42),
        Cell::Int(0),
        Cell::Bool(true),
    ])]));
    let err = store.load("cp-1").await.unwrap_err();
    assert_eq!(
        crate::EncryptionError::of(&err).map(|e| e.kind()),
        Some("unknown_key"),
        "{err:?}"
    );

    let all = samples(&recorder);
    let table = [(SYSTEM, "postgresql"), (COLLECTION, "checkpoints")];
    let mut kind = table.to_vec();
    kind.push(("kind", "unknown_key"));
    assert!(
        matches!(
            find(&all, ENCRYPTION_FAILURES, &kind),
            Some(DebugValue::Counter(1))
        ),
        "{all:?}"
    );
    let mut failed = table.to_vec();
    failed.extend([(OPERATION, "load"), (ERROR_TYPE, err.kind())]);
    assert!(
        matches!(
            find(&all, OPERATION_DURATION, &failed),
            Some(DebugValue::Histogram(samples)) if samples.len() == 1
        ),
        "{all:?}"
    );
}
