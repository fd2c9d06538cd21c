//! One file shared by several stores (as several processes share it), and every way opening or
//! using it can fail: each failure is typed and loses nothing already stored.

use std::time::{Duration, Instant};

use checkpoint_core::conformance::assert_backend;
use checkpoint_core::{Checkpoint, CheckpointStore, Error, Limits, ListQuery};
use checkpoint_sqlite::{SqliteError, SqliteOptions, SqliteStore, SCHEMA_VERSION};
use rusqlite::ErrorCode;
use serde_json::json;

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    (dir, path)
}

async fn open(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(SqliteOptions::file(path)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_a_file_append_without_losing_or_repeating_a_version() {
    let (_dir, path) = temp_db();
    let stores: Vec<SqliteStore> = futures_join(4, &path).await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = stores[t % stores.len()].clone();
            tokio::spawn(async move {
                let mut saved = Vec::new();
                for step in 0..25 {
                    let cp = Checkpoint::new("shared", "n", json!({"t": t, "step": step}));
                    saved.push((cp.id.clone(), store.save(&cp).await.expect("save")));
                }
                saved
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    let history = stores[0].list("shared").await.unwrap();
    assert_eq!(history.len(), 400);
    let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
    assert_eq!(versions, (1..=400).collect::<Vec<_>>());
    for (id, version) in acked {
        assert_eq!(stores[3].load(&id).await.unwrap().version, version);
    }
}

async fn futures_join(n: usize, path: &std::path::Path) -> Vec<SqliteStore> {
    let opens: Vec<_> = (0..n)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move { open(&path).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap());
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_a_new_file_at_once_migrate_it_once() {
    let (_dir, path) = temp_db();
    let stores = futures_join(6, &path).await;
    let applied: Vec<i64> = stores.iter().flat_map(|s| s.migrated().to_vec()).collect();
    let every: Vec<i64> = (1..=SCHEMA_VERSION).collect();
    assert_eq!(
        applied, every,
        "exactly one store applied each migration, once"
    );
    let stats = stores[0].stats().await.unwrap();
    assert_eq!(stats.schema_version, Some(SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_past_the_busy_timeout_is_retryable_unavailability() {
    let (_dir, path) = temp_db();
    let store =
        SqliteStore::open(SqliteOptions::file(&path).busy_timeout(Duration::from_millis(200)))
            .await
            .unwrap();
    let kept = Checkpoint::new("e", "n", json!({"kept": true}));
    store.save(&kept).await.unwrap();

    // Another process takes the write lock and keeps it.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let err = store
        .save(&Checkpoint::new("e", "n", json!(2)))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        SqliteError::of(&err).and_then(SqliteError::code),
        Some(ErrorCode::DatabaseBusy)
    );
    assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
    // Reads go on beside the writer (WAL).
    assert_eq!(store.latest("e").await.unwrap().unwrap().id, kept.id);

    holder.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        store
            .save(&Checkpoint::new("e", "n", json!(2)))
            .await
            .unwrap(),
        2,
        "the retry succeeds once the lock is free"
    );
    assert_eq!(store.load(&kept.id).await.unwrap(), kept.with_version(1));
}

#[tokio::test]
async fn a_file_from_a_newer_release_is_refused_untouched() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO checkpoint_migrations VALUES (?1, 'from the future', 'then')",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(conn);

    let err = SqliteStore::open(SqliteOptions::file(&path))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        matches!(
            SqliteError::of(&err),
            Some(SqliteError::SchemaTooNew { found, known })
                if *found == SCHEMA_VERSION + 1 && *known == SCHEMA_VERSION
        ),
        "{err:?}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_backend_error_with_its_code() {
    let (_dir, path) = temp_db();
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = assert_backend(
        SqliteStore::open(SqliteOptions::file(&path)).await,
        false,
        "",
    );
    assert_eq!(
        SqliteError::of(&err).and_then(SqliteError::code),
        Some(ErrorCode::NotADatabase)
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 4096]);
}

#[tokio::test]
async fn a_directory_that_does_not_exist_is_a_backend_error() {
    let (dir, _) = temp_db();
    let err = SqliteStore::open(SqliteOptions::file(dir.path().join("no/such/dir/x.db")))
        .await
        .unwrap_err();
    assert_eq!(
        SqliteError::of(&err).and_then(SqliteError::code),
        Some(ErrorCode::CannotOpen),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_damaged_row_is_reported_as_corrupt_and_others_still_read() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let good = Checkpoint::new("e", "n", json!({"good": 1}));
    let bad = Checkpoint::new("e", "n", json!({"bad": 1}));
    store
        .save_batch(&[good.clone(), bad.clone()])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE checkpoints SET state = x'0022' WHERE id = ?1",
        [&bad.id],
    )
    .unwrap();
    drop(conn);

    let err = store.load(&bad.id).await.unwrap_err();
    assert!(
        matches!(SqliteError::of(&err), Some(SqliteError::Corrupt { id, .. }) if *id == bad.id),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(
        store.list("e").await.is_err(),
        "a list through it fails too"
    );
    let good = good.with_version(1);
    assert_eq!(store.load(&good.id).await.unwrap(), good);
    let page = store
        .list_page(&ListQuery::new("e").before(2))
        .await
        .unwrap();
    assert_eq!(page.items, vec![good]);
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let store = SqliteStore::open(SqliteOptions::in_memory()).await.unwrap();
    store.close();
    let err = store.latest("e").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let err = store
        .save(&Checkpoint::new("e", "n", json!(1)))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn invalid_options_are_refused_before_anything_is_created() {
    let (_dir, path) = temp_db();
    let err = SqliteStore::open(SqliteOptions::file(&path).max_connections(0))
        .await
        .unwrap_err();
    assert!(err.is_invalid_field("max_connections"), "{err}");
    let err = SqliteStore::open(
        SqliteOptions::file(&path).limits(Limits::default().with_max_state_bytes(usize::MAX)),
    )
    .await
    .unwrap_err();
    assert!(err.is_invalid_field("limits"), "{err}");
    assert!(!path.exists());
    let err = SqliteStore::connect("mysql://x").await.unwrap_err();
    assert!(err.is_invalid_field("database_url"), "{err}");
}

#[tokio::test]
async fn configured_limits_apply_and_refused_saves_store_nothing() {
    let store = SqliteStore::open(
        SqliteOptions::in_memory().limits(Limits::default().with_max_state_bytes(16)),
    )
    .await
    .unwrap();
    let err = store
        .save(&Checkpoint::new("e", "n", json!("more than sixteen bytes")))
        .await
        .unwrap_err();
    assert!(err.is_invalid_field("state"), "{err}");
    assert!(store.list("e").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_file_named_like_an_in_memory_database_is_still_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(":memory:");
    let store = open(&path).await;
    let cp = Checkpoint::new("e", "n", json!(1));
    store.save(&cp).await.unwrap();
    drop(store);
    assert!(path.exists());
    assert_eq!(
        open(&path).await.load(&cp.id).await.unwrap(),
        cp.with_version(1)
    );
}

#[tokio::test]
async fn without_auto_migrate_a_file_that_is_not_current_is_refused_unchanged() {
    let (_dir, path) = temp_db();
    // Another application's database.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(SqliteOptions::file(&path).auto_migrate(false))
        .await
        .unwrap_err();
    assert!(
        matches!(
            SqliteError::of(&err),
            Some(SqliteError::SchemaOutdated { found: 0, expected }) if *expected == SCHEMA_VERSION
        ),
        "{err:?}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, ["notes"]);
    drop(conn);
    // With migration on, the tables join the application's own.
    let store = open(&path).await;
    assert_eq!(store.migrated(), (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let reopened = SqliteStore::open(SqliteOptions::file(&path).auto_migrate(false))
        .await
        .unwrap();
    assert!(reopened.migrated().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_that_cannot_get_the_write_turn_in_time_is_withdrawn_unstored() {
    let (_dir, path) = temp_db();
    let store =
        SqliteStore::open(SqliteOptions::file(&path).busy_timeout(Duration::from_millis(50)))
            .await
            .unwrap();
    // A long batch holds this store's write turn, for far longer than the 50 ms a save waits.
    let rows: Vec<Checkpoint> = (0..50_000)
        .map(|i| Checkpoint::new("batch", "n", json!({"i": i, "pad": "x".repeat(64)})))
        .collect();
    let batch = {
        let store = store.clone();
        tokio::spawn(async move { store.save_batch(&rows).await })
    };
    // Saves meanwhile: those that wait out the 50 ms while the batch holds the turn fail; the
    // batch encodes its rows before it takes the turn, and the last ones may find it free.
    let mut refused = Vec::new();
    while !batch.is_finished() {
        let probe = Checkpoint::new("probe", "n", json!(refused.len()));
        match store.save(&probe).await {
            Ok(_) => {}
            Err(err) => {
                assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
                assert!(err.is_retryable());
                assert!(
                    err.to_string().contains("another write of this store"),
                    "{err}"
                );
                refused.push(probe.id);
            }
        }
        tokio::task::yield_now().await;
    }
    assert!(!refused.is_empty(), "a save met the batch holding the turn");
    assert_eq!(batch.await.unwrap().unwrap().len(), 50_000);
    for id in &refused {
        assert!(
            matches!(store.load(id).await, Err(Error::NotFound { .. })),
            "a withdrawn save is never written"
        );
    }
    let late = Checkpoint::new("late", "n", json!(1));
    assert_eq!(store.save(&late).await.unwrap(), 1, "the retry succeeds");
}
