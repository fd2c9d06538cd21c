//! Durable workflows on PostgreSQL: resume from another store instance, two runners racing on
//! one execution, fork and human edits.

mod support;

use std::process::Stdio;
use std::sync::Arc;

use checkpoint_core::{CheckpointStore, Error};
use checkpoint_postgres::{PostgresOptions, PostgresStore};
use checkpoint_workflow::{conformance, meta, Next, RunStatus, Workflow, WorkflowStoreExt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Doc {
    text: String,
    steps: Vec<String>,
}

fn editing() -> Workflow<Doc> {
    Workflow::new("write")
        .node("write", |mut d: Doc| async move {
            d.text.push_str("draft");
            d.steps.push("write".into());
            Ok((d, Next::to("review")))
        })
        .node("review", |mut d: Doc| async move {
            d.steps.push("review".into());
            let next = if d.text.contains("urgent") {
                "publish_now"
            } else {
                "publish"
            };
            Ok((d, Next::to(next)))
        })
        .node("publish", |mut d: Doc| async move {
            d.steps.push("publish".into());
            Ok((d, Next::End))
        })
        .node("publish_now", |mut d: Doc| async move {
            d.steps.push("publish_now".into());
            Ok((d, Next::End))
        })
}

#[tokio::test]
async fn a_paused_run_is_resumed_by_another_store_instance_with_the_edit() {
    let options = support::options().await;
    let first = PostgresStore::connect(options.clone()).await.unwrap();
    let workflow = editing().interrupt_before("review");
    let paused = workflow.run(&first, "doc-1", Doc::default()).await.unwrap();
    assert_eq!(
        paused.status,
        RunStatus::Interrupted {
            next: "review".into()
        }
    );
    first.close();

    // Another instance (a new process after a deploy) picks the execution up.
    let second = PostgresStore::connect(options).await.unwrap();
    let resumed = second.resume::<Doc>("doc-1").await.unwrap().unwrap();
    assert_eq!(resumed.next.as_deref(), Some("review"));
    let mut edited = resumed.state;
    edited.text.push_str(" urgent");
    second
        .update_state("doc-1", "editor", &edited)
        .await
        .unwrap();

    let done = workflow
        .run(&second, "doc-1", Doc::default())
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Finished);
    assert_eq!(done.ran, ["review", "publish_now"]);
    let sources: Vec<String> = second
        .list("doc-1")
        .await
        .unwrap()
        .iter()
        .map(|cp| cp.metadata[meta::SOURCE].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(sources, ["run", "run", "update", "run", "run"]);
}

#[tokio::test]
async fn two_runners_on_two_instances_one_wins_the_other_stores_nothing() {
    let options = support::options().await;
    let a = PostgresStore::connect(options.clone()).await.unwrap();
    let b = PostgresStore::connect(options).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let racing = Workflow::new("claim").node("claim", move |who: String| {
        let barrier = barrier.clone();
        // Both runners have read the empty execution before either writes.
        async move {
            barrier.wait().await;
            Ok((who, Next::End))
        }
    });
    let (ra, rb) = tokio::join!(
        racing.run(&a, "job", "instance-a".to_string()),
        racing.run(&b, "job", "instance-b".to_string())
    );
    let (won, lost) = match (ra, rb) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert!(
        matches!(lost.as_store(), Some(Error::Conflict { version: 1, .. })),
        "{lost:?}"
    );
    let history = a.list("job").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, serde_json::json!(won.state));
}

#[tokio::test]
async fn a_fork_from_an_earlier_step_takes_another_branch() {
    let store = support::store().await;
    let workflow = editing();
    let original = workflow.run(&store, "doc", Doc::default()).await.unwrap();
    assert_eq!(original.ran, ["write", "review", "publish"]);

    let after_write = store.list("doc").await.unwrap().remove(0);
    let fork = store.fork(&after_write.id, "doc-urgent").await.unwrap();
    assert_eq!(fork.parent_id.as_deref(), Some(after_write.id.as_str()));
    assert_eq!(fork.metadata["forked_from"]["version"], 1);
    let mut changed: Doc = fork.state_as().unwrap();
    changed.text = "urgent draft".into();
    store
        .update_state("doc-urgent", "what_if", &changed)
        .await
        .unwrap();

    let branch = workflow
        .run(&store, "doc-urgent", Doc::default())
        .await
        .unwrap();
    assert_eq!(branch.ran, ["review", "publish_now"]);
    assert_eq!(branch.state.steps, ["write", "review", "publish_now"]);
    // The original history is untouched.
    assert_eq!(store.list("doc").await.unwrap().len(), 3);
    assert_eq!(
        store.resume::<Doc>("doc").await.unwrap().unwrap().state,
        original.state
    );
}

#[tokio::test]
async fn a_node_error_is_saved_and_the_next_run_retries_it() {
    let store = support::store().await;
    let failing = Workflow::new("fetch").node("fetch", |n: u32| async move {
        if n == 0 {
            Err("upstream timeout".into())
        } else {
            Ok((n, Next::End))
        }
    });
    let err = failing.run(&store, "e", 0).await.unwrap_err();
    assert!(
        matches!(err, checkpoint_workflow::WorkflowError::Node { .. }),
        "{err:?}"
    );
    let saved = store.latest("e").await.unwrap().unwrap();
    assert_eq!(saved.metadata["error"], "upstream timeout");

    // Fix the input as a person would, and run again: the node is retried.
    store.update_state("e", "operator", &7u32).await.unwrap();
    let done = failing.run(&store, "e", 0).await.unwrap();
    assert_eq!(
        (done.ran.as_slice(), done.state),
        (&["fetch".to_string()][..], 7)
    );
}

/// Deploying a new graph while an execution is paused (`checkpoint_workflow::conformance`):
/// version 1 pauses it in a child process that then exits, and version 2 (a field added by a
/// migration, a node renamed) resumes it in this process.
#[tokio::test]
async fn an_execution_paused_under_one_graph_resumes_under_the_next() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("deploy");
    let status = checkpoint_core::conformance::child::command("child_pausing_under_version_1")
        .env("DEPLOY_URL", &url)
        .env("DEPLOY_SCHEMA", &schema)
        .stdout(Stdio::null())
        .status()
        .expect("run the child");
    assert!(status.success(), "the child paused the execution: {status}");

    let options = PostgresOptions::new(&url).unwrap().schema(&schema);
    let store = PostgresStore::connect(options).await.unwrap();
    conformance::resume_under_v2(&store, "doc-1").await;
}

/// The child: pauses the execution under version 1, then the process ends.
#[tokio::test]
#[ignore = "run as a child process by the deploy test"]
async fn child_pausing_under_version_1() {
    let url = std::env::var("DEPLOY_URL").expect("set by the parent");
    let schema = std::env::var("DEPLOY_SCHEMA").expect("set by the parent");
    let options = PostgresOptions::new(&url).unwrap().schema(&schema);
    let store = PostgresStore::connect(options).await.unwrap();
    conformance::pause_under_v1(&store, "doc-1").await;
    store.close();
}
