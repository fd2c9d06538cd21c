//! What each command does.

use std::sync::Arc;
use std::time::Duration;

use checkpoint_core::{Checkpoint, CheckpointStore, Error, RetentionPolicy};
use checkpoint_postgres::{
    DbPool, DeadpoolPool, Encryption, EncryptionError, PostgresOptions, PostgresStore, SchemaError,
    Sql,
};
use checkpoint_sqlite::{SqliteError, SqliteOptions, SqliteStore};
use checkpoint_workflow::meta;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::diff::diff;
use crate::output::{confirm, listing, pretty, progress};
use crate::{transfer, Cli, Command, Connection, Exit};

pub(crate) fn fail(message: impl Into<String>) -> Exit {
    Exit {
        code: 2,
        message: message.into(),
    }
}

/// One clear line for a store error, with the next step where there is one.
pub(crate) fn explain(err: Error) -> Exit {
    if let Some(SqliteError::SchemaOutdated { found, expected }) = SqliteError::of(&err) {
        return fail(if *found == 0 {
            "the SQLite file holds no checkpoint tables: check --database-url, or run \
             `checkpointctl migrate` to create them"
                .to_owned()
        } else {
            format!(
                "the SQLite file is at schema version {found}, this release needs {expected}: \
                 run `checkpointctl migrate`"
            )
        });
    }
    let schema = SchemaError::of(&err);
    let message = match (&err, schema) {
        (_, Some(SchemaError::Outdated { found, expected })) => format!(
            "the checkpoint table is at schema version {found}, this release needs {expected}: \
             run `checkpointctl migrate` (or check --table and --schema)"
        ),
        (Error::NotFound { id }, _) => format!("no checkpoint with id {id}"),
        (Error::Unavailable { message, .. }, _) => {
            format!("the database cannot be reached: {message}")
        }
        _ if EncryptionError::of(&err).is_some() => format!(
            "{err}; give the keys in {KEYS_VARIABLE} or a file named by --encryption-keys-file"
        ),
        _ => err.to_string(),
    };
    fail(message)
}

fn options(connection: &Connection) -> Result<PostgresOptions, Exit> {
    let url = connection
        .database_url
        .as_deref()
        .ok_or_else(|| fail("no database: pass --database-url or set DATABASE_URL"))?;
    let mut options = PostgresOptions::new(url)
        .map_err(explain)?
        .table(connection.table.clone())
        .max_connections(4)
        .auto_migrate(false)
        // An inspection changes nothing: only `partitions ensure|maintain` make partitions.
        .partition_upkeep(false);
    if let Some(schema) = &connection.schema {
        options = options.schema(schema.clone());
    }
    if let Some(keys) = encryption_keys(connection)? {
        options = options.encryption(keys);
    }
    Ok(options)
}

/// The environment variable that may hold the encryption keys.
const KEYS_VARIABLE: &str = "CHECKPOINT_ENCRYPTION_KEYS";

/// The encryption keys from `--encryption-keys-file` or the environment, if any: never from
/// an argument, which would land in shell history and process listings.
fn encryption_keys(connection: &Connection) -> Result<Option<Encryption>, Exit> {
    let text = match (
        &connection.encryption_keys_file,
        std::env::var(KEYS_VARIABLE),
    ) {
        (Some(path), _) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read the key file {}: {e}", path.display())))?,
        ),
        (None, Ok(text)) => Zeroizing::new(text),
        (None, Err(_)) => return Ok(None),
    };
    Encryption::parse(&text)
        .map(Some)
        .map_err(|e| fail(format!("bad encryption keys: {e}")))
}

/// Where the checkpoints are: a PostgreSQL database, or a SQLite file (`sqlite://path`).
pub(crate) enum Database {
    Postgres(Box<PostgresOptions>),
    Sqlite(Box<SqliteOptions>),
}

pub(crate) fn database(connection: &Connection) -> Result<Database, Exit> {
    let url = connection.database_url.as_deref().unwrap_or_default();
    if !url.starts_with("sqlite:") {
        return options(connection).map(|o| Database::Postgres(Box::new(o)));
    }
    if connection.schema.is_some() || connection.table != "checkpoints" {
        return Err(fail(
            "--table and --schema apply to PostgreSQL; a SQLite file has one checkpoints table",
        ));
    }
    let mut options = SqliteOptions::new(url).map_err(explain)?;
    if let Some(keys) = encryption_keys(connection)? {
        options = options.encryption(keys);
    }
    Ok(Database::Sqlite(Box::new(options.auto_migrate(false))))
}

/// Opens an existing SQLite file without changing its schema: a mistyped path is an error, not a
/// new empty database.
pub(crate) async fn open_sqlite(options: SqliteOptions) -> Result<SqliteStore, Exit> {
    if let Some(path) = options.path() {
        if !path.exists() {
            return Err(fail(format!("no SQLite database at {}", path.display())));
        }
    }
    SqliteStore::open(options).await.map_err(explain)
}

pub(crate) async fn store(connection: &Connection) -> Result<Arc<dyn CheckpointStore>, Exit> {
    Ok(match database(connection)? {
        Database::Postgres(options) => {
            let options = crate::partitions::detected(*options).await?;
            Arc::new(PostgresStore::connect(options).await.map_err(explain)?)
        }
        Database::Sqlite(options) => Arc::new(open_sqlite(*options).await?),
    })
}

/// The checkpoint of `execution` at `version` (given as text, from the command line).
async fn at_version(
    store: &dyn CheckpointStore,
    execution: &str,
    version: &str,
) -> Result<Checkpoint, Exit> {
    let wanted: i64 = version.parse().map_err(|e| {
        fail(format!(
            "{version:?} is not a version (with --execution): {e}"
        ))
    })?;
    let query = checkpoint_core::ListQuery::new(execution)
        .after(wanted.saturating_sub(1))
        .limit(1);
    let page = store.list_page(&query).await.map_err(explain)?;
    page.items
        .into_iter()
        .find(|cp| cp.version == wanted)
        .ok_or_else(|| {
            fail(format!(
                "no checkpoint at version {wanted} of execution {execution}"
            ))
        })
}

pub(crate) fn time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `text` as an age, for the option `flag` (named in the error).
pub(crate) fn parse_age(flag: &str, text: &str) -> Result<Duration, Exit> {
    humantime::parse_duration(text).map_err(|e| {
        fail(format!(
            "{flag} {text:?} is not a duration (30d, 12h, 1w): {e}"
        ))
    })
}

pub(crate) async fn run(cli: Cli) -> Result<(), Exit> {
    let json = cli.json;
    match cli.command {
        Command::Migrate { check, layout } => {
            crate::migrate::migrate(&cli.connection, check, layout, json).await
        }
        Command::Partitions { action } => {
            let Database::Postgres(options) = database(&cli.connection)? else {
                return Err(fail(
                    "partitions apply to PostgreSQL tables; a SQLite file has none",
                ));
            };
            crate::partitions::run(*options, action, json).await
        }
        Command::Status => status(&cli.connection, json).await,
        Command::Lease { action } => crate::lease::run(&cli.connection, action, json).await,
        Command::Executions {
            limit,
            after,
            stale,
        } => {
            let store = store(&cli.connection).await?;
            match stale {
                None => crate::executions::list(store.as_ref(), limit, after, json).await,
                Some(graph) => {
                    crate::executions::stale(store.as_ref(), &graph, limit, after, json).await
                }
            }
        }
        Command::History { execution, limit } => {
            let store = store(&cli.connection).await?;
            let history = store.list(&execution).await.map_err(explain)?;
            // Like a missing id: an execution with no checkpoint is most often a typo.
            if history.is_empty() {
                return Err(fail(format!("no checkpoint in execution {execution}")));
            }
            let history: Vec<Checkpoint> = history.into_iter().take(limit).collect();
            // Workflow columns in the table only for a workflow's history; JSON always has them.
            let workflow = json
                || history
                    .iter()
                    .any(|cp| meta::state_version(cp).is_some() || meta::graph(cp).is_some());
            let rows = history
                .iter()
                .map(|cp| {
                    let mut row = vec![
                        json!(cp.version),
                        json!(cp.node_name),
                        json!(time(cp.timestamp)),
                        json!(cp.id),
                        json!(cp.state.to_string().len()),
                    ];
                    if workflow {
                        row.push(json!(meta::state_version(cp)));
                        row.push(json!(meta::graph(cp)));
                    }
                    row
                })
                .collect();
            let mut headers = vec!["version", "node", "time", "id", "state_bytes"];
            if workflow {
                headers.extend(["state_version", "graph"]);
            }
            listing(json, &headers, rows);
            Ok(())
        }
        Command::Show { id } => {
            let store = store(&cli.connection).await?;
            let checkpoint = store.load(&id).await.map_err(explain)?;
            let value = serde_json::to_value(&checkpoint).map_err(|e| fail(e.to_string()))?;
            if json {
                println!("{value}");
            } else {
                // A workflow's checkpoint: what it was written by, before the whole of it.
                if let Some(version) = meta::state_version(&checkpoint) {
                    println!("state version: {version}");
                }
                if let Some(graph) = meta::graph(&checkpoint) {
                    println!("graph: {graph}");
                }
                println!("{}", pretty(&value));
            }
            Ok(())
        }
        Command::Diff {
            from,
            to,
            execution,
        } => {
            let store = store(&cli.connection).await?;
            let (a, b) = match execution {
                None => (
                    store.load(&from).await.map_err(explain)?,
                    store.load(&to).await.map_err(explain)?,
                ),
                Some(execution) => (
                    at_version(store.as_ref(), &execution, &from).await?,
                    at_version(store.as_ref(), &execution, &to).await?,
                ),
            };
            show_diff(&a, &b, json);
            Ok(())
        }
        Command::Prune {
            keep_last,
            older_than,
            execution,
            dry_run,
            yes,
        } => {
            let mut policy = RetentionPolicy::default();
            policy.keep_last = keep_last;
            policy.older_than = older_than
                .as_deref()
                .map(|t| parse_age("--older-than", t))
                .transpose()?;
            policy.execution_id = execution;
            prune(&cli.connection, policy, dry_run, yes, json).await
        }
        Command::Clear { execution, yes } => {
            let store = store(&cli.connection).await?;
            if !confirm(&format!("remove every checkpoint of {execution}?"), yes) {
                return Err(fail("cancelled"));
            }
            let removed = store.clear(&execution).await.map_err(explain)?;
            report(
                json,
                json!({"removed": removed}),
                &format!("removed {removed} checkpoints"),
            );
            Ok(())
        }
        Command::Delete { id, yes } => {
            let store = store(&cli.connection).await?;
            if !confirm(&format!("remove checkpoint {id}?"), yes) {
                return Err(fail("cancelled"));
            }
            if !store.delete(&id).await.map_err(explain)? {
                return Err(fail(format!("no checkpoint with id {id}")));
            }
            report(json, json!({"removed": 1}), &format!("removed {id}"));
            Ok(())
        }
        Command::Fork {
            id,
            new_execution,
            yes,
        } => {
            let store = store(&cli.connection).await?;
            if !confirm(&format!("start {new_execution} from {id}?"), yes) {
                return Err(fail("cancelled"));
            }
            let fork = store.fork(&id, &new_execution).await.map_err(explain)?;
            report(
                json,
                json!({"id": fork.id, "execution_id": fork.execution_id, "version": fork.version}),
                &format!("started {new_execution} with {}", fork.id),
            );
            Ok(())
        }
        Command::Export { execution, all } => {
            if execution.is_none() && !all {
                return Err(fail("say what to export: --execution <id> or --all"));
            }
            let store = store(&cli.connection).await?;
            let written = transfer::export(store.as_ref(), execution).await?;
            eprintln!("exported {written} checkpoints");
            Ok(())
        }
        Command::Watch {
            execution,
            interval,
            after,
        } => {
            let interval = humantime::parse_duration(&interval)
                .map_err(|e| fail(format!("--interval {interval:?}: {e}")))?;
            crate::watch::run(&cli.connection, &execution, interval, after, json).await
        }
        Command::Verify { execution } => {
            crate::verify::run(&cli.connection, execution.as_deref(), json).await
        }
        Command::Reencrypt { batch_size, after } => {
            let store = match database(&cli.connection)? {
                Database::Postgres(options) => {
                    let options = crate::partitions::detected(*options).await?;
                    Sealed::Postgres(Box::new(
                        PostgresStore::connect(options).await.map_err(explain)?,
                    ))
                }
                Database::Sqlite(options) => Sealed::Sqlite(open_sqlite(*options).await?),
            };
            reencrypt(&store, batch_size, after, json).await
        }
        Command::Import { file, batch_size } => {
            // A SQLite file is created (and migrated) for an import: restoring a backup into a
            // new file is the common case.
            let store: Arc<dyn CheckpointStore> = match database(&cli.connection)? {
                Database::Sqlite(options) => Arc::new(
                    SqliteStore::open((*options).auto_migrate(true))
                        .await
                        .map_err(explain)?,
                ),
                // As on SQLite, an import into a database without the table makes it (in the
                // default layout) or brings it to this release's schema.
                Database::Postgres(options) => {
                    let options = crate::partitions::detected(*options).await?;
                    let store = PostgresStore::connect(options.auto_migrate(true))
                        .await
                        .map_err(explain)?;
                    if store.table().layout().period().is_some() {
                        store.ensure_partitions().await.map_err(explain)?;
                    }
                    Arc::new(store)
                }
            };
            let imported = transfer::import(store.as_ref(), &file, batch_size).await?;
            for conflict in &imported.conflicts {
                eprintln!("conflict: {conflict}");
            }
            report(
                json,
                json!({"imported": imported.checkpoints, "batches": imported.batches,
                       "conflicts": imported.conflicts}),
                &format!(
                    "imported {} checkpoints in {} batches, {} batches skipped for conflicts",
                    imported.checkpoints,
                    imported.batches,
                    imported.conflicts.len()
                ),
            );
            if imported.conflicts.is_empty() {
                Ok(())
            } else {
                Err(Exit {
                    code: 1,
                    message: String::new(),
                })
            }
        }
    }
}

/// A store whose states re-encryption seals anew.
enum Sealed {
    Postgres(Box<PostgresStore>),
    Sqlite(SqliteStore),
}

impl Sealed {
    async fn reencrypt(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> checkpoint_core::Result<checkpoint_sqlite::ReencryptBatch> {
        match self {
            Sealed::Postgres(store) => store.reencrypt(after, limit).await,
            Sealed::Sqlite(store) => store.reencrypt(after, limit).await,
        }
    }
}

/// Re-encrypts the whole table batch by batch, printing where to resume after each one.
async fn reencrypt(
    store: &Sealed,
    batch_size: usize,
    after: Option<String>,
    json: bool,
) -> Result<(), Exit> {
    let bar = progress(None, "re-encrypting");
    let (mut after, mut examined, mut rewritten) = (after, 0u64, 0u64);
    loop {
        let batch = store
            .reencrypt(after.as_deref(), batch_size)
            .await
            .map_err(|e| {
                let resume = after
                    .as_deref()
                    .map(|a| format!(" (resume with --after {a})"))
                    .unwrap_or_default();
                let exit = explain(e);
                fail(format!("{}{resume}", exit.message))
            })?;
        examined += batch.examined;
        rewritten += batch.rewritten;
        bar.set_position(examined);
        match batch.last_id {
            Some(last) => {
                if !bar.is_hidden() {
                    bar.set_message(format!("re-encrypting (resume with --after {last})"));
                } else {
                    eprintln!(
                        "re-encrypted {} of {} rows up to {last}",
                        batch.rewritten, batch.examined
                    );
                }
                after = Some(last);
            }
            None => break,
        }
    }
    bar.finish_and_clear();
    report(
        json,
        json!({"examined": examined, "reencrypted": rewritten}),
        &format!("re-encrypted {rewritten} of {examined} checkpoints"),
    );
    Ok(())
}

pub(crate) fn report(json: bool, value: Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

async fn status(connection: &Connection, json: bool) -> Result<(), Exit> {
    let options = match database(connection)? {
        Database::Postgres(options) => *options,
        Database::Sqlite(options) => {
            let path = options
                .path()
                .map_or_else(|| ":memory:".to_owned(), |p| p.display().to_string());
            let store = open_sqlite(*options).await?;
            let stats = store.stats().await.map_err(explain)?;
            listing(
                json,
                &[
                    "database",
                    "schema_version",
                    "checkpoints",
                    "executions",
                    "bytes",
                ],
                vec![vec![
                    json!(path),
                    json!(stats.schema_version),
                    json!(stats.checkpoints),
                    json!(stats.executions),
                    json!(stats.database_bytes),
                ]],
            );
            return Ok(());
        }
    };
    let options = crate::partitions::detected(options).await?;
    let pool = DeadpoolPool::from_options(&options).map_err(explain)?;
    let store = PostgresStore::with_pool(pool.clone(), &options)
        .await
        .map_err(explain)?;
    let table = store.table().quoted();
    // A partitioned table's size is its partitions'.
    let sql = Sql::new(
        format!(
            "SELECT count(*), count(DISTINCT execution_id), pg_total_relation_size($1::regclass) \
             + (SELECT COALESCE(sum(pg_total_relation_size(inhrelid)), 0)::int8 FROM pg_inherits \
                WHERE inhparent = $1::regclass) FROM {table}"
        ),
        &[checkpoint_postgres::Type::TEXT],
    );
    let rows = pool
        .query(&sql, &[&table])
        .await
        .map_err(|e| explain(e.into()))?;
    let row = rows.first().ok_or_else(|| fail("no status row"))?;
    let (checkpoints, executions, bytes) = (
        row.int(0).map_err(|e| explain(e.into()))?,
        row.int(1).map_err(|e| explain(e.into()))?,
        row.int(2).map_err(|e| explain(e.into()))?,
    );
    let version = store.schema_version().await.map_err(explain)?;
    listing(
        json,
        &[
            "table",
            "schema_version",
            "checkpoints",
            "executions",
            "bytes",
        ],
        vec![vec![
            json!(table),
            json!(version),
            json!(checkpoints),
            json!(executions),
            json!(bytes),
        ]],
    );
    Ok(())
}

fn show_diff(a: &Checkpoint, b: &Checkpoint, json: bool) {
    let changes: Vec<(&str, crate::diff::Change)> = diff(&a.state, &b.state)
        .into_iter()
        .map(|c| ("state", c))
        .chain(
            diff(
                &Value::Object(a.metadata.clone()),
                &Value::Object(b.metadata.clone()),
            )
            .into_iter()
            .map(|c| ("metadata", c)),
        )
        .collect();
    if json {
        let list: Vec<Value> = changes.iter().map(|(s, c)| c.to_json(s)).collect();
        println!("{}", Value::Array(list));
        return;
    }
    if changes.is_empty() {
        println!("no differences in state or metadata");
        return;
    }
    for (section, change) in changes {
        match change {
            crate::diff::Change::Added { path, value } => println!("+ {section}{path}: {value}"),
            crate::diff::Change::Removed { path, value } => println!("- {section}{path}: {value}"),
            crate::diff::Change::Changed { path, from, to } => {
                println!("~ {section}{path}: {from} -> {to}")
            }
        }
    }
}

async fn prune(
    connection: &Connection,
    policy: RetentionPolicy,
    dry_run: bool,
    yes: bool,
    json: bool,
) -> Result<(), Exit> {
    let store = store(connection).await?;
    if dry_run {
        // Count exactly what `prune` would remove, with the store's own rule.
        let cutoff = policy.cutoff(OffsetDateTime::now_utc());
        let executions = match &policy.execution_id {
            Some(execution) => vec![execution.clone()],
            None => transfer::all_executions(store.as_ref())
                .await
                .map_err(explain)?,
        };
        if policy.keep_last.is_none() && policy.older_than.is_none() {
            return Err(fail(
                "say what to prune: --keep-last N and/or --older-than AGE",
            ));
        }
        let bar = progress(Some(executions.len() as u64), "counting");
        let mut would = 0u64;
        for execution in &executions {
            let history = store.list(execution).await.map_err(explain)?;
            would += history
                .iter()
                .rev()
                .zip(0u64..)
                .filter(|(cp, rank)| policy.removes(*rank, cp.timestamp, cutoff))
                .count() as u64;
            bar.inc(1);
        }
        bar.finish_and_clear();
        report(
            json,
            json!({"would_remove": would, "dry_run": true}),
            &format!("would remove {would} checkpoints (dry run: nothing changed)"),
        );
        return Ok(());
    }
    if !confirm("remove the checkpoints this policy selects?", yes) {
        return Err(fail("cancelled"));
    }
    let bar = progress(None, "pruning");
    let removed = store.prune(&policy).await.map_err(|e| {
        if e.is_invalid_field("retention") {
            fail("say what to prune: --keep-last N and/or --older-than AGE")
        } else {
            explain(e)
        }
    })?;
    bar.finish_and_clear();
    report(
        json,
        json!({"removed": removed}),
        &format!("removed {removed} checkpoints"),
    );
    Ok(())
}
