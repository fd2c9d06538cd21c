//! `checkpointctl lease`: who holds an execution's lease, and an operator's break of it.

use checkpoint_core::Lease;
use serde_json::json;

use crate::commands::{explain, fail, parse_age, report, store, time};
use crate::output::confirm;
use crate::{Connection, Exit, LeaseAction};

/// Runs one `lease` action.
pub(crate) async fn run(
    connection: &Connection,
    action: LeaseAction,
    json: bool,
) -> Result<(), Exit> {
    let store = store(connection).await?;
    match action {
        LeaseAction::Show { execution } => {
            match store.lease(&execution).await.map_err(explain)? {
                Some(lease) => report(json, described(&lease), &holder(&lease)),
                None => report(
                    json,
                    json!({"execution_id": execution, "held": false}),
                    &format!("{execution} has no unexpired lease"),
                ),
            }
            Ok(())
        }
        LeaseAction::Break {
            execution,
            owner,
            ttl,
            yes,
        } => {
            let ttl = parse_age("--ttl", &ttl)?;
            let question = format!(
                "take the lease of {execution} over as {owner}? Its holder's writes will be \
                 refused from now on"
            );
            if !confirm(&question, yes) {
                return Err(fail("cancelled"));
            }
            let lease = store
                .take_over(&execution, &owner, ttl)
                .await
                .map_err(explain)?;
            report(json, described(&lease), &holder(&lease));
            Ok(())
        }
    }
}

fn described(lease: &Lease) -> serde_json::Value {
    json!({
        "execution_id": lease.execution_id,
        "held": true,
        "owner": lease.owner,
        "token": lease.token,
        "expires_at": time(lease.expires_at),
    })
}

fn holder(lease: &Lease) -> String {
    format!(
        "{} is leased to {} (token {}) until {}",
        lease.execution_id,
        lease.owner,
        lease.token,
        time(lease.expires_at)
    )
}
