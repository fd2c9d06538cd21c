//! `checkpointctl`: look into a PostgreSQL or SQLite checkpoint store without writing SQL.
//!
//! ```sh
//! export DATABASE_URL=postgres://app:secret@localhost/app
//! checkpointctl status
//! checkpointctl executions
//! checkpointctl history order-42
//! checkpointctl watch order-42
//! checkpointctl diff <id> <id>
//! checkpointctl prune --keep-last 10 --older-than 30d --dry-run
//! checkpointctl partitions maintain --ahead 2 --retain 90d
//! checkpointctl export --all > backup.jsonl && checkpointctl --table restored import backup.jsonl
//! CHECKPOINT_ENCRYPTION_KEYS="$(cat keys.txt)" checkpointctl reencrypt
//! checkpointctl --database-url sqlite:///var/lib/app/checkpoints.db history order-42
//! ```

mod commands;
mod diff;
mod executions;
mod lease;
mod migrate;
mod output;
mod partitions;
mod transfer;
mod verify;
mod watch;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Inspect, diff, prune, export and import checkpoints.
#[derive(Parser, Debug)]
#[command(name = "checkpointctl", version, about)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Where the checkpoints are.
#[derive(Args, Debug, Clone)]
pub(crate) struct Connection {
    /// The database: `postgres://...` or `key=value` pairs for PostgreSQL, `sqlite://PATH` for
    /// a SQLite file (opened as it is: a missing file or schema is an error, except for
    /// `migrate` and `import`, which create them).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// The checkpoint table (PostgreSQL).
    #[arg(long, default_value = "checkpoints", global = true)]
    pub(crate) table: String,
    /// The schema holding the table (PostgreSQL; default: the search path).
    #[arg(long, global = true)]
    pub(crate) schema: Option<String>,
    /// A file of encryption keys, one `id:base64` per line, the write key first (for stores
    /// written with encryption on). The keys may instead be given in the environment variable
    /// CHECKPOINT_ENCRYPTION_KEYS; never on the command line.
    #[arg(long, global = true)]
    pub(crate) encryption_keys_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Apply the schema migrations (or, with --check, say whether the schema is current).
    Migrate {
        /// Only check: exit code 1 when the schema is not current.
        #[arg(long)]
        check: bool,
        /// How a new table is laid out (PostgreSQL): `plain` (the default), `hash:N` (hash
        /// partitions by execution), `day`, `week`, `month` (partitions by each execution's
        /// start, for retention by `partitions drop`), or `distributed` (keyed by execution,
        /// distributed by it when the citus extension is installed). An existing table keeps
        /// its own: without --layout it is migrated in its layout, and asking for another is
        /// refused with the way over (a new table, then the copy in docs/scaling.md).
        #[arg(long)]
        layout: Option<String>,
    },
    /// Schema version, checkpoint and execution counts, table size.
    Status,
    /// Executions with their checkpoint count, latest version and last update.
    Executions {
        /// Most executions to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// List the executions after this id (the last one of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Only the unfinished executions whose latest checkpoint was saved under another
        /// workflow graph than this fingerprint (`Workflow::fingerprint`): those a deploy of
        /// that graph refuses to resume without a rename mapping or permission. Reads every
        /// execution's latest checkpoint.
        #[arg(long, value_name = "FINGERPRINT")]
        stale: Option<String>,
    },
    /// One execution's history: version, node, time, id, state size, state version and
    /// workflow graph.
    History {
        execution: String,
        /// Most checkpoints to list.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// One checkpoint in full.
    Show { id: String },
    /// What changed in state and metadata between two checkpoints: `diff ID ID`, or
    /// `diff --execution E VERSION VERSION` for two versions of one execution.
    Diff {
        /// The checkpoint compared from: an id, or with --execution a version.
        from: String,
        /// The checkpoint compared to: an id, or with --execution a version.
        to: String,
        /// Read FROM and TO as versions of this execution.
        #[arg(long)]
        execution: Option<String>,
    },
    /// Remove old checkpoints: those outside the newest N of each execution and/or older than an age.
    Prune {
        /// Keep the newest N checkpoints of each execution.
        #[arg(long)]
        keep_last: Option<u64>,
        /// Remove checkpoints older than this (`30d`, `12h`, `1w`).
        #[arg(long)]
        older_than: Option<String>,
        /// Only this execution.
        #[arg(long)]
        execution: Option<String>,
        /// Count what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Remove every checkpoint of an execution.
    Clear {
        execution: String,
        #[arg(long)]
        yes: bool,
    },
    /// Remove one checkpoint.
    Delete {
        id: String,
        #[arg(long)]
        yes: bool,
    },
    /// Start a new execution from a checkpoint.
    Fork {
        id: String,
        new_execution: String,
        #[arg(long)]
        yes: bool,
    },
    /// Write checkpoints as JSON Lines to standard output.
    Export {
        /// Only this execution.
        #[arg(long, conflicts_with = "all")]
        execution: Option<String>,
        /// Every execution.
        #[arg(long)]
        all: bool,
    },
    /// Seal every checkpoint's state under the write key (the first key given), in resumable
    /// batches: after a key rotation, or to encrypt a table written in plain text.
    Reencrypt {
        /// Rows per batch (each batch is one transaction).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Start after this checkpoint id (the one the last run printed).
        #[arg(long)]
        after: Option<String>,
    },
    /// The partitions of a table partitioned by each execution's start (PostgreSQL, made with
    /// `migrate --layout day|week|month`).
    Partitions {
        #[command(subcommand)]
        action: PartitionAction,
    },
    /// Check that every checkpoint reads back as it was saved: rebuild each on its own, check
    /// every delta's link and every content hash, and list each damaged checkpoint (id,
    /// execution, version, why). Exit code 1 when anything is damaged. Changes nothing.
    Verify {
        /// Only this execution.
        #[arg(long)]
        execution: Option<String>,
    },
    /// Follow an execution: print each new checkpoint as it lands (one JSON object per line
    /// with --json), until interrupted. PostgreSQL wakes it at once when the writing store has
    /// `notify` on; otherwise, and on SQLite, it reads every --interval.
    Watch {
        /// The execution to follow (it may not have started yet).
        execution: String,
        /// How often to read when no notification comes (`1s`, `250ms`).
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Start after this version (default: the execution's latest now).
        #[arg(long)]
        after: Option<i64>,
    },
    /// An execution's lease (one writer per execution): show its holder, or break it.
    Lease {
        #[command(subcommand)]
        action: LeaseAction,
    },
    /// Read checkpoints from a JSON Lines file, in atomic batches.
    Import {
        file: std::path::PathBuf,
        /// Checkpoints per batch (each batch is all or nothing).
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
    },
}

/// What to do with a lease.
#[derive(Subcommand, Debug)]
pub(crate) enum LeaseAction {
    /// The unexpired holder of the execution's lease: owner, fencing token, expiry.
    Show { execution: String },
    /// Take the lease over as an operator, with the next fencing token, whether it is held or
    /// not: from then on every write of the holder is refused.
    Break {
        execution: String,
        /// Who holds it after the break.
        #[arg(long, default_value = "checkpointctl")]
        owner: String,
        /// How long the operator's lease lives (`1m`, `1h`); it can be taken over once expired.
        #[arg(long, default_value = "1m")]
        ttl: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// What to do with the partitions.
#[derive(Subcommand, Debug)]
pub(crate) enum PartitionAction {
    /// Each partition with its range of execution starts and estimated rows.
    List,
    /// Make the partitions of the current period and of --ahead periods after it.
    Ensure {
        /// Periods after the current one.
        #[arg(long, default_value_t = 2)]
        ahead: u16,
    },
    /// Drop the partitions of executions that started more than --older-than ago: every
    /// checkpoint of those executions goes, however recent.
    Drop {
        /// Drop partitions that ended more than this long ago (`90d`, `12w`).
        #[arg(long)]
        older_than: String,
        /// List what would be dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// For a scheduled job: make partitions ahead, drop those past --retain (if given), and
    /// refresh the planner's statistics of the partitioned table (which autovacuum never
    /// does).
    Maintain {
        /// Periods after the current one.
        #[arg(long, default_value_t = 2)]
        ahead: u16,
        /// Drop the partitions that ended more than this long ago (`90d`).
        #[arg(long)]
        retain: Option<String>,
    },
}

/// An error that ends the program with this exit code (1 for "not current", 2 for failures).
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// Lets a closed standard output end the process quietly, by SIGPIPE, as every Unix tool does
/// (`checkpointctl executions | head`): Rust ignores the signal, so a write to a closed pipe
/// would otherwise fail and `println!` panic.
#[cfg(unix)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called first in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    end_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("checkpointctl: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(exit) => {
            if !exit.message.is_empty() {
                eprintln!("checkpointctl: {}", exit.message);
            }
            ExitCode::from(exit.code)
        }
    }
}
