//! The quickstart on PostgreSQL: connect (migrating the schema), save after each step, race two
//! writers for one version, page through the history and resume from the latest checkpoint.
//!
//! ```sh
//! docker compose up -d postgres
//! DATABASE_URL=postgres://checkpoint:checkpoint@localhost:5432/checkpoint \
//!     cargo run --features postgres --example postgres_quickstart
//! ```

use checkpoint_core::{Checkpoint, CheckpointStore, Error, ListQuery, RetentionPolicy};
use checkpoint_postgres::{PostgresOptions, PostgresStore};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Order {
    items: Vec<String>,
    paid: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        anyhow::anyhow!(
            "set DATABASE_URL, e.g. postgres://checkpoint:checkpoint@localhost:5432/checkpoint \
             (docker compose up -d postgres starts one)"
        )
    })?;
    let options = PostgresOptions::new(&url)?.max_connections(4);
    println!("connecting with {options:?}");
    let store = PostgresStore::connect(options).await?;
    println!("schema version {}", store.schema_version().await?);

    // A fresh execution id per run, so the example can run again and again.
    let execution = format!("order-{}", uuid_suffix());
    let mut order = Order::default();
    let mut parent: Option<String> = None;
    for item in ["apple", "bread", "cheese"] {
        order.items.push(item.into());
        let mut cp =
            Checkpoint::from_state(&execution, "add_item", &order)?.with_metadata("item", item);
        if let Some(parent) = &parent {
            cp = cp.with_parent(parent);
        }
        let version = store.save(&cp).await?;
        println!("saved {item:<6} as version {version}");
        parent = Some(cp.id);
    }

    // Two instances that both read version 3 race to write version 4: one wins.
    let a = Checkpoint::from_state(
        &execution,
        "pay",
        &Order {
            paid: true,
            ..Order::default()
        },
    )?
    .with_version(4);
    let b = Checkpoint::from_state(&execution, "cancel", &Order::default())?.with_version(4);
    let (ra, rb) = tokio::join!(store.save(&a), store.save(&b));
    for (who, result) in [("pay", ra), ("cancel", rb)] {
        match result {
            Ok(v) => println!("{who:<6} won version {v}"),
            Err(Error::Conflict { version, .. }) => {
                println!("{who:<6} lost the race for version {version}: re-read and decide again")
            }
            Err(e) => return Err(e.into()),
        }
    }

    let page = store
        .list_page(&ListQuery::new(&execution).descending().limit(10))
        .await?;
    for cp in &page.items {
        println!("history: v{} {:<8} {}", cp.version, cp.node_name, cp.state);
    }

    let latest = store
        .latest(&execution)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no checkpoint"))?;
    let resumed: Order = latest.state_as()?;
    println!("resume after {} with {resumed:?}", latest.node_name);

    let pruned = store
        .prune(&RetentionPolicy::keep_last(2).for_execution(&execution))
        .await?;
    println!("pruned {pruned} old checkpoints, kept the newest 2");
    store.close();
    Ok(())
}

/// A short, time-ordered suffix for the execution id.
fn uuid_suffix() -> String {
    let id = Checkpoint::new("x", "x", serde_json::Value::Null).id;
    id.replace('-', "")[..16].to_owned()
}
