//! Ops endpoints: `/healthz` (the process is alive), `/readyz` (its dependencies answered and it
//! is doing work) and `/metrics` (Prometheus text). Meant for a loopback or cluster-internal
//! port; they expose no event data.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::shutdown::Shutdown;

/// Readiness flag a service flips once its dependencies answered.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Routes for the ops endpoints, to be served alone or merged into a service's router.
pub fn router(ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ready)
}

async fn readyz(State(ready): State<Readiness>) -> (StatusCode, &'static str) {
    if ready.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics() -> (StatusCode, [(&'static str, &'static str); 1], Vec<u8>) {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        buf,
    )
}

/// Serves the ops endpoints on `addr` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(ready))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    tracing::info!(%bound, "ops endpoints listening");
    Ok(bound)
}
