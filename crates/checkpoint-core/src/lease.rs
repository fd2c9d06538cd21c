//! Leases with fencing tokens: one writer per execution.
//!
//! A worker that runs an execution [`acquire`](crate::CheckpointStore::acquire)s its lease for
//! a time to live, [`renew`](crate::CheckpointStore::renew)s it while it works, and writes
//! through the `*_fenced` methods with the lease's [`Fence`]. Every new holder gets a higher
//! token, and a fenced write whose token is not the execution's current one is refused with
//! [`Error::LeaseLost`] and changes nothing. So a worker that paused
//! (a GC pause, a stopped VM, a partition) past its expiry and comes back after another took
//! over cannot write any more.
//!
//! # Unleased writes
//! Writes without a fence are not checked against leases, unless the store is set to refuse
//! them (`MemoryStore::refusing_unleased_writes`, `SqliteOptions::refuse_unleased_writes`,
//! `PostgresOptions::refuse_unleased_writes`): then an unfenced save, batch, delete, clear,
//! prune of one execution or fork into an execution whose lease is unexpired is refused with
//! [`Error::LeaseHeld`] and changes nothing. A prune of every execution (retention) is not
//! refused.
//!
//! # Time
//! Expiry is decided by the store's clock alone: PostgreSQL's `now()`, SQLite's clock, the
//! process clock of the memory store. Clients never compare their clocks with each other or
//! with the store's, so clock skew between workers changes nothing. A holder should renew well
//! before its time to live has passed by its own clock: a lease can expire early from its
//! holder's point of view when a renewal is slow to arrive. Expiry alone fences nothing: it
//! only lets another worker take the lease over, and that takeover raises the token. A holder
//! whose lease expired unnoticed keeps writing until someone takes over, and then every write
//! it makes is refused.
//!
//! ```
//! use std::time::Duration;
//! use checkpoint_core::{Checkpoint, CheckpointStore, Error};
//!
//! async fn run(store: &dyn CheckpointStore) -> checkpoint_core::Result<()> {
//!     let lease = store.acquire("run-1", "worker-a", Duration::from_secs(30)).await?;
//!     let step = Checkpoint::new("run-1", "plan", serde_json::json!({"todo": 3}));
//!     match store.save_fenced(&lease.fence(), &step).await {
//!         Ok(_) => {}
//!         Err(Error::LeaseLost { holder, .. }) => println!("taken over by {holder:?}"),
//!         Err(other) => return Err(other),
//!     }
//!     store.release(&lease).await?;
//!     Ok(())
//! }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::validate::check_id;

/// The shortest time to live a lease may ask for.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(1);

/// The longest time to live a lease may ask for: one year.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

/// One execution's lease, as the store granted or renewed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Lease {
    /// The execution it covers.
    pub execution_id: String,
    /// Who holds it, as given to [`acquire`](crate::CheckpointStore::acquire).
    pub owner: String,
    /// The fencing token: 1 for an execution's first holder, one more for each holder after.
    pub token: i64,
    /// When it expires, by the store's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Lease {
    /// A lease as a store read or granted it.
    pub fn new(
        execution_id: impl Into<String>,
        owner: impl Into<String>,
        token: i64,
        expires_at: OffsetDateTime,
    ) -> Self {
        Lease {
            execution_id: execution_id.into(),
            owner: owner.into(),
            token,
            expires_at,
        }
    }

    /// What a fenced write carries.
    pub fn fence(&self) -> Fence {
        Fence {
            execution_id: self.execution_id.clone(),
            token: self.token,
        }
    }
}

/// What a fenced write carries: the execution and the token its writer holds. The store
/// refuses the write unless the token is the execution's current one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Fence {
    /// The execution the writer holds.
    pub execution_id: String,
    /// The token it holds.
    pub token: i64,
}

impl Fence {
    /// A fence for `execution_id` with `token` (for example one kept across a restart).
    pub fn new(execution_id: impl Into<String>, token: i64) -> Self {
        Fence {
            execution_id: execution_id.into(),
            token,
        }
    }

    /// The [`Error::LeaseLost`] of a write with this fence, given the execution's current
    /// holder, if any.
    pub fn lost(&self, current: Option<(String, i64)>) -> Error {
        let (holder, current_token) = match current {
            Some((owner, token)) => (Some(owner), Some(token)),
            None => (None, None),
        };
        Error::LeaseLost {
            execution_id: self.execution_id.clone(),
            token: self.token,
            holder,
            current_token,
        }
    }

    /// Checks the fence against the execution's current lease (`owner`, `token`), as a store
    /// read it inside the write's transaction.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] unless `current` holds this fence's token.
    pub fn check(&self, current: Option<(String, i64)>) -> Result<()> {
        match current {
            Some((_, token)) if token == self.token => Ok(()),
            other => Err(self.lost(other)),
        }
    }

    /// Checks that a write of `execution_id` may carry this fence.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `execution_id` when it is not the fenced execution.
    pub fn covers(&self, execution_id: &str) -> Result<()> {
        if execution_id == self.execution_id {
            Ok(())
        } else {
            Err(Error::invalid(
                "execution_id",
                format!(
                    "the fence is for execution {}, not {execution_id}",
                    self.execution_id
                ),
            ))
        }
    }
}

/// A change to an execution's lease, as a store's lease methods ask for it. The rules of each
/// live in [`next_lease`], which every backend applies to the record it read inside the
/// change's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseRequest<'a> {
    /// [`acquire`](crate::CheckpointStore::acquire): `ttl` in microseconds, from
    /// [`check_ttl`].
    Acquire {
        /// The new holder.
        owner: &'a str,
        /// The time to live, in microseconds.
        ttl: i64,
    },
    /// [`take_over`](crate::CheckpointStore::take_over).
    TakeOver {
        /// The new holder.
        owner: &'a str,
        /// The time to live, in microseconds.
        ttl: i64,
    },
    /// [`renew`](crate::CheckpointStore::renew) of the lease with `token`.
    Renew {
        /// The token the holder has.
        token: i64,
        /// The time to live from now, in microseconds.
        ttl: i64,
    },
    /// [`release`](crate::CheckpointStore::release) of the lease with `token`.
    Release {
        /// The token the holder has.
        token: i64,
    },
}

impl Lease {
    /// Whether the lease is unexpired at `now` (by the store's clock).
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now
    }
}

/// The lease of `execution_id` after `request`, given the `current` one and the store's clock
/// `now`: what the store writes and answers. The one definition of the lease rules.
///
/// ```
/// use checkpoint_core::lease::{next_lease, LeaseRequest};
/// use time::macros::datetime;
///
/// let now = datetime!(2026-01-01 00:00 UTC);
/// let first = next_lease("e", None, LeaseRequest::Acquire { owner: "a", ttl: 1_000_000 }, now)?;
/// assert_eq!((first.token, first.owner.as_str()), (1, "a"));
/// let later = datetime!(2026-01-01 00:01 UTC);
/// let second = next_lease("e", Some(&first), LeaseRequest::Acquire { owner: "b", ttl: 1_000_000 }, later)?;
/// assert_eq!((second.token, second.owner.as_str()), (2, "b"));
/// # Ok::<(), checkpoint_core::Error>(())
/// ```
///
/// # Errors
/// - [`Error::LeaseHeld`] for an acquire of a lease that is live at `now`;
/// - [`Error::LeaseLost`] for a renewal or release whose token is not the current one;
/// - [`Error::InvalidInput`] on `ttl` when the expiry is past the clock's range, and on
///   `token` when no token follows the current one.
pub fn next_lease(
    execution_id: &str,
    current: Option<&Lease>,
    request: LeaseRequest<'_>,
    now: OffsetDateTime,
) -> Result<Lease> {
    let expiry = |ttl: i64| {
        now.checked_add(time::Duration::microseconds(ttl))
            .ok_or_else(|| Error::invalid("ttl", "the expiry is past the clock's range"))
    };
    let next_token = || match current {
        None => Ok(1),
        Some(lease) => lease
            .token
            .checked_add(1)
            .ok_or_else(|| Error::invalid("token", "no fencing token follows the current one")),
    };
    let holding = |token: i64| match current {
        Some(lease) if lease.token == token => Ok(lease),
        other => Err(Fence::new(execution_id, token)
            .lost(other.map(|lease| (lease.owner.clone(), lease.token)))),
    };
    match request {
        LeaseRequest::Acquire { owner, ttl } => match current {
            Some(held) if held.is_live_at(now) => Err(Error::LeaseHeld {
                execution_id: execution_id.to_owned(),
                owner: held.owner.clone(),
                token: held.token,
                expires_at: held.expires_at,
            }),
            _ => Ok(Lease::new(execution_id, owner, next_token()?, expiry(ttl)?)),
        },
        LeaseRequest::TakeOver { owner, ttl } => {
            Ok(Lease::new(execution_id, owner, next_token()?, expiry(ttl)?))
        }
        LeaseRequest::Renew { token, ttl } => {
            let held = holding(token)?;
            Ok(Lease::new(execution_id, &held.owner, token, expiry(ttl)?))
        }
        LeaseRequest::Release { token } => {
            let held = holding(token)?;
            Ok(Lease::new(
                execution_id,
                &held.owner,
                token,
                held.expires_at.min(now),
            ))
        }
    }
}

/// Refuses an unfenced write of `execution_id` while `current` is live at `now`, for stores
/// set to refuse unleased writes of leased executions.
///
/// # Errors
/// [`Error::LeaseHeld`] naming the holder.
pub fn refuse_unleased(
    execution_id: &str,
    current: Option<&Lease>,
    now: OffsetDateTime,
) -> Result<()> {
    match current {
        Some(held) if held.is_live_at(now) => Err(Error::LeaseHeld {
            execution_id: execution_id.to_owned(),
            owner: held.owner.clone(),
            token: held.token,
            expires_at: held.expires_at,
        }),
        _ => Ok(()),
    }
}

/// The input rules of [`acquire`](crate::CheckpointStore::acquire) and
/// [`take_over`](crate::CheckpointStore::take_over): ids as everywhere, a time to live from
/// [`MIN_LEASE_TTL`] to [`MAX_LEASE_TTL`]. Returns the time to live in whole microseconds,
/// rounded up.
///
/// # Errors
/// [`Error::InvalidInput`] on `execution_id`, `owner` or `ttl`.
pub fn check_lease_request(execution_id: &str, owner: &str, ttl: Duration) -> Result<i64> {
    check_id("execution_id", execution_id)?;
    check_id("owner", owner)?;
    check_ttl(ttl)
}

/// The time to live in whole microseconds, rounded up, when it is within bounds.
///
/// # Errors
/// [`Error::InvalidInput`] on `ttl`.
pub fn check_ttl(ttl: Duration) -> Result<i64> {
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(Error::invalid(
            "ttl",
            format!("a lease lives from {MIN_LEASE_TTL:?} to {MAX_LEASE_TTL:?}, not {ttl:?}"),
        ));
    }
    let micros = ttl.as_micros() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000));
    i64::try_from(micros).map_err(|_| Error::invalid("ttl", "too long"))
}

/// The input rules of a lease handed back to the store ([`renew`](crate::CheckpointStore::renew),
/// [`release`](crate::CheckpointStore::release)) and of a [`Fence`].
///
/// # Errors
/// [`Error::InvalidInput`] on `execution_id`, or on `token` when it is below 1.
pub fn check_fence(fence: &Fence) -> Result<()> {
    check_id("execution_id", &fence.execution_id)?;
    if fence.token < 1 {
        return Err(Error::invalid("token", "fencing tokens start at 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ttl_is_bounded_and_rounded_up_to_microseconds() {
        assert!(check_ttl(Duration::ZERO)
            .unwrap_err()
            .is_invalid_field("ttl"));
        assert!(check_ttl(MAX_LEASE_TTL + Duration::from_nanos(1))
            .unwrap_err()
            .is_invalid_field("ttl"));
        assert_eq!(check_ttl(Duration::from_nanos(1_000_001)).unwrap(), 1_001);
        assert_eq!(check_ttl(Duration::from_millis(1)).unwrap(), 1_000);
    }

    #[test]
    fn a_fence_holds_only_with_the_current_token() {
        let fence = Fence::new("e", 2);
        assert!(fence.check(Some(("a".into(), 2))).is_ok());
        match fence.check(Some(("b".into(), 3))) {
            Err(Error::LeaseLost {
                execution_id,
                token: 2,
                holder: Some(holder),
                current_token: Some(3),
            }) => assert_eq!((execution_id.as_str(), holder.as_str()), ("e", "b")),
            other => panic!("expected LeaseLost, got {other:?}"),
        }
        assert!(matches!(
            fence.check(None),
            Err(Error::LeaseLost {
                holder: None,
                current_token: None,
                ..
            })
        ));
        assert!(fence.covers("e").is_ok());
        assert!(fence
            .covers("f")
            .unwrap_err()
            .is_invalid_field("execution_id"));
        assert!(check_fence(&Fence::new("e", 0))
            .unwrap_err()
            .is_invalid_field("token"));
        assert!(check_fence(&Fence::new("", 1))
            .unwrap_err()
            .is_invalid_field("execution_id"));
    }

    #[test]
    fn the_rules_of_each_request() {
        let t0 = time::macros::datetime!(2026-01-01 00:00 UTC);
        let sec = 1_000_000;
        let a = next_lease(
            "e",
            None,
            LeaseRequest::Acquire {
                owner: "a",
                ttl: sec,
            },
            t0,
        )
        .unwrap();
        assert_eq!(a.expires_at, t0 + time::Duration::SECOND);
        let held = next_lease(
            "e",
            Some(&a),
            LeaseRequest::Acquire {
                owner: "a",
                ttl: sec,
            },
            t0,
        );
        assert!(matches!(held, Err(Error::LeaseHeld { token: 1, ref owner, .. }) if owner == "a"));
        let over = next_lease(
            "e",
            Some(&a),
            LeaseRequest::TakeOver {
                owner: "op",
                ttl: sec,
            },
            t0,
        )
        .unwrap();
        assert_eq!((over.token, over.owner.as_str()), (2, "op"));
        let stale = next_lease(
            "e",
            Some(&over),
            LeaseRequest::Renew { token: 1, ttl: sec },
            t0,
        );
        assert!(matches!(
            stale,
            Err(Error::LeaseLost {
                current_token: Some(2),
                ..
            })
        ));
        let t1 = t0 + time::Duration::seconds(5);
        let renewed = next_lease(
            "e",
            Some(&over),
            LeaseRequest::Renew { token: 2, ttl: sec },
            t1,
        )
        .unwrap();
        assert_eq!(renewed.expires_at, t1 + time::Duration::SECOND);
        let released =
            next_lease("e", Some(&renewed), LeaseRequest::Release { token: 2 }, t1).unwrap();
        assert!(!released.is_live_at(t1));
        let again =
            next_lease("e", Some(&released), LeaseRequest::Release { token: 2 }, t1).unwrap();
        assert_eq!(again, released);
        let next = next_lease(
            "e",
            Some(&released),
            LeaseRequest::Acquire {
                owner: "b",
                ttl: sec,
            },
            t1,
        )
        .unwrap();
        assert_eq!(next.token, 3);
        let last = Lease::new("e", "z", i64::MAX, t0);
        let none = next_lease(
            "e",
            Some(&last),
            LeaseRequest::TakeOver {
                owner: "b",
                ttl: sec,
            },
            t1,
        );
        assert!(none.unwrap_err().is_invalid_field("token"));
        let far = next_lease(
            "e",
            None,
            LeaseRequest::Acquire {
                owner: "a",
                ttl: sec,
            },
            OffsetDateTime::new_utc(time::Date::MAX, time::macros::time!(23:59:59.5)),
        );
        assert!(far.unwrap_err().is_invalid_field("ttl"));
    }

    proptest! {
        #[test]
        fn every_ttl_in_bounds_is_accepted_and_never_shortened(nanos in 1_000_000u64..=366 * 24 * 3600 * 1_000_000_000u64) {
            let micros = check_ttl(Duration::from_nanos(nanos)).unwrap();
            prop_assert!(u128::try_from(micros).unwrap() * 1_000 >= u128::from(nanos));
            prop_assert!(u128::try_from(micros).unwrap() * 1_000 < u128::from(nanos) + 1_000);
        }
    }
}
