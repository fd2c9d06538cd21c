//! The public face of group commit: [`GroupCommit`], its settings, and [`GroupCommitStats`],
//! what it did. The machinery is in `group.rs`.

use checkpoint_core::{Error, Result};

/// How [`PostgresStore`](crate::PostgresStore) coalesces concurrent saves (see `docs/performance.md`, "Group commit").
///
/// On by default. A save waits for nothing when no other save of the store is being written;
/// while one is, the saves that arrive are sent together as soon as it ends, in one statement and
/// one commit, and each caller is answered once that commit is done.
///
/// ```
/// use checkpoint_postgres::{GroupCommit, PostgresOptions};
///
/// let options = PostgresOptions::new("postgres://localhost/app?group_commit=off")?;
/// assert!(!options.group_commit_settings().is_enabled());
/// let tuned = options.group_commit(GroupCommit::default().max_saves(64).max_bytes(1 << 20));
/// assert_eq!(tuned.group_commit_settings().saves_per_group(), 64);
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    pub(crate) enabled: bool,
    pub(crate) max_saves: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) lone_saves_grouped: bool,
}

impl Default for GroupCommit {
    /// On; at most [`GroupCommit::DEFAULT_MAX_SAVES`] saves and
    /// [`GroupCommit::DEFAULT_MAX_BYTES`] per group, one group in flight.
    fn default() -> Self {
        GroupCommit {
            enabled: true,
            max_saves: Self::DEFAULT_MAX_SAVES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_in_flight: 1,
            lone_saves_grouped: false,
        }
    }
}

impl GroupCommit {
    /// Default most saves in one group.
    pub const DEFAULT_MAX_SAVES: usize = 256;
    /// Default most bytes (stored state and metadata) in one group: 8 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;
    /// The ceiling of [`GroupCommit::max_saves`].
    pub const MAX_SAVES: usize = 4_096;
    /// The ceiling of [`GroupCommit::max_bytes`]: well inside the server's 1 GB message limit.
    pub const MAX_BYTES: usize = 256 * 1024 * 1024;
    /// The ceiling of [`GroupCommit::max_in_flight`].
    pub const MAX_IN_FLIGHT: usize = 64;

    /// Every save its own statement and commit.
    pub fn disabled() -> Self {
        GroupCommit {
            enabled: false,
            ..Self::default()
        }
    }

    /// Turns coalescing on or off, keeping the bounds.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Most saves sent in one group, 1 to [`GroupCommit::MAX_SAVES`].
    pub fn max_saves(mut self, n: usize) -> Self {
        self.max_saves = n;
        self
    }

    /// Most bytes of stored state and metadata in one group, 1 to [`GroupCommit::MAX_BYTES`]. A
    /// save larger than this on its own is written alone.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// How many groups may be written at once, each on its own connection, 1 to
    /// [`GroupCommit::MAX_IN_FLIGHT`] (default 1: the next group forms while one is written).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Whether a save that finds nothing in flight is also sent by the group statement, as a
    /// group of one, instead of by the single-row insert (default false), and a prune of one
    /// execution by the group's prune statement. It makes a lone save slower and exists so
    /// that tests can drive every save and prune through the group path.
    pub fn lone_saves_grouped(mut self, on: bool) -> Self {
        self.lone_saves_grouped = on;
        self
    }

    /// Whether saves are coalesced.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Most saves in one group.
    pub fn saves_per_group(&self) -> usize {
        self.max_saves
    }

    /// Most bytes in one group.
    pub fn bytes_per_group(&self) -> usize {
        self.max_bytes
    }

    /// How many groups may be in flight.
    pub fn groups_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Checks every bound.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming `group_commit_max_saves`, `group_commit_max_bytes` or
    /// `group_commit_max_in_flight`.
    pub fn validate(&self) -> Result<()> {
        for (field, value, ceiling) in [
            ("group_commit_max_saves", self.max_saves, Self::MAX_SAVES),
            ("group_commit_max_bytes", self.max_bytes, Self::MAX_BYTES),
            (
                "group_commit_max_in_flight",
                self.max_in_flight,
                Self::MAX_IN_FLIGHT,
            ),
        ] {
            if !(1..=ceiling).contains(&value) {
                return Err(Error::invalid(
                    field,
                    format!("must be between 1 and {ceiling}, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

/// What group commit did so far on one store: how many groups, how large, how often a group
/// had to be split into single saves. See
/// [`PostgresStore::group_commit_stats`](crate::PostgresStore::group_commit_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    groups: u64,
    saves: u64,
    split: u64,
    races: u64,
    direct: u64,
    rerouted: u64,
    prunes: u64,
    /// `sizes[n]`: how many groups held `n` saves.
    sizes: Vec<u64>,
}

impl GroupCommitStats {
    /// Groups written, a save that went out alone at once counting as a group of one (a
    /// group sent again after a lost race counts once).
    pub fn groups(&self) -> u64 {
        self.groups
    }

    /// Saves sent in groups.
    pub fn saves(&self) -> u64 {
        self.saves
    }

    /// Groups the server refused whose saves were then made one by one.
    pub fn split_groups(&self) -> u64 {
        self.split
    }

    /// Times a group of appends was sent again after losing the race for its versions.
    pub fn lost_races(&self) -> u64 {
        self.races
    }

    /// Groups written straight to the one partition their executions started in (the
    /// time-partitioned layout, once the store knows where those executions live).
    pub fn partition_groups(&self) -> u64 {
        self.direct
    }

    /// Groups a partition refused (an execution's start was not what the store had learnt, or
    /// the partition was gone) that were then written through the partitioned table.
    pub fn rerouted_groups(&self) -> u64 {
        self.rerouted
    }

    /// Prunes of one execution that were written together with the others of their group,
    /// in one statement, rather than alone.
    pub fn grouped_prunes(&self) -> u64 {
        self.prunes
    }

    /// The mean number of saves per group (0 before the first group).
    pub fn mean_size(&self) -> f64 {
        if self.groups == 0 {
            0.0
        } else {
            self.saves as f64 / self.groups as f64
        }
    }

    /// The group size that `quantile` (0 to 1) of groups do not exceed (0 before the first
    /// group).
    pub fn size_quantile(&self, quantile: f64) -> usize {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a float cast saturates, and the value is between 0 and the group count"
        )]
        let wanted = (quantile.clamp(0.0, 1.0) * self.groups as f64).ceil() as u64;
        let mut seen = 0u64;
        for (size, count) in self.sizes.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if *count > 0 && seen >= wanted.max(1) {
                return size;
            }
        }
        0
    }

    /// The largest group.
    pub fn largest(&self) -> usize {
        self.sizes.iter().rposition(|count| *count > 0).unwrap_or(0)
    }

    /// What happened between `earlier` (a snapshot of the same store) and this snapshot.
    pub fn since(&self, earlier: &GroupCommitStats) -> GroupCommitStats {
        GroupCommitStats {
            groups: self.groups.saturating_sub(earlier.groups),
            saves: self.saves.saturating_sub(earlier.saves),
            split: self.split.saturating_sub(earlier.split),
            races: self.races.saturating_sub(earlier.races),
            direct: self.direct.saturating_sub(earlier.direct),
            rerouted: self.rerouted.saturating_sub(earlier.rerouted),
            prunes: self.prunes.saturating_sub(earlier.prunes),
            sizes: self
                .sizes
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.sizes.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    pub(crate) fn record(&mut self, size: usize, races: usize, split: bool) {
        self.groups = self.groups.saturating_add(1);
        self.saves = self.saves.saturating_add(size as u64);
        self.races = self.races.saturating_add(races as u64);
        self.split = self.split.saturating_add(u64::from(split));
        if self.sizes.len() <= size {
            self.sizes.resize(size + 1, 0);
        }
        self.sizes[size] = self.sizes[size].saturating_add(1);
    }

    /// The prunes of a group, sent in one statement.
    pub(crate) fn pruned(&mut self, prunes: usize) {
        self.prunes = self.prunes.saturating_add(prunes as u64);
    }

    /// A group written to one partition (`direct`), or refused there and rerouted.
    pub(crate) fn routed(&mut self, direct: bool) {
        if direct {
            self.direct = self.direct.saturating_add(1);
        } else {
            self.rerouted = self.rerouted.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_with_the_field_named() {
        assert!(GroupCommit::default().validate().is_ok());
        for (settings, field) in [
            (
                GroupCommit::default().max_saves(0),
                "group_commit_max_saves",
            ),
            (
                GroupCommit::default().max_saves(GroupCommit::MAX_SAVES + 1),
                "group_commit_max_saves",
            ),
            (
                GroupCommit::default().max_bytes(0),
                "group_commit_max_bytes",
            ),
            (
                GroupCommit::default().max_bytes(GroupCommit::MAX_BYTES + 1),
                "group_commit_max_bytes",
            ),
            (
                GroupCommit::default().max_in_flight(0),
                "group_commit_max_in_flight",
            ),
            (
                GroupCommit::default().max_in_flight(GroupCommit::MAX_IN_FLIGHT + 1),
                "group_commit_max_in_flight",
            ),
        ] {
            let err = settings.validate().unwrap_err();
            assert!(err.is_invalid_field(field), "{err}");
        }
    }

    #[test]
    fn stats_report_sizes_and_differences() {
        let mut stats = GroupCommitStats::default();
        assert_eq!(stats.size_quantile(0.99), 0);
        assert_eq!(stats.mean_size(), 0.0);
        let before = stats.clone();
        for size in [1, 1, 2, 16, 16, 16, 16, 16, 16, 40] {
            stats.record(size, 0, false);
        }
        stats.record(3, 2, true);
        stats.pruned(5);
        assert_eq!(stats.grouped_prunes(), 5);
        assert_eq!(stats.groups(), 11);
        assert_eq!(stats.saves(), 143);
        assert_eq!(stats.largest(), 40);
        assert_eq!(stats.size_quantile(0.5), 16);
        assert_eq!(stats.size_quantile(0.99), 40);
        assert_eq!(stats.size_quantile(0.0), 1);
        assert_eq!(stats.split_groups(), 1);
        assert_eq!(stats.lost_races(), 2);
        let delta = stats.since(&before);
        assert_eq!(delta, stats);
        assert_eq!(stats.since(&stats).groups(), 0);
    }
}
