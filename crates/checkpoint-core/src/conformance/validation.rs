//! Input rules: every refused input is `InvalidInput` naming the field, and stores nothing.

use serde_json::{json, Value};

use super::{assert_exact, assert_invalid, checkpoint, fill, Store};
use crate::validate::MAX_ID_BYTES;
use crate::{Checkpoint, ExecutionQuery, ListQuery};

/// Empty checkpoint, execution, node and parent ids are refused.
pub async fn save_rejects_empty_ids(store: Store) {
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_id(""))
            .await,
        "id",
    );
    assert_invalid(
        store.save(&checkpoint("", "n", json!(1))).await,
        "execution_id",
    );
    assert_invalid(
        store.save(&checkpoint("e1", "", json!(1))).await,
        "node_name",
    );
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_parent(""))
            .await,
        "parent_id",
    );
}

/// Ids over 256 bytes are refused (bytes, not characters).
pub async fn save_rejects_overlong_ids(store: Store) {
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let wide = "é".repeat(MAX_ID_BYTES / 2 + 1);
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_id(&long))
            .await,
        "id",
    );
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_id(&wide))
            .await,
        "id",
    );
    assert_invalid(
        store.save(&checkpoint(&long, "n", json!(1))).await,
        "execution_id",
    );
    assert_invalid(
        store.save(&checkpoint("e1", &long, json!(1))).await,
        "node_name",
    );
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_parent(&long))
            .await,
        "parent_id",
    );
}

/// A NUL character in any identifier is refused.
pub async fn save_rejects_nul_in_identifiers(store: Store) {
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_id("a\0b"))
            .await,
        "id",
    );
    assert_invalid(
        store.save(&checkpoint("e\0", "n", json!(1))).await,
        "execution_id",
    );
    assert_invalid(
        store.save(&checkpoint("e1", "\0", json!(1))).await,
        "node_name",
    );
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!(1)).with_parent("p\0"))
            .await,
        "parent_id",
    );
}

/// A NUL character inside a string of the state, at any depth, is refused.
pub async fn save_rejects_nul_in_state_strings(store: Store) {
    for state in [json!("a\u{0}b"), json!({"k": ["x", {"deep": "\u{0}"}]})] {
        assert_invalid(store.save(&checkpoint("e1", "n", state)).await, "state");
    }
}

/// A NUL character in an object key of the state is refused.
pub async fn save_rejects_nul_in_state_keys(store: Store) {
    assert_invalid(
        store
            .save(&checkpoint("e1", "n", json!({"a": {"b\u{0}": 1}})))
            .await,
        "state",
    );
}

/// A NUL character in a metadata key or value is refused.
pub async fn save_rejects_nul_in_metadata(store: Store) {
    let key = checkpoint("e1", "n", json!(1)).with_metadata("k\0", 1);
    let value = checkpoint("e1", "n", json!(1)).with_metadata("k", json!({"x": "\0"}));
    assert_invalid(store.save(&key).await, "metadata");
    assert_invalid(store.save(&value).await, "metadata");
}

/// Negative versions are refused.
pub async fn save_rejects_negative_version(store: Store) {
    for version in [-1, i64::MIN] {
        assert_invalid(
            store
                .save(&checkpoint("e1", "n", json!(1)).with_version(version))
                .await,
            "version",
        );
    }
}

/// A state one byte over the store's limit is refused; one at the limit is accepted.
pub async fn save_rejects_state_over_size_limit(store: Store) {
    let max = store.limits().max_state_bytes;
    // A JSON string of n characters takes n + 2 bytes.
    let at_limit = Value::String("a".repeat(max - 2));
    let over = Value::String("a".repeat(max - 1));
    assert_invalid(store.save(&checkpoint("e1", "n", over)).await, "state");
    let cp = checkpoint("e1", "n", at_limit);
    assert_eq!(store.save(&cp).await.unwrap(), 1);
}

/// A state nested deeper than the limit (here 10,000 levels) is refused without overflowing
/// the stack; one at the limit round-trips.
pub async fn save_rejects_deeply_nested_state(store: Store) {
    let nested = |depth: usize| {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    };
    let max = store.limits().max_json_depth;
    let mut deep = checkpoint("e1", "n", nested(10_000));
    assert_invalid(store.save(&deep).await, "state");
    // Dropping a 10,000-level value recurses; take it apart iteratively.
    let mut v = std::mem::take(&mut deep.state);
    while let Value::Array(mut items) = v {
        v = items.pop().unwrap_or(Value::Null);
    }
    assert_invalid(
        store.save(&checkpoint("e1", "n", nested(max + 1))).await,
        "state",
    );

    let mut ok = checkpoint("e1", "n", nested(max));
    ok.version = store.save(&ok).await.unwrap();
    assert_exact(&store.load(&ok.id).await.unwrap(), &ok, "load");
}

/// A timestamp finer than a microsecond is refused rather than silently rounded.
pub async fn save_rejects_sub_microsecond_timestamp(store: Store) {
    let mut cp = checkpoint("e1", "n", json!(1));
    cp.timestamp = time::macros::datetime!(2024-01-01 00:00:00.000000001 UTC);
    assert_invalid(store.save(&cp).await, "timestamp");
}

/// An instant whose UTC date falls outside years 1 to 9999 is refused as `timestamp`, however
/// it was built (the builder keeps such an instant as given rather than panic), on `save` and
/// in a batch, and nothing is stored.
pub async fn save_rejects_timestamp_outside_years_1_to_9999_in_utc(store: Store) {
    use time::macros::datetime;
    for at in [
        datetime!(9999-12-31 12:00:00 -12:00),
        datetime!(9999-12-31 23:59:59 -00:00:01),
        datetime!(0001-01-01 00:30:00 +01:00),
        datetime!(-9999-01-01 00:00:00 +14:00),
    ] {
        let built = checkpoint("e1", "n", json!(1)).with_timestamp(at);
        assert_invalid(store.save(&built).await, "timestamp");
        let mut raw = checkpoint("e1", "n", json!(1));
        raw.timestamp = at;
        assert_invalid(store.save(&raw).await, "timestamp");
        let ok = checkpoint("e1", "ok", json!(2));
        assert_invalid(store.save_batch(&[ok, built]).await, "timestamp");
    }
    assert!(store.list("e1").await.unwrap().is_empty());
    // The last representable instants on either side are kept exactly.
    for at in [
        datetime!(9999-12-31 23:59:59.999999 UTC),
        datetime!(9999-12-31 11:59:59 -12:00),
        datetime!(0001-01-01 00:00:00 UTC),
    ] {
        let mut cp = checkpoint("e2", "n", json!(1)).with_timestamp(at);
        cp.version = store.save(&cp).await.unwrap();
        assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
        assert_eq!(cp.timestamp, at);
    }
}

/// Reads and removals apply the same id rules as saves.
pub async fn reads_reject_invalid_ids(store: Store) {
    let long = "x".repeat(MAX_ID_BYTES + 1);
    for bad in ["", "a\0", long.as_str()] {
        assert_invalid(store.load(bad).await, "id");
        assert_invalid(store.delete(bad).await, "id");
        assert_invalid(store.list(bad).await, "execution_id");
        assert_invalid(store.latest(bad).await, "execution_id");
        assert_invalid(store.clear(bad).await, "execution_id");
        assert_invalid(store.list_page(&ListQuery::new(bad)).await, "execution_id");
    }
    assert_invalid(
        store
            .list_executions(&ExecutionQuery::new(10).after("\0"))
            .await,
        "after",
    );
}

/// After any refused save the store holds exactly what it held before.
pub async fn refused_save_stores_nothing(store: Store) {
    let before = fill(&store, "e1", 3).await;
    let refused = [
        checkpoint("e1", "n", json!("\0")),
        checkpoint("e1", "n", json!(1)).with_version(-3),
        checkpoint("e1", "n", json!(1)).with_metadata("\0", 1),
        Checkpoint {
            execution_id: "e1".into(),
            ..before[0].clone()
        }
        .with_parent(""),
        before[1].clone().with_version(3),
    ];
    for cp in &refused {
        assert!(store.save(cp).await.is_err(), "{cp:?} was accepted");
    }
    assert_exact(&store.list("e1").await.unwrap(), &before, "list");
}
