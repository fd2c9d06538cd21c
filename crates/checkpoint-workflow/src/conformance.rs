//! The deploy check every backend runs (feature `conformance`): an execution paused under one
//! version of a graph is resumed by the next version, in another process.
//!
//! Version 1 of a small publishing graph (`write -> review -> publish`, paused before
//! `review`) pauses an execution with [`pause_under_v1`]; the process ends. Version 2 adds a
//! field to the state (a migration from version 1 fills it) and renames `review` to `check`.
//! [`resume_under_v2`], in a new process, shows that without the rename mapping the
//! execution is refused naming what changed and nothing is stored, and that with it the
//! execution resumes at `check`, finishes, and keeps its version 1 checkpoints as they were.
//!
//! ```ignore
//! // In the child process (or before the restart):
//! checkpoint_workflow::conformance::pause_under_v1(&store, "doc-1").await;
//! // In the test, once the child has exited:
//! checkpoint_workflow::conformance::resume_under_v2(&store, "doc-1").await;
//! ```

use checkpoint_core::CheckpointStore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{meta, Migrations, Next, RunStatus, Workflow, WorkflowError};

/// The state version 1 of the graph keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocV1 {
    /// The document.
    pub text: String,
}

/// The state version 2 keeps: one field more.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DocV2 {
    /// The document.
    pub text: String,
    /// Who approved it; version 1 states come with `["migrated"]`.
    pub approved_by: Vec<String>,
}

/// Version 1: `write -> review -> publish`, paused before `review`.
pub fn graph_v1() -> Workflow<DocV1> {
    Workflow::new("write")
        .node("write", |mut d: DocV1| async move {
            d.text.push_str("draft");
            Ok((d, Next::to("review")))
        })
        .node("review", |mut d: DocV1| async move {
            d.text.push_str(" reviewed");
            Ok((d, Next::to("publish")))
        })
        .node("publish", |mut d: DocV1| async move {
            d.text.push_str(" published");
            Ok((d, Next::End))
        })
        .edges("write", ["review"])
        .edges("review", ["publish"])
        .edges("publish", [meta::END])
        .interrupt_before("review")
}

/// Version 2: state version 2 (a migration from 1), `review` renamed `check`; with
/// `rename_mapping`, it maps `review` to `check`.
pub fn graph_v2(rename_mapping: bool) -> Workflow<DocV2> {
    let migrations = Migrations::new(2).step_typed(1, |old: DocV1| {
        Ok(DocV2 {
            text: old.text,
            approved_by: vec!["migrated".into()],
        })
    });
    let workflow = Workflow::new("write")
        .node("write", |mut d: DocV2| async move {
            d.text.push_str("draft");
            Ok((d, Next::to("check")))
        })
        .node("check", |mut d: DocV2| async move {
            d.text.push_str(" checked");
            d.approved_by.push("check".into());
            Ok((d, Next::to("publish")))
        })
        .node("publish", |mut d: DocV2| async move {
            d.text.push_str(" published");
            Ok((d, Next::End))
        })
        .edges("write", ["check"])
        .edges("check", ["publish"])
        .edges("publish", [meta::END])
        .interrupt_before("check")
        .migrations(migrations);
    if rename_mapping {
        workflow.renamed("review", "check")
    } else {
        workflow
    }
}

/// Runs `execution_id` under version 1 until it pauses before `review`.
pub async fn pause_under_v1<S: CheckpointStore + ?Sized>(store: &S, execution_id: &str) {
    let paused = graph_v1()
        .run(store, execution_id, DocV1::default())
        .await
        .expect("version 1 runs until its pause");
    assert_eq!(
        paused.status,
        RunStatus::Interrupted {
            next: "review".into()
        }
    );
    assert_eq!(paused.ran, ["write"]);
}

/// Resumes `execution_id`, paused by [`pause_under_v1`], under version 2: refused without the
/// mapping (naming what changed, storing nothing), finished with it.
pub async fn resume_under_v2<S: CheckpointStore + ?Sized>(store: &S, execution_id: &str) {
    let before = store.list(execution_id).await.expect("list");
    assert_eq!(before.len(), 2, "write's checkpoint and the pause");
    let v1 = graph_v1().fingerprint();
    assert!(
        before
            .iter()
            .all(|cp| meta::graph(cp) == Some(v1.as_str()) && meta::state_version(cp) == Some(1)),
        "version 1 recorded its graph and state version: {before:?}"
    );

    let refused = graph_v2(false)
        .run(store, execution_id, DocV2::default())
        .await
        .expect_err("another graph without a mapping is refused");
    let WorkflowError::GraphChanged {
        execution_id: refused_id,
        change,
    } = &refused
    else {
        panic!("expected GraphChanged, got {refused:?}");
    };
    assert_eq!(refused_id, execution_id);
    assert_eq!(change.stored, v1.as_str());
    assert_eq!(change.current, graph_v2(false).fingerprint());
    assert_eq!(change.added, ["check"]);
    assert_eq!(change.removed, ["review"]);
    assert!(
        refused
            .to_string()
            .contains("nodes added: check; nodes removed: review"),
        "{refused}"
    );
    assert_eq!(
        store.list(execution_id).await.expect("list"),
        before,
        "a refused resume stores nothing"
    );

    let v2 = graph_v2(true);
    let done = v2
        .run(store, execution_id, DocV2::default())
        .await
        .expect("version 2 with the mapping resumes");
    assert_eq!(done.status, RunStatus::Finished);
    assert_eq!(done.ran, ["check", "publish"]);
    assert_eq!(
        done.state,
        DocV2 {
            text: "draft checked published".into(),
            approved_by: vec!["migrated".into(), "check".into()],
        }
    );

    let after = store.list(execution_id).await.expect("list");
    assert_eq!(
        &after[..2],
        &before[..],
        "version 1's checkpoints are untouched"
    );
    let new = &after[2..];
    let nodes: Vec<&str> = new.iter().map(|cp| cp.node_name.as_str()).collect();
    assert_eq!(nodes, ["check", "publish"]);
    let v2_print = v2.fingerprint();
    for cp in new {
        assert_eq!(meta::graph(cp), Some(v2_print.as_str()));
        assert_eq!(meta::state_version(cp), Some(2));
    }
    assert_eq!(
        new[0].state,
        json!({ "text": "draft checked", "approved_by": ["migrated", "check"] })
    );
}
