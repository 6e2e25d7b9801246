//! HTTP routes of ingest. Every route authenticates; bodies are size-limited before and after
//! decompression; the answer is 200 only when Kafka acknowledged every accepted event.
//!
//! | route | body |
//! |---|---|
//! | `POST /v1/events` | native `ActivityEvent`s (array, JSON lines or one object) |
//! | `POST /v1/k8s-audit` | the API server's audit webhook (`EventList`, `Event`, AKS, GKE) |
//! | `POST /v1/falco` | Falco `http_output` alerts |
//! | `POST /v1/tetragon` | Tetragon JSON export lines |
//!
//! Answer: `{"accepted": n, "dropped": n, "rejected": [{"index", "error"}]}`. `dropped` counts
//! valid items that are not activity. Rejected items are also sent to the dead-letter topic
//! with the reasons. Nothing accepted and something rejected: 400. Kafka unavailable: 503 with
//! `Retry-After` (nothing is confirmed; retrying is safe, ids are deterministic).

use crate::accept::{AppState, accept};
use crate::config::IngestConfig;
use crate::error::{ErrorResponse, IngestError};
use crate::metrics::BYTES;
use crate::sources::{Outcome, falco, k8s_audit, tetragon};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use schemas::Source;
use std::io::Read;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/events",
            post(|s, h, b| ingest(s, h, b, Source::Native)),
        )
        .route(
            "/v1/k8s-audit",
            post(|s, h, b| ingest(s, h, b, Source::K8sAudit)),
        )
        .route("/v1/falco", post(|s, h, b| ingest(s, h, b, Source::Falco)))
        .route(
            "/v1/tetragon",
            post(|s, h, b| ingest(s, h, b, Source::Tetragon)),
        )
        .with_state(state)
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

async fn ingest(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
    source: Source,
) -> Response {
    match handle(&st, &headers, body, source).await {
        Ok(r) => r,
        Err(mut e) => {
            e.retry_after_secs = st.config().retry_after_secs;
            e.into_response()
        }
    }
}

fn parse(cfg: &IngestConfig, source: Source, body: &[u8]) -> Result<Vec<Outcome>, IngestError> {
    let interactive_only = cfg.activity.interactive_only;
    match source {
        Source::Native => crate::native::parse(body, cfg.max_event_bytes),
        Source::K8sAudit => k8s_audit::parse(body),
        Source::Falco => falco::parse(body, interactive_only),
        Source::Tetragon => tetragon::parse(body, interactive_only),
    }
}

async fn handle(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    source: Source,
) -> Result<Response, ErrorResponse> {
    let cfg = st.config();
    let who = st.authenticate(headers.get("authorization").and_then(|v| v.to_str().ok()))?;
    let labels = [source.as_str(), who.tenant.as_str()];
    let body = read_body(headers, body, cfg.max_body_bytes).await?;
    BYTES.with_label_values(&labels).inc_by(body.len() as u64);
    let span = tracing::debug_span!("request", source = source.as_str(), tenant = %who.tenant, bytes = body.len());
    let _g = span.enter();
    let outcomes = parse(cfg, source, &body)?;
    drop(_g);
    let done = accept(st, &who, source, "http", outcomes, &body).await?;
    Ok(axum::Json(done).into_response())
}
