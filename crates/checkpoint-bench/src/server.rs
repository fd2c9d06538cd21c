//! The PostgreSQL server under test, and pgbench against it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};

/// The official image, used when no other is chosen.
pub(crate) const DEFAULT_IMAGE: &str = "postgres:17-alpine";

/// A server: the one given, or a container this run started (removed when dropped).
pub(crate) struct Server {
    pub url: String,
    pub image: String,
    _container: Option<ContainerAsync<Postgres>>,
}

impl Server {
    /// Uses `url`, or starts `image` with `fsync` on, as production runs.
    pub(crate) async fn start(url: Option<String>, image: &str) -> anyhow::Result<Server> {
        if let Some(url) = url {
            return Ok(Server {
                url,
                image: image.to_owned(),
                _container: None,
            });
        }
        let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let container = Postgres::default()
            // The module turns fsync off for tests; a benchmark measures what production does.
            .with_fsync_enabled()
            .with_name(name)
            .with_tag(tag)
            .with_cmd(["-c", "max_connections=300", "-c", "shared_buffers=256MB"])
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
            .with_context(|| format!("starting {image} (set --database-url or --image)"))?;
        let host = container.get_host().await?;
        let port = container.get_host_port_ipv4(5432).await?;
        Ok(Server {
            url: format!("postgres://postgres:postgres@{host}:{port}/postgres"),
            image: image.to_owned(),
            _container: Some(container),
        })
    }

    /// A plain connection for set-up and inspection.
    pub(crate) async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Runs pgbench with `script` at `clients` for `seconds` and returns its transactions per
    /// second. Uses a local pgbench, or the server image's through Docker on the host network
    /// (the same loopback path the store takes).
    pub(crate) fn pgbench(
        &self,
        script_dir: &Path,
        clients: usize,
        seconds: u64,
        defines: &[(&str, &str)],
    ) -> anyhow::Result<f64> {
        let mut args: Vec<String> = vec![
            "-n".into(),
            "-M".into(),
            "prepared".into(),
            "-c".into(),
            clients.to_string(),
            "-j".into(),
            clients.min(2).to_string(),
            "-T".into(),
            seconds.to_string(),
        ];
        for (key, value) in defines {
            args.push("-D".into());
            args.push(format!("{key}={value}"));
        }
        let local = Command::new("pgbench").arg("--version").output().is_ok();
        let output = if local {
            args.extend([
                "-f".into(),
                script_dir.join("save.sql").display().to_string(),
            ]);
            args.push(self.url.clone());
            Command::new("pgbench").args(&args).output()?
        } else {
            args.extend(["-f".into(), "/bench/save.sql".into()]);
            args.push(self.url.clone());
            Command::new("docker")
                .args(["run", "--rm", "--network", "host", "-v"])
                .arg(format!("{}:/bench:ro", script_dir.display()))
                .args(["--entrypoint", "pgbench", &self.image])
                .args(&args)
                .output()
                .context("running pgbench in the server image")?
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "pgbench failed: {}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        stdout
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix("tps = ")?;
                rest.split_whitespace().next()?.parse::<f64>().ok()
            })
            .with_context(|| format!("no tps in pgbench output: {stdout}"))
    }
}
