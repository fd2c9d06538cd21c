//! The zombie writer, for any backend two processes can share: a child process holding an
//! execution's lease saves under it until one save is refused, reporting each acknowledged
//! save on its standard output; the test freezes it (SIGSTOP) past its expiry, takes the
//! execution over, saves, and thaws it (SIGCONT). Its next save must be `LeaseLost` naming the
//! new holder, and the execution must hold exactly the saves it acknowledged, all before the
//! takeover. The signals are the test's; this module holds both sides' bookkeeping.
//!
//! ```ignore
//! // the child: an #[ignore]d test the parent runs as a process
//! zombie::hold_and_save(&store, ZOMBIE_TTL).await;
//! // the parent
//! let mut reports = zombie::Reports::follow(&mut child);
//! reports.wait_for_acks(5, Duration::from_secs(60));
//! /* SIGSTOP, wait past the lease, anything else */
//! let takeover = zombie::take_over(&store).await;
//! /* SIGCONT */
//! reports.finish(child);
//! zombie::check(&store, &reports, &takeover).await;
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Checkpoint, CheckpointStore, Error, Lease};

/// The execution the child and the test share.
pub const EXECUTION: &str = "run";

/// The node of the child's saves.
const ZOMBIE_NODE: &str = "zombie";

/// The child's side: takes the lease of [`EXECUTION`] for `ttl` and saves under it every
/// 100 ms (long enough for the test to freeze it between writes), printing `@ack ID VERSION`
/// for each acknowledged save, until a save is refused: then prints `@lost HOLDER TOKEN` and
/// returns. A save that fails for a reason that may pass (a server restarting) is tried again,
/// 100 times at most.
///
/// # Panics
/// On any other failure: the test reads a missing `@lost` as the child's failure.
pub async fn hold_and_save(store: &dyn CheckpointStore, ttl: Duration) {
    let lease = store
        .acquire(EXECUTION, "worker-a", ttl)
        .await
        .expect("acquire");
    let mut transient = 0;
    for step in 0u64.. {
        let checkpoint = Checkpoint::new(EXECUTION, ZOMBIE_NODE, json!({ "step": step }));
        let outcome = store.save_fenced(&lease.fence(), &checkpoint).await;
        let mut out = std::io::stdout().lock();
        match outcome {
            Ok(version) => writeln!(out, "@ack {} {version}", checkpoint.id).expect("stdout"),
            Err(Error::LeaseLost {
                holder: Some(holder),
                current_token: Some(token),
                ..
            }) => {
                writeln!(out, "@lost {holder} {token}").expect("stdout");
                return;
            }
            Err(e) if e.is_retryable() && transient < 100 => transient += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        out.flush().expect("stdout");
        drop(out);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test's side: the child's reports, read from its standard output.
#[derive(Debug)]
pub struct Reports {
    lines: Vec<String>,
    incoming: mpsc::Receiver<String>,
}

impl Reports {
    /// Follows `child`'s piped standard output. The child's test harness may print on the
    /// same line before a report: each report starts at its `@`.
    ///
    /// # Panics
    /// When the child's standard output is not piped.
    pub fn follow(child: &mut Child) -> Reports {
        let stdout = child.stdout.take().expect("a piped stdout");
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Some((_, report)) = line.split_once('@') else {
                    continue;
                };
                if tx.send(report.to_owned()).is_err() {
                    break;
                }
            }
        });
        Reports {
            lines: Vec::new(),
            incoming,
        }
    }

    /// Waits until the child acknowledged `count` saves; freeze it right after, between two
    /// of its writes.
    ///
    /// # Panics
    /// When `within` passes first.
    pub fn wait_for_acks(&mut self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acks().len() < count {
            assert!(
                Instant::now() < deadline,
                "the child saved too little: {:?}",
                self.lines
            );
            if let Ok(line) = self.incoming.recv_timeout(Duration::from_millis(100)) {
                self.lines.push(line);
            }
        }
    }

    /// Takes in the reports written so far (after a freeze).
    pub fn drain(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
        self.lines.extend(self.incoming.try_iter());
    }

    /// Waits for the thawed child to end and takes in every report.
    ///
    /// # Panics
    /// When the child failed.
    pub fn finish(&mut self, mut child: Child) {
        let status = child.wait().expect("the child ends");
        self.lines.extend(self.incoming.iter());
        assert!(status.success(), "{status}: {:?}", self.lines);
    }

    /// The saves the child acknowledged: (id, version).
    pub fn acks(&self) -> Vec<(String, i64)> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("ack "))
            .map(|l| {
                let (id, version) = l.split_once(' ').expect("id version");
                (id.to_owned(), version.parse().expect("version"))
            })
            .collect()
    }
}

/// What the test's takeover left: the new lease and its first save.
#[derive(Debug)]
pub struct Takeover {
    /// The new holder's lease.
    pub lease: Lease,
    /// Its first save, as stored.
    pub mark: Checkpoint,
}

/// Takes the frozen child's expired lease over as `worker-b` and saves under it.
///
/// # Panics
/// When the lease is still held or the save fails.
pub async fn take_over(store: &dyn CheckpointStore) -> Takeover {
    let lease = store
        .acquire(EXECUTION, "worker-b", Duration::from_secs(600))
        .await
        .expect("the frozen lease expired");
    assert_eq!(lease.token, 2);
    let mut mark = Checkpoint::new(EXECUTION, "taken-over", json!({"by": "worker-b"}));
    mark.version = store
        .save_fenced(&lease.fence(), &mark)
        .await
        .expect("the new holder saves");
    Takeover { lease, mark }
}

/// Checks the end: the child was refused naming the new holder; the execution holds exactly
/// its acknowledged saves, all before the takeover, then the new holder's; the lease is the
/// new holder's. Returns how many saves the child acknowledged.
///
/// # Panics
/// When any of that does not hold.
pub async fn check(store: &dyn CheckpointStore, reports: &Reports, takeover: &Takeover) -> usize {
    assert_eq!(
        reports.lines.last().map(String::as_str),
        Some("lost worker-b 2"),
        "{:?}",
        reports.lines
    );
    let acked = reports.acks();
    let history = store.list(EXECUTION).await.expect("list");
    let stored: Vec<(String, i64)> = history
        .iter()
        .filter(|cp| cp.node_name == ZOMBIE_NODE)
        .map(|cp| (cp.id.clone(), cp.version))
        .collect();
    assert_eq!(
        stored, acked,
        "exactly the frozen holder's acknowledged saves"
    );
    assert!(stored.iter().all(|(_, v)| *v < takeover.mark.version));
    assert_eq!(history.last().map(|cp| &cp.id), Some(&takeover.mark.id));
    assert_eq!(
        store.lease(EXECUTION).await.expect("lease"),
        Some(takeover.lease.clone())
    );
    acked.len()
}
