//! What every transport (HTTP, gRPC) does with a request's parsed items: stamp the caller's
//! identity, validate, dead-letter the rejected ones, produce the accepted ones and answer
//! only once Kafka acknowledged all of them.

use crate::auth::{Identity, Tokens, bearer};
use crate::config::IngestConfig;
use crate::error::{ErrorResponse, IngestError};
use crate::metrics::{ACCEPTED, DROPPED, PRODUCE_LATENCY, RECEIVED, REJECTED};
use crate::native::Rejected;
use crate::publish::{publish, stamp};
use crate::sources::Outcome;
use pipeline::deadletter::{DeadLetters, Origin};
use pipeline::kafka::Bus;
use schemas::Source;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The service's shared state: config, tokens, the producer and the dead-letter sender.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) cfg: IngestConfig,
    pub(crate) tokens: Tokens,
    pub(crate) bus: Bus,
    pub(crate) dlq: DeadLetters,
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

    pub fn config(&self) -> &IngestConfig {
        &self.0.cfg
    }

    /// The caller of an `Authorization` header value (`Bearer <token>`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, IngestError> {
        let token = bearer(authorization).ok_or(IngestError::MissingToken)?;
        self.0
            .tokens
            .identify(token)
            .ok_or(IngestError::UnknownToken)
    }
}

/// The answer to a request that was (at least partly) accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Events Kafka acknowledged.
    pub accepted: usize,
    /// Valid items that are not activity.
    pub dropped: u64,
    /// Items that were not accepted, and why (also on the dead-letter topic).
    pub rejected: Vec<Rejected>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Stamps, validates and durably hands off a request's `outcomes`, which came over `via`
/// (`http`, `grpc`). `body` is the request as received: it goes to the dead-letter topic with every reason when an item is rejected.
/// Nothing accepted and something rejected is an error (`AllRejected`, with the reasons);
/// Kafka not acknowledging is `Unavailable` (nothing of the request is confirmed).
pub async fn accept(
    st: &AppState,
    who: &Identity,
    source: Source,
    via: &str,
    outcomes: Vec<Outcome>,
    body: &[u8],
) -> Result<Accepted, ErrorResponse> {
    let cfg = &st.0.cfg;
    let labels = [source.as_str(), who.tenant.as_str()];
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
                        stamp(&mut e, who, source, received, &key);
                        // Boxed as parsed: an event is ~1.3 KB, moving it costs.
                        events.push(e);
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
            topic: format!("{via}:{}", source.as_str()),
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
        return Err(ErrorResponse {
            error: IngestError::Unavailable(e.to_string()),
            rejected: Vec::new(),
            retry_after_secs: cfg.retry_after_secs,
        });
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
    Ok(Accepted {
        accepted: events.len(),
        dropped,
        rejected,
    })
}
