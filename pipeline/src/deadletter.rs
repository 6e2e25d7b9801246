//! The dead-letter topic: anything a stage cannot process goes there with the reason, the
//! stage and where it came from (headers [`schemas::topics::dlq_headers`]), instead of being
//! retried forever or dropped. Producing a dead letter is acknowledged like any output before
//! the input offset is stored.

use crate::kafka::{Bus, Outgoing, ProduceError};
use crate::metrics::DEAD_LETTERED;
use schemas::topics::dlq_headers as h;

#[derive(Debug, Clone)]
pub struct DeadLetters {
    bus: Bus,
    topic: String,
    stage: &'static str,
}

/// Where a dead letter came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub tenant: String,
}

impl DeadLetters {
    pub fn new(bus: Bus, topic: String, stage: &'static str) -> Self {
        DeadLetters { bus, topic, stage }
    }

    /// Builds the dead-letter record for `payload`; `reason_kind` is a short metric label.
    pub fn record(
        &self,
        payload: Vec<u8>,
        key: String,
        reason_kind: &'static str,
        reason: &str,
        origin: &Origin,
    ) -> Outgoing {
        DEAD_LETTERED
            .with_label_values(&[self.stage, reason_kind])
            .inc();
        let mut reason = reason.to_string();
        reason.truncate(4096);
        Outgoing {
            topic: self.topic.clone(),
            partition: None,
            key,
            payload,
            headers: vec![
                (h::STAGE, self.stage.to_string()),
                (h::REASON, reason),
                (h::SOURCE_TOPIC, origin.topic.clone()),
                (h::SOURCE_PARTITION, origin.partition.to_string()),
                (h::SOURCE_OFFSET, origin.offset.to_string()),
                (h::TENANT, origin.tenant.clone()),
            ],
        }
    }

    pub async fn send(&self, records: &[Outgoing]) -> Result<(), ProduceError> {
        self.bus.send_all(records).await
    }
}
