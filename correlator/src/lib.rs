//! Correlator: `enriched` topic → (session traces) → `events` topic.
//!
//! Today the stage passes events through unchanged (trace linking comes with the correlator
//! issue), but it already runs the real loop: consumer group, re-keying by partition key,
//! produce with `acks=all`, offsets stored only after the output is acknowledged, dead letters.

use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{PassThrough, StageSpec};
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};

pub const STAGE: &str = "correlator";

/// Correlator configuration (`AA_CORRELATOR__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelatorConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    pub max_in_flight: usize,
    pub ops: OpsConfig,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group: "activity-audit-correlator".into(),
            max_in_flight: 256,
            ops: OpsConfig::on_port(9449),
        }
    }
}

pub async fn run(
    cfg: CorrelatorConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    cfg.kafka.validate()?;
    let bus = pipeline::kafka::Bus::new(&cfg.kafka, "activity-audit-correlator")?;
    let dlq =
        pipeline::deadletter::DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), STAGE);
    let consumer =
        pipeline::kafka::consumer(&cfg.kafka, STAGE, &cfg.group, &[&cfg.topics.enriched])?;
    ready.set(true);
    tracing::info!(input = %cfg.topics.enriched, output = %cfg.topics.events, "correlator started");
    let spec = StageSpec {
        stage: STAGE,
        output_topic: cfg.topics.events.clone(),
        max_in_flight: cfg.max_in_flight.max(1),
    };
    pipeline::stage::run(consumer, bus, dlq, spec, PassThrough, shutdown).await
}
