//! `save`: versions, round trips, replacement and the optimistic lock.

use serde_json::json;
use time::macros::datetime;

use super::{assert_conflict, assert_exact, assert_invalid, checkpoint, fill, versions, Store};
use crate::Checkpoint;

/// The first append to an execution is version 1, and the stored checkpoint says so.
pub async fn save_new_checkpoint_gets_version_one(store: Store) {
    let cp = checkpoint("e1", "start", json!({"x": 1}));
    assert_eq!(store.save(&cp).await.unwrap(), 1);
    assert_eq!(store.load(&cp.id).await.unwrap().version, 1);
}

/// Version-0 saves append 1, 2, 3, ...
pub async fn save_appends_consecutive_versions(store: Store) {
    for expected in 1..=5 {
        let cp = checkpoint("e1", "step", json!(expected));
        assert_eq!(store.save(&cp).await.unwrap(), expected);
    }
    assert_eq!(
        versions(&store.list("e1").await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
}

/// An explicit free version is stored as given.
pub async fn save_with_explicit_version_returns_it(store: Store) {
    let cp = checkpoint("e1", "step", json!(null)).with_version(7);
    assert_eq!(store.save(&cp).await.unwrap(), 7);
    assert_eq!(store.load(&cp.id).await.unwrap().version, 7);
}

/// Every field comes back exactly as saved.
pub async fn save_round_trips_every_field(store: Store) {
    let parent = checkpoint("e1", "plan", json!({"todo": ["a", "b"]}));
    store.save(&parent).await.unwrap();
    let cp = Checkpoint::new("e1", "act", json!({"done": ["a"], "n": 1.5, "ok": true}))
        .with_parent(&parent.id)
        .with_metadata("step", 2)
        .with_metadata("source", "run")
        .with_metadata("tags", json!(["x", {"y": null}]))
        .with_timestamp(datetime!(2024-02-29 23:59:59.999999 UTC))
        .with_version(2);
    assert_eq!(store.save(&cp).await.unwrap(), 2);
    assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
}

/// Unicode in every string field and in JSON keys and values survives.
pub async fn save_round_trips_unicode(store: Store) {
    let mut cp = Checkpoint::new(
        "exécution-🚀",
        "nœud-ß-日本",
        json!({"клю́ч": "значение", "emoji": "👩‍👩‍👧", "rtl": "שלום", "esc": "\"\\\n\t\u{1}"}),
    )
    .with_metadata("😀", "☃")
    .with_id("id-ü-漢字")
    .with_parent("parent-🙂");
    cp.version = store.save(&cp).await.unwrap();
    assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
}

/// Nested objects and arrays, numbers of every kind, null and booleans survive.
pub async fn save_round_trips_nested_json(store: Store) {
    let state = json!({
        "a": {"b": {"c": [1, [2, [3, {"d": null}]]]}},
        "ints": [0, -1, i64::MIN, i64::MAX, u64::MAX],
        "floats": [0.5, -2.25, 1e-7, 6.02e23],
        "flags": [true, false],
        "empty": {"o": {}, "a": []}
    });
    let mut cp = checkpoint("e1", "n", state);
    cp.version = store.save(&cp).await.unwrap();
    assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
}

/// A 1 MiB state survives byte for byte.
pub async fn save_round_trips_large_state(store: Store) {
    let blob: String = (0..1024 * 1024u32)
        .map(|i| char::from(b'a' + u8::try_from(i % 26).unwrap_or(0)))
        .collect();
    let mut cp = checkpoint("e1", "n", json!({ "blob": blob }));
    cp.version = store.save(&cp).await.unwrap();
    assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
}

/// Timestamps keep their microseconds, including at the edges of the supported range.
pub async fn save_round_trips_microsecond_timestamps(store: Store) {
    for (i, ts) in [
        datetime!(2024-01-01 00:00:00.000001 UTC),
        datetime!(1999-12-31 23:59:59.999999 UTC),
        datetime!(0001-01-01 00:00:00 UTC),
        datetime!(9999-12-31 23:59:59.999999 UTC),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cp = checkpoint("e1", "n", json!(i)).with_timestamp(ts);
        cp.version = store.save(&cp).await.unwrap();
        let loaded = store.load(&cp.id).await.unwrap();
        assert_eq!(loaded.timestamp, ts);
        assert_exact(&loaded, &cp, "load");
    }
}

/// A state need not be an object: scalars, strings and arrays are states too.
pub async fn save_round_trips_json_scalars_as_state(store: Store) {
    for state in [
        json!(null),
        json!(false),
        json!(42),
        json!("text"),
        json!([1, "two"]),
    ] {
        let mut cp = checkpoint("e1", "n", state);
        cp.version = store.save(&cp).await.unwrap();
        assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
    }
}

/// Ids of exactly the maximum length (256 bytes) are accepted everywhere.
pub async fn save_round_trips_id_of_maximum_length(store: Store) {
    let long = "x".repeat(crate::validate::MAX_ID_BYTES);
    let mut cp = Checkpoint::new(long.clone(), long.clone(), json!(1))
        .with_id(long.clone())
        .with_parent(long.clone());
    cp.version = store.save(&cp).await.unwrap();
    assert_exact(&store.load(&long).await.unwrap(), &cp, "load");
    assert_eq!(store.list(&long).await.unwrap().len(), 1);
}

/// Saving an existing id replaces that checkpoint; no new version is made.
pub async fn save_same_id_replaces_checkpoint(store: Store) {
    let cp = checkpoint("e1", "n", json!({"v": 1})).with_version(1);
    store.save(&cp).await.unwrap();
    let mut changed = cp.clone();
    changed.state = json!({"v": 2});
    changed.node_name = "m".into();
    changed.metadata.insert("edited".into(), json!(true));
    assert_eq!(store.save(&changed).await.unwrap(), 1);
    let all = store.list("e1").await.unwrap();
    assert_eq!(all, vec![changed]);
}

/// Retrying a version-0 save (same id) keeps the version it got the first time.
pub async fn save_retry_of_append_keeps_its_version(store: Store) {
    fill(&store, "e1", 2).await;
    let cp = checkpoint("e1", "n", json!("retry me"));
    assert_eq!(store.save(&cp).await.unwrap(), 3);
    assert_eq!(store.save(&cp).await.unwrap(), 3);
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![1, 2, 3]);
}

/// A different checkpoint at a taken version is a conflict naming execution and version.
pub async fn save_at_taken_version_conflicts(store: Store) {
    store
        .save(&checkpoint("e1", "a", json!(1)).with_version(1))
        .await
        .unwrap();
    let rival = checkpoint("e1", "b", json!(2)).with_version(1);
    assert_conflict(store.save(&rival).await, "e1", 1);
    assert!(matches!(
        store.load(&rival.id).await,
        Err(crate::Error::NotFound { .. })
    ));
}

/// A refused conflicting save leaves the winner exactly as it was.
pub async fn save_conflict_leaves_stored_checkpoint_untouched(store: Store) {
    let winner = fill(&store, "e1", 2).await;
    let before = store.list("e1").await.unwrap();
    let rival = checkpoint("e1", "late", json!("lost")).with_version(2);
    assert_conflict(store.save(&rival).await, "e1", 2);
    assert_exact(&store.list("e1").await.unwrap(), &before, "list");
    assert_exact(
        &store.load(&winner[1].id).await.unwrap(),
        &winner[1],
        "load",
    );
}

/// An id saved into another execution: where ids are unique across the store
/// ([`IdScope::Global`](crate::IdScope::Global)) it never moves, the save is refused
/// (`InvalidInput` on `execution_id`) and the stored row is unchanged; where they are unique
/// per execution ([`IdScope::PerExecution`](crate::IdScope::PerExecution)) it is a second
/// checkpoint, and each execution keeps its own.
pub async fn save_moving_id_to_other_execution_is_refused(store: Store) {
    let mut cp = checkpoint("e1", "n", json!(1));
    cp.version = store.save(&cp).await.unwrap();
    let mut moved = cp.clone();
    moved.execution_id = "e2".into();
    moved.state = json!(2);
    moved.version = 0;
    match store.id_scope() {
        crate::IdScope::PerExecution => {
            moved.version = store.save(&moved).await.unwrap();
            assert_eq!(moved.version, 1);
            assert_exact(&store.load_in("e1", &cp.id).await.unwrap(), &cp, "e1");
            assert_exact(&store.load_in("e2", &cp.id).await.unwrap(), &moved, "e2");
            assert_exact(&store.list("e2").await.unwrap(), &vec![moved], "list");
        }
        _ => {
            assert_invalid(store.save(&moved).await, "execution_id");
            assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
            assert!(store.list("e2").await.unwrap().is_empty());
        }
    }
    assert_exact(&store.list("e1").await.unwrap(), &vec![cp], "list");
}

/// Re-saving an id with another free version moves it to that version.
pub async fn save_existing_id_at_free_version_moves_it(store: Store) {
    let cp = checkpoint("e1", "n", json!(1)).with_version(1);
    store.save(&cp).await.unwrap();
    let moved = cp.clone().with_version(5);
    assert_eq!(store.save(&moved).await.unwrap(), 5);
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![5]);
}

/// After an explicit version leaves a gap, appends continue from the highest version.
pub async fn save_append_after_explicit_gap_continues_from_highest(store: Store) {
    fill(&store, "e1", 1).await;
    store
        .save(&checkpoint("e1", "jump", json!(1)).with_version(10))
        .await
        .unwrap();
    assert_eq!(
        store.save(&checkpoint("e1", "n", json!(2))).await.unwrap(),
        11
    );
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![1, 10, 11]);
}

/// Changing a loaded or saved value in memory changes nothing stored.
pub async fn loaded_checkpoint_is_an_independent_copy(store: Store) {
    let mut cp = checkpoint("e1", "n", json!({"list": [1]}));
    cp.version = store.save(&cp).await.unwrap();
    let original = cp.clone();
    cp.state["list"] = json!([1, 2, 3]);
    let mut loaded = store.load(&cp.id).await.unwrap();
    loaded.state["list"] = json!([]);
    loaded.metadata.insert("x".into(), json!(1));
    assert_exact(&store.load(&cp.id).await.unwrap(), &original, "load");
}

/// An execution that holds `i64::MAX` (an explicit version may go up to there) takes no
/// append: a typed error naming `version`, and nothing stored; explicit versions below still
/// work.
pub async fn save_append_after_the_highest_version_is_refused(store: Store) {
    let top = checkpoint("e1", "top", json!(1)).with_version(i64::MAX);
    assert_eq!(store.save(&top).await.unwrap(), i64::MAX);
    assert_invalid(
        store.save(&checkpoint("e1", "next", json!(2))).await,
        "version",
    );
    let batch = [
        checkpoint("e1", "a", json!(3)).with_version(5),
        checkpoint("e1", "b", json!(4)),
    ];
    assert_invalid(store.save_batch(&batch).await, "version");
    assert_eq!(versions(&store.list("e1").await.unwrap()), vec![i64::MAX]);
    // A retried append of the top checkpoint keeps its version; a lower explicit one is fine.
    let mut retry = top.clone();
    retry.version = 0;
    assert_eq!(store.save(&retry).await.unwrap(), i64::MAX);
    let low = checkpoint("e1", "low", json!(5)).with_version(7);
    assert_eq!(store.save(&low).await.unwrap(), 7);
    // Other executions are not affected.
    assert_eq!(
        store.save(&checkpoint("e2", "n", json!(6))).await.unwrap(),
        1
    );
}

/// Numbers at every magnitude a JSON number can take in Rust read back equal: the extremes of
/// `f64` (largest, smallest normal and subnormal), of the 64-bit integers, and long fractions.
pub async fn save_round_trips_numbers_of_every_magnitude(store: Store) {
    let state = json!({
        "floats": [f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -5e-324, 1e300, 1e-300,
                   1e15, 9_999_999_999_999_998.0, 2e19, -9.3e18, 0.1, 123456789.12345679, 1e-7],
        "ints": [u64::MAX, i64::MIN, i64::MAX, 0, -1],
    });
    let mut cp = checkpoint("e1", "n", state);
    cp.version = store.save(&cp).await.unwrap();
    assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
    let mut batch = checkpoint("e1", "b", cp.state.clone());
    batch.version = store
        .save_batch(std::slice::from_ref(&batch))
        .await
        .unwrap()[0];
    assert_exact(&store.load(&batch.id).await.unwrap(), &batch, "load");
}

/// Whole floats of 1e16 and more that fit a 64-bit integer are written with an exponent,
/// which a JSONB column turns into an integer. In a state a store either reads them back
/// exactly or refuses them (`InvalidInput` on `state`, nothing stored); in metadata, which
/// every backend may keep in such a column for filters, they are refused everywhere.
pub async fn save_numbers_a_jsonb_column_would_change_are_kept_or_refused(store: Store) {
    let state = json!({"whole": [1e16, -1e16, 1.8e19, 12345678901234567.0]});
    let cp = checkpoint("e1", "n", state).with_version(1);
    match store.save(&cp).await {
        Ok(version) => {
            assert_eq!(version, 1);
            assert_exact(&store.load(&cp.id).await.unwrap(), &cp, "load");
        }
        Err(err) => {
            assert!(err.is_invalid_field("state"), "{err}");
            assert!(store.list("e1").await.unwrap().is_empty());
        }
    }
    let tagged = checkpoint("e2", "n", json!(1)).with_metadata("n", 1e16);
    assert_invalid(store.save(&tagged).await, "metadata");
    assert_invalid(store.save_batch(&[tagged]).await, "metadata");
    assert!(store.list("e2").await.unwrap().is_empty());
}

/// `-0.0` is a number of its own. In a state a store either reads it back exactly (with its
/// sign, by every read) or refuses it (`InvalidInput` on `state`, nothing stored); in metadata,
/// which every backend may keep in a JSONB column for filters (where `-0.0` becomes `0.0`), it
/// is refused everywhere. `0.0` and `-0.0` in one execution are two states, never one.
pub async fn save_negative_zero_is_kept_exactly_or_refused(store: Store) {
    let pad = "x".repeat(3_000);
    let first = checkpoint("e1", "n", json!({"pad": pad, "t": 0.0, "i": 0}));
    let second = checkpoint("e1", "n", json!({"pad": pad, "t": -0.0, "i": 1}));
    let third = checkpoint(
        "e1",
        "n",
        json!({"pad": pad, "t": -0.0, "i": 1, "z": [0.0, -0.0]}),
    );
    let mut kept = Vec::new();
    for mut cp in [first, second, third] {
        match store.save(&cp).await {
            Ok(version) => {
                cp.version = version;
                kept.push(cp);
            }
            Err(err) => {
                assert!(err.is_invalid_field("state"), "{err}");
                assert!(cp.state["t"].as_f64().is_some_and(|t| t.is_sign_negative()));
            }
        }
    }
    super::history::assert_history(&store, "e1", &kept).await;

    let tagged = checkpoint("e2", "n", json!(1)).with_metadata("t", -0.0);
    assert_invalid(store.save(&tagged).await, "metadata");
    assert_invalid(store.save_batch(&[tagged]).await, "metadata");
    let nested = checkpoint("e2", "n", json!(1)).with_metadata("t", json!({"a": [-0.0]}));
    assert_invalid(store.save(&nested).await, "metadata");
    assert!(store.list("e2").await.unwrap().is_empty());
}
