//! The shared conformance suite on a real PostgreSQL, one fresh schema per case, in every mode
//! the store writes in, a module each:
//!
//! - the top level: the layout `CHECKPOINT_TEST_LAYOUT` names (plain when unset; `distributed`
//!   on a Citus coordinator runs it on distributed tables: see `docs/scaling.md`), the
//!   defaults otherwise;
//! - `jsonb`: states written whole to the JSONB column (`StateEncoding::Jsonb`, the format of
//!   releases before schema 3) and group commit off, so the plain single-save path is held to
//!   the contract on its own;
//! - `short_chains`: delta storage at its most demanding (a snapshot every third version,
//!   deltas whatever the size, LZ4), every save through the group statement even alone, and
//!   every prune of one execution through the group's prune statement (refused, then made
//!   alone, when a kept delta's base would go);
//! - `sealed`: every state sealed (AES-256-GCM), snapshots and deltas;
//! - `unnamed`: the statement cache off, every statement unnamed with its parameter types, as
//!   behind pgbouncer in transaction mode;
//! - `hash` and `distributed`: the layouts keyed by `execution_id`, where ids are unique per
//!   execution (`IdScope::PerExecution`, which the suite tests as that promise); the
//!   distributed layout undistributed here (every statement of it has a shape Citus runs:
//!   `tests/plans.rs`);
//! - `hash_grouped`: the hash layout with every save and every prune of one execution through
//!   the group statements;
//! - `by_start` and `grouped`: the time-partitioned layout, with the defaults and with every
//!   save through group commit, so that once the store knows where an execution's rows live
//!   its saves go straight to that partition (plans, maintenance and retention:
//!   `partitioned.rs`);
//! - `refusing_unleased_writes`: the lease cases on every layout with
//!   `PostgresOptions::refuse_unleased_writes`.

mod support;

use checkpoint_postgres::{
    Compression, Encryption, EncryptionKey, GroupCommit, PartitionPeriod, PostgresOptions,
    PostgresStore, StateEncoding, TableLayout,
};

async fn connect(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect(options)
        .await
        .expect("connect to the test server")
}

async fn store() -> PostgresStore {
    connect(
        support::options()
            .await
            .table_layout(support::layout_from_env()),
    )
    .await
}

checkpoint_core::conformance_tests!(store());

mod jsonb {
    use super::*;

    async fn jsonb_store() -> PostgresStore {
        connect(
            support::options()
                .await
                .state_encoding(StateEncoding::Jsonb)
                .group_commit(GroupCommit::disabled()),
        )
        .await
    }

    checkpoint_core::conformance_tests!(jsonb_store());
}

mod short_chains {
    use super::*;

    async fn short_chain_store() -> PostgresStore {
        connect(
            support::options()
                .await
                .state_encoding(StateEncoding::delta(3).expect("a valid distance"))
                .compression(Compression::Lz4)
                .min_delta_bytes(0)
                .group_commit(GroupCommit::default().lone_saves_grouped(true)),
        )
        .await
    }

    checkpoint_core::conformance_tests!(short_chain_store());
}

mod sealed {
    use super::*;

    async fn sealed_store() -> PostgresStore {
        let key = EncryptionKey::new("conformance", &[3; 32]).expect("a valid key");
        connect(
            support::options()
                .await
                .min_delta_bytes(0)
                .encryption(Encryption::new(key)),
        )
        .await
    }

    checkpoint_core::conformance_tests!(sealed_store());
}

mod unnamed {
    use super::*;

    async fn store_without_statement_cache() -> PostgresStore {
        connect(support::options().await.statement_cache(false)).await
    }

    checkpoint_core::conformance_tests!(store_without_statement_cache());
}

async fn store_on(layout: TableLayout, group: GroupCommit) -> PostgresStore {
    connect(
        support::options()
            .await
            .table_layout(layout)
            .group_commit(group),
    )
    .await
}

mod hash {
    use super::*;

    checkpoint_core::conformance_tests!(store_on(
        TableLayout::hash_partitioned(8).expect("a valid layout"),
        GroupCommit::default()
    ));
}

/// Every save and every prune of one execution through the group statements, on the hash
/// layout.
mod hash_grouped {
    use super::*;

    checkpoint_core::conformance_tests!(store_on(
        TableLayout::hash_partitioned(8).expect("a valid layout"),
        GroupCommit::default().lone_saves_grouped(true)
    ));
}

mod distributed {
    use super::*;

    checkpoint_core::conformance_tests!(store_on(TableLayout::Distributed, GroupCommit::default()));
}

mod by_start {
    use super::*;

    checkpoint_core::conformance_tests!(store_on(
        TableLayout::time_partitioned(PartitionPeriod::Day),
        GroupCommit::default()
    ));
}

mod grouped {
    use super::*;

    checkpoint_core::conformance_tests!(store_on(
        TableLayout::time_partitioned(PartitionPeriod::Day),
        GroupCommit::default().lone_saves_grouped(true)
    ));
}

/// A store refusing unleased writes, on every layout (`PostgresOptions::refuse_unleased_writes`).
mod refusing_unleased_writes {
    use super::*;
    use checkpoint_core::conformance::lease;

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
