//! The `layout` workloads: the plain table against the hash-partitioned layout, the
//! time-partitioned one and the distributed one (undistributed on one server), in the same run:
//! saves at 1 and 16 tasks, reads by execution (`latest`, one partition), by id alone (`load`,
//! every partition; on the distributed layout a lookup of the execution, then the read there)
//! and by execution and id (`load_in`).
//!
//! Every layout is measured in two rounds, the second in reverse order, and each figure is the
//! mean of its two rounds: a machine that slows down or speeds up steadily during the run then
//! weighs on every layout alike, where one round in one order charged it to the layouts
//! measured last.

use checkpoint_core::{Checkpoint, CheckpointStore};
use checkpoint_postgres::TableLayout;

use crate::stats::{time_latest, time_load, time_load_in, Figures};
use crate::workloads::{Bench, Setup};

const EXECUTIONS: usize = 100;
const EACH: usize = 20;

/// The figures of one layout.
pub(crate) struct LayoutFigures {
    pub save_1: Figures,
    pub save_16: Figures,
    pub latest: Figures,
    pub load: Figures,
    pub load_in: Figures,
}

impl LayoutFigures {
    /// The two rounds of one layout as one.
    fn mean(&self, other: &LayoutFigures) -> LayoutFigures {
        LayoutFigures {
            save_1: self.save_1.mean(&other.save_1),
            save_16: self.save_16.mean(&other.save_16),
            latest: self.latest.mean(&other.latest),
            load: self.load.mean(&other.load),
            load_in: self.load_in.mean(&other.load_in),
        }
    }
}

/// Every layout of `layouts`, in two rounds (the second in reverse order): each one's figures,
/// in the order given.
pub(crate) async fn measure_all(
    bench: &Bench,
    layouts: &[TableLayout],
) -> anyhow::Result<Vec<LayoutFigures>> {
    let mut first = Vec::with_capacity(layouts.len());
    for layout in layouts {
        first.push(measure(bench, *layout).await?);
    }
    let mut second = Vec::with_capacity(layouts.len());
    for layout in layouts.iter().rev() {
        second.push(measure(bench, *layout).await?);
    }
    second.reverse();
    Ok(first.iter().zip(&second).map(|(a, b)| a.mean(b)).collect())
}

async fn measure(bench: &Bench, layout: TableLayout) -> anyhow::Result<LayoutFigures> {
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
