//! `checkpointctl --database-url sqlite://PATH`: every command a SQLite file supports (sealed
//! files and `reencrypt` included), and the errors of those it does not, with no server.

mod seed;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};

/// A file with two executions: `a` (3 checkpoints), `b` (2).
struct Fixture {
    dir: tempfile::TempDir,
    path: PathBuf,
    store: SqliteStore,
    a: Vec<Checkpoint>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let a = seed::two_executions(&store).await;
    Fixture {
        dir,
        path,
        store,
        a,
    }
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Runs `checkpointctl` on `path` and returns (exit code, stdout, stderr).
fn run(path: &Path, args: &[&str]) -> (i32, String, String) {
    seed::run_ctl(&url(path), &[], args)
}

fn json_of(path: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = run(path, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn assert_one_line_error(result: (i32, String, String), contains: &str) {
    let (code, _, err) = result;
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("checkpointctl: "), "{err}");
    assert!(err.contains(contains), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_listings_show_and_diff() {
    let f = fixture().await;
    let status = json_of(&f.path, &["status"]);
    assert_eq!(status[0]["checkpoints"], 5);
    assert_eq!(status[0]["executions"], 2);
    assert_eq!(
        status[0]["schema_version"],
        checkpoint_sqlite::SCHEMA_VERSION
    );
    assert_eq!(status[0]["database"], f.path.display().to_string());
    assert!(status[0]["bytes"].as_u64().unwrap() > 0);

    let executions = json_of(&f.path, &["executions"]);
    assert_eq!(executions[0]["execution"], "a");
    assert_eq!(executions[0]["checkpoints"], 3);
    assert_eq!(executions[1]["latest_version"], 2);
    let page = json_of(&f.path, &["executions", "--after", "a"]);
    assert_eq!(page.as_array().unwrap().len(), 1);

    let history = json_of(&f.path, &["history", "a"]);
    let nodes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["step0", "step1", "step2"]);

    let shown = json_of(&f.path, &["show", &f.a[1].id]);
    let back: Checkpoint = serde_json::from_value(shown).unwrap();
    assert_eq!(back, f.a[1]);

    let diff = json_of(&f.path, &["diff", &f.a[0].id, &f.a[1].id]);
    let paths: Vec<&str> = diff
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert!(paths.iter().any(|p| p.contains("items")), "{diff}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_clear_delete_and_fork_change_the_file() {
    let f = fixture().await;
    let dry = json_of(&f.path, &["prune", "--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["would_remove"], 3);
    assert_eq!(f.store.list("a").await.unwrap().len(), 3, "dry run");
    let pruned = json_of(&f.path, &["prune", "--keep-last", "2", "--yes"]);
    assert_eq!(pruned["removed"], 1);
    assert_eq!(f.store.list("a").await.unwrap().len(), 2);

    let fork = json_of(&f.path, &["fork", &f.a[2].id, "a-fork", "--yes"]);
    assert_eq!(fork["version"], 1);
    let forked = f.store.latest("a-fork").await.unwrap().unwrap();
    assert_eq!(forked.state, f.a[2].state);

    let deleted = json_of(&f.path, &["delete", &f.a[2].id, "--yes"]);
    assert_eq!(deleted["removed"], 1);
    assert_one_line_error(
        run(&f.path, &["delete", &f.a[2].id, "--yes"]),
        "no checkpoint with id",
    );
    let cleared = json_of(&f.path, &["clear", "b", "--yes"]);
    assert_eq!(cleared["removed"], 2);
    assert!(f.store.list("b").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_into_a_new_file_gives_equal_checkpoints() {
    let f = fixture().await;
    let (code, lines, err) = run(&f.path, &["export", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines.lines().count(), 5);
    let backup = f.dir.path().join("backup.jsonl");
    std::fs::write(&backup, &lines).unwrap();

    let restored = f.dir.path().join("restored.db");
    let imported = json_of(&restored, &["import", backup.to_str().unwrap()]);
    assert_eq!(imported["imported"], 5);
    let copy = SqliteStore::open(SqliteOptions::file(&restored))
        .await
        .unwrap();
    for execution in ["a", "b"] {
        assert_eq!(
            copy.list(execution).await.unwrap(),
            f.store.list(execution).await.unwrap()
        );
    }
    // Importing the same file again saves the same ids again: nothing changes.
    let again = json_of(&restored, &["import", backup.to_str().unwrap()]);
    assert_eq!(again["conflicts"], json!([]));
    assert_eq!(
        copy.list("a").await.unwrap(),
        f.store.list("a").await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_creates_the_tables_and_check_reports_a_file_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    drop(conn);

    let (code, out, _) = run(&path, &["migrate", "--check", "--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["current"], false);
    assert_eq!(report["version"], 0);
    assert_one_line_error(run(&path, &["history", "a"]), "checkpointctl migrate");

    let migrated = json_of(&path, &["migrate"]);
    assert_eq!(
        migrated["applied"],
        json!((1..=checkpoint_sqlite::SCHEMA_VERSION).collect::<Vec<_>>())
    );
    let (code, _, err) = run(&path, &["migrate", "--check"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&path, &["status"])[0]["checkpoints"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_errors_are_one_clear_line_and_create_nothing() {
    let f = fixture().await;
    let missing = f.dir.path().join("typo.db");
    assert_one_line_error(run(&missing, &["status"]), "no SQLite database at");
    assert!(!missing.exists(), "a mistyped path creates no file");
    assert_one_line_error(
        run(&f.path, &["status", "--schema", "x"]),
        "apply to PostgreSQL",
    );
    assert_one_line_error(
        run(&f.path, &["status", "--table", "other"]),
        "apply to PostgreSQL",
    );
    assert_one_line_error(run(&f.path, &["reencrypt"]), "encryption");
    assert_one_line_error(run(&f.path, &["partitions", "list"]), "apply to PostgreSQL");
    assert_one_line_error(
        run(&f.path, &["migrate", "--layout", "day"]),
        "applies to PostgreSQL",
    );
    assert_one_line_error(
        run(
            &f.path,
            &["status", "--encryption-keys-file", "/nonexistent/keys"],
        ),
        "cannot read the key file",
    );
    let bad_url = Command::cargo_bin("checkpointctl")
        .unwrap()
        .env("DATABASE_URL", "sqlite:x.db?synchronous=sometimes")
        .arg("status")
        .output()
        .unwrap();
    assert_one_line_error(
        (
            bad_url.status.code().unwrap_or(-1),
            String::new(),
            String::from_utf8_lossy(&bad_url.stderr).into_owned(),
        ),
        "synchronous",
    );
    assert_one_line_error(
        run(&f.path, &["show", "nope"]),
        "no checkpoint with id nope",
    );
}

/// `verify` on a SQLite file: intact, exit 0; with rows damaged on purpose (a state that is not
/// a Zstandard frame, metadata that is not JSON, an impossible timestamp), each is listed with
/// its execution, version and reason and the exit code is 1; the other rows still read.
#[tokio::test(flavor = "multi_thread")]
async fn verify_lists_each_damaged_row_and_exits_non_zero() {
    let f = fixture().await;
    let (code, out, err) = run(&f.path, &["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("checked 5 checkpoints of 2 executions: all read back"),
        "{out}"
    );
    {
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        conn.execute(
            "UPDATE checkpoints SET state = x'01ffff' WHERE execution_id = 'a' AND version = 1",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE checkpoints SET metadata = 'not json' WHERE execution_id = 'a' AND version = 3",
            [],
        )
        .unwrap();
        conn.execute(
            "UPDATE checkpoints SET timestamp_us = 9223372036854775807 WHERE execution_id = 'b' AND version = 2",
            [],
        )
        .unwrap();
    }
    let (code, out, err) = run(&f.path, &["verify", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (found["executions"].as_i64(), found["checkpoints"].as_i64()),
        (Some(2), Some(5))
    );
    let damaged = seed::damaged(&found);
    let where_: Vec<(&str, i64)> = damaged.iter().map(|d| (d.0.as_str(), d.1)).collect();
    assert_eq!(where_, vec![("a", 1), ("a", 3), ("b", 2)], "{damaged:?}");
    assert!(damaged[0].2.contains("payload"), "{damaged:?}");
    assert!(damaged[1].2.contains("metadata"), "{damaged:?}");
    assert!(damaged[2].2.contains("timestamp"), "{damaged:?}");
    assert_eq!(damaged[0].0, f.a[0].execution_id);
    let (code, out, _) = run(&f.path, &["verify", "--execution", "b"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("checked 2 checkpoints of 1 executions: 1 damaged"),
        "{out}"
    );
    // A bad execution id is a one-line error, not a report.
    assert_one_line_error(run(&f.path, &["verify", "--execution", ""]), "execution_id");
    // The intact rows still read.
    assert_eq!(f.store.load(&f.a[1].id).await.unwrap(), f.a[1]);
}

/// A closed standard output (`checkpointctl executions | head -1`) ends the command by SIGPIPE,
/// quietly, as every Unix tool does: no panic, no backtrace.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let f = fixture().await;
    for e in 0..200 {
        f.store
            .save(&Checkpoint::new(format!("more-{e:03}"), "n", json!(e)))
            .await
            .unwrap();
    }
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("checkpointctl"))
        .args([
            "--database-url",
            &url(&f.path),
            "executions",
            "--limit",
            "500",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes before the command writes a line (it has a file to open first).
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}",
        output.status
    );
}

/// An execution with no checkpoint is reported like an id with none; `diff` compares two
/// versions of one execution as well as two ids.
#[tokio::test(flavor = "multi_thread")]
async fn missing_executions_and_diffs_by_version() {
    let f = fixture().await;
    assert_one_line_error(
        run(&f.path, &["history", "no-such-execution"]),
        "no checkpoint in execution no-such-execution",
    );
    let by_id = run(&f.path, &["diff", &f.a[0].id, &f.a[1].id, "--json"]);
    let by_version = run(&f.path, &["diff", "--execution", "a", "1", "2", "--json"]);
    assert_eq!(by_id.0, 0, "{}", by_id.2);
    assert_eq!(by_version, by_id);
    assert_one_line_error(
        run(&f.path, &["diff", "--execution", "a", "1", "9"]),
        "no checkpoint at version 9 of execution a",
    );
    assert_one_line_error(
        run(&f.path, &["diff", "--execution", "a", "one", "2"]),
        "\"one\" is not a version",
    );
    let (code, help, _) = run(&f.path, &["diff", "--help"]);
    assert_eq!(code, 0);
    for words in [
        "an id, or with --execution a version",
        "Read FROM and TO as versions",
    ] {
        assert!(help.contains(words), "{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prints_the_checkpoints_another_process_saves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let wait = std::time::Duration::from_secs(20);
    // This test process writes; the watcher is another process, reading the file every 50 ms.
    let watch = seed::Watch::start(&url(&path), "live", &["--interval", "50ms"]);
    for step in 1..=3 {
        store
            .save(&Checkpoint::new("live", "n", json!({ "step": step })))
            .await
            .unwrap();
        assert_eq!(watch.next_version(wait), Some(step), "step {step}");
    }
    // A burst arrives whole and in order.
    for step in 4..=8 {
        store
            .save(&Checkpoint::new("live", "n", json!({ "step": step })))
            .await
            .unwrap();
    }
    let burst: Vec<Option<i64>> = (4..=8).map(|_| watch.next_version(wait)).collect();
    assert_eq!(burst, (4..=8).map(Some).collect::<Vec<_>>());
    // Other executions are not printed.
    store
        .save(&Checkpoint::new("other", "n", json!(1)))
        .await
        .unwrap();
    assert_eq!(
        watch.next_version(std::time::Duration::from_millis(500)),
        None
    );
}

#[test]
fn watch_refuses_a_bad_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    std::fs::File::create(&path).unwrap();
    for bad in ["0s", "soon"] {
        let (code, out, err) = run(&path, &["watch", "e", "--interval", bad]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(out.is_empty());
        assert!(err.contains("--interval"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_show_and_break_fence_the_holder_out() {
    let f = fixture().await;
    let free = json_of(&f.path, &["lease", "show", "a"]);
    assert_eq!(free, json!({"execution_id": "a", "held": false}));
    let held = f
        .store
        .acquire("a", "worker-1", std::time::Duration::from_secs(600))
        .await
        .unwrap();
    let shown = json_of(&f.path, &["lease", "show", "a"]);
    assert_eq!(
        (&shown["owner"], &shown["token"], &shown["held"]),
        (&json!("worker-1"), &json!(1), &json!(true))
    );
    let (code, out, err) = run(&f.path, &["lease", "show", "a"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("a is leased to worker-1 (token 1) until "),
        "{out}"
    );

    let broken = json_of(&f.path, &["lease", "break", "a", "--owner", "ops", "--yes"]);
    assert_eq!(
        (&broken["owner"], &broken["token"]),
        (&json!("ops"), &json!(2))
    );
    let refused = f
        .store
        .save_fenced(&held.fence(), &Checkpoint::new("a", "late", json!(1)))
        .await;
    assert!(
        matches!(&refused, Err(checkpoint_core::Error::LeaseLost { holder: Some(h), current_token: Some(2), .. }) if h == "ops"),
        "{refused:?}"
    );
    assert_eq!(f.store.list("a").await.unwrap().len(), 3, "nothing stored");
    assert_one_line_error(
        run(&f.path, &["lease", "break", "a", "--ttl", "soon", "--yes"]),
        "--ttl \"soon\" is not a duration",
    );
    assert_one_line_error(
        run(&f.path, &["lease", "break", "a", "--ttl", "0s", "--yes"]),
        "invalid ttl",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_checkpoints_show_their_graph_and_stale_executions_are_listed() {
    use checkpoint_workflow::conformance::{graph_v1, graph_v2, pause_under_v1, DocV1, DocV2};

    let f = fixture().await;
    pause_under_v1(&f.store, "doc-1").await;
    graph_v2(false)
        .run(&f.store, "doc-2", DocV2::default())
        .await
        .unwrap();
    pause_under_v1(&f.store, "doc-3").await;
    graph_v1()
        .run(&f.store, "doc-3", DocV1::default())
        .await
        .unwrap();
    let (v1, v2) = (graph_v1().fingerprint(), graph_v2(false).fingerprint());

    let stale = json_of(&f.path, &["executions", "--stale", v2.as_str()]);
    assert_eq!(
        stale,
        json!([{
            "execution": "doc-1",
            "graph": v1.as_str(),
            "next": "review",
            "outcome": "interrupted",
            "state_version": 1,
            "last_update": stale[0]["last_update"],
        }]),
        "paused under another graph; doc-3 finished, doc-2 is on this graph, a and b are not workflows"
    );
    let stale = json_of(&f.path, &["executions", "--stale", v1.as_str()]);
    let names: Vec<&str> = stale
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["execution"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["doc-2"]);
    let none = json_of(
        &f.path,
        &["executions", "--stale", v1.as_str(), "--after", "doc-2"],
    );
    assert_eq!(none, json!([]));

    let history = json_of(&f.path, &["history", "doc-2"]);
    assert_eq!(history[0]["state_version"], 2);
    assert_eq!(history[0]["graph"], v2.as_str());
    let plain = json_of(&f.path, &["history", "a"]);
    assert_eq!(
        (&plain[0]["state_version"], &plain[0]["graph"]),
        (&Value::Null, &Value::Null)
    );

    let id = history[0]["id"].as_str().unwrap();
    let (code, out, err) = run(&f.path, &["show", id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("state version: 2\ngraph: {v2}\n{{")),
        "{out}"
    );
}

/// A sealed SQLite file: read with keys from the environment, rotated with a key file by
/// `reencrypt` in batches, verified with the new key alone.
#[tokio::test(flavor = "multi_thread")]
async fn sealed_files_are_read_with_keys_and_reencrypted() {
    // The sealing types, as checkpoint-postgres re-exports them (checkpoint-format's).
    use checkpoint_postgres::{Encryption, EncryptionKey};
    let k1 = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let k2 = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sealed.db");
    let sealed = SqliteStore::open(
        SqliteOptions::file(&path)
            .min_delta_bytes(0)
            .encryption(Encryption::new(EncryptionKey::new("k1", &[1; 32]).unwrap())),
    )
    .await
    .unwrap();
    let mut saved = Vec::new();
    for n in 1..=5 {
        let cp = Checkpoint::new("s", "n", json!({"secret": "classified", "n": n}));
        let version = sealed.save(&cp).await.unwrap();
        saved.push(cp.with_version(version));
    }
    drop(sealed);

    // Without keys: one clear line naming the key and where keys go.
    let (code, _, err) = run(&path, &["show", &saved[0].id]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CHECKPOINT_ENCRYPTION_KEYS") && err.contains("\"k1\""),
        "{err}"
    );

    let with_keys = |keys: &str, args: &[&str]| {
        Command::cargo_bin("checkpointctl")
            .unwrap()
            .env("DATABASE_URL", url(&path))
            .env("CHECKPOINT_ENCRYPTION_KEYS", keys)
            .args(args)
            .output()
            .unwrap()
    };
    let shown = with_keys(k1, &["show", &saved[4].id, "--json"]);
    assert!(shown.status.success(), "{shown:?}");
    let back: Checkpoint = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(back, saved[4]);

    let file = dir.path().join("keys.txt");
    std::fs::write(&file, format!("# newest first\n{k2}\n{k1}\n")).unwrap();
    let file = file.display().to_string();
    let done = json_of(
        &path,
        &[
            "--encryption-keys-file",
            &file,
            "reencrypt",
            "--batch-size",
            "2",
        ],
    );
    assert_eq!(
        (done["examined"].as_i64(), done["reencrypted"].as_i64()),
        (Some(5), Some(5))
    );
    let verified = with_keys(k2, &["verify", "--json"]);
    assert!(verified.status.success(), "{verified:?}");
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["checkpoints"].as_i64(), Some(5), "{report}");
    let history = with_keys(k2, &["history", "s", "--json"]);
    assert!(history.status.success(), "{history:?}");
    let (code, _, err) = run(
        &path,
        &["--encryption-keys-file", "/no/such/keys", "status"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the key file"), "{err}");
}
