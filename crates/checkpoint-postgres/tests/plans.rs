//! Deterministic guards on the shape of the queries: with 100,000 rows, every statement that
//! touches one execution or one id reads the checkpoint table through an index, never a
//! sequential scan, under both custom and generic plans (the ones cached statements use).

mod support;

use checkpoint_postgres::{PostgresStore, Sql};

/// `EXPLAIN EXECUTE` of `sql` with `args` (SQL literals), as a custom and a generic plan.
async fn plans(client: &tokio_postgres::Client, name: &str, sql: &Sql, args: &str) -> Vec<String> {
    support::prepared_plans(client, name, sql, args, "COSTS ON")
        .await
        .into_iter()
        .map(|(mode, plan)| format!("{mode}:\n{}", plan.join("\n")))
        .collect()
}

/// The arguments of a group of two saves (appends to two executions) for the group commit
/// statements; `bases` and `depths` make the first a delta or not.
fn group_args(bases: &str, depths: &str, fences: &str) -> String {
    format!(
        "ARRAY['g-1', 'g-2'], ARRAY['exec-5', 'exec-6'], ARRAY['n', 'n'], \
         ARRAY[NULL, NULL]::jsonb[], ARRAY['{{}}', '{{}}']::jsonb[], ARRAY[now(), now()], \
         ARRAY[0, 0]::int8[], ARRAY[NULL, NULL]::text[], ARRAY['\\x00', '\\x00']::bytea[], \
         ARRAY[{bases}]::int8[], ARRAY[{bases}]::int8[], ARRAY[1, 2]::int8[], \
         ARRAY[{depths}]::int4[], ARRAY[0, 0]::int8[], ARRAY[{fences}]::int8[]"
    )
}

#[tokio::test]
async fn single_execution_statements_use_the_index_at_100k_rows() {
    let store: PostgresStore = support::store().await;
    let client = support::client().await;
    support::seed_executions(&client, &store, 100_000).await;
    client
        .batch_execute(&format!(
            "INSERT INTO {leases} (execution_id, owner, token, expires_at)
             SELECT 'exec-' || g, 'w', 1, now() FROM generate_series(0, 99999) AS g;
             ANALYZE {leases};",
            leases = store.table().qualify(&store.table().leases_table())
        ))
        .await
        .unwrap();

    let s = store.statements();
    let mut cases: Vec<(&str, &checkpoint_postgres::Sql, String)> =
        vec![("load", &s.load, "'id-500'".to_owned())];
    cases.extend(
        support::execution_keyed(s)
            .into_iter()
            .map(|(name, sql, args)| (name, sql, args.to_owned())),
    );
    cases.extend([
        ("delete", &s.delete, "'id-500', NULL".to_owned()),
        ("lock_row", &s.lock_row, "'id-500', NULL".to_owned()),
        ("load_in", &s.load_in, "'exec-5', 'id-500'".to_owned()),
        ("chains", &s.chains, "'exec-5', ARRAY['id-500']".to_owned()),
        // The append reads the execution's highest version by the index (`INSERT … SELECT`
        // over the execution's rows), with and without a base to check.
        (
            "save",
            &s.save,
            "'new-id', 'exec-5', 'n', '{}', '{}', now(), 0, NULL, NULL, NULL, NULL, 7, 0"
                .to_owned(),
        ),
        (
            "save_delta",
            &s.save_delta,
            "'new-id', 'exec-5', 'n', NULL, '{}', now(), 0, NULL, '\\x0100', 3, 1, 7, 0".to_owned(),
        ),
        // A fenced save reads its execution's lease row by its key too.
        (
            "save_fenced",
            &s.save_fenced,
            "'new-id', 'exec-5', 'n', '{}', '{}', now(), 0, NULL, NULL, NULL, NULL, 7, 0, 1"
                .to_owned(),
        ),
        (
            "group_save",
            &s.group_save,
            group_args("NULL, NULL", "NULL, NULL", "NULL, NULL"),
        ),
        (
            "group_delta",
            &s.group_save_delta,
            group_args("3, NULL", "0, NULL", "NULL, NULL"),
        ),
        (
            "group_fenced",
            &s.group_save,
            group_args("NULL, NULL", "NULL, NULL", "1, NULL"),
        ),
    ]);
    for (name, sql, args) in cases {
        for plan in plans(&client, name, sql, &args).await {
            assert!(
                !plan.contains("Seq Scan"),
                "{name} scans the table sequentially:\n{plan}"
            );
            assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
        }
    }
    for sql in [&s.page_ascending, &s.page_descending] {
        assert!(
            !sql.text.to_uppercase().contains("OFFSET"),
            "keyset pages never OFFSET"
        );
    }
}

/// A prune reads its execution's lowest version by an index-only scan (the `min()` read from
/// the version index, stopping at the first entry of a live row), under custom and generic
/// plans: that scan is what marks the entries of rows removed by earlier prunes dead, so that
/// the server drops them from the index (`lowest_version` in `schema/statements.rs`).
#[tokio::test]
async fn prunes_read_the_lowest_version_by_an_index_only_scan() {
    let store: PostgresStore = support::store().await;
    let client = support::client().await;
    support::seed_executions(&client, &store, 100_000).await;
    let s = store.statements();
    let cases = [
        (
            "prune_lowest_one",
            &s.prune_execution,
            "'exec-5', 10, now() - interval '1 day'",
        ),
        (
            "prune_lowest_lazy",
            &s.prune_execution_lazy,
            "'exec-5', 10, NULL",
        ),
        (
            "prune_lowest_group",
            &s.prune_executions,
            "ARRAY['exec-5', 'exec-6'], ARRAY[10, 20]::int8[], ARRAY[NULL, now()]::timestamptz[]",
        ),
    ];
    for (name, sql, args) in cases {
        for plan in plans(&client, name, sql, args).await {
            // Forward: the backward one is the read of the (keep + 1)-th newest.
            assert!(
                plan.contains("Index Only Scan using"),
                "{name} reads the lowest version otherwise:\n{plan}"
            );
        }
    }
}
