//! The conformance suite: one named test per rule of the [`CheckpointStore`] contract, for every
//! backend, ours or yours.
//!
//! Each case is a plain `async fn(Arc<dyn CheckpointStore>)` that panics when the store breaks
//! the rule. [`conformance_tests!`](crate::conformance_tests) turns all of them into
//! `#[tokio::test]`s against a store your expression makes, one fresh, empty store per case:
//!
//! ```ignore
//! // tests/conformance.rs of a backend crate; needs tokio (macros, rt-multi-thread) and
//! // checkpoint-core with the `conformance` feature as dev-dependencies.
//! checkpoint_core::conformance_tests!(async { my_backend::MyStore::new() });
//! ```
//!
//! The expression is evaluated once per case and must give an empty store (for a database, a
//! fresh schema or database per case). The cases run on a multi-threaded runtime so that the
//! concurrency cases race for real.

use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use crate::{Checkpoint, CheckpointStore, Error, Result};

pub mod batch;
pub mod child;
pub mod concurrency;
pub mod executions;
pub mod fork;
pub mod history;
pub mod lease;
pub mod lease_model;
pub mod model;
pub mod page;
pub mod prune;
pub mod read;
pub mod remove;
pub mod save;
pub mod scheduled;
pub mod strategies;
pub mod validation;
pub mod zombie;

/// A shared handle to the store under test.
pub type Store = Arc<dyn CheckpointStore>;

/// Expands to one `#[tokio::test]` per conformance case, inside a module named `conformance`.
///
/// `$make_store` is an expression evaluated in each test (inside that module, which imports
/// `super::*`) whose value is a future resolving to a fresh, empty store. With
/// `unless = $skip`, `$skip` is evaluated first in each test: an `Option<String>` that, when
/// `Some`, is why the store cannot be had here (a tool the test image lacks); the test then
/// prints `skipped:` and the reason, and passes without running the case.
#[macro_export]
macro_rules! conformance_tests {
    ($make_store:expr) => {
        $crate::conformance_tests!($make_store, unless = ::std::option::Option::<String>::None);
    };
    ($make_store:expr, unless = $skip:expr) => {
        $crate::__conformance_cases! { $make_store; $skip;
            save::save_new_checkpoint_gets_version_one,
            save::save_appends_consecutive_versions,
            save::save_with_explicit_version_returns_it,
            save::save_round_trips_every_field,
            save::save_round_trips_unicode,
            save::save_round_trips_nested_json,
            save::save_round_trips_large_state,
            save::save_round_trips_microsecond_timestamps,
            save::save_round_trips_json_scalars_as_state,
            save::save_round_trips_id_of_maximum_length,
            save::save_same_id_replaces_checkpoint,
            save::save_retry_of_append_keeps_its_version,
            save::save_at_taken_version_conflicts,
            save::save_conflict_leaves_stored_checkpoint_untouched,
            save::save_moving_id_to_other_execution_is_refused,
            save::save_existing_id_at_free_version_moves_it,
            save::save_append_after_explicit_gap_continues_from_highest,
            save::loaded_checkpoint_is_an_independent_copy,
            save::save_append_after_the_highest_version_is_refused,
            save::save_round_trips_numbers_of_every_magnitude,
            save::save_numbers_a_jsonb_column_would_change_are_kept_or_refused,
            save::save_negative_zero_is_kept_exactly_or_refused,
            validation::save_rejects_empty_ids,
            validation::save_rejects_overlong_ids,
            validation::save_rejects_nul_in_identifiers,
            validation::save_rejects_nul_in_state_strings,
            validation::save_rejects_nul_in_state_keys,
            validation::save_rejects_nul_in_metadata,
            validation::save_rejects_negative_version,
            validation::save_rejects_state_over_size_limit,
            validation::save_rejects_deeply_nested_state,
            validation::save_rejects_sub_microsecond_timestamp,
            validation::save_rejects_timestamp_outside_years_1_to_9999_in_utc,
            validation::reads_reject_invalid_ids,
            validation::refused_save_stores_nothing,
            read::load_missing_is_not_found,
            read::load_returns_parent_and_metadata,
            read::list_is_ascending_by_version,
            read::list_of_unknown_execution_is_empty,
            read::list_isolates_executions,
            read::latest_returns_highest_version,
            read::latest_of_unknown_execution_is_none,
            read::latest_follows_explicit_higher_version,
            read::load_in_names_the_execution,
            remove::delete_existing_returns_true,
            remove::delete_absent_returns_false,
            remove::delete_twice_is_idempotent,
            remove::delete_keeps_other_checkpoints,
            remove::clear_returns_number_removed,
            remove::clear_unknown_execution_returns_zero,
            remove::clear_keeps_other_executions,
            remove::append_after_clear_starts_at_one,
            page::page_ascending_first_page_has_cursor,
            page::page_ascending_walks_every_checkpoint_once,
            page::page_descending_walks_every_checkpoint_once,
            page::page_after_version_is_exclusive,
            page::page_before_version_is_exclusive,
            page::page_window_between_cursors,
            page::page_empty_window_is_empty,
            page::page_last_page_has_no_cursor,
            page::page_exact_multiple_ends_without_empty_page,
            page::page_filters_node_name,
            page::page_filters_metadata_by_every_key,
            page::page_metadata_filter_compares_whole_values,
            page::page_metadata_filter_without_match_is_empty,
            page::page_filters_combine_with_cursors,
            page::page_rejects_zero_limit,
            page::page_rejects_limit_over_maximum,
            page::page_rejects_negative_cursor,
            page::page_of_unknown_execution_is_empty,
            page::page_isolates_executions,
            batch::batch_assigns_consecutive_versions,
            batch::batch_empty_is_a_no_op,
            batch::batch_spans_executions,
            batch::batch_continues_after_existing_versions,
            batch::batch_conflict_stores_nothing,
            batch::batch_invalid_item_stores_nothing,
            batch::batch_repeated_id_is_refused,
            batch::batch_repeated_explicit_version_conflicts,
            batch::batch_retry_replaces_without_new_versions,
            batch::batch_moving_id_stores_nothing,
            batch::batch_items_round_trip,
            batch::batch_reports_the_first_failure_in_order,
            batch::batch_moving_the_highest_version_down_renumbers_appends,
            executions::executions_summarise_each_execution,
            executions::executions_paginate_by_id,
            executions::executions_of_empty_store_is_empty,
            executions::executions_forget_cleared_executions,
            executions::executions_reject_bad_queries,
            prune::prune_keep_last_trims_every_execution,
            prune::prune_keep_last_for_one_execution,
            prune::prune_older_than_removes_old_checkpoints,
            prune::prune_both_rules_keep_newest_and_recent,
            prune::prune_without_rule_is_refused,
            prune::prune_keep_zero_is_refused,
            prune::prune_with_nothing_to_remove_returns_zero,
            prune::append_after_prune_continues_versions,
            prune::prune_with_lazy_flush_removes_the_same,
            fork::fork_copies_state_and_records_lineage,
            fork::fork_from_an_earlier_checkpoint_then_diverge,
            fork::fork_of_unknown_checkpoint_is_not_found,
            fork::fork_into_existing_execution_conflicts,
            fork::fork_rejects_invalid_ids,
            concurrency::racing_appenders_get_distinct_versions,
            concurrency::racing_writers_for_one_version_one_wins,
            concurrency::concurrent_batches_stay_consecutive,
            concurrency::concurrent_readers_see_whole_checkpoints,
            history::history_of_growing_states_reads_back_whole,
            history::history_replace_in_the_middle_keeps_the_rest,
            history::history_retried_save_in_the_middle_changes_nothing,
            history::history_delete_in_the_middle_keeps_the_rest,
            history::history_moving_a_version_keeps_the_rest,
            history::history_prune_keep_last_leaves_exactly_n,
            history::history_prune_by_age_keeps_the_recent_part,
            history::history_fork_from_the_middle_then_both_go_on,
            history::history_batches_keep_every_checkpoint,
            history::history_clear_then_grow_again,
            history::history_racing_appenders_read_back_whole,
            history::history_states_differing_by_one_edge_number_read_back_exactly,
            lease::lease_first_holder_gets_token_one_and_others_are_refused,
            lease::lease_expired_is_taken_over_with_a_higher_token,
            lease::lease_covers_one_execution,
            lease::lease_renew_extends_and_a_lost_lease_cannot_renew,
            lease::lease_expired_but_not_taken_over_renews,
            lease::lease_release_frees_the_execution,
            lease::lease_take_over_breaks_a_live_lease,
            lease::fenced_writes_with_the_current_token_act_as_unfenced,
            lease::fenced_writes_with_a_lost_token_change_nothing,
            lease::fenced_write_without_a_lease_is_refused,
            lease::fenced_writes_stay_in_their_execution,
            lease::unfenced_writes_ignore_leases,
            lease::lease_input_is_checked,
            lease::lease_racing_acquirers_one_wins,
            lease::fenced_saves_racing_a_takeover_never_land_after_it,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($make_store:expr; $skip:expr; $($module:ident :: $case:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let skip: ::std::option::Option<String> = $skip;
                    if let ::std::option::Option::Some(reason) = skip {
                        ::std::eprintln!("skipped: {reason}");
                        return;
                    }
                    let store = $make_store.await;
                    $crate::conformance::$module::$case(::std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

/// A checkpoint of `execution` after `node` with `state`, version 0.
pub fn checkpoint(execution: &str, node: &str, state: Value) -> Checkpoint {
    Checkpoint::new(execution, node, state)
}

/// Saves `count` checkpoints to `execution` (versions 1..=count, nodes `n1`, `n2`, ...) and
/// returns them as stored.
pub async fn fill(store: &Store, execution: &str, count: usize) -> Vec<Checkpoint> {
    let mut saved = Vec::with_capacity(count);
    for i in 1..=count {
        let mut cp = checkpoint(execution, &format!("n{i}"), serde_json::json!({ "i": i }));
        cp.version = store.save(&cp).await.expect("save while filling");
        saved.push(cp);
    }
    saved
}

/// A timestamp `days` days before now, whole microseconds.
pub fn days_ago(days: i64) -> OffsetDateTime {
    crate::normalize_timestamp(OffsetDateTime::now_utc() - time::Duration::days(days))
}

/// Panics unless `result` is [`Error::InvalidInput`] naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T>, field: &str) {
    match result {
        Err(err) if err.is_invalid_field(field) => {}
        other => panic!("expected InvalidInput for {field}, got {other:?}"),
    }
}

/// Panics unless `result` is [`Error::Backend`] with this `retryable` flag and a message that
/// contains `says` (`""` for any message); returns the error, for the backend's own checks
/// (its SQLSTATE, its source).
///
/// ```
/// use checkpoint_core::conformance::assert_backend;
/// use checkpoint_core::Error;
///
/// let refused: checkpoint_core::Result<()> = Err(Error::Backend {
///     message: "permission denied for table checkpoints".into(),
///     retryable: false,
///     source: "42501".into(),
/// });
/// let err = assert_backend(refused, false, "permission denied");
/// assert!(!err.is_retryable());
/// ```
#[track_caller]
pub fn assert_backend<T: std::fmt::Debug>(result: Result<T>, retryable: bool, says: &str) -> Error {
    match result {
        Err(err @ Error::Backend { .. })
            if err.is_retryable() == retryable && err.to_string().contains(says) =>
        {
            err
        }
        other => panic!("expected Backend (retryable: {retryable}) saying {says:?}, got {other:?}"),
    }
}

/// Panics unless `result` is [`Error::Conflict`] for `execution` at `version`.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(result: Result<T>, execution: &str, version: i64) {
    match result {
        Err(Error::Conflict {
            execution_id,
            version: v,
        }) if execution_id == execution && v == version => {}
        other => panic!("expected Conflict at {execution} v{version}, got {other:?}"),
    }
}

/// Values the suite compares exactly: checkpoints by every field, their states and metadata by
/// [`same_state`](crate::equal::same_state) (so `-0.0` is not `0.0` and `1.0` is not `1`),
/// and whatever holds them element by element.
pub trait Exact: std::fmt::Debug {
    /// Whether `self` and `other` are the same, exactly.
    fn exact(&self, other: &Self) -> bool;
}

impl Exact for Checkpoint {
    fn exact(&self, other: &Self) -> bool {
        crate::equal::same_checkpoint(self, other)
    }
}

impl Exact for Value {
    fn exact(&self, other: &Self) -> bool {
        crate::equal::same_state(self, other)
    }
}

impl Exact for crate::Page {
    fn exact(&self, other: &Self) -> bool {
        self.next_cursor == other.next_cursor && self.items.exact(&other.items)
    }
}

impl Exact for crate::ExecutionSummary {
    fn exact(&self, other: &Self) -> bool {
        self == other
    }
}

impl<T: Exact> Exact for [T] {
    fn exact(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a.exact(b))
    }
}

impl<T: Exact> Exact for Vec<T> {
    fn exact(&self, other: &Self) -> bool {
        self.as_slice().exact(other.as_slice())
    }
}

impl<T: Exact> Exact for Option<T> {
    fn exact(&self, other: &Self) -> bool {
        match (self, other) {
            (Some(a), Some(b)) => a.exact(b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl<T: Exact, E: PartialEq + std::fmt::Debug> Exact for std::result::Result<T, E> {
    fn exact(&self, other: &Self) -> bool {
        match (self, other) {
            (Ok(a), Ok(b)) => a.exact(b),
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }
}

/// Panics unless `have` is exactly `want` ([`Exact`]); the message shows both (their `Debug`
/// forms spell every number as stored, `-0.0` included).
#[track_caller]
pub fn assert_exact<T: Exact + ?Sized>(have: &T, want: &T, context: &str) {
    assert!(
        have.exact(want),
        "{context}: not the same\n have: {have:?}\n want: {want:?}"
    );
}

/// The versions of a list of checkpoints.
pub fn versions(items: &[Checkpoint]) -> Vec<i64> {
    items.iter().map(|cp| cp.version).collect()
}
