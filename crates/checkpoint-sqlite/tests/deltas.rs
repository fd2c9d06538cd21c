//! Deltas on SQLite, looked at in the file itself: which rows hold deltas, that every operation
//! that removes, moves or replaces a base first turns the rows built on it into snapshots, that
//! a file of schema 2 migrates online and its rows read as before, and that a damaged chain is
//! an error, never another state.

use std::path::Path;

use checkpoint_core::{Checkpoint, CheckpointStore, Error, Fence, RetentionPolicy};
use checkpoint_sqlite::{SqliteError, SqliteOptions, SqliteStore};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A chat of `n` messages: each step adds one of about 1 KiB.
fn chat(n: usize) -> Value {
    let messages: Vec<String> = (0..n)
        .map(|i| format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(38)))
        .collect();
    json!({ "messages": messages, "step": n, "t": -0.0 })
}

async fn open(path: &Path, every: u32) -> SqliteStore {
    SqliteStore::open(
        SqliteOptions::file(path)
            .snapshot_every(every)
            .min_delta_bytes(0),
    )
    .await
    .expect("open")
}

/// `(version, base_version, depth, has a state hash)` of every row of `execution`.
fn rows(path: &Path, execution: &str) -> Vec<(i64, Option<i64>, i64, bool)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT version, base_version, depth, state_hash IS NOT NULL FROM checkpoints
             WHERE execution_id = ?1 ORDER BY version",
        )
        .unwrap();
    statement
        .query_map([execution], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Saves `n` steps of a chat on `execution`, the first with four messages (so each step's
/// delta is well under half the state); returns the checkpoints as saved.
async fn saved_chat(store: &SqliteStore, execution: &str, n: usize) -> Vec<Checkpoint> {
    let mut out = Vec::new();
    for step in 1..=n {
        let cp = Checkpoint::new(execution, "chat", chat(step + 3));
        let version = store.save(&cp).await.expect("save");
        out.push(cp.with_version(version));
    }
    out
}

/// Compares by the exact rule (`-0.0` is not `0.0`), not by `==`.
fn assert_same(got: &Checkpoint, want: &Checkpoint) {
    assert!(
        checkpoint_core::equal::same_checkpoint(got, want),
        "{} differs",
        want.id
    );
}

#[tokio::test]
async fn saves_on_one_execution_build_chains_that_end_at_snapshot_every() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path, 3).await;
    let saved = saved_chat(&store, "e", 7).await;
    assert_eq!(
        rows(&path, "e"),
        vec![
            (1, None, 0, true),
            (2, Some(1), 1, true),
            (3, Some(2), 2, true),
            (4, None, 0, true),
            (5, Some(4), 1, true),
            (6, Some(5), 2, true),
            (7, None, 0, true),
        ]
    );
    let listed = store.list("e").await.unwrap();
    for (got, want) in listed.iter().zip(&saved) {
        assert_same(got, want);
    }
    // Read back by a new store, with nothing remembered.
    drop(store);
    let fresh = open(&path, 3).await;
    for want in &saved {
        assert_same(&fresh.load(&want.id).await.unwrap(), want);
    }
    assert_same(&fresh.latest("e").await.unwrap().unwrap(), &saved[6]);
    assert!(fresh.verify(None).await.unwrap().damaged.is_empty());
}

#[tokio::test]
async fn whole_storage_writes_no_delta_and_small_states_stay_whole_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let whole = open(&path, 1).await;
    saved_chat(&whole, "whole", 4).await;
    assert!(rows(&path, "whole").iter().all(|r| r.1.is_none()));
    let default = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    for n in 0..3 {
        default
            .save(&Checkpoint::new("small", "n", json!({"n": n})))
            .await
            .unwrap();
    }
    assert!(rows(&path, "small").iter().all(|r| r.1.is_none()));
    saved_chat(&default, "large", 3).await;
    assert_eq!(
        rows(&path, "large").iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![None, Some(1), Some(2)]
    );
}

#[tokio::test]
async fn deleting_replacing_and_moving_a_base_turn_its_dependents_into_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path, 10).await;
    let saved = saved_chat(&store, "e", 6).await;
    // Delete version 2: version 3, a delta on it, becomes a snapshot of the same state.
    assert!(store.delete(&saved[1].id).await.unwrap());
    let after = rows(&path, "e");
    assert_eq!(after[1], (3, None, 0, true));
    assert_eq!(
        after[2],
        (4, Some(3), 3, true),
        "its own dependents stay deltas"
    );
    // Replace version 4 with another state: version 5 is rewritten.
    let replaced = Checkpoint {
        state: json!({"other": true}),
        ..saved[3].clone()
    };
    store.save(&replaced).await.unwrap();
    assert_eq!(rows(&path, "e")[3], (5, None, 0, true));
    // Move version 5 to version 9 (same id, explicit version): version 6 is rewritten.
    let moved = saved[4].clone().with_version(9);
    store.save(&moved).await.unwrap();
    let after = rows(&path, "e");
    assert!(after.contains(&(6, None, 0, true)), "{after:?}");
    let fresh = open(&path, 10).await;
    assert_same(&fresh.load(&saved[2].id).await.unwrap(), &saved[2]);
    assert_same(&fresh.load(&saved[5].id).await.unwrap(), &saved[5]);
    assert_same(
        &fresh.load(&replaced.id).await.unwrap(),
        &replaced.clone().with_version(4),
    );
    assert_same(&fresh.load(&moved.id).await.unwrap(), &moved);
    assert!(fresh.verify(Some("e")).await.unwrap().damaged.is_empty());
}

#[tokio::test]
async fn pruning_keeps_every_kept_state_whichever_bases_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path, 50).await;
    let a = saved_chat(&store, "a", 8).await;
    let b = saved_chat(&store, "b", 8).await;
    // One execution, after each save: versions 1 to 5 go, 6 (a delta on 5) is rewritten.
    let removed = store
        .prune(&RetentionPolicy::keep_last(3).for_execution("a"))
        .await
        .unwrap();
    assert_eq!(removed, 5);
    assert_eq!(rows(&path, "a")[0], (6, None, 0, true));
    // Every execution at once.
    let removed = store.prune(&RetentionPolicy::keep_last(2)).await.unwrap();
    assert_eq!(removed, 1 + 6);
    assert_eq!(rows(&path, "b")[0], (7, None, 0, true));
    let fresh = open(&path, 50).await;
    for want in a[6..].iter().chain(&b[6..]) {
        assert_same(&fresh.load(&want.id).await.unwrap(), want);
    }
    assert!(fresh.verify(None).await.unwrap().damaged.is_empty());
}

#[tokio::test]
async fn fenced_writes_and_forks_keep_the_chains_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path, 10).await;
    let lease = store
        .acquire("e", "me", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let fence: Fence = lease.fence();
    let mut saved = Vec::new();
    for step in 1..=5 {
        let cp = Checkpoint::new("e", "chat", chat(step + 3));
        let version = store.save_fenced(&fence, &cp).await.unwrap();
        saved.push(cp.with_version(version));
    }
    assert_eq!(rows(&path, "e")[4].1, Some(4), "fenced saves store deltas");
    assert!(store.delete_fenced(&fence, &saved[0].id).await.unwrap());
    store
        .prune_fenced(&fence, &RetentionPolicy::keep_last(2))
        .await
        .unwrap();
    let forked = store.fork(&saved[4].id, "f").await.unwrap();
    assert_eq!(rows(&path, "f"), vec![(1, None, 0, true)]);
    let fresh = open(&path, 10).await;
    assert_same(&fresh.load(&saved[3].id).await.unwrap(), &saved[3]);
    assert_same(&fresh.load(&saved[4].id).await.unwrap(), &saved[4]);
    assert_same(&fresh.latest("f").await.unwrap().unwrap(), &forked);
}

#[tokio::test]
async fn a_store_builds_on_the_state_another_store_changed_only_when_it_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let one = open(&path, 10).await;
    let other = open(&path, 10).await;
    let saved = saved_chat(&one, "e", 2).await;
    // Another process replaces the row `one` would build on.
    let replaced = Checkpoint {
        state: chat(9),
        ..saved[1].clone()
    };
    other.save(&replaced).await.unwrap();
    let next = Checkpoint::new("e", "chat", chat(6));
    let version = one.save(&next).await.unwrap();
    assert_eq!(
        rows(&path, "e")[2],
        (3, None, 0, true),
        "a snapshot, not a delta on a state that is gone"
    );
    assert_same(
        &other.load(&next.id).await.unwrap(),
        &next.clone().with_version(version),
    );
    // `one` remembers version 3 as it saved it; once another process replaces that row, the
    // state it remembers is not the row's and is never served for it.
    let again = Checkpoint {
        state: chat(1),
        ..next.with_version(version)
    };
    other.save(&again).await.unwrap();
    assert_same(&one.latest("e").await.unwrap().unwrap(), &again);
    assert_same(&one.load(&again.id).await.unwrap(), &again);
}

#[tokio::test]
async fn a_file_of_schema_2_migrates_online_and_its_rows_read_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE checkpoint_migrations (version INTEGER PRIMARY KEY NOT NULL,
                 name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;
             INSERT INTO checkpoint_migrations VALUES (1, 'checkpoints table', 'then'),
                 (2, 'leases table', 'then');
             CREATE TABLE checkpoints (
                 id TEXT PRIMARY KEY NOT NULL, execution_id TEXT NOT NULL,
                 version INTEGER NOT NULL CHECK (version > 0), node_name TEXT NOT NULL,
                 parent_id TEXT, timestamp_us INTEGER NOT NULL, metadata TEXT NOT NULL,
                 state BLOB NOT NULL) STRICT;
             CREATE UNIQUE INDEX checkpoints_execution_version
                 ON checkpoints (execution_id, version);
             CREATE TABLE checkpoint_leases (execution_id TEXT PRIMARY KEY NOT NULL,
                 owner TEXT NOT NULL, token INTEGER NOT NULL CHECK (token > 0),
                 expires_us INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        // Schema 2's stored form: a format byte (0: JSON text), then the text.
        let mut plain = vec![0u8];
        plain.extend_from_slice(br#"{"old": -0.0, "n": 1}"#);
        conn.execute(
            "INSERT INTO checkpoints VALUES ('old-1', 'e', 1, 'n', NULL, 0, '{}', ?1)",
            [plain],
        )
        .unwrap();
    }
    let store = open(&path, 4).await;
    assert_eq!(store.migrated(), &[3]);
    let old = store.load("old-1").await.unwrap();
    assert!(checkpoint_core::equal::same_state(
        &old.state,
        &json!({"old": -0.0, "n": 1})
    ));
    // The old row is never a base: the next save is a snapshot, then deltas follow.
    saved_chat(&store, "e", 2).await;
    assert_eq!(
        rows(&path, "e"),
        vec![
            (1, None, 0, false),
            (2, None, 0, true),
            (3, Some(2), 1, true)
        ]
    );
    assert_eq!(store.verify(None).await.unwrap().checkpoints, 3);
}

#[tokio::test]
async fn a_damaged_base_is_an_error_for_its_dependents_and_verify_names_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = open(&path, 10).await;
    let saved = saved_chat(&store, "e", 4).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE checkpoints SET state = x'0102030405' WHERE execution_id = 'e' AND version = 2",
        [],
    )
    .unwrap();
    drop(conn);
    let fresh = open(&path, 10).await;
    for damaged in &saved[1..] {
        let err = fresh.load(&damaged.id).await.unwrap_err();
        assert!(
            matches!(SqliteError::of(&err), Some(SqliteError::Corrupt { id, .. }) if *id == damaged.id),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
    assert_same(&fresh.load(&saved[0].id).await.unwrap(), &saved[0]);
    let err = fresh.latest("e").await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    let report = fresh.verify(Some("e")).await.unwrap();
    let versions: Vec<i64> = report.damaged.iter().map(|d| d.version).collect();
    assert_eq!(versions, vec![2, 3, 4], "{report:?}");
    assert!(report.damaged[1].reason.contains("version 2"), "{report:?}");
    // Deleting the damaged base needs the state of the delta built on it: refused, and
    // nothing is removed.
    let err = fresh.delete(&saved[1].id).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert_eq!(rows(&path, "e").len(), 4, "nothing removed");
    // A link that names a state the base no longer holds.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE checkpoints SET base_hash = base_hash + 1 WHERE execution_id = 'e' AND version = 4",
        [],
    )
    .unwrap();
    let report = fresh.verify(Some("e")).await.unwrap();
    assert!(report
        .damaged
        .iter()
        .any(|d| d.version == 4 && d.reason.contains("another state")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Generated states saved in turn on one execution, every one a delta where it can be:
    /// each reads back exactly (numbers, signed zeros, key order), through the cache and from
    /// a store that remembers nothing; sealed or not.
    #[test]
    fn generated_states_read_back_exactly_through_their_chains(
        states in prop::collection::vec(checkpoint_core::conformance::strategies::json_value(), 1..12),
        every in 2u32..6,
        sealed in any::<bool>(),
    ) {
        let open = |path: std::path::PathBuf| async move {
            let options = SqliteOptions::file(path).snapshot_every(every).min_delta_bytes(0);
            let options = if sealed {
                let key = checkpoint_format::sealing::EncryptionKey::new("p", &[5; 32]).unwrap();
                options.encryption(checkpoint_format::sealing::Encryption::new(key))
            } else {
                options
            };
            SqliteStore::open(options).await.expect("open")
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.db");
            let store = open(path.clone()).await;
            let mut saved = Vec::new();
            for state in states {
                let cp = Checkpoint::new("e", "n", state);
                let version = store.save(&cp).await.unwrap();
                saved.push(cp.with_version(version));
            }
            let fresh = open(path).await;
            for want in &saved {
                assert_same(&store.load(&want.id).await.unwrap(), want);
                assert_same(&fresh.load(&want.id).await.unwrap(), want);
            }
            assert!(fresh.verify(None).await.unwrap().damaged.is_empty());
        });
    }
}
