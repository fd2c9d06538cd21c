//! Long histories whose states grow a little each step (an agent conversation gaining a
//! message), under every operation: a backend that stores what changed instead of the whole
//! state (deltas) must still return every remaining checkpoint exactly as it was saved.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::{assert_exact, checkpoint, days_ago, versions, Store};
use crate::{Checkpoint, ListQuery, RetentionPolicy};

/// How long the histories are: longer than a backend's snapshot distance in the tests that
/// run this suite with short chains, short enough to run in a second.
const STEPS: usize = 40;

/// The state after `step` steps of a conversation: one message more per step, and a few
/// fields that change in place.
pub fn conversation(step: usize) -> Value {
    let messages: Vec<Value> = (0..step)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "text": format!("message {i}: {}", "lorem ipsum dolor ".repeat(1 + i % 5)),
            })
        })
        .collect();
    json!({
        "messages": messages,
        "step": step,
        "summary": if step.is_multiple_of(3) { Value::Null } else { json!({"len": step}) },
    })
}

/// Appends `STEPS` checkpoints of a growing conversation to `execution` and returns them as
/// stored.
pub async fn grow(store: &Store, execution: &str, steps: usize) -> Vec<Checkpoint> {
    let mut saved = Vec::with_capacity(steps);
    for step in 1..=steps {
        let mut cp = checkpoint(execution, &format!("n{step}"), conversation(step));
        cp.version = store.save(&cp).await.expect("save while growing");
        saved.push(cp);
    }
    saved
}

/// Every checkpoint of `expected` loads, lists and pages back exactly as given
/// ([`Exact`](super::Exact)).
pub async fn assert_history(store: &Store, execution: &str, expected: &[Checkpoint]) {
    for cp in expected {
        let loaded = store.load(&cp.id).await.expect("load");
        assert_exact(&loaded, cp, &format!("load of version {}", cp.version));
    }
    let mut sorted = expected.to_vec();
    sorted.sort_by_key(|cp| cp.version);
    assert_exact(&store.list(execution).await.expect("list"), &sorted, "list");
    assert_exact(
        &store.latest(execution).await.expect("latest"),
        &sorted.last().cloned(),
        "latest",
    );
    let mut paged = Vec::new();
    let mut query = Some(ListQuery::new(execution).limit(7).descending());
    while let Some(q) = query {
        let page = store.list_page(&q).await.expect("page");
        paged.extend(page.items.iter().cloned());
        query = q.next(&page);
    }
    paged.reverse();
    assert_exact(&paged, &sorted, "descending pages");
}

/// States that differ from their predecessor only by one number at its edge (`0.0` and `-0.0`,
/// `1` and `1.0`, subnormals, extremes), beside a few KB of unchanged text so that a store
/// that saves deltas writes one: each save either reads back exactly, by id, list, latest
/// and page, or is refused as `InvalidInput` on `state` with nothing stored (a store whose
/// column cannot hold that number). No save is acknowledged that cannot be read back.
pub async fn history_states_differing_by_one_edge_number_read_back_exactly(store: Store) {
    let pad = "a long unchanged text beside the number. ".repeat(80);
    let mut saved = Vec::new();
    let numbers = super::strategies::EDGE_NUMBERS;
    // Every number right after every other one (and itself), so each ordered pair meets as
    // base and target once: a de Bruijn sequence of order 2, closed.
    let mut order = de_bruijn_pairs(numbers.len());
    order.push(order[0]);
    for (i, number) in order.into_iter().map(|k| numbers[k]).enumerate() {
        // Half of the states differ by the number alone, half by a counter too.
        let state = if i % 4 < 2 {
            json!({"pad": pad, "t": number.value()})
        } else {
            json!({"pad": pad, "t": number.value(), "i": i})
        };
        let mut cp = checkpoint("e1", "n", state);
        match store.save(&cp).await {
            Ok(version) => {
                cp.version = version;
                let loaded = store
                    .load(&cp.id)
                    .await
                    .expect("an acknowledged save loads");
                assert_exact(&loaded, &cp, &format!("save {i} ({number:?})"));
                saved.push(cp);
            }
            Err(err) => {
                assert!(
                    err.is_invalid_field("state"),
                    "save {i} ({number:?}): {err}"
                );
                assert!(
                    matches!(store.load(&cp.id).await, Err(crate::Error::NotFound { .. })),
                    "a refused save stored nothing"
                );
            }
        }
    }
    assert!(!saved.is_empty(), "every save was refused");
    assert_history(&store, "e1", &saved).await;
}

/// A long history of growing states reads back whole, by id, list, latest and page.
pub async fn history_of_growing_states_reads_back_whole(store: Store) {
    let saved = grow(&store, "e1", STEPS).await;
    assert_eq!(
        versions(&saved),
        (1..=i64::try_from(STEPS).expect("a small count")).collect::<Vec<_>>()
    );
    assert_history(&store, "e1", &saved).await;
}

/// Replacing a checkpoint in the middle of a history (same id, another state) leaves every
/// other checkpoint as it was.
pub async fn history_replace_in_the_middle_keeps_the_rest(store: Store) {
    let mut saved = grow(&store, "e1", STEPS).await;
    let middle = STEPS / 2;
    let mut replaced = saved[middle].clone();
    replaced.state = json!({"replaced": true, "messages": []});
    replaced.version = 0;
    assert_eq!(
        store.save(&replaced).await.unwrap(),
        saved[middle].version,
        "a version-0 replacement keeps its version"
    );
    replaced.version = saved[middle].version;
    saved[middle] = replaced;
    assert_history(&store, "e1", &saved).await;
    // And the history goes on from there.
    let mut next = checkpoint("e1", "after", conversation(STEPS + 1));
    next.version = store.save(&next).await.unwrap();
    saved.push(next);
    assert_history(&store, "e1", &saved).await;
}

/// Replacing a checkpoint with the very same state (a retried save) changes nothing.
pub async fn history_retried_save_in_the_middle_changes_nothing(store: Store) {
    let saved = grow(&store, "e1", STEPS).await;
    for at in [0, STEPS / 3, STEPS - 1] {
        let mut retry = saved[at].clone();
        retry.version = 0;
        assert_eq!(store.save(&retry).await.unwrap(), saved[at].version);
    }
    assert_history(&store, "e1", &saved).await;
}

/// Deleting checkpoints in the middle of a history leaves every other one as it was.
pub async fn history_delete_in_the_middle_keeps_the_rest(store: Store) {
    let mut saved = grow(&store, "e1", STEPS).await;
    for at in [STEPS / 2, 1, STEPS - 3] {
        assert!(store.delete(&saved[at].id).await.unwrap());
        saved.remove(at);
    }
    assert_history(&store, "e1", &saved).await;
}

/// Moving a checkpoint of the middle to a free higher version (an explicit version on its
/// id) leaves every other one as it was.
pub async fn history_moving_a_version_keeps_the_rest(store: Store) {
    let mut saved = grow(&store, "e1", STEPS).await;
    let at = STEPS / 4;
    let moved = saved[at].clone().with_version(1_000);
    assert_eq!(store.save(&moved).await.unwrap(), 1_000);
    saved[at] = moved;
    assert_history(&store, "e1", &saved).await;
}

/// `prune` keep-last N leaves exactly the newest N of a long history, each whole.
pub async fn history_prune_keep_last_leaves_exactly_n(store: Store) {
    let saved = grow(&store, "e1", STEPS).await;
    let other = grow(&store, "e2", 9).await;
    let policy = RetentionPolicy::keep_last(7).for_execution("e1");
    assert_eq!(store.prune(&policy).await.unwrap(), STEPS as u64 - 7);
    assert_history(&store, "e1", &saved[STEPS - 7..]).await;
    assert_history(&store, "e2", &other).await;
    assert_eq!(
        store.prune(&RetentionPolicy::keep_last(3)).await.unwrap(),
        4 + 6
    );
    assert_history(&store, "e1", &saved[STEPS - 3..]).await;
    assert_history(&store, "e2", &other[6..]).await;
}

/// `prune` by age removes the old part of a history and keeps the rest whole.
pub async fn history_prune_by_age_keeps_the_recent_part(store: Store) {
    let mut saved = Vec::new();
    for step in 1..=STEPS {
        let age = if step <= STEPS / 2 { 30 } else { 0 };
        let mut cp = checkpoint("e1", "n", conversation(step)).with_timestamp(days_ago(age));
        cp.version = store.save(&cp).await.unwrap();
        saved.push(cp);
    }
    let policy = RetentionPolicy::older_than(Duration::from_secs(10 * 86_400));
    assert_eq!(store.prune(&policy).await.unwrap(), STEPS as u64 / 2);
    assert_history(&store, "e1", &saved[STEPS / 2..]).await;
}

/// A fork from the middle of a long history starts whole, and both branches go on apart.
pub async fn history_fork_from_the_middle_then_both_go_on(store: Store) {
    let mut saved = grow(&store, "e1", STEPS).await;
    let source = saved[STEPS / 2].clone();
    let fork = store.fork(&source.id, "branch").await.unwrap();
    assert_eq!(fork.state, source.state);
    assert_exact(&store.load(&fork.id).await.unwrap(), &fork, "load");
    let mut branch = vec![fork];
    for step in 0..5 {
        let mut state = source.state.clone();
        state["branch_step"] = json!(step);
        let mut cp = checkpoint("branch", "b", state);
        cp.version = store.save(&cp).await.unwrap();
        branch.push(cp);
        let mut main = checkpoint("e1", "m", conversation(STEPS + 1 + step));
        main.version = store.save(&main).await.unwrap();
        saved.push(main);
    }
    assert_history(&store, "branch", &branch).await;
    assert_history(&store, "e1", &saved).await;
    // Removing the source leaves the fork whole.
    let source_id = saved[STEPS / 2].id.clone();
    assert!(store.delete(&source_id).await.unwrap());
    saved.remove(STEPS / 2);
    assert_history(&store, "branch", &branch).await;
    assert_history(&store, "e1", &saved).await;
}

/// A batch on a long history (appends, a retried item, a replaced one) keeps every checkpoint
/// whole; so does a failing batch, which changes nothing.
pub async fn history_batches_keep_every_checkpoint(store: Store) {
    let mut saved = grow(&store, "e1", STEPS).await;
    let mut retried = saved[STEPS - 1].clone();
    retried.version = 0;
    let mut replaced = saved[STEPS / 2].clone();
    replaced.state = json!({"rewritten": [1, 2, 3]});
    let appended: Vec<Checkpoint> = (1..=3)
        .map(|i| checkpoint("e1", "batch", conversation(STEPS + i)))
        .collect();
    let mut items = vec![retried.clone(), replaced.clone()];
    items.extend(appended.iter().cloned());
    let stored = store.save_batch(&items).await.unwrap();
    let top = i64::try_from(STEPS).expect("a small count");
    assert_eq!(
        stored,
        vec![top, replaced.version, top + 1, top + 2, top + 3]
    );
    saved[STEPS / 2] = replaced;
    for (mut cp, version) in appended.into_iter().zip(top + 1..) {
        cp.version = version;
        saved.push(cp);
    }
    assert_history(&store, "e1", &saved).await;

    // A batch that conflicts at its end stores nothing, the replacement included.
    let mut again = saved[3].clone();
    again.state = json!("never stored");
    let clash = checkpoint("e1", "x", json!(1)).with_version(2);
    assert!(store.save_batch(&[again, clash]).await.is_err());
    assert_history(&store, "e1", &saved).await;
}

/// `clear` of a long history, then a new one under the same execution id.
pub async fn history_clear_then_grow_again(store: Store) {
    grow(&store, "e1", STEPS).await;
    assert_eq!(store.clear("e1").await.unwrap(), STEPS as u64);
    assert!(store.list("e1").await.unwrap().is_empty());
    let again = grow(&store, "e1", 10).await;
    assert_eq!(versions(&again), (1..=10).collect::<Vec<_>>());
    assert_history(&store, "e1", &again).await;
}

/// Tasks appending growing states to one execution at once: every checkpoint reads back as
/// its writer saved it.
pub async fn history_racing_appenders_read_back_whole(store: Store) {
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut saved = Vec::new();
                for step in 1..=10 {
                    let mut state = conversation(step);
                    state["writer"] = json!(t);
                    let mut cp = checkpoint("shared", "n", state);
                    cp.version = store.save(&cp).await.expect("racing save");
                    saved.push(cp);
                }
                saved
            })
        })
        .collect();
    let mut all: BTreeMap<i64, Checkpoint> = BTreeMap::new();
    for task in futures::future::join_all(tasks).await {
        for cp in task.expect("task") {
            assert!(
                all.insert(cp.version, cp).is_none(),
                "a version given twice"
            );
        }
    }
    let expected: Vec<Checkpoint> = all.into_values().collect();
    assert_eq!(versions(&expected), (1..=40).collect::<Vec<_>>());
    assert_history(&store, "shared", &expected).await;
}

/// A cyclic sequence of `0..n` of length `n²` in which every ordered pair `(a, b)` appears once
/// as neighbours (a de Bruijn sequence of order 2, by Lyndon words).
fn de_bruijn_pairs(n: usize) -> Vec<usize> {
    fn walk(t: usize, p: usize, n: usize, a: &mut [usize], out: &mut Vec<usize>) {
        if t > 2 {
            if 2 % p == 0 {
                out.extend_from_slice(&a[1..=p]);
            }
        } else {
            a[t] = a[t - p];
            walk(t + 1, p, n, a, out);
            for j in a[t - p] + 1..n {
                a[t] = j;
                walk(t + 1, t, n, a, out);
            }
        }
    }
    let mut a = vec![0; 3];
    let mut out = Vec::with_capacity(n * n);
    if n > 0 {
        walk(1, 1, n, &mut a, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::de_bruijn_pairs;
    use std::collections::HashSet;

    #[test]
    fn every_ordered_pair_is_neighbours_once() {
        for n in [1, 2, 3, 7, 23] {
            let s = de_bruijn_pairs(n);
            assert_eq!(s.len(), n * n);
            let pairs: HashSet<(usize, usize)> =
                (0..s.len()).map(|i| (s[i], s[(i + 1) % s.len()])).collect();
            assert_eq!(pairs.len(), n * n, "n = {n}");
        }
    }
}
