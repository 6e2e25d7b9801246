//! Query API: authenticated, tenant-scoped reads of stored activity.
//!
//! Today: `GET /api/v1/activity/entries?from=&to=&types=&limit=` (newest first, duplicates
//! hidden with `FINAL`) and `GET /api/v1/activity/entries/{id}`. The filter language, cursors,
//! histogram, trace, groups and gRPC come with the query API issue.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pipeline::config::OpsConfig;
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use schemas::ActivityType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use store::sql::quote;
use store::{ClickHouse, ClickHouseConfig};

/// Query API configuration (`AA_QUERY__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    pub listen: SocketAddr,
    pub clickhouse: ClickHouseConfig,
    /// Token file: `[[token]] token|sha256 = …, tenant = …`.
    pub tokens_file: PathBuf,
    pub ops: OpsConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9420)),
            clickhouse: ClickHouseConfig::default(),
            tokens_file: PathBuf::from("deploy/local/query-tokens.toml"),
            ops: OpsConfig::on_port(9429),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: Option<String>,
    sha256: Option<String>,
    tenant: String,
}

fn load_tokens(path: &std::path::Path) -> anyhow::Result<HashMap<[u8; 32], String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
    let file: TokenFile = toml::from_str(&text)?;
    let mut map = HashMap::new();
    for e in file.token {
        let key: [u8; 32] = match (e.token, e.sha256) {
            (Some(t), None) => Sha256::digest(t.as_bytes()).into(),
            (None, Some(h)) => hex::decode(h)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("sha256 must be 32 bytes"))?,
            _ => anyhow::bail!("give exactly one of token or sha256"),
        };
        map.insert(key, e.tenant);
    }
    Ok(map)
}

#[derive(Clone)]
struct AppState {
    ch: ClickHouse,
    tokens: Arc<HashMap<[u8; 32], String>>,
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

/// The caller's tenant, or the status and message to answer with.
fn tenant(st: &AppState, headers: &HeaderMap) -> Result<String, (StatusCode, &'static str)> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or((StatusCode::UNAUTHORIZED, "missing bearer token"))?;
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    st.tokens
        .get(&key)
        .cloned()
        .ok_or((StatusCode::UNAUTHORIZED, "unknown token"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    from: Option<i64>,
    to: Option<i64>,
    types: Option<String>,
    limit: Option<u32>,
}

async fn entries(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EntriesQuery>,
) -> Response {
    let tenant = match tenant(&st, &headers) {
        Ok(t) => t,
        Err((status, msg)) => return err(status, msg),
    };
    let limit = q.limit.unwrap_or(25);
    if !(1..=1000).contains(&limit) {
        return err(StatusCode::BAD_REQUEST, "limit must be within 1..=1000");
    }
    let mut conds = vec![format!("tenant = {}", quote(&tenant))];
    if let Some(f) = q.from {
        conds.push(format!("timestamp >= {f}"));
    }
    if let Some(t) = q.to {
        conds.push(format!("timestamp < {t}"));
    }
    if let Some(types) = &q.types {
        let mut list = Vec::new();
        for t in types.split(',') {
            match ActivityType::parse(t.trim()) {
                Some(t) => list.push(quote(t.as_str())),
                None => return err(StatusCode::BAD_REQUEST, format!("unknown type {t:?}")),
            }
        }
        conds.push(format!("type IN ({})", list.join(", ")));
    }
    let sql = format!(
        "SELECT {} FROM events FINAL WHERE {} ORDER BY timestamp DESC, id DESC LIMIT {limit}",
        store::columns::select_as_attributes(),
        conds.join(" AND ")
    );
    match st.ch.query_rows::<schemas::ActivityEvent>(&sql).await {
        Ok(rows) => axum::Json(serde_json::json!({ "data": rows })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "entries query failed");
            err(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

async fn entry(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let tenant = match tenant(&st, &headers) {
        Ok(t) => t,
        Err((status, msg)) => return err(status, msg),
    };
    let sql = format!(
        "SELECT {} FROM events FINAL WHERE tenant = {} AND id = {} LIMIT 1",
        store::columns::select_as_attributes(),
        quote(&tenant),
        quote(&id)
    );
    match st.ch.query_rows::<schemas::ActivityEvent>(&sql).await {
        Ok(mut rows) if !rows.is_empty() => axum::Json(rows.remove(0)).into_response(),
        Ok(_) => err(StatusCode::NOT_FOUND, format!("no entry {id:?}")),
        Err(e) => {
            tracing::error!(error = %e, "entry query failed");
            err(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

/// Serves the API until `shutdown`; returns the bound address.
pub async fn start(
    cfg: QueryConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    cfg.clickhouse.validate()?;
    let tokens = Arc::new(load_tokens(&cfg.tokens_file)?);
    let ch = ClickHouse::new(cfg.clickhouse.clone());
    let app = Router::new()
        .route("/api/v1/activity/entries", get(entries))
        .route("/api/v1/activity/entries/{id}", get(entry))
        .with_state(AppState {
            ch: ch.clone(),
            tokens,
        });
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let bound = listener.local_addr()?;
    ready.set(ch.ping().await);
    tracing::info!(%bound, "query-api listening");
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok((bound, handle))
}
