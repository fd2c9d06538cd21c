//! adk-graph's checkpointer contract, checked on any store: the methods one by one, then real
//! graphs (an interrupt resumed by a new graph instance, a subgraph, time travel, adk-graph's
//! delta wrapper) running on the adapter. Each backend's test file runs every check.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adk_graph::checkpoint::{Checkpointer, RetentionPolicy};
use adk_graph::delta::{DeltaCheckpointer, DeltaConfig};
use adk_graph::edge::{END, START};
use adk_graph::error::GraphError;
use adk_graph::graph::{CompiledGraph, StateGraph};
use adk_graph::node::{ExecutionConfig, NodeOutput};
use adk_graph::state::{Checkpoint, State};
use adk_graph::subgraph::SubgraphNode;
use checkpoint_adk::{store_error, AdkCheckpointer};
use checkpoint_core::CheckpointStore;
use serde_json::{json, Value};

pub(crate) type Store = Arc<dyn CheckpointStore>;

fn adapter(store: &Store) -> AdkCheckpointer<Store> {
    AdkCheckpointer::new(Arc::clone(store))
}

fn checkpoint(thread: &str, step: usize, state: Value, days_ago: i64) -> Checkpoint {
    let state: State = serde_json::from_value(state).expect("an object");
    let mut cp = Checkpoint::new(thread, state, step, vec![format!("node{step}")]);
    cp.created_at -= chrono::Duration::days(days_ago);
    cp
}

/// Exact comparison: the same JSON text, so a float's sign and every digit count (keys in
/// sorted order: adk-graph's maps are hash maps, whose order is arbitrary).
fn text(cp: &Checkpoint) -> String {
    serde_json::to_value(cp).expect("serialises").to_string()
}

fn texts(cps: &[Checkpoint]) -> Vec<String> {
    cps.iter().map(text).collect()
}

/// `load` is the last saved, `list` is save order, whatever the steps and times say.
pub(crate) async fn load_and_list_follow_save_order(store: &Store) {
    let cp = adapter(store);
    assert!(cp.load("t-order").await.unwrap().is_none());
    assert!(cp.list("t-order").await.unwrap().is_empty());
    let saved = vec![
        checkpoint("t-order", 3, json!({ "n": 1 }), 0),
        // The same step twice (interrupt and resume), then a lower one, then a backdated one.
        checkpoint("t-order", 3, json!({ "n": 2 }), 0),
        checkpoint("t-order", 1, json!({ "n": 3 }), 0),
        checkpoint("t-order", 2, json!({ "n": 4 }), 5),
    ];
    for c in &saved {
        assert_eq!(cp.save(c).await.unwrap(), c.checkpoint_id);
    }
    let latest = cp.load("t-order").await.unwrap().expect("saved");
    assert_eq!(
        text(&latest),
        text(&saved[3]),
        "the last saved, not the highest step"
    );
    assert_eq!(texts(&cp.list("t-order").await.unwrap()), texts(&saved));
    for c in &saved {
        let back = cp
            .load_by_id(&c.checkpoint_id)
            .await
            .unwrap()
            .expect("by id");
        assert_eq!(text(&back), text(c));
    }
    assert!(cp.load_by_id("no-such-checkpoint").await.unwrap().is_none());
}

/// Every value comes back as it was: signed zero, long numbers, text, metadata keys with dots.
pub(crate) async fn checkpoints_come_back_exactly(store: &Store) {
    let cp = adapter(store);
    let mut c = checkpoint(
        "t-exact",
        7,
        json!({
            "zero": -0.0,
            "tiny": 5e-324,
            "big": 9007199254740993u64,
            "neg": -9223372036854775808i64,
            "text": "naïve ☃ \u{1F600} \"quoted\"",
            "nested": { "list": [1.5, -0.0, null, true] },
        }),
        0,
    );
    c.metadata.insert("adk.run.id".into(), json!("r-1"));
    c.metadata.insert("score".into(), json!(-1.5e300));
    c.cleared_interrupt = Some("review".into());
    c.attempts.insert("fetch".into(), 2);
    c.child_ledger.insert("child/0".into(), json!({ "ok": 1 }));
    c.pending_nodes = vec![];
    cp.save(&c).await.unwrap();
    let back = cp.load("t-exact").await.unwrap().expect("saved");
    assert_eq!(text(&back), text(&c));
    assert!(back.state["zero"].as_f64().unwrap().is_sign_negative());
    // The store sees the metadata and the pending node too.
    let stored = store.latest("t-exact").await.unwrap().expect("stored");
    assert_eq!(stored.metadata["adk.run.id"], json!("r-1"));
    assert_eq!(stored.node_name, END, "no pending node");

    // Metadata is also the store's metadata, whose rules hold: a negative zero there (which
    // PostgreSQL's jsonb cannot give back) is refused, typed, and nothing is stored.
    let mut signed = checkpoint("t-exact-meta", 0, json!({}), 0);
    signed.metadata.insert("score".into(), json!(-0.0));
    let err = cp.save(&signed).await.unwrap_err();
    assert!(
        store_error(&err).is_some_and(|e| e.is_invalid_field("metadata")),
        "{err:?}"
    );
    assert!(cp.list("t-exact-meta").await.unwrap().is_empty());
}

/// `delete` clears one thread and nothing else.
pub(crate) async fn delete_clears_one_thread(store: &Store) {
    let cp = adapter(store);
    let a = checkpoint("t-del-a", 0, json!({}), 0);
    let b = checkpoint("t-del-b", 0, json!({}), 0);
    cp.save(&a).await.unwrap();
    cp.save(&checkpoint("t-del-a", 1, json!({}), 0))
        .await
        .unwrap();
    cp.save(&b).await.unwrap();
    cp.delete("t-del-a").await.unwrap();
    assert!(cp.load("t-del-a").await.unwrap().is_none());
    assert!(cp.list("t-del-a").await.unwrap().is_empty());
    assert!(cp.load_by_id(&a.checkpoint_id).await.unwrap().is_none());
    assert_eq!(text(&cp.load("t-del-b").await.unwrap().unwrap()), text(&b));
    cp.delete("t-del-never").await.unwrap();
}

/// `prune` keeps adk-graph's rules: a count, an age, both (either removes), the newest kept.
pub(crate) async fn prune_keeps_adk_graph_rules(store: &Store) {
    let cp = adapter(store);
    let mut saved = Vec::new();
    for (i, days) in [9, 8, 6, 0, 0].into_iter().enumerate() {
        let c = checkpoint("t-prune", i, json!({ "i": i }), days);
        cp.save(&c).await.unwrap();
        saved.push(c);
    }
    assert_eq!(
        cp.prune("t-prune", &RetentionPolicy::default())
            .await
            .unwrap(),
        0
    );
    let week = Duration::from_secs(7 * 24 * 3600);
    // By age: the two older than a week go.
    assert_eq!(
        cp.prune("t-prune", &RetentionPolicy::max_age(week))
            .await
            .unwrap(),
        2
    );
    let left = texts(&cp.list("t-prune").await.unwrap());
    assert_eq!(left, texts(&saved[2..]));
    // By count, then nothing left to do.
    assert_eq!(
        cp.prune("t-prune", &RetentionPolicy::keep_last(2))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        texts(&cp.list("t-prune").await.unwrap()),
        texts(&saved[3..])
    );
    assert_eq!(
        cp.prune("t-prune", &RetentionPolicy::keep_last(2))
            .await
            .unwrap(),
        0
    );

    // The newest is kept even when it is old, and keep_last(0) keeps one.
    let old = checkpoint("t-prune-old", 0, json!({}), 30);
    let older = checkpoint("t-prune-old", 1, json!({}), 40);
    cp.save(&old).await.unwrap();
    cp.save(&older).await.unwrap();
    let both = RetentionPolicy::keep_last(0).with_max_age(week);
    assert_eq!(cp.prune("t-prune-old", &both).await.unwrap(), 1);
    assert_eq!(
        texts(&cp.list("t-prune-old").await.unwrap()),
        [text(&older)]
    );
    assert_eq!(cp.prune("t-prune-none", &both).await.unwrap(), 0);
}

/// Namespaces share one table without seeing each other's threads; a bad one is refused.
pub(crate) async fn namespaces_keep_applications_apart(store: &Store) {
    let a = AdkCheckpointer::namespaced(Arc::clone(store), "app-a").unwrap();
    let b = AdkCheckpointer::namespaced(Arc::clone(store), "app-b").unwrap();
    let in_a = checkpoint("shared", 0, json!({ "who": "a" }), 0);
    let in_b = checkpoint("shared", 0, json!({ "who": "b" }), 0);
    a.save(&in_a).await.unwrap();
    b.save(&in_b).await.unwrap();
    assert_eq!(text(&a.load("shared").await.unwrap().unwrap()), text(&in_a));
    assert_eq!(text(&b.load("shared").await.unwrap().unwrap()), text(&in_b));
    assert!(a.load_by_id(&in_b.checkpoint_id).await.unwrap().is_none());
    a.delete("shared").await.unwrap();
    assert!(a.load("shared").await.unwrap().is_none());
    assert_eq!(b.list("shared").await.unwrap().len(), 1);
    assert_eq!(a.execution_id("t"), "app-a/t");
    assert!(store.latest("app-b/shared").await.unwrap().is_some());

    for bad in ["", "a/b", "nul\0", &"x".repeat(65)] {
        let Err(err) = AdkCheckpointer::namespaced(Arc::clone(store), bad) else {
            panic!("{bad:?} was taken as a namespace");
        };
        assert!(err.is_invalid_field("namespace"), "{bad:?}: {err}");
    }
}

/// Bad input is the store's typed error inside adk-graph's, and nothing is stored.
pub(crate) async fn bad_input_is_a_typed_error_and_stores_nothing(store: &Store) {
    let cp = adapter(store);
    let nameless = checkpoint("", 0, json!({}), 0);
    let err = cp.save(&nameless).await.unwrap_err();
    assert!(
        store_error(&err).is_some_and(|e| e.is_invalid_field("execution_id")),
        "{err:?}"
    );
    let mut empty_id = checkpoint("t-bad", 0, json!({}), 0);
    empty_id.checkpoint_id = String::new();
    let err = cp.save(&empty_id).await.unwrap_err();
    assert!(
        store_error(&err).is_some_and(|e| e.is_invalid_field("id")),
        "{err:?}"
    );
    assert!(cp.list("t-bad").await.unwrap().is_empty());
    assert!(store_error(&GraphError::CheckpointError("x".into())).is_none());

    // A time our store cannot hold (it keeps years -9999 to 9999) is refused, typed.
    let mut far = checkpoint("t-bad", 0, json!({}), 0);
    far.created_at = chrono::DateTime::<chrono::Utc>::MAX_UTC;
    let err = cp.save(&far).await.unwrap_err();
    assert!(
        store_error(&err).is_some_and(|e| e.is_invalid_field("timestamp")),
        "{err:?}"
    );
    assert!(cp.list("t-bad").await.unwrap().is_empty());

    // A row that is not an adk checkpoint (written around the adapter) reads as a clear
    // serialisation error, by thread, by id and in a list.
    let foreign = checkpoint_core::Checkpoint::new("t-foreign", "n", json!({ "x": 1 }));
    store.save(&foreign).await.unwrap();
    for err in [
        cp.load("t-foreign").await.unwrap_err(),
        cp.load_by_id(&foreign.id).await.unwrap_err(),
        cp.list("t-foreign").await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, GraphError::SerializationError(m) if m.contains("not an adk-graph checkpoint")),
            "{err:?}"
        );
    }
}

/// `prepare -> review -> send`, paused before `review`; `runs` counts each node's runs.
pub(crate) fn gated_graph(
    checkpointer: Arc<dyn Checkpointer>,
    runs: &Arc<AtomicUsize>,
) -> CompiledGraph {
    let counted = |name: &'static str, runs: Arc<AtomicUsize>| {
        move |_ctx: adk_graph::node::NodeContext| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(NodeOutput::new()
                    .with_update("status", json!(name))
                    .with_update("log", json!([name])))
            }
        }
    };
    StateGraph::with_channels(&["status", "log"])
        .add_node_fn("prepare", counted("prepared", Arc::clone(runs)))
        .add_node_fn("review", counted("reviewed", Arc::clone(runs)))
        .add_node_fn("send", counted("sent", Arc::clone(runs)))
        .add_edge(START, "prepare")
        .add_edge("prepare", "review")
        .add_edge("review", "send")
        .add_edge("send", END)
        .compile()
        .expect("compiles")
        .with_checkpointer_arc(checkpointer)
        .with_interrupt_before(&["review"])
}

/// A run paused at an interrupt is resumed by a new graph on a new adapter (as after a
/// restart), and no node runs twice.
pub(crate) async fn an_interrupted_graph_resumes_in_a_new_instance(store: &Store) {
    let runs = Arc::new(AtomicUsize::new(0));
    let first = gated_graph(Arc::new(adapter(store)), &runs);
    let paused = first
        .invoke(State::new(), ExecutionConfig::new("t-gate"))
        .await;
    let Err(GraphError::Interrupted(interrupted)) = paused else {
        panic!("expected the gate, got {paused:?}");
    };
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stored = adapter(store)
        .load_by_id(&interrupted.checkpoint_id)
        .await
        .unwrap()
        .expect("the pause is stored");
    assert_eq!(stored.state["status"], json!("prepared"));
    drop(first);

    let second = gated_graph(Arc::new(adapter(store)), &runs);
    let done = second
        .invoke(State::new(), ExecutionConfig::new("t-gate"))
        .await
        .expect("resumes past the gate");
    assert_eq!(done["status"], json!("sent"));
    assert_eq!(runs.load(Ordering::SeqCst), 3, "prepare once, review, send");
    let history = adapter(store).list("t-gate").await.unwrap();
    assert!(history.len() >= 3, "{}", history.len());
    assert!(history.last().unwrap().pending_nodes.is_empty(), "finished");
}

/// A run paused inside a subgraph (both graphs on the adapter, in one table) resumes past the
/// inner gate.
pub(crate) async fn a_run_paused_in_a_subgraph_resumes(store: &Store) {
    let inner_runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&inner_runs);
    let inner = Arc::new(
        StateGraph::with_channels(&["ticket", "handled"])
            .add_node_fn("act", move |_ctx| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(NodeOutput::new().with_update("handled", json!(true)))
                }
            })
            .add_edge(START, "act")
            .add_edge("act", END)
            .compile()
            .expect("compiles")
            .with_checkpointer(AdkCheckpointer::namespaced(Arc::clone(store), "inner").unwrap())
            .with_interrupt_before(&["act"]),
    );
    let outer = StateGraph::with_channels(&["ticket", "handled", "after"])
        .add_node(SubgraphNode::new("inner", inner))
        .add_node_fn("after", |_ctx| async move {
            Ok(NodeOutput::new().with_update("after", json!(true)))
        })
        .add_edge(START, "inner")
        .add_edge("inner", "after")
        .add_edge("after", END)
        .compile()
        .expect("compiles")
        .with_checkpointer(AdkCheckpointer::namespaced(Arc::clone(store), "outer").unwrap());

    let first = outer
        .invoke(State::new(), ExecutionConfig::new("t-sub"))
        .await;
    assert!(
        matches!(first, Err(GraphError::Interrupted(_))),
        "{first:?}"
    );
    assert_eq!(inner_runs.load(Ordering::SeqCst), 0);
    let done = outer
        .invoke(State::new(), ExecutionConfig::new("t-sub"))
        .await
        .expect("resumes");
    assert_eq!(inner_runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        (done["handled"].clone(), done["after"].clone()),
        (json!(true), json!(true))
    );
}

/// Time travel over the adapter: the steps of a finished thread, a re-run from an earlier
/// one, and a fork into a new thread.
pub(crate) async fn time_travel_reads_and_forks_through_the_adapter(store: &Store) {
    let runs = Arc::new(AtomicUsize::new(0));
    let graph = gated_graph(Arc::new(adapter(store)), &runs);
    let _ = graph
        .invoke(State::new(), ExecutionConfig::new("t-travel"))
        .await;
    graph
        .invoke(State::new(), ExecutionConfig::new("t-travel"))
        .await
        .expect("finishes");
    let handle = graph.time_travel("t-travel").expect("a checkpointer");
    let steps = handle.steps().await.unwrap();
    assert!(steps.len() >= 3, "{steps:?}");
    let first_step = steps[0].step;
    handle.fork_at(first_step, "t-travel-fork").await.unwrap();
    let forked = adapter(store)
        .load("t-travel-fork")
        .await
        .unwrap()
        .expect("forked");
    assert_eq!(forked.step, first_step);
    let history = handle.state_history(first_step, None).await.unwrap();
    assert!(!history.is_empty());
}

/// adk-graph's own delta wrapper over the adapter: what it saves reads back whole.
pub(crate) async fn adk_graphs_delta_wrapper_runs_over_the_adapter(store: &Store) {
    let delta = DeltaCheckpointer::new(adapter(store), DeltaConfig::default());
    let mut log = Vec::new();
    let mut saved = Vec::new();
    for step in 0..12 {
        log.push(json!(format!("message {step}")));
        let c = checkpoint("t-delta", step, json!({ "log": log, "step": step }), 0);
        delta.save(&c).await.unwrap();
        saved.push(c);
    }
    let latest = delta.load("t-delta").await.unwrap().expect("saved");
    assert_eq!(latest.state, saved[11].state);
    // Its list is the records as stored: full snapshots at steps 0 and 10, deltas between.
    let listed = delta.list("t-delta").await.unwrap();
    assert_eq!(listed.len(), 12);
    for (record, original) in listed.iter().zip(&saved) {
        if record.step % 10 == 0 {
            assert_eq!(
                record.state, original.state,
                "a snapshot at step {}",
                record.step
            );
        } else {
            assert!(record.state.is_empty(), "a delta at step {}", record.step);
        }
    }
    for step in [5, 10, 11] {
        let by_id = delta
            .load_by_id(&saved[step].checkpoint_id)
            .await
            .unwrap()
            .expect("by id");
        assert_eq!(by_id.state, saved[step].state, "step {step} rebuilt");
    }
}

/// Every check, on `store`.
pub(crate) async fn run_all(store: Store) {
    load_and_list_follow_save_order(&store).await;
    checkpoints_come_back_exactly(&store).await;
    delete_clears_one_thread(&store).await;
    prune_keeps_adk_graph_rules(&store).await;
    namespaces_keep_applications_apart(&store).await;
    bad_input_is_a_typed_error_and_stores_nothing(&store).await;
    an_interrupted_graph_resumes_in_a_new_instance(&store).await;
    a_run_paused_in_a_subgraph_resumes(&store).await;
    time_travel_reads_and_forks_through_the_adapter(&store).await;
    adk_graphs_delta_wrapper_runs_over_the_adapter(&store).await;
}
