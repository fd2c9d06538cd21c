//! Table layouts and the partitions of a table partitioned by each execution's start.

use checkpoint_postgres::{PostgresOptions, PostgresStore, TableLayout};
use serde_json::json;
use time::OffsetDateTime;

use crate::commands::{explain, fail, parse_age, report, time};
use crate::output::{confirm, listing};
use crate::{Exit, PartitionAction};

/// A `--layout` value: `plain`, `hash:N`, `day`, `week`, `month` or `distributed`.
pub(crate) fn parse_layout(text: &str) -> Result<TableLayout, Exit> {
    text.parse::<TableLayout>().map_err(|e| match e {
        checkpoint_core::Error::InvalidInput { reason, .. } => {
            fail(format!("--layout {text:?}: {reason}"))
        }
        other => fail(format!("--layout {text:?}: {other}")),
    })
}

/// `options` with the layout the table was made with, so that every command opens a
/// partitioned table as well as a plain one; a table not made yet keeps `options`' layout.
pub(crate) async fn detected(options: PostgresOptions) -> Result<PostgresOptions, Exit> {
    match PostgresStore::table_layout_of(&options)
        .await
        .map_err(explain)?
    {
        Some(layout) => Ok(options.table_layout(layout)),
        None => Ok(options),
    }
}

/// A store on a time-partitioned table, or a clear refusal.
async fn partitioned_store(options: PostgresOptions, ahead: u16) -> Result<PostgresStore, Exit> {
    let options = detected(options).await?;
    // Only the commands that make partitions make them, and say so.
    let store = PostgresStore::connect(options.partitions_ahead(ahead).partition_upkeep(false))
        .await
        .map_err(explain)?;
    if store.table().layout().period().is_none() {
        return Err(fail(format!(
            "the table {} is not partitioned by execution start ({:?}); partitions are kept \
             only for tables made with `migrate --layout day|week|month`",
            store.table().quoted(),
            store.table().layout()
        )));
    }
    Ok(store)
}

/// The cutoff `age` (given to `flag`) before now.
fn cutoff(flag: &str, text: &str) -> Result<OffsetDateTime, Exit> {
    let age = parse_age(flag, text)?;
    let too_old = || {
        fail(format!(
            "{flag} {text:?} reaches before the first representable time"
        ))
    };
    let age = time::Duration::try_from(age).map_err(|_| too_old())?;
    OffsetDateTime::now_utc()
        .checked_sub(age)
        .ok_or_else(too_old)
}

pub(crate) async fn run(
    options: PostgresOptions,
    action: PartitionAction,
    json: bool,
) -> Result<(), Exit> {
    match action {
        PartitionAction::List => {
            let store =
                partitioned_store(options, PostgresOptions::DEFAULT_PARTITIONS_AHEAD).await?;
            let partitions = store.partitions().await.map_err(explain)?;
            listing(
                json,
                &["partition", "from", "to", "estimated_rows"],
                partitions
                    .iter()
                    .map(|p| {
                        vec![
                            json!(p.name),
                            json!(time(p.from)),
                            json!(time(p.to)),
                            json!(p.estimated_rows),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        PartitionAction::Ensure { ahead } => {
            ensure_and_report(&partitioned_store(options, ahead).await?, json).await
        }
        PartitionAction::Drop {
            older_than,
            dry_run,
            yes,
        } => {
            let cutoff = cutoff("--older-than", &older_than)?;
            let store =
                partitioned_store(options, PostgresOptions::DEFAULT_PARTITIONS_AHEAD).await?;
            let doomed: Vec<_> = store
                .partitions()
                .await
                .map_err(explain)?
                .into_iter()
                .filter(|p| p.to <= cutoff)
                .collect();
            let names: Vec<&str> = doomed.iter().map(|p| p.name.as_str()).collect();
            if dry_run || doomed.is_empty() {
                report(
                    json,
                    json!({ "would_drop": names }),
                    &format!("would drop {} partitions {names:?}", names.len()),
                );
                return Ok(());
            }
            let question = format!(
                "drop {} partitions {names:?}, with every checkpoint of the executions that \
                 started in them?",
                names.len()
            );
            if !confirm(&question, yes) {
                return Err(fail("nothing dropped"));
            }
            drop_and_report(&store, cutoff, json).await
        }
        PartitionAction::Maintain { ahead, retain } => {
            let cutoff = retain
                .as_deref()
                .map(|age| cutoff("--retain", age))
                .transpose()?;
            let store = partitioned_store(options, ahead).await?;
            ensure_and_report(&store, json).await?;
            if let Some(cutoff) = cutoff {
                drop_and_report(&store, cutoff, json).await?;
            }
            store.analyze().await.map_err(explain)?;
            report(json, json!({ "analyzed": true }), "analyzed the table");
            Ok(())
        }
    }
}

async fn ensure_and_report(store: &PostgresStore, json: bool) -> Result<(), Exit> {
    let created = store.ensure_partitions().await.map_err(explain)?;
    report(
        json,
        json!({ "created": created }),
        &format!("created {} partitions {created:?}", created.len()),
    );
    Ok(())
}

async fn drop_and_report(
    store: &PostgresStore,
    cutoff: OffsetDateTime,
    json: bool,
) -> Result<(), Exit> {
    let dropped = store
        .drop_partitions_before(cutoff)
        .await
        .map_err(explain)?;
    let names: Vec<&str> = dropped.partitions.iter().map(|p| p.name.as_str()).collect();
    report(
        json,
        json!({ "dropped": names, "executions": dropped.executions }),
        &format!(
            "dropped {} partitions {names:?} and {} executions",
            names.len(),
            dropped.executions
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_postgres::PartitionPeriod;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn layouts_parse_exactly(text in "(plain|day|week|month|distributed|hash:[0-9]{0,6}|[a-z:0-9]{0,8})") {
            let parsed = parse_layout(&text);
            let expected = match text.as_str() {
                "plain" => Some(TableLayout::Plain),
                "distributed" => Some(TableLayout::Distributed),
                "day" => Some(TableLayout::time_partitioned(PartitionPeriod::Day)),
                "week" => Some(TableLayout::time_partitioned(PartitionPeriod::Week)),
                "month" => Some(TableLayout::time_partitioned(PartitionPeriod::Month)),
                other => other
                    .strip_prefix("hash:")
                    .and_then(|n| n.parse::<u16>().ok())
                    .and_then(|n| TableLayout::hash_partitioned(n).ok()),
            };
            match (parsed, expected) {
                (Ok(layout), Some(expected)) => prop_assert_eq!(layout, expected),
                (Err(exit), None) => {
                    prop_assert_eq!(exit.code, 2);
                    prop_assert!(exit.message.contains("--layout"), "{}", exit.message);
                }
                (parsed, expected) => prop_assert!(false, "{text}: {parsed:?} vs {expected:?}"),
            }
        }
    }
}
