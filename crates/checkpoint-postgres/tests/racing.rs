//! Racing writers on one execution across several store instances.

mod support;

use std::collections::HashMap;

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::PostgresStore;
use serde_json::json;

const INSTANCES: usize = 4;
const TASKS: usize = 32;

async fn instances() -> Vec<PostgresStore> {
    let options = support::options().await.max_connections(8);
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        stores.push(PostgresStore::connect(options.clone()).await.unwrap());
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_appenders_on_four_instances_lose_and_duplicate_nothing() {
    const EACH: usize = 500;
    let stores = instances().await;
    let started = std::time::Instant::now();
    let tasks = (0..TASKS).map(|t| {
        let store = stores[t % INSTANCES].clone();
        tokio::spawn(async move {
            let mut ok = 0usize;
            for i in 0..EACH {
                let cp = Checkpoint::new("race", format!("task-{t}"), json!({"i": i}));
                store.save(&cp).await.expect("appends never conflict");
                ok += 1;
            }
            (format!("task-{t}"), ok)
        })
    });
    let counts: Vec<(String, usize)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task panicked"))
        .collect();
    let took = started.elapsed();

    let history = stores[0].list("race").await.unwrap();
    let versions: Vec<i64> = history.iter().map(|cp| cp.version).collect();
    let expected: Vec<i64> = (1..=i64::try_from(TASKS * EACH).unwrap()).collect();
    assert_eq!(versions, expected, "no duplicate or missing version");
    let mut rows: HashMap<&str, usize> = HashMap::new();
    for cp in &history {
        *rows.entry(cp.node_name.as_str()).or_default() += 1;
    }
    for (task, ok) in &counts {
        assert_eq!(
            rows.get(task.as_str()),
            Some(ok),
            "{task}: Ok count equals its rows"
        );
    }
    println!(
        "{} appends by {TASKS} tasks on {INSTANCES} instances in {took:?} ({:.0}/s)",
        TASKS * EACH,
        (TASKS * EACH) as f64 / took.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_modify_write_with_the_version_rule_loses_no_update() {
    const INCREMENTS: u64 = 10;
    let stores = instances().await;
    stores[0]
        .save(&Checkpoint::new("counter", "init", json!({"count": 0})).with_version(1))
        .await
        .unwrap();
    let tasks = (0..TASKS).map(|t| {
        let store = stores[t % INSTANCES].clone();
        tokio::spawn(async move {
            let (mut done, mut conflicts) = (0, 0);
            while done < INCREMENTS {
                let latest = store.latest("counter").await.unwrap().expect("initialised");
                let count = latest.state["count"].as_u64().expect("a count");
                let next =
                    Checkpoint::new("counter", format!("task-{t}"), json!({"count": count + 1}))
                        .with_parent(&latest.id)
                        .with_version(latest.version + 1);
                match store.save(&next).await {
                    Ok(_) => done += 1,
                    Err(Error::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            conflicts
        })
    });
    let conflicts: usize = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task panicked"))
        .sum();
    let latest = stores[0].latest("counter").await.unwrap().unwrap();
    let total = TASKS as u64 * INCREMENTS;
    assert_eq!(
        latest.state["count"],
        json!(total),
        "every increment counted once"
    );
    assert_eq!(latest.version, i64::try_from(total).unwrap() + 1);
    let history = stores[0].list("counter").await.unwrap();
    for pair in history.windows(2) {
        assert_eq!(
            pair[1].parent_id.as_deref(),
            Some(pair[0].id.as_str()),
            "a single line of history"
        );
    }
    println!("{total} increments by {TASKS} tasks, {conflicts} conflicts retried, no lost update");
}
