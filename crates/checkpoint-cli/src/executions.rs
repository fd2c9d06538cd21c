//! `checkpointctl executions`: every execution, or those paused under another graph.

use checkpoint_core::{CheckpointStore, ExecutionQuery};
use checkpoint_workflow::meta;
use serde_json::{json, Value};

use crate::commands::{explain, time};
use crate::output::listing;
use crate::Exit;

/// How many executions one page of the `--stale` scan reads.
const SCAN_PAGE: usize = 500;

/// Lists up to `limit` executions after `after`, with their checkpoint count, latest version
/// and last update.
pub(crate) async fn list(
    store: &dyn CheckpointStore,
    limit: usize,
    after: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let mut query = ExecutionQuery::new(limit);
    if let Some(after) = after {
        query = query.after(after);
    }
    let page = store.list_executions(&query).await.map_err(explain)?;
    let rows = page
        .into_iter()
        .map(|s| {
            vec![
                json!(s.execution_id),
                json!(s.checkpoint_count),
                json!(s.latest_version),
                json!(time(s.last_timestamp)),
            ]
        })
        .collect();
    listing(
        json,
        &["execution", "checkpoints", "latest_version", "last_update"],
        rows,
    );
    Ok(())
}

/// Lists up to `limit` executions (after `after`) that have not finished and whose latest
/// checkpoint records a graph other than `fingerprint`: those a deploy of that graph would
/// refuse to resume without a rename mapping or permission. Reads every execution's latest
/// checkpoint, a page at a time.
pub(crate) async fn stale(
    store: &dyn CheckpointStore,
    fingerprint: &str,
    limit: usize,
    after: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    let mut query = ExecutionQuery::new(SCAN_PAGE);
    if let Some(after) = after {
        query = query.after(after);
    }
    'scan: loop {
        let page = store.list_executions(&query).await.map_err(explain)?;
        let Some(last) = page.last() else {
            break;
        };
        query = query.after(last.execution_id.clone());
        for summary in &page {
            let Some(latest) = store.latest(&summary.execution_id).await.map_err(explain)? else {
                continue;
            };
            let (Some(graph), Some(next)) = (meta::graph(&latest), meta::next(&latest)) else {
                continue;
            };
            if graph == fingerprint {
                continue;
            }
            if rows.len() == limit {
                break 'scan;
            }
            rows.push(vec![
                json!(latest.execution_id),
                json!(graph),
                json!(next),
                latest
                    .metadata
                    .get(meta::OUTCOME)
                    .cloned()
                    .unwrap_or(Value::Null),
                json!(meta::state_version(&latest)),
                json!(time(latest.timestamp)),
            ]);
        }
        if page.len() < SCAN_PAGE {
            break;
        }
    }
    listing(
        json,
        &[
            "execution",
            "graph",
            "next",
            "outcome",
            "state_version",
            "last_update",
        ],
        rows,
    );
    Ok(())
}
