//! Generated inputs for backends' own property tests.

use proptest::prelude::*;
use serde_json::Value;

/// JSON documents of every kind a state may hold: numbers at their extremes (every `i64`,
/// `u64` and finite `f64`), any text without NUL, arrays and objects (empty keys included)
/// nested four deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[^\u{0}]{0,40}".prop_map(Value::from),
        // Short text of ASCII control and punctuation characters, which need escaping.
        "[\\x01-\\x7f]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map("[^\u{0}]{0,6}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
