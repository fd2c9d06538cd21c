//! Unit tests of group commit over the scripted mock pool: which statements a group sends, how
//! a failure reaches each of its saves, and what happens to saves whose writer is lost.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::error::SqlState;

use super::*;
use crate::mock::{MockPool, Reply};
use crate::store::tests::{fast_retries, options, store_with, unique_violation, INDEX};
use crate::{Cell, PostgresOptions, Row};
use checkpoint_core::{CheckpointStore, RetentionPolicy};
use std::sync::atomic::Ordering;

/// Every save through the group statement, so that a single save makes a group of one.
fn grouped() -> PostgresOptions {
    options().group_commit(GroupCommit::default().lone_saves_grouped(true))
}

/// Every save through the group statements, at most two in a group, so a test knows which
/// saves share one.
fn in_pairs() -> PostgresOptions {
    options().group_commit(GroupCommit::default().lone_saves_grouped(true).max_saves(2))
}

/// Each of `saves`, made at once, with its version and the moment its caller heard.
async fn answered(store: &PostgresStore, saves: &[Checkpoint]) -> Vec<(i64, std::time::Instant)> {
    futures_util::future::join_all(saves.iter().map(|cp| async {
        let version = store.save(cp).await.unwrap();
        (version, std::time::Instant::now())
    }))
    .await
}

fn stored(id: &str, version: i64) -> Reply {
    Reply::Rows(vec![Row(vec![
        Cell::Text(id.to_owned()),
        Cell::Int(version),
    ])])
}

fn version_row(version: i64) -> Reply {
    Reply::Rows(vec![Row(vec![Cell::Int(version)])])
}

fn append(id: &str, execution: &str) -> Checkpoint {
    Checkpoint::new(execution, "node", json!({"id": id})).with_id(id)
}

fn is_group(sql: &str) -> bool {
    sql.contains("unnest") && sql.contains("WITH ORDINALITY AS i(id")
}

#[tokio::test]
async fn a_save_alone_is_a_group_of_one_bound_column_by_column() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(stored("a", 1));
    assert_eq!(store.save(&append("a", "e")).await.unwrap(), 1);
    let calls = pool.calls();
    assert_eq!(calls.len(), 1, "one round trip");
    assert!(is_group(&calls[0].sql), "{}", calls[0].sql);
    assert_eq!(calls[0].params[0], "[\"a\"]");
    assert_eq!(calls[0].params[1], "[\"e\"]");
    assert_eq!(calls[0].params[6], "[0]", "an append");
    let stats = store.group_commit_stats().unwrap();
    assert_eq!((stats.groups(), stats.saves()), (1, 1));
}

#[tokio::test]
async fn a_transient_failure_sends_the_whole_group_again() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped().retry(fast_retries())).await;
    pool.reply(Reply::Fail(DbError::connection("reset by peer")))
        .reply(stored("a", 7));
    assert_eq!(store.save(&append("a", "e")).await.unwrap(), 7);
    let calls = pool.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| is_group(&c.sql)));
    assert_eq!(calls[0].params, calls[1].params, "the same group again");
}

#[tokio::test]
async fn a_failure_every_save_shares_reaches_each_save_of_the_group() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    // The first save leaves alone; the two that queue behind it form the second group.
    pool.reply(Reply::Fail(DbError::connection("server gone")))
        .reply(Reply::Fail(DbError::server(
            SqlState::UNDEFINED_TABLE,
            None,
            "relation does not exist",
        )));
    let saves = [append("a", "e"), append("b", "f"), append("c", "g")];
    let results = futures_util::future::join_all(saves.iter().map(|cp| store.save(cp))).await;
    assert!(
        matches!(&results[0], Err(Error::Unavailable { .. })),
        "{results:?}"
    );
    for result in &results[1..] {
        let err = result.as_ref().unwrap_err();
        let db = DbError::of(err).expect("the server's error, for each save");
        assert_eq!(db.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    }
    assert_eq!(
        pool.calls().len(),
        2,
        "one statement per group, no save alone"
    );
}

#[tokio::test]
async fn a_refused_group_makes_each_save_alone_in_arrival_order() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(stored("a", 1))
        .reply(unique_violation("checkpoints_pkey"))
        .reply(version_row(2))
        .reply(version_row(3));
    let saves = [append("a", "e"), append("b", "e"), append("c", "e")];
    let results = futures_util::future::join_all(saves.iter().map(|cp| store.save(cp))).await;
    let versions: Vec<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    let calls = pool.calls();
    assert_eq!(calls.len(), 4, "{calls:#?}");
    assert!(is_group(&calls[1].sql) && calls[1].params[0] == "[\"b\", \"c\"]");
    assert_eq!(calls[2].sql, store.sql.save.text);
    assert_eq!(
        (calls[2].params[0].as_str(), calls[3].params[0].as_str()),
        ("\"b\"", "\"c\""),
        "the saves of one execution one after another, in order"
    );
    assert_eq!(store.group_commit_stats().unwrap().split_groups(), 1);
}

#[tokio::test]
async fn the_next_group_waits_for_the_saves_of_a_refused_group_made_alone() {
    let pool = MockPool::default();
    let store = store_with(&pool, in_pairs()).await;
    // [a], then [b, c], refused: b alone is slow; then [d], which arrived after c.
    pool.reply(stored("a", 1))
        .reply(unique_violation("checkpoints_pkey"))
        .reply(Reply::After(
            Duration::from_millis(50),
            Box::new(version_row(2)),
        ))
        .reply(version_row(3))
        .reply(stored("d", 4));
    let saves = ["a", "b", "c", "d"].map(|id| append(id, "e"));
    let results = futures_util::future::join_all(saves.iter().map(|cp| store.save(cp))).await;
    let versions: Vec<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4], "arrival order");
    let calls = pool.calls();
    let order: Vec<(bool, &str)> = calls
        .iter()
        .map(|c| (is_group(&c.sql), c.params[0].as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            (true, "[\"a\"]"),
            (true, "[\"b\", \"c\"]"),
            (false, "\"b\""),
            (false, "\"c\""),
            (true, "[\"d\"]"),
        ],
        "the group of d after b and c alone"
    );
}

#[tokio::test]
async fn the_next_group_waits_for_a_save_the_group_did_not_report_back() {
    let pool = MockPool::default();
    let store = store_with(&pool, in_pairs()).await;
    // [a], then [b, c] with no row for c (as for a fenced save left out): c alone is slow;
    // then [d], which arrived after c.
    pool.reply(stored("a", 1))
        .reply(stored("b", 2))
        .reply(Reply::After(
            Duration::from_millis(50),
            Box::new(version_row(3)),
        ))
        .reply(stored("d", 4));
    let saves = ["a", "b", "c", "d"].map(|id| append(id, "e"));
    // Each save with the moment it was answered.
    let results = answered(&store, &saves).await;
    let versions: Vec<i64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    assert!(
        results[3].1 >= results[2].1,
        "d's group was written before c, made alone, was done"
    );
    let last = pool.calls().last().map(|c| c.params[0].clone());
    assert_eq!(last.as_deref(), Some("[\"d\"]"));
}

#[tokio::test]
async fn saves_of_one_execution_the_group_left_out_are_made_alone_in_arrival_order() {
    let pool = MockPool::default();
    let store = store_with(&pool, in_pairs()).await;
    // [a], then [b, c] of one execution with no row for either (as for fenced saves left
    // out): b alone is slow, and c, which arrived after it, must wait for it.
    pool.reply(stored("a", 1))
        .reply(Reply::Rows(Vec::new()))
        .reply(Reply::After(
            Duration::from_millis(50),
            Box::new(version_row(2)),
        ))
        .reply(version_row(3));
    let saves = ["a", "b", "c"].map(|id| append(id, "e"));
    let results = answered(&store, &saves).await;
    let versions: Vec<i64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert!(
        results[2].1 >= results[1].1,
        "c, made alone, was written before b, which arrived before it"
    );
}

#[tokio::test]
async fn a_group_of_appends_that_lost_a_race_is_numbered_again() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(unique_violation(INDEX)).reply(stored("a", 5));
    assert_eq!(store.save(&append("a", "e")).await.unwrap(), 5);
    let calls = pool.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| is_group(&c.sql)));
    let stats = store.group_commit_stats().unwrap();
    assert_eq!((stats.lost_races(), stats.split_groups()), (1, 0));
}

#[tokio::test]
async fn an_explicit_version_taken_in_a_group_is_a_conflict_for_that_save_only() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(stored("a", 1))
        .reply(unique_violation(INDEX))
        .reply(unique_violation(INDEX))
        .reply(version_row(1));
    let saves = [
        append("a", "e"),
        append("b", "e").with_version(1),
        append("c", "f"),
    ];
    let results = futures_util::future::join_all(saves.iter().map(|cp| store.save(cp))).await;
    assert_eq!(results[0].as_ref().unwrap(), &1);
    assert!(
        matches!(&results[1], Err(Error::Conflict { version: 1, .. })),
        "{results:?}"
    );
    assert_eq!(results[2].as_ref().unwrap(), &1);
}

#[tokio::test]
async fn an_append_after_an_explicit_version_of_its_execution_is_not_grouped() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(stored("a", 1))
        .reply(version_row(9))
        .reply(version_row(10));
    let saves = [
        append("a", "x"),
        append("b", "e").with_version(9),
        append("c", "e"),
    ];
    let results = futures_util::future::join_all(saves.iter().map(|cp| store.save(cp))).await;
    let versions: Vec<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(versions, vec![1, 9, 10]);
    let calls = pool.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[1..].iter().all(|c| c.sql == store.sql.save.text));
}

#[tokio::test]
async fn a_save_larger_than_a_group_goes_alone_at_once() {
    let pool = MockPool::default();
    let options = options().group_commit(
        GroupCommit::default()
            .lone_saves_grouped(true)
            .max_bytes(16),
    );
    let store = store_with(&pool, options).await;
    pool.reply(version_row(1));
    let big = Checkpoint::new("e", "node", json!({"text": "more than sixteen bytes"}));
    assert_eq!(store.save(&big).await.unwrap(), 1);
    assert_eq!(pool.calls()[0].sql, store.sql.save.text);
}

/// Makes `call` queue behind a writer lost with its runtime: the first save's writer runs on a
/// runtime of its own and never gets an answer, and that runtime is dropped once `queued` says
/// the call is in the queue. `then` answers what is then made alone. Returns the call's
/// outcome and the last statement sent, and checks that no writer is left counted.
fn behind_a_lost_writer<T, F>(
    then: Reply,
    call: impl FnOnce(PostgresStore) -> F,
    queued: fn(&Queue) -> bool,
) -> (Result<T>, String, PostgresStore)
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    let pool = MockPool::default();
    let other = tokio::runtime::Runtime::new().unwrap();
    let store = other.block_on(store_with(&pool, grouped()));
    pool.reply(Reply::Hang).reply(then);

    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = append("a", "e");
    let stuck = store.clone();
    doomed.spawn(async move { stuck.save(&first).await });
    doomed.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });

    let waiting = other.spawn(call(store.clone()));
    let committer = store.group.clone().unwrap();
    other.block_on(async {
        while !queued(&lock(&committer.queue)) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    drop(doomed);
    let outcome = other.block_on(waiting).unwrap();
    assert_eq!(
        lock(&committer.queue).in_flight,
        0,
        "no writer left counted"
    );
    let last = pool.calls().last().unwrap().sql.clone();
    (outcome, last, store)
}

#[test]
fn saves_queued_behind_a_writer_lost_with_its_runtime_are_made_alone() {
    let (version, last, store) = behind_a_lost_writer(
        version_row(2),
        |store| async move { store.save(&append("b", "e")).await },
        |queue| !queue.pending.is_empty(),
    );
    assert_eq!(version.unwrap(), 2, "made alone");
    assert_eq!(last, store.sql.save.text);
}

fn is_group_prune(sql: &str) -> bool {
    sql.contains("unnest($1::text[], $2::int8[], $3::timestamptz[]) AS p(execution_id")
}

fn removed(rows: &[(&str, i64)]) -> Reply {
    Reply::Rows(
        rows.iter()
            .map(|(execution, count)| {
                Row(vec![Cell::Text((*execution).to_owned()), Cell::Int(*count)])
            })
            .collect(),
    )
}

/// The delta key refusing a prune: a kept delta's base would go.
fn kept_delta_refusal() -> Reply {
    let table = crate::schema::table::TableName::new(None, "checkpoints").unwrap();
    Reply::Fail(DbError::server(
        SqlState::FOREIGN_KEY_VIOLATION,
        Some(&table.base_key()),
        "update or delete violates foreign key constraint",
    ))
}

/// Saves one append to "e", which leaves alone (version 1), and makes `policies` while it is
/// in flight, so that they queue behind it; the prunes' outcomes.
async fn save_then_prune(store: &PostgresStore, policies: &[RetentionPolicy]) -> Vec<Result<u64>> {
    let first = append("a", "e");
    let (saved, pruned) = tokio::join!(
        store.save(&first),
        futures_util::future::join_all(policies.iter().map(|p| store.prune(p)))
    );
    assert_eq!(saved.unwrap(), 1);
    pruned
}

#[tokio::test]
async fn a_lone_prune_goes_through_the_group_prune_statement_with_its_own_count() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(removed(&[("e", 4)])).reply(removed(&[]));
    let lazy = RetentionPolicy::keep_last(2)
        .for_execution("e")
        .lazy_flush();
    assert_eq!(store.prune(&lazy).await.unwrap(), 4);
    // An execution that lost nothing is not in the statement's rows: 0.
    let flushed = RetentionPolicy::keep_last(5).for_execution("f");
    assert_eq!(store.prune(&flushed).await.unwrap(), 0);
    let calls = pool.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| is_group_prune(&c.sql)), "{calls:?}");
    assert_eq!(calls[0].sql, store.sql.prune_executions_lazy.text);
    assert_eq!(calls[0].params, vec!["[\"e\"]", "[2]", "[None]"]);
    assert_eq!(calls[1].sql, store.sql.prune_executions.text);
    assert!(!calls[1].sql.contains("set_config"));
    assert_eq!(store.group_commit_stats().unwrap().grouped_prunes(), 2);
}

#[tokio::test]
async fn a_failure_every_prune_shares_reaches_each_prune_of_the_group() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    // The first save leaves alone; the prunes that queue behind it go in one statement.
    pool.reply(stored("a", 1))
        .reply(Reply::Fail(DbError::server(
            SqlState::UNDEFINED_TABLE,
            None,
            "relation does not exist",
        )));
    let pruned = save_then_prune(
        &store,
        &[
            RetentionPolicy::keep_last(1).for_execution("e"),
            RetentionPolicy::keep_last(2).for_execution("f"),
        ],
    )
    .await;
    for result in pruned {
        let err = result.unwrap_err();
        let db = DbError::of(&err).expect("the server's error");
        assert_eq!(db.code(), Some(&SqlState::UNDEFINED_TABLE));
    }
    let calls = pool.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(is_group_prune(&calls[1].sql));
    assert_eq!(calls[1].params[0], "[\"e\", \"f\"]");
    assert_eq!(calls[1].params[1], "[1, 2]");
}

#[tokio::test]
async fn prunes_refused_for_a_kept_delta_are_each_made_alone() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    pool.reply(kept_delta_refusal())
        // Alone: the one statement, refused again, then the careful transaction.
        .reply(kept_delta_refusal())
        .reply(Reply::Rows(vec![]))
        .reply(Reply::Affected(3));
    let policy = RetentionPolicy::keep_last(2).for_execution("e");
    assert_eq!(store.prune(&policy).await.unwrap(), 3);
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert!(is_group_prune(&calls[0]), "{calls:?}");
    assert_eq!(calls[1], store.sql.prune_execution.text);
    assert!(calls.contains(&"BEGIN".to_owned()), "{calls:?}");
    assert_eq!(calls.last().map(String::as_str), Some("COMMIT"));
    // The transaction found no kept delta left to rewrite: the next prune may join a group.
    assert!(!store.prunes_rewrite.load(Ordering::Relaxed));
}

#[tokio::test]
async fn the_next_group_waits_for_a_refused_prune_made_alone() {
    let pool = MockPool::default();
    let store = store_with(&pool, grouped()).await;
    // The save leaves first; the first prune of "e" is refused and made alone, slowly; the
    // second, which waited for the next group, goes after it.
    pool.reply(stored("a", 1))
        .reply(kept_delta_refusal())
        .reply(Reply::After(
            Duration::from_millis(50),
            Box::new(kept_delta_refusal()),
        ))
        .reply(Reply::Rows(vec![]))
        .reply(Reply::Affected(3))
        .reply(removed(&[("e", 1)]));
    let pruned = save_then_prune(
        &store,
        &[
            RetentionPolicy::keep_last(2).for_execution("e"),
            RetentionPolicy::keep_last(1).for_execution("e"),
        ],
    )
    .await;
    let counts: Vec<u64> = pruned.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(counts, vec![3, 1]);
    let calls: Vec<String> = pool.calls().into_iter().map(|c| c.sql).collect();
    assert!(is_group_prune(&calls[1]), "{calls:?}");
    assert_eq!(calls[2], store.sql.prune_execution.text);
    assert!(
        is_group_prune(calls.last().unwrap()),
        "the second prune's group last: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| is_group_prune(c)).count(),
        2,
        "{calls:?}"
    );
}

#[test]
fn prunes_queued_behind_a_writer_lost_with_its_runtime_are_made_alone() {
    let (removed, last, store) = behind_a_lost_writer(
        Reply::Affected(3),
        |store| async move {
            let policy = RetentionPolicy::keep_last(2).for_execution("e");
            store.prune(&policy).await
        },
        |queue| !queue.prunes.is_empty(),
    );
    assert_eq!(removed.unwrap(), 3, "made alone");
    assert_eq!(last, store.sql.prune_execution.text);
}
