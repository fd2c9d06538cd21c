//! The states a store instance last saved or loaded, one per execution: the bases its next
//! deltas are computed against, without reading them back.
//!
//! Bounded by bytes (the approximate JSON size of the states held) and by entries; the least
//! recently used execution goes first. An entry is only a hint: the backend's write checks, in
//! the transaction that stores the delta, that the row it names still holds a state with the
//! same hash, and stores a full snapshot when it does not (another instance or process
//! replaced or removed it).
//!
//! ```
//! use std::sync::Arc;
//! use checkpoint_format::cache::{CachedState, StateCache};
//!
//! let cache = StateCache::new(1 << 20);
//! let state = serde_json::json!({"n": 1});
//! cache.put("run-1", CachedState { version: 3, hash: 7, depth: 0, state: Arc::new(state), size: 7 });
//! assert_eq!(cache.get("run-1").map(|held| held.version), Some(3));
//! cache.forget("run-1");
//! assert!(cache.get("run-1").is_none());
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;
use serde_json::Value;

/// Most executions remembered, whatever their size.
const MAX_ENTRIES: usize = 100_000;

/// One remembered state: the row of `version` of its execution holds it.
#[derive(Clone, Debug)]
pub struct CachedState {
    /// The version of the row that holds the state.
    pub version: i64,
    /// What the row records as its state hash (the content hash, or a sealed payload's tag):
    /// what a delta on it names as its base.
    pub hash: i64,
    /// The row's depth: deltas between it and its chain's snapshot.
    pub depth: i32,
    /// The state.
    pub state: Arc<Value>,
    /// The state's size as compact JSON, what the budget counts.
    pub size: usize,
}

/// The bounded cache of base states, one per execution (see the module docs).
pub struct StateCache {
    budget: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: LruCache<String, CachedState>,
    bytes: usize,
}

impl std::fmt::Debug for StateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("StateCache")
            .field("budget", &self.budget)
            .field("entries", &inner.entries.len())
            .field("bytes", &inner.bytes)
            .finish()
    }
}

impl StateCache {
    /// A cache holding states of at most `budget` bytes in all; 0 holds nothing.
    pub fn new(budget: usize) -> Self {
        StateCache {
            budget,
            inner: Mutex::new(Inner {
                entries: LruCache::unbounded(),
                bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The cache holds hints only; one left mid-update by a panic is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every state.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.bytes = 0;
    }

    /// The state remembered for `execution`.
    pub fn get(&self, execution: &str) -> Option<CachedState> {
        self.lock().entries.get(execution).cloned()
    }

    /// Remembers `entry` for `execution`, replacing what was there, then evicts the least
    /// recently used entries until the budget holds. A state larger than the whole budget is
    /// not kept.
    pub fn put(&self, execution: &str, entry: CachedState) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.pop(execution) {
            inner.bytes = inner.bytes.saturating_sub(old.size);
        }
        if entry.size > self.budget {
            return;
        }
        inner.bytes = inner.bytes.saturating_add(entry.size);
        inner.entries.put(execution.to_owned(), entry);
        while inner.bytes > self.budget || inner.entries.len() > MAX_ENTRIES {
            match inner.entries.pop_lru() {
                Some((_, old)) => inner.bytes = inner.bytes.saturating_sub(old.size),
                None => break,
            }
        }
    }

    /// Takes the state remembered for `execution` out of the cache when `usable` accepts it:
    /// the caller then owns it (a delta's proof rebuilds the next state on it, in place).
    pub fn take_if(
        &self,
        execution: &str,
        usable: impl FnOnce(&CachedState) -> bool,
    ) -> Option<CachedState> {
        let mut inner = self.lock();
        if !inner.entries.peek(execution).is_some_and(usable) {
            return None;
        }
        let taken = inner.entries.pop(execution)?;
        inner.bytes = inner.bytes.saturating_sub(taken.size);
        Some(taken)
    }

    /// Puts back an entry taken with [`take_if`](Self::take_if) and left unchanged, unless
    /// another was remembered for `execution` meanwhile (it is newer).
    pub fn restore(&self, execution: &str, entry: CachedState) {
        if self.lock().entries.peek(execution).is_none() {
            self.put(execution, entry);
        }
    }

    /// Forgets `execution` (cleared, or its remembered row is gone).
    pub fn forget(&self, execution: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.entries.pop(execution) {
            inner.bytes = inner.bytes.saturating_sub(old.size);
        }
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(version: i64, size: usize) -> CachedState {
        CachedState {
            version,
            hash: version,
            depth: 0,
            state: Arc::new(json!(version)),
            size,
        }
    }

    #[test]
    fn the_least_recently_used_execution_goes_first() {
        let cache = StateCache::new(100);
        cache.put("a", entry(1, 40));
        cache.put("b", entry(1, 40));
        assert!(cache.get("a").is_some()); // a is now the most recent
        cache.put("c", entry(1, 40));
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some());
        assert_eq!(cache.held(), (2, 80));
    }

    #[test]
    fn replacing_and_forgetting_keep_the_byte_count() {
        let cache = StateCache::new(100);
        cache.put("a", entry(1, 40));
        cache.put("a", entry(2, 10));
        assert_eq!(cache.get("a").map(|e| e.version), Some(2));
        assert_eq!(cache.held(), (1, 10));
        cache.forget("a");
        assert_eq!(cache.held(), (0, 0));
    }

    #[test]
    fn taking_an_entry_leaves_the_count_right_and_restoring_never_overwrites() {
        let cache = StateCache::new(100);
        cache.put("a", entry(1, 40));
        assert!(
            cache.take_if("a", |e| e.version > 1).is_none(),
            "refused: stays"
        );
        assert_eq!(cache.held(), (1, 40));
        let taken = cache.take_if("a", |e| e.version == 1).unwrap();
        assert_eq!(cache.held(), (0, 0));
        cache.put("a", entry(2, 10));
        cache.restore("a", taken.clone());
        assert_eq!(
            cache.get("a").map(|e| e.version),
            Some(2),
            "the newer one stays"
        );
        cache.forget("a");
        cache.restore("a", taken);
        assert_eq!(cache.get("a").map(|e| e.version), Some(1));
        assert_eq!(cache.held(), (1, 40));
    }

    #[test]
    fn states_over_the_budget_and_a_zero_budget_hold_nothing() {
        let cache = StateCache::new(100);
        cache.put("a", entry(1, 40));
        cache.put("a", entry(2, 101));
        assert!(cache.get("a").is_none());
        let off = StateCache::new(0);
        off.put("a", entry(1, 1));
        assert!(off.get("a").is_none());
        assert_eq!(off.held(), (0, 0));
    }
}
