//! Ingest: the front door of Activity Audit.
//!
//! ```text
//! HTTP POST /v1/{events,k8s-audit,falco,tetragon}, gRPC Ingest/Send
//!        ──auth (token → tenant, cluster)──► parse + validate + stamp + id
//!        ──► group by partition key ──► Kafka `raw` topic (acks=all) ──► 200 / OK only then
//! ```
//! - [`auth`]: bearer tokens from a file, each bound to one tenant and one cluster;
//! - [`sources`] and [`native`]: what producers send, item by item;
//! - [`http`]: routes, body limits, decompression, responses; [`grpc`]: the `Ingest` service;
//! - [`accept`]: what both transports do with parsed items (validate, dead-letter, produce);
//! - [`publish`]: deterministic ids, stamping and the durable hand-off to Kafka.

pub mod accept;
pub mod auth;
pub mod config;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod native;
pub mod publish;
pub mod sources;

pub use config::IngestConfig;

use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use std::net::SocketAddr;

/// Where ingest listens.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// Starts ingest; returns the bound addresses once it listens. Runs until `shutdown`.
pub async fn start(
    cfg: IngestConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<(Bound, tokio::task::JoinHandle<()>)> {
    cfg.validate()?;
    let tokens = auth::Tokens::load(&cfg.tokens_file)?;
    tokens
        .clone()
        .watch(cfg.tokens_file.clone(), shutdown.clone());
    let bus = pipeline::kafka::Bus::new(&cfg.kafka, "activity-audit-ingest")?;
    let state = accept::AppState::new(cfg.clone(), tokens, bus.clone());
    let app = http::router(state.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let grpc_listener = tokio::net::TcpListener::bind(cfg.grpc_listen).await?;
    let bound = Bound {
        http: listener.local_addr()?,
        grpc: grpc_listener.local_addr()?,
    };
    tracing::info!(http = %bound.http, grpc = %bound.grpc, raw_topic = %cfg.topics.raw, "ingest listening");
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
    let stop = shutdown.clone();
    let http_server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let grpc_server = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(grpc::IngestService::server(state))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    let handle = tokio::spawn(async move {
        let _ = tokio::join!(http_server, grpc_server);
        bus.flush(std::time::Duration::from_secs(5));
    });
    Ok((bound, handle))
}
