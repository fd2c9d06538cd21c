//! The version each execution had reached when this store last appended to it: a lower bound
//! for the next append's read of the highest version, on the time-partitioned layout.
//!
//! There the server plans every statement once, for any partition, and cannot know that an
//! execution's rows all live in one: it estimates one row per execution and reads
//! `MAX(version)` by aggregating every row of the execution, so an append cost grows with the
//! execution's history (measured: 5.5 ms per save at 2,300 rows, against 0.2 ms at a few). With
//! a floor, the read is `MAX(version) WHERE version >= floor`: the rows added since, usually one.
//!
//! A floor is only a hint. One at or below the highest version gives the exact answer; one
//! above it (the newest rows were deleted meanwhile, by this instance or another) finds no row,
//! and the statement then reads the whole execution, as it would without a floor. So a stale
//! floor costs time, never a wrong version.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;

/// Most executions remembered; the least recently used goes first.
const MAX_ENTRIES: usize = 100_000;

/// The floors of the executions this store appended to most recently.
pub(crate) struct VersionFloors {
    entries: Mutex<LruCache<String, i64>>,
}

impl Default for VersionFloors {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        VersionFloors {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }
}

impl VersionFloors {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, i64>> {
        // Hints only: a map left mid-update by a panic is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The floor of `execution`: 0 (read every row) when none is known.
    pub(crate) fn get(&self, execution: &str) -> i64 {
        self.lock().get(execution).copied().unwrap_or(0)
    }

    /// Records that `execution` holds `version`. An append's version is the highest at its
    /// commit, the best floor; an explicit one only raises the floor.
    pub(crate) fn saved(&self, execution: &str, version: i64, appended: bool) {
        let mut entries = self.lock();
        match entries.get_mut(execution) {
            Some(floor) if !appended => *floor = (*floor).max(version),
            Some(floor) => *floor = version,
            None => {
                entries.put(execution.to_owned(), version);
            }
        }
    }

    /// Forgets `execution`, whose newest rows this store removed.
    pub(crate) fn forget(&self, execution: &str) {
        self.lock().pop(execution);
    }

    /// Forgets every execution (a prune of them all).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever was saved, the floor is the last append's version, raised by any explicit
        /// version above it, and 0 once forgotten.
        #[test]
        fn the_floor_follows_the_last_append_and_explicit_versions_above_it(
            saves in proptest::collection::vec((1..1_000i64, any::<bool>()), 0..40),
            forget_at in proptest::option::of(0..40usize),
        ) {
            let floors = VersionFloors::default();
            let mut expected = 0i64;
            for (i, (version, appended)) in saves.iter().copied().enumerate() {
                if forget_at == Some(i) {
                    floors.forget("e");
                    expected = 0;
                }
                floors.saved("e", version, appended);
                expected = if appended || expected == 0 { version } else { expected.max(version) };
                prop_assert_eq!(floors.get("e"), expected);
            }
            prop_assert_eq!(floors.get("other"), 0);
        }
    }
}
