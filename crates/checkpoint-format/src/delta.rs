//! Structural deltas between two JSON states: what changed, as a short list of operations.
//!
//! The operations address values by a path of object keys and array indices. `diff` walks both
//! states together and emits the smallest edit it knows at each level: a changed key, a removed
//! key, elements appended to or cut from the end of an array, or a whole value replaced. The
//! workload it is made for (an agent conversation gaining a message per step) becomes one
//! `Append` per step, whatever the length of the history.
//!
//! `apply(base, diff(base, target))` is the same state as `target` by the one definition of
//! equal states ([`same_state`]: numbers by kind and exact bits, so `-0.0` is a change from
//! `0.0`), for every pair of states; a property test below checks it on generated documents,
//! comparing exactly. The encoder also proves each delta before writing it, and reads verify
//! every rebuilt state against the content hash recorded when it was saved.
//!
//! ```
//! use checkpoint_format::delta::{apply, diff, Op};
//! use serde_json::json;
//!
//! let base = json!({ "messages": ["hi"], "step": 1 });
//! let target = json!({ "messages": ["hi", "hello"], "step": 2 });
//! let ops = diff(&base, &target);
//! assert!(matches!(ops[0], Op::Append { .. }));
//! let mut rebuilt = base.clone();
//! apply(&mut rebuilt, ops)?;
//! assert_eq!(rebuilt, target);
//! # Ok::<(), checkpoint_format::delta::ApplyError>(())
//! ```

use checkpoint_core::equal::same_state;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step of a path: a key of an object or an index into an array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// An array index.
    Index(usize),
    /// An object key.
    Key(String),
}

/// One edit of a state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The value at `path` becomes `value` (an object key is added when missing).
    Set {
        /// Where.
        path: Vec<Step>,
        /// The new value.
        value: Value,
    },
    /// The object key at the end of `path` is removed.
    Remove {
        /// Where.
        path: Vec<Step>,
    },
    /// `values` are pushed onto the array at `path`.
    Append {
        /// The array.
        path: Vec<Step>,
        /// What is pushed, in order.
        values: Vec<Value>,
    },
    /// The array at `path` is cut to `len` elements.
    Truncate {
        /// The array.
        path: Vec<Step>,
        /// Its new length.
        len: usize,
    },
}

/// Why a delta could not be applied: the base is not the state it was made against.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the stored delta does not fit its base: {0}")]
pub struct ApplyError(
    /// What did not fit.
    pub String,
);

/// The operations that turn `base` into `target` (empty when they are equal).
pub fn diff(base: &Value, target: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut path = Vec::new();
    diff_into(base, target, &mut path, &mut ops);
    ops
}

fn diff_into(base: &Value, target: &Value, path: &mut Vec<Step>, ops: &mut Vec<Op>) {
    // Not serde_json's `==`, which holds `0.0` and `-0.0` equal and would drop the change.
    if same_state(base, target) {
        return;
    }
    match (base, target) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                path.push(Step::Key(key.clone()));
                ops.push(Op::Remove { path: path.clone() });
                path.pop();
            }
            for (key, value) in b {
                path.push(Step::Key(key.clone()));
                match a.get(key) {
                    Some(old) => diff_into(old, value, path, ops),
                    None => ops.push(Op::Set {
                        path: path.clone(),
                        value: value.clone(),
                    }),
                }
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let common = a.len().min(b.len());
            for (i, (old, new)) in a.iter().zip(b).enumerate().take(common) {
                path.push(Step::Index(i));
                diff_into(old, new, path, ops);
                path.pop();
            }
            if b.len() > a.len() {
                ops.push(Op::Append {
                    path: path.clone(),
                    values: b[common..].to_vec(),
                });
            } else if b.len() < a.len() {
                ops.push(Op::Truncate {
                    path: path.clone(),
                    len: b.len(),
                });
            }
        }
        _ => ops.push(Op::Set {
            path: path.clone(),
            value: target.clone(),
        }),
    }
}

/// Applies `ops` to `state` in order.
///
/// # Errors
/// [`ApplyError`] when a path does not exist or has another shape than the delta expects.
pub fn apply(state: &mut Value, ops: Vec<Op>) -> Result<(), ApplyError> {
    for op in ops {
        match op {
            Op::Set { path, value } => match path.split_last() {
                None => *state = value,
                Some((last, parent)) => match (walk(state, parent)?, last) {
                    (Value::Object(map), Step::Key(key)) => {
                        map.insert(key.clone(), value);
                    }
                    (Value::Array(items), Step::Index(i)) => {
                        let slot = items
                            .get_mut(*i)
                            .ok_or_else(|| ApplyError(format!("index {i} is out of range")))?;
                        *slot = value;
                    }
                    _ => return Err(ApplyError("a set addresses the wrong kind of value".into())),
                },
            },
            Op::Remove { path } => {
                let Some((Step::Key(key), parent)) = path.split_last() else {
                    return Err(ApplyError("a remove must end in an object key".into()));
                };
                let removed = match walk(state, parent)? {
                    Value::Object(map) => map.remove(key).is_some(),
                    _ => false,
                };
                if !removed {
                    return Err(ApplyError(format!("key {key:?} is not there to remove")));
                }
            }
            Op::Append { path, values } => match walk(state, &path)? {
                Value::Array(items) => items.extend(values),
                _ => return Err(ApplyError("an append addresses a non-array".into())),
            },
            Op::Truncate { path, len } => match walk(state, &path)? {
                Value::Array(items) if len <= items.len() => items.truncate(len),
                _ => return Err(ApplyError("a truncate addresses a non-array".into())),
            },
        }
    }
    Ok(())
}

fn walk<'a>(mut value: &'a mut Value, path: &[Step]) -> Result<&'a mut Value, ApplyError> {
    for step in path {
        value = match (value, step) {
            (Value::Object(map), Step::Key(key)) => map
                .get_mut(key)
                .ok_or_else(|| ApplyError(format!("key {key:?} is missing")))?,
            (Value::Array(items), Step::Index(i)) => items
                .get_mut(*i)
                .ok_or_else(|| ApplyError(format!("index {i} is out of range")))?,
            _ => {
                return Err(ApplyError(
                    "a path step addresses the wrong kind of value".into(),
                ))
            }
        };
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(base: &Value, target: &Value) -> Value {
        let ops = diff(base, target);
        // Through the stored form, as the store does.
        let text = serde_json::to_vec(&ops).unwrap();
        let ops: Vec<Op> = serde_json::from_slice(&text).unwrap();
        let mut rebuilt = base.clone();
        apply(&mut rebuilt, ops).unwrap();
        rebuilt
    }

    #[test]
    fn a_new_message_is_one_append() {
        let base = json!({"messages": [{"role": "user", "text": "hi"}], "step": 1});
        let target = json!({"messages": [{"role": "user", "text": "hi"}, {"role": "ai", "text": "hello"}], "step": 2});
        let ops = diff(&base, &target);
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(matches!(&ops[0], Op::Append { values, .. } if values.len() == 1));
        assert_eq!(round_trip(&base, &target), target);
    }

    #[test]
    fn equal_states_need_no_operation() {
        let state = json!({"a": [1, 2, {"b": null}]});
        assert!(diff(&state, &state).is_empty());
    }

    #[test]
    fn numbers_of_another_kind_are_changes() {
        // 1 and 1.0 are different JSON texts; the delta keeps the exact one.
        let rebuilt = round_trip(&json!({"n": 1}), &json!({"n": 1.0}));
        assert!(rebuilt["n"].is_f64());
    }

    #[test]
    fn the_sign_of_zero_is_a_change() {
        let pad = "p".repeat(3_000);
        let base = json!({"pad": pad, "t": 0.0, "i": 0});
        let target = json!({"pad": pad, "t": -0.0, "i": 1});
        let ops = diff(&base, &target);
        assert_eq!(ops.len(), 2, "{ops:?}");
        let rebuilt = round_trip(&base, &target);
        assert!(same_state(&rebuilt, &target), "{rebuilt}");
        assert!(rebuilt["t"].as_f64().is_some_and(f64::is_sign_negative));
        assert!(diff(&json!([-0.0]), &json!([0.0])).len() == 1);
    }

    #[test]
    fn a_delta_on_the_wrong_base_is_an_error_not_a_guess() {
        let ops = diff(&json!({"a": [1, 2, 3]}), &json!({"a": [1, 2]}));
        let mut other = json!({"a": 5});
        assert!(apply(&mut other, ops).is_err());
        let ops = diff(&json!({"a": {"b": 1}}), &json!({"a": {}}));
        let mut missing = json!({"a": {}});
        assert!(apply(&mut missing, ops).is_err());
        let mut scalar = json!(3);
        let err = apply(
            &mut scalar,
            vec![Op::Set {
                path: vec![Step::Index(4)],
                value: json!(1),
            }],
        )
        .unwrap_err();
        assert!(err.to_string().contains("wrong kind"), "{err}");
    }

    /// JSON documents of every shape, with keys that look like numbers and values of every kind,
    /// numbers at their edges among them.
    pub(crate) fn document() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            checkpoint_core::conformance::strategies::edge_number(),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z0-9]{0,6}".prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-c0-9]{0,2}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A document and an edited copy of it (so the two share structure, as successive states do).
    fn pair() -> impl Strategy<Value = (Value, Value)> {
        (document(), document(), any::<u64>()).prop_map(|(base, graft, seed)| {
            let mut target = base.clone();
            graft_into(&mut target, graft, seed);
            (base, target)
        })
    }

    fn graft_into(value: &mut Value, graft: Value, seed: u64) {
        match value {
            Value::Object(map) if !map.is_empty() && !seed.is_multiple_of(3) => {
                let key = map
                    .keys()
                    .nth((usize::try_from(seed).unwrap_or(usize::MAX) / 3) % map.len())
                    .cloned();
                if let Some(key) = key {
                    if seed.is_multiple_of(5) {
                        map.remove(&key);
                    } else if let Some(child) = map.get_mut(&key) {
                        graft_into(child, graft, seed / 7);
                    }
                }
            }
            Value::Array(items) if !items.is_empty() && !seed.is_multiple_of(3) => {
                let len = items.len();
                match seed % 4 {
                    0 => items.truncate((usize::try_from(seed).unwrap_or(usize::MAX) / 4) % len),
                    1 => items.push(graft),
                    _ => graft_into(
                        &mut items[(usize::try_from(seed).unwrap_or(usize::MAX) / 4) % len],
                        graft,
                        seed / 7,
                    ),
                }
            }
            _ => *value = graft,
        }
    }

    /// A document and a copy of it in which one number was swapped for an edge number (the
    /// states an execution writes when only a float's sign or kind changes).
    fn one_number_apart() -> impl Strategy<Value = (Value, Value)> {
        (
            document(),
            checkpoint_core::conformance::strategies::edge_number(),
            checkpoint_core::conformance::strategies::edge_number(),
            any::<u64>(),
        )
            .prop_map(|(doc, from, to, seed)| {
                let mut base = doc.clone();
                graft_into(&mut base, from, seed);
                let mut target = base.clone();
                if let Some(slot) = first_number(&mut target) {
                    *slot = to;
                } else {
                    graft_into(&mut target, to, seed);
                }
                (base, target)
            })
    }

    fn first_number(value: &mut Value) -> Option<&mut Value> {
        match value {
            Value::Number(_) => Some(value),
            Value::Array(items) => items.iter_mut().find_map(first_number),
            Value::Object(map) => map.values_mut().find_map(first_number),
            _ => None,
        }
    }

    /// Exactly the same state, and the same text.
    fn assert_exactly(rebuilt: &Value, target: &Value) -> Result<(), TestCaseError> {
        prop_assert!(same_state(rebuilt, target), "{rebuilt} is not {target}");
        prop_assert_eq!(
            serde_json::to_string(rebuilt).unwrap(),
            serde_json::to_string(target).unwrap()
        );
        Ok(())
    }

    proptest! {
        #[test]
        fn applying_the_diff_rebuilds_the_target((base, target) in pair()) {
            assert_exactly(&round_trip(&base, &target), &target)?;
        }

        #[test]
        fn unrelated_documents_round_trip_too(base in document(), target in document()) {
            assert_exactly(&round_trip(&base, &target), &target)?;
        }

        #[test]
        fn a_state_one_number_apart_round_trips((base, target) in one_number_apart()) {
            assert_exactly(&round_trip(&base, &target), &target)?;
            prop_assert_eq!(diff(&base, &target).is_empty(), same_state(&base, &target));
        }
    }
}
