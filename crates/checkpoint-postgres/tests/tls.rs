//! TLS against a server started with a certificate made in the test: every `sslmode`, a
//! custom root certificate, and a host name that does not match.

mod support;

use checkpoint_core::{Checkpoint, CheckpointStore, Error};
use checkpoint_postgres::{
    DbError, DbErrorKind, DbPool, PostgresOptions, PostgresStore, Sql, SslMode,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use testcontainers_modules::testcontainers::ImageExt;

/// A CA, and a server certificate it signed for `db.internal` only.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "checkpoint test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["db.internal".to_owned()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "db.internal");
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// Turns TLS on and refuses plain connections, during the image's initialisation.
const ENABLE_TLS: &str = r#"
cp /tls/server.crt "$PGDATA/server.crt"
cp /tls/server.key "$PGDATA/server.key"
chmod 600 "$PGDATA/server.key"
cat >> "$PGDATA/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
CONF
sed -i 's/^host /hostssl /' "$PGDATA/pg_hba.conf"
"#;

fn error_kind(err: &Error) -> Option<DbErrorKind> {
    DbError::of(err).map(DbError::kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_is_honoured_against_a_tls_server() {
    let pki = make_pki();
    if !support::docker_or_skip("a server that refuses plain connections") {
        return;
    }
    let server = support::DedicatedServer::start_with(|request| {
        request
            .with_copy_to("/tls/server.crt", pki.server_cert_pem.clone().into_bytes())
            .with_copy_to("/tls/server.key", pki.server_key_pem.clone().into_bytes())
            .with_copy_to(
                "/docker-entrypoint-initdb.d/tls.sh",
                ENABLE_TLS.as_bytes().to_vec(),
            )
    })
    .await;
    let connect = |mode: SslMode, root: bool| {
        let mut options = PostgresOptions::new(&server.url)
            .unwrap()
            .ssl_mode(mode)
            .schema(support::unique_schema("tls"));
        if root {
            options = options
                .root_certificates_pem(pki.ca_pem.as_bytes())
                .unwrap();
        }
        PostgresStore::connect(options)
    };
    let inspect_url = server.url_with("sslmode=require");
    let works = |store: PostgresStore| {
        let inspect_url = inspect_url.clone();
        async move {
            let mut cp = Checkpoint::new("e", "n", json!({"over": "tls"}));
            cp.version = store.save(&cp).await.unwrap();
            assert_eq!(store.load(&cp.id).await.unwrap(), cp);
            let inspector = support::client_to(&inspect_url).await;
            let sql = Sql::new(
                "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'checkpoint'",
                &[],
            );
            let rows = inspector.query(&sql, &[]).await.unwrap();
            assert!(
                rows[0].bool(0).unwrap(),
                "every store connection is encrypted"
            );
        }
    };

    // The server refuses plain connections.
    let err = connect(SslMode::Disable, false).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        err.to_string().contains("no encryption") || err.to_string().contains("pg_hba"),
        "{err}"
    );

    // prefer and require encrypt without checking the certificate.
    works(connect(SslMode::Prefer, false).await.unwrap()).await;
    works(connect(SslMode::Require, false).await.unwrap()).await;

    // verify-ca checks the chain: with our CA it works; with the built-in roots it fails.
    works(connect(SslMode::VerifyCa, true).await.unwrap()).await;
    let unknown_ca = connect(SslMode::VerifyCa, false).await.unwrap_err();
    assert_eq!(
        error_kind(&unknown_ca),
        Some(DbErrorKind::Tls),
        "{unknown_ca:?}"
    );
    assert!(!unknown_ca.is_retryable());

    // verify-full also checks the host name: the certificate is for db.internal, we dial
    // 127.0.0.1.
    let wrong_host = connect(SslMode::VerifyFull, true).await.unwrap_err();
    assert_eq!(
        error_kind(&wrong_host),
        Some(DbErrorKind::Tls),
        "{wrong_host:?}"
    );
    assert!(!wrong_host.is_retryable());
    let message = format!("{wrong_host}: {:?}", std::error::Error::source(&wrong_host));
    assert!(message.contains("TLS"), "{message}");
    assert!(
        message.contains("NotValidForName"),
        "a clear reason: {message}"
    );

    // sslrootcert in the connection string works like the option.
    let dir = std::env::temp_dir().join(support::unique_schema("ca"));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let url = server.url_with(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        ca_file.display()
    ));
    let store = PostgresStore::connect(
        PostgresOptions::new(&url)
            .unwrap()
            .schema(support::unique_schema("tls")),
    )
    .await
    .unwrap();
    works(store).await;
    let _ = std::fs::remove_dir_all(&dir);
}
