//! State versions and migrations: read a state saved by older code as the state this code
//! knows.
//!
//! A state's shape changes with the code (a field added, one renamed, a list split in two),
//! but an execution paused last week holds the old shape. [`Migrations`] names the version
//! this code writes and the steps `vN -> vN+1` that bring an older state up to it. Every
//! checkpoint the runner writes records its state's version in metadata
//! ([`meta::STATE_VERSION`]); a state is upgraded in memory when it is read
//! ([`Migrations::state_as`], [`Migrations::upgrade_checkpoint`], and the readers that take
//! migrations), never rewritten in place: the migrated state is stored as a new checkpoint
//! the next time the execution is saved.
//!
//! ```
//! use checkpoint_core::Checkpoint;
//! use checkpoint_workflow::{meta, Migrations};
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//!
//! #[derive(Debug, Deserialize)]
//! struct Ticket { title: String, tags: Vec<String> }
//!
//! #[derive(Serialize, Deserialize)]
//! struct TicketV1 { title: String }
//!
//! let migrations = Migrations::new(2).step_typed(1, |old: TicketV1| {
//!     Ok(json!({ "title": old.title, "tags": [] }))
//! });
//! // A checkpoint saved by version 1 of the code (no version recorded counts as 1).
//! let saved = Checkpoint::new("t-1", "triage", json!({ "title": "printer" }));
//! let ticket: Ticket = migrations.state_as(&saved)?;
//! assert_eq!((ticket.title.as_str(), ticket.tags.len()), ("printer", 0));
//!
//! // A state saved by newer code than this is refused, naming both versions.
//! let mut newer = saved.clone();
//! newer.metadata.insert(meta::STATE_VERSION.into(), json!(3));
//! let err = migrations.state_as::<Ticket>(&newer).unwrap_err();
//! assert_eq!(err.to_string(), "the state is at version 3, newer than version 2, the newest this code knows");
//! # Ok::<(), checkpoint_workflow::MigrationError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use checkpoint_core::{BoxError, Checkpoint};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::meta;

/// A typed state that declares the version of its shape, for [`Migrations::for_state`].
///
/// ```
/// use checkpoint_workflow::{Migrations, VersionedState};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Order { items: Vec<String>, paid: bool }
///
/// impl VersionedState for Order {
///     const STATE_VERSION: u32 = 2;
/// }
///
/// let migrations = Migrations::for_state::<Order>()
///     .step(1, |mut v| { v["paid"] = false.into(); Ok(v) });
/// assert_eq!(migrations.current(), 2);
/// ```
pub trait VersionedState {
    /// The version of this type's shape: raise it, and register a migration from the
    /// version before, whenever the shape changes.
    const STATE_VERSION: u32;
}

/// Why a stored state cannot be read as the state this code knows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The state was written by newer code: its version is above every version this code
    /// knows. Nothing is guessed; run the newer code, or register its migrations here.
    #[error(
        "the state is at version {found}, newer than version {current}, the newest this code knows"
    )]
    TooNew {
        /// The state's version.
        found: u32,
        /// The newest version this code knows.
        current: u32,
    },

    /// No migration is registered from version `missing` to the next, so a state at version
    /// `found` cannot reach `current`.
    #[error(
        "the state is at version {found} and cannot reach version {current}: \
         no migration from version {missing} to {}", u64::from(*missing) + 1
    )]
    Missing {
        /// The state's version.
        found: u32,
        /// The version this code reads.
        current: u32,
        /// The first step without a migration.
        missing: u32,
    },

    /// A migration returned an error.
    #[error("the migration from version {from} to {} failed: {source}", u64::from(*from) + 1)]
    Failed {
        /// The version the failing step starts from.
        from: u32,
        /// Its error.
        #[source]
        source: BoxError,
    },

    /// The checkpoint's [`meta::STATE_VERSION`] is not a version (a whole number from 0 to
    /// 4294967295).
    #[error("the checkpoint's {key} is not a state version: {value}", key = meta::STATE_VERSION)]
    BadVersion {
        /// What the metadata holds.
        value: Value,
    },

    /// The registry is malformed: two migrations from one version, or a migration from the
    /// current version or above (to a version this code does not know).
    #[error("the migrations are malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },

    /// The state, at the current version, is not the type asked for (a migration that does
    /// not produce it, or a state that never was it).
    #[error("the state at version {version} is not the type asked for: {source}")]
    Decode {
        /// The version the state was read at.
        version: u32,
        /// The deserialisation error.
        #[source]
        source: checkpoint_core::Error,
    },
}

type StepFn = Arc<dyn Fn(Value) -> Result<Value, BoxError> + Send + Sync>;

/// The version of state this code writes, and the steps that bring an older state up to it.
///
/// Steps are registered by the version they start from: `step(1, f)` turns a version 1 state
/// into a version 2 one. A state at version `k` is upgraded by exactly the steps `k`,
/// `k + 1`, ... up to the current version, in order. A checkpoint that records no version
/// (saved before versions were used) is at version 1, or at the version given to
/// [`unversioned_as`](Self::unversioned_as).
///
/// The builder never fails or panics; a malformed registry (two steps from one version, a
/// step from the current version or above) is reported by [`check`](Self::check) and by
/// every read as [`MigrationError::Malformed`].
#[derive(Clone)]
pub struct Migrations {
    current: u32,
    unversioned: u32,
    steps: BTreeMap<u32, StepFn>,
    duplicates: Vec<u32>,
}

impl fmt::Debug for Migrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrations")
            .field("current", &self.current)
            .field("unversioned", &self.unversioned)
            .field("steps_from", &self.steps.keys().collect::<Vec<_>>())
            .field("duplicates", &self.duplicates)
            .finish()
    }
}

impl Default for Migrations {
    /// Version 1 and no steps: what a workflow that never declared a version reads and
    /// writes.
    fn default() -> Self {
        Migrations::new(1)
    }
}

impl Migrations {
    /// This code writes states at version `current`.
    pub fn new(current: u32) -> Self {
        Migrations {
            current,
            unversioned: 1,
            steps: BTreeMap::new(),
            duplicates: Vec::new(),
        }
    }

    /// This code writes `S`, at [`S::STATE_VERSION`](VersionedState::STATE_VERSION).
    pub fn for_state<S: VersionedState>() -> Self {
        Migrations::new(S::STATE_VERSION)
    }

    /// The version of a checkpoint that records none (default 1).
    pub fn unversioned_as(mut self, version: u32) -> Self {
        self.unversioned = version;
        self
    }

    /// Registers the step from version `from` to `from + 1`, over the state's JSON.
    pub fn step<F>(mut self, from: u32, migrate: F) -> Self
    where
        F: Fn(Value) -> Result<Value, BoxError> + Send + Sync + 'static,
    {
        if self.steps.insert(from, Arc::new(migrate)).is_some() {
            self.duplicates.push(from);
        }
        self
    }

    /// Registers the step from version `from` to `from + 1` over typed states: the stored
    /// JSON is read as `Old`, and what `migrate` returns is stored as the next version.
    pub fn step_typed<Old, New, F>(self, from: u32, migrate: F) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
        F: Fn(Old) -> Result<New, BoxError> + Send + Sync + 'static,
    {
        self.step(from, move |value| {
            let old: Old = serde_json::from_value(value)?;
            Ok(serde_json::to_value(migrate(old)?)?)
        })
    }

    /// The version this code writes.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// Whether the registry is well formed.
    ///
    /// # Errors
    /// [`MigrationError::Malformed`] when a version has two steps, or a step starts at the
    /// current version or above.
    pub fn check(&self) -> Result<(), MigrationError> {
        if let Some(from) = self.duplicates.first() {
            return Err(MigrationError::Malformed {
                reason: format!("two migrations from version {from}"),
            });
        }
        if let Some((&from, _)) = self.steps.range(self.current..).next() {
            return Err(MigrationError::Malformed {
                reason: format!(
                    "a migration from version {from}, but this code writes version {}",
                    self.current
                ),
            });
        }
        Ok(())
    }

    /// The version `checkpoint`'s state was written at.
    ///
    /// # Errors
    /// [`MigrationError::BadVersion`] when its metadata holds something else than a version.
    pub fn version_of(&self, checkpoint: &Checkpoint) -> Result<u32, MigrationError> {
        match checkpoint.metadata.get(meta::STATE_VERSION) {
            None => Ok(self.unversioned),
            Some(value) => value
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| MigrationError::BadVersion {
                    value: value.clone(),
                }),
        }
    }

    /// Brings `state`, written at version `found`, up to the current version, one step at a
    /// time. A state at the current version comes back unchanged.
    ///
    /// # Errors
    /// [`MigrationError::TooNew`], [`MigrationError::Missing`] (checked before any step
    /// runs), [`MigrationError::Failed`], [`MigrationError::Malformed`].
    pub fn upgrade(&self, state: Value, found: u32) -> Result<Value, MigrationError> {
        self.check()?;
        if found > self.current {
            return Err(MigrationError::TooNew {
                found,
                current: self.current,
            });
        }
        if let Some(missing) = (found..self.current).find(|v| !self.steps.contains_key(v)) {
            return Err(MigrationError::Missing {
                found,
                current: self.current,
                missing,
            });
        }
        self.steps
            .range(found..self.current)
            .try_fold(state, |state, (&from, step)| {
                step(state).map_err(|source| MigrationError::Failed { from, source })
            })
    }

    /// Upgrades `checkpoint`'s state in memory and records the current version in its
    /// metadata. Returns the version it was written at. The stored checkpoint is not
    /// touched.
    ///
    /// # Errors
    /// As [`upgrade`](Self::upgrade) and [`version_of`](Self::version_of); the checkpoint is
    /// then unchanged.
    pub fn upgrade_checkpoint(&self, checkpoint: &mut Checkpoint) -> Result<u32, MigrationError> {
        let found = self.version_of(checkpoint)?;
        self.check()?;
        if found != self.current {
            checkpoint.state = self.upgrade(checkpoint.state.clone(), found)?;
        }
        checkpoint
            .metadata
            .insert(meta::STATE_VERSION.into(), Value::from(self.current));
        Ok(found)
    }

    /// `checkpoint`'s state as a `T`, upgraded to the current version first.
    ///
    /// # Errors
    /// As [`upgrade`](Self::upgrade); [`MigrationError::Decode`] when the upgraded state is
    /// not a `T`.
    pub fn state_as<T: DeserializeOwned>(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<T, MigrationError> {
        let found = self.version_of(checkpoint)?;
        self.check()?;
        let upgraded;
        let state = if found == self.current {
            &checkpoint.state
        } else {
            upgraded = self.upgrade(checkpoint.state.clone(), found)?;
            &upgraded
        };
        T::deserialize(state).map_err(|e| MigrationError::Decode {
            version: self.current,
            source: checkpoint_core::Error::Serialization(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Versions 1..=current, each step appending the version it starts from to `trail`.
    fn chain(current: u32, skip: Option<u32>) -> Migrations {
        (1..current)
            .filter(|v| Some(*v) != skip)
            .fold(Migrations::new(current), |m, from| {
                m.step(from, move |mut state| {
                    state["trail"]
                        .as_array_mut()
                        .ok_or("no trail")?
                        .push(from.into());
                    Ok(state)
                })
            })
    }

    fn at_version(version: Option<u32>) -> Checkpoint {
        let mut cp = Checkpoint::new("e", "n", json!({ "trail": [] }));
        if let Some(v) = version {
            cp.metadata.insert(meta::STATE_VERSION.into(), v.into());
        }
        cp
    }

    proptest! {
        #[test]
        fn any_version_reaches_the_current_one_through_exactly_its_steps(
            current in 1u32..12, found in 1u32..12,
        ) {
            let migrations = chain(current, None);
            let result = migrations.state_as::<Value>(&at_version(Some(found)));
            if found > current {
                let err = result.unwrap_err();
                prop_assert!(
                    matches!(err, MigrationError::TooNew { found: f, current: c } if f == found && c == current),
                    "{err:?}"
                );
                let text = err.to_string();
                let (found_text, current_text) = (format!("version {found}"), format!("version {current}"));
                prop_assert!(text.contains(&found_text), "{}", text);
                prop_assert!(text.contains(&current_text), "{}", text);
            } else {
                let trail: Vec<u32> = (found..current).collect();
                prop_assert_eq!(result.unwrap(), json!({ "trail": trail }));
            }
        }

        #[test]
        fn a_gap_refuses_every_state_below_it_and_no_step_runs(
            current in 2u32..12, gap_seed in 0u32..100, found in 1u32..12,
        ) {
            let gap = 1 + gap_seed % (current - 1);
            let migrations = chain(current, Some(gap));
            let result = migrations.upgrade(json!({ "trail": [] }), found);
            match result {
                Err(MigrationError::Missing { found: f, current: c, missing }) => {
                    prop_assert!(found <= gap);
                    prop_assert_eq!((f, c, missing), (found, current, gap));
                }
                Err(MigrationError::TooNew { .. }) => prop_assert!(found > current),
                Ok(state) => {
                    prop_assert!(found > gap && found <= current);
                    let trail: Vec<u32> = (found..current).collect();
                    prop_assert_eq!(state, json!({ "trail": trail }));
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn an_unversioned_checkpoint_is_at_version_one_or_the_version_given() {
        let cp = at_version(None);
        assert_eq!(chain(3, None).version_of(&cp).unwrap(), 1);
        let later = chain(3, None).unversioned_as(2);
        assert_eq!(later.version_of(&cp).unwrap(), 2);
        assert_eq!(
            later.state_as::<Value>(&cp).unwrap(),
            json!({ "trail": [2] })
        );
    }

    #[test]
    fn a_version_that_is_not_a_whole_number_is_refused() {
        for bad in [
            json!("2"),
            json!(-1),
            json!(1.5),
            json!(u64::from(u32::MAX) + 1),
        ] {
            let mut cp = at_version(None);
            cp.metadata.insert(meta::STATE_VERSION.into(), bad.clone());
            let err = chain(2, None).state_as::<Value>(&cp).unwrap_err();
            assert!(
                matches!(&err, MigrationError::BadVersion { value } if *value == bad),
                "{err:?}"
            );
        }
    }

    #[test]
    fn malformed_registries_are_refused_on_every_read() {
        let twice = Migrations::new(3).step(1, Ok).step(2, Ok).step(1, Ok);
        let beyond = Migrations::new(2).step(1, Ok).step(2, Ok);
        for migrations in [twice, beyond] {
            assert!(matches!(
                migrations.check(),
                Err(MigrationError::Malformed { .. })
            ));
            for version in [1, 2] {
                let err = migrations
                    .state_as::<Value>(&at_version(Some(version)))
                    .unwrap_err();
                assert!(matches!(err, MigrationError::Malformed { .. }), "{err:?}");
            }
        }
    }

    #[test]
    fn a_failing_step_names_its_versions_and_leaves_the_checkpoint_alone() {
        let migrations = Migrations::new(3)
            .step(1, Ok)
            .step(2, |_| Err("no owner field".into()));
        let mut cp = at_version(Some(1));
        let before = cp.clone();
        let err = migrations.upgrade_checkpoint(&mut cp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the migration from version 2 to 3 failed: no owner field"
        );
        assert_eq!(cp, before);
    }

    #[test]
    fn typed_steps_read_the_old_shape_and_a_wrong_shape_is_a_failed_step() {
        #[derive(serde::Deserialize)]
        struct Old {
            name: String,
        }
        let migrations =
            Migrations::new(2).step_typed(1, |old: Old| Ok(json!({ "names": [old.name] })));
        let mut cp = Checkpoint::new("e", "n", json!({ "name": "ada" }));
        assert_eq!(migrations.upgrade_checkpoint(&mut cp).unwrap(), 1);
        assert_eq!(cp.state, json!({ "names": ["ada"] }));
        assert_eq!(cp.metadata[meta::STATE_VERSION], json!(2));

        let wrong = Checkpoint::new("e", "n", json!({ "nom": "ada" }));
        let err = migrations.state_as::<Value>(&wrong).unwrap_err();
        assert!(
            matches!(err, MigrationError::Failed { from: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_state_that_is_not_the_type_is_a_decode_error_at_the_current_version() {
        let cp = at_version(Some(2));
        let err = chain(2, None).state_as::<Vec<u8>>(&cp).unwrap_err();
        assert!(
            matches!(err, MigrationError::Decode { version: 2, .. }),
            "{err:?}"
        );
        let old = at_version(Some(1));
        let err = chain(2, None).state_as::<Vec<u8>>(&old).unwrap_err();
        assert!(
            matches!(err, MigrationError::Decode { version: 2, .. }),
            "{err:?}"
        );
    }
}
