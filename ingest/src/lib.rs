//! Ingest: the front door of Activity Audit.
//!
//! ```text
//! HTTP POST /v1/events ──auth (token → tenant, cluster)──► decode + validate + stamp + id
//!        ──► group by partition key ──► Kafka `raw` topic (acks=all) ──► 200 only then
//! ```
//! - [`auth`]: bearer tokens from a file, each bound to one tenant and one cluster;
//! - [`native`]: the native `ActivityEvent` format (JSON array or JSON lines), item by item;
//! - [`http`]: routes, body limits, decompression, responses;
//! - [`publish`]: deterministic ids, stamping and the durable hand-off to Kafka.

pub mod auth;
pub mod config;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod metrics;
pub mod native;
pub mod publish;
pub mod sources;

pub use config::IngestConfig;

use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use std::net::SocketAddr;

/// Starts ingest; returns the bound HTTP address once it listens. Runs until `shutdown`.
pub async fn start(
    cfg: IngestConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    cfg.validate()?;
    let tokens = auth::Tokens::load(&cfg.tokens_file)?;
    tokens
        .clone()
        .watch(cfg.tokens_file.clone(), shutdown.clone());
    let bus = pipeline::kafka::Bus::new(&cfg.kafka, "activity-audit-ingest")?;
    let state = http::AppState::new(cfg.clone(), tokens, bus.clone());
    let app = http::router(state);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, raw_topic = %cfg.topics.raw, "ingest listening");
    let probe = {
        let bus = bus.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                let ok = tokio::task::spawn_blocking({
                    let bus = bus.clone();
                    move || bus.ping(std::time::Duration::from_secs(2)).is_ok()
                })
                .await
                .unwrap_or(false);
                ready.set(ok);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }
    };
    tokio::spawn(probe);
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        bus.flush(std::time::Duration::from_secs(5));
    });
    Ok((bound, handle))
}
