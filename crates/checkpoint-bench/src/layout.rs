//! The `layout` workloads: the plain table against the hash-partitioned layout, the
//! time-partitioned one and the distributed one (undistributed on one server), in the same run:
//! saves at 1 and 16 tasks, reads by execution (`latest`, one partition), by id alone (`load`,
//! every partition; on the distributed layout a lookup of the execution, then the read there)
//! and by execution and id (`load_in`).

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::TableLayout;

use crate::stats::{time_latest, time_load, time_load_in, Figures};
use crate::workloads::{Bench, Setup};

const EXECUTIONS: usize = 100;
const EACH: usize = 20;

/// The figures of one layout.
pub struct LayoutFigures {
    pub save_1: Figures,
    pub save_16: Figures,
    pub latest: Figures,
    pub load: Figures,
    pub load_in: Figures,
}

pub async fn measure(bench: &Bench, layout: TableLayout) -> anyhow::Result<LayoutFigures> {
    let setup = Setup {
        layout,
        ..Setup::default()
    };
    let save_1 = bench.save_with(1, setup).await?.0;
    let save_16 = bench.save_with(16, setup).await?.0;

    let store = bench.store_with("layout_reads", 2, setup).await?;
    let mut keys = Vec::with_capacity(EXECUTIONS * EACH);
    for e in 0..EXECUTIONS {
        let batch: Vec<Checkpoint> = (0..EACH)
            .map(|_| Checkpoint::new(format!("e{e}"), "node", bench.payload.clone()))
            .collect();
        store.save_batch(&batch).await?;
        keys.extend(batch.into_iter().map(|cp| (cp.execution_id, cp.id)));
    }
    let latest = time_latest(&store, bench.seconds, EXECUTIONS, 3).await?;
    let ids: Vec<String> = keys.iter().map(|(_, id)| id.clone()).collect();
    let load = time_load(&store, bench.seconds, &ids, 5).await?;
    let load_in = time_load_in(&store, bench.seconds, &keys, 5).await?;
    store.close();
    Ok(LayoutFigures {
        save_1,
        save_16,
        latest,
        load,
        load_in,
    })
}
