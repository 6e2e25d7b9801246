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

use crate::auth::{Identity, Tokens, bearer};
use crate::config::IngestConfig;
use crate::error::{ErrorResponse, IngestError};
use crate::metrics::{ACCEPTED, BYTES, DROPPED, PRODUCE_LATENCY, RECEIVED, REJECTED};
use crate::native::Rejected;
use crate::publish::{publish, stamp};
use crate::sources::{Outcome, falco, k8s_audit, tetragon};
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

async fn ingest(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
    source: Source,
) -> Response {
    match handle(&st, &headers, body, source).await {
        Ok(r) => r,
        Err(mut e) => {
            e.retry_after_secs = st.0.cfg.retry_after_secs;
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
    let cfg = &st.0.cfg;
    let who = authenticate(&st.0.tokens, headers)?;
    let labels = [source.as_str(), who.tenant.as_str()];
    let body = read_body(headers, body, cfg.max_body_bytes).await?;
    BYTES.with_label_values(&labels).inc_by(body.len() as u64);
    let span = tracing::debug_span!("request", source = source.as_str(), tenant = %who.tenant, bytes = body.len());
    let _g = span.enter();
    let outcomes = parse(cfg, source, &body)?;
    RECEIVED
        .with_label_values(&labels)
        .inc_by(outcomes.len() as u64);
    let received = now_ns();
    let mut events = Vec::with_capacity(outcomes.len());
    let mut rejected = Vec::new();
    let mut dropped = 0u64;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Activity(mut e, key) => {
                e.normalize();
                match e.validate() {
                    Ok(()) => {
                        stamp(&mut e, &who, source, received, &key);
                        events.push(*e);
                    }
                    Err(v) => rejected.push(Rejected {
                        index,
                        error: v.to_string(),
                    }),
                }
            }
            Outcome::NotActivity => dropped += 1,
            Outcome::Rejected(error) => rejected.push(Rejected { index, error }),
        }
    }
    drop(_g);
    REJECTED
        .with_label_values(&labels)
        .inc_by(rejected.len() as u64);
    DROPPED.with_label_values(&labels).inc_by(dropped);
    let mut dead = Vec::new();
    if !rejected.is_empty() {
        // One dead letter per request: the body as received and every reason.
        let reasons: Vec<String> = rejected
            .iter()
            .map(|r| format!("item {}: {}", r.index, r.error))
            .collect();
        let origin = Origin {
            topic: format!("http:{}", source.as_str()),
            tenant: who.tenant.clone(),
            ..Default::default()
        };
        dead.push(st.0.dlq.record(
            body.to_vec(),
            format!("{}/{}", who.tenant, who.cluster),
            "rejected",
            &reasons.join("; "),
            &origin,
        ));
    }
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
    if events.is_empty() && dropped == 0 && !rejected.is_empty() {
        return Err(ErrorResponse {
            error: IngestError::AllRejected,
            rejected,
            retry_after_secs: cfg.retry_after_secs,
        });
    }
    let body =
        serde_json::json!({ "accepted": events.len(), "dropped": dropped, "rejected": rejected });
    Ok(axum::Json(body).into_response())
}
