//! `checkpointctl verify`: every checkpoint rebuilt and checked, each damaged one listed.

use checkpoint_core::Verification;
use checkpoint_postgres::PostgresStore;
use serde_json::json;

use crate::commands::{database, explain, open_sqlite, Database};
use crate::output::listing;
use crate::{Connection, Exit};

pub(crate) async fn run(
    connection: &Connection,
    execution: Option<&str>,
    json: bool,
) -> Result<(), Exit> {
    let found = match database(connection)? {
        Database::Postgres(options) => {
            let options = crate::partitions::detected(*options).await?;
            let store = PostgresStore::connect(options).await.map_err(explain)?;
            store.verify(execution).await
        }
        Database::Sqlite(options) => open_sqlite(*options).await?.verify(execution).await,
    }
    .map_err(explain)?;
    print(&found, json);
    if found.is_intact() {
        Ok(())
    } else {
        // The findings are printed; the exit code says there were some.
        Err(Exit {
            code: 1,
            message: String::new(),
        })
    }
}

fn print(found: &Verification, json: bool) {
    if json {
        println!("{}", json!(found));
        return;
    }
    if !found.is_intact() {
        let rows = found
            .damaged
            .iter()
            .map(|d| {
                vec![
                    json!(d.execution_id),
                    json!(d.version),
                    json!(d.id),
                    json!(d.reason),
                ]
            })
            .collect();
        listing(false, &["execution", "version", "id", "damage"], rows);
    }
    println!(
        "checked {} checkpoints of {} executions: {}",
        found.checkpoints,
        found.executions,
        match found.damaged.len() {
            0 => "all read back as saved".to_owned(),
            n => format!("{n} damaged"),
        }
    );
}
