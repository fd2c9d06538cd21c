//! The one definition of "equal state": what a store must give back, exactly.
//!
//! serde_json's `==` compares floats as floats, so `0.0 == -0.0`, although the two are
//! different JSON texts and different states for the program that reads them. A store that
//! compared states with `==` could decide that nothing changed and lose the sign; a store that
//! hashed them exactly would then refuse its own rebuilt state. Everything that decides whether
//! two states are the same (the delta diff, the content hash, the conformance suite) uses this
//! module instead:
//!
//! - numbers are equal when they are of the same kind ([`ExactNumber`]: unsigned integer,
//!   negative integer or float) and the same value, floats bit for bit (`-0.0` is not `0.0`,
//!   `1.0` is not `1`);
//! - objects are equal when they hold the same keys with equal values, in any order;
//! - arrays element by element; strings, booleans and null as themselves.
//!
//! Two states are [`same_state`] exactly when serde_json writes them as the same compact text
//! (with `float_roundtrip`, which this workspace enables, every finite float has one shortest
//! text that reads back to the same bits).
//!
//! ```
//! use checkpoint_core::equal::{same_state, ExactNumber};
//! use serde_json::json;
//!
//! assert!(json!(0.0) == json!(-0.0)); // serde_json's looser equality
//! assert!(!same_state(&json!({"t": 0.0}), &json!({"t": -0.0})));
//! assert!(!same_state(&json!(1), &json!(1.0)));
//! assert!(same_state(&json!({"a": 1, "b": [2.5]}), &json!({"b": [2.5], "a": 1})));
//! assert_eq!(ExactNumber::of(&serde_json::Number::from(7u8)), ExactNumber::Unsigned(7));
//! ```

use serde_json::{Map, Number, Value};

use crate::Checkpoint;

/// A JSON number by kind and exact value: the identity the store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExactNumber {
    /// A non-negative integer (serde_json reads every integer from 0 to `u64::MAX` as this).
    Unsigned(u64),
    /// A negative integer.
    Negative(i64),
    /// A float, by its IEEE 754 bits (so `-0.0` and `0.0` differ).
    Float(u64),
}

impl ExactNumber {
    /// The kind and exact value of `number`.
    pub fn of(number: &Number) -> ExactNumber {
        if let Some(u) = number.as_u64() {
            ExactNumber::Unsigned(u)
        } else if let Some(i) = number.as_i64() {
            ExactNumber::Negative(i)
        } else {
            // A JSON number that is neither integer is a float; serde_json holds no NaN.
            ExactNumber::Float(number.as_f64().unwrap_or(f64::NAN).to_bits())
        }
    }
}

/// Whether `a` and `b` are the same state: see the [module documentation](self).
pub fn same_state(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => ExactNumber::of(x) == ExactNumber::of(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_state(x, y))
        }
        (Value::Object(x), Value::Object(y)) => same_map(x, y),
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

/// Whether two JSON objects (metadata, say) hold the same keys with [`same_state`] values.
pub fn same_map(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(key, x)| b.get(key).is_some_and(|y| same_state(x, y)))
}

/// Whether two checkpoints are the same in every field, their state and metadata compared by
/// [`same_state`] (`Checkpoint`'s `==` compares them with serde_json's looser equality).
pub fn same_checkpoint(a: &Checkpoint, b: &Checkpoint) -> bool {
    a == b && same_state(&a.state, &b.state) && same_map(&a.metadata, &b.metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn numbers_differ_by_kind_and_sign() {
        for (a, b) in [
            (json!(0.0), json!(-0.0)),
            (json!(1), json!(1.0)),
            (json!(-1), json!(-1.0)),
            (json!(0), json!(0.0)),
            (json!(0), json!(-0.0)),
            (json!(5e-324), json!(-5e-324)),
        ] {
            assert!(!same_state(&a, &b), "{a} vs {b}");
            assert!(!same_state(
                &json!([{"x": a.clone()}]),
                &json!([{"x": b.clone()}])
            ));
        }
        assert!(same_state(&json!(-0.0), &json!(-0.0)));
        assert!(same_state(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(same_state(&json!(i64::MIN), &json!(i64::MIN)));
    }

    #[test]
    fn kinds_of_value_never_match_each_other() {
        let values = [
            json!(null),
            json!(false),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
        ];
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(same_state(a, b), i == j, "{a} vs {b}");
            }
        }
    }

    fn text(value: &Value) -> String {
        serde_json::to_string(value).expect("JSON values serialize")
    }

    proptest! {
        /// The definition is the one of the stored text: equal exactly when written the same,
        /// for generated documents and for a document against a copy with one number changed.
        #[test]
        fn same_state_is_same_text(
            a in crate::validate::generated::json_value(),
            b in crate::validate::generated::json_value(),
        ) {
            prop_assert_eq!(same_state(&a, &b), text(&a) == text(&b));
            prop_assert!(same_state(&a, &a.clone()));
            let read_back: Value = serde_json::from_str(&text(&a)).expect("own text parses");
            prop_assert!(same_state(&a, &read_back), "{} did not read back", text(&a));
        }

        #[test]
        fn one_changed_number_is_a_change(
            n in crate::validate::generated::edge_number(),
            m in crate::validate::generated::edge_number(),
        ) {
            let (a, b) = (json!({"pad": "x", "t": n}), json!({"pad": "x", "t": m}));
            prop_assert_eq!(same_state(&a, &b), text(&a) == text(&b));
        }
    }
}
