//! Every bad input gets a typed error and changes nothing stored: one table, one row per case.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use checkpoint_core::{Checkpoint, CheckpointStore, Error, Limits, ListQuery, RetentionPolicy};
use checkpoint_postgres::{DbError, PostgresOptions, PostgresStore, SchemaError};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;

/// What a case must fail with.
#[derive(Debug)]
enum Expect {
    Invalid(&'static str),
    Conflict,
    Unavailable,
    Sqlstate(SqlState),
    Schema(fn(&SchemaError) -> bool),
    Serialization,
}

impl Expect {
    fn check(&self, case: &str, err: &Error) {
        let ok = match self {
            Expect::Invalid(field) => err.is_invalid_field(field),
            Expect::Conflict => matches!(err, Error::Conflict { .. }),
            Expect::Unavailable => matches!(err, Error::Unavailable { .. }) && err.is_retryable(),
            Expect::Sqlstate(code) => {
                !err.is_retryable() && DbError::of(err).and_then(DbError::code) == Some(code)
            }
            Expect::Schema(matches) => SchemaError::of(err).is_some_and(matches),
            Expect::Serialization => matches!(err, Error::Serialization(_)),
        };
        assert!(ok, "{case}: expected {self:?}, got {err:?}");
    }
}

type Case = Pin<Box<dyn Future<Output = Result<(), Error>>>>;

/// A digest of every row of the store's table.
async fn digest(store: &PostgresStore) -> String {
    support::client()
        .await
        .query_one(
            &format!(
                "SELECT count(*)::text || ':' || COALESCE(md5(string_agg(c::text, '|' ORDER BY id)), '') \
                 FROM {} c",
                store.table().quoted()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn nested(depth: usize) -> Value {
    let mut v = json!(0);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

fn ok<T>(result: Result<T, Error>) -> Result<(), Error> {
    result.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_typed_error_and_changes_nothing() {
    let options = support::options()
        .await
        .limits(Limits::default().with_max_state_bytes(4096));
    let schema = options.table_name().unwrap().schema().unwrap().to_owned();
    let store = PostgresStore::connect(options).await.unwrap();
    let url = support::server().await.url.clone();

    // What is stored before: two executions, a corrupt row written behind the store's back.
    let a1 = Checkpoint::new("a", "n", json!({"k": 1})).with_metadata("m", 1);
    store.save(&a1).await.unwrap();
    store
        .save(&Checkpoint::new("b", "n", json!([1, 2])))
        .await
        .unwrap();
    support::client()
        .await
        .batch_execute(&format!(
            "INSERT INTO {} (id, execution_id, node_name, state, metadata, timestamp, version) \
             VALUES ('corrupt', 'c', 'n', '\"not an object\"', '{{}}', now(), 1)",
            store.table().quoted()
        ))
        .await
        .unwrap();
    let before = digest(&store).await;

    let cp = |f: fn(Checkpoint) -> Checkpoint| f(Checkpoint::new("a", "n", json!({"x": 1})));
    let s = store.clone();
    let moved = {
        let mut m = a1.clone();
        m.execution_id = "b".into();
        m
    };
    let mut sub_micro = Checkpoint::new("a", "n", json!(1));
    sub_micro.timestamp = time::macros::datetime!(2024-01-01 00:00:00.0000005 UTC);
    let deep = Checkpoint::new("a", "n", nested(10_000));

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Expected {
        count: u64,
    }

    let cases: Vec<(&str, Expect, Case)> = vec![
        ("NUL in a state string", Expect::Invalid("state"), {
            let s = s.clone();
            Box::pin(async move {
                ok(s.save(&Checkpoint::new("a", "n", json!({"x": "a\u{0}b"})))
                    .await)
            })
        }),
        ("NUL in a state key", Expect::Invalid("state"), {
            let s = s.clone();
            Box::pin(async move {
                ok(s.save(&Checkpoint::new("a", "n", json!({"x\u{0}": 1})))
                    .await)
            })
        }),
        ("NUL in a metadata key", Expect::Invalid("metadata"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_metadata("k\0", 1))).await) })
        }),
        ("NUL in a metadata value", Expect::Invalid("metadata"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_metadata("k", "v\0"))).await) })
        }),
        ("NUL in an id", Expect::Invalid("id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_id("a\0b"))).await) })
        }),
        ("NUL in an execution id", Expect::Invalid("execution_id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&Checkpoint::new("a\0", "n", json!(1))).await) })
        }),
        ("NUL in a parent id", Expect::Invalid("parent_id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_parent("p\0"))).await) })
        }),
        ("an empty id", Expect::Invalid("id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_id(""))).await) })
        }),
        ("an over-long id", Expect::Invalid("id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_id("x".repeat(257)))).await) })
        }),
        ("an empty execution id", Expect::Invalid("execution_id"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&Checkpoint::new("", "n", json!(1))).await) })
        }),
        ("an over-long node name", Expect::Invalid("node_name"), {
            let s = s.clone();
            Box::pin(async move {
                ok(s.save(&Checkpoint::new("a", "n".repeat(300), json!(1)))
                    .await)
            })
        }),
        ("a negative version", Expect::Invalid("version"), {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_version(-1))).await) })
        }),
        (
            "version 0 for an id of another execution",
            Expect::Invalid("execution_id"),
            {
                let s = s.clone();
                Box::pin(async move { ok(s.save(&moved).await) })
            },
        ),
        ("an explicit version already taken", Expect::Conflict, {
            let s = s.clone();
            Box::pin(async move { ok(s.save(&cp(|c| c.with_version(1))).await) })
        }),
        ("a state over the size limit", Expect::Invalid("state"), {
            let s = s.clone();
            Box::pin(async move {
                ok(s.save(&Checkpoint::new("a", "n", json!("x".repeat(5000))))
                    .await)
            })
        }),
        (
            "JSON nested 10,000 levels deep",
            Expect::Invalid("state"),
            {
                let s = s.clone();
                Box::pin(async move {
                    let result = ok(s.save(&deep).await);
                    // Take the value apart iteratively: dropping it recursively could overflow.
                    let mut v = deep.state;
                    while let Value::Array(mut items) = v {
                        v = items.pop().unwrap_or(Value::Null);
                    }
                    result
                })
            },
        ),
        (
            "a timestamp finer than a microsecond",
            Expect::Invalid("timestamp"),
            {
                let s = s.clone();
                Box::pin(async move { ok(s.save(&sub_micro).await) })
            },
        ),
        ("a batch with one bad item", Expect::Invalid("node_name"), {
            let s = s.clone();
            Box::pin(async move {
                ok(s.save_batch(&[
                    Checkpoint::new("a", "ok", json!(1)),
                    Checkpoint::new("a", "", json!(2)),
                ])
                .await)
            })
        }),
        ("a page of 0 items", Expect::Invalid("limit"), {
            let s = s.clone();
            Box::pin(async move { ok(s.list_page(&ListQuery::new("a").limit(0)).await) })
        }),
        (
            "a retention policy without a rule",
            Expect::Invalid("retention"),
            {
                let s = s.clone();
                Box::pin(async move { ok(s.prune(&RetentionPolicy::default()).await) })
            },
        ),
        ("a fork into an execution that exists", Expect::Conflict, {
            let s = s.clone();
            let id = a1.id.clone();
            Box::pin(async move { ok(s.fork(&id, "b").await) })
        }),
        (
            "an injection attempt in the table name",
            Expect::Invalid("table"),
            {
                let url = url.clone();
                Box::pin(async move {
                    ok(PostgresStore::connect(
                        PostgresOptions::new(&url)?.table("checkpoints; DROP TABLE checkpoints"),
                    )
                    .await)
                })
            },
        ),
        (
            "an injection attempt in the schema name",
            Expect::Invalid("schema"),
            {
                let url = url.clone();
                Box::pin(async move {
                    ok(PostgresStore::connect(
                        PostgresOptions::new(&url)?.schema("x\"; DROP SCHEMA public CASCADE; --"),
                    )
                    .await)
                })
            },
        ),
        (
            "a malformed connection string",
            Expect::Invalid("connection_string"),
            { Box::pin(async move { ok(PostgresOptions::new("postgres://host:notaport/db")) }) },
        ),
        (
            "a malformed pool parameter",
            Expect::Invalid("pool_max_conns"),
            {
                Box::pin(
                    async move { ok(PostgresOptions::new("postgres://h/db?pool_max_conns=lots")) },
                )
            },
        ),
        (
            "a malformed lifetime parameter",
            Expect::Invalid("pool_max_conn_lifetime"),
            {
                Box::pin(async move {
                    ok(PostgresOptions::new(
                        "postgres://h/db?pool_max_conn_lifetime=soon",
                    ))
                })
            },
        ),
        (
            "a wrong password",
            Expect::Sqlstate(SqlState::INVALID_PASSWORD),
            {
                let url = url.replace("postgres:postgres@", "postgres:wrong@");
                Box::pin(
                    async move { ok(PostgresStore::connect(PostgresOptions::new(&url)?).await) },
                )
            },
        ),
        ("an unreachable host", Expect::Unavailable, {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Box::pin(async move {
                let started = Instant::now();
                let options = PostgresOptions::new(&format!(
                    "host=127.0.0.1 port={port} user=u connect_timeout=2"
                ))?;
                let result = ok(PostgresStore::connect(options).await);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "within the connect timeout"
                );
                result
            })
        }),
        (
            "a database without the table and auto_migrate off",
            Expect::Schema(|e| matches!(e, SchemaError::Outdated { found: 0, .. })),
            {
                let url = url.clone();
                Box::pin(async move {
                    let options = PostgresOptions::new(&url)?
                        .schema(support::unique_schema("empty"))
                        .auto_migrate(false);
                    ok(PostgresStore::connect(options).await)
                })
            },
        ),
        (
            "a role without DDL rights",
            Expect::Schema(|e| matches!(e, SchemaError::Privilege { .. })),
            {
                let url = url.clone();
                Box::pin(async move {
                    let role = format!("ro_{}", support::unique_schema("r").to_lowercase());
                    support::client()
                        .await
                        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
                        .await
                        .unwrap();
                    let url = url.replace("postgres:postgres@", &format!("{role}:pw@"));
                    ok(PostgresStore::connect(
                        PostgresOptions::new(&url)?.schema(support::unique_schema("t")),
                    )
                    .await)
                })
            },
        ),
        (
            "a schema version newer than the code",
            Expect::Schema(|e| matches!(e, SchemaError::TooNew { .. })),
            {
                let url = url.clone();
                Box::pin(async move {
                    let newer = support::options().await;
                    let schema = newer.table_name()?.schema().unwrap_or("").to_owned();
                    PostgresStore::connect(newer).await?;
                    support::client().await.batch_execute(&format!(
                    "INSERT INTO \"{schema}\".checkpoints_migrations (version, description, checksum) VALUES (999, 'future', 'x')"
                )).await.unwrap();
                    ok(PostgresStore::connect(PostgresOptions::new(&url)?.schema(schema)).await)
                })
            },
        ),
        (
            "a stored state that is not what state_as expects",
            Expect::Serialization,
            {
                let s = s.clone();
                Box::pin(async move { ok(s.load("corrupt").await?.state_as::<Expected>()) })
            },
        ),
    ];

    assert!(cases.len() >= 25, "{} cases", cases.len());
    let count = cases.len();
    for (name, expect, case) in cases {
        match case.await {
            Ok(()) => panic!("{name}: accepted"),
            Err(err) => expect.check(name, &err),
        }
        assert_eq!(
            digest(&store).await,
            before,
            "{name}: something stored changed"
        );
    }
    println!("{count} bad inputs, each a typed error, nothing stored changed (schema {schema})");
}
