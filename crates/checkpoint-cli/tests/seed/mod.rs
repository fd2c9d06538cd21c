//! The checkpoints every CLI test starts from, on any store.

use checkpoint_core::{Checkpoint, CheckpointStore};
use serde_json::json;

/// Saves two executions: `a` (3 checkpoints, returned with their versions), `b` (2).
pub async fn two_executions(store: &dyn CheckpointStore) -> Vec<Checkpoint> {
    let mut a = Vec::new();
    for (i, state) in [
        json!({"n": 1, "items": ["x"]}),
        json!({"n": 2, "items": ["x", "y"]}),
        json!({"n": 3}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cp = Checkpoint::new("a", format!("step{i}"), state).with_metadata("i", i);
        cp.version = store.save(&cp).await.unwrap();
        a.push(cp);
    }
    for i in 0..2 {
        store
            .save(&Checkpoint::new("b", "n", json!(i)))
            .await
            .unwrap();
    }
    a
}
