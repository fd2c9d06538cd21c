//! Unit tests of the store over the scripted mock pool: which statement runs, what is bound,
//! and how every failure maps into the core error.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use time::macros::datetime;
use tokio_postgres::error::SqlState;

use super::*;
use crate::mock::{MockPool, Reply};
use crate::{Cell, RoutedSaves, SchemaError, SCHEMA_VERSION};

pub(crate) const INDEX: &str = "checkpoints_execution_version_key";

/// Options without retries, so each scripted reply answers exactly one call; the retry tests
/// turn them on.
pub(crate) fn options() -> PostgresOptions {
    PostgresOptions::new("host=localhost user=u")
        .expect("valid")
        .auto_migrate(false)
        .retry(RetryPolicy::disabled())
        .state_encoding(StateEncoding::Jsonb)
}

/// A store over `pool`, past the schema check that `with_pool` runs.
async fn store_on(pool: &MockPool) -> PostgresStore {
    store_with(pool, options()).await
}

pub(crate) async fn store_with(pool: &MockPool, options: PostgresOptions) -> PostgresStore {
    current_schema(pool, options.table_name().expect("valid name").layout());
    let store = PostgresStore::with_pool(pool.clone(), &options)
        .await
        .expect("schema is current");
    pool.clear_calls();
    store
}

/// The replies of a current schema of `layout`: the migrations table exists, its version,
/// and every step's checksum.
fn current_schema(pool: &MockPool, layout: TableLayout) {
    let checksums: Vec<Row> = schema::tests_support::checksums(layout)
        .into_iter()
        .map(|(v, c)| Row(vec![Cell::Int(v.into()), Cell::Text(c)]))
        .collect();
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Bool(true)])]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(
            SCHEMA_VERSION.into(),
        )])]))
        .reply(Reply::Rows(checksums));
}

pub(crate) fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .min_delay(std::time::Duration::from_millis(1))
        .max_delay(std::time::Duration::from_millis(2))
}

pub(crate) fn unique_violation(constraint: &str) -> Reply {
    Reply::Fail(DbError::server(
        SqlState::UNIQUE_VIOLATION,
        Some(constraint),
        "duplicate key value violates unique constraint",
    ))
}

fn row_of(cp: &Checkpoint) -> Row {
    Row(vec![
        Cell::Text(cp.id.clone()),
        Cell::Text(cp.execution_id.clone()),
        Cell::Text(cp.node_name.clone()),
        Cell::Json(cp.state.clone()),
        Cell::Json(Value::Object(cp.metadata.clone())),
        Cell::Timestamp(cp.timestamp),
        Cell::Int(cp.version),
        cp.parent_id.clone().map_or(Cell::Null, Cell::Text),
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Bool(true),
    ])
}

fn sample() -> Checkpoint {
    Checkpoint::new("exec-1", "plan", json!({"k": "v"}))
        .with_id("cp-1")
        .with_parent("cp-0")
        .with_metadata("step", 3)
        .with_timestamp(datetime!(2024-05-06 07:08:09.123456 UTC))
}

#[tokio::test]
async fn save_binds_every_field_in_one_statement() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Int(4)])]));
    assert_eq!(store.save(&sample()).await.unwrap(), 4);
    let calls = pool.calls();
    assert_eq!(calls.len(), 1, "one round trip");
    assert!(calls[0].sql.contains("INSERT INTO \"checkpoints\""));
    assert!(calls[0].sql.contains("ON CONFLICT (id) DO NOTHING"));
    let p = &calls[0].params;
    assert_eq!(p[0], "\"cp-1\"");
    assert_eq!(p[1], "\"exec-1\"");
    assert_eq!(p[2], "\"plan\"");
    assert!(p[3].contains("\"k\""), "state bound as JSON: {}", p[3]);
    assert!(p[4].contains("step"), "metadata bound as JSON: {}", p[4]);
    assert!(p[5].contains("2024-05-06"), "{}", p[5]);
    assert_eq!(p[6], "0");
    assert_eq!(p[7], "Some(\"cp-0\")");
    assert_eq!(
        p[8..],
        ["None", "None", "None", "None", "None"],
        "no payload, no base"
    );
}

#[tokio::test]
async fn append_that_loses_a_race_takes_the_next_version_in_the_same_call() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(unique_violation(INDEX))
        .reply(unique_violation(INDEX))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(7)])]));
    assert_eq!(store.save(&sample()).await.unwrap(), 7);
    assert_eq!(pool.calls().len(), 3);
}

/// A store of the distributed layout over `pool`, past the checks `with_pool` runs, and its
/// routed saves.
async fn distributed_store(pool: &MockPool) -> (PostgresStore, RoutedSaves) {
    let options = options().table_layout(TableLayout::Distributed);
    current_schema(pool, TableLayout::Distributed);
    // The names of the shards' constraints, read once at connect (none here).
    pool.reply(Reply::Rows(vec![]));
    let store = PostgresStore::with_pool(pool.clone(), &options)
        .await
        .expect("schema is current");
    pool.clear_calls();
    let routed = store
        .sql
        .routed
        .clone()
        .expect("the distributed layout routes its saves");
    (store, routed)
}

/// A batch on the distributed layout saves item after item in one transaction, each with the
/// routed statement first and the general one only where that stores nothing (here the
/// execution's first checkpoint).
#[tokio::test]
async fn distributed_batches_try_the_routed_statement_first() {
    let pool = MockPool::default();
    let (store, routed) = distributed_store(&pool).await;
    let items = [
        Checkpoint::new("e", "a", json!(1)),
        Checkpoint::new("e", "b", json!(2)),
    ];
    pool.reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(1)])]))
        .reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(2)])]));
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![1, 2]);
    let sql: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(
        sql,
        [
            "BEGIN",
            &store.sql.lock_row.text,
            &routed.save.text,
            &store.sql.save.text,
            &store.sql.lock_row.text,
            &routed.save.text,
            "COMMIT",
        ]
    );
}

/// On the distributed layout a save into an execution with rows is the routed statement
/// alone; where that stores nothing (the execution's first save, among other causes), the
/// general statement follows with the same parameters; a lost race is retried from the routed
/// statement, as on the general one.
#[tokio::test]
async fn distributed_saves_try_the_routed_statement_first() {
    let pool = MockPool::default();
    let (store, routed) = distributed_store(&pool).await;

    pool.reply(Reply::Rows(vec![Row(vec![Cell::Int(5)])]));
    assert_eq!(store.save(&sample()).await.unwrap(), 5);
    let calls = pool.calls();
    assert_eq!(calls.len(), 1, "one round trip");
    assert_eq!(calls[0].sql, routed.save.text);

    pool.clear_calls();
    pool.reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(1)])]));
    assert_eq!(store.save(&sample().with_id("cp-2")).await.unwrap(), 1);
    let calls = pool.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].sql, routed.save.text);
    assert_eq!(calls[1].sql, store.sql.save.text);
    assert_eq!(calls[0].params, calls[1].params);

    pool.clear_calls();
    pool.reply(unique_violation(INDEX))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(7)])]));
    assert_eq!(store.save(&sample().with_id("cp-3")).await.unwrap(), 7);
    let calls = pool.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.sql == routed.save.text));
}

#[tokio::test]
async fn explicit_version_taken_is_a_conflict() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(unique_violation(INDEX));
    let err = store.save(&sample().with_version(2)).await.unwrap_err();
    match err {
        Error::Conflict {
            execution_id,
            version,
        } => assert_eq!((execution_id.as_str(), version), ("exec-1", 2)),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(pool.calls().len(), 1, "a conflict is never retried");
}

#[tokio::test]
async fn unique_violation_of_another_index_is_not_a_conflict() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(unique_violation("some_other_index"));
    let err = store.save(&sample().with_version(2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_existing_id_is_decided_by_the_careful_path() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    // The insert meets the id; the careful path finds it in another execution.
    pool.reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![
            Cell::Text("other".into()),
            Cell::Int(1),
            Cell::Null,
        ])]));
    let err = store.save(&sample()).await.unwrap_err();
    assert!(err.is_invalid_field("execution_id"), "{err}");
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(calls[1], "BEGIN");
    assert!(calls[2].ends_with("FOR UPDATE"), "{}", calls[2]);
    assert_eq!(calls.last().map(String::as_str), Some("ROLLBACK"));

    // In the same execution, the rows built on it become snapshots before it is replaced.
    pool.clear_calls();
    pool.reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![
            Cell::Text("exec-1".into()),
            Cell::Int(2),
            Cell::Int(77),
        ])]))
        .reply(Reply::Rows(vec![])) // no dependents
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(2)])]));
    assert_eq!(store.save(&sample()).await.unwrap(), 2);
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert!(
        calls[3].contains("base_version = $2 FOR UPDATE"),
        "{}",
        calls[3]
    );
    assert!(calls[4].contains("DO UPDATE"), "{}", calls[4]);
    assert_eq!(calls.last().map(String::as_str), Some("COMMIT"));
}

#[tokio::test]
async fn lost_connection_is_unavailable_and_retryable() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(Reply::Fail(DbError::connection("connection reset")));
    let err = store.load("x").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());

    pool.reply(Reply::Fail(DbError::server(
        SqlState::ADMIN_SHUTDOWN,
        None,
        "terminating connection due to administrator command",
    )));
    assert!(store.latest("e").await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn invalid_input_sends_nothing() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    assert!(store.save(&sample().with_id("")).await.is_err());
    assert!(store.load("a\0b").await.is_err());
    assert!(store
        .list_page(&ListQuery::new("e").limit(0))
        .await
        .is_err());
    assert!(store.prune(&RetentionPolicy::default()).await.is_err());
    assert!(store.save_batch(&[sample(), sample()]).await.is_err());
    assert!(pool.calls().is_empty(), "{:?}", pool.calls());
}

#[tokio::test]
async fn load_decodes_rows_and_reports_absence() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let mut cp = sample().with_version(3);
    pool.reply(Reply::Rows(vec![row_of(&cp)]));
    assert_eq!(store.load("cp-1").await.unwrap(), cp);

    // Rows written by the reference store have NULL metadata.
    cp.metadata.clear();
    let mut row = row_of(&cp);
    row.0[4] = Cell::Null;
    pool.reply(Reply::Rows(vec![row]));
    assert_eq!(store.load("cp-1").await.unwrap(), cp);

    pool.reply(Reply::Rows(vec![]));
    assert!(matches!(
        store.load("gone").await,
        Err(Error::NotFound { id }) if id == "gone"
    ));
}

#[tokio::test]
async fn corrupt_rows_are_backend_errors() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let mut row = row_of(&sample());
    row.0[4] = Cell::Json(json!([1, 2]));
    pool.reply(Reply::Rows(vec![row]));
    let err = store.load("cp-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );

    let mut row = row_of(&sample());
    row.0[6] = Cell::Text("not a number".into());
    pool.reply(Reply::Rows(vec![row]));
    assert!(store.load("cp-1").await.is_err());
}

#[tokio::test]
async fn pages_bind_inclusive_bounds_and_fetch_one_extra() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let rows: Vec<Row> = (4..=6)
        .map(|v| row_of(&sample().with_id(format!("c{v}")).with_version(v)))
        .collect();
    pool.reply(Reply::Rows(rows));
    let page = store
        .list_page(&ListQuery::new("exec-1").after(3).limit(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_cursor, Some(5));
    let call = &pool.calls()[0];
    assert!(call.sql.contains("ORDER BY version ASC"));
    assert_eq!(call.params[1], "4");
    assert_eq!(call.params[2], i64::MAX.to_string());
    assert_eq!(call.params[3], "None");
    assert_eq!(
        call.params[4], "None",
        "no metadata filter is bound as NULL"
    );
    assert_eq!(call.params[5], "3");

    pool.reply(Reply::Rows(vec![]));
    store
        .list_page(
            &ListQuery::new("exec-1")
                .before(10)
                .descending()
                .node("plan")
                .metadata_eq("step", 3),
        )
        .await
        .unwrap();
    let call = &pool.calls()[1];
    assert!(call.sql.contains("ORDER BY version DESC"));
    assert_eq!(call.params[1], i64::MIN.to_string());
    assert_eq!(call.params[2], "9");
    assert_eq!(call.params[3], "Some(\"plan\")");
    assert!(call.params[4].contains("step"), "{}", call.params[4]);
}

#[tokio::test]
async fn cursor_past_the_last_version_returns_an_empty_page_without_a_query() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let page = store
        .list_page(&ListQuery::new("e").after(i64::MAX))
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert!(pool.calls().is_empty());
}

#[tokio::test]
async fn prune_picks_the_statement_for_its_scope() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    // One execution: one statement. Every execution: the rows it keeps whose base it removes
    // (none here), then the delete.
    pool.reply(Reply::Affected(3))
        .reply(Reply::Rows(vec![]))
        .reply(Reply::Affected(5));
    let one = RetentionPolicy::keep_last(2).for_execution("exec-1");
    assert_eq!(store.prune(&one).await.unwrap(), 3);
    let all = RetentionPolicy::older_than(std::time::Duration::from_secs(60));
    assert_eq!(store.prune(&all).await.unwrap(), 5);
    let calls: Vec<_> = pool
        .calls()
        .into_iter()
        .filter(|c| c.sql.starts_with("DELETE"))
        .collect();
    assert!(calls[0].sql.contains("WHERE execution_id = $1"));
    assert_eq!(calls[0].params, vec!["\"exec-1\"", "2", "None"]);
    assert!(calls[1].sql.contains("PARTITION BY execution_id"));
    assert_eq!(calls[1].params[0], "0");
    assert!(
        calls[1].params[1].starts_with("Some("),
        "{}",
        calls[1].params[1]
    );
    assert!(calls.iter().all(|c| !c.sql.contains("set_config")));
}

#[tokio::test]
async fn a_lazy_prune_of_one_execution_is_one_statement_committed_unflushed() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    pool.reply(Reply::Affected(1));
    let policy = RetentionPolicy::keep_last(20)
        .for_execution("exec-1")
        .lazy_flush();
    assert_eq!(store.prune(&policy).await.unwrap(), 1);
    let calls = pool.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].sql.starts_with("DELETE"));
    assert!(calls[0]
        .sql
        .contains("set_config('synchronous_commit', 'off', true)"));
    assert_eq!(calls[0].params, vec!["\"exec-1\"", "20", "None"]);
}

#[tokio::test]
async fn a_prune_refused_by_a_delta_on_a_removed_row_rewrites_it_in_a_transaction() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let table = crate::schema::table::TableName::new(None, "checkpoints").unwrap();
    pool.reply(Reply::Fail(DbError::server(
        SqlState::FOREIGN_KEY_VIOLATION,
        Some(&table.base_key()),
        "update or delete violates foreign key constraint",
    )))
    // The careful path: no kept row built on a removed one any more, then the delete.
    .reply(Reply::Rows(vec![]))
    .reply(Reply::Affected(2));
    let policy = RetentionPolicy::keep_last(3)
        .for_execution("exec-1")
        .lazy_flush();
    assert_eq!(store.prune(&policy).await.unwrap(), 2);
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    let begin = calls
        .iter()
        .position(|c| c == "BEGIN")
        .expect("a transaction");
    assert_eq!(calls[begin + 1], "SET LOCAL synchronous_commit TO off");
    assert!(calls[begin + 2].starts_with("SELECT d.execution_id, d.id"));
    assert!(calls[begin + 3].starts_with("DELETE"));
    assert!(!calls[begin + 3].contains("set_config"));
    assert_eq!(calls.last().map(String::as_str), Some("COMMIT"));
}

/// After a prune with kept deltas to rewrite, the next prune of one execution goes straight to
/// the transaction; one that finds nothing to rewrite brings the one statement back.
#[tokio::test]
async fn a_prune_after_one_that_rewrote_skips_the_one_statement_until_none_does() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let policy = RetentionPolicy::keep_last(3).for_execution("exec-1");
    store.prunes_rewrite.store(true, Ordering::Relaxed);
    // Straight to the transaction: the rows to rewrite (none this time), then the delete.
    pool.reply(Reply::Rows(vec![])).reply(Reply::Affected(1));
    assert_eq!(store.prune(&policy).await.unwrap(), 1);
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(
        calls.first().map(String::as_str),
        Some("BEGIN"),
        "{calls:?}"
    );
    assert!(!store.prunes_rewrite.load(Ordering::Relaxed));
    // Nothing was rewritten: the next is one statement again.
    pool.reply(Reply::Affected(2));
    assert_eq!(store.prune(&policy).await.unwrap(), 2);
    let calls: Vec<String> = pool
        .calls()
        .into_iter()
        .map(|c| c.sql)
        .skip(calls.len())
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("DELETE"));
}

#[tokio::test]
async fn batch_is_one_lookup_and_one_atomic_insert() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let items = [
        Checkpoint::new("e", "a", json!(1)),
        Checkpoint::new("e", "b", json!(2)).with_version(9),
    ];
    pool.reply(Reply::Rows(vec![Row(vec![
        Cell::Null,
        Cell::Text("e".into()),
        Cell::Int(5),
    ])]))
    .reply(Reply::Affected(2));
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![6, 9]);
    let calls = pool.calls();
    let sql: Vec<&str> = calls.iter().map(|c| &c.sql[..c.sql.len().min(6)]).collect();
    assert_eq!(
        sql,
        ["SELECT", "INSERT"],
        "two round trips, the insert atomic on its own"
    );
    assert_eq!(calls[1].params[6], "[6, 9]", "planned versions are bound");
}

#[tokio::test]
async fn a_batch_of_appends_is_one_statement_and_keeps_input_order() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let items = [
        Checkpoint::new("e", "a", json!(1)),
        Checkpoint::new("f", "b", json!(2)),
        Checkpoint::new("e", "c", json!(3)),
    ];
    // Each execution's highest version before the batch, and the rows written.
    pool.reply(Reply::Rows(vec![
        Row(vec![Cell::Text("f".into()), Cell::Int(0), Cell::Int(3)]),
        Row(vec![Cell::Text("e".into()), Cell::Int(3), Cell::Int(3)]),
    ]));
    assert_eq!(store.save_batch(&items).await.unwrap(), vec![4, 1, 5]);
    assert_eq!(pool.calls().len(), 1, "one round trip");
    assert!(pool.calls()[0].sql.contains("WITH ORDINALITY"));
}

#[tokio::test]
async fn an_append_batch_meeting_an_existing_id_falls_back_to_the_plan() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let items = [Checkpoint::new("e", "a", json!(1))];
    pool.reply(Reply::Fail(DbError::server(
        SqlState::UNIQUE_VIOLATION,
        Some("checkpoints_pkey"),
        "duplicate key value violates unique constraint",
    )))
    .reply(Reply::Rows(vec![
        Row(vec![
            Cell::Text(items[0].id.clone()),
            Cell::Text("e".into()),
            Cell::Int(3),
        ]),
        Row(vec![Cell::Null, Cell::Text("e".into()), Cell::Int(3)]),
    ]))
    // The replay: the row is locked, nothing is built on it, it is replaced.
    .reply(Reply::Rows(vec![Row(vec![
        Cell::Text("e".into()),
        Cell::Int(3),
        Cell::Null,
    ])]))
    .reply(Reply::Rows(vec![]))
    .reply(Reply::Rows(vec![Row(vec![Cell::Int(3)])]));
    assert_eq!(
        store.save_batch(&items).await.unwrap(),
        vec![3],
        "a retry keeps its version"
    );
    let sql: Vec<String> = pool
        .calls()
        .into_iter()
        .map(|c| c.sql.chars().take(6).collect())
        .collect();
    assert_eq!(
        sql,
        ["WITH i", "SELECT", "BEGIN", "SELECT", "SELECT", "INSERT", "COMMIT"]
    );
}

#[tokio::test]
async fn batch_conflict_is_named_by_the_replay_and_rolled_back() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let items = [
        Checkpoint::new("e", "a", json!(1)),
        Checkpoint::new("e", "b", json!(2)).with_version(2),
    ];
    pool.reply(Reply::Rows(vec![Row(vec![
        Cell::Null,
        Cell::Text("e".into()),
        Cell::Null,
    ])]))
    .reply(unique_violation(INDEX))
    // The replay: each item is a new id (the lock finds nothing), the second conflicts.
    .reply(Reply::Rows(vec![]))
    .reply(Reply::Rows(vec![Row(vec![Cell::Int(1)])]))
    .reply(Reply::Rows(vec![]))
    .reply(unique_violation(INDEX));
    let err = store.save_batch(&items).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { version: 2, .. }), "{err:?}");
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(
        calls.iter().filter(|s| *s == "BEGIN").count(),
        1,
        "only the replay"
    );
    assert_eq!(calls.iter().filter(|s| *s == "ROLLBACK").count(), 1);
    assert!(!calls.iter().any(|s| s == "COMMIT"));
}

#[tokio::test]
async fn batch_failure_mid_transaction_rolls_back_and_maps_the_error() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    // The planned insert names an id of another execution: the replay runs, and fails.
    pool.reply(Reply::Rows(vec![Row(vec![
        Cell::Null,
        Cell::Text("e".into()),
        Cell::Null,
    ])]))
    .reply(Reply::Fail(DbError::server(
        SqlState::NOT_NULL_VIOLATION,
        None,
        "null value in column \"version\"",
    )))
    .reply(Reply::Fail(DbError::server(
        SqlState::T_R_DEADLOCK_DETECTED,
        None,
        "deadlock detected",
    )));
    let err = store
        .save_batch(&[Checkpoint::new("e", "a", json!(1)).with_version(1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(calls.last().map(String::as_str), Some("ROLLBACK"));
}

#[tokio::test]
async fn outdated_schema_is_refused_when_auto_migrate_is_off() {
    let pool = MockPool::default();
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Bool(false)])]));
    let err = PostgresStore::with_pool(pool.clone(), &options())
        .await
        .unwrap_err();
    let source = SchemaError::of(&err);
    assert_eq!(
        source,
        Some(&SchemaError::Outdated {
            found: 0,
            expected: SCHEMA_VERSION
        })
    );

    let pool = MockPool::default();
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Bool(true)])]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(99)])]));
    let err = PostgresStore::with_pool(pool, &options())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn migration_runs_under_the_advisory_lock_in_one_transaction() {
    let pool = MockPool::default();
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Bool(false)])])) // no migrations table yet
        .reply(Reply::Affected(1)) // the advisory lock
        .reply(Reply::Rows(vec![])) // no migration applied yet
        .reply(Reply::Rows(vec![Row(vec![Cell::Bool(false)])])) // no table to adopt
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1))
        .reply(Reply::Affected(1));
    let store = PostgresStore::with_pool(pool.clone(), &options().auto_migrate(true))
        .await
        .unwrap();
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert!(calls[0].contains("pg_class"), "a read-only check first");
    assert_eq!(calls[1], "BEGIN");
    assert!(calls[2].contains("pg_advisory_xact_lock"));
    assert_eq!(calls.last().map(String::as_str), Some("COMMIT"));
    assert!(calls
        .iter()
        .any(|s| s.contains("CREATE TABLE IF NOT EXISTS \"checkpoints\"")));
    assert_eq!(store.table().table(), "checkpoints");
    let report = store.migration_report().expect("connect migrated");
    assert_eq!(report.applied, vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(!report.adopted_reference_table);
}

#[tokio::test]
async fn fork_is_one_statement_and_explains_an_empty_result() {
    let pool = MockPool::default();
    let store = store_on(&pool).await;
    let copy = sample().with_version(1);
    pool.reply(Reply::Rows(vec![row_of(&copy)]));
    assert_eq!(store.fork("cp-0", "exec-1").await.unwrap(), copy);
    assert_eq!(pool.calls().len(), 1);
    assert_eq!(pool.calls()[0].params[0], "\"cp-0\"");
    assert_eq!(pool.calls()[0].params[2], "\"exec-1\"");

    pool.reply(Reply::Rows(vec![])).reply(Reply::Rows(vec![]));
    assert!(matches!(
        store.fork("gone", "x").await,
        Err(Error::NotFound { .. })
    ));

    // The source holds its whole state, so the target must be taken.
    pool.reply(Reply::Rows(vec![]))
        .reply(Reply::Rows(vec![Row(vec![Cell::Bool(false)])]));
    assert!(matches!(
        store.fork("cp-0", "taken").await,
        Err(Error::Conflict { version: 1, .. })
    ));

    pool.reply(unique_violation(INDEX));
    assert!(matches!(
        store.fork("cp-0", "raced").await,
        Err(Error::Conflict { version: 1, .. })
    ));
}

#[tokio::test]
async fn transient_failures_of_idempotent_operations_are_retried() {
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(fast_retries())).await;
    pool.reply(Reply::Fail(DbError::connection("reset by peer")))
        .reply(Reply::Rows(vec![Row(vec![Cell::Int(1)])]));
    assert_eq!(store.save(&sample()).await.unwrap(), 1);
    assert_eq!(pool.calls().len(), 2, "the same save, by id, sent twice");

    pool.clear_calls();
    pool.reply(Reply::Fail(DbError::server(
        SqlState::ADMIN_SHUTDOWN,
        None,
        "terminating",
    )))
    .reply(Reply::Fail(DbError::server(
        SqlState::CANNOT_CONNECT_NOW,
        None,
        "starting",
    )))
    .reply(Reply::Affected(2));
    assert_eq!(store.clear("exec-1").await.unwrap(), 2);
    assert_eq!(pool.calls().len(), 3);
}

/// Every read goes through the retry policy, as `docs/reliability.md` says: pages and the
/// listing of executions too.
#[tokio::test]
async fn every_read_rides_out_a_transient_failure() {
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(fast_retries())).await;
    let reset = || Reply::Fail(DbError::connection("reset by peer"));

    pool.reply(reset()).reply(Reply::Rows(Vec::new()));
    let page = store
        .list_page(&ListQuery::new("e").limit(10))
        .await
        .unwrap();
    assert!(page.items.is_empty());
    assert_eq!(
        pool.calls().len(),
        2,
        "list_page: the same page asked twice"
    );

    pool.clear_calls();
    pool.reply(reset()).reply(Reply::Rows(Vec::new()));
    let executions = store
        .list_executions(&ExecutionQuery::new(10))
        .await
        .unwrap();
    assert!(executions.is_empty());
    assert_eq!(pool.calls().len(), 2, "list_executions: asked twice");

    pool.clear_calls();
    pool.reply(reset()).reply(Reply::Rows(Vec::new()));
    assert!(store.list("e").await.unwrap().is_empty());
    assert_eq!(pool.calls().len(), 2, "list: asked twice");
}

#[tokio::test]
async fn a_batch_that_deadlocks_is_retried() {
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(fast_retries())).await;
    let item = Checkpoint::new("e", "a", json!(1));
    pool.reply(Reply::Fail(DbError::server(
        SqlState::T_R_DEADLOCK_DETECTED,
        None,
        "deadlock",
    )))
    .reply(Reply::Rows(vec![Row(vec![
        Cell::Text("e".into()),
        Cell::Int(0),
        Cell::Int(1),
    ])]));
    let versions = store.save_batch(std::slice::from_ref(&item)).await.unwrap();
    assert_eq!(versions, vec![1]);
    let calls: Vec<String> = pool
        .calls()
        .into_iter()
        .map(|c| c.sql[..6].to_owned())
        .collect();
    assert_eq!(
        calls,
        ["WITH i", "WITH i"],
        "the failed statement is tried again"
    );
}

#[tokio::test]
async fn final_failures_and_forks_are_not_retried() {
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(fast_retries())).await;
    pool.reply(Reply::Fail(DbError::server(
        SqlState::INSUFFICIENT_PRIVILEGE,
        None,
        "denied",
    )));
    assert!(store.load("x").await.is_err());
    assert_eq!(pool.calls().len(), 1);

    pool.clear_calls();
    pool.reply(Reply::Fail(DbError::connection("reset")));
    assert!(store.fork("cp-0", "new").await.unwrap_err().is_retryable());
    assert_eq!(
        pool.calls().len(),
        1,
        "a fork makes a new id each time: the caller decides"
    );
}

#[tokio::test]
async fn retries_can_be_turned_off() {
    let pool = MockPool::default();
    let store = store_with(&pool, options().retry(RetryPolicy::disabled())).await;
    pool.reply(Reply::Fail(DbError::connection("reset")));
    let err = store.latest("e").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(pool.calls().len(), 1);
}

#[tokio::test]
async fn a_current_schema_needs_no_lock_and_no_ddl() {
    let pool = MockPool::default();
    current_schema(&pool, TableLayout::Plain);
    PostgresStore::with_pool(pool.clone(), &options().auto_migrate(true))
        .await
        .unwrap();
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|s| s.starts_with("SELECT")), "{calls:?}");
}

#[tokio::test]
async fn a_migration_refused_for_lack_of_rights_says_what_to_do() {
    let pool = MockPool::default();
    pool.reply(Reply::Rows(vec![Row(vec![Cell::Bool(false)])]))
        .reply(Reply::Fail(DbError::server(
            SqlState::INSUFFICIENT_PRIVILEGE,
            None,
            "permission denied for schema app",
        )));
    let err = PostgresStore::with_pool(pool.clone(), &options().auto_migrate(true))
        .await
        .unwrap_err();
    let source = SchemaError::of(&err);
    assert!(
        matches!(source, Some(SchemaError::Privilege { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("permission denied for schema app"),
        "{err}"
    );
    assert!(err.to_string().contains("PostgresStore::migrate"), "{err}");
    assert_eq!(
        pool.calls().last().map(|c| c.sql.as_str()),
        Some("ROLLBACK")
    );
}
