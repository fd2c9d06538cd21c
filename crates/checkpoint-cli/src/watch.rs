//! `checkpointctl watch EXECUTION`: prints an execution's new checkpoints as they land, until
//! interrupted or until standard output closes.
//!
//! On PostgreSQL it listens on the table's channel, so a store with `notify` on wakes it at
//! once; it also reads every `--interval`, so stores without notifications are followed too.
//! On SQLite it reads every `--interval`. Each wake reads everything past the last version
//! printed, so a burst of saves (or of notifications) is printed in one go, in version order.

use std::time::Duration;

use checkpoint_core::{CheckpointStore, ListQuery};
use checkpoint_postgres::{Listener, PostgresStore};

use crate::commands::{database, explain, fail, store, time, Database};
use crate::output::size;
use crate::{Connection, Exit};

/// Checkpoints read per page.
const PAGE: usize = 200;

/// Follows `execution` from after `after` (default: its latest version now).
pub(crate) async fn run(
    connection: &Connection,
    execution: &str,
    interval: Duration,
    after: Option<i64>,
    json: bool,
) -> Result<(), Exit> {
    if interval.is_zero() {
        return Err(fail("--interval must be longer than zero"));
    }
    let store = store(connection).await?;
    let mut listener: Option<Listener> = match database(connection)? {
        Database::Postgres(options) => match PostgresStore::listen(&options).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("checkpointctl: not listening ({err}); reading every {interval:?}");
                None
            }
        },
        Database::Sqlite(_) => None,
    };
    let mut last = match after {
        Some(version) => version,
        None => store
            .latest(execution)
            .await
            .map_err(explain)?
            .map_or(0, |cp| cp.version),
    };
    if !json {
        eprintln!("watching {execution} after version {last} (Ctrl-C to stop)");
    }
    loop {
        last = print_new(store.as_ref(), execution, last, json).await?;
        match listener.as_mut() {
            Some(l) => {
                tokio::select! {
                    heard = l.next() => {
                        if heard.is_none() {
                            eprintln!("checkpointctl: the listening connection closed; reading every {interval:?}");
                            listener = None;
                        }
                    }
                    _ = tokio::time::sleep(interval) => {}
                }
            }
            None => tokio::time::sleep(interval).await,
        }
    }
}

/// Prints every checkpoint of `execution` after version `last`; returns the last printed.
async fn print_new(
    store: &dyn CheckpointStore,
    execution: &str,
    mut last: i64,
    json: bool,
) -> Result<i64, Exit> {
    loop {
        let page = store
            .list_page(&ListQuery::new(execution).after(last).limit(PAGE))
            .await
            .map_err(explain)?;
        for cp in &page.items {
            if json {
                let value = serde_json::to_value(cp).map_err(|e| fail(e.to_string()))?;
                println!("{value}");
            } else {
                println!(
                    "{}",
                    [
                        format!("v{}", cp.version),
                        time(cp.timestamp),
                        cp.node_name.clone(),
                        cp.id.clone(),
                        size(cp.state.to_string().len() as u64),
                    ]
                    .join("  ")
                );
            }
            last = cp.version;
        }
        if page.next_cursor.is_none() {
            return Ok(last);
        }
    }
}
