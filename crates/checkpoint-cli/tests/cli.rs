//! `checkpointctl` against the test PostgreSQL: every command's output and exit code.

mod seed;
#[path = "../../checkpoint-postgres/tests/support/mod.rs"]
mod support;

use assert_cmd::Command;
use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::{PostgresOptions, PostgresStore};
use serde_json::{json, Value};

/// A migrated schema with two executions: `a` (3 checkpoints), `b` (2).
struct Fixture {
    url: String,
    schema: String,
    store: PostgresStore,
    a: Vec<Checkpoint>,
}

async fn fixture() -> Fixture {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("cli");
    let store = PostgresStore::connect(PostgresOptions::new(&url).unwrap().schema(&schema))
        .await
        .unwrap();
    let a = seed::two_executions(&store).await;
    Fixture {
        url,
        schema,
        store,
        a,
    }
}

impl Fixture {
    fn ctl(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("checkpointctl").unwrap();
        command
            .env("DATABASE_URL", &self.url)
            .args(["--schema", &self.schema])
            .args(args);
        command
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run_at(&self.url, &self.schema, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = self.run(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

/// An error is one line on stderr, with no panic or backtrace.
fn assert_one_line_error(code: i32, err: &str, expected_code: i32, contains: &str) {
    assert_eq!(code, expected_code, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("checkpointctl: "), "{err}");
    assert!(err.contains(contains), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_show_and_diff() {
    let f = fixture().await;
    let status = f.json(&["status"]);
    assert_eq!(status[0]["checkpoints"], 5);
    assert_eq!(status[0]["executions"], 2);
    assert_eq!(
        status[0]["schema_version"],
        checkpoint_postgres::SCHEMA_VERSION
    );
    assert!(status[0]["bytes"].as_i64().unwrap() > 0);

    let executions = f.json(&["executions"]);
    assert_eq!(executions[0]["execution"], "a");
    assert_eq!(executions[0]["checkpoints"], 3);
    assert_eq!(executions[1]["latest_version"], 2);
    let after = f.json(&["executions", "--after", "a"]);
    assert_eq!(after.as_array().unwrap().len(), 1);

    let history = f.json(&["history", "a"]);
    let versions: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(history[1]["node"], "step1");

    let shown = f.json(&["show", &f.a[1].id]);
    let back: Checkpoint = serde_json::from_value(shown).unwrap();
    assert_eq!(back, f.a[1]);
    // Piped (not a terminal): plain pretty JSON, no colour codes.
    let (code, out, _) = f.run(&["show", &f.a[1].id]);
    assert_eq!(code, 0);
    assert!(!out.contains('\u{1b}'), "no colours when piped");
    assert!(out.contains("\"execution_id\": \"a\""), "{out}");

    let changes = f.json(&["diff", &f.a[0].id, &f.a[1].id]);
    let list = changes.as_array().unwrap();
    assert!(
        list.contains(
            &json!({"section": "state", "change": "changed", "path": "/n", "from": 1, "to": 2})
        ),
        "{changes}"
    );
    assert!(
        list.contains(
            &json!({"section": "state", "change": "added", "path": "/items/1", "to": "y"})
        ),
        "{changes}"
    );
    assert!(
        list.contains(
            &json!({"section": "metadata", "change": "changed", "path": "/i", "from": 0, "to": 1})
        ),
        "{changes}"
    );
    let (code, out, _) = f.run(&["diff", &f.a[1].id, &f.a[2].id]);
    assert_eq!(code, 0);
    assert!(out.contains("- state/items: [\"x\",\"y\"]"), "{out}");

    // Human tables too.
    let (code, out, _) = f.run(&["executions"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("execution") && out.contains("latest_version"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_dry_run_changes_nothing_then_prune_clear_delete_fork() {
    let f = fixture().await;
    let dry = f.json(&["prune", "--keep-last", "1", "--dry-run"]);
    assert_eq!(dry["would_remove"], 3);
    assert_eq!(
        f.store.list("a").await.unwrap().len(),
        3,
        "a dry run changes nothing"
    );
    assert_eq!(f.store.list("b").await.unwrap().len(), 2);

    let old = f.json(&["prune", "--older-than", "30d", "--dry-run"]);
    assert_eq!(old["would_remove"], 0);

    let forked = f.json(&["fork", &f.a[0].id, "c", "--yes"]);
    assert_eq!(forked["execution_id"], "c");
    assert_eq!(f.store.list("c").await.unwrap().len(), 1);

    let pruned = f.json(&["prune", "--keep-last", "1", "--execution", "a", "--yes"]);
    assert_eq!(pruned["removed"], 2);
    assert_eq!(f.store.list("a").await.unwrap().len(), 1);

    let cleared = f.json(&["clear", "b", "--yes"]);
    assert_eq!(cleared["removed"], 2);
    let deleted = f.json(&["delete", &f.a[2].id, "--yes"]);
    assert_eq!(deleted["removed"], 1);
    assert!(f.store.list("a").await.unwrap().is_empty());

    let (code, _, err) = f.run(&["delete", &f.a[2].id, "--yes"]);
    assert_one_line_error(code, &err, 2, "no checkpoint with id");
    let (code, _, err) = f.run(&["prune", "--dry-run"]);
    assert_one_line_error(code, &err, 2, "--keep-last");
    let (code, _, err) = f.run(&["prune", "--older-than", "soon", "--yes"]);
    assert_one_line_error(code, &err, 2, "not a duration");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_into_a_fresh_table_gives_equal_checkpoints() {
    let f = fixture().await;
    let (code, exported, err) = f.run(&["export", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(exported.lines().count(), 5);
    let dir = std::env::temp_dir().join(support::unique_schema("export"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("all.jsonl");
    std::fs::write(&file, &exported).unwrap();

    let target = Fixture {
        schema: support::unique_schema("restored"),
        ..fixture().await
    };
    let (code, _, _) = target.run(&["migrate", "--check"]);
    assert_eq!(code, 1, "a missing table is not current");
    let (code, out, err) = target.run(&["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version"), "{out}");
    let (code, _, _) = target.run(&["migrate", "--check"]);
    assert_eq!(code, 0);

    let path = file.display().to_string();
    let imported = target.json(&["import", &path, "--batch-size", "2"]);
    assert_eq!(imported["imported"], 5);
    assert_eq!(imported["batches"], 3);
    let restored = PostgresStore::connect(
        PostgresOptions::new(&target.url)
            .unwrap()
            .schema(&target.schema),
    )
    .await
    .unwrap();
    for execution in ["a", "b"] {
        assert_eq!(
            restored.list(execution).await.unwrap(),
            f.store.list(execution).await.unwrap(),
            "{execution}"
        );
    }
    // Running it again is safe: the same checkpoints, replaced by id.
    let again = target.json(&["import", &path]);
    assert_eq!(again["imported"], 5);
    assert_eq!(restored.list("a").await.unwrap().len(), 3);

    // A line whose version belongs to another checkpoint: reported, exit code 1.
    let mut conflicting: Checkpoint =
        serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    conflicting.id = "someone-else".into();
    let other = dir.join("conflict.jsonl");
    std::fs::write(&other, serde_json::to_string(&conflicting).unwrap()).unwrap();
    let (code, _, err) = target.run(&["import", &other.display().to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("conflict: lines 1-1"), "{err}");

    // A well-formed line that breaks a rule: the batch is refused whole, with its lines named.
    let mut invalid: Checkpoint = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    invalid.node_name = String::new();
    let bad_rule = dir.join("invalid.jsonl");
    std::fs::write(&bad_rule, serde_json::to_string(&invalid).unwrap()).unwrap();
    let (code, _, err) = target.run(&["import", &bad_rule.display().to_string()]);
    assert_one_line_error(code, &err, 2, "lines 1-1: invalid node_name");

    let broken = dir.join("broken.jsonl");
    std::fs::write(&broken, "{\"not\": \"a checkpoint\"}\n").unwrap();
    let (code, _, err) = target.run(&["import", &broken.display().to_string()]);
    assert_one_line_error(code, &err, 2, "line 1");
    let _ = std::fs::remove_dir_all(&dir);

    let (code, _, err) = f.run(&["export"]);
    assert_one_line_error(code, &err, 2, "--all");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_clear_line() {
    let f = fixture().await;
    let (code, _, err) = f.run(&["show", "nope"]);
    assert_one_line_error(code, &err, 2, "no checkpoint with id nope");

    let missing = Fixture {
        schema: support::unique_schema("empty"),
        ..fixture().await
    };
    let (code, _, err) = missing.run(&["status"]);
    assert_one_line_error(code, &err, 2, "checkpointctl migrate");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::cargo_bin("checkpointctl")
        .unwrap()
        .env(
            "DATABASE_URL",
            format!("postgres://u:p@127.0.0.1:{port}/db"),
        )
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_one_line_error(
        output.status.code().unwrap_or(-1),
        &err,
        2,
        "cannot be reached",
    );
    assert!(!err.contains(":p@"), "no password in errors: {err}");

    let output = Command::cargo_bin("checkpointctl")
        .unwrap()
        .env_remove("DATABASE_URL")
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_one_line_error(output.status.code().unwrap_or(-1), &err, 2, "DATABASE_URL");

    let (code, _, err) = f.run(&["import", "/no/such/file.jsonl"]);
    assert_one_line_error(code, &err, 2, "cannot read /no/such/file.jsonl");
    let (code, _, err) = f.run(&["import", "/no/such/file.jsonl", "--batch-size", "0"]);
    assert_one_line_error(code, &err, 2, "--batch-size must be at least 1");

    let (code, _, err) = f.run(&["history"]);
    assert_eq!(code, 2, "bad arguments: {err}");
    assert!(err.contains("Usage"), "{err}");
}

/// A fresh schema whose store writes deltas whatever the state's size, in chains of four:
/// (server URL, schema, store).
async fn delta_store(prefix: &str) -> (String, String, PostgresStore) {
    let url = support::server().await.url.clone();
    let schema = support::unique_schema(prefix);
    let store = PostgresStore::connect(
        PostgresOptions::new(&url)
            .unwrap()
            .schema(&schema)
            .state_encoding(checkpoint_postgres::StateEncoding::delta(4).unwrap())
            .min_delta_bytes(0),
    )
    .await
    .unwrap();
    (url, schema, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn delta_stored_histories_read_whole_through_every_command() {
    let (url, schema, store) = delta_store("cli_delta").await;
    let mut saved = Vec::new();
    for step in 1..=12 {
        let state =
            json!({"messages": (0..step).map(|i| format!("message {i}")).collect::<Vec<_>>()});
        let mut cp = Checkpoint::new("long", "n", state);
        cp.version = store.save(&cp).await.unwrap();
        saved.push(cp);
    }
    let f = Fixture {
        url,
        schema,
        store,
        a: Vec::new(),
    };
    // `show` of a delta in the middle of a chain prints the whole state.
    let shown = f.json(&["show", &saved[6].id]);
    assert_eq!(shown["state"], saved[6].state);
    let diff = f.json(&["diff", &saved[5].id, &saved[6].id]);
    assert!(diff.to_string().contains("messages"), "{diff}");
    // `export --all` writes every checkpoint whole.
    let (code, exported, err) = f.run(&["export", "--all"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Checkpoint> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, saved);
    // `prune` keeps the newest 5 whole.
    let pruned = f.json(&["prune", "--keep-last", "5", "--yes"]);
    assert_eq!(pruned["removed"], 7, "{pruned}");
    assert_eq!(f.store.list("long").await.unwrap(), saved[7..]);
}

/// `verify` on a delta-stored table: intact, it says so and exits 0; with rows damaged on
/// purpose (a payload garbled, a recorded hash changed, a base deleted behind the chain's
/// back), it lists each damaged checkpoint with its execution, version and reason, the deltas
/// built on a damaged row among them, and exits 1, in text and JSON, whole table or one
/// execution.
#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_every_damaged_checkpoint_and_exits_non_zero() {
    let (url, schema, store) = delta_store("cli_verify").await;
    for execution in ["garbled", "rehashed", "orphaned", "intact"] {
        for step in 1..=6 {
            let state =
                json!({"messages": (0..step).map(|i| format!("message {i}")).collect::<Vec<_>>()});
            store
                .save(&Checkpoint::new(execution, "n", state))
                .await
                .unwrap();
        }
    }
    let f = Fixture {
        url,
        schema,
        store,
        a: Vec::new(),
    };
    let (code, out, err) = f.run(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("checked 24 checkpoints of 4 executions: all read back"),
        "{out}"
    );

    let table = format!("\"{}\".checkpoints", f.schema);
    let client = support::client().await;
    // Versions 2.. of each are deltas (chains of 4: 1 snapshot, 2-4 deltas, 5 snapshot, 6 delta).
    client
        .execute(
            &format!("UPDATE {table} SET payload = '\\x0102ffff' WHERE execution_id = 'garbled' AND version = 3"),
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            &format!("UPDATE {table} SET state_hash = state_hash + 1 WHERE execution_id = 'rehashed' AND version = 6"),
            &[],
        )
        .await
        .unwrap();
    // A base removed behind the store's back (the foreign key would refuse it: drop it first).
    client
        .execute(&format!("ALTER TABLE {table} DISABLE TRIGGER ALL"), &[])
        .await
        .unwrap();
    client
        .execute(
            &format!("DELETE FROM {table} WHERE execution_id = 'orphaned' AND version = 1"),
            &[],
        )
        .await
        .unwrap();
    client
        .execute(&format!("ALTER TABLE {table} ENABLE TRIGGER ALL"), &[])
        .await
        .unwrap();

    let (code, out, err) = f.run(&["verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("6 damaged"), "{out}");
    let found = f.run(&["verify", "--json"]);
    assert_eq!(found.0, 1, "{}", found.2);
    let found: Value = serde_json::from_str(&found.1).unwrap();
    assert_eq!(found["checkpoints"], 23, "{found}");
    let damaged = seed::damaged(&found);
    let at = |e: &str| -> Vec<i64> { damaged.iter().filter(|d| d.0 == e).map(|d| d.1).collect() };
    assert_eq!(at("garbled"), vec![3, 4], "{damaged:?}");
    assert_eq!(at("rehashed"), vec![6], "{damaged:?}");
    assert_eq!(at("orphaned"), vec![2, 3, 4], "{damaged:?}");
    assert!(at("intact").is_empty());
    let reason = |e: &str, v: i64| {
        damaged
            .iter()
            .find(|d| d.0 == e && d.1 == v)
            .unwrap()
            .2
            .clone()
    };
    assert!(
        reason("garbled", 4).contains("version 3, which is damaged"),
        "{damaged:?}"
    );
    assert!(reason("rehashed", 6).contains("differs"), "{damaged:?}");
    assert!(
        reason("orphaned", 2).contains("version 1, which is not there"),
        "{damaged:?}"
    );
    // One execution alone.
    let (code, out, _) = f.run(&["verify", "--execution", "intact"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("checked 6 checkpoints of 1 executions"),
        "{out}"
    );
    let (code, out, _) = f.run(&["verify", "--execution", "rehashed"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("rehashed") && out.contains("1 damaged"),
        "{out}"
    );
    let (code, _, err) = f.run(&["verify", "--execution", ""]);
    assert_one_line_error(code, &err, 2, "execution_id");
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_stores_are_read_with_keys_from_the_environment_or_a_file_and_reencrypted() {
    use checkpoint_postgres::{Encryption, EncryptionKey};
    let k1 = "k1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let k2 = "k2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
    let f = fixture().await;
    let sealed = PostgresStore::connect(
        PostgresOptions::new(&f.url)
            .unwrap()
            .schema(&f.schema)
            .encryption(Encryption::new(EncryptionKey::new("k1", &[1; 32]).unwrap())),
    )
    .await
    .unwrap();
    let mut secret = Checkpoint::new("s", "n", json!({"secret": "classified"}));
    secret.version = sealed.save(&secret).await.unwrap();

    // Without keys: one clear line naming the key and where keys go.
    let (code, _, err) = f.run(&["show", &secret.id]);
    assert_one_line_error(code, &err, 2, "CHECKPOINT_ENCRYPTION_KEYS");
    assert!(err.contains("\"k1\""), "{err}");

    // Keys in the environment.
    let shown = f
        .ctl(&["show", &secret.id, "--json"])
        .env("CHECKPOINT_ENCRYPTION_KEYS", k1)
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let back: Checkpoint = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(back, secret);

    // Rotation: a key file with the new key first re-encrypts every row, in batches.
    let dir = std::env::temp_dir().join(support::unique_schema("keys"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys.txt");
    std::fs::write(&file, format!("# newest first\n{k2}\n{k1}\n")).unwrap();
    let file = file.display().to_string();
    let done = f.json(&[
        "--encryption-keys-file",
        &file,
        "reencrypt",
        "--batch-size",
        "2",
    ]);
    assert_eq!(done["examined"], 6);
    assert_eq!(done["reencrypted"], 6, "5 plain rows and one under k1");
    // Only key 2 is needed now.
    let history = f
        .ctl(&["history", "a", "--json"])
        .env("CHECKPOINT_ENCRYPTION_KEYS", k2)
        .output()
        .unwrap();
    assert!(history.status.success(), "{history:?}");
    let shown = f
        .ctl(&["show", &secret.id, "--json"])
        .env("CHECKPOINT_ENCRYPTION_KEYS", k2)
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Checkpoint>(&shown.stdout).unwrap(),
        secret
    );

    // A bad key file is one line that shows no key.
    std::fs::write(&file, "k1:AQID\n").unwrap();
    let (code, _, err) = f.run(&["--encryption-keys-file", &file, "status"]);
    assert_one_line_error(code, &err, 2, "bad encryption keys");
    let (code, _, err) = f.run(&["--encryption-keys-file", "/no/such/keys", "status"]);
    assert_one_line_error(code, &err, 2, "cannot read the key file");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `checkpointctl` on `schema` and returns (exit code, stdout, stderr).
fn run_at(url: &str, schema: &str, args: &[&str]) -> (i32, String, String) {
    seed::run_ctl(url, &["--schema", schema], args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_partitioned_by_start_is_made_opened_maintained_and_dropped() {
    use checkpoint_postgres::{PartitionPeriod, TableLayout};
    let url = support::server().await.url.clone();
    let schema = support::unique_schema("cli");
    let (code, _, err) = run_at(&url, &schema, &["migrate", "--layout", "hash:0"]);
    assert_one_line_error(code, &err, 2, "--layout");
    let (code, out, err) = run_at(&url, &schema, &["migrate", "--layout", "day", "--json"]);
    assert_eq!(code, 0, "{err}");
    let migrated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        migrated["partitions_made"].as_array().unwrap().len(),
        3,
        "{out}"
    );

    let options = PostgresOptions::new(&url).unwrap().schema(&schema);
    let layout = PostgresStore::table_layout_of(&options).await.unwrap();
    assert_eq!(
        layout,
        Some(TableLayout::time_partitioned(PartitionPeriod::Day))
    );
    let store = PostgresStore::connect(options.table_layout(layout.unwrap()))
        .await
        .unwrap();
    let current = Checkpoint::new("current", "n", json!(1));
    store.save(&current).await.unwrap();
    // An execution that started ten days ago, in a partition made for it.
    let today = time::OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
    store
        .create_partitions(
            today - time::Duration::days(10),
            today - time::Duration::days(5),
        )
        .await
        .unwrap();
    let client = support::client().await;
    client
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".checkpoints_executions VALUES ('old', now() - interval '10 days');
             INSERT INTO \"{schema}\".checkpoints (id, execution_id, node_name, state, timestamp,
                                                  version, execution_start)
             SELECT 'old-1', 'old', 'n', '1', now(), 1, started
               FROM \"{schema}\".checkpoints_executions WHERE execution_id = 'old'"
        ))
        .await
        .unwrap();

    let run = |args: &[&str]| run_at(&url, &schema, args);
    let json_of = |args: &[&str]| -> Vec<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        let (code, out, err) = run(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let listed = json_of(&["partitions", "list"]);
    assert_eq!(listed[0].as_array().unwrap().len(), 5 + 3, "{listed:?}");
    let status = json_of(&["status"]);
    assert_eq!(status[0][0]["checkpoints"], 2);
    assert!(status[0][0]["bytes"].as_i64().unwrap() > 0, "{status:?}");
    assert_eq!(json_of(&["history", "old"])[0].as_array().unwrap().len(), 1);

    let dry = json_of(&["partitions", "drop", "--older-than", "3d", "--dry-run"]);
    assert_eq!(dry[0]["would_drop"].as_array().unwrap().len(), 5, "{dry:?}");
    assert_eq!(json_of(&["history", "old"])[0].as_array().unwrap().len(), 1);

    let done = json_of(&["partitions", "maintain", "--ahead", "4", "--retain", "3d"]);
    assert_eq!(done[0]["created"].as_array().unwrap().len(), 2, "{done:?}");
    assert_eq!(done[1]["dropped"].as_array().unwrap().len(), 5, "{done:?}");
    assert_eq!(done[1]["executions"], 1);
    assert_eq!(done[2]["analyzed"], true);
    let (code, _, err) = run(&["history", "old"]);
    assert_one_line_error(code, &err, 2, "no checkpoint in execution old");
    assert_eq!(
        json_of(&["history", "current"])[0]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (code, _, err) = run(&["partitions", "drop", "--older-than", "soon", "--yes"]);
    assert_one_line_error(code, &err, 2, "not a duration");
    let (code, _, err) = run(&["partitions", "maintain", "--retain", "20000y"]);
    assert_one_line_error(code, &err, 2, "--retain \"20000y\" reaches before");
    let plain = fixture().await;
    let (code, _, err) = plain.run(&["partitions", "list"]);
    assert_one_line_error(code, &err, 2, "not partitioned");
}

/// `import` makes the table on PostgreSQL as it does on SQLite: restoring a backup into a new
/// schema is one command, as the README shows.
#[tokio::test(flavor = "multi_thread")]
async fn import_makes_a_missing_table() {
    let f = fixture().await;
    let (code, exported, err) = f.run(&["export", "--all"]);
    assert_eq!(code, 0, "{err}");
    let dir = std::env::temp_dir().join(support::unique_schema("import"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backup.jsonl");
    std::fs::write(&file, &exported).unwrap();

    let schema = support::unique_schema("restored");
    let (code, _, _) = run_at(&f.url, &schema, &["migrate", "--check"]);
    assert_eq!(code, 1, "nothing there yet");
    let path = file.display().to_string();
    let (code, out, err) = run_at(&f.url, &schema, &["import", &path, "--json"]);
    assert_eq!(code, 0, "{err}");
    let imported: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(imported["imported"], 5);
    let (code, _, err) = run_at(&f.url, &schema, &["migrate", "--check"]);
    assert_eq!(code, 0, "{err}");
    let restored = PostgresStore::connect(PostgresOptions::new(&f.url).unwrap().schema(&schema))
        .await
        .unwrap();
    assert_eq!(restored.list("a").await.unwrap(), f.a);
}

/// Another layout for a table that exists is refused with the way over, and nothing changes:
/// the table still opens, in its own layout, with every row.
#[tokio::test(flavor = "multi_thread")]
async fn another_layout_for_an_existing_table_is_refused_with_the_way_over() {
    let f = fixture().await;
    for (asked, made) in [
        ("month", "plain"),
        ("hash:4", "plain"),
        ("distributed", "plain"),
    ] {
        let (code, _, err) = f.run(&["migrate", "--layout", asked]);
        assert_one_line_error(
            code,
            &err,
            2,
            &format!("made with the {made} layout, not {asked}"),
        );
        assert!(err.contains("docs/scaling.md"), "{err}");
    }
    let (code, out, err) = f.run(&["migrate", "--layout", "plain"]);
    assert_eq!(code, 0, "the same layout is no change: {err}");
    assert!(out.contains("version"), "{out}");
    let (code, _, err) = f.run(&["migrate"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.json(&["status"])[0]["checkpoints"], 5);

    let schema = support::unique_schema("weekly");
    let (code, _, err) = run_at(&f.url, &schema, &["migrate", "--layout", "week"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run_at(&f.url, &schema, &["migrate", "--layout", "day"]);
    assert_one_line_error(code, &err, 2, "made with the week layout, not day");

    // The README's `migrate --layout month` and `--layout distributed` make new tables, which
    // every later command opens in their own layout.
    for layout in ["month", "distributed"] {
        let schema = support::unique_schema(layout);
        let (code, _, err) = run_at(&f.url, &schema, &["migrate", "--layout", layout]);
        assert_eq!(code, 0, "{layout}: {err}");
        let (code, out, err) = run_at(&f.url, &schema, &["migrate"]);
        assert_eq!(code, 0, "{layout}: {err}");
        assert!(out.contains("version"), "{out}");
        let (code, out, err) = run_at(&f.url, &schema, &["status", "--json"]);
        assert_eq!(code, 0, "{layout}: {err}");
        assert!(out.contains("\"checkpoints\":0"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_hears_the_saves_of_a_notifying_store_at_once() {
    let f = fixture().await;
    let writer = PostgresStore::connect(
        PostgresOptions::new(&f.url)
            .unwrap()
            .schema(&f.schema)
            .notify(true),
    )
    .await
    .unwrap();
    let wait = std::time::Duration::from_secs(20);
    // Reading every hour: only a notification can wake it after its first read.
    let watch = seed::Watch::start(&f.url, "live", &["--schema", &f.schema, "--interval", "1h"]);
    writer
        .save(&Checkpoint::new("live", "n", json!({"step": 1})))
        .await
        .unwrap();
    assert_eq!(watch.next_version(wait), Some(1));
    for step in 2..=4 {
        writer
            .save(&Checkpoint::new("live", "n", json!({ "step": step })))
            .await
            .unwrap();
        assert_eq!(watch.next_version(wait), Some(step), "step {step}");
    }
    let batch: Vec<Checkpoint> = (5..=7)
        .map(|step| Checkpoint::new("live", "n", json!({ "step": step })))
        .collect();
    writer.save_batch(&batch).await.unwrap();
    let printed: Vec<Option<i64>> = (5..=7).map(|_| watch.next_version(wait)).collect();
    assert_eq!(printed, vec![Some(5), Some(6), Some(7)]);
    // A store without notifications wakes nobody until the next read (an hour away).
    f.store
        .save(&Checkpoint::new("live", "n", json!({"step": 8})))
        .await
        .unwrap();
    assert_eq!(
        watch.next_version(std::time::Duration::from_millis(800)),
        None
    );
    // The next notification brings both, in order.
    writer
        .save(&Checkpoint::new("live", "n", json!({"step": 9})))
        .await
        .unwrap();
    assert_eq!(watch.next_version(wait), Some(8));
    assert_eq!(watch.next_version(wait), Some(9));
}
