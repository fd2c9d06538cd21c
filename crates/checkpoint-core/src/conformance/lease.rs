//! Leases and fenced writes: one writer per execution ([`crate::lease`]).

use std::time::Duration;

use serde_json::json;

use super::{assert_exact, assert_invalid, checkpoint, fill, versions, Store};
use crate::{Checkpoint, Error, Fence, Lease, RetentionPolicy};

/// A lease long enough never to expire during a case.
const LONG: Duration = Duration::from_secs(600);

/// A lease short enough to expire after [`wait_past`].
const SHORT: Duration = Duration::from_millis(50);

/// Waits until a [`SHORT`] lease granted before the call has expired by any store's clock.
async fn wait_past() {
    tokio::time::sleep(Duration::from_millis(250)).await;
}

/// Panics unless `result` is [`Error::LeaseLost`] for `fence`, naming `holder` as the current
/// holder (`None`: no lease).
#[track_caller]
fn assert_lost<T: std::fmt::Debug>(
    result: crate::Result<T>,
    fence: &Fence,
    holder: Option<&Lease>,
) {
    match result {
        Err(Error::LeaseLost {
            execution_id,
            token,
            holder: have,
            current_token,
        }) if execution_id == fence.execution_id
            && token == fence.token
            && have.as_deref() == holder.map(|l| l.owner.as_str())
            && current_token == holder.map(|l| l.token) => {}
        other => panic!("expected LeaseLost of {fence:?} to {holder:?}, got {other:?}"),
    }
}

/// Two workers: `a` held the lease and lost it to `b` once it expired. Returns both leases.
async fn taken_over(store: &Store, execution: &str) -> (Lease, Lease) {
    let a = store.acquire(execution, "worker-a", SHORT).await.unwrap();
    wait_past().await;
    let b = store.acquire(execution, "worker-b", LONG).await.unwrap();
    (a, b)
}

/// The first lease of an execution has token 1 and is what `lease` reads; another worker's
/// acquire while it lives is `LeaseHeld` naming it, and so is the holder's own.
pub async fn lease_first_holder_gets_token_one_and_others_are_refused(store: Store) {
    assert_eq!(store.lease("e").await.unwrap(), None);
    let a = store.acquire("e", "worker-a", LONG).await.unwrap();
    assert_eq!(
        (a.execution_id.as_str(), a.owner.as_str(), a.token),
        ("e", "worker-a", 1)
    );
    assert_eq!(store.lease("e").await.unwrap(), Some(a.clone()));
    for owner in ["worker-b", "worker-a"] {
        match store.acquire("e", owner, LONG).await {
            Err(Error::LeaseHeld {
                execution_id,
                owner,
                token,
                expires_at,
            }) => {
                assert_eq!(
                    (execution_id.as_str(), owner.as_str(), token),
                    ("e", "worker-a", 1)
                );
                assert_eq!(expires_at, a.expires_at);
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
    }
    assert_eq!(store.lease("e").await.unwrap(), Some(a));
}

/// An expired lease is taken over with the next token; `lease` no longer reads an expired one.
pub async fn lease_expired_is_taken_over_with_a_higher_token(store: Store) {
    let a = store.acquire("e", "worker-a", SHORT).await.unwrap();
    wait_past().await;
    assert_eq!(store.lease("e").await.unwrap(), None, "expired");
    let b = store.acquire("e", "worker-b", LONG).await.unwrap();
    assert_eq!((b.owner.as_str(), b.token), ("worker-b", a.token + 1));
    assert!(b.expires_at > a.expires_at);
    assert_eq!(store.lease("e").await.unwrap(), Some(b));
}

/// Leases are per execution: holding one leaves every other free.
pub async fn lease_covers_one_execution(store: Store) {
    let a = store.acquire("e1", "worker-a", LONG).await.unwrap();
    let b = store.acquire("e2", "worker-b", LONG).await.unwrap();
    assert_eq!((a.token, b.token), (1, 1));
    assert_eq!(store.lease("e2").await.unwrap(), Some(b));
}

/// Renewal moves the expiry on and keeps the token; a renewal after a takeover is
/// `LeaseLost` naming the new holder and changes nothing.
pub async fn lease_renew_extends_and_a_lost_lease_cannot_renew(store: Store) {
    let a = store.acquire("e", "worker-a", SHORT).await.unwrap();
    let renewed = store.renew(&a, LONG).await.unwrap();
    assert_eq!(
        (renewed.token, renewed.owner.as_str()),
        (a.token, "worker-a")
    );
    assert!(renewed.expires_at > a.expires_at);
    wait_past().await;
    assert_eq!(
        store.lease("e").await.unwrap(),
        Some(renewed.clone()),
        "still held"
    );

    let (old, new) = taken_over(&store, "f").await;
    assert_lost(store.renew(&old, LONG).await, &old.fence(), Some(&new));
    assert_eq!(store.lease("f").await.unwrap(), Some(new));
}

/// A lease that expired unnoticed is renewed as long as nobody took it over.
pub async fn lease_expired_but_not_taken_over_renews(store: Store) {
    let a = store.acquire("e", "worker-a", SHORT).await.unwrap();
    wait_past().await;
    let renewed = store.renew(&a, LONG).await.unwrap();
    assert_eq!(renewed.token, a.token);
    assert_eq!(store.lease("e").await.unwrap(), Some(renewed));
}

/// Release frees the execution at once for the next token; releasing twice is fine; a
/// release after a takeover is `LeaseLost` and leaves the new holder in place.
pub async fn lease_release_frees_the_execution(store: Store) {
    let a = store.acquire("e", "worker-a", LONG).await.unwrap();
    store.release(&a).await.unwrap();
    store.release(&a).await.unwrap();
    assert_eq!(store.lease("e").await.unwrap(), None);
    let b = store.acquire("e", "worker-b", LONG).await.unwrap();
    assert_eq!(b.token, a.token + 1);
    assert_lost(store.release(&a).await, &a.fence(), Some(&b));
    assert_eq!(store.lease("e").await.unwrap(), Some(b));
}

/// An operator takes over a live lease with the next token; the old holder's writes are
/// refused from then on.
pub async fn lease_take_over_breaks_a_live_lease(store: Store) {
    let a = store.acquire("e", "worker-a", LONG).await.unwrap();
    store
        .save_fenced(&a.fence(), &checkpoint("e", "n", json!(1)))
        .await
        .unwrap();
    let op = store.take_over("e", "operator", LONG).await.unwrap();
    assert_eq!((op.owner.as_str(), op.token), ("operator", 2));
    assert_eq!(store.lease("e").await.unwrap(), Some(op.clone()));
    assert_lost(
        store
            .save_fenced(&a.fence(), &checkpoint("e", "n", json!(2)))
            .await,
        &a.fence(),
        Some(&op),
    );
    assert_eq!(versions(&store.list("e").await.unwrap()), vec![1]);
    let free = store.take_over("f", "operator", LONG).await.unwrap();
    assert_eq!(free.token, 1, "an execution without a lease starts at 1");
}

/// Fenced writes with the current token behave as their unfenced forms, and a lease that
/// expired unnoticed still fences nothing until someone takes over.
pub async fn fenced_writes_with_the_current_token_act_as_unfenced(store: Store) {
    let lease = store.acquire("e", "worker-a", SHORT).await.unwrap();
    let fence = lease.fence();
    let mut first = checkpoint("e", "a", json!({"n": 1}));
    first.version = store.save_fenced(&fence, &first).await.unwrap();
    assert_eq!(first.version, 1);
    let batch = vec![
        checkpoint("e", "b", json!({"n": 2})),
        checkpoint("e", "c", json!({"n": 3})),
        checkpoint("e", "d", json!({"n": 4})),
    ];
    assert_eq!(
        store.save_batch_fenced(&fence, &batch).await.unwrap(),
        vec![2, 3, 4]
    );
    assert!(store.delete_fenced(&fence, &batch[0].id).await.unwrap());
    assert!(!store.delete_fenced(&fence, &batch[0].id).await.unwrap());
    assert_eq!(versions(&store.list("e").await.unwrap()), vec![1, 3, 4]);
    wait_past().await;
    assert_eq!(
        store
            .prune_fenced(&fence, &RetentionPolicy::keep_last(2))
            .await
            .unwrap(),
        1,
        "an expired lease nobody took over still writes"
    );
    assert_eq!(versions(&store.list("e").await.unwrap()), vec![3, 4]);
    assert_eq!(store.clear_fenced(&fence).await.unwrap(), 2);
    assert!(store.list("e").await.unwrap().is_empty());

    let source = fill(&store, "src", 2).await;
    let other = store.acquire("g", "worker-a", LONG).await.unwrap();
    let fork = store
        .fork_fenced(&other.fence(), &source[1].id)
        .await
        .unwrap();
    assert_eq!((fork.execution_id.as_str(), fork.version), ("g", 1));
    assert_exact(&store.list("g").await.unwrap(), &vec![fork], "fork");
}

/// Every fenced write with a token that lost to a takeover is `LeaseLost` naming the new
/// holder, and nothing of it is stored or removed.
pub async fn fenced_writes_with_a_lost_token_change_nothing(store: Store) {
    let (old, new) = taken_over(&store, "e").await;
    let mut kept = checkpoint("e", "kept", json!({"by": "b"}));
    kept.version = store.save_fenced(&new.fence(), &kept).await.unwrap();
    let source = fill(&store, "src", 1).await;
    let stale = old.fence();
    let lost = Some(&new);

    assert_lost(
        store
            .save_fenced(&stale, &checkpoint("e", "x", json!(1)))
            .await,
        &stale,
        lost,
    );
    let replace = Checkpoint {
        state: json!("overwritten"),
        ..kept.clone()
    };
    assert_lost(store.save_fenced(&stale, &replace).await, &stale, lost);
    assert_lost(
        store
            .save_batch_fenced(
                &stale,
                &[
                    checkpoint("e", "x", json!(1)),
                    checkpoint("e", "y", json!(2)),
                ],
            )
            .await,
        &stale,
        lost,
    );
    assert_lost(store.delete_fenced(&stale, &kept.id).await, &stale, lost);
    assert_lost(store.clear_fenced(&stale).await, &stale, lost);
    assert_lost(
        store
            .prune_fenced(&stale, &RetentionPolicy::keep_last(1))
            .await,
        &stale,
        lost,
    );
    assert_lost(store.fork_fenced(&stale, &source[0].id).await, &stale, lost);
    assert_exact(
        &store.list("e").await.unwrap(),
        &vec![kept],
        "the new holder's history",
    );
    assert_eq!(store.lease("e").await.unwrap(), Some(new));
}

/// A fence for an execution that has no lease is `LeaseLost` with no holder.
pub async fn fenced_write_without_a_lease_is_refused(store: Store) {
    let fence = Fence::new("e", 1);
    assert_lost(
        store
            .save_fenced(&fence, &checkpoint("e", "n", json!(1)))
            .await,
        &fence,
        None,
    );
    assert_lost(store.clear_fenced(&fence).await, &fence, None);
    assert!(store.list("e").await.unwrap().is_empty());
}

/// A fenced write for another execution than its fence's is refused as input, and so is a
/// prune policy naming another execution; nothing changes.
pub async fn fenced_writes_stay_in_their_execution(store: Store) {
    let lease = store.acquire("e", "worker-a", LONG).await.unwrap();
    let fence = lease.fence();
    let others = fill(&store, "other", 2).await;
    assert_invalid(
        store
            .save_fenced(&fence, &checkpoint("other", "n", json!(1)))
            .await,
        "execution_id",
    );
    assert_invalid(
        store
            .save_batch_fenced(
                &fence,
                &[
                    checkpoint("e", "n", json!(1)),
                    checkpoint("other", "n", json!(2)),
                ],
            )
            .await,
        "execution_id",
    );
    assert_invalid(
        store
            .prune_fenced(
                &fence,
                &RetentionPolicy::keep_last(1).for_execution("other"),
            )
            .await,
        "execution_id",
    );
    assert!(
        !store.delete_fenced(&fence, &others[0].id).await.unwrap(),
        "another execution's id"
    );
    assert_exact(&store.list("other").await.unwrap(), &others, "untouched");
    assert!(store.list("e").await.unwrap().is_empty());
}

/// Writes without a fence keep working while a lease is held.
pub async fn unfenced_writes_ignore_leases(store: Store) {
    let _held = store.acquire("e", "worker-a", LONG).await.unwrap();
    assert_eq!(
        store.save(&checkpoint("e", "n", json!(1))).await.unwrap(),
        1
    );
    assert_eq!(store.clear("e").await.unwrap(), 1);
}

/// Bad lease input is refused by field and changes nothing.
pub async fn lease_input_is_checked(store: Store) {
    assert_invalid(store.acquire("", "w", LONG).await, "execution_id");
    assert_invalid(store.acquire("e", "", LONG).await, "owner");
    assert_invalid(store.acquire("e", "w\0", LONG).await, "owner");
    assert_invalid(store.acquire("e", "w", Duration::ZERO).await, "ttl");
    assert_invalid(
        store
            .take_over("e", "w", Duration::from_secs(400 * 24 * 3600))
            .await,
        "ttl",
    );
    let lease = store.acquire("e", "w", LONG).await.unwrap();
    assert_invalid(store.renew(&lease, Duration::ZERO).await, "ttl");
    let forged = Lease::new("e", "w", 0, lease.expires_at);
    assert_invalid(store.renew(&forged, LONG).await, "token");
    assert_invalid(store.release(&forged).await, "token");
    assert_invalid(
        store
            .save_fenced(&forged.fence(), &checkpoint("e", "n", json!(1)))
            .await,
        "token",
    );
    assert_invalid(store.clear_fenced(&Fence::new("", 1)).await, "execution_id");
    assert_eq!(store.lease("e").await.unwrap(), Some(lease));
    assert!(store.list("e").await.unwrap().is_empty());
}

/// Of workers racing to acquire one free execution exactly one wins, and every other is told
/// who did.
pub async fn lease_racing_acquirers_one_wins(store: Store) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.acquire("e", &format!("worker-{i}"), LONG).await })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(lease) => winners.push(lease),
            Err(Error::LeaseHeld { owner, token, .. }) => refused.push((owner, token)),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let winner = &winners[0];
    assert_eq!(winner.token, 1);
    assert!(refused
        .iter()
        .all(|(owner, token)| owner == &winner.owner && *token == 1));
    assert_eq!(store.lease("e").await.unwrap().as_ref(), Some(winner));
}

/// A stale fenced save racing a takeover is either stored before the takeover or refused:
/// never stored after it.
pub async fn fenced_saves_racing_a_takeover_never_land_after_it(store: Store) {
    let old = store.acquire("e", "worker-a", LONG).await.unwrap();
    let taker = store.clone();
    saves_racing_a_grant(&store, Some(old.fence()), async move {
        taker.take_over("e", "worker-b", LONG).await.unwrap()
    })
    .await;
}

/// Saves to `e`, fenced by `fence` or not, one after another on a task of their own, racing
/// `grant` (a new lease of `e`): those stored are stored before the grant's first save, and
/// every save acknowledged is stored. The saves stop at their first refusal.
async fn saves_racing_a_grant(
    store: &Store,
    fence: Option<Fence>,
    grant: impl std::future::Future<Output = Lease>,
) {
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut stored = Vec::new();
            for i in 0..200 {
                let cp = checkpoint("e", "racing", json!(i));
                let outcome = match &fence {
                    Some(fence) => store.save_fenced(fence, &cp).await,
                    None => store.save(&cp).await,
                };
                match outcome {
                    Ok(version) => stored.push(version),
                    Err(Error::LeaseLost { .. } | Error::LeaseHeld { .. }) => break,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            stored
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let lease = grant.await;
    let mark = store
        .save_fenced(&lease.fence(), &checkpoint("e", "granted", json!("mark")))
        .await
        .unwrap();
    let stored = writer.await.unwrap();
    let history = store.list("e").await.unwrap();
    assert!(
        history
            .iter()
            .all(|cp| cp.node_name == "granted" || cp.version < mark),
        "a racing save landed after the grant: {:?}",
        versions(&history)
    );
    let racing: Vec<i64> = history
        .iter()
        .filter(|cp| cp.node_name == "racing")
        .map(|cp| cp.version)
        .collect();
    assert_eq!(racing, stored, "every acknowledged save is stored");
}

/// For a store set to refuse unleased writes of leased executions (not part of
/// [`conformance_tests!`](crate::conformance_tests), whose stores are not): every unfenced
/// write of an execution whose lease is unexpired is `LeaseHeld` naming the holder and changes
/// nothing; fenced writes, executions without a live lease, and a prune of every execution go
/// on as usual.
pub async fn unleased_writes_are_refused_while_leased(store: Store) {
    let before = fill(&store, "e", 3).await;
    let source = fill(&store, "src", 1).await;
    let lease = store.acquire("e", "worker-a", LONG).await.unwrap();
    let fork_target = store.acquire("f", "worker-a", LONG).await.unwrap();
    let held = |result: crate::Result<()>, what: &str| match result {
        Err(Error::LeaseHeld {
            execution_id,
            owner,
            token,
            ..
        }) => {
            assert_eq!(owner, "worker-a", "{what}");
            assert!(
                (execution_id == "e" && token == lease.token)
                    || (execution_id == "f" && token == fork_target.token),
                "{what}: {execution_id} {token}"
            );
        }
        other => panic!("{what}: expected LeaseHeld, got {other:?}"),
    };
    held(
        store.save(&checkpoint("e", "n", json!(1))).await.map(drop),
        "save",
    );
    let replace = Checkpoint {
        state: json!("replaced"),
        ..before[0].clone()
    };
    held(store.save(&replace).await.map(drop), "replace");
    held(
        store
            .save_batch(&[
                checkpoint("other", "n", json!(1)),
                checkpoint("e", "n", json!(2)),
            ])
            .await
            .map(drop),
        "batch",
    );
    held(store.delete(&before[1].id).await.map(drop), "delete");
    held(store.clear("e").await.map(drop), "clear");
    held(
        store
            .prune(&RetentionPolicy::keep_last(1).for_execution("e"))
            .await
            .map(drop),
        "prune",
    );
    held(store.fork(&source[0].id, "f").await.map(drop), "fork");
    assert_exact(&store.list("e").await.unwrap(), &before, "e unchanged");
    assert!(
        store.list("other").await.unwrap().is_empty(),
        "the batch stored nothing"
    );
    assert!(store.list("f").await.unwrap().is_empty());

    // Fenced writes go on; so do executions without a live lease.
    assert_eq!(
        store
            .save_fenced(&lease.fence(), &checkpoint("e", "n", json!(4)))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .save(&checkpoint("free", "n", json!(1)))
            .await
            .unwrap(),
        1
    );
    store.release(&lease).await.unwrap();
    assert_eq!(
        store.save(&checkpoint("e", "n", json!(5))).await.unwrap(),
        5,
        "released"
    );
    // A prune of every execution is retention, not a writer of one.
    assert!(store.prune(&RetentionPolicy::keep_last(1)).await.unwrap() >= 4);
}

/// For a store set to refuse unleased writes: unfenced saves racing the execution's first
/// acquire either land before it or are refused, never after it.
pub async fn unleased_saves_racing_a_first_acquire_never_land_after_it(store: Store) {
    let acquirer = store.clone();
    saves_racing_a_grant(&store, None, async move {
        acquirer.acquire("e", "worker-a", LONG).await.unwrap()
    })
    .await;
}
