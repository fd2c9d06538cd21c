//! Reads: each fetches the rows it wants with every base their states are rebuilt from, in
//! one statement, and returns whole states. `fork` lives here too: it copies a state.

use checkpoint_core::{Checkpoint, Error, IdScope, ListQuery, Order, Page, Result};
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::pool::Row;
use checkpoint_format::chain::Stored;

use crate::state::chain::{self, Rebuilt, READ_WIDTH};
use crate::PostgresStore;

/// The checkpoints the rows of a chained read ask for (flag in the last column), ascending by
/// version.
pub(crate) fn rebuild_rows(store: &PostgresStore, rows: Vec<Row>) -> Result<Vec<Rebuilt>> {
    let stored = rows
        .into_iter()
        .map(|row| {
            let wanted = row.bool(READ_WIDTH)?;
            chain::from_row(row, wanted)
        })
        .collect::<Result<Vec<_>>>()?;
    rebuild(store, stored)
}

/// The checkpoints of rows already decoded, ascending by version.
fn rebuild(store: &PostgresStore, stored: Vec<Stored>) -> Result<Vec<Rebuilt>> {
    chain::rebuild(
        stored,
        store.payload_limit(),
        store.encoder.format.encryption.as_ref(),
    )
}

/// The last checkpoint read, remembered as the base of the next delta of its execution.
fn last(store: &PostgresStore, mut read: Vec<Rebuilt>) -> Option<Checkpoint> {
    let read = read.pop()?;
    store.encoder.remember_read(&read);
    Some(read.checkpoint)
}

/// One checkpoint, remembered as the base of the next delta of its execution.
fn one(store: &PostgresStore, rows: Vec<Row>) -> Result<Option<Checkpoint>> {
    Ok(last(store, rebuild_rows(store, rows)?))
}

/// The one execution of `executions` (those holding `id`): `None` when there is none,
/// [`Error::Ambiguous`] naming them when there are several.
fn single_execution(id: &str, mut executions: Vec<String>) -> Result<Option<String>> {
    executions.sort_unstable();
    executions.dedup();
    if executions.len() > 1 {
        return Err(Error::Ambiguous {
            id: id.to_owned(),
            executions,
        });
    }
    Ok(executions.pop())
}

/// The checkpoint of `id`. Where ids are unique per execution, two executions holding it are
/// [`Error::Ambiguous`], never an arbitrary one of the two.
pub(crate) async fn load(store: &PostgresStore, id: &str) -> Result<Checkpoint> {
    let not_found = || Error::NotFound { id: id.to_owned() };
    let rows = store.query("load", &store.sql.load, &[&id]).await?;
    if store.table.layout().id_scope() == IdScope::Global {
        // Ids are unique across the table: one row, with its chain, in one statement.
        return one(store, rows)?.ok_or_else(not_found);
    }
    // The id's row in each execution holding it, as stored, without chains.
    let mut stored = rows
        .into_iter()
        .map(|row| chain::from_row(row, true))
        .collect::<Result<Vec<_>>>()?;
    single_execution(
        id,
        stored.iter().map(|s| s.execution_id().to_owned()).collect(),
    )?;
    let row = stored.pop().ok_or_else(not_found)?;
    if row.is_delta() {
        // Its chain lives in its execution's partition or shard.
        let execution = row.execution_id().to_owned();
        return load_in(store, &execution, id).await;
    }
    last(store, rebuild(store, vec![row])?).ok_or_else(not_found)
}

/// The checkpoint of `id` in `execution_id`: one execution's rows, one partition or shard.
pub(crate) async fn load_in(
    store: &PostgresStore,
    execution_id: &str,
    id: &str,
) -> Result<Checkpoint> {
    let rows = store
        .query("load_in", &store.sql.load_in, &[&execution_id, &id])
        .await?;
    one(store, rows)?.ok_or_else(|| Error::NotFound { id: id.to_owned() })
}

/// The execution that holds `id`, where ids are unique per execution: `None` when none does,
/// [`Error::Ambiguous`] when several do.
pub(crate) async fn execution_of(store: &PostgresStore, id: &str) -> Result<Option<String>> {
    let rows = store
        .query("id_executions", &store.sql.id_executions, &[&id])
        .await?;
    let executions = rows
        .iter()
        .map(|r| r.text(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    single_execution(id, executions)
}

pub(crate) async fn latest(
    store: &PostgresStore,
    execution_id: &str,
) -> Result<Option<Checkpoint>> {
    let rows = store
        .query("latest", &store.sql.latest, &[&execution_id])
        .await?;
    one(store, rows)
}

pub(crate) async fn list(store: &PostgresStore, execution_id: &str) -> Result<Vec<Checkpoint>> {
    let rows = store
        .query("list", &store.sql.list, &[&execution_id])
        .await?;
    Ok(rebuild_rows(store, rows)?
        .into_iter()
        .map(|r| r.checkpoint)
        .collect())
}

pub(crate) async fn list_page(store: &PostgresStore, query: &ListQuery) -> Result<Page> {
    // Inclusive bounds, so every version from 0 to i64::MAX is reachable.
    let Some(lowest) = query
        .after_version
        .map_or(Some(i64::MIN), |v| v.checked_add(1))
    else {
        return Ok(Page::default());
    };
    let highest = query.before_version.map_or(i64::MAX, |v| v - 1);
    let metadata = (!query.metadata.is_empty()).then_some(Json(&query.metadata));
    // One more than asked tells whether another page follows.
    let fetch = i64::try_from(query.limit)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let sql = match query.order {
        Order::Ascending => &store.sql.page_ascending,
        Order::Descending => &store.sql.page_descending,
    };
    let rows = store
        .query(
            "list_page",
            sql,
            &[
                &query.execution_id,
                &lowest,
                &highest,
                &query.node_name,
                &metadata,
                &fetch,
            ],
        )
        .await?;
    let mut items: Vec<Checkpoint> = rebuild_rows(store, rows)?
        .into_iter()
        .map(|r| r.checkpoint)
        .collect();
    if query.order == Order::Descending {
        items.reverse();
    }
    Ok(Page::from_overfetch(items, query.limit))
}

pub(crate) async fn fork(
    store: &PostgresStore,
    checkpoint_id: &str,
    new_execution_id: &str,
) -> Result<Checkpoint> {
    // Where ids are unique per execution, a source id two executions hold is ambiguous.
    if store.table.layout().id_scope() == IdScope::PerExecution
        && execution_of(store, checkpoint_id).await?.is_none()
    {
        return Err(Error::NotFound {
            id: checkpoint_id.to_owned(),
        });
    }
    // A fresh id and timestamp made the same way as for every new checkpoint.
    let fresh = Checkpoint::new(new_execution_id, "fork", Value::Null);
    let rows = store
        .pool
        .query(
            &store.sql.fork,
            &[
                &checkpoint_id,
                &fresh.id,
                &new_execution_id,
                &fresh.timestamp,
            ],
        )
        .await
        .map_err(|e| store.conflict_or(e, new_execution_id, 1))?;
    if let Some(forked) = one(store, rows)? {
        return Ok(forked);
    }
    // Nothing inserted: a missing source, an occupied target, or a source stored as a delta,
    // whose state the client rebuilds and sends whole.
    let found = store
        .query("fork_source", &store.sql.fork_source, &[&checkpoint_id])
        .await?;
    match found.first().map(|r| r.bool(0)).transpose()? {
        None => Err(Error::NotFound {
            id: checkpoint_id.to_owned(),
        }),
        Some(false) => Err(Error::Conflict {
            execution_id: new_execution_id.to_owned(),
            version: 1,
        }),
        Some(true) => fork_delta(store, checkpoint_id, new_execution_id).await,
    }
}

async fn fork_delta(
    store: &PostgresStore,
    checkpoint_id: &str,
    new_execution_id: &str,
) -> Result<Checkpoint> {
    let source = load(store, checkpoint_id).await?;
    let forked = source.forked_into(new_execution_id);
    let encoded = store.encoder.encode(&forked, true)?;
    let metadata = Json(&forked.metadata);
    let state_hash = encoded.fingerprint.map(|f| f.hash);
    let rows = store
        .pool
        .query(
            &store.sql.fork_insert,
            &[
                &forked.id,
                &forked.execution_id,
                &forked.node_name,
                &encoded.state,
                &metadata,
                &forked.timestamp,
                &forked.parent_id,
                &encoded.payload,
                &state_hash,
            ],
        )
        .await
        .map_err(|e| store.conflict_or(e, new_execution_id, 1))?;
    if rows.is_empty() {
        return Err(Error::Conflict {
            execution_id: new_execution_id.to_owned(),
            version: 1,
        });
    }
    store.encoder.remember(&forked, 1, &encoded);
    store.wrote(encoded.written());
    Ok(forked)
}
