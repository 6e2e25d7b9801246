//! Correlator: `enriched` topic → (session traces) → `events` topic.
//!
//! Today the stage passes events through unchanged (trace linking comes with the correlator
//! issue), but it already runs the real loop: consumer group, re-keying by partition, produce
//! with `acks=all`, offsets stored only after the output is acknowledged, dead letters.

use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use pipeline::stage::{PassThrough, StageConfig};
use serde::{Deserialize, Serialize};

pub const STAGE: &str = "correlator";

/// Correlator configuration (`AA_CORRELATOR__…` environment overrides): a [`StageConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CorrelatorConfig(pub StageConfig);

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig(StageConfig::named(STAGE, 9449))
    }
}

pub async fn run(
    cfg: CorrelatorConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let c = &cfg.0;
    pipeline::stage::serve(
        c,
        STAGE,
        &c.topics.enriched,
        &c.topics.events,
        PassThrough,
        ready,
        shutdown,
    )
    .await
}
