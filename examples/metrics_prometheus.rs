//! The store's metrics in Prometheus text: installs `metrics-exporter-prometheus` as the
//! process's recorder, serving `http://<METRICS_ADDR>/metrics`, then saves and reads a
//! checkpoint every `STEP_MS` milliseconds, `SAVES` times, and keeps serving for
//! `SERVE_SECONDS` more so a scraper can read the final figures.
//!
//! Run it with `cargo run --example metrics_prometheus` and, while it runs,
//! `curl -s 127.0.0.1:9464/metrics | grep db_client_operation`. The store records through the
//! `metrics` facade only; which exporter (if any) receives the figures is the application's
//! choice, made here in three lines.
//!
//! Environment: `METRICS_ADDR` (default `127.0.0.1:9464`), `SAVES` (default 20), `STEP_MS`
//! (default 250), `SERVE_SECONDS` (default 5); the backend as in the other examples.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use checkpoint_core::Checkpoint;
use checkpoint_examples::Backend;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(text) => text.parse().with_context(|| format!("{name}={text}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address: SocketAddr = setting("METRICS_ADDR", "127.0.0.1:9464".parse()?)?;
    let saves: u32 = setting("SAVES", 20)?;
    let step = Duration::from_millis(setting("STEP_MS", 250)?);
    let serve = Duration::from_secs(setting("SERVE_SECONDS", 5)?);

    // Installed before the store is made, so the metrics' descriptions reach it too.
    PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .context("serving the metrics")?;
    println!("metrics at http://{address}/metrics");

    let backend = Backend::chosen()?;
    let store = checkpoint_examples::open(backend).await?;
    let execution = format!("metrics-{}", checkpoint_examples::run_suffix());
    for step_number in 1..=saves {
        let checkpoint = Checkpoint::new(&execution, "step", json!({ "step": step_number }));
        store.save(&checkpoint).await?;
        store.latest(&execution).await?;
        println!("saved step {step_number}");
        tokio::time::sleep(step).await;
    }
    store.clear(&execution).await?;
    println!("done; serving for {} s more", serve.as_secs());
    tokio::time::sleep(serve).await;
    Ok(())
}
