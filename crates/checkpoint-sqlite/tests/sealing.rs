//! Sealed states on SQLite: nothing of a sealed state is readable in the file, a store without
//! the key gets a typed error naming it, and a key is rotated by re-encrypting in batches while
//! every chain of deltas stays valid.

use std::path::Path;

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_format::sealing::{Encryption, EncryptionError, EncryptionKey};
use checkpoint_sqlite::{SqliteOptions, SqliteStore, MAX_REENCRYPT_BATCH};
use serde_json::{json, Value};

const SECRET: &str = "the launch code is 0000";

fn key(id: &str, byte: u8) -> EncryptionKey {
    EncryptionKey::new(id, &[byte; 32]).expect("a key")
}

/// A conversation of `n` messages, each carrying the secret.
fn chat(n: usize) -> Value {
    let messages: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{SECRET}, message {i}: {}",
                "words and more words ".repeat(40)
            )
        })
        .collect();
    json!({ "messages": messages, "t": -0.0 })
}

async fn open(path: &Path, keys: Option<Encryption>) -> SqliteStore {
    let options = SqliteOptions::file(path)
        .min_delta_bytes(0)
        .snapshot_every(4);
    let options = match keys {
        Some(keys) => options.encryption(keys),
        None => options,
    };
    SqliteStore::open(options).await.expect("open")
}

async fn save_chat(store: &SqliteStore, execution: &str, n: usize) -> Vec<Checkpoint> {
    let mut saved = Vec::new();
    for step in 1..=n {
        let cp = Checkpoint::new(execution, "chat", chat(step + 3));
        let version = store.save(&cp).await.expect("save");
        saved.push(cp.with_version(version));
    }
    saved
}

fn assert_same(got: &Checkpoint, want: &Checkpoint) {
    assert!(
        checkpoint_core::equal::same_checkpoint(got, want),
        "{} differs",
        want.id
    );
}

/// Every byte of the file and its log, for a search.
fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
    bytes
}

fn deltas(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM checkpoints WHERE base_version IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn sealed_states_hide_their_text_and_need_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed.db");
    let store = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    let saved = save_chat(&store, "e", 6).await;
    assert!(deltas(&path) > 0, "sealed deltas");
    drop(store);
    let bytes = file_bytes(&path);
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the secret is not in the file"
    );

    let fresh = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    for want in &saved {
        assert_same(&fresh.load(&want.id).await.unwrap(), want);
    }
    assert!(fresh.verify(None).await.unwrap().damaged.is_empty());

    let without = open(&path, None).await;
    let err = without.load(&saved[0].id).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::NotConfigured { key_id }) if key_id == "k1"),
        "{err:?}"
    );
    let err = without.latest("e").await.unwrap_err();
    assert!(EncryptionError::of(&err).is_some(), "{err:?}");
    let stranger = open(&path, Some(Encryption::new(key("k2", 2)))).await;
    let err = stranger.load(&saved[3].id).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::UnknownKey { key_id }) if key_id == "k1"),
        "{err:?}"
    );
    let liar = open(&path, Some(Encryption::new(key("k1", 9)))).await;
    let err = liar.load(&saved[0].id).await.unwrap_err();
    assert!(
        matches!(
            EncryptionError::of(&err),
            Some(EncryptionError::Authentication { .. })
        ),
        "{err:?}"
    );
    assert!(!liar.verify(Some("e")).await.unwrap().damaged.is_empty());
    // Nothing was changed by the refused reads.
    assert_same(&fresh.latest("e").await.unwrap().unwrap(), &saved[5]);
}

#[tokio::test]
async fn a_key_is_rotated_in_batches_keeping_every_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotate.db");
    let old = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    let mut saved = save_chat(&old, "a", 7).await;
    saved.extend(save_chat(&old, "b", 5).await);
    drop(old);
    // Rows written plain by a store without keys are sealed too.
    let plain = open(&path, None).await;
    saved.extend(save_chat(&plain, "c", 5).await);
    drop(plain);

    let rotated = Encryption::new(key("k2", 2))
        .read_key(key("k1", 1))
        .unwrap();
    let store = open(&path, Some(rotated)).await;
    let mut after: Option<String> = None;
    let (mut examined, mut rewritten, mut batches) = (0, 0, 0);
    loop {
        let batch = store.reencrypt(after.as_deref(), 4).await.unwrap();
        examined += batch.examined;
        rewritten += batch.rewritten;
        batches += 1;
        match batch.last_id {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert_eq!((examined, rewritten), (17, 17));
    assert_eq!(
        batches, 6,
        "five batches of at most four, then an empty one"
    );
    let again = store.reencrypt(None, MAX_REENCRYPT_BATCH).await.unwrap();
    assert_eq!((again.examined, again.rewritten), (17, 0));

    // Only the new key now: every checkpoint reads, through its chain.
    let new_only = open(&path, Some(Encryption::new(key("k2", 2)))).await;
    for want in &saved {
        assert_same(&new_only.load(&want.id).await.unwrap(), want);
    }
    assert!(new_only.verify(None).await.unwrap().damaged.is_empty());
    assert!(deltas(&path) > 0, "the deltas stayed deltas");
    // And saving goes on with deltas on the re-encrypted rows.
    let next = Checkpoint::new("a", "chat", chat(11));
    let version = new_only.save(&next).await.unwrap();
    assert_same(
        &new_only.load(&next.id).await.unwrap(),
        &next.with_version(version),
    );
}

#[tokio::test]
async fn rows_of_schema_2_are_sealed_as_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let store = open(&path, None).await;
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut plain = vec![0u8];
        plain.extend_from_slice(format!(r#"{{"old": "{SECRET}", "z": -0.0}}"#).as_bytes());
        conn.execute(
            "INSERT INTO checkpoints (id, execution_id, version, node_name, parent_id, \
             timestamp_us, metadata, state) VALUES ('old-1', 'e', 1, 'n', NULL, 0, '{}', ?1)",
            [plain],
        )
        .unwrap();
    }
    let store = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    let before = store.load("old-1").await.unwrap();
    let batch = store.reencrypt(None, 10).await.unwrap();
    assert_eq!((batch.examined, batch.rewritten), (1, 1));
    let after = open(&path, Some(Encryption::new(key("k1", 1))))
        .await
        .load("old-1")
        .await
        .unwrap();
    assert_same(&after, &before);
    let without = open(&path, None).await;
    assert!(EncryptionError::of(&without.load("old-1").await.unwrap_err()).is_some());
}

#[tokio::test]
async fn a_damaged_row_of_schema_2_stops_its_batch_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    drop(open(&path, None).await);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO checkpoints (id, execution_id, version, node_name, parent_id, \
             timestamp_us, metadata, state) VALUES ('old-1', 'e', 1, 'n', NULL, 0, '{}', x'0022')",
            [],
        )
        .unwrap();
    }
    let store = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    let err = store.reencrypt(None, 10).await.unwrap_err();
    assert!(
        matches!(checkpoint_sqlite::SqliteError::of(&err), Some(checkpoint_sqlite::SqliteError::Corrupt { id, .. }) if id == "old-1"),
        "{err:?}"
    );
    let state: Vec<u8> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT state FROM checkpoints WHERE id = 'old-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, vec![0x00, 0x22], "left as it was");
}

#[tokio::test]
async fn reencrypt_refuses_bad_arguments_and_a_row_under_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    let store = open(&path, Some(Encryption::new(key("k1", 1)))).await;
    let saved = save_chat(&store, "e", 3).await;
    let without = open(&path, None).await;
    let err = without.reencrypt(None, 10).await.unwrap_err();
    assert!(err.is_invalid_field("encryption"), "{err:?}");
    for limit in [0, MAX_REENCRYPT_BATCH + 1] {
        let err = store.reencrypt(None, limit).await.unwrap_err();
        assert!(err.is_invalid_field("limit"), "{err:?}");
    }
    let err = store.reencrypt(Some(""), 10).await.unwrap_err();
    assert!(err.is_invalid_field("after"), "{err:?}");
    // A store that holds only another key cannot open the rows: the batch is refused whole.
    let other = open(&path, Some(Encryption::new(key("k2", 2)))).await;
    let err = other.reencrypt(None, 10).await.unwrap_err();
    assert!(
        matches!(
            EncryptionError::of(&err),
            Some(EncryptionError::UnknownKey { .. })
        ),
        "{err:?}"
    );
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    for want in &saved {
        assert_same(&store.load(&want.id).await.unwrap(), want);
    }
}
