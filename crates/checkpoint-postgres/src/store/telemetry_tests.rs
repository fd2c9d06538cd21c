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
