//! The `encryption` workloads: a sequential save and `latest`, with encryption at rest off and
//! on, in the same run: small states, and large text-like states stored whole at every save
//! (no state cache, so no deltas), where the cipher has the most to do.

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::{Encryption, EncryptionKey, PostgresOptions, PostgresStore};

use crate::stats::{run_for, time_latest, Figures};
use serde_json::{json, Value};

use crate::growth::{message, vocabulary};
use crate::workloads::{payload, Bench, Picker};

/// Executions the saves rotate over, so `latest` reads histories of several checkpoints.
const EXECUTIONS: usize = 50;

/// Sequential save and `latest` figures of one store set-up.
pub(crate) struct Pair {
    pub save: Figures,
    pub latest: Figures,
}

/// A state of about `bytes` bytes: the configured payload for small sizes, messages of
/// pseudo-random words (which compress like text, about 3:1) above 16 KiB.
fn state(bytes: usize) -> Value {
    if bytes <= 16 * 1024 {
        return payload(bytes);
    }
    let mut picker = Picker::new(11);
    let words = vocabulary(&mut picker);
    let messages: Vec<String> = (0..bytes / 1024)
        .map(|_| message(&mut picker, &words, 1000))
        .collect();
    json!({ "messages": messages })
}

async fn store(bench: &Bench, encrypted: bool, whole: bool) -> anyhow::Result<PostgresStore> {
    let mut options = PostgresOptions::new(&bench.server.url)?
        .schema(bench.schema("enc"))
        .max_connections(1)
        .min_connections(1);
    if whole {
        options = options.state_cache_bytes(0);
    }
    if encrypted {
        // A fixed key: the benchmark measures the cipher, not key handling.
        let key = EncryptionKey::new("bench", &[42u8; 32])?;
        options = options.encryption(Encryption::new(key));
    }
    Ok(PostgresStore::connect(options).await?)
}

/// One task saving states of `state_bytes` for the configured time, then reading `latest` of
/// random executions for as long.
pub(crate) async fn measure(
    bench: &Bench,
    state_bytes: usize,
    encrypted: bool,
) -> anyhow::Result<Pair> {
    let store = store(bench, encrypted, state_bytes > 16 * 1024).await?;
    let state = state(state_bytes);
    let save = run_for(bench.seconds, usize::MAX, |i| {
        let cp = Checkpoint::new(format!("e{}", i % EXECUTIONS), "node", state.clone());
        let store = &store;
        async move {
            store.save(&cp).await?;
            Ok(())
        }
    })
    .await?
    .figures();
    let latest = time_latest(&store, bench.seconds, EXECUTIONS, 7).await?;
    store.close();
    Ok(Pair { save, latest })
}
