//! Generated inputs for backends' own property tests.

use proptest::prelude::*;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// JSON documents of every kind a state may hold: numbers at their edges ([`edge_number`]) and
/// anywhere in their ranges (every `i64`, `u64` and finite `f64`), any text without NUL,
/// arrays and objects (empty keys included) nested four deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        edge_number(),
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

/// The numbers where stores go wrong, as JSON: both zeros, subnormals, the extremes of `f64`,
/// whole floats beside the integers of the same value, and floats a JSONB column would turn
/// into integers.
pub fn edge_number() -> impl Strategy<Value = Value> {
    prop::sample::select(EDGE_NUMBERS).prop_map(|n| n.value())
}

/// One entry of [`EDGE_NUMBERS`].
#[derive(Clone, Copy, Debug)]
pub enum Edge {
    /// A float.
    Float(f64),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
}

impl Edge {
    /// The number as JSON.
    pub fn value(self) -> Value {
        match self {
            Edge::Float(f) => Value::from(f),
            Edge::Int(i) => Value::from(i),
            Edge::Uint(u) => Value::from(u),
        }
    }
}

/// The numbers [`edge_number`] draws from.
pub const EDGE_NUMBERS: &[Edge] = &[
    Edge::Float(0.0),
    Edge::Float(-0.0),
    Edge::Int(0),
    Edge::Float(1.0),
    Edge::Int(1),
    Edge::Float(-1.0),
    Edge::Int(-1),
    Edge::Float(5e-324),
    Edge::Float(-5e-324),
    Edge::Float(2.225_073_858_507_201e-308),
    Edge::Float(f64::MIN_POSITIVE),
    Edge::Float(f64::MAX),
    Edge::Float(f64::MIN),
    Edge::Float(f64::EPSILON),
    Edge::Float(1e15),
    Edge::Float(1e16),
    Edge::Float(-1e16),
    Edge::Float(9_007_199_254_740_993.0),
    Edge::Float(1.8e19),
    Edge::Float(0.1),
    Edge::Int(i64::MIN),
    Edge::Int(i64::MAX),
    Edge::Uint(u64::MAX),
];

/// Local date-times across the whole range `time` represents (years -9999 to 9999), at every
/// offset it allows, with sub-microsecond parts: inside and outside the range a store keeps
/// (years 1 to 9999 in UTC, whole microseconds), at its edges, and past them only in UTC
/// (`9999-12-31T12:00-12:00` is 10000-01-01 in UTC).
pub fn timestamp() -> impl Strategy<Value = OffsetDateTime> {
    let (first, last) = (Date::MIN.to_julian_day(), Date::MAX.to_julian_day());
    let year_1 = Date::from_calendar_date(1, Month::January, 1)
        .map(Date::to_julian_day)
        .unwrap_or(first);
    let day = prop_oneof![
        first..=last,
        (year_1 - 2)..=(year_1 + 1),
        (last - 2)..=last,
        Just(first),
    ];
    let offset = prop_oneof![
        Just(0i32),
        -86_399i32..=86_399,
        prop::sample::select(vec![-12 * 3600, 14 * 3600, -(5 * 3600 + 45 * 60)]),
    ];
    let nanos = prop_oneof![
        Just(0u32),
        (0u32..1_000_000).prop_map(|m| m * 1_000),
        0u32..1_000_000_000,
    ];
    (day, 0u32..86_400, nanos, offset).prop_filter_map(
        "representable",
        |(day, second, nanos, offset)| {
            let date = Date::from_julian_day(day).ok()?;
            let time = Time::from_hms_nano(
                u8::try_from(second / 3600).ok()?,
                u8::try_from(second / 60 % 60).ok()?,
                u8::try_from(second % 60).ok()?,
                nanos,
            )
            .ok()?;
            let offset = UtcOffset::from_whole_seconds(offset).ok()?;
            Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
        },
    )
}
