//! Delta state storage on a real server: what is stored, instances that do not share a cache,
//! bases replaced behind an instance's back, rows of older releases, and a client killed with
//! SIGKILL in the middle of delta saves.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use checkpoint_core::conformance::history::conversation;
use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::{PostgresOptions, PostgresStore, StateEncoding};
use serde_json::json;

/// Per row of `schema`'s table: (version, has a base, state column set, depth).
async fn layout(schema: &str, execution: &str) -> Vec<(i64, bool, bool, i32)> {
    support::client()
        .await
        .query(
            &format!(
                "SELECT version, base_version IS NOT NULL, state IS NOT NULL, \
                 COALESCE(depth, 0) FROM \"{schema}\".checkpoints WHERE execution_id = $1 \
                 ORDER BY version"
            ),
            &[&execution],
        )
        .await
        .expect("read the layout")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn connect(schema: &str, encoding: StateEncoding) -> PostgresStore {
    PostgresStore::connect(
        PostgresOptions::new(&support::server().await.url)
            .expect("test URL")
            .schema(schema)
            .max_connections(4)
            .state_encoding(encoding)
            .min_delta_bytes(0),
    )
    .await
    .expect("connect")
}

#[tokio::test]
async fn growing_states_are_stored_as_deltas_with_bounded_chains() {
    let schema = support::unique_schema("delta");
    let store = connect(&schema, StateEncoding::delta(8).unwrap()).await;
    let mut saved = Vec::new();
    for step in 1..=30 {
        let cp = Checkpoint::new("e", "n", conversation(step));
        store.save(&cp).await.unwrap();
        saved.push(cp);
    }
    let rows = layout(&schema, "e").await;
    // The first steps are snapshots (a delta is not clearly smaller than a tiny state), then a
    // snapshot starts each chain of 8.
    let deltas = rows.iter().filter(|r| r.1).count();
    assert!(deltas >= 22, "{deltas} deltas: {rows:?}");
    assert_eq!(rows.iter().map(|r| r.3).max(), Some(7), "{rows:?}");
    assert!(rows.iter().all(|r| !r.2), "no state in the JSONB column");
    assert!(rows.iter().all(|r| r.3 < 8), "chains are at most 8 rows");
    // A fresh instance (empty cache) reads every state whole.
    let reader = connect(&schema, StateEncoding::Jsonb).await;
    for (step, cp) in saved.iter().enumerate() {
        assert_eq!(
            reader.load(&cp.id).await.unwrap().state,
            conversation(step + 1)
        );
    }
}

/// The defect of issue 21: a state that differs from its base only by the sign of a zero was
/// acknowledged as a delta that recorded no change and could not be read back. Now the delta
/// holds the change, the row is a delta (not a fallback snapshot), and the writer and a fresh
/// instance read it back exactly, with chains of 64 and of 5.
#[tokio::test]
async fn a_state_differing_by_the_sign_of_zero_is_a_delta_every_instance_reads_exactly() {
    let pad = "p".repeat(3_000);
    for every in [64, 5] {
        let schema = support::unique_schema("negzero");
        let writer = connect(&schema, StateEncoding::delta(every).unwrap()).await;
        let mut saved = Vec::new();
        for (i, t) in [0.0, -0.0, -0.0, 0.0].into_iter().enumerate() {
            let mut cp = Checkpoint::new("e", "n", json!({"pad": pad, "t": t, "i": i / 2}));
            cp.version = writer.save(&cp).await.unwrap();
            saved.push(cp);
        }
        let rows = layout(&schema, "e").await;
        assert!(
            rows[1..].iter().all(|r| r.1),
            "deltas after the first: {rows:?}"
        );
        let fresh = connect(&schema, StateEncoding::delta(every).unwrap()).await;
        for store in [&writer, &fresh] {
            checkpoint_core::conformance::history::assert_history(
                &(std::sync::Arc::new(store.clone()) as checkpoint_core::conformance::Store),
                "e",
                &saved,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn two_instances_appending_alternately_each_read_the_other_whole() {
    let schema = support::unique_schema("pair");
    let a = connect(&schema, StateEncoding::default()).await;
    let b = connect(&schema, StateEncoding::default()).await;
    let mut expected = Vec::new();
    for step in 1..=40 {
        let writer = if step % 2 == 0 { &a } else { &b };
        let mut state = conversation(step);
        state["writer"] = json!(step % 2);
        let mut cp = Checkpoint::new("shared", "n", state);
        cp.version = writer.save(&cp).await.unwrap();
        assert_eq!(cp.version, i64::try_from(step).unwrap());
        expected.push(cp);
        // Each reads what the other just wrote: its cache then holds the other's row.
        let reader = if step % 2 == 0 { &b } else { &a };
        assert_eq!(
            reader.latest("shared").await.unwrap().as_ref(),
            expected.last()
        );
    }
    assert_eq!(a.list("shared").await.unwrap(), expected);
    assert_eq!(b.list("shared").await.unwrap(), expected);
    let rows = layout(&schema, "shared").await;
    assert!(rows.iter().filter(|r| r.1).count() > 30, "{rows:?}");
}

#[tokio::test]
async fn a_base_replaced_by_another_instance_is_never_used() {
    let schema = support::unique_schema("stale");
    let a = connect(&schema, StateEncoding::default()).await;
    let b = connect(&schema, StateEncoding::default()).await;
    let mut saved = Vec::new();
    for step in 1..=5 {
        let mut cp = Checkpoint::new("e", "n", conversation(step));
        cp.version = a.save(&cp).await.unwrap();
        saved.push(cp);
    }
    // B replaces A's cached base (same id, another state); then removes the one before it.
    let mut replaced = saved[4].clone();
    replaced.state = json!({"messages": [], "replaced": true});
    b.save(&replaced).await.unwrap();
    saved[4] = replaced;
    assert!(b.delete(&saved[3].id).await.unwrap());
    saved.remove(3);

    // A still holds the old state of version 5 as its base: the server refuses that delta and
    // A stores a snapshot instead.
    let mut next = Checkpoint::new("e", "n", conversation(6));
    next.version = a.save(&next).await.unwrap();
    assert_eq!(next.version, 6);
    saved.push(next);
    let rows = layout(&schema, "e").await;
    assert_eq!(
        rows.last().map(|r| r.1),
        Some(false),
        "a snapshot: {rows:?}"
    );
    for cp in &saved {
        assert_eq!(&a.load(&cp.id).await.unwrap(), cp);
        assert_eq!(&b.load(&cp.id).await.unwrap(), cp);
    }
    // And A goes on with deltas against what it just stored.
    let after = Checkpoint::new("e", "n", conversation(7));
    a.save(&after).await.unwrap();
    assert_eq!(layout(&schema, "e").await.last().map(|r| r.1), Some(true));
    assert_eq!(b.load(&after.id).await.unwrap().state, conversation(7));
}

#[tokio::test]
async fn rows_written_before_schema_3_stay_whole_and_histories_go_on() {
    let schema = support::unique_schema("old");
    let client = support::client().await;
    // A table as a release before schema 3 left it: whole states in JSONB, two migrations.
    let jsonb = connect(&schema, StateEncoding::Jsonb).await;
    let mut saved = Vec::new();
    for step in 1..=5 {
        let mut cp = Checkpoint::new("e", "n", conversation(step));
        cp.version = jsonb.save(&cp).await.unwrap();
        saved.push(cp);
    }
    client
        .batch_execute(&format!(
            "SET search_path TO \"{schema}\";
             DELETE FROM checkpoints_migrations WHERE version >= 3;
             ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_base_fkey,
               DROP CONSTRAINT checkpoints_state_check, DROP CONSTRAINT checkpoints_delta_check,
               DROP COLUMN payload, DROP COLUMN base_version, DROP COLUMN base_hash,
               DROP COLUMN state_hash, DROP COLUMN depth, ALTER COLUMN state SET NOT NULL;
             RESET search_path;"
        ))
        .await
        .expect("back to schema 2");

    let store = connect(&schema, StateEncoding::default()).await;
    assert_eq!(
        store.schema_version().await.unwrap(),
        checkpoint_postgres::SCHEMA_VERSION
    );
    for step in 6..=12 {
        let mut cp = Checkpoint::new("e", "n", conversation(step));
        cp.version = store.save(&cp).await.unwrap();
        saved.push(cp);
    }
    assert_eq!(store.list("e").await.unwrap(), saved);
    let rows = layout(&schema, "e").await;
    assert!(
        rows[..5].iter().all(|r| r.2 && !r.1),
        "old rows untouched: {rows:?}"
    );
    assert!(
        !rows[5].1,
        "the first new row is a snapshot: an old row is never a base"
    );
    assert!(rows[6..].iter().all(|r| r.1), "then deltas: {rows:?}");
    // Removing the old rows keeps the new ones whole.
    assert_eq!(
        store
            .prune(&checkpoint_core::RetentionPolicy::keep_last(4))
            .await
            .unwrap(),
        8
    );
    assert_eq!(store.list("e").await.unwrap(), saved[8..]);
}

/// The child of the kill test: appends growing states until it is killed, printing each
/// acknowledged save. Run only by `a_client_killed_mid_save_leaves_every_acknowledged_row_whole`.
#[tokio::test]
#[ignore = "run as a child process by the kill test"]
async fn child_saving_until_killed() {
    let url = std::env::var("DELTA_CHILD_URL").expect("run by the kill test");
    let schema = std::env::var("DELTA_CHILD_SCHEMA").expect("run by the kill test");
    let store = PostgresStore::connect(
        PostgresOptions::new(&url)
            .unwrap()
            .schema(schema)
            .state_encoding(StateEncoding::delta(16).unwrap())
            .min_delta_bytes(0),
    )
    .await
    .expect("connect");
    let mut out = std::io::stdout().lock();
    for step in 1..=100_000usize {
        let execution = format!("e{}", step % 3);
        let cp = Checkpoint::new(&*execution, "n", conversation(step / 3 + 1));
        let version = store.save(&cp).await.expect("save");
        writeln!(out, "ack {} {} {step} {version}", cp.id, execution).expect("stdout");
        out.flush().expect("stdout");
    }
}

#[tokio::test]
async fn a_client_killed_mid_save_leaves_every_acknowledged_row_whole() {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("kill");
    // Migrate first, so the child starts saving at once.
    let store = connect(&schema, StateEncoding::default()).await;
    let mut child = checkpoint_core::conformance::child::command("child_saving_until_killed")
        .env("DELTA_CHILD_URL", &url)
        .env("DELTA_CHILD_SCHEMA", &schema)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let started = Instant::now();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"ack") {
            let step: usize = fields[3].parse().expect("step");
            acked.push((fields[1].to_owned(), step));
        }
        // Kill it while saves are in flight, after enough to build chains.
        if acked.len() >= 150 || started.elapsed() > Duration::from_secs(60) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGKILL);
            }
            break;
        }
    }
    let _ = child.wait();
    assert!(
        acked.len() >= 150,
        "the child acknowledged only {} saves",
        acked.len()
    );
    for (id, step) in &acked {
        let cp = store.load(id).await.expect("an acknowledged checkpoint");
        assert_eq!(cp.state, conversation(step / 3 + 1), "step {step}");
    }
    // Nothing half-written: every row of every execution reads back, and the histories go on.
    for execution in ["e0", "e1", "e2"] {
        let history = store.list(execution).await.expect("whole history");
        let versions: Vec<i64> = history.iter().map(|c| c.version).collect();
        assert_eq!(
            versions,
            (1..=i64::try_from(history.len()).unwrap()).collect::<Vec<_>>()
        );
        let next = Checkpoint::new(execution, "n", json!({"after": "kill"}));
        store.save(&next).await.expect("save after the kill");
    }
}
