//! Group commit on a real server: each save of a group keeps its own outcome, appends keep
//! their arrival order, a group that lost a race is numbered again, a delta whose base was
//! replaced is saved alone as a snapshot, and a client killed while groups are in flight loses
//! no acknowledged checkpoint and leaves nothing half-written.
//!
//! Prunes of one execution that queue behind a write go in one statement, each with its own
//! count and exactly its own rows removed, and fall back to pruning alone when a kept delta's
//! base would go.
//!
//! When a group is refused and its saves are made alone, the groups after it wait for them, so
//! appends and replacements keep their arrival order.
//!
//! A burst is a set of saves started together on one task: the first goes out alone at once
//! and the others queue behind it in order, so they leave as one group when it returns.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use checkpoint_core::conformance::history::conversation;
use checkpoint_core::{Checkpoint, CheckpointStore, Error, RetentionPolicy};
use checkpoint_postgres::{
    GroupCommit, PartitionPeriod, PostgresOptions, PostgresStore, StateEncoding, TableLayout,
};
use futures::future::join_all;
use serde_json::json;

async fn connect(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

fn schema_of(store: &PostgresStore) -> String {
    store.table().schema().expect("a test schema").to_owned()
}

/// Saves `checkpoints` as one burst.
async fn burst(
    store: &PostgresStore,
    checkpoints: &[Checkpoint],
) -> Vec<checkpoint_core::Result<i64>> {
    join_all(checkpoints.iter().map(|cp| store.save(cp))).await
}

#[tokio::test]
async fn a_conflict_and_an_invalid_save_among_sixteen_fail_alone() {
    let store = support::store().await;
    store
        .save(&Checkpoint::new("taken", "n", json!(0)).with_version(1))
        .await
        .unwrap();
    let mut saves = vec![Checkpoint::new("lead", "n", json!("first, alone"))];
    for i in 0..16 {
        saves.push(match i {
            5 => Checkpoint::new("taken", "n", json!("late")).with_version(1),
            9 => Checkpoint::new("fine", "", json!("no node name")),
            _ => Checkpoint::new(format!("own-{i}"), "n", json!({ "i": i })),
        });
    }
    let before = store.group_commit_stats().unwrap();
    let results = burst(&store, &saves).await;
    for (i, (cp, result)) in saves.iter().zip(&results).enumerate() {
        match i {
            6 => assert!(
                matches!(result, Err(Error::Conflict { version: 1, .. })),
                "{result:?}"
            ),
            10 => assert!(
                matches!(result, Err(e) if e.is_invalid_field("node_name")),
                "{result:?}"
            ),
            _ => {
                assert_eq!(result.as_ref().unwrap(), &1, "save {i}");
                assert_eq!(
                    &store.load(&cp.id).await.unwrap(),
                    &Checkpoint {
                        version: 1,
                        ..cp.clone()
                    }
                );
            }
        }
    }
    assert_eq!(
        store.list("taken").await.unwrap()[0].state,
        json!(0),
        "untouched"
    );
    let groups = store.group_commit_stats().unwrap().since(&before);
    assert!(
        groups.largest() >= 14,
        "the saves travelled together: {groups:?}"
    );
    assert_eq!(groups.split_groups(), 1, "{groups:?}");
}

#[tokio::test]
async fn fenced_saves_travel_in_groups_and_a_stale_one_is_refused_alone() {
    let store = support::store().await;
    let long = Duration::from_secs(600);
    let stale = store.acquire("lost", "worker-a", long).await.unwrap();
    let current = store.take_over("lost", "worker-b", long).await.unwrap();
    let mut held = Vec::new();
    for i in 0..8 {
        held.push(
            store
                .acquire(&format!("held-{i}"), "worker-c", long)
                .await
                .unwrap(),
        );
    }
    let lead = Checkpoint::new("lead", "n", json!("first, alone"));
    let mut saves: Vec<(Option<checkpoint_core::Fence>, Checkpoint)> = vec![(None, lead)];
    for i in 0..16 {
        saves.push(match i % 4 {
            0 => (
                Some(stale.fence()),
                Checkpoint::new("lost", "late", json!({ "i": i })),
            ),
            1 => (
                Some(current.fence()),
                Checkpoint::new("lost", "now", json!({ "i": i })),
            ),
            2 => (
                Some(held[i / 2].fence()),
                Checkpoint::new(format!("held-{}", i / 2), "n", json!(i)),
            ),
            _ => (None, Checkpoint::new(format!("free-{i}"), "n", json!(i))),
        });
    }
    let before = store.group_commit_stats().unwrap();
    let results = join_all(saves.iter().map(|(fence, cp)| async {
        match fence {
            Some(fence) => store.save_fenced(fence, cp).await,
            None => store.save(cp).await,
        }
    }))
    .await;
    for ((fence, cp), result) in saves.iter().zip(&results) {
        if fence.as_ref() == Some(&stale.fence()) {
            assert!(
                matches!(result, Err(Error::LeaseLost { holder: Some(h), current_token: Some(2), .. }) if h == "worker-b"),
                "{result:?}"
            );
            assert!(matches!(
                store.load(&cp.id).await,
                Err(Error::NotFound { .. })
            ));
        } else {
            let version = *result.as_ref().unwrap();
            assert_eq!(store.load(&cp.id).await.unwrap().version, version);
        }
    }
    let lost = store.list("lost").await.unwrap();
    assert_eq!(lost.len(), 4, "only the current holder's saves");
    assert!(lost.iter().all(|cp| cp.node_name == "now"));
    let groups = store.group_commit_stats().unwrap().since(&before);
    assert!(
        groups.largest() >= 12,
        "fenced saves travelled together: {groups:?}"
    );
}

#[tokio::test]
async fn appends_in_one_group_get_consecutive_versions_in_arrival_order() {
    let store = support::store().await;
    store
        .save(&Checkpoint::new("o", "start", json!(0)))
        .await
        .unwrap();
    let saves: Vec<Checkpoint> = std::iter::once(Checkpoint::new("elsewhere", "n", json!(0)))
        .chain((0..24).map(|i| Checkpoint::new("o", format!("step-{i}"), json!({ "i": i }))))
        .collect();
    let results = burst(&store, &saves).await;
    let versions: Vec<i64> = results[1..].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(versions, (2..=25).collect::<Vec<i64>>());
    let history = store.list("o").await.unwrap();
    let nodes: Vec<&str> = history[1..].iter().map(|c| c.node_name.as_str()).collect();
    let expected: Vec<String> = (0..24).map(|i| format!("step-{i}")).collect();
    assert_eq!(nodes, expected);
    assert!(store.group_commit_stats().unwrap().largest() >= 24);
}

/// Groups of two: a replacement refuses the second group, whose saves are then made alone; the
/// groups after it wait for them, so every append keeps its place in arrival order and the
/// last replacement of an id is the one that stays. Repeated, since without the wait the
/// outcome depended on timing.
#[tokio::test]
async fn saves_after_a_refused_group_wait_for_those_made_alone() {
    let settings = GroupCommit::default().lone_saves_grouped(true).max_saves(2);
    let store = connect(support::options().await.group_commit(settings)).await;
    for round in 0..12 {
        let execution = format!("order-{round}");
        let kept = format!("kept-{round}");
        store
            .save(&Checkpoint::new(&execution, "first", json!(0)).with_id(&kept))
            .await
            .unwrap();
        // [a], then [replace kept, b]: refused by the primary key; then [c, replace kept
        // again], [d].
        let saves = vec![
            Checkpoint::new(&execution, "a", json!("a")),
            Checkpoint::new(&execution, "replaced", json!("once")).with_id(&kept),
            Checkpoint::new(&execution, "b", json!("b")),
            Checkpoint::new(&execution, "c", json!("c")),
            Checkpoint::new(&execution, "replaced", json!("twice")).with_id(&kept),
            Checkpoint::new(&execution, "d", json!("d")),
        ];
        let versions: Vec<i64> = burst(&store, &saves)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(versions, vec![2, 1, 3, 4, 1, 5], "round {round}");
        let history = store.list(&execution).await.unwrap();
        let nodes: Vec<&str> = history.iter().map(|c| c.node_name.as_str()).collect();
        assert_eq!(nodes, vec!["replaced", "a", "b", "c", "d"], "round {round}");
        assert_eq!(history[0].state, json!("twice"), "round {round}");
    }
    assert!(store.group_commit_stats().unwrap().split_groups() >= 12);
}

#[tokio::test]
async fn a_group_that_lost_the_race_for_its_versions_is_numbered_again() {
    let store = support::store().await;
    let schema = schema_of(&store);
    store
        .save(&Checkpoint::new("r", "n", json!(1)))
        .await
        .unwrap();
    // Another writer holds version 2 of `r`, not yet committed.
    let mut other = support::client().await;
    let tx = other.transaction().await.unwrap();
    tx.execute(
        &format!(
            "INSERT INTO \"{schema}\".checkpoints (id, execution_id, node_name, state, metadata, \
             \"timestamp\", version) VALUES ('theirs', 'r', 'other', '{{}}', '{{}}', now(), 2)"
        ),
        &[],
    )
    .await
    .unwrap();
    let saves: Vec<Checkpoint> = std::iter::once(Checkpoint::new("elsewhere", "n", json!(0)))
        .chain((0..6).map(|i| Checkpoint::new("r", format!("ours-{i}"), json!(i))))
        .chain((0..3).map(|i| Checkpoint::new(format!("free-{i}"), "n", json!(i))))
        .collect();
    let writer = {
        let store = store.clone();
        let saves = saves.clone();
        tokio::spawn(async move { burst(&store, &saves).await })
    };
    // Let the group reach the server and wait on the uncommitted version 2.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the group waits for the other writer"
    );
    tx.commit().await.unwrap();
    let results = writer.await.unwrap();
    let ours: Vec<i64> = results[1..7].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(
        ours,
        (3..=8).collect::<Vec<i64>>(),
        "after theirs, in order"
    );
    assert!(results[7..].iter().all(|r| r.as_ref().unwrap() == &1));
    let stats = store.group_commit_stats().unwrap();
    assert!(stats.lost_races() >= 1, "{stats:?}");
    let history = store.list("r").await.unwrap();
    assert_eq!(history[1].node_name, "other");
    assert_eq!(history.len(), 8);
}

#[tokio::test]
async fn deltas_whose_base_another_instance_replaced_are_saved_whole() {
    let options = support::options().await.min_delta_bytes(0);
    let a = connect(options.clone()).await;
    let b = connect(options).await;
    let mut last = None;
    // Long enough for deltas to be clearly smaller than the states.
    for step in 1..=20 {
        let cp = Checkpoint::new("d", "n", conversation(step));
        a.save(&cp).await.unwrap();
        last = Some(cp);
    }
    // Another instance changes the row `a` would build its next deltas on.
    let replaced = Checkpoint {
        state: json!({"replaced": true}),
        ..last.unwrap()
    };
    b.save(&replaced).await.unwrap();
    let saves: Vec<Checkpoint> = std::iter::once(Checkpoint::new("elsewhere", "n", json!(0)))
        .chain((21..=24).map(|step| Checkpoint::new("d", "n", conversation(step))))
        .collect();
    let results = burst(&a, &saves).await;
    let versions: Vec<i64> = results[1..].iter().map(|r| *r.as_ref().unwrap()).collect();
    assert_eq!(versions, vec![21, 22, 23, 24]);
    assert!(a.group_commit_stats().unwrap().split_groups() >= 1);
    for cp in &saves[1..] {
        assert_eq!(b.load(&cp.id).await.unwrap().state, cp.state);
    }
    assert_eq!(b.load(&replaced.id).await.unwrap().state, replaced.state);
}

/// The versions `execution` holds, oldest first.
async fn versions_of(store: &PostgresStore, execution: &str) -> Vec<i64> {
    store
        .list(execution)
        .await
        .unwrap()
        .iter()
        .map(|cp| cp.version)
        .collect()
}

#[tokio::test]
async fn prunes_queued_behind_a_save_go_together_each_with_its_own_count() {
    prunes_go_together(support::store().await).await;
}

#[tokio::test]
async fn prunes_go_together_on_the_hash_layout() {
    let layout = TableLayout::hash_partitioned(4).expect("a valid layout");
    prunes_go_together(connect(support::options().await.table_layout(layout)).await).await;
}

#[tokio::test]
async fn prunes_go_together_on_the_time_layout_each_in_its_partition() {
    let layout = TableLayout::time_partitioned(PartitionPeriod::Day);
    prunes_go_together(connect(support::options().await.table_layout(layout)).await).await;
}

/// A burst of prunes of one execution each (different limits, an age limit, lazy or not, two
/// of one execution, one of an execution that does not exist) queued behind a save.
async fn prunes_go_together(store: PostgresStore) {
    for e in 0..6 {
        let batch: Vec<Checkpoint> = (0..10)
            .map(|i| Checkpoint::new(format!("p{e}"), "n", json!({ "i": i })))
            .collect();
        store.save_batch(&batch).await.unwrap();
    }
    // Old enough for the age limit below, new enough for it to leave the last two.
    let old = Checkpoint::new("aged", "n", json!("old"))
        .with_timestamp(time::OffsetDateTime::now_utc() - Duration::from_secs(3_600));
    store.save(&old).await.unwrap();
    store
        .save(&Checkpoint::new("aged", "n", json!("new")))
        .await
        .unwrap();
    let policies = [
        RetentionPolicy::keep_last(3).for_execution("p0"),
        RetentionPolicy::keep_last(3)
            .for_execution("p1")
            .lazy_flush(),
        RetentionPolicy::keep_last(1).for_execution("p2"),
        RetentionPolicy::keep_last(20).for_execution("p3"),
        RetentionPolicy::keep_last(9).for_execution("p4"),
        // A second prune of p4 in the same burst waits for the next group.
        RetentionPolicy::keep_last(4)
            .for_execution("p4")
            .lazy_flush(),
        RetentionPolicy::older_than(Duration::from_secs(60)).for_execution("aged"),
        RetentionPolicy::keep_last(1).for_execution("nobody"),
    ];
    let before = store.group_commit_stats().unwrap();
    // The save goes out alone at once; the prunes queue behind it.
    let first = Checkpoint::new("p5", "n", json!("lead"));
    let lead = store.save(&first);
    let prunes = join_all(policies.iter().map(|p| store.prune(p)));
    let (lead, removed) = tokio::join!(lead, prunes);
    assert_eq!(lead.unwrap(), 11);
    let removed: Vec<u64> = removed.into_iter().map(Result::unwrap).collect();
    assert_eq!(removed, vec![7, 7, 9, 0, 1, 5, 1, 0]);
    let stats = store.group_commit_stats().unwrap().since(&before);
    assert_eq!(stats.grouped_prunes(), 8, "{stats:?}");
    assert_eq!(versions_of(&store, "p0").await, vec![8, 9, 10]);
    assert_eq!(versions_of(&store, "p1").await, vec![8, 9, 10]);
    assert_eq!(versions_of(&store, "p2").await, vec![10]);
    assert_eq!(
        versions_of(&store, "p3").await,
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(versions_of(&store, "p4").await, vec![7, 8, 9, 10]);
    assert_eq!(versions_of(&store, "aged").await, vec![2]);
    assert_eq!(
        versions_of(&store, "p5").await,
        (1..=11).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn grouped_prunes_that_would_strand_a_delta_are_made_alone_and_keep_every_state() {
    let store = connect(
        support::options()
            .await
            .state_encoding(StateEncoding::delta(8).expect("a valid distance"))
            .min_delta_bytes(0)
            .group_commit(GroupCommit::default().lone_saves_grouped(true)),
    )
    .await;
    let mut saved: Vec<Vec<Checkpoint>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for step in 1..=12 {
        for (e, kept) in saved.iter_mut().enumerate() {
            let cp = Checkpoint::new(format!("chat{e}"), "n", conversation(step));
            store.save(&cp).await.unwrap();
            kept.push(cp);
        }
    }
    // Each execution's oldest kept rows are deltas on rows the prune removes.
    let policies: Vec<RetentionPolicy> = (0..3)
        .map(|e| RetentionPolicy::keep_last(5).for_execution(format!("chat{e}")))
        .collect();
    let removed = join_all(policies.iter().map(|p| store.prune(p))).await;
    for (e, result) in removed.into_iter().enumerate() {
        assert_eq!(result.unwrap(), 7, "chat{e}");
    }
    assert!(store.group_commit_stats().unwrap().grouped_prunes() >= 1);
    for (e, expected) in saved.iter().enumerate() {
        let kept = store.list(&format!("chat{e}")).await.unwrap();
        assert_eq!(kept.len(), 5);
        for (got, want) in kept.iter().zip(&expected[7..]) {
            assert_eq!(got.id, want.id);
            assert_eq!(got.state, want.state);
            assert_eq!(got.state.to_string(), want.state.to_string());
        }
    }
    let verification = store.verify(None).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.checkpoints, 15);
}

#[tokio::test]
async fn groups_work_unnamed_with_relaxed_commits_and_in_jsonb() {
    let variants = [
        ("unnamed", support::options().await.statement_cache(false)),
        ("async", support::options().await.synchronous_commit(false)),
        (
            "jsonb",
            support::options()
                .await
                .state_encoding(StateEncoding::Jsonb),
        ),
    ];
    for (name, options) in variants {
        let store = connect(options.min_delta_bytes(0)).await;
        let mut saves = Vec::new();
        for step in 1..=20 {
            let execution = format!("x{}", step % 4);
            saves.push(
                Checkpoint::new(execution, "n", conversation(step)).with_metadata("step", step),
            );
        }
        let results = burst(&store, &saves).await;
        for (cp, result) in saves.iter().zip(&results) {
            let version = *result.as_ref().unwrap();
            let loaded = store.load(&cp.id).await.unwrap();
            assert_eq!(
                loaded,
                Checkpoint {
                    version,
                    ..cp.clone()
                },
                "{name}"
            );
        }
        for e in 0..4 {
            let history = store.list(&format!("x{e}")).await.unwrap();
            let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
            assert_eq!(versions, vec![1, 2, 3, 4, 5], "{name}");
            let steps: Vec<i64> = history
                .iter()
                .map(|c| c.metadata["step"].as_i64().unwrap())
                .collect();
            let mut sorted = steps.clone();
            sorted.sort_unstable();
            assert_eq!(steps, sorted, "{name}: arrival order");
        }
        assert!(store.group_commit_stats().unwrap().largest() >= 2, "{name}");
    }
}

#[tokio::test]
async fn group_commit_can_be_turned_off() {
    let options = support::options()
        .await
        .group_commit(GroupCommit::disabled());
    let store = connect(options).await;
    assert!(store.group_commit_stats().is_none());
    let saves: Vec<Checkpoint> = (0..8)
        .map(|i| Checkpoint::new("off", "n", json!(i)))
        .collect();
    let mut versions: Vec<i64> = burst(&store, &saves)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
}

#[tokio::test]
async fn bad_group_settings_are_refused_on_connect() {
    for (settings, field) in [
        (
            GroupCommit::default().max_saves(0),
            "group_commit_max_saves",
        ),
        (
            GroupCommit::default().max_in_flight(0),
            "group_commit_max_in_flight",
        ),
        (
            GroupCommit::default().max_bytes(GroupCommit::MAX_BYTES + 1),
            "group_commit_max_bytes",
        ),
    ] {
        let options = support::options().await.group_commit(settings);
        let err = PostgresStore::connect(options).await.unwrap_err();
        assert!(err.is_invalid_field(field), "{err}");
    }
    let err = PostgresOptions::new("postgres://h/db?group_commit_max_saves=0").unwrap_err();
    assert!(err.is_invalid_field("group_commit_max_saves"), "{err}");
    let err = PostgresOptions::new("postgres://h/db?group_commit=sometimes").unwrap_err();
    assert!(err.is_invalid_field("group_commit"), "{err}");
}

const TASKS: usize = 16;
const EXECUTIONS: usize = 8;

#[tokio::test]
async fn a_client_killed_while_groups_are_in_flight_loses_no_acknowledged_save() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("gkill");
    let store = connect(
        PostgresOptions::new(&url)
            .unwrap()
            .schema(&schema)
            .max_connections(4),
    )
    .await;
    let mut child =
        checkpoint_core::conformance::child::command("child_saving_in_groups_until_killed")
            .env("GROUP_CHILD_URL", &url)
            .env("GROUP_CHILD_SCHEMA", &schema)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let started = Instant::now();
    let mut acked = Vec::new();
    let mut largest_group = 0usize;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"ack") => {
                let step: usize = fields[3].parse().expect("step");
                let version: i64 = fields[4].parse().expect("version");
                acked.push((fields[1].to_owned(), fields[2].to_owned(), step, version));
            }
            Some(&"largest") => largest_group = fields[1].parse().expect("size"),
            _ => {}
        }
        // Kill it while groups are in flight.
        if acked.len() >= 600 || started.elapsed() > Duration::from_secs(60) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGKILL);
            }
            break;
        }
    }
    let _ = child.wait();
    assert!(
        acked.len() >= 600,
        "the child acknowledged only {} saves",
        acked.len()
    );
    assert!(
        largest_group >= 2,
        "saves travelled in groups ({largest_group})"
    );
    for (id, execution, step, version) in &acked {
        let cp = store.load(id).await.expect("an acknowledged checkpoint");
        assert_eq!(
            (&cp.execution_id, cp.version, &cp.state),
            (execution, *version, &conversation(step % 40 + 1)),
            "step {step}"
        );
    }
    // Nothing half-written: every history reads whole, its versions dense, and it goes on.
    for e in 0..EXECUTIONS {
        let execution = format!("g{e}");
        let history = store.list(&execution).await.expect("whole history");
        let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
        assert_eq!(
            versions,
            (1..=i64::try_from(history.len()).unwrap()).collect::<Vec<_>>()
        );
        let next = Checkpoint::new(&*execution, "n", json!({"after": "kill"}));
        store.save(&next).await.expect("save after the kill");
    }
}

/// The child of the kill test: 16 tasks appending growing states to 8 executions until it is
/// killed, printing each acknowledged save and, now and then, the largest group so far. Run
/// only by `a_client_killed_while_groups_are_in_flight_loses_no_acknowledged_save`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the kill test"]
async fn child_saving_in_groups_until_killed() {
    let url = std::env::var("GROUP_CHILD_URL").expect("run by the kill test");
    let schema = std::env::var("GROUP_CHILD_SCHEMA").expect("run by the kill test");
    let store = connect(
        PostgresOptions::new(&url)
            .unwrap()
            .schema(schema)
            .max_connections(4)
            .state_encoding(StateEncoding::delta(8).unwrap())
            .min_delta_bytes(0),
    )
    .await;
    let tasks = (0..TASKS).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            for step in (t..).step_by(TASKS) {
                let execution = format!("g{}", t % EXECUTIONS);
                let cp = Checkpoint::new(&*execution, "n", conversation(step % 40 + 1));
                let version = store.save(&cp).await.expect("save");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {} {execution} {step} {version}", cp.id).expect("stdout");
                if step % 50 == 0 {
                    let largest = store.group_commit_stats().map_or(0, |s| s.largest());
                    writeln!(out, "largest {largest}").expect("stdout");
                }
                out.flush().expect("stdout");
            }
        })
    });
    join_all(tasks).await;
}
