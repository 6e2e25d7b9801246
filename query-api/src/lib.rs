//! Query API: authenticated, tenant- and team-scoped reads of stored activity, over HTTP JSON
//! (9420, [`http`]) and gRPC (9421, [`grpc`]).
//!
//! A request flows: bearer token → [`auth::Principal`] (tenant, team scope, data sources) →
//! parameters parsed into a [`query::Selection`] (the filter language of
//! [`schemas::filter`]) → [`query`] builds SQL with the principal's conditions and-ed in, the
//! filter compiled by [`store::filter`] → ClickHouse → JSON or protobuf.

pub mod auth;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod query;

pub use schemas::grpc::proto;

use pipeline::config::OpsConfig;
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use store::{ClickHouse, ClickHouseConfig};

/// Query API configuration (`AA_QUERY__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// HTTP JSON API.
    pub listen: SocketAddr,
    /// gRPC API.
    pub grpc_listen: SocketAddr,
    pub clickhouse: ClickHouseConfig,
    /// Token file: `[[token]]` with `token` or `sha256`, `tenant`, optional `team`, `scope`
    /// (a filter) and `permissions` (default: all four data sources).
    pub tokens_file: PathBuf,
    /// JWT verification for tokens issued by the install's identity provider.
    pub jwt: Option<auth::JwtConfig>,
    /// How often live streams look for new entries, ms.
    pub stream_poll_ms: u64,
    pub ops: OpsConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9420)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 9421)),
            clickhouse: ClickHouseConfig::default(),
            tokens_file: PathBuf::from("deploy/local/query-tokens.toml"),
            jwt: None,
            stream_poll_ms: 1000,
            ops: OpsConfig::on_port(9429),
        }
    }
}

/// Where the API listens once started.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
}

/// Serves both APIs until `shutdown`; returns the bound addresses and a handle that ends
/// when both servers stopped.
pub async fn start(
    cfg: QueryConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<(Bound, tokio::task::JoinHandle<()>)> {
    cfg.clickhouse.validate()?;
    let ch = ClickHouse::new(cfg.clickhouse.clone());
    serve(cfg, ch, ready, shutdown).await
}

/// [`start`] with a given ClickHouse client (benchmarks log the statements it runs).
pub async fn serve(
    cfg: QueryConfig,
    ch: ClickHouse,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<(Bound, tokio::task::JoinHandle<()>)> {
    if !(10..=60_000).contains(&cfg.stream_poll_ms) {
        anyhow::bail!("stream_poll_ms must be within 10..=60000");
    }
    let auth = Arc::new(auth::Authenticator::load(
        &cfg.tokens_file,
        cfg.jwt.as_ref(),
    )?);
    let state = http::AppState {
        ch: ch.clone(),
        auth,
        shutdown: shutdown.clone(),
        stream_poll: Duration::from_millis(cfg.stream_poll_ms),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let grpc_listener = tokio::net::TcpListener::bind(cfg.grpc_listen).await?;
    let bound = Bound {
        http: listener.local_addr()?,
        grpc: grpc_listener.local_addr()?,
    };
    ready.set(ch.ping().await);
    tracing::info!(http = %bound.http, grpc = %bound.grpc, "query-api listening");
    let app = http::router(state.clone());
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
        let svc = proto::query_server::QueryServer::new(grpc::QueryService { state });
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    let handle = tokio::spawn(async move {
        let _ = tokio::join!(http_server, grpc_server);
    });
    Ok((bound, handle))
}
