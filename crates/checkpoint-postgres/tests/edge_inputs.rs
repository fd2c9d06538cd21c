//! Generated whole checkpoints — strings from every Unicode plane with control characters
//! (NUL included), empty and long ids and keys, numbers of every magnitude and form, deep and
//! wide nesting, metadata of every shape, timestamps across and beyond the supported range —
//! saved on `MemoryStore` and on `PostgresStore`. Each must be the same typed error on both
//! with nothing stored, or read back equal on both. Bounded to run in seconds; failing inputs
//! are kept in `edge_inputs.proptest-regressions` and replayed first.

mod support;

use std::sync::OnceLock;

use checkpoint_core::conformance::{assert_exact, strategies};
use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_memory::MemoryStore;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};
use time::OffsetDateTime;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

fn store() -> &'static checkpoint_postgres::PostgresStore {
    static STORE: OnceLock<checkpoint_postgres::PostgresStore> = OnceLock::new();
    STORE.get_or_init(|| {
        runtime().block_on(async {
            // Deltas whatever the size, so generated states meet the delta path too.
            let options = support::options().await.min_delta_bytes(0);
            checkpoint_postgres::PostgresStore::connect(options)
                .await
                .expect("connect to the test server")
        })
    })
}

/// Text of every kind: printable, control characters (NUL too), other planes, long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9_-]{1,12}",
        2 => any::<String>(),
        1 => "[\\x00-\\x1f\\x7f\"\\\\]{0,6}",
        1 => "[\\u{10000}-\\u{10FFFF}]{1,4}",
        1 => Just(String::new()),
        1 => (250usize..262).prop_map(|n| "é".repeat(n / 2)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-330i32..310, any::<bool>()).prop_map(|(e, neg)| {
            let f = 10f64.powi(e) * if neg { -1.0 } else { 1.0 };
            if f.is_finite() {
                Value::from(f)
            } else {
                Value::Null
            }
        }),
        strategies::edge_number(),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(text(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A document nested `depth` levels, around the depth limit.
fn nested() -> impl Strategy<Value = Value> {
    (95usize..106).prop_map(|depth| {
        let mut v = Value::from(1);
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    })
}

/// Instants across the whole range with offsets and sub-microsecond parts (the conformance
/// suite's generator), and instants built with the non-panicking builder from them.
fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    prop_oneof![
        strategies::timestamp(),
        strategies::timestamp().prop_map(|at| {
            Checkpoint::new("e", "n", Value::Null)
                .with_timestamp(at)
                .timestamp
        }),
    ]
}

prop_compose! {
    fn checkpoint()(
        id in text(),
        execution in text(),
        node in text(),
        state in prop_oneof![4 => document(), 1 => nested()],
        metadata in prop::collection::btree_map(text(), document(), 0..5),
        parent in prop::option::of(text()),
        timestamp in timestamp(),
        version in prop_oneof![Just(0i64), 1i64..5, Just(i64::MAX), Just(-1i64)],
    ) -> Checkpoint {
        Checkpoint {
            id,
            execution_id: execution,
            node_name: node,
            state,
            metadata: metadata.into_iter().collect::<Map<String, Value>>(),
            parent_id: parent,
            timestamp,
            version,
        }
    }
}

fn kind(err: &Error) -> String {
    match err {
        Error::InvalidInput { field, .. } => format!("InvalidInput({field})"),
        Error::Conflict { version, .. } => format!("Conflict({version})"),
        Error::NotFound { .. } => "NotFound".into(),
        Error::Serialization(_) => "Serialization".into(),
        other => panic!("not a typed input error: {other:?}"),
    }
}

async fn check(pg: &checkpoint_postgres::PostgresStore, cp: Checkpoint) {
    let memory = MemoryStore::new();
    let (rm, rp) = (memory.save(&cp).await, pg.save(&cp).await);
    assert_eq!(
        rm.as_ref().map_err(kind),
        rp.as_ref().map_err(kind),
        "save of {cp:?}"
    );
    match rm {
        Ok(version) => {
            let mut expected = cp.clone();
            expected.version = version;
            let from_memory = memory.load(&cp.id).await.expect("memory load");
            let from_pg = pg.load(&cp.id).await.expect("postgres load");
            assert_exact(&from_memory, &expected, "read back from memory");
            assert_exact(&from_pg, &expected, "read back from PostgreSQL");
            let listed = pg.list(&cp.execution_id).await.unwrap();
            assert_exact(&listed, &vec![expected], "listed by PostgreSQL");
            // The PostgreSQL store is shared by every case: leave it empty, as memory starts.
            assert_eq!(pg.clear(&cp.execution_id).await.unwrap(), 1);
        }
        Err(_) => {
            if checkpoint_core::validate::check_id("execution_id", &cp.execution_id).is_ok() {
                assert!(pg.list(&cp.execution_id).await.unwrap().is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        max_shrink_iters: 500,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/edge_inputs.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_checkpoint_is_refused_alike_or_read_back_equal_on_every_backend(cp in checkpoint()) {
        let pg = store();
        runtime().block_on(check(pg, cp));
    }
}
