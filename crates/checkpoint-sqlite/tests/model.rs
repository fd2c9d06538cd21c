//! Model-based test: proptest generates sequences of operations, applies each to `MemoryStore`
//! (the model) and `SqliteStore` (on a file, closed and opened again now and then), and requires
//! every observable result to be equal. Bursts of concurrent saves go through group commit. Failing sequences are kept in
//! `model.proptest-regressions` and replayed first on every run.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use checkpoint_core::{
    Checkpoint, CheckpointStore, Error, ExecutionQuery, ListQuery, Page, RetentionPolicy,
};
use checkpoint_memory::MemoryStore;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};
use time::OffsetDateTime;

const EXECUTIONS: usize = 3;

#[derive(Clone, Debug)]
struct SaveSpec {
    execution: usize,
    node: usize,
    state: i64,
    /// `None`: a new id; `Some(i)`: the i-th id seen so far (modulo).
    existing: Option<usize>,
    version: i64,
    tag: Option<u8>,
    age_days: i64,
}

#[derive(Clone, Debug)]
enum Op {
    Save(SaveSpec),
    Batch(Vec<SaveSpec>),
    /// Saves made at once: in order on the model, concurrently on SQLite, where they queue in
    /// arrival order and go out as groups (group commit).
    Burst(Vec<SaveSpec>),
    /// Close the store and open the file again, as a restarted process would.
    Reopen,
    Delete(usize),
    Clear(usize),
    Prune {
        keep: Option<u64>,
        older_than_days: Option<u64>,
        execution: Option<usize>,
    },
    Fork {
        source: usize,
        target: usize,
    },
    Page {
        execution: usize,
        after: Option<i64>,
        before: Option<i64>,
        limit: usize,
        descending: bool,
        node: Option<usize>,
        tag: Option<u8>,
    },
    Latest(usize),
    Load(usize),
    List(usize),
    Executions(usize),
}

fn save_spec() -> impl Strategy<Value = SaveSpec> {
    (
        0..EXECUTIONS,
        0..2usize,
        -3..10i64,
        prop::option::weighted(0.3, 0..20usize),
        prop_oneof![3 => Just(0i64), 1 => 1..8i64],
        prop::option::of(0..3u8),
        0..6i64,
    )
        .prop_map(
            |(execution, node, state, existing, version, tag, age_days)| SaveSpec {
                execution,
                node,
                state,
                existing,
                version,
                tag,
                age_days,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => save_spec().prop_map(Op::Save),
        2 => prop::collection::vec(save_spec(), 0..4).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
        3 => prop::collection::vec(save_spec(), 2..7).prop_map(Op::Burst),
        1 => (0..20usize).prop_map(Op::Delete),
        1 => (0..EXECUTIONS).prop_map(Op::Clear),
        1 => (prop::option::of(1..4u64), prop::option::of(1..5u64), prop::option::of(0..EXECUTIONS))
            .prop_map(|(keep, older_than_days, execution)| Op::Prune { keep, older_than_days, execution }),
        1 => (0..20usize, 0..EXECUTIONS + 2).prop_map(|(source, target)| Op::Fork { source, target }),
        2 => (0..EXECUTIONS, prop::option::of(0..8i64), prop::option::of(0..10i64), 1..4usize, any::<bool>(),
              prop::option::of(0..2usize), prop::option::of(0..3u8))
            .prop_map(|(execution, after, before, limit, descending, node, tag)| Op::Page {
                execution, after, before, limit, descending, node, tag,
            }),
        1 => (0..EXECUTIONS).prop_map(Op::Latest),
        1 => (0..20usize).prop_map(Op::Load),
        1 => (0..EXECUTIONS).prop_map(Op::List),
        1 => (1..4usize).prop_map(Op::Executions),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("a runtime"))
}

fn execution(i: usize) -> String {
    format!("e{i}")
}

/// Ids as each store knows them (forks make different ids in each), and which ids forks made
/// (their timestamps are "now" in each store and are not compared).
#[derive(Default)]
struct Ids {
    both: Vec<(String, String)>,
    sqlite_to_memory: HashMap<String, String>,
    forked: HashSet<String>,
    next: usize,
}

impl Ids {
    fn pick(&self, i: usize) -> Option<(String, String)> {
        (!self.both.is_empty()).then(|| self.both[i % self.both.len()].clone())
    }

    fn remember(&mut self, memory: &str, sqlite: &str) {
        if !self.sqlite_to_memory.contains_key(sqlite) {
            self.both.push((memory.to_owned(), sqlite.to_owned()));
            self.sqlite_to_memory
                .insert(sqlite.to_owned(), memory.to_owned());
        }
    }

    /// The checkpoint each store gets for `spec`.
    fn checkpoints(&mut self, spec: &SaveSpec) -> (Checkpoint, Checkpoint) {
        let (memory_id, sqlite_id) = match spec.existing.and_then(|i| self.pick(i)) {
            Some(ids) => ids,
            None => {
                self.next += 1;
                let id = format!("id-{}", self.next);
                (id.clone(), id)
            }
        };
        let timestamp = checkpoint_core::normalize_timestamp(
            OffsetDateTime::now_utc() - time::Duration::hours(spec.age_days * 24 + 12),
        );
        let mut cp = Checkpoint::new(
            execution(spec.execution),
            format!("n{}", spec.node),
            state(spec.state),
        )
        .with_id(&memory_id)
        .with_version(spec.version)
        .with_timestamp(timestamp);
        if let Some(tag) = spec.tag {
            cp = cp.with_metadata("tag", tag);
        }
        let sqlite = Checkpoint {
            id: sqlite_id,
            ..cp.clone()
        };
        (cp, sqlite)
    }

    /// A SQLite checkpoint in the model's terms.
    fn normalize_sqlite(&self, mut cp: Checkpoint) -> Checkpoint {
        let map = |id: &mut String| {
            if let Some(memory) = self.sqlite_to_memory.get(id) {
                *id = memory.clone();
            }
        };
        map(&mut cp.id);
        if let Some(parent) = cp.parent_id.as_mut() {
            map(parent);
        }
        if let Some(Value::String(source)) = cp
            .metadata
            .get_mut("forked_from")
            .and_then(|f| f.get_mut("checkpoint_id"))
        {
            map(source);
        }
        self.normalize(cp)
    }

    fn normalize(&self, mut cp: Checkpoint) -> Checkpoint {
        if self.forked.contains(&cp.id) {
            cp.timestamp = OffsetDateTime::UNIX_EPOCH;
        }
        cp
    }
}

/// An error as the contract names it.
/// A state that grows and changes with `n`.
fn state(n: i64) -> Value {
    let len = n.rem_euclid(6) as usize;
    json!({
        "n": n,
        "log": (0..len).map(|i| format!("entry {i}")).collect::<Vec<_>>(),
        "extra": if n % 2 == 0 { json!({"even": true}) } else { Value::Null },
    })
}

async fn sqlite_store(path: &std::path::Path) -> checkpoint_sqlite::SqliteStore {
    checkpoint_sqlite::SqliteStore::open(checkpoint_sqlite::SqliteOptions::file(path))
        .await
        .expect("open the file")
}

fn kind(err: &Error) -> String {
    match err {
        Error::NotFound { id } => format!("NotFound({id})"),
        Error::Conflict {
            execution_id,
            version,
        } => format!("Conflict({execution_id}, {version})"),
        Error::InvalidInput { field, .. } => format!("InvalidInput({field})"),
        other => panic!("unexpected error {other:?}"),
    }
}

async fn check(ops: Vec<Op>) {
    let memory = MemoryStore::new();
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("model.db");
    let mut sqlite = sqlite_store(&path).await;
    let mut ids = Ids::default();
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step}: {op:?}");
        match op {
            Op::Save(spec) => {
                let (m, p) = ids.checkpoints(spec);
                let (rm, rp) = (memory.save(&m).await, sqlite.save(&p).await);
                assert_eq!(
                    rm.as_ref().map_err(kind),
                    rp.as_ref().map_err(kind),
                    "{context}"
                );
                if rm.is_ok() {
                    ids.remember(&m.id, &p.id);
                }
            }
            Op::Batch(specs) => {
                let (ms, ps): (Vec<_>, Vec<_>) = specs.iter().map(|s| ids.checkpoints(s)).unzip();
                let (rm, rp) = (memory.save_batch(&ms).await, sqlite.save_batch(&ps).await);
                assert_eq!(
                    rm.as_ref().map_err(kind),
                    rp.as_ref().map_err(kind),
                    "{context}"
                );
                if rm.is_ok() {
                    for (m, p) in ms.iter().zip(&ps) {
                        ids.remember(&m.id, &p.id);
                    }
                }
            }
            Op::Burst(specs) => {
                let (ms, ss): (Vec<_>, Vec<_>) = specs.iter().map(|s| ids.checkpoints(s)).unzip();
                let mut rm = Vec::new();
                for m in &ms {
                    rm.push(memory.save(m).await);
                }
                let rs = futures::future::join_all(ss.iter().map(|s| sqlite.save(s))).await;
                for (i, (m, s)) in rm.iter().zip(&rs).enumerate() {
                    assert_eq!(
                        m.as_ref().map_err(kind),
                        s.as_ref().map_err(kind),
                        "{context}, save {i}"
                    );
                }
                for ((r, m), s) in rm.iter().zip(&ms).zip(&ss) {
                    if r.is_ok() {
                        ids.remember(&m.id, &s.id);
                    }
                }
            }
            Op::Reopen => {
                sqlite.close();
                drop(sqlite);
                sqlite = sqlite_store(&path).await;
            }
            Op::Delete(i) => {
                if let Some((m, p)) = ids.pick(*i) {
                    let (rm, rp) = (memory.delete(&m).await, sqlite.delete(&p).await);
                    assert_eq!(
                        rm.map_err(|e| kind(&e)),
                        rp.map_err(|e| kind(&e)),
                        "{context}"
                    );
                }
            }
            Op::Clear(e) => {
                let (rm, rp) = (
                    memory.clear(&execution(*e)).await,
                    sqlite.clear(&execution(*e)).await,
                );
                assert_eq!(
                    rm.map_err(|e| kind(&e)),
                    rp.map_err(|e| kind(&e)),
                    "{context}"
                );
            }
            Op::Prune {
                keep,
                older_than_days,
                execution: e,
            } => {
                let mut policy = RetentionPolicy::default();
                policy.keep_last = *keep;
                policy.older_than = older_than_days.map(|d| Duration::from_secs(d * 86_400));
                policy.execution_id = e.map(execution);
                let (rm, rp) = (memory.prune(&policy).await, sqlite.prune(&policy).await);
                assert_eq!(
                    rm.map_err(|e| kind(&e)),
                    rp.map_err(|e| kind(&e)),
                    "{context}"
                );
            }
            Op::Fork { source, target } => {
                if let Some((m, p)) = ids.pick(*source) {
                    let target = execution(*target);
                    let (rm, rp) = (
                        memory.fork(&m, &target).await,
                        sqlite.fork(&p, &target).await,
                    );
                    match (rm, rp) {
                        (Ok(fm), Ok(fp)) => {
                            ids.remember(&fm.id, &fp.id);
                            ids.forked.insert(fm.id.clone());
                            assert_eq!(ids.normalize(fm), ids.normalize_sqlite(fp), "{context}");
                        }
                        (rm, rp) => {
                            // The same absence, named by each store's own id.
                            let rp = rp.map_err(|e| match e {
                                Error::NotFound { .. } => Error::NotFound { id: m.clone() },
                                other => other,
                            });
                            assert_eq!(
                                rm.map(|_| ()).map_err(|e| kind(&e)),
                                rp.map(|_| ()).map_err(|e| kind(&e)),
                                "{context}"
                            )
                        }
                    }
                }
            }
            Op::Page {
                execution: e,
                after,
                before,
                limit,
                descending,
                node,
                tag,
            } => {
                let mut query = ListQuery::new(execution(*e)).limit(*limit);
                if let Some(a) = after {
                    query = query.after(*a);
                }
                if let Some(b) = before {
                    query = query.before(*b);
                }
                if *descending {
                    query = query.descending();
                }
                if let Some(n) = node {
                    query = query.node(format!("n{n}"));
                }
                if let Some(t) = tag {
                    query = query.metadata_eq("tag", *t);
                }
                let normalize_page = |page: Page, sqlite_side: bool| Page {
                    items: page
                        .items
                        .into_iter()
                        .map(|cp| {
                            if sqlite_side {
                                ids.normalize_sqlite(cp)
                            } else {
                                ids.normalize(cp)
                            }
                        })
                        .collect(),
                    next_cursor: page.next_cursor,
                };
                let rm = memory
                    .list_page(&query)
                    .await
                    .map(|p| normalize_page(p, false));
                let rp = sqlite
                    .list_page(&query)
                    .await
                    .map(|p| normalize_page(p, true));
                assert_eq!(
                    rm.map_err(|e| kind(&e)),
                    rp.map_err(|e| kind(&e)),
                    "{context}"
                );
            }
            Op::Latest(e) => {
                let rm = memory
                    .latest(&execution(*e))
                    .await
                    .unwrap()
                    .map(|c| ids.normalize(c));
                let rp = sqlite
                    .latest(&execution(*e))
                    .await
                    .unwrap()
                    .map(|c| ids.normalize_sqlite(c));
                assert_eq!(rm, rp, "{context}");
            }
            Op::Load(i) => {
                if let Some((m, p)) = ids.pick(*i) {
                    let rm = memory.load(&m).await.map(|c| ids.normalize(c));
                    let rp = sqlite.load(&p).await.map(|c| ids.normalize_sqlite(c));
                    let rp = rp.map_err(|e| match e {
                        // The same absence, named by each store's own id.
                        Error::NotFound { .. } => Error::NotFound { id: m.clone() },
                        other => other,
                    });
                    assert_eq!(
                        rm.map_err(|e| kind(&e)),
                        rp.map_err(|e| kind(&e)),
                        "{context}"
                    );
                }
            }
            Op::List(e) => {
                let rm: Vec<_> = memory
                    .list(&execution(*e))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| ids.normalize(c))
                    .collect();
                let rp: Vec<_> = sqlite
                    .list(&execution(*e))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| ids.normalize_sqlite(c))
                    .collect();
                assert_eq!(rm, rp, "{context}");
            }
            Op::Executions(limit) => {
                let query = ExecutionQuery::new(*limit);
                let strip = |mut s: Vec<checkpoint_core::ExecutionSummary>| {
                    // A fork's timestamp is "now" in each store.
                    for summary in &mut s {
                        summary.last_timestamp = OffsetDateTime::UNIX_EPOCH;
                    }
                    s
                };
                let rm = strip(memory.list_executions(&query).await.unwrap());
                let rp = strip(sqlite.list_executions(&query).await.unwrap());
                assert_eq!(rm, rp, "{context}");
            }
        }
    }
    if ops
        .iter()
        .any(|op| matches!(op, Op::Burst(specs) if specs.len() >= 3))
        && !ops.iter().any(|op| matches!(op, Op::Reopen))
    {
        assert!(
            sqlite.commit_stats().largest >= 2,
            "no group was formed: {:?}",
            sqlite.commit_stats()
        );
    }
    // Finally the whole content, execution by execution.
    for e in 0..EXECUTIONS + 2 {
        let rm: Vec<_> = memory
            .list(&execution(e))
            .await
            .unwrap()
            .into_iter()
            .map(|c| ids.normalize(c))
            .collect();
        let rp: Vec<_> = sqlite
            .list(&execution(e))
            .await
            .unwrap()
            .into_iter()
            .map(|c| ids.normalize_sqlite(c))
            .collect();
        assert_eq!(rm, rp, "final content of {}", execution(e));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODEL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/model.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memory_and_sqlite_agree_on_every_sequence(ops in prop::collection::vec(op(), 1..30)) {
        runtime().block_on(check(ops));
    }
}
