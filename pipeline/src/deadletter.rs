//! The dead-letter topic: anything a stage cannot process goes there with the reason, the
//! stage and where it came from (headers [`schemas::topics::dlq_headers`]), instead of being
//! retried forever or dropped. Producing a dead letter is acknowledged like any output before
//! the input offset is stored.

use crate::config::KafkaConfig;
use crate::kafka::{Bus, Outgoing, ProduceError};
use crate::metrics::DEAD_LETTERED;
use schemas::topics::dlq_headers as h;
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone)]
pub struct DeadLetters {
    bus: Arc<OnceLock<Bus>>,
    /// Set for [`DeadLetters::lazy`]: the producer is created on the first dead letter.
    kafka: Option<KafkaConfig>,
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

impl Origin {
    /// Where a consumed message came from (no tenant: a message may hold several).
    pub fn of(msg: &impl rdkafka::Message) -> Self {
        Origin {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
            tenant: String::new(),
        }
    }
}

impl DeadLetters {
    pub fn new(bus: Bus, topic: String, stage: &'static str) -> Self {
        DeadLetters {
            bus: Arc::new(OnceLock::from(bus)),
            kafka: None,
            topic,
            stage,
        }
    }

    /// Dead letters for a stage that has no producer of its own (the writer): the producer is
    /// created on first use, so an idle one costs nothing.
    pub fn lazy(kafka: &KafkaConfig, topic: String, stage: &'static str) -> Self {
        DeadLetters {
            bus: Arc::new(OnceLock::new()),
            kafka: Some(kafka.clone()),
            topic,
            stage,
        }
    }

    fn bus(&self) -> Result<Bus, ProduceError> {
        if let Some(b) = self.bus.get() {
            return Ok(b.clone());
        }
        let cfg = self
            .kafka
            .as_ref()
            .expect("a DeadLetters without a bus is lazy");
        let bus = Bus::new(cfg, &format!("activity-audit-{}-dlq", self.stage))
            .map_err(ProduceError::NotAcknowledged)?;
        Ok(self.bus.get_or_init(|| bus).clone())
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
        self.bus()?.send_all(records).await
    }
}
