//! The content hash of a state: the same for two states exactly when they are the same state
//! by the one definition ([`checkpoint_core::equal::same_state`], which tells `-0.0` from
//! `0.0`), whatever their key order or text, up to 64-bit collisions. Stored beside every row
//! so a reader checks each rebuilt state against the one saved, and a delta's base is checked
//! before it is used.
//!
//! ```
//! use checkpoint_format::hash::state_hash;
//! use serde_json::json;
//!
//! let a = json!({ "a": 1, "b": [0.0] });
//! let b: serde_json::Value = serde_json::from_str(r#"{"b":[0.0],"a":1}"#).unwrap();
//! assert_eq!(state_hash(&a), state_hash(&b));
//! assert_ne!(state_hash(&a), state_hash(&json!({ "a": 1, "b": [-0.0] })));
//! ```

use checkpoint_core::equal::ExactNumber;
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// A content hash of a state that does not depend on how it is laid out in memory or text:
/// object keys in sorted order, numbers by kind and exact value. Two states are the same
/// ([`checkpoint_core::equal::same_state`], which tells `-0.0` from `0.0`) exactly when their
/// hashes are, up to 64-bit collisions.
pub fn state_hash(value: &Value) -> i64 {
    fingerprint(value).hash
}

/// A state's content hash and roughly how large its JSON text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// See [`state_hash`].
    pub hash: i64,
    /// About the length of the compact JSON text, in bytes.
    pub size: usize,
}

/// The [`state_hash`] of `value` and its approximate size, in one walk.
pub fn fingerprint(value: &Value) -> Fingerprint {
    let mut hasher = Xxh3::new();
    let mut size = 0usize;
    feed(&mut hasher, &mut size, value);
    Fingerprint {
        // Stored as BIGINT: the bits, reinterpreted.
        hash: hasher.digest().cast_signed(),
        size,
    }
}

fn feed(hasher: &mut Xxh3, size: &mut usize, value: &Value) {
    // Scalars and punctuation, roughly as JSON text spells them.
    *size = size.saturating_add(match value {
        Value::String(s) => s.len().saturating_add(2),
        Value::Object(map) => map.keys().map(|k| k.len() + 4).sum::<usize>() + 2,
        Value::Array(items) => items.len() + 2,
        _ => 5,
    });
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(b) => hasher.update(if *b { b"t" } else { b"f" }),
        // The number's identity as `equal` defines it (kind and exact bits), in the bytes
        // stored hashes have always been made of.
        Value::Number(n) => match ExactNumber::of(n) {
            ExactNumber::Unsigned(u) => {
                hasher.update(b"u");
                hasher.update(&u.to_le_bytes());
            }
            ExactNumber::Negative(i) => {
                hasher.update(b"i");
                hasher.update(&i.to_le_bytes());
            }
            ExactNumber::Float(bits) => {
                hasher.update(b"d");
                hasher.update(&bits.to_le_bytes());
            }
        },
        Value::String(s) => {
            hasher.update(b"s");
            hasher.update(&(s.len() as u64).to_le_bytes());
            hasher.update(s.as_bytes());
        }
        Value::Array(items) => {
            hasher.update(b"a");
            hasher.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(hasher, size, item);
            }
        }
        Value::Object(map) => {
            hasher.update(b"o");
            hasher.update(&(map.len() as u64).to_le_bytes());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Already sorted unless serde_json's preserve_order is on somewhere in the build.
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            for (key, item) in entries {
                hasher.update(&(key.len() as u64).to_le_bytes());
                hasher.update(key.as_bytes());
                feed(hasher, size, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_hash_follows_equality() {
        let a = json!({"b": [1, 2.5, "x"], "a": {"z": null, "y": true}});
        let b: Value =
            serde_json::from_str(r#"{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}"#).unwrap();
        assert_eq!(state_hash(&a), state_hash(&b));
        for other in [
            json!({"b": [1.0, 2.5, "x"], "a": {"z": null, "y": true}}),
            json!({"b": [1, 2.5, "x"], "a": {"z": null}}),
            json!({"b": [1, 2.5, "x"], "a": {"z": null, "y": false}}),
            json!({"b": [[1], 2.5, "x"], "a": {"z": null, "y": true}}),
            json!({"b": [1, 2.5, "xx"], "a": {"z": null, "y": true}}),
        ] {
            assert_ne!(state_hash(&a), state_hash(&other), "{other}");
        }
        assert_ne!(
            state_hash(&json!(["ab", "c"])),
            state_hash(&json!(["a", "bc"]))
        );
        assert_ne!(state_hash(&json!(-1)), state_hash(&json!(u64::MAX)));
    }

    proptest::proptest! {
        /// The hash and the one definition of equal states agree, on generated documents and on
        /// states that differ by one edge number (`0.0` and `-0.0` among them).
        #[test]
        fn the_hash_follows_same_state(
            a in checkpoint_core::conformance::strategies::json_value(),
            b in checkpoint_core::conformance::strategies::json_value(),
            n in checkpoint_core::conformance::strategies::edge_number(),
            m in checkpoint_core::conformance::strategies::edge_number(),
        ) {
            use checkpoint_core::equal::same_state;
            proptest::prop_assert_eq!(state_hash(&a) == state_hash(&b), same_state(&a, &b));
            let (x, y) = (json!({"t": n, "a": a.clone()}), json!({"t": m, "a": a}));
            proptest::prop_assert_eq!(state_hash(&x) == state_hash(&y), same_state(&x, &y));
        }
    }
}
