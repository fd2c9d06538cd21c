//! Unit tests of [`PostgresOptions`](super::PostgresOptions): parsing, validation, `Debug`.

use super::*;

#[test]
fn url_pool_parameters_are_taken_out() {
    let options = PostgresOptions::new(
        "postgres://u:pw@localhost:5433/db?sslmode=disable&pool_max_conns=7&pool_min_conns=2\
         &pool_max_conn_lifetime=1h30m&pool_max_conn_idle_time=5m",
    )
    .unwrap();
    assert_eq!(options.pool_max_size(), 7);
    assert_eq!(options.pool_min_size(), 2);
    assert_eq!(
        options.connection_limits(),
        (
            Some(Duration::from_secs(5400)),
            Some(Duration::from_secs(300))
        )
    );
    assert_eq!(options.driver_config().get_dbname(), Some("db"));
    assert_eq!(options.driver_config().get_ports(), &[5433]);
}

#[test]
fn key_value_pool_parameters_are_taken_out() {
    let options =
        PostgresOptions::new("host=h user=u password='it''s' pool_max_conns = 3 dbname=d")
            .unwrap_err();
    // libpq doubles nothing: a quote inside a value is escaped with a backslash.
    assert!(options.is_invalid_field("connection_string"), "{options}");

    let options = PostgresOptions::new(
        r"host=h user=u password='it\'s a secret' pool_max_conns = 3 dbname=d",
    )
    .unwrap();
    assert_eq!(options.pool_max_size(), 3);
    assert_eq!(
        options.driver_config().get_password(),
        Some(&b"it's a secret"[..])
    );
    assert_eq!(options.driver_config().get_dbname(), Some("d"));
}

#[test]
fn bad_pool_parameters_name_themselves() {
    for (url, field) in [
        ("postgres://h/db?pool_max_conns=many", "pool_max_conns"),
        ("postgres://h/db?pool_max_conns=0", "pool_max_conns"),
        ("postgres://h/db?pool_min_conns=-1", "pool_min_conns"),
        (
            "postgres://h/db?pool_max_conn_lifetime=forever",
            "pool_max_conn_lifetime",
        ),
        (
            "postgres://h/db?pool_max_conn_idle_time=5parsecs",
            "pool_max_conn_idle_time",
        ),
        (
            "postgres://h/db?pool_max_conns=2&pool_min_conns=3",
            "pool_min_conns",
        ),
    ] {
        let err = PostgresOptions::new(url).unwrap_err();
        assert!(err.is_invalid_field(field), "{url}: {err}");
    }
}

#[test]
fn malformed_connection_strings_are_invalid_input() {
    for bad in [
        "postgres://h:notaport/db",
        "host=h port=abc",
        "host='unterminated",
        "justaword",
        "host=h sslmode=sometimes",
        "host=h sslmode=verify_full",
    ] {
        let err = PostgresOptions::new(bad).unwrap_err();
        let field = if bad.contains("sslmode") {
            "sslmode"
        } else {
            "connection_string"
        };
        assert!(err.is_invalid_field(field), "{bad}: {err}");
    }
}

#[test]
fn storage_and_statement_parameters_are_read_by_the_store() {
    let options = PostgresOptions::new(
        "postgres://u@h/db?statement_cache=off&state_encoding=delta&snapshot_every=9&compression=lz4",
    )
    .unwrap();
    assert!(!options.is_statement_cache());
    assert_eq!(
        options.encoding(),
        StateEncoding::Delta { snapshot_every: 9 }
    );
    assert_eq!(options.state_compression(), Compression::Lz4);
    let kv = PostgresOptions::new("host=h user=u statement_cache=on state_encoding=jsonb").unwrap();
    assert!(kv.is_statement_cache());
    assert_eq!(kv.encoding(), StateEncoding::Jsonb);
    for (bad, field) in [
        ("postgres://h/db?statement_cache=maybe", "statement_cache"),
        ("postgres://h/db?state_encoding=xml", "state_encoding"),
        ("postgres://h/db?snapshot_every=0", "snapshot_every"),
        ("postgres://h/db?snapshot_every=x", "snapshot_every"),
        ("postgres://h/db?compression=gzip", "compression"),
    ] {
        let err = PostgresOptions::new(bad).unwrap_err();
        assert!(err.is_invalid_field(field), "{bad}: {err}");
    }
}

#[test]
fn tls_parameters_are_read_by_the_store() {
    let options = PostgresOptions::new("postgres://h/db?sslmode=verify-full").unwrap();
    assert_eq!(options.tls_mode(), SslMode::VerifyFull);
    assert_eq!(
        options.driver_config().get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    let plain = PostgresOptions::new("host=h sslmode=disable").unwrap();
    assert_eq!(
        plain.driver_config().get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable
    );
    assert_eq!(
        PostgresOptions::new("host=h").unwrap().tls_mode(),
        SslMode::Prefer
    );
    let missing = PostgresOptions::new("host=h sslrootcert=/no/such/file.pem").unwrap_err();
    assert!(missing.is_invalid_field("sslrootcert"), "{missing}");
    let garbage = PostgresOptions::new("host=h")
        .unwrap()
        .root_certificates_pem(b"garbage")
        .unwrap_err();
    assert!(garbage.is_invalid_field("root_certificates"), "{garbage}");
}

#[test]
fn relaxed_durability_is_a_session_option_that_can_be_undone() {
    let options = PostgresOptions::new("host=h options='-c work_mem=64MB'")
        .unwrap()
        .synchronous_commit(false);
    assert!(!options.is_synchronous_commit());
    assert_eq!(
        options.driver_config().get_options(),
        Some("-c work_mem=64MB -csynchronous_commit=off")
    );
    let back = options.synchronous_commit(true);
    assert_eq!(back.driver_config().get_options(), Some("-c work_mem=64MB"));
}

#[test]
fn debug_never_shows_the_password() {
    for s in [
        "postgres://user:hunter2@localhost/db",
        "host=localhost user=user password=hunter2",
    ] {
        let shown = format!("{:?}", PostgresOptions::new(s).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn no_timeout_is_infinite_by_default() {
    let options = PostgresOptions::new("host=localhost").unwrap();
    let (wait, create, recycle) = options.timeouts();
    assert!(wait > Duration::ZERO && create > Duration::ZERO && recycle > Duration::ZERO);
    assert!(options.driver_config().get_connect_timeout().is_some());
    assert!(options.is_auto_migrate());
    assert!(options.is_statement_cache());
}

#[test]
fn table_and_schema_names_are_validated() {
    let options = PostgresOptions::new("host=h").unwrap();
    assert!(options.clone().table("ok_name").table_name().is_ok());
    assert!(options
        .clone()
        .table("x; DROP TABLE y")
        .table_name()
        .unwrap_err()
        .is_invalid_field("table"));
    assert!(options
        .schema("s\"")
        .table_name()
        .unwrap_err()
        .is_invalid_field("schema"));
}

#[test]
fn group_commit_parameters_are_read_by_the_store() {
    let on = PostgresOptions::new("postgres://u@h/db").unwrap();
    assert_eq!(on.group_commit_settings(), GroupCommit::default());
    assert!(on.group_commit_settings().is_enabled());
    let off = PostgresOptions::new("postgres://u@h/db?group_commit=off").unwrap();
    assert!(!off.group_commit_settings().is_enabled());
    let sized = PostgresOptions::new("host=h group_commit_max_saves=32 group_commit=on").unwrap();
    assert!(sized.group_commit_settings().is_enabled());
    assert_eq!(sized.group_commit_settings().saves_per_group(), 32);
    assert!(sized.driver_config().get_options().is_none());
    for (bad, field) in [
        ("postgres://h/db?group_commit=maybe", "group_commit"),
        (
            "postgres://h/db?group_commit_max_saves=0",
            "group_commit_max_saves",
        ),
        (
            "postgres://h/db?group_commit_max_saves=99999",
            "group_commit_max_saves",
        ),
        (
            "postgres://h/db?group_commit_max_saves=x",
            "group_commit_max_saves",
        ),
    ] {
        let err = PostgresOptions::new(bad).unwrap_err();
        assert!(err.is_invalid_field(field), "{bad}: {err}");
    }
    assert!(format!("{sized:?}").contains("max_saves: 32"));
}

#[test]
fn multi_host_connection_strings_reach_the_driver_whole() {
    use tokio_postgres::config::TargetSessionAttrs;
    for s in [
        "postgres://app:pw@db-a:5432,db-b:5433/app?target_session_attrs=read-write&pool_max_conns=4",
        "host=db-a,db-b port=5432,5433 user=app dbname=app target_session_attrs=read-write pool_max_conns=4",
    ] {
        let options = PostgresOptions::new(s).unwrap();
        let config = options.driver_config();
        assert_eq!(config.get_hosts().len(), 2, "{s}");
        assert_eq!(config.get_ports(), &[5432, 5433], "{s}");
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite,
            "{s}"
        );
        assert_eq!(options.pool_max_size(), 4, "{s}");
    }
}

#[test]
fn a_partitioned_layout_plans_generically_and_keeps_other_session_options() {
    let options = PostgresOptions::new("postgres://u@h/db")
        .unwrap()
        .synchronous_commit(false)
        .table_layout(crate::TableLayout::hash_partitioned(4).unwrap());
    let set = options
        .driver_config()
        .get_options()
        .unwrap_or("")
        .to_owned();
    assert!(
        set.contains("-cplan_cache_mode=force_generic_plan"),
        "{set}"
    );
    assert!(set.contains("-csynchronous_commit=off"), "{set}");
    let plain = options.table_layout(crate::TableLayout::Plain);
    let set = plain.driver_config().get_options().unwrap_or("").to_owned();
    assert!(!set.contains("plan_cache_mode"), "{set}");
    assert!(set.contains("-csynchronous_commit=off"), "{set}");
}

/// Citus cannot plan parameterised `INSERT … SELECT` or the recursive chain read generically:
/// the distributed layout never forces generic plans, and moving to it drops the setting.
#[test]
fn the_distributed_layout_never_forces_generic_plans() {
    let hashed = PostgresOptions::new("postgres://u@h/db")
        .unwrap()
        .synchronous_commit(false)
        .table_layout(crate::TableLayout::hash_partitioned(4).unwrap());
    for options in [
        hashed.clone().table_layout(crate::TableLayout::Distributed),
        PostgresOptions::new("postgres://u@h/db?options=-cplan_cache_mode%3Dforce_generic_plan")
            .unwrap()
            .table_layout(crate::TableLayout::Distributed),
    ] {
        let set = options
            .driver_config()
            .get_options()
            .unwrap_or("")
            .to_owned();
        assert!(!set.contains("plan_cache_mode"), "{set}");
    }
}

mod validation {
    use super::*;
    use checkpoint_core::RetentionPolicy;
    use proptest::prelude::*;

    fn base(layout: TableLayout) -> PostgresOptions {
        PostgresOptions::new("postgres://app@localhost/app")
            .unwrap()
            .table_layout(layout)
    }

    fn refused_field(options: &PostgresOptions) -> Option<String> {
        match options.validate() {
            Ok(()) => None,
            Err(Error::InvalidInput { field, .. }) => Some(field),
            Err(other) => panic!("not an InvalidInput: {other:?}"),
        }
    }

    proptest! {
        /// Partitions made ahead are checked on a time-partitioned layout only, against
        /// 1..=MAX_PARTITIONS_AHEAD, naming the option.
        #[test]
        fn partitions_ahead_count_on_the_time_layout_only(
            ahead in any::<u16>(),
            hash in 1..=crate::MAX_HASH_PARTITIONS,
            pick in 0..4usize,
        ) {
            let layout = [
                TableLayout::Plain,
                TableLayout::hash_partitioned(hash).unwrap(),
                TableLayout::Distributed,
                TableLayout::time_partitioned(crate::PartitionPeriod::Week),
            ][pick];
            let options = base(layout).partitions_ahead(ahead);
            let expected = (layout.period().is_some()
                && !(1..=crate::MAX_PARTITIONS_AHEAD).contains(&ahead))
                .then(|| "partitions_ahead".to_owned());
            prop_assert_eq!(refused_field(&options), expected);
        }

        /// Group commit bounds are checked with the bound named.
        #[test]
        fn group_commit_bounds_are_checked(saves in 0..=GroupCommit::MAX_SAVES + 8) {
            let options = base(TableLayout::Plain)
                .group_commit(GroupCommit::default().max_saves(saves));
            let expected = !(1..=GroupCommit::MAX_SAVES).contains(&saves);
            prop_assert_eq!(
                refused_field(&options),
                expected.then(|| "group_commit_max_saves".to_owned())
            );
        }
    }

    #[test]
    fn sealed_jsonb_and_bad_schedules_are_refused_before_any_connection() {
        let key = crate::EncryptionKey::new("k1", &[7; 32]).unwrap();
        let sealed = base(TableLayout::Plain).encryption(Encryption::new(key));
        assert_eq!(refused_field(&sealed), None, "delta storage seals");
        assert_eq!(
            refused_field(&sealed.state_encoding(StateEncoding::Jsonb)),
            Some("state_encoding".to_owned())
        );
        let too_often = checkpoint_core::retention::RetentionSchedule::new(
            RetentionPolicy::keep_last(5),
            Duration::from_millis(1),
        );
        assert!(refused_field(&base(TableLayout::Plain).retention(too_often)).is_some());
        let bad_name = base(TableLayout::Plain).table("no spaces allowed");
        assert_eq!(refused_field(&bad_name), Some("table".to_owned()));
    }
}
