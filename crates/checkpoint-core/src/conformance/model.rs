//! The model test: generated sequences of operations, applied to a model store (`MemoryStore`)
//! and to the store under test, whose every observable result must be equal.
//!
//! ```ignore
//! // tests/model.rs of a backend crate; needs proptest as a dev-dependency too.
//! use checkpoint_core::conformance::model;
//! proptest::proptest! {
//!     #[test]
//!     fn memory_and_mine_agree(ops in model::ops(false)) {
//!         runtime().block_on(async {
//!             let mine = std::sync::Arc::new(my_backend::MyStore::new_empty().await);
//!             let exact = model::StateNumbers::Exact;
//!             model::check(&checkpoint_memory::MemoryStore::new(), mine, None, exact, &ops).await;
//!         });
//!     }
//! }
//! ```
//!
//! Forks make different ids in each store; the test maps them. Saves of a `Burst` run in order
//! on the model and concurrently on the subject, polled in order from one task: a store that
//! serves concurrent saves in arrival order gives the same results.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use proptest::prelude::*;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::assert_exact;
pub use super::Store;
use crate::{Checkpoint, CheckpointStore, Error, ExecutionQuery, ListQuery, Page, RetentionPolicy};

/// Executions the generated operations touch (forks may reach two more).
pub const EXECUTIONS: usize = 3;

/// One generated save.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub struct SaveSpec {
    execution: usize,
    node: usize,
    state: i64,
    /// `None`: a new id; `Some(i)`: the i-th id seen so far (modulo).
    existing: Option<usize>,
    version: i64,
    tag: Option<u8>,
    age_days: i64,
    /// An edge number ([`EDGE_NUMBERS`](super::strategies::EDGE_NUMBERS), by index) the state
    /// carries, so that successive states differ by such a number alone.
    number: Option<usize>,
    /// Whether the state carries a few KB of unchanged text (a store's delta threshold).
    pad: bool,
}

/// What the subject promises about numbers in states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateNumbers {
    /// Every number reads back exactly (memory, SQLite, PostgreSQL payloads).
    Exact,
    /// Numbers a JSONB column would change are refused, as
    /// [`check_jsonb_numbers`](crate::validate::check_jsonb_numbers) says, with `InvalidInput`
    /// on `state` (PostgreSQL's `StateEncoding::Jsonb`); every other number reads back exactly.
    Jsonb,
}

impl StateNumbers {
    fn refuses(self, state: &Value) -> bool {
        self == StateNumbers::Jsonb && crate::validate::check_jsonb_numbers("state", state).is_err()
    }
}

/// One generated operation.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum Op {
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
        lazy: bool,
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
        prop::option::weighted(0.5, 0..super::strategies::EDGE_NUMBERS.len()),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(execution, node, state, existing, version, tag, age_days, number, pad)| SaveSpec {
                execution,
                node,
                state,
                existing,
                version,
                tag,
                age_days,
                number,
                pad,
            },
        )
}

/// Sequences of 1 to 29 operations; `Op::Reopen` among them only when `reopen` is set.
pub fn ops(reopen: bool) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(reopen), 1..30)
}

fn op(reopen: bool) -> BoxedStrategy<Op> {
    let rest = prop_oneof![
        6 => save_spec().prop_map(Op::Save),
        2 => prop::collection::vec(save_spec(), 0..4).prop_map(Op::Batch),
        3 => prop::collection::vec(save_spec(), 2..7).prop_map(Op::Burst),
        1 => (0..20usize).prop_map(Op::Delete),
        1 => (0..EXECUTIONS).prop_map(Op::Clear),
        1 => (prop::option::of(1..4u64), prop::option::of(1..5u64), prop::option::of(0..EXECUTIONS), any::<bool>())
            .prop_map(|(keep, older_than_days, execution, lazy)| Op::Prune { keep, older_than_days, execution, lazy }),
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
    ];
    if reopen {
        prop_oneof![30 => rest, 1 => Just(Op::Reopen)].boxed()
    } else {
        rest.boxed()
    }
}

fn execution(i: usize) -> String {
    format!("e{i}")
}

/// Ids as each store knows them (forks make different ids in each), and which ids forks made
/// (their timestamps are "now" in each store and are not compared).
#[derive(Default)]
struct Ids {
    both: Vec<(String, String)>,
    subject_to_memory: HashMap<String, String>,
    forked: HashSet<String>,
    next: usize,
}

impl Ids {
    fn pick(&self, i: usize) -> Option<(String, String)> {
        (!self.both.is_empty()).then(|| self.both[i % self.both.len()].clone())
    }

    fn remember(&mut self, memory: &str, subject: &str) {
        if !self.subject_to_memory.contains_key(subject) {
            self.both.push((memory.to_owned(), subject.to_owned()));
            self.subject_to_memory
                .insert(subject.to_owned(), memory.to_owned());
        }
    }

    /// The checkpoint each store gets for `spec`.
    fn checkpoints(&mut self, spec: &SaveSpec) -> (Checkpoint, Checkpoint) {
        let (memory_id, subject_id) = match spec.existing.and_then(|i| self.pick(i)) {
            Some(ids) => ids,
            None => {
                self.next += 1;
                let id = format!("id-{}", self.next);
                (id.clone(), id)
            }
        };
        let timestamp = crate::normalize_timestamp(
            OffsetDateTime::now_utc() - time::Duration::hours(spec.age_days * 24 + 12),
        );
        let mut cp = Checkpoint::new(
            execution(spec.execution),
            format!("n{}", spec.node),
            state(spec),
        )
        .with_id(&memory_id)
        .with_version(spec.version)
        .with_timestamp(timestamp);
        if let Some(tag) = spec.tag {
            cp = cp.with_metadata("tag", tag);
        }
        let subject = Checkpoint {
            id: subject_id,
            ..cp.clone()
        };
        (cp, subject)
    }

    /// A SQLite checkpoint in the model's terms.
    fn normalize_subject(&self, mut cp: Checkpoint) -> Checkpoint {
        let map = |id: &mut String| {
            if let Some(memory) = self.subject_to_memory.get(id) {
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

/// A state that grows and changes with `spec.state`, with the spec's edge number and padding.
fn state(spec: &SaveSpec) -> Value {
    let n = spec.state;
    let len = usize::try_from(n.rem_euclid(6)).unwrap_or(0);
    let mut state = json!({
        "n": n,
        "log": (0..len).map(|i| format!("entry {i}")).collect::<Vec<_>>(),
        "extra": if n % 2 == 0 { json!({"even": true}) } else { Value::Null },
    });
    if let Some(i) = spec.number {
        let edges = super::strategies::EDGE_NUMBERS;
        state["x"] = edges[i % edges.len()].value();
    }
    if spec.pad {
        state["pad"] = json!("unchanged text of a long state ".repeat(100));
    }
    state
}

/// The refusal a subject promising `numbers` gives for `checkpoints` (saved as one batch when
/// there are several), when it refuses them where the model would not.
fn refusal(numbers: StateNumbers, checkpoints: &[Checkpoint]) -> Option<Error> {
    if !checkpoints.iter().any(|cp| numbers.refuses(&cp.state)) {
        return None;
    }
    // The input rules come first: a batch that breaks them fails with their error.
    let rules = crate::Limits::default();
    let checked = match checkpoints {
        [one] => rules.check_checkpoint(one),
        many => rules.check_batch(many),
    };
    Some(
        checked
            .err()
            .unwrap_or_else(|| Error::invalid("state", "refused")),
    )
}

/// Asserts that the model and the subject gave the same value, or failed the same way.
fn same_outcome<T: PartialEq + std::fmt::Debug>(
    model: &crate::Result<T>,
    subject: &crate::Result<T>,
    context: &str,
) {
    assert_eq!(
        model.as_ref().map_err(kind),
        subject.as_ref().map_err(kind),
        "{context}"
    );
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

/// Opens the subject again on the same data, as a restarted process would.
pub type Reopen<'a> = Box<dyn FnMut() -> BoxFuture<'a, Store> + Send + 'a>;

/// Whether `ops` has a burst of at least three small saves, all of which a subject promising
/// `numbers` accepts, so a store that groups concurrent saves must have formed a group. Bursts
/// with a padded state do not count: encoding a few KB in a debug build can outlast the write
/// of the save before it, so those saves need not overlap.
pub fn has_burst(ops: &[Op], numbers: StateNumbers) -> bool {
    ops.iter().any(|op| {
        matches!(op, Op::Burst(specs)
            if specs.len() >= 3
                && specs.iter().all(|s| !s.pad && !numbers.refuses(&state(s))))
    })
}

/// Applies `ops` to `model` (an empty `MemoryStore`, say) and to the empty `subject`, and
/// panics at the first observable difference: results, errors (by kind), pages, listings and,
/// at the end, every execution's whole content, every checkpoint compared exactly
/// ([`Exact`](super::Exact)). `reopen`, when given, replaces the subject on `Op::Reopen` (the
/// old one is dropped first); without it, `Op::Reopen` changes nothing. `numbers` is what the
/// subject promises about numbers in states: a save it refuses by that promise is expected to
/// fail with `InvalidInput` and is not made on the model.
pub async fn check(
    model: &dyn CheckpointStore,
    subject: Store,
    mut reopen: Option<Reopen<'_>>,
    numbers: StateNumbers,
    ops: &[Op],
) {
    let memory = model;
    let mut subject = subject;
    let mut ids = Ids::default();
    for (step, op) in ops.iter().enumerate() {
        let context = format!("step {step}: {op:?}");
        match op {
            Op::Save(spec) => {
                let (m, p) = ids.checkpoints(spec);
                let rm = match refusal(numbers, std::slice::from_ref(&m)) {
                    Some(err) => Err(err),
                    None => memory.save(&m).await,
                };
                let rp = subject.save(&p).await;
                same_outcome(&rm, &rp, &context);
                if rm.is_ok() {
                    ids.remember(&m.id, &p.id);
                }
            }
            Op::Batch(specs) => {
                let (ms, ps): (Vec<_>, Vec<_>) = specs.iter().map(|s| ids.checkpoints(s)).unzip();
                let rm = match refusal(numbers, &ms) {
                    Some(err) => Err(err),
                    None => memory.save_batch(&ms).await,
                };
                let rp = subject.save_batch(&ps).await;
                same_outcome(&rm, &rp, &context);
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
                    rm.push(match refusal(numbers, std::slice::from_ref(m)) {
                        Some(err) => Err(err),
                        None => memory.save(m).await,
                    });
                }
                let rs = futures::future::join_all(ss.iter().map(|s| subject.save(s))).await;
                for (i, (m, s)) in rm.iter().zip(&rs).enumerate() {
                    same_outcome(m, s, &format!("{context}, save {i}"));
                }
                for ((r, m), s) in rm.iter().zip(&ms).zip(&ss) {
                    if r.is_ok() {
                        ids.remember(&m.id, &s.id);
                    }
                }
            }
            Op::Reopen => {
                if let Some(reopen) = reopen.as_mut() {
                    drop(subject);
                    subject = reopen().await;
                }
            }
            Op::Delete(i) => {
                if let Some((m, p)) = ids.pick(*i) {
                    let (rm, rp) = (memory.delete(&m).await, subject.delete(&p).await);
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
                    subject.clear(&execution(*e)).await,
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
                lazy,
            } => {
                let policy = RetentionPolicy {
                    keep_last: *keep,
                    older_than: older_than_days.map(|d| Duration::from_secs(d * 86_400)),
                    execution_id: e.map(execution),
                    lazy_flush: *lazy,
                };
                let (rm, rp) = (memory.prune(&policy).await, subject.prune(&policy).await);
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
                        subject.fork(&p, &target).await,
                    );
                    match (rm, rp) {
                        (Ok(fm), Ok(fp)) => {
                            ids.remember(&fm.id, &fp.id);
                            ids.forked.insert(fm.id.clone());
                            assert_exact(&ids.normalize_subject(fp), &ids.normalize(fm), &context);
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
                let normalize_page = |page: Page, subject_side: bool| Page {
                    items: page
                        .items
                        .into_iter()
                        .map(|cp| {
                            if subject_side {
                                ids.normalize_subject(cp)
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
                let rp = subject
                    .list_page(&query)
                    .await
                    .map(|p| normalize_page(p, true));
                assert_exact(
                    &rp.map_err(|e| kind(&e)),
                    &rm.map_err(|e| kind(&e)),
                    &context,
                );
            }
            Op::Latest(e) => {
                let rm = memory
                    .latest(&execution(*e))
                    .await
                    .unwrap()
                    .map(|c| ids.normalize(c));
                let rp = subject
                    .latest(&execution(*e))
                    .await
                    .unwrap()
                    .map(|c| ids.normalize_subject(c));
                assert_exact(&rp, &rm, &context);
            }
            Op::Load(i) => {
                if let Some((m, p)) = ids.pick(*i) {
                    let rm = memory.load(&m).await.map(|c| ids.normalize(c));
                    let rp = subject.load(&p).await.map(|c| ids.normalize_subject(c));
                    let rp = rp.map_err(|e| match e {
                        // The same absence, named by each store's own id.
                        Error::NotFound { .. } => Error::NotFound { id: m.clone() },
                        other => other,
                    });
                    assert_exact(
                        &rp.map_err(|e| kind(&e)),
                        &rm.map_err(|e| kind(&e)),
                        &context,
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
                let rp: Vec<_> = subject
                    .list(&execution(*e))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| ids.normalize_subject(c))
                    .collect();
                assert_exact(&rp, &rm, &context);
            }
            Op::Executions(limit) => {
                let query = ExecutionQuery::new(*limit);
                let strip = |mut s: Vec<crate::ExecutionSummary>| {
                    // A fork's timestamp is "now" in each store.
                    for summary in &mut s {
                        summary.last_timestamp = OffsetDateTime::UNIX_EPOCH;
                    }
                    s
                };
                let rm = strip(memory.list_executions(&query).await.unwrap());
                let rp = strip(subject.list_executions(&query).await.unwrap());
                assert_exact(&rp, &rm, &context);
            }
        }
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
        let rp: Vec<_> = subject
            .list(&execution(e))
            .await
            .unwrap()
            .into_iter()
            .map(|c| ids.normalize_subject(c))
            .collect();
        assert_exact(&rp, &rm, &format!("final content of {}", execution(e)));
    }
}
