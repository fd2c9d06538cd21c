//! The shared conformance suite on a real PostgreSQL, one fresh schema per case, on the layout
//! `CHECKPOINT_TEST_LAYOUT` names (plain when unset; `distributed` on a Citus coordinator runs
//! it on distributed tables: see `docs/scaling.md`).

mod support;

async fn store() -> checkpoint_postgres::PostgresStore {
    let options = support::options()
        .await
        .table_layout(support::layout_from_env());
    checkpoint_postgres::PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

checkpoint_core::conformance_tests!(store());

/// A store refusing unleased writes, on every layout (`PostgresOptions::refuse_unleased_writes`).
mod refusing_unleased_writes {
    use super::*;
    use checkpoint_core::conformance::lease;
    use checkpoint_postgres::{PartitionPeriod, TableLayout};

    fn layouts() -> [TableLayout; 4] {
        [
            TableLayout::Plain,
            TableLayout::hash_partitioned(4).expect("valid"),
            TableLayout::time_partitioned(PartitionPeriod::Day),
            TableLayout::Distributed,
        ]
    }

    async fn refusing(layout: TableLayout) -> checkpoint_core::conformance::Store {
        let options = support::options()
            .await
            .table_layout(layout)
            .refuse_unleased_writes(true);
        std::sync::Arc::new(
            checkpoint_postgres::PostgresStore::connect(options)
                .await
                .expect("connect to the test server"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unleased_writes_are_refused_while_leased() {
        for layout in layouts() {
            lease::unleased_writes_are_refused_while_leased(refusing(layout).await).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unleased_saves_racing_a_first_acquire_never_land_after_it() {
        for layout in layouts() {
            lease::unleased_saves_racing_a_first_acquire_never_land_after_it(
                refusing(layout).await,
            )
            .await;
        }
    }
}
