//! The integrity check: every checkpoint rebuilt on its own, every chain link and content hash
//! checked, every damaged checkpoint reported ([`Verification`]).

use checkpoint_core::{Damage, ExecutionQuery, Result, Verification};
use checkpoint_format::chain::Stored;

use crate::state::chain;
use crate::PostgresStore;

/// How many executions one listing step reads while verifying a whole table.
const EXECUTIONS_PER_STEP: usize = 500;

pub(crate) async fn verify(
    store: &PostgresStore,
    execution_id: Option<&str>,
) -> Result<Verification> {
    if let Some(execution_id) = execution_id {
        checkpoint_core::validate::check_id("execution_id", execution_id)?;
        return execution(store, execution_id).await;
    }
    let mut all = Verification::default();
    let mut query = ExecutionQuery::new(EXECUTIONS_PER_STEP);
    loop {
        let page = checkpoint_core::CheckpointStore::list_executions(store, &query).await?;
        for summary in &page {
            all.absorb(execution(store, &summary.execution_id).await?);
        }
        match page.last() {
            Some(last) if page.len() == EXECUTIONS_PER_STEP => {
                query = ExecutionQuery::new(EXECUTIONS_PER_STEP).after(&last.execution_id);
            }
            _ => return Ok(all),
        }
    }
}

/// Every row of one execution, checked. A row that does not even decode is reported by what
/// can be read of it.
async fn execution(store: &PostgresStore, execution_id: &str) -> Result<Verification> {
    let rows = store
        .query("list", &store.sql.list, &[&execution_id])
        .await?;
    let mut report = Verification {
        executions: u64::from(!rows.is_empty()),
        checkpoints: rows.len() as u64,
        damaged: Vec::new(),
    };
    let mut stored: Vec<Stored> = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.text(0).unwrap_or_default();
        let version = row.int(6).unwrap_or_default();
        match chain::from_row(row, true) {
            Ok(one) => stored.push(one),
            Err(err) => report.damaged.push(Damage {
                id,
                execution_id: execution_id.to_owned(),
                version,
                reason: err.to_string(),
            }),
        }
    }
    report.damaged.extend(chain::damage(
        stored,
        store.payload_limit(),
        store.encoder.format.encryption.as_ref(),
    ));
    report.damaged.sort_by_key(|d| d.version);
    Ok(report)
}
