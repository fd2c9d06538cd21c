//! Quick reads: `latest`, `load` and unfiltered pages run on a reader connection on the calling
//! thread, decode small states there and large ones on a blocking thread, and go through the
//! pool whenever no quick reader is idle or the store is closed. (A busy database sending a
//! quick read through the pool, which waits for locks, is a unit test in `pool.rs`: a WAL
//! reader cannot be made busy from outside while the store holds connections.)

use checkpoint_core::{Checkpoint, CheckpointStore, Error, ListQuery};
use checkpoint_sqlite::{SqliteOptions, SqliteStore};
use proptest::prelude::*;
use serde_json::json;

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints.db");
    (dir, path)
}

/// Exactly equal: by value and by text (so `-0.0` and `0.0`, `1` and `1.0` differ).
fn assert_exact(read: &Checkpoint, saved: &Checkpoint) {
    assert_eq!(read, saved);
    assert_eq!(read.state.to_string(), saved.state.to_string());
    assert_eq!(
        serde_json::to_string(&read.metadata).unwrap(),
        serde_json::to_string(&saved.metadata).unwrap()
    );
}

/// Text that does not compress: each character drawn from `seed`'s sequence.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// States on both sides of the size up to which rows are decoded on the calling thread
    /// (16 KiB stored), with signed zeros and exact numbers, read back exactly by every quick
    /// read.
    #[test]
    fn states_of_every_size_read_back_exactly(
        sizes in proptest::collection::vec(0usize..40_000, 1..4),
        seed in any::<u64>(),
        zero in prop_oneof![Just(json!(-0.0)), Just(json!(0.0)), Just(json!(0))],
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_dir, path) = temp_db();
            let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
            let mut saved = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let state = json!({"text": noise(seed.wrapping_add(i as u64), *size), "z": zero});
                let mut cp = Checkpoint::new("e", "n", state).with_metadata("step", json!(i));
                cp.version = store.save(&cp).await.unwrap();
                saved.push(cp);
            }
            for cp in &saved {
                assert_exact(&store.load(&cp.id).await.unwrap(), cp);
            }
            assert_exact(&store.latest("e").await.unwrap().unwrap(), saved.last().unwrap());
            let page = store
                .list_page(&ListQuery::new("e").descending().limit(saved.len()))
                .await
                .unwrap();
            assert_eq!(page.items.len(), saved.len());
            for (read, cp) in page.items.iter().zip(saved.iter().rev()) {
                assert_exact(read, cp);
            }
            store.close();
        });
    }
}

/// A closed file store hands out no quick reader: every read is refused as unavailable.
#[tokio::test]
async fn a_closed_file_store_refuses_quick_reads() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(SqliteOptions::file(&path)).await.unwrap();
    let cp = Checkpoint::new("e", "n", json!(1));
    store.save(&cp).await.unwrap();
    store.close();
    let refused: Vec<Error> = vec![
        store.latest("e").await.unwrap_err(),
        store.load(&cp.id).await.unwrap_err(),
        store.list_page(&ListQuery::new("e")).await.unwrap_err(),
    ];
    for err in refused {
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    }
}

/// Many concurrent reads on two runtime threads share the quick readers (each taken and given
/// back within one call; none idle is the unit test in `pool.rs`), and every one reads its own
/// row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_quick_reads_each_read_their_own_row() {
    let (_dir, path) = temp_db();
    let store = std::sync::Arc::new(SqliteStore::open(SqliteOptions::file(&path)).await.unwrap());
    for e in 0..8 {
        store
            .save(&Checkpoint::new(format!("e{e}"), "n", json!({ "e": e })))
            .await
            .unwrap();
    }
    let reads = (0..64).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let e = i % 8;
            let read = store.latest(&format!("e{e}")).await.unwrap().unwrap();
            assert_eq!(read.state, json!({ "e": e }));
            let page = store
                .list_page(&ListQuery::new(format!("e{e}")))
                .await
                .unwrap();
            assert_eq!(page.items[0].state, json!({ "e": e }));
        })
    });
    for read in reads {
        read.await.unwrap();
    }
}
