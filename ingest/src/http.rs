//! HTTP routes of ingest. Every route authenticates; bodies are size-limited before and after
//! decompression; the answer is 200 only when Kafka acknowledged every accepted event.
//!
//! `POST /v1/events` answers `{"accepted": n, "rejected": [{"index", "error"}]}`; rejected
//! items are also sent to the dead-letter topic. All items rejected: 400. Kafka unavailable:
//! 503 with `Retry-After` (nothing is confirmed; retrying is safe, ids are deterministic).

use crate::auth::{Identity, Tokens, bearer};
use crate::config::IngestConfig;
use crate::error::{ErrorResponse, IngestError};
use crate::metrics::{ACCEPTED, BYTES, PRODUCE_LATENCY, RECEIVED, REJECTED};
use crate::native::{Rejected, decode_event, split_items};
use crate::publish::{publish, stamp};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline::deadletter::{DeadLetters, Origin};
use pipeline::kafka::Bus;
use schemas::Source;
use std::io::Read;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    cfg: IngestConfig,
    tokens: Tokens,
    bus: Bus,
    dlq: DeadLetters,
}

impl AppState {
    pub fn new(cfg: IngestConfig, tokens: Tokens, bus: Bus) -> Self {
        let dlq = DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), "ingest");
        AppState(Arc::new(Inner {
            cfg,
            tokens,
            bus,
            dlq,
        }))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(native_events))
        .with_state(state)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn authenticate(tokens: &Tokens, headers: &HeaderMap) -> Result<Identity, IngestError> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let token = bearer(header).ok_or(IngestError::MissingToken)?;
    tokens.identify(token).ok_or(IngestError::UnknownToken)
}

/// Reads the body with the configured limit, then decompresses it (gzip or zstd) with the
/// same limit on the output.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, IngestError> {
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| IngestError::TooLarge { limit })?;
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let mut out = Vec::new();
    let res = match encoding.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| ("gzip", e)),
        "zstd" => match zstd::stream::read::Decoder::new(&raw[..]) {
            Ok(d) => d
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ("zstd", e)),
            Err(e) => Err(("zstd", e)),
        },
        other => return Err(IngestError::UnsupportedEncoding(other.to_string())),
    };
    if let Err((encoding, e)) = res {
        return Err(IngestError::BadEncoding {
            encoding,
            message: e.to_string(),
        });
    }
    if out.len() > limit {
        return Err(IngestError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

async fn native_events(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle_native(&st, &headers, body).await {
        Ok(r) => r,
        Err(mut e) => {
            e.retry_after_secs = st.0.cfg.retry_after_secs;
            e.into_response()
        }
    }
}

async fn handle_native(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ErrorResponse> {
    let cfg = &st.0.cfg;
    let who = authenticate(&st.0.tokens, headers)?;
    let source = Source::Native;
    let labels = [source.as_str(), who.tenant.as_str()];
    let body = read_body(headers, body, cfg.max_body_bytes).await?;
    BYTES.with_label_values(&labels).inc_by(body.len() as u64);
    let items = split_items(&body)?;
    RECEIVED
        .with_label_values(&labels)
        .inc_by(items.len() as u64);
    let received = now_ns();
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    let mut dead = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let raw: &[u8] = item.as_ref().map(|r| *r).unwrap_or_default();
        match item.and_then(|raw| decode_event(raw, cfg.max_event_bytes)) {
            Ok(mut e) => {
                stamp(&mut e, &who, source, received);
                events.push(e);
            }
            Err(error) => {
                let origin = Origin {
                    tenant: who.tenant.clone(),
                    ..Default::default()
                };
                dead.push(st.0.dlq.record(
                    raw.to_vec(),
                    format!("{}/{}", who.tenant, who.cluster),
                    "rejected",
                    &format!("item {index}: {error}"),
                    &origin,
                ));
                rejected.push(Rejected { index, error });
            }
        }
    }
    REJECTED
        .with_label_values(&labels)
        .inc_by(rejected.len() as u64);
    let started = Instant::now();
    let sent = async {
        publish(&st.0.bus, &cfg.topics.raw, &events).await?;
        if !dead.is_empty() {
            st.0.dlq.send(&dead).await?;
        }
        Ok::<_, pipeline::kafka::ProduceError>(())
    }
    .await;
    PRODUCE_LATENCY
        .with_label_values(&[source.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = sent {
        tracing::warn!(tenant = %who.tenant, error = %e, "kafka unavailable; answering 503");
        return Err(IngestError::Unavailable(e.to_string()).into());
    }
    ACCEPTED
        .with_label_values(&labels)
        .inc_by(events.len() as u64);
    if events.is_empty() {
        return Err(ErrorResponse {
            error: IngestError::AllRejected,
            rejected,
            retry_after_secs: cfg.retry_after_secs,
        });
    }
    let body = serde_json::json!({ "accepted": events.len(), "rejected": rejected });
    Ok(axum::Json(body).into_response())
}
