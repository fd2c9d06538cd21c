//! Leases ([`checkpoint_core::lease`]) in the `checkpoint_leases` table, by SQLite's clock.
//! Every change runs in the caller's immediate transaction, so reading the lease, applying
//! [`next_lease`] and writing it back is atomic across the processes sharing the file, and a
//! fenced write checks its token in the same transaction as the write.

use checkpoint_core::lease::{next_lease, refuse_unleased, LeaseRequest};
use checkpoint_core::{Fence, Lease, Result};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::error::driver;
use crate::row::{from_micros, to_micros};

/// SQLite's clock (`unixepoch('subsec')`, milliseconds), the one every process sharing the
/// file reads.
pub(crate) fn now(conn: &Connection) -> Result<OffsetDateTime> {
    let micros: i64 = conn
        .prepare_cached("SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER)")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(driver)?;
    from_micros("clock", micros)
}

/// The stored lease of `execution_id`, expired or not.
pub(crate) fn stored(conn: &Connection, execution_id: &str) -> Result<Option<Lease>> {
    let row: Option<(String, i64, i64)> = conn
        .prepare_cached(
            "SELECT owner, token, expires_us FROM checkpoint_leases WHERE execution_id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([execution_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(driver)?;
    row.map(|(owner, token, expires)| {
        Ok(Lease::new(
            execution_id,
            owner,
            token,
            from_micros(execution_id, expires)?,
        ))
    })
    .transpose()
}

/// The unexpired lease of `execution_id`.
pub(crate) fn live(conn: &Connection, execution_id: &str) -> Result<Option<Lease>> {
    let now = now(conn)?;
    Ok(stored(conn, execution_id)?.filter(|lease| lease.is_live_at(now)))
}

/// Applies `request` to the lease of `execution_id` and stores the result.
pub(crate) fn change(
    conn: &Connection,
    execution_id: &str,
    request: LeaseRequest<'_>,
) -> Result<Lease> {
    let current = stored(conn, execution_id)?;
    let lease = next_lease(execution_id, current.as_ref(), request, now(conn)?)?;
    let expires = to_micros(lease.expires_at)?;
    conn.prepare_cached(
        "INSERT INTO checkpoint_leases (execution_id, owner, token, expires_us)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (execution_id) DO UPDATE SET
             owner = excluded.owner, token = excluded.token, expires_us = excluded.expires_us",
    )
    .and_then(|mut s| {
        s.execute(rusqlite::params![
            execution_id,
            lease.owner,
            lease.token,
            expires,
        ])
    })
    .map_err(driver)?;
    Ok(lease)
}

/// Refuses an unfenced write of `execution_id` while its lease is unexpired.
pub(crate) fn unleased(conn: &Connection, execution_id: &str) -> Result<()> {
    refuse_unleased(
        execution_id,
        stored(conn, execution_id)?.as_ref(),
        now(conn)?,
    )
}

/// Refuses the write unless `fence` holds its execution's current token.
pub(crate) fn check(conn: &Connection, fence: &Fence) -> Result<()> {
    fence.check(stored(conn, &fence.execution_id)?.map(|lease| (lease.owner, lease.token)))
}
