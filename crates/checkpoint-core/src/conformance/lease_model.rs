//! Generated interleavings of lease operations by several workers on one execution, checked
//! against the rules of [`crate::lease`] as they play out in time.
//!
//! The store's clock decides expiry, so the check never predicts it exactly: it holds each
//! answer to what the times around the calls allow. A lease granted by a call that started at
//! `t0` and returned at `t1` for `ttl` expires between `t0 + ttl` and `t1 + ttl`. So an
//! acquire may take a lease over only once `t0 + ttl` has passed, and must once `t1 + ttl`
//! has (give or take the store clock's resolution). Everything else is exact: tokens rise by
//! one with each new holder; at most one worker holds the lease; a renewal, release or fenced
//! save succeeds exactly when its token is the current one; and the execution holds exactly
//! the fenced saves that were acknowledged.
//!
//! ```ignore
//! proptest::proptest! {
//!     #[test]
//!     fn leases_keep_their_rules(ops in lease_model::ops()) {
//!         runtime().block_on(lease_model::check(Arc::new(MyStore::new_empty()), &ops));
//!     }
//! }
//! ```

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::json;

use super::Store;
use crate::{Checkpoint, Error, Lease};

/// The workers.
const WORKERS: usize = 3;

/// The execution they share.
const EXECUTION: &str = "leased";

/// A lease meant to expire within a sequence.
const SHORT: Duration = Duration::from_millis(40);

/// A lease meant to outlive a sequence.
const LONG: Duration = Duration::from_secs(600);

/// The pause of [`LeaseOp::Wait`]: longer than [`SHORT`].
const WAIT: Duration = Duration::from_millis(60);

/// How far the store's clock may lag the test's (SQLite reads it in milliseconds).
const RESOLUTION: Duration = Duration::from_millis(10);

/// One step of a sequence; `worker` indexes the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseOp {
    /// `acquire`, for a short or a long time.
    Acquire {
        /// Who.
        worker: usize,
        /// A 40 ms lease, or a 600 s one.
        short: bool,
    },
    /// `take_over`, for a long time.
    TakeOver {
        /// Who.
        worker: usize,
    },
    /// `renew` of the last lease the worker was granted.
    Renew {
        /// Who.
        worker: usize,
        /// A 40 ms lease, or a 600 s one.
        short: bool,
    },
    /// `release` of the last lease the worker was granted.
    Release {
        /// Who.
        worker: usize,
    },
    /// `save_fenced` with the last lease the worker was granted.
    Save {
        /// Who.
        worker: usize,
    },
    /// Time passes: every short lease expires.
    Wait,
}

/// Sequences of up to 24 steps.
pub fn ops() -> impl Strategy<Value = Vec<LeaseOp>> {
    let worker = 0..WORKERS;
    let op = prop_oneof![
        3 => (worker.clone(), any::<bool>()).prop_map(|(worker, short)| LeaseOp::Acquire { worker, short }),
        1 => worker.clone().prop_map(|worker| LeaseOp::TakeOver { worker }),
        2 => (worker.clone(), any::<bool>()).prop_map(|(worker, short)| LeaseOp::Renew { worker, short }),
        1 => worker.clone().prop_map(|worker| LeaseOp::Release { worker }),
        4 => worker.prop_map(|worker| LeaseOp::Save { worker }),
        1 => Just(LeaseOp::Wait),
    ];
    prop::collection::vec(op, 1..24)
}

/// The lease as the check knows it.
#[derive(Debug)]
struct Current {
    owner: String,
    token: i64,
    released: bool,
    /// It expires no earlier than this...
    expires_after: Instant,
    /// ...and no later than this.
    expires_before: Instant,
}

fn ttl(short: bool) -> Duration {
    if short {
        SHORT
    } else {
        LONG
    }
}

fn owner(worker: usize) -> String {
    format!("worker-{worker}")
}

/// Runs `ops` on `store` (empty) and panics at the first answer the rules do not allow.
pub async fn check(store: Store, ops: &[LeaseOp]) {
    let mut current: Option<Current> = None;
    let mut granted: [Option<Lease>; WORKERS] = Default::default();
    let mut stored: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let at = format!("step {step} ({op:?}) after {:?}", &ops[..step]);
        let top = current.as_ref().map_or(0, |c| c.token);
        let started = Instant::now();
        match op {
            LeaseOp::Acquire { worker, short } => {
                let answer = store.acquire(EXECUTION, &owner(*worker), ttl(*short)).await;
                let ended = Instant::now();
                match answer {
                    Ok(lease) => {
                        assert_eq!(
                            (lease.token, &lease.owner),
                            (top + 1, &owner(*worker)),
                            "{at}"
                        );
                        if let Some(held) = current.as_ref().filter(|c| !c.released) {
                            assert!(
                                ended + RESOLUTION >= held.expires_after,
                                "taken over while live: {at}"
                            );
                        }
                        current = Some(Current {
                            owner: lease.owner.clone(),
                            token: lease.token,
                            released: false,
                            expires_after: started + ttl(*short),
                            expires_before: ended + ttl(*short),
                        });
                        granted[*worker] = Some(lease);
                    }
                    Err(Error::LeaseHeld { owner, token, .. }) => {
                        let held = current
                            .as_ref()
                            .filter(|c| !c.released)
                            .unwrap_or_else(|| panic!("held, but nobody holds it: {at}"));
                        assert_eq!((&owner, token), (&held.owner, held.token), "{at}");
                        assert!(
                            started < held.expires_before + RESOLUTION,
                            "refused although the lease had expired: {at}"
                        );
                    }
                    Err(other) => panic!("{at}: {other:?}"),
                }
            }
            LeaseOp::TakeOver { worker } => {
                let lease = store
                    .take_over(EXECUTION, &owner(*worker), LONG)
                    .await
                    .unwrap_or_else(|e| panic!("{at}: {e:?}"));
                assert_eq!(lease.token, top + 1, "{at}");
                current = Some(Current {
                    owner: lease.owner.clone(),
                    token: lease.token,
                    released: false,
                    expires_after: started + LONG,
                    expires_before: Instant::now() + LONG,
                });
                granted[*worker] = Some(lease);
            }
            LeaseOp::Renew { worker, short } => {
                let Some(mine) = granted[*worker].clone() else {
                    continue;
                };
                let answer = store.renew(&mine, ttl(*short)).await;
                let ended = Instant::now();
                match (answer, current.as_mut()) {
                    (Ok(lease), Some(held)) if mine.token == held.token => {
                        assert_eq!(
                            (lease.token, &lease.owner),
                            (mine.token, &mine.owner),
                            "{at}"
                        );
                        held.released = false;
                        held.expires_after = started + ttl(*short);
                        held.expires_before = ended + ttl(*short);
                        granted[*worker] = Some(lease);
                    }
                    (answer, held) => assert_lost(answer, &mine, held.as_deref(), &at),
                }
            }
            LeaseOp::Release { worker } => {
                let Some(mine) = granted[*worker].clone() else {
                    continue;
                };
                let answer = store.release(&mine).await;
                match (answer, current.as_mut()) {
                    (Ok(()), Some(held)) if mine.token == held.token => held.released = true,
                    (answer, held) => assert_lost(answer, &mine, held.as_deref(), &at),
                }
            }
            LeaseOp::Save { worker } => {
                let Some(mine) = granted[*worker].clone() else {
                    continue;
                };
                let checkpoint =
                    Checkpoint::new(EXECUTION, owner(*worker), json!({ "step": step }));
                let answer = store.save_fenced(&mine.fence(), &checkpoint).await;
                match (answer, current.as_ref()) {
                    // Expiry alone fences nothing: the token decides.
                    (Ok(_), Some(held)) if mine.token == held.token => stored.push(checkpoint.id),
                    (answer, held) => {
                        assert_lost(answer, &mine, held, &at);
                        refused.push(checkpoint.id);
                    }
                }
            }
            LeaseOp::Wait => tokio::time::sleep(WAIT).await,
        }
    }
    let history: Vec<String> = store
        .list(EXECUTION)
        .await
        .expect("list")
        .into_iter()
        .map(|cp| cp.id)
        .collect();
    assert_eq!(
        history, stored,
        "exactly the acknowledged saves, in order; refused: {refused:?}"
    );
}

/// Panics unless `answer` is `LeaseLost` for `mine`, naming `held` as the current lease.
#[track_caller]
fn assert_lost<T: std::fmt::Debug>(
    answer: crate::Result<T>,
    mine: &Lease,
    held: Option<&Current>,
    at: &str,
) {
    match answer {
        Err(Error::LeaseLost {
            token,
            holder,
            current_token,
            ..
        }) => {
            assert_eq!(token, mine.token, "{at}");
            assert_eq!(holder.as_deref(), held.map(|h| h.owner.as_str()), "{at}");
            assert_eq!(current_token, held.map(|h| h.token), "{at}");
        }
        other => panic!(
            "expected LeaseLost of token {}: {at}: {other:?}",
            mine.token
        ),
    }
}
