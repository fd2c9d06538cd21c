//! `save_batch`: the same result as saving the items one after another, atomically.
//!
//! The planned path reads what the batch touches (its ids' rows, each execution's highest
//! version) in one statement, assigns every version on the client exactly as sequential saves
//! would, and writes all items with one `INSERT ... SELECT FROM unnest(...)`, a transaction on
//! its own: two round trips whatever the batch size. When the unique index objects (a concurrent writer
//! got there first, or an explicit version is taken by a row outside the batch), the batch
//! is replayed one save at a time in a fresh transaction, which names the exact conflict or
//! shows that an append merely lost a race and the whole batch should be planned again.

use std::collections::HashMap;

use checkpoint_core::{Checkpoint, Error, Result};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::types::Json;

use tokio_postgres::error::SqlState;

use crate::pool::DbTransaction;
use crate::store::write::{finish, save_in_tx, SaveArgs};
use crate::store::{append_backoff, contended, moved, partitions, MAX_APPEND_ATTEMPTS};
use crate::PostgresStore;
use crate::TableLayout;

/// Where an id lives: its execution and version.
type Locations = HashMap<String, (String, i64)>;

/// Assigns every item's version as saving them in order would, given the rows the batch's ids
/// already have and each execution's highest version. Conflicts between items are found here;
/// conflicts with rows outside the batch are left to the unique index. An error means "replay
/// the batch one save at a time": either a real refusal, which the replay reports in order, or
/// a batch this plan cannot number alone (below).
fn plan(
    items: &[Checkpoint],
    mut locations: Locations,
    mut highest: HashMap<String, i64>,
) -> Result<Vec<i64>> {
    let mut holders: HashMap<(String, i64), String> = locations
        .iter()
        .map(|(id, (execution, version))| ((execution.clone(), *version), id.clone()))
        .collect();
    let mut versions = Vec::with_capacity(items.len());
    for item in items {
        let current = locations.get(&item.id).cloned();
        if let Some((execution, _)) = &current {
            if *execution != item.execution_id {
                return Err(moved(item));
            }
        }
        let top = highest.entry(item.execution_id.clone()).or_insert(0);
        let version = match (item.version, &current) {
            (0, Some((_, version))) => *version,
            (0, None) => checkpoint_core::validate::next_version(&item.execution_id, *top)?,
            (explicit, _) => explicit,
        };
        let key = (item.execution_id.clone(), version);
        if holders.get(&key).is_some_and(|holder| *holder != item.id) {
            return Err(Error::Conflict {
                execution_id: item.execution_id.clone(),
                version,
            });
        }
        if let Some((execution, old)) = current {
            if old == *top && version < old {
                // The execution's highest version moves down: the next highest is a row the
                // plan never read, so only the replay can number later appends.
                return Err(Error::Backend {
                    message: "the highest version moved within the batch".into(),
                    retryable: false,
                    source: "replay the batch".into(),
                });
            }
            holders.remove(&(execution, old));
        }
        *top = (*top).max(version);
        holders.insert(key, item.id.clone());
        locations.insert(item.id.clone(), (item.execution_id.clone(), version));
        versions.push(version);
    }
    Ok(versions)
}

/// The append path, for batches whose items all append (version 0): one statement, one round
/// trip. `None` when an id already exists or another appender won a race: the planned path
/// then decides.
pub(crate) async fn save_appends(
    store: &PostgresStore,
    items: &[Checkpoint],
) -> Result<Option<Vec<i64>>> {
    let columns = Columns::new(store, items, &[])?;
    let [ids, executions, nodes, states, metadata, timestamps, _, parents, payloads, hashes] =
        columns.params();
    let rows = match store
        .pool
        .query(
            &store.sql.batch_append,
            &[
                ids, executions, nodes, states, metadata, timestamps, parents, payloads, hashes,
            ],
        )
        .await
    {
        Ok(rows) => rows,
        // The primary key (an id that exists) or the version rule (a lost race), or an
        // execution at the highest version: the planned path or the replay decides.
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let mut top: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    let mut written = 0;
    for row in &rows {
        top.insert(row.text(0)?, row.int(1)?);
        written = row.int(2)?;
    }
    if usize::try_from(written).ok() != Some(items.len()) {
        return Err(Error::Backend {
            message: format!("a batch of {} wrote {written} rows", items.len()),
            retryable: false,
            source: "an incomplete batch insert".into(),
        });
    }
    // The server numbered each execution's items after its highest version, in input order.
    let versions = items
        .iter()
        .map(|cp| {
            let next = top
                .get_mut(&cp.execution_id)
                .ok_or_else(|| Error::Backend {
                    message: format!(
                        "the batch insert returned no version for {}",
                        cp.execution_id
                    ),
                    retryable: false,
                    source: "an incomplete batch insert".into(),
                })?;
            *next = checkpoint_core::validate::next_version(&cp.execution_id, *next)?;
            Ok(*next)
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(Some(versions))
}

/// The planned path: one read, then one `INSERT ... SELECT FROM unnest(...)` that is a
/// transaction on its own (two round trips in all). `None` when the batch must be replayed:
/// the plan refused it, the unique index objected, or an id turned out to belong to another
/// execution (the upsert then sets `version` to NULL, which fails the whole statement).
pub(crate) async fn save_planned(
    store: &PostgresStore,
    items: &[Checkpoint],
) -> Result<Option<Vec<i64>>> {
    let ids: Vec<&str> = items.iter().map(|cp| cp.id.as_str()).collect();
    let mut executions: Vec<&str> = items.iter().map(|cp| cp.execution_id.as_str()).collect();
    executions.sort_unstable();
    executions.dedup();
    let rows = store
        .pool
        .query(&store.sql.batch_lookup, &[&ids, &executions])
        .await?;
    let mut locations = Locations::new();
    let mut highest = HashMap::new();
    // Where ids are unique per execution, a row of another execution with an item's id is
    // another checkpoint, not this item's.
    let per_execution = store.table.layout().id_scope() == checkpoint_core::IdScope::PerExecution;
    let execution_of: HashMap<&str, &str> = items
        .iter()
        .map(|cp| (cp.id.as_str(), cp.execution_id.as_str()))
        .collect();
    for row in &rows {
        match row.opt_text(0)? {
            Some(id) => {
                let execution = row.text(1)?;
                if per_execution && execution_of.get(id.as_str()) != Some(&execution.as_str()) {
                    continue;
                }
                locations.insert(id, (execution, row.int(2)?));
            }
            None => {
                highest.insert(row.text(1)?, row.opt_int(2)?.unwrap_or(0));
            }
        }
    }
    // Replacing rows may need the rows built on them rewritten first: the replay does that.
    if !locations.is_empty() {
        return Ok(None);
    }
    // A batch the plan refuses may hold an earlier item that conflicts with a row outside the
    // batch, which only the index sees; the replay reports whichever fails first, in order.
    let Ok(versions) = plan(items, locations, highest) else {
        return Ok(None);
    };

    let columns = Columns::new(store, items, &versions)?;
    match store
        .pool
        .execute(&store.sql.batch_insert, &columns.params())
        .await
    {
        Ok(written) if written == items.len() as u64 => Ok(Some(versions)),
        // An id of the batch was inserted meanwhile: the replay decides.
        Ok(_) => Ok(None),
        Err(e)
            if store.constraints.is_version_conflict(&e)
                || e.code() == Some(&SqlState::NOT_NULL_VIOLATION) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The replay: one save statement per item, in order, in one transaction. `None` when an
/// append lost a race and the batch should be planned again.
pub(crate) async fn save_one_by_one(
    store: &PostgresStore,
    items: &[Checkpoint],
) -> Result<Option<Vec<i64>>> {
    let mut tx = store.pool.begin().await?;
    let outcome = write_one_by_one(store, tx.as_mut(), items).await;
    finish(tx, outcome).await
}

pub(crate) async fn write_one_by_one(
    store: &PostgresStore,
    tx: &mut dyn DbTransaction,
    items: &[Checkpoint],
) -> Result<Option<Vec<i64>>> {
    let mut versions = Vec::with_capacity(items.len());
    for item in items {
        let args = SaveArgs::new(store, item, store.encoder.encode(item, true)?);
        match save_in_tx(store, tx, item, &args).await? {
            Some(version) => versions.push(version),
            None => return Ok(None),
        }
    }
    Ok(Some(versions))
}

/// The batch as one array per column, for `unnest`: each state whole, in the JSONB column or as
/// a compressed snapshot, as the store's encoding says.
struct Columns<'a> {
    ids: Vec<&'a str>,
    executions: Vec<&'a str>,
    nodes: Vec<&'a str>,
    states: Vec<Option<Json<&'a Value>>>,
    metadata: Vec<Json<&'a Map<String, Value>>>,
    timestamps: Vec<OffsetDateTime>,
    versions: &'a [i64],
    parents: Vec<Option<&'a str>>,
    payloads: Vec<Option<Vec<u8>>>,
    hashes: Vec<Option<i64>>,
}

impl<'a> Columns<'a> {
    fn new(store: &PostgresStore, items: &'a [Checkpoint], versions: &'a [i64]) -> Result<Self> {
        let mut states = Vec::with_capacity(items.len());
        let mut payloads = Vec::with_capacity(items.len());
        let mut hashes = Vec::with_capacity(items.len());
        for item in items {
            let encoded = store.encoder.encode(item, true)?;
            states.push(encoded.state);
            payloads.push(encoded.payload);
            hashes.push(encoded.fingerprint.map(|f| f.hash));
        }
        Ok(Columns {
            ids: items.iter().map(|cp| cp.id.as_str()).collect(),
            executions: items.iter().map(|cp| cp.execution_id.as_str()).collect(),
            nodes: items.iter().map(|cp| cp.node_name.as_str()).collect(),
            states,
            metadata: items.iter().map(|cp| Json(&cp.metadata)).collect(),
            timestamps: items.iter().map(|cp| cp.timestamp).collect(),
            versions,
            parents: items.iter().map(|cp| cp.parent_id.as_deref()).collect(),
            payloads,
            hashes,
        })
    }

    fn params(&self) -> [crate::Param<'_>; 10] {
        [
            &self.ids,
            &self.executions,
            &self.nodes,
            &self.states,
            &self.metadata,
            &self.timestamps,
            &self.versions,
            &self.parents,
            &self.payloads,
            &self.hashes,
        ]
    }
}

/// `save_batch`: one statement for the whole batch where it can be, one transaction of
/// single saves otherwise, each attempt atomic; the input is checked before anything is
/// written.
pub(crate) async fn save(store: &PostgresStore, checkpoints: &[Checkpoint]) -> Result<Vec<i64>> {
    store.limits.check_batch(checkpoints)?;
    // What the encoding refuses is refused before anything is written, as the input rules
    // are, whatever the items before it would meet in the table.
    for checkpoint in checkpoints {
        store.encoder.admit(checkpoint)?;
    }
    if checkpoints.is_empty() {
        return Ok(Vec::new());
    }
    partitions::upkeep(store).await;
    let all_append = checkpoints.iter().all(|cp| cp.version == 0);
    for attempt in 0..MAX_APPEND_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(append_backoff(attempt)).await;
        }
        // Each attempt is atomic (one statement, or one transaction), so retrying is safe.
        // On the distributed layout the one-statement paths (which read each execution's
        // highest version beside arrays of items) are not plannable by Citus: each item is
        // saved in one transaction of statements routed to its shard.
        let one_statement = store.table.layout() != TableLayout::Distributed;
        if all_append && one_statement {
            let appended = store
                .retry
                .run(&store.meter, "save_batch", || {
                    save_appends(store, checkpoints)
                })
                .await?;
            if let Some(versions) = appended {
                return Ok(store.saved_all(checkpoints, versions));
            }
        }
        if one_statement {
            let planned = store
                .retry
                .run(&store.meter, "save_batch", || {
                    save_planned(store, checkpoints)
                })
                .await?;
            if let Some(versions) = planned {
                return Ok(store.saved_all(checkpoints, versions));
            }
        }
        let replayed = store
            .retry
            .run(&store.meter, "save_batch", || {
                save_one_by_one(store, checkpoints)
            })
            .await?;
        if let Some(versions) = replayed {
            return Ok(store.saved_all(checkpoints, versions));
        }
    }
    Err(contended(&checkpoints[0].execution_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(id: &str, execution: &str, version: i64) -> Checkpoint {
        Checkpoint::new(execution, "n", json!(null))
            .with_id(id)
            .with_version(version)
    }

    fn at(entries: &[(&str, &str, i64)]) -> Locations {
        entries
            .iter()
            .map(|(id, e, v)| (id.to_string(), (e.to_string(), *v)))
            .collect()
    }

    fn top(entries: &[(&str, i64)]) -> HashMap<String, i64> {
        entries.iter().map(|(e, v)| (e.to_string(), *v)).collect()
    }

    #[test]
    fn appends_continue_after_stored_and_earlier_explicit_versions() {
        let items = [
            item("a", "e", 0),
            item("b", "e", 7),
            item("c", "e", 0),
            item("d", "f", 0),
        ];
        let versions = plan(&items, Locations::new(), top(&[("e", 3)])).unwrap();
        assert_eq!(versions, vec![4, 7, 8, 1]);
    }

    #[test]
    fn retried_items_keep_their_versions() {
        let items = [item("a", "e", 0), item("b", "e", 0)];
        let versions = plan(&items, at(&[("a", "e", 2)]), top(&[("e", 2)])).unwrap();
        assert_eq!(versions, vec![2, 3]);
    }

    #[test]
    fn an_item_taking_a_version_held_in_the_batch_conflicts() {
        let items = [item("a", "e", 0), item("b", "e", 1)];
        let err = plan(&items, Locations::new(), HashMap::new()).unwrap_err();
        assert!(matches!(err, Error::Conflict { version: 1, .. }), "{err:?}");

        let held = plan(&[item("b", "e", 2)], at(&[("a", "e", 2)]), top(&[("e", 2)])).unwrap_err();
        assert!(
            matches!(held, Error::Conflict { version: 2, .. }),
            "{held:?}"
        );
    }

    #[test]
    fn a_version_freed_earlier_in_the_batch_can_be_taken() {
        let items = [item("a", "e", 5), item("b", "e", 2)];
        let versions = plan(&items, at(&[("a", "e", 2)]), top(&[("e", 2)])).unwrap();
        assert_eq!(versions, vec![5, 2]);
    }

    #[test]
    fn moving_the_highest_version_down_is_left_to_the_replay() {
        let items = [item("b", "e", 2), item("c", "e", 0)];
        assert!(plan(&items, at(&[("b", "e", 4)]), top(&[("e", 4)])).is_err());
        // Moving a version that is not the highest is planned.
        let versions = plan(&items, at(&[("b", "e", 3)]), top(&[("e", 4)])).unwrap();
        assert_eq!(versions, vec![2, 5]);
    }

    #[test]
    fn moving_an_id_to_another_execution_is_refused() {
        let err = plan(&[item("a", "f", 0)], at(&[("a", "e", 1)]), HashMap::new()).unwrap_err();
        assert!(err.is_invalid_field("execution_id"), "{err}");
    }
}
