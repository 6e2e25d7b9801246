//! Query API: authenticated, tenant-scoped reads of stored activity.
//!
//! Today: `GET /api/v1/activity/entries?from=&to=&types=&limit=` (newest first, duplicates
//! hidden with `FINAL`), `GET /api/v1/activity/entries/{id}` and
//! `GET /api/v1/activity/entries/{id}/trace` (the session the entry belongs to). The filter
//! language, cursors, histogram, groups and gRPC come with the query API issue.

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

/// Events of a trace are looked for this far around the record's start and end (the record's
/// end is updated at most every 30 s of event time, late agents lag a little more), ns.
const TRACE_MARGIN_NS: i64 = 5 * 60 * 1_000_000_000;
/// Most entries one trace answer carries.
const TRACE_MAX_ENTRIES: usize = 10_000;

/// One entry of a trace, with the entry of the process that started it (the process tree).
#[derive(Serialize)]
struct TraceEntry {
    #[serde(flatten)]
    entry: schemas::ActivityEvent,
    #[serde(rename = "parentEntryId", skip_serializing_if = "Option::is_none")]
    parent_entry_id: Option<String>,
}

async fn select_events(
    st: &AppState,
    conds: &str,
    order: &str,
) -> Result<Vec<schemas::ActivityEvent>, store::StoreError> {
    st.ch
        .query_rows::<schemas::ActivityEvent>(&format!(
            "SELECT {} FROM events FINAL WHERE {conds} {order}",
            store::columns::select_as_attributes()
        ))
        .await
}

/// The whole session of an entry: the trace record (origin: who, from where, where), then
/// every entry of the session in time order with its parent in the process tree, and the
/// entries that may belong to it but could not be told apart from another session.
async fn trace(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let tenant = match tenant(&st, &headers) {
        Ok(t) => t,
        Err((status, msg)) => return err(status, msg),
    };
    let unavailable = |e: store::StoreError| {
        tracing::error!(error = %e, "trace query failed");
        err(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
    };
    let t = quote(&tenant);
    let entry = match select_events(
        &st,
        &format!("tenant = {t} AND id = {}", quote(&id)),
        "LIMIT 1",
    )
    .await
    {
        Ok(mut rows) if !rows.is_empty() => rows.remove(0),
        Ok(_) => return err(StatusCode::NOT_FOUND, format!("no entry {id:?}")),
        Err(e) => return unavailable(e),
    };
    if entry.trace_id.is_empty() {
        if entry.trace_candidates.is_empty() {
            return err(
                StatusCode::NOT_FOUND,
                format!("entry {id:?} belongs to no session"),
            );
        }
        return (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({
                "error": format!("entry {id:?} may belong to several sessions; ask for one of the candidates"),
                "candidates": entry.trace_candidates,
                "reason": entry.trace_link,
            })),
        )
            .into_response();
    }
    let tid = quote(&entry.trace_id);
    let record = match st
        .ch
        .query_rows::<schemas::TraceRecord>(&format!(
            "SELECT * FROM traces FINAL WHERE tenant = {t} AND traceId = {tid} LIMIT 1"
        ))
        .await
    {
        Ok(mut r) if !r.is_empty() => r.remove(0),
        Ok(_) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("trace {} not stored yet", entry.trace_id),
            );
        }
        Err(e) => return unavailable(e),
    };
    let (from, to) = (
        record.start.min(entry.timestamp) - TRACE_MARGIN_NS,
        record.end.max(entry.timestamp) + TRACE_MARGIN_NS,
    );
    let range = format!("tenant = {t} AND timestamp >= {from} AND timestamp <= {to}");
    let order = format!("ORDER BY timestamp, id LIMIT {}", TRACE_MAX_ENTRIES + 1);
    let (in_trace, candidate) = (
        format!("{range} AND trace_id = {tid}"),
        format!("{range} AND has(trace_candidates, {tid})"),
    );
    let (members, ambiguous) = match tokio::try_join!(
        select_events(&st, &in_trace, &order),
        select_events(&st, &candidate, &order),
    ) {
        Ok(x) => x,
        Err(e) => return unavailable(e),
    };
    let truncated = members.len() > TRACE_MAX_ENTRIES;
    // The process tree: an entry's parent is the command entry of its parent process.
    let mut command_of: HashMap<&str, &str> = HashMap::new();
    for e in &members {
        if e.kind == ActivityType::Command && !e.exec_id.is_empty() {
            command_of
                .entry(e.exec_id.as_str())
                .or_insert(e.id.as_str());
        }
    }
    let parent = |e: &schemas::ActivityEvent| -> Option<String> {
        let key = if e.kind == ActivityType::Command {
            &e.parent_exec_id
        } else {
            &e.exec_id
        };
        command_of.get(key.as_str()).map(|s| s.to_string())
    };
    let entries: Vec<TraceEntry> = members
        .iter()
        .take(TRACE_MAX_ENTRIES)
        .map(|e| TraceEntry {
            parent_entry_id: parent(e).filter(|p| *p != e.id),
            entry: e.clone(),
        })
        .collect();
    axum::Json(serde_json::json!({
        "trace": record,
        "entries": entries,
        "ambiguous": ambiguous,
        "truncated": truncated,
    }))
    .into_response()
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
        .route("/api/v1/activity/entries/{id}/trace", get(trace))
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
