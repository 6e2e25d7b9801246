//! Enricher: `raw` topic → (Kubernetes asset metadata) → `enriched` topic.
//!
//! Today the stage passes events through unchanged (the metadata joins come with the enricher
//! issue), but it already runs the real loop: consumer group, re-keying by partition, produce
//! with `acks=all`, offsets stored only after the output is acknowledged, dead letters.

use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{PassThrough, StageConfig};
use serde::{Deserialize, Serialize};

pub const STAGE: &str = "enricher";

/// Enricher configuration (`AA_ENRICHER__…` environment overrides): a [`StageConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnricherConfig(pub StageConfig);

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig(StageConfig::named(STAGE, 9439))
    }
}

pub async fn run(cfg: EnricherConfig, ready: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    let c = &cfg.0;
    pipeline::stage::serve(
        c,
        STAGE,
        &c.topics.raw,
        &c.topics.enriched,
        PassThrough,
        ready,
        shutdown,
    )
    .await
}
