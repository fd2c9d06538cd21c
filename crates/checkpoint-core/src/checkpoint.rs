//! The [`Checkpoint`] model: one saved state of one execution.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::Result;

/// The state of an execution saved after one node.
///
/// A checkpoint belongs to one execution (a workflow run; LangGraph calls it a thread) and holds
/// the state as JSON, free-form metadata, and its place in the execution's history: `version`
/// counts from 1 within the execution and `parent_id` names the checkpoint it follows.
///
/// ```
/// use checkpoint_core::Checkpoint;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Cart { items: Vec<String> }
///
/// let cart = Cart { items: vec!["apple".into()] };
/// let cp = Checkpoint::from_state("order-42", "add_item", &cart)?
///     .with_metadata("step", 1);
/// assert_eq!(cp.version, 0); // the store assigns it on save
/// assert_eq!(cp.state_as::<Cart>()?, cart);
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Unique id; [`Checkpoint::new`] makes a time-ordered UUIDv7.
    pub id: String,
    /// The execution (workflow run) this checkpoint belongs to.
    pub execution_id: String,
    /// The node after which the state was saved.
    pub node_name: String,
    /// The saved state.
    pub state: Value,
    /// Free-form metadata; empty when there is none.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The checkpoint this one follows, if any.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// When the checkpoint was made, in UTC with whole microseconds.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Sequence number within the execution, from 1; `0` asks the store to assign the next one.
    #[serde(default)]
    pub version: i64,
}

impl Checkpoint {
    /// A new checkpoint with a fresh UUIDv7 id, the current time, empty metadata, no parent and
    /// version 0 (the store assigns the next version on save).
    pub fn new(
        execution_id: impl Into<String>,
        node_name: impl Into<String>,
        state: impl Into<Value>,
    ) -> Self {
        Checkpoint {
            id: uuid::Uuid::now_v7().to_string(),
            execution_id: execution_id.into(),
            node_name: node_name.into(),
            state: state.into(),
            metadata: Map::new(),
            parent_id: None,
            timestamp: normalize_timestamp(OffsetDateTime::now_utc()),
            version: 0,
        }
    }

    /// A new checkpoint whose state is `state` serialized to JSON.
    ///
    /// # Errors
    /// [`Error::Serialization`](crate::Error::Serialization) when `T` cannot be represented as
    /// JSON (for example a map with non-string keys).
    pub fn from_state<T: Serialize + ?Sized>(
        execution_id: impl Into<String>,
        node_name: impl Into<String>,
        state: &T,
    ) -> Result<Self> {
        Ok(Self::new(
            execution_id,
            node_name,
            serde_json::to_value(state)?,
        ))
    }

    /// The state deserialized as `T`.
    ///
    /// # Errors
    /// [`Error::Serialization`](crate::Error::Serialization) when the stored state does not
    /// have the shape of `T`.
    pub fn state_as<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(T::deserialize(&self.state)?)
    }

    /// Sets one metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the checkpoint this one follows.
    pub fn with_parent(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }

    /// Sets an explicit version: the optimistic lock (see
    /// [`CheckpointStore::save`](crate::CheckpointStore::save)).
    pub fn with_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// Replaces the generated id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The first checkpoint of a new execution forked from this one: a fresh id, version 1,
    /// the current time, the same node, state and metadata, `parent_id` = this checkpoint, and
    /// metadata `source: "fork"` and `forked_from: {checkpoint_id, execution_id, version}`.
    ///
    /// ```
    /// use checkpoint_core::Checkpoint;
    ///
    /// let original = Checkpoint::new("run-1", "plan", serde_json::json!({"x": 1})).with_version(3);
    /// let fork = original.forked_into("run-2");
    /// assert_eq!(fork.version, 1);
    /// assert_eq!(fork.parent_id.as_deref(), Some(original.id.as_str()));
    /// assert_eq!(fork.metadata["source"], "fork");
    /// assert_eq!(fork.metadata["forked_from"]["version"], 3);
    /// ```
    pub fn forked_into(&self, new_execution_id: impl Into<String>) -> Checkpoint {
        let mut metadata = self.metadata.clone();
        metadata.insert(crate::meta::SOURCE.into(), Value::from("fork"));
        metadata.insert(
            crate::meta::FORKED_FROM.into(),
            serde_json::json!({
                "checkpoint_id": self.id,
                "execution_id": self.execution_id,
                "version": self.version,
            }),
        );
        Checkpoint {
            metadata,
            parent_id: Some(self.id.clone()),
            version: 1,
            ..Checkpoint::new(new_execution_id, self.node_name.clone(), self.state.clone())
        }
    }

    /// Sets the timestamp, converted to UTC and truncated to whole microseconds so that it
    /// round-trips exactly through every backend.
    ///
    /// Never panics: an instant that has no UTC form `time` can hold (past the year 9999 or
    /// before -9999 once shifted to UTC) keeps its offset, and a save refuses it with
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) naming `timestamp`.
    pub fn with_timestamp(mut self, timestamp: OffsetDateTime) -> Self {
        self.timestamp = normalize_timestamp(timestamp);
        self
    }
}

/// `timestamp` in UTC, truncated to whole microseconds (the precision PostgreSQL keeps).
///
/// An instant with no UTC form `time` can hold keeps its own offset (truncated all the same):
/// the input rules refuse it, and this function never panics.
pub fn normalize_timestamp(timestamp: OffsetDateTime) -> OffsetDateTime {
    let utc = timestamp
        .checked_to_offset(time::UtcOffset::UTC)
        .unwrap_or(timestamp);
    let micros = utc.nanosecond() / 1_000 * 1_000;
    // Replacing the nanosecond with a value below 1e9 cannot fail.
    utc.replace_nanosecond(micros).unwrap_or(utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn new_checkpoint_has_uuid_v7_and_no_version() {
        let a = Checkpoint::new("e", "n", json!({}));
        let b = Checkpoint::new("e", "n", json!({}));
        let uuid = uuid::Uuid::parse_str(&a.id).expect("a UUID");
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(a.id, b.id);
        assert_eq!(a.version, 0);
        assert!(a.metadata.is_empty());
        assert_eq!(a.parent_id, None);
        assert_eq!(a.timestamp.nanosecond() % 1_000, 0);
        assert_eq!(a.timestamp.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn with_timestamp_truncates_to_microseconds_in_utc() {
        let cp = Checkpoint::new("e", "n", json!(1))
            .with_timestamp(datetime!(2024-05-06 07:08:09.123456789 +02:00));
        assert_eq!(cp.timestamp, datetime!(2024-05-06 05:08:09.123456 UTC));
        assert_eq!(cp.timestamp.offset(), time::UtcOffset::UTC);
    }

    #[test]
    fn typed_state_round_trips() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct S {
            n: u32,
            tags: Vec<String>,
        }
        let s = S {
            n: 3,
            tags: vec!["a".into()],
        };
        let cp = Checkpoint::from_state("e", "n", &s).expect("serializable");
        assert_eq!(cp.state, json!({"n": 3, "tags": ["a"]}));
        assert_eq!(cp.state_as::<S>().expect("same shape"), s);
    }

    #[test]
    fn state_of_wrong_shape_is_a_serialization_error() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            n: u32,
        }
        let cp = Checkpoint::new("e", "n", json!({"n": "three"}));
        let err = cp.state_as::<S>().expect_err("wrong shape");
        assert!(matches!(err, crate::Error::Serialization(_)), "{err:?}");
    }

    #[test]
    fn unserializable_state_is_a_serialization_error() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), "tuple keys are not JSON");
        let err = Checkpoint::from_state("e", "n", &map).expect_err("not JSON");
        assert!(matches!(err, crate::Error::Serialization(_)), "{err:?}");
    }

    #[test]
    fn serde_form_round_trips_and_defaults_optional_fields() {
        let cp = Checkpoint::new("e", "n", json!({"a": [1, 2]}))
            .with_parent("p")
            .with_metadata("k", "v")
            .with_version(4);
        let text = serde_json::to_string(&cp).expect("serialize");
        let back: Checkpoint = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, cp);

        let minimal: Checkpoint = serde_json::from_value(json!({
            "id": "x", "execution_id": "e", "node_name": "n", "state": null,
            "timestamp": "2024-01-02T03:04:05.000006Z"
        }))
        .expect("optional fields default");
        assert!(minimal.metadata.is_empty());
        assert_eq!(minimal.parent_id, None);
        assert_eq!(minimal.version, 0);
    }
}
