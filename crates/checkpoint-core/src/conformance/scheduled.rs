//! Scheduled retention beside live writers, for a store built with a
//! `RetentionSchedule` of `keep_last(KEEP)`.
//!
//! Not part of [`conformance_tests!`](crate::conformance_tests): a backend with scheduled
//! retention calls [`beside_live_writers`] from its own test, with a store whose schedule is
//! [`schedule`].

use std::time::Duration;

use serde_json::json;

use super::Store;
use crate::retention::RetentionSchedule;
use crate::{Checkpoint, RetentionPolicy};

/// The checkpoints each execution keeps under [`schedule`].
pub const KEEP: u64 = 5;

/// The schedule the store of [`beside_live_writers`] must run: keep the newest [`KEEP`] of
/// each execution, every 40 ms, 1 ms between executions.
pub fn schedule() -> RetentionSchedule {
    RetentionSchedule::new(RetentionPolicy::keep_last(KEEP), Duration::from_millis(40))
        .pause(Duration::from_millis(1))
}

/// The versions `execution` holds, ascending.
async fn versions(store: &Store, execution: &str) -> Vec<i64> {
    store
        .list(execution)
        .await
        .expect("list")
        .iter()
        .map(|cp| cp.version)
        .collect()
}

/// Writers append to their own executions while the store's scheduled retention runs:
/// - no save fails and every acknowledged version is one more than the last;
/// - at every look, each execution holds an unbroken run of versions ending at its newest,
///   never fewer than [`KEEP`] of them once it has that many (nothing outside the policy goes);
/// - once the writers stop, a pass leaves exactly the newest [`KEEP`] of each;
/// - `quiet`, a store of the same data without a schedule, sees the same.
///
/// # Panics
/// When the store breaks one of those rules, or the passes never catch up (20 s).
pub async fn beside_live_writers(store: Store, quiet: Store) {
    const WRITERS: usize = 4;
    const SAVES: i64 = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let execution = format!("scheduled-{w}");
                for step in 1..=SAVES {
                    let cp = Checkpoint::new(&execution, "step", json!({ "w": w, "step": step }));
                    let version = store.save(&cp).await.expect("a save beside retention");
                    assert_eq!(
                        version, step,
                        "appends number on, whatever retention removed"
                    );
                    if step % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                }
            })
        })
        .collect();
    let mut looks = 0;
    while !writers.iter().all(|w| w.is_finished()) {
        for w in 0..WRITERS {
            let held = versions(&quiet, &format!("scheduled-{w}")).await;
            if let (Some(first), Some(last)) = (held.first(), held.last()) {
                let expected: Vec<i64> = (*first..=*last).collect();
                assert_eq!(held, expected, "an unbroken run ending at the newest");
                assert!(
                    u64::try_from(held.len()).unwrap_or(u64::MAX)
                        >= KEEP.min(u64::try_from(*last).unwrap_or(0)),
                    "the newest {KEEP} always stay: {held:?}"
                );
            }
        }
        looks += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for writer in writers {
        writer.await.expect("a writer");
    }
    assert!(looks > 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut settled = true;
        for w in 0..WRITERS {
            let held = versions(&quiet, &format!("scheduled-{w}")).await;
            let newest: Vec<i64> =
                (SAVES - i64::try_from(KEEP).expect("a small count") + 1..=SAVES).collect();
            if held != newest {
                assert!(held.ends_with(&newest), "{held:?}");
                settled = false;
            }
        }
        if settled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scheduled retention never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the store with a schedule (and every clone of it) is dropped, its retention stops:
/// checkpoints `quiet` saves afterwards all stay.
///
/// # Panics
/// When a checkpoint disappears after the drop.
pub async fn stops_when_dropped(store: Store, quiet: Store) {
    drop(store);
    let execution = "after-the-drop";
    for step in 1..=(i64::try_from(KEEP).expect("a small count") + 5) {
        quiet
            .save(&Checkpoint::new(execution, "step", json!({ "step": step })))
            .await
            .expect("save");
    }
    // Several intervals of the schedule.
    tokio::time::sleep(schedule().every() * 5).await;
    assert_eq!(
        versions(&quiet, execution).await.len() as u64,
        KEEP + 5,
        "nothing removed once the store with the schedule is gone"
    );
}
