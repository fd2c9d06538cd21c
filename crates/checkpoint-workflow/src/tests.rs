//! The runner on the memory store: resume, policies, pauses, errors, races, forks.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use checkpoint_core::{CheckpointStore, Error};
use checkpoint_memory::MemoryStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::*;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Job {
    done: Vec<String>,
    total: u64,
}

/// Counts how often each node ran, across runs.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn hit(&self, node: &str) {
        *self.0.lock().unwrap().entry(node.to_owned()).or_default() += 1;
    }
    fn count(&self, node: &str) -> usize {
        self.0.lock().unwrap().get(node).copied().unwrap_or(0)
    }
}

/// a -> b -> c -> end; each node appends its name and adds its length.
fn pipeline(runs: &Runs) -> Workflow<Job> {
    let mut workflow = Workflow::new("a");
    for (name, next) in [("a", Next::to("b")), ("b", Next::to("c")), ("c", Next::End)] {
        let runs = runs.clone();
        workflow = workflow.node(name, move |mut job: Job| {
            let runs = runs.clone();
            let next = next.clone();
            async move {
                runs.hit(name);
                job.done.push(name.to_owned());
                job.total += 1;
                Ok((job, next))
            }
        });
    }
    workflow
}

fn nodes(checkpoints: &[checkpoint_core::Checkpoint]) -> Vec<&str> {
    checkpoints.iter().map(|c| c.node_name.as_str()).collect()
}

#[tokio::test]
async fn a_run_saves_after_every_node_and_records_its_progress() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let outcome = pipeline(&runs)
        .run(&store, "e", Job::default())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Finished);
    assert_eq!(outcome.state.done, ["a", "b", "c"]);
    assert_eq!(outcome.ran, ["a", "b", "c"]);
    let history = store.list("e").await.unwrap();
    assert_eq!(nodes(&history), ["a", "b", "c"]);
    let recorded: Vec<_> = history
        .iter()
        .map(|c| (meta::step(c), meta::next(c), c.metadata["outcome"].clone()))
        .collect();
    assert_eq!(
        recorded,
        [
            (1, Some("b".to_owned()), json!("ok")),
            (2, Some("c".to_owned()), json!("ok")),
            (3, None, json!("finished")),
        ]
    );
    assert!(history.iter().all(|c| c.metadata["source"] == "run"));
    assert_eq!(outcome.checkpoint.as_ref(), history.last());
}

#[tokio::test]
async fn a_run_resumes_after_the_latest_checkpoint_without_repeating_nodes() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    // A first process completed a and b, then died before c.
    let mut checkpointer = Checkpointer::new(&store, "e");
    let mut job = Job::default();
    for (node, next) in [("a", "b"), ("b", "c")] {
        job.done.push(node.into());
        job.total += 1;
        checkpointer
            .record_with(node, &job, meta::run(job.total, Some(next), "ok"))
            .await
            .unwrap();
    }
    let outcome = pipeline(&runs)
        .run(&store, "e", Job::default())
        .await
        .unwrap();
    assert_eq!(outcome.ran, ["c"]);
    assert_eq!(
        (runs.count("a"), runs.count("b"), runs.count("c")),
        (0, 0, 1)
    );
    assert_eq!(outcome.state.done, ["a", "b", "c"]);
    assert_eq!(meta::step(outcome.checkpoint.as_ref().unwrap()), 3);
}

#[tokio::test]
async fn running_a_finished_execution_runs_nothing() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs);
    workflow.run(&store, "e", Job::default()).await.unwrap();
    let again = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert!(again.ran.is_empty());
    assert_eq!(again.status, RunStatus::Finished);
    assert_eq!(again.state.total, 3);
    assert_eq!(store.list("e").await.unwrap().len(), 3);
}

#[tokio::test]
async fn every_n_nodes_saves_fewer_checkpoints_but_always_the_end() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs).save_policy(SavePolicy::EveryNodes(NonZeroU32::new(2).unwrap()));
    workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(nodes(&store.list("e").await.unwrap()), ["b", "c"]);
}

#[tokio::test]
async fn interrupt_before_pauses_and_the_next_run_continues_with_the_edit() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs).interrupt_before("c");
    let paused = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { next: "c".into() });
    assert_eq!(paused.ran, ["a", "b"]);
    assert_eq!(runs.count("c"), 0);
    let pause = paused.checkpoint.clone().unwrap();
    assert_eq!(pause.metadata["interrupt"], "before");
    assert_eq!(pause.node_name, "b");

    let mut edited = paused.state.clone();
    edited.total = 100;
    store.update_state("e", "reviewer", &edited).await.unwrap();

    let done = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(done.status, RunStatus::Finished);
    assert_eq!(done.ran, ["c"]);
    assert_eq!(done.state.total, 101, "c ran on the edited state");
    let sources: Vec<_> = store
        .list("e")
        .await
        .unwrap()
        .iter()
        .map(|c| c.metadata["source"].clone())
        .collect();
    assert_eq!(sources, ["run", "run", "run", "update", "run"]);
}

#[tokio::test]
async fn interrupt_before_the_start_node_pauses_before_anything_runs() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs).interrupt_before("a");
    let paused = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { next: "a".into() });
    assert_eq!(paused.checkpoint.unwrap().node_name, meta::START);
    let done = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(done.ran, ["a", "b", "c"]);
}

#[tokio::test]
async fn interrupt_after_pauses_once_the_node_is_saved() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs).interrupt_after("a");
    let paused = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(paused.status, RunStatus::Interrupted { next: "b".into() });
    assert_eq!(
        paused.checkpoint.as_ref().unwrap().metadata["interrupt"],
        "after"
    );
    let done = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(done.ran, ["b", "c"]);
    assert_eq!(runs.count("a"), 1);
}

#[tokio::test]
async fn a_failing_node_is_saved_with_its_error_and_retried_by_the_next_run() {
    let store = MemoryStore::new();
    let attempts = Arc::new(Mutex::new(0));
    let flaky = {
        let attempts = attempts.clone();
        move |mut job: Job| {
            let attempts = attempts.clone();
            async move {
                let mut n = attempts.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    return Err("the service is down".into());
                }
                job.done.push("flaky".into());
                Ok((job, Next::End))
            }
        }
    };
    let workflow = Workflow::new("first")
        .node("first", |mut job: Job| async move {
            job.done.push("first".into());
            Ok((job, Next::to("flaky")))
        })
        .node("flaky", flaky);
    let err = workflow.run(&store, "e", Job::default()).await.unwrap_err();
    match &err {
        WorkflowError::Node { node, source } => {
            assert_eq!(node, "flaky");
            assert_eq!(source.to_string(), "the service is down");
        }
        other => panic!("expected a node error, got {other:?}"),
    }
    let failed = store.latest("e").await.unwrap().unwrap();
    assert_eq!(failed.metadata["outcome"], "error");
    assert_eq!(failed.metadata["error"], "the service is down");
    assert_eq!(meta::next(&failed).as_deref(), Some("flaky"));
    assert_eq!(
        failed.state_as::<Job>().unwrap().done,
        ["first"],
        "the node's input"
    );

    let done = workflow.run(&store, "e", Job::default()).await.unwrap();
    assert_eq!(done.ran, ["flaky"]);
    assert_eq!(done.state.done, ["first", "flaky"]);
}

#[tokio::test]
async fn an_unknown_next_node_is_a_typed_error() {
    let store = MemoryStore::new();
    let workflow =
        Workflow::new("a").node("a", |n: u32| async move { Ok((n, Next::to("nowhere"))) });
    let err = workflow.run(&store, "e", 0).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::UnknownNode { node } if node == "nowhere"),
        "{err:?}"
    );
    assert_eq!(
        store.list("e").await.unwrap().len(),
        1,
        "a's checkpoint is kept"
    );

    let missing_start = Workflow::<u32>::new("ghost");
    assert!(matches!(
        missing_start.run(&store, "other", 0).await,
        Err(WorkflowError::UnknownNode { .. })
    ));
}

#[tokio::test]
async fn an_endless_loop_stops_at_the_step_limit() {
    let store = MemoryStore::new();
    let workflow = Workflow::new("spin")
        .node(
            "spin",
            |n: u32| async move { Ok((n + 1, Next::to("spin"))) },
        )
        .max_steps(5);
    let err = workflow.run(&store, "e", 0).await.unwrap_err();
    assert!(
        matches!(err, WorkflowError::StepLimit { limit: 5 }),
        "{err:?}"
    );
    assert_eq!(store.latest("e").await.unwrap().unwrap().state, json!(5));
}

#[tokio::test]
async fn two_runners_on_one_execution_one_wins_and_the_other_stores_nothing() {
    let store = MemoryStore::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let workflow = Workflow::new("work").node("work", move |tag: String| {
        let barrier = barrier.clone();
        // Both runners have read the (empty) execution before either writes.
        async move {
            barrier.wait().await;
            Ok((tag, Next::End))
        }
    });
    let (a, b) = tokio::join!(
        workflow.run(&store, "e", "runner-a".to_string()),
        workflow.run(&store, "e", "runner-b".to_string())
    );
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("expected one winner, got {other:?}"),
    };
    assert!(
        matches!(lost.as_store(), Some(Error::Conflict { version: 1, .. })),
        "{lost:?}"
    );
    let history = store.list("e").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, json!(won.state));
}

#[tokio::test]
async fn a_fork_continues_on_its_own_branch() {
    let runs = Runs::default();
    let store = MemoryStore::new();
    let workflow = pipeline(&runs);
    workflow.run(&store, "main", Job::default()).await.unwrap();
    let after_a = store.list("main").await.unwrap().remove(0);

    let fork = store.fork(&after_a.id, "branch").await.unwrap();
    assert_eq!(fork.metadata["source"], "fork");
    let mut changed: Job = fork.state_as().unwrap();
    changed.total = 40;
    store
        .update_state("branch", "what-if", &changed)
        .await
        .unwrap();

    let branch = workflow
        .run(&store, "branch", Job::default())
        .await
        .unwrap();
    assert_eq!(branch.ran, ["b", "c"]);
    assert_eq!(branch.state.total, 42);
    assert_eq!(
        store
            .latest("main")
            .await
            .unwrap()
            .unwrap()
            .state_as::<Job>()
            .unwrap()
            .total,
        3
    );
}

#[tokio::test]
async fn an_execution_at_the_highest_version_takes_no_further_step_or_edit() {
    let store = MemoryStore::new();
    let top = checkpoint_core::Checkpoint::new("e", "a", json!(Job::default()))
        .with_version(i64::MAX)
        .with_metadata("next", "b");
    store.save(&top).await.unwrap();
    let err = store.update_state("e", "human", &"edit").await.unwrap_err();
    assert!(err.is_invalid_field("version"), "{err}");
    let runs = Runs::default();
    let err = pipeline(&runs)
        .run(&store, "e", Job::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::Store(e) if e.is_invalid_field("version")),
        "{err:?}"
    );
    assert_eq!(store.list("e").await.unwrap(), vec![top]);
}

mod leased {
    use std::time::Duration;

    use super::*;

    const LONG: Duration = Duration::from_secs(600);

    fn nodes_of(checkpoints: &[checkpoint_core::Checkpoint]) -> Vec<&str> {
        checkpoints.iter().map(|cp| cp.node_name.as_str()).collect()
    }

    #[tokio::test]
    async fn a_leased_run_writes_under_its_lease_and_releases_it_at_the_end() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        let outcome = pipeline(&runs)
            .lease("worker-a", LONG)
            .run(&store, "e", Job::default())
            .await
            .unwrap();
        assert_eq!(outcome.status, RunStatus::Finished);
        assert_eq!(nodes_of(&store.list("e").await.unwrap()), ["a", "b", "c"]);
        assert_eq!(store.lease("e").await.unwrap(), None, "released");
        let next = store.acquire("e", "worker-b", LONG).await.unwrap();
        assert_eq!(next.token, 2, "the run held token 1");
    }

    #[tokio::test]
    async fn a_held_execution_is_refused_naming_its_holder_and_nothing_runs() {
        let store = MemoryStore::new();
        let holder = store.acquire("e", "worker-a", LONG).await.unwrap();
        let runs = Runs::default();
        let err = pipeline(&runs)
            .lease("worker-b", LONG)
            .run(&store, "e", Job::default())
            .await
            .unwrap_err();
        match err.as_store() {
            Some(Error::LeaseHeld { owner, token, .. }) => {
                assert_eq!((owner.as_str(), *token), ("worker-a", 1));
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
        assert_eq!(runs.count("a"), 0);
        assert!(store.list("e").await.unwrap().is_empty());
        assert_eq!(store.lease("e").await.unwrap(), Some(holder), "left alone");
    }

    #[tokio::test]
    async fn an_interrupt_releases_the_lease_and_the_resume_takes_it_again() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        let workflow = pipeline(&runs)
            .interrupt_before("c")
            .lease("worker-a", LONG);
        let paused = workflow.run(&store, "e", Job::default()).await.unwrap();
        assert_eq!(paused.status, RunStatus::Interrupted { next: "c".into() });
        assert_eq!(
            store.lease("e").await.unwrap(),
            None,
            "released at the pause"
        );
        let done = workflow.run(&store, "e", Job::default()).await.unwrap();
        assert_eq!(done.status, RunStatus::Finished);
        assert_eq!(runs.count("c"), 1);
        assert_eq!(store.acquire("e", "w", LONG).await.unwrap().token, 3);
    }

    #[tokio::test]
    async fn a_run_whose_lease_is_taken_over_stops_and_stores_nothing_more() {
        let store = MemoryStore::new();
        let operator = store.clone();
        let workflow = Workflow::new("a")
            .node("a", |n: u64| async move { Ok((n + 1, Next::to("b"))) })
            .node("b", move |n: u64| {
                let operator = operator.clone();
                async move {
                    operator.take_over("e", "operator", LONG).await?;
                    Ok((n + 1, Next::to("c")))
                }
            })
            .node("c", |n: u64| async move { Ok((n + 1, Next::End)) })
            .lease("worker-a", LONG);
        let err = workflow.run(&store, "e", 0).await.unwrap_err();
        match err.as_store() {
            Some(Error::LeaseLost {
                holder: Some(holder),
                current_token: Some(2),
                ..
            }) => assert_eq!(holder, "operator"),
            other => panic!("expected LeaseLost, got {other:?}"),
        }
        assert_eq!(nodes_of(&store.list("e").await.unwrap()), ["a"]);
        let lease = store.lease("e").await.unwrap().expect("the operator's");
        assert_eq!(lease.owner, "operator", "not released by the stopped run");
    }

    #[tokio::test]
    async fn a_node_longer_than_the_lease_keeps_it_by_renewal() {
        let store = MemoryStore::new();
        let probe = store.clone();
        let ttl = Duration::from_millis(90);
        let workflow = Workflow::new("slow")
            .node("slow", move |n: u64| {
                let probe = probe.clone();
                async move {
                    tokio::time::sleep(ttl * 4).await;
                    // Several times its time to live into the node, the lease is still held.
                    match probe.acquire("e", "worker-b", ttl).await {
                        Err(Error::LeaseHeld { owner, .. }) if owner == "worker-a" => {}
                        other => panic!("expected the lease still held, got {other:?}"),
                    }
                    Ok((n + 1, Next::End))
                }
            })
            .lease("worker-a", ttl);
        let outcome = workflow.run(&store, "e", 0).await.unwrap();
        assert_eq!(outcome.state, 1);
        assert_eq!(store.list("e").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_lost_renewal_stops_the_node_at_once() {
        let store = MemoryStore::new();
        let operator = store.clone();
        let ttl = Duration::from_millis(60);
        let finished = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&finished);
        let workflow = Workflow::new("slow")
            .node("slow", move |n: u64| {
                let operator = operator.clone();
                let flag = Arc::clone(&flag);
                async move {
                    operator.take_over("e", "operator", LONG).await?;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    *flag.lock().unwrap() = true;
                    Ok((n + 1, Next::End))
                }
            })
            .lease("worker-a", ttl);
        let started = std::time::Instant::now();
        let err = workflow.run(&store, "e", 0).await.unwrap_err();
        assert!(
            matches!(err.as_store(), Some(Error::LeaseLost { .. })),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "stopped at the renewal"
        );
        assert!(!*finished.lock().unwrap(), "the node was dropped");
        assert!(store.list("e").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_lease_setting_is_refused_before_anything_runs() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        let err = pipeline(&runs)
            .lease("", LONG)
            .run(&store, "e", Job::default())
            .await
            .unwrap_err();
        assert!(
            err.as_store().is_some_and(|e| e.is_invalid_field("owner")),
            "{err:?}"
        );
        assert_eq!(runs.count("a"), 0);
    }
}

/// Graph fingerprints and state versions on resume.
mod deploy {
    use super::*;
    use crate::graph::GraphChange;

    fn v1() -> Workflow<Job> {
        pipeline(&Runs::default()).interrupt_before("b")
    }

    async fn paused_under_v1(store: &MemoryStore) {
        let paused = v1().run(store, "e", Job::default()).await.unwrap();
        assert_eq!(paused.status, RunStatus::Interrupted { next: "b".into() });
    }

    /// v1 with `b` renamed `b2` (and `a` going to it).
    fn renamed_b(runs: &Runs) -> Workflow<Job> {
        let runs_b = runs.clone();
        Workflow::new("a")
            .node("a", |job: Job| async move { Ok((job, Next::to("b2"))) })
            .node("b2", move |mut job: Job| {
                let runs = runs_b.clone();
                async move {
                    runs.hit("b2");
                    job.done.push("b2".into());
                    Ok((job, Next::to("c")))
                }
            })
            .node("c", |mut job: Job| async move {
                job.done.push("c".into());
                Ok((job, Next::End))
            })
            .interrupt_before("b2")
    }

    #[tokio::test]
    async fn every_checkpoint_records_the_graph_and_the_state_version() {
        let store = MemoryStore::new();
        let workflow = pipeline(&Runs::default()).migrations(Migrations::new(4));
        workflow.run(&store, "e", Job::default()).await.unwrap();
        let print = workflow.fingerprint();
        for cp in store.list("e").await.unwrap() {
            assert_eq!(meta::graph(&cp), Some(print.as_str()));
            assert_eq!(meta::state_version(&cp), Some(4));
            assert_eq!(cp.metadata[meta::GRAPH_NODES], json!(["a", "b", "c"]));
        }
    }

    #[tokio::test]
    async fn another_graph_is_refused_naming_what_changed_and_nothing_runs() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let before = store.list("e").await.unwrap();
        let runs = Runs::default();
        let err = renamed_b(&runs)
            .run(&store, "e", Job::default())
            .await
            .unwrap_err();
        let WorkflowError::GraphChanged {
            execution_id,
            change,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(execution_id, "e");
        assert_eq!(
            **change,
            GraphChange {
                stored: v1().fingerprint().to_string(),
                current: renamed_b(&runs).fingerprint(),
                added: vec!["b2".into()],
                removed: vec!["b".into()],
                renamed: vec![],
            }
        );
        assert!(err
            .to_string()
            .starts_with("execution e was saved under another graph"));
        assert_eq!(runs.count("b2"), 0);
        assert_eq!(store.list("e").await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_rename_mapping_resumes_at_the_renamed_node() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let runs = Runs::default();
        let done = renamed_b(&runs)
            .renamed("b", "b2")
            .run(&store, "e", Job::default())
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Finished);
        assert_eq!(done.ran, ["b2", "c"]);
        assert_eq!(
            runs.count("b2"),
            1,
            "the pause before b is the pause before b2"
        );
    }

    #[tokio::test]
    async fn allowed_changes_resume_while_the_node_exists_and_refuse_once_it_is_gone() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let before = store.list("e").await.unwrap();
        let err = renamed_b(&Runs::default())
            .allow_graph_changes()
            .run(&store, "e", Job::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, WorkflowError::NodeGone { node, change, .. }
                if node == "b" && change.removed == ["b"]),
            "{err:?}"
        );
        assert_eq!(store.list("e").await.unwrap(), before);

        // Same nodes, one interrupt fewer: a changed fingerprint whose node still exists.
        let done = pipeline(&Runs::default())
            .allow_graph_changes()
            .run(&store, "e", Job::default())
            .await
            .unwrap();
        assert_eq!(done.ran, ["b", "c"]);
    }

    #[tokio::test]
    async fn the_same_graph_resumes_without_permission() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let done = v1().run(&store, "e", Job::default()).await.unwrap();
        assert_eq!(done.ran, ["b", "c"]);
    }

    #[tokio::test]
    async fn an_older_state_is_migrated_on_resume_and_saved_as_a_new_checkpoint() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let before = store.list("e").await.unwrap();
        // Version 2 counts in `total` ten times what version 1 did.
        let migrations = Migrations::new(2).step(1, |mut state| {
            let total = state["total"].as_u64().ok_or("no total")?;
            state["total"] = (total * 10).into();
            Ok(state)
        });
        let done = v1()
            .migrations(migrations.clone())
            .run(&store, "e", Job::default())
            .await
            .unwrap();
        assert_eq!(
            done.state.total, 12,
            "a's 1 became 10, then b and c added 1 each"
        );
        let after = store.list("e").await.unwrap();
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "stored states are not rewritten"
        );
        for cp in &after[before.len()..] {
            assert_eq!(meta::state_version(cp), Some(2));
        }

        // Reading back: old checkpoints come up through the migrations, new ones as they are.
        let first: Resumed<Job> = store
            .resume_from_migrated(&before[0].id, &migrations)
            .await
            .unwrap();
        assert_eq!(first.state.total, 10);
        assert_eq!(first.checkpoint.metadata[meta::STATE_VERSION], json!(2));
        let mut history = store.history("e", 2);
        let mut totals = Vec::new();
        while let Some(page) = history.next_page_migrated(&migrations).await.unwrap() {
            totals.extend(page.iter().map(|cp| cp.state["total"].as_u64().unwrap()));
        }
        assert_eq!(totals, [10, 10, 11, 12]);
        let latest: Resumed<Job> = store
            .resume_migrated("e", &migrations)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(latest.state.total, 12);
    }

    #[tokio::test]
    async fn a_failing_step_is_a_typed_error_on_every_read() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let broken = Migrations::new(2).step(1, |_| Err("no total".into()));
        let first = store.list("e").await.unwrap()[0].id.clone();
        let mut history = store.history("e", 10);
        let paged = history.next_page_migrated(&broken).await;
        let by_id = store.resume_from_migrated::<Job>(&first, &broken).await;
        let latest = store.resume_migrated::<Job>("e", &broken).await;
        for err in [paged.unwrap_err(), by_id.unwrap_err(), latest.unwrap_err()] {
            assert!(
                matches!(&err, WorkflowError::Migration { execution_id, source: MigrationError::Failed { from: 1, .. } } if execution_id == "e"),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_state_newer_than_the_code_is_refused_and_nothing_runs() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        pipeline(&runs)
            .interrupt_before("b")
            .migrations(Migrations::new(3))
            .run(&store, "e", Job::default())
            .await
            .unwrap();
        let before = store.list("e").await.unwrap();
        let err = v1().run(&store, "e", Job::default()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                WorkflowError::Migration {
                    source: MigrationError::TooNew {
                        found: 3,
                        current: 1
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "execution e: the state is at version 3, newer than version 1, the newest this code knows"
        );
        assert_eq!(store.list("e").await.unwrap(), before);
        let read = store.resume_migrated::<Job>("e", &Migrations::new(2)).await;
        assert!(
            matches!(read, Err(WorkflowError::Migration { .. })),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_registry_is_refused_before_anything_runs() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        let err = pipeline(&runs)
            .migrations(Migrations::new(2).step(1, Ok).step(1, Ok))
            .run(&store, "e", Job::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                WorkflowError::Migration {
                    source: MigrationError::Malformed { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(runs.count("a"), 0);
        assert!(store.list("e").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_undeclared_successor_stops_the_run_before_its_result_is_saved() {
        let store = MemoryStore::new();
        let runs = Runs::default();
        let workflow = pipeline(&runs).edges("a", ["c"]).edges("b", ["c"]);
        let err = workflow.run(&store, "e", Job::default()).await.unwrap_err();
        assert!(
            matches!(&err, WorkflowError::UndeclaredEdge { from, to } if from == "a" && to == "b"),
            "{err:?}"
        );
        assert!(store.list("e").await.unwrap().is_empty());

        let declared = pipeline(&runs)
            .edges("a", ["b"])
            .edges("b", ["c"])
            .edges("c", [meta::END]);
        assert_ne!(declared.fingerprint(), pipeline(&runs).fingerprint());
        let done = declared.run(&store, "e", Job::default()).await.unwrap();
        assert_eq!(done.ran, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn edits_record_the_version_they_are_written_in() {
        let store = MemoryStore::new();
        paused_under_v1(&store).await;
        let kept = store
            .update_state("e", "human", &Job::default())
            .await
            .unwrap();
        assert_eq!(
            meta::state_version(&kept),
            Some(1),
            "the edited state's version"
        );
        assert_eq!(meta::graph(&kept), Some(v1().fingerprint().as_str()));

        let v2 = v1().migrations(Migrations::new(2).step(1, Ok));
        let edit = v2
            .update_state(&store, "e", "human", &Job::default())
            .await
            .unwrap();
        assert_eq!(meta::state_version(&edit), Some(2));
        assert_eq!(meta::paused_before(&edit).as_deref(), Some("b"));
        assert_eq!(edit.parent_id.as_deref(), Some(kept.id.as_str()));
        let err = v2
            .update_state(&store, "nobody", "human", &Job::default())
            .await
            .unwrap_err();
        assert!(
            err.as_store()
                .is_some_and(|e| e.is_invalid_field("execution_id")),
            "{err:?}"
        );
    }
}
