//! The `layout` workloads: the plain table against the hash-partitioned layout (the stand-in for
//! a table distributed by `execution_id`) and the time-partitioned one, in the same run: saves
//! at 1 and 16 tasks (each save on a partitioned layout also runs its id guard, which probes
//! every partition), and reads by execution (`latest`, one partition) and by id alone (`load`,
//! every partition).

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::TableLayout;

use crate::stats::{time_latest, time_load, Figures};
use crate::workloads::{Bench, Setup};

const EXECUTIONS: usize = 100;
const EACH: usize = 20;

/// The figures of one layout.
pub struct LayoutFigures {
    pub save_1: Figures,
    pub save_16: Figures,
    pub latest: Figures,
    pub load: Figures,
}

pub async fn measure(bench: &Bench, layout: TableLayout) -> anyhow::Result<LayoutFigures> {
    let setup = Setup {
        layout,
        ..Setup::default()
    };
    let save_1 = bench.save_with(1, setup).await?.0;
    let save_16 = bench.save_with(16, setup).await?.0;

    let store = bench.store_with("layout_reads", 2, setup).await?;
    let mut ids = Vec::with_capacity(EXECUTIONS * EACH);
    for e in 0..EXECUTIONS {
        let batch: Vec<Checkpoint> = (0..EACH)
            .map(|_| Checkpoint::new(format!("e{e}"), "node", bench.payload.clone()))
            .collect();
        store.save_batch(&batch).await?;
        ids.extend(batch.into_iter().map(|cp| cp.id));
    }
    let latest = time_latest(&store, bench.seconds, EXECUTIONS, 3).await?;
    let load = time_load(&store, bench.seconds, &ids, 5).await?;
    store.close();
    Ok(LayoutFigures {
        save_1,
        save_16,
        latest,
        load,
    })
}
