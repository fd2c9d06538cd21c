//! What a store's integrity check found: [`Verification`], one [`Damage`] per checkpoint that
//! cannot be read back as it was saved.
//!
//! The durable backends offer `verify` (and `checkpointctl verify` runs it): every checkpoint is
//! rebuilt on its own, every link of a delta chain and every content hash is checked, and each
//! damaged checkpoint is reported instead of stopping at the first.

use serde::{Deserialize, Serialize};

/// One checkpoint that cannot be read back as it was saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// The checkpoint's id.
    pub id: String,
    /// Its execution.
    pub execution_id: String,
    /// Its version.
    pub version: i64,
    /// Why it cannot be read: a missing or changed base, a payload that does not decode or
    /// authenticate, a rebuilt state that differs from the one saved, a row that does not
    /// decode.
    pub reason: String,
}

/// The result of checking a store, or one execution of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Executions checked.
    pub executions: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The damaged checkpoints, by execution and version.
    pub damaged: Vec<Damage>,
}

impl Verification {
    /// Whether every checkpoint checked reads back as saved.
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty()
    }

    /// Adds another part's counts and damage (one execution's, say).
    pub fn absorb(&mut self, other: Verification) {
        self.executions = self.executions.saturating_add(other.executions);
        self.checkpoints = self.checkpoints.saturating_add(other.checkpoints);
        self.damaged.extend(other.damaged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_and_damage_is_kept() {
        let mut all = Verification::default();
        assert!(all.is_intact());
        all.absorb(Verification {
            executions: 1,
            checkpoints: 3,
            damaged: vec![],
        });
        all.absorb(Verification {
            executions: 1,
            checkpoints: 2,
            damaged: vec![Damage {
                id: "c".into(),
                execution_id: "e".into(),
                version: 2,
                reason: "r".into(),
            }],
        });
        assert_eq!((all.executions, all.checkpoints), (2, 5));
        assert!(!all.is_intact());
    }
}
