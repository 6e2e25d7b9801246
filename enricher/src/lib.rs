//! Enricher: `raw` topic → (Kubernetes asset metadata) → `enriched` topic.
//!
//! Today the stage passes events through unchanged (the metadata joins come with the enricher
//! issue), but it already runs the real loop: consumer group, re-keying by partition key,
//! produce with `acks=all`, offsets stored only after the output is acknowledged, dead letters.

use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{PassThrough, StageSpec};
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};

pub const STAGE: &str = "enricher";

/// Enricher configuration (`AA_ENRICHER__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    pub max_in_flight: usize,
    pub ops: OpsConfig,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group: "activity-audit-enricher".into(),
            max_in_flight: 256,
            ops: OpsConfig::on_port(9439),
        }
    }
}

pub async fn run(cfg: EnricherConfig, ready: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.kafka.validate()?;
    let bus = pipeline::kafka::Bus::new(&cfg.kafka, "activity-audit-enricher")?;
    let dlq =
        pipeline::deadletter::DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), STAGE);
    let consumer = pipeline::kafka::consumer(&cfg.kafka, STAGE, &cfg.group, &[&cfg.topics.raw])?;
    ready.set(true);
    tracing::info!(input = %cfg.topics.raw, output = %cfg.topics.enriched, "enricher started");
    let spec = StageSpec {
        stage: STAGE,
        output_topic: cfg.topics.enriched.clone(),
        max_in_flight: cfg.max_in_flight.max(1),
    };
    pipeline::stage::run(consumer, bus, dlq, spec, PassThrough, shutdown).await
}
