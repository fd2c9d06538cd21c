//! Encryption at rest on a real server: states round-trip, the raw table holds no plaintext,
//! keys rotate (write under a new key, read both, re-encrypt, drop the old one), a wrong or
//! missing key and a tampered payload are typed errors naming the key. The whole conformance
//! suite with encryption on is `conformance.rs::sealed`.

mod support;

use checkpoint_core::conformance::history::conversation;
use checkpoint_core::{Checkpoint, CheckpointStore, ListQuery};
use checkpoint_postgres::{
    Encryption, EncryptionError, EncryptionKey, PostgresOptions, PostgresStore, StateEncoding,
};
use serde_json::json;

const MARKER: &str = "MARKER-4f1c-patient-record";

fn key(id: &str, byte: u8) -> EncryptionKey {
    EncryptionKey::new(id, &[byte; 32]).expect("a valid key")
}

fn keys(id: &str, byte: u8) -> Encryption {
    Encryption::new(key(id, byte))
}

async fn connect(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

/// Options on `schema` with deltas at any size, so both snapshots and deltas are sealed.
fn on(schema: &str, url: &str) -> PostgresOptions {
    PostgresOptions::new(url)
        .expect("test URL")
        .schema(schema)
        .max_connections(4)
        .min_delta_bytes(0)
}

/// A conversation whose every message carries the marker.
fn secret_state(step: usize) -> serde_json::Value {
    let mut state = conversation(step);
    state["patient"] = json!(format!("{MARKER} step {step}"));
    state
}

async fn raw_bytes(schema: &str) -> Vec<u8> {
    let client = support::client().await;
    let rows = client
        .query(
            &format!(
                "SELECT COALESCE(payload, ''::bytea), COALESCE(state::text, ''), \
                 metadata::text FROM \"{schema}\".checkpoints"
            ),
            &[],
        )
        .await
        .expect("read the raw table");
    let mut all = Vec::new();
    for row in rows {
        all.extend_from_slice(row.get::<_, &[u8]>(0));
        all.extend_from_slice(row.get::<_, &str>(1).as_bytes());
        all.extend_from_slice(row.get::<_, &str>(2).as_bytes());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn encrypted_states_round_trip_and_the_table_holds_no_plaintext() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("enc");
    let store = connect(on(&schema, &url).encryption(keys("k1", 1))).await;
    let mut saved = Vec::new();
    for step in 1..=30 {
        let cp = Checkpoint::new("e", "n", secret_state(step)).with_metadata("step", step);
        let version = store.save(&cp).await.unwrap();
        saved.push(Checkpoint { version, ..cp });
    }
    let batch: Vec<Checkpoint> = (0..5)
        .map(|i| Checkpoint::new("b", "n", json!({"secret": format!("{MARKER} {i}")})))
        .collect();
    store.save_batch(&batch).await.unwrap();
    let forked = store.fork(&saved[20].id, "f").await.unwrap();

    // A fresh instance (nothing cached) reads everything back whole.
    let reader = connect(on(&schema, &url).encryption(keys("k1", 1))).await;
    for cp in &saved {
        assert_eq!(&reader.load(&cp.id).await.unwrap(), cp);
    }
    assert_eq!(reader.list("e").await.unwrap(), saved);
    assert_eq!(reader.latest("e").await.unwrap().as_ref(), saved.last());
    let page = reader
        .list_page(&ListQuery::new("e").after(10).limit(5))
        .await
        .unwrap();
    assert_eq!(page.items, saved[10..15]);
    assert_eq!(reader.list("b").await.unwrap().len(), 5);
    assert_eq!(
        reader.load(&forked.id).await.unwrap().state,
        saved[20].state
    );

    let raw = raw_bytes(&schema).await;
    assert!(
        !contains(&raw, MARKER),
        "plaintext of the state in the table"
    );
    assert!(!contains(&raw, "patient"), "plaintext keys in the table");
    assert!(contains(&raw, "\"step\""), "metadata stays plain JSONB");
    // Deltas were written, and sealed too.
    let client = support::client().await;
    let deltas: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM \"{schema}\".checkpoints WHERE base_version IS NOT NULL \
                 AND get_byte(payload, 0) = 2"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(deltas >= 10, "{deltas} sealed deltas");
}

#[tokio::test]
async fn keys_rotate_without_losing_a_checkpoint() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("rot");
    // Rows written before encryption, then under key 1.
    let plain = connect(on(&schema, &url)).await;
    let mut saved = Vec::new();
    for step in 1..=6 {
        let cp = Checkpoint::new("e", "n", secret_state(step));
        let version = plain.save(&cp).await.unwrap();
        saved.push(Checkpoint { version, ..cp });
    }
    let jsonb = connect(on(&schema, &url).state_encoding(StateEncoding::Jsonb)).await;
    let old = Checkpoint::new("j", "n", json!({"secret": MARKER}));
    jsonb.save(&old).await.unwrap();
    saved.push(Checkpoint { version: 1, ..old });
    let first = connect(on(&schema, &url).encryption(keys("k1", 1))).await;
    for step in 7..=20 {
        let cp = Checkpoint::new("e", "n", secret_state(step));
        let version = first.save(&cp).await.unwrap();
        saved.push(Checkpoint { version, ..cp });
    }
    // Key 2 writes; key 1 still reads.
    let rotated = Encryption::new(key("k2", 2))
        .read_key(key("k1", 1))
        .unwrap();
    let second = connect(on(&schema, &url).encryption(rotated.clone())).await;
    for step in 21..=30 {
        let cp = Checkpoint::new("e", "n", secret_state(step));
        let version = second.save(&cp).await.unwrap();
        saved.push(Checkpoint { version, ..cp });
    }
    for cp in &saved {
        assert_eq!(&second.load(&cp.id).await.unwrap(), cp);
    }
    // Without key 1, rows of key 1 cannot be read, and the error names it.
    let only_k2 = connect(on(&schema, &url).encryption(keys("k2", 2))).await;
    let err = only_k2.load(&saved[10].id).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::UnknownKey { key_id }) if key_id == "k1"),
        "{err}"
    );
    assert!(!err.is_retryable());

    // Re-encrypt in small batches, resuming from each batch's last id.
    let (mut after, mut rewritten, mut batches) = (None::<String>, 0, 0);
    loop {
        let batch = second.reencrypt(after.as_deref(), 7).await.unwrap();
        rewritten += batch.rewritten;
        batches += 1;
        match batch.last_id {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert_eq!(
        rewritten, 21,
        "every row not under key 2 (6 plain, 1 JSONB, 14 of key 1)"
    );
    assert!(batches >= 4);
    assert_eq!(
        second.reencrypt(None, 100).await.unwrap().rewritten,
        0,
        "nothing left"
    );

    // Key 1 dropped: everything reads, chains included, and the table holds no plaintext.
    let fresh = connect(on(&schema, &url).encryption(keys("k2", 2))).await;
    for cp in &saved {
        assert_eq!(&fresh.load(&cp.id).await.unwrap(), cp);
    }
    assert_eq!(fresh.list("e").await.unwrap().len(), 30);
    assert!(!contains(&raw_bytes(&schema).await, MARKER));
    // And saving goes on, deltas included.
    let next = Checkpoint::new("e", "n", secret_state(31));
    let version = fresh.save(&next).await.unwrap();
    assert_eq!(
        fresh.load(&next.id).await.unwrap(),
        Checkpoint { version, ..next }
    );
}

#[tokio::test]
async fn a_wrong_key_a_missing_key_and_tampering_are_typed_errors() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("bad");
    let store = connect(on(&schema, &url).encryption(keys("k1", 1))).await;
    let cp = Checkpoint::new("e", "n", secret_state(3));
    store.save(&cp).await.unwrap();

    // The same id, other bytes.
    let impostor = connect(on(&schema, &url).encryption(keys("k1", 7))).await;
    let err = impostor.load(&cp.id).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::Authentication { key_id }) if key_id == "k1"),
        "{err}"
    );
    assert!(!err.is_retryable());

    // No keys at all.
    let keyless = connect(on(&schema, &url)).await;
    let err = keyless.latest("e").await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::NotConfigured { key_id }) if key_id == "k1"),
        "{err}"
    );

    // One byte of the sealed payload changed in the table.
    let client = support::client().await;
    client
        .execute(
            &format!(
                "UPDATE \"{schema}\".checkpoints SET payload = set_byte(payload, \
                 length(payload) - 20, get_byte(payload, length(payload) - 20) # 1) \
                 WHERE id = $1"
            ),
            &[&cp.id],
        )
        .await
        .unwrap();
    let err = store.load(&cp.id).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::Authentication { key_id }) if key_id == "k1"),
        "{err}"
    );
    // Re-encryption under a new key stops on it and writes nothing of its batch.
    let rotating = connect(
        on(&schema, &url).encryption(
            Encryption::new(key("k2", 2))
                .read_key(key("k1", 1))
                .unwrap(),
        ),
    )
    .await;
    let err = rotating.reencrypt(None, 10).await.unwrap_err();
    assert!(
        matches!(EncryptionError::of(&err), Some(EncryptionError::Authentication { key_id }) if key_id == "k1"),
        "{err}"
    );
    let client = support::client().await;
    let first_byte: i32 = client
        .query_one(
            &format!("SELECT get_byte(payload, 3) FROM \"{schema}\".checkpoints WHERE id = $1"),
            &[&cp.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(first_byte, i32::from(b'1'), "still sealed under k1");

    // Encryption with the JSONB encoding is refused: that column would hold plain text.
    let err = PostgresStore::connect(
        on(&schema, &url)
            .state_encoding(StateEncoding::Jsonb)
            .encryption(keys("k1", 1)),
    )
    .await
    .unwrap_err();
    assert!(err.is_invalid_field("state_encoding"), "{err}");
    // And re-encryption without keys.
    let err = keyless.reencrypt(None, 10).await.unwrap_err();
    assert!(err.is_invalid_field("encryption"), "{err}");
    let err = store.reencrypt(None, 0).await.unwrap_err();
    assert!(err.is_invalid_field("limit"), "{err}");
}
