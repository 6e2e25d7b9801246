//! Kafka clients with the delivery guarantees every stage relies on.
//!
//! Producer: `acks=all`, idempotent, so an acknowledged message is on every in-sync replica
//! and a librdkafka retry never duplicates it. Consumer: a classic consumer group with
//! `enable.auto.offset.store=false`: librdkafka commits (every second, on rebalance and on
//! close) only offsets we stored, and we store an offset only after the next stage
//! acknowledged the message ([`Acks`] keeps that in order per partition).

use crate::config::KafkaConfig;
use crate::metrics::CONSUMER_LAG;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A record to produce: topic, key, payload and headers.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub topic: String,
    /// Explicit partition (batches are routed by [`schemas::topics::partition_for`]); `None`
    /// lets the producer hash the key.
    pub partition: Option<i32>,
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Why producing failed; all of these are retryable by the caller (ingest answers 503).
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka producer queue is full")]
    QueueFull,
    #[error("kafka did not acknowledge: {0}")]
    NotAcknowledged(KafkaError),
}

/// The delivery reports one [`Bus::send_all`] awaits: how many are still to come, the first
/// error, and a wake-up once the last one came. One per call, shared by its records (a
/// reference count each), so a delivery costs a decrement, not a channel and a task wake-up.
#[derive(Debug)]
struct Deliveries {
    left: AtomicUsize,
    error: Mutex<Option<KafkaError>>,
    done: tokio::sync::Notify,
}

impl Deliveries {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Deliveries {
            left: AtomicUsize::new(n),
            error: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        })
    }

    /// Until every record was reported on; the first error if any was not acknowledged.
    async fn acknowledged(&self) -> Result<(), KafkaError> {
        while self.left.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Counts delivery reports into the [`Deliveries`] of their `send_all` call. librdkafka
/// reports every message exactly once: acknowledged, failed, or purged when the producer is
/// dropped (so a waiting call never hangs).
struct BusContext;

impl ClientContext for BusContext {}

impl ProducerContext for BusContext {
    type DeliveryOpaque = Arc<Deliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, deliveries: Arc<Deliveries>) {
        if let Err((e, _)) = result {
            let mut first = deliveries.error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.clone());
        }
        if deliveries.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            deliveries.done.notify_one();
        }
    }
}

/// Idempotent `acks=all` producer.
#[derive(Clone)]
pub struct Bus {
    producer: Arc<ThreadedProducer<BusContext>>,
    timeout: Duration,
    partitions: Arc<Mutex<HashMap<String, i32>>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A librdkafka config: the bootstrap servers, then `ours`, then the user's `options`, which
/// win over ours (TLS, SASL, tuning).
fn client_config(cfg: &KafkaConfig, ours: &[(&str, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in ours {
        c.set(*k, v);
    }
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    c
}

impl Bus {
    pub fn new(cfg: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        let c = client_config(
            cfg,
            &[
                ("client.id", client_id.to_string()),
                ("acks", "all".into()),
                ("enable.idempotence", cfg.idempotence.to_string()),
                ("linger.ms", cfg.linger_ms.to_string()),
                ("message.timeout.ms", cfg.produce_timeout_ms.to_string()),
                ("queue.buffering.max.kbytes", "262144".into()),
                ("message.max.bytes", "1048576".into()),
            ],
        );
        Ok(Bus {
            producer: Arc::new(c.create_with_context(BusContext)?),
            timeout: Duration::from_millis(cfg.produce_timeout_ms),
            partitions: Arc::default(),
        })
    }

    /// Produces `records` until the broker acknowledges all of them, retrying with backoff;
    /// `None` if `shutdown` came first (the caller then commits nothing past them).
    pub async fn send_until_acked(
        &self,
        records: &[Outgoing],
        shutdown: &crate::shutdown::Shutdown,
    ) -> Option<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.send_all(records).await {
                Ok(()) => return Some(()),
                Err(e) => {
                    tracing::warn!(error = %e, "produce failed, retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Partition count of `topic` (from broker metadata, cached).
    pub async fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        if let Some(n) = self.partitions.lock().unwrap().get(topic) {
            return Ok(*n);
        }
        let producer = self.producer.clone();
        let t = topic.to_string();
        let timeout = self.timeout.min(Duration::from_secs(10));
        let n = tokio::task::spawn_blocking(move || {
            let md = producer.client().fetch_metadata(Some(&t), timeout)?;
            let n = md
                .topics()
                .iter()
                .find(|m| m.name() == t)
                .map(|m| m.partitions().len() as i32)
                .unwrap_or(0);
            Ok::<_, KafkaError>(n)
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        if n == 0 {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        self.partitions.lock().unwrap().insert(topic.to_string(), n);
        Ok(n)
    }

    /// Enqueues all records, then waits until the broker acknowledged every one of them.
    /// On error some records may have been written: callers rely on deterministic event ids,
    /// so a retry is deduplicated downstream.
    pub async fn send_all(&self, records: &[Outgoing]) -> Result<(), ProduceError> {
        let deliveries = Deliveries::new(records.len());
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len() + 1);
            // Event batches unless the record says otherwise (export records are JSON).
            if !r.headers.iter().any(|(k, _)| *k == "content-type") {
                headers = headers.insert(Header {
                    key: "content-type",
                    value: Some(schemas::batch::CONTENT_TYPE),
                });
            }
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_str()),
                });
            }
            let mut record = BaseRecord::with_opaque_to(&r.topic, deliveries.clone())
                .key(&r.key)
                .payload(&r.payload)
                .headers(headers);
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            let mut deadline = None;
            while let Err((e, rec)) = self.producer.send(record) {
                if e != KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                    return Err(ProduceError::NotAcknowledged(e));
                }
                let deadline =
                    *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.timeout);
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProduceError::QueueFull);
                }
                record = rec;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        deliveries
            .acknowledged()
            .await
            .map_err(ProduceError::NotAcknowledged)
    }

    /// Waits for queued messages to be delivered (shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }

    /// Asks the broker for metadata: used by readiness checks.
    pub fn ping(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer
            .client()
            .fetch_metadata(None, timeout)
            .map(|_| ())
    }
}

/// Consumer context: logs rebalances and exports consumer lag from librdkafka statistics.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub stage: &'static str,
}

impl ClientContext for StageContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    CONSUMER_LAG
                        .with_label_values(&[self.stage, topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Revoke(tpl) => {
                tracing::info!(
                    stage = self.stage,
                    partitions = tpl.count(),
                    "partitions revoked"
                )
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(
                    stage = self.stage,
                    partitions = tpl.count(),
                    "partitions assigned"
                )
            }
            Rebalance::Error(e) => {
                tracing::warn!(stage = self.stage, error = %e, "rebalance error")
            }
        }
    }
}

pub type StageConsumer = StreamConsumer<StageContext>;

/// A consumer-group member reading `topics` from the earliest uncommitted offset.
pub fn consumer(
    cfg: &KafkaConfig,
    stage: &'static str,
    group: &str,
    topics: &[&str],
) -> Result<StageConsumer, KafkaError> {
    let mut ours = vec![
        ("group.id", group.to_string()),
        ("client.id", format!("activity-audit-{stage}")),
        ("enable.auto.commit", "true".into()),
        ("auto.commit.interval.ms", "1000".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("enable.partition.eof", "false".into()),
        // The broker may answer slowly under load: be patient before declaring a member dead,
        // and keep fetches small enough to answer quickly.
        ("session.timeout.ms", cfg.session_timeout_ms.to_string()),
        (
            "heartbeat.interval.ms",
            (cfg.session_timeout_ms / 10).clamp(100, 3000).to_string(),
        ),
        ("max.poll.interval.ms", "120000".into()),
        ("fetch.max.bytes", "16777216".into()),
        ("max.partition.fetch.bytes", "4194304".into()),
        ("statistics.interval.ms", "5000".into()),
    ];
    if !cfg.instance_id.is_empty() {
        ours.push(("group.instance.id", cfg.instance_id.clone()));
    }
    let c = client_config(cfg, &ours);
    let consumer: StageConsumer = c.create_with_context(StageContext { stage })?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// Reads the last messages of one partition without joining a group (state restore).
pub struct TailReader {
    consumer: rdkafka::consumer::BaseConsumer,
}

/// A message read by [`TailReader`]: offset, key, headers and payload.
#[derive(Debug, Clone)]
pub struct TailMessage {
    pub offset: i64,
    pub key: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl TailReader {
    pub fn new(cfg: &KafkaConfig, client_id: &str) -> Result<Self, KafkaError> {
        let c = client_config(
            cfg,
            &[
                ("client.id", client_id.to_string()),
                // Required by librdkafka, never joined (partitions are assigned, not subscribed).
                ("group.id", format!("{client_id}-reader")),
                ("enable.auto.commit", "false".into()),
                ("enable.partition.eof", "true".into()),
                ("fetch.max.bytes", "52428800".into()),
                ("max.partition.fetch.bytes", "52428800".into()),
            ],
        );
        Ok(TailReader {
            consumer: c.create()?,
        })
    }

    /// `(low, high)` watermarks of a partition (high: the next offset to be written).
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
    }

    /// The messages at offsets `from..to` of a partition (blocking; call from a blocking task).
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<TailMessage>, KafkaError> {
        use rdkafka::Message;
        use rdkafka::message::Headers;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        self.consumer.assign(&tpl)?;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.len() < (to - from).max(0) as usize {
            if std::time::Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            match self.consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    if m.offset() >= to {
                        break;
                    }
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(TailMessage {
                        offset: m.offset(),
                        key: m.key().unwrap_or_default().to_vec(),
                        headers,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        self.consumer.unassign()?;
        Ok(out)
    }
}

/// Offsets that are safe to commit: the next offset after the last message, per partition,
/// whose output the next stage acknowledged. Callers must record acknowledgements in
/// consumption order (stages complete their work in order).
#[derive(Debug, Default)]
pub struct Acks {
    next: BTreeMap<(String, i32), i64>,
}

impl Acks {
    pub fn ack(&mut self, topic: &str, partition: i32, offset: i64) {
        let e = self
            .next
            .entry((topic.to_string(), partition))
            .or_insert(offset + 1);
        *e = (*e).max(offset + 1);
    }

    /// Stores the acknowledged offsets in the consumer (committed by librdkafka within a
    /// second, on rebalance and on close) and forgets them.
    pub fn store(&mut self, consumer: &StageConsumer) {
        if self.next.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.next {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            // A partition revoked meanwhile: its new owner re-reads from the last commit, and
            // deterministic ids make that replay invisible.
            tracing::debug!(error = %e, "could not store offsets (partition revoked?)");
        }
        self.next.clear();
    }
}

/// Commits stored offsets synchronously (shutdown).
pub fn commit_now(consumer: &StageConsumer) {
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::debug!(error = %e, "final commit");
    }
}

/// Creates topics that do not exist yet (idempotent). Production installs create topics with
/// their own replication settings; this serves the local stack and tests.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    let settings: Vec<(&str, TopicSpec)> = topics
        .iter()
        .map(|t| {
            (
                *t,
                TopicSpec {
                    partitions,
                    replication: 1,
                    configs: BTreeMap::new(),
                },
            )
        })
        .collect();
    create_topics(cfg, &settings).await
}

/// How one topic is created: partitions, replication factor and topic configs.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
    pub configs: BTreeMap<String, String>,
}

/// Production settings of Activity Audit's topics (`[topic_setup]` in the writer's config,
/// applied by `activity-audit-writer --setup`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSetup {
    /// Partitions of every topic (they must be equal: a pod's events keep their partition
    /// number from stage to stage). At least the most replicas any stage scales to.
    pub partitions: i32,
    pub replication: i32,
    pub min_insync_replicas: i32,
    /// Retention of the event and trace topics (time to replay after an incident).
    pub retention_hours: u64,
    /// Retention of the dead-letter topic.
    pub deadletter_retention_hours: u64,
}

impl Default for TopicSetup {
    fn default() -> Self {
        TopicSetup {
            partitions: 24,
            replication: 3,
            min_insync_replicas: 2,
            retention_hours: 7 * 24,
            deadletter_retention_hours: 30 * 24,
        }
    }
}

impl TopicSetup {
    /// A topic with these partitions, replication and `min.insync.replicas`, kept
    /// `retention_hours`.
    pub fn topic_spec(&self, retention_hours: u64) -> TopicSpec {
        let mut configs = BTreeMap::new();
        configs.insert(
            "min.insync.replicas".to_string(),
            self.min_insync_replicas.to_string(),
        );
        configs.insert("compression.type".to_string(), "producer".to_string());
        configs.insert(
            "retention.ms".to_string(),
            (retention_hours * 3_600_000).to_string(),
        );
        TopicSpec {
            partitions: self.partitions,
            replication: self.replication,
            configs,
        }
    }

    /// The spec of each topic of `topics`: events and traces kept `retention_hours`, the
    /// correlator's snapshots compacted (only the latest matters), dead letters kept longer.
    pub fn specs(&self, topics: &schemas::topics::Topics) -> Vec<(String, TopicSpec)> {
        let mut out = Vec::new();
        for t in [
            &topics.raw,
            &topics.enriched,
            &topics.events,
            &topics.traces,
        ] {
            out.push((t.clone(), self.topic_spec(self.retention_hours)));
        }
        let mut state = self.topic_spec(24);
        state
            .configs
            .insert("cleanup.policy".into(), "compact,delete".into());
        out.push((topics.correlator_state.clone(), state));
        out.push((
            topics.deadletter.clone(),
            self.topic_spec(self.deadletter_retention_hours),
        ));
        out
    }
}

/// Creates `topics` as specified; existing topics are left as they are.
pub async fn create_topics<S: AsRef<str>>(
    cfg: &KafkaConfig,
    topics: &[(S, TopicSpec)],
) -> Result<(), KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client_config(cfg, &[]).create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(t, spec)| {
            spec.configs.iter().fold(
                NewTopic::new(
                    t.as_ref(),
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication),
                ),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(topic = t, ?code, "creating topic failed"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn production_topic_settings() {
        let topics = schemas::topics::Topics::with_prefix("p");
        let specs = super::TopicSetup::default().specs(&topics);
        assert_eq!(specs.len(), topics.all().len(), "every topic");
        for (t, s) in &specs {
            assert_eq!((s.partitions, s.replication), (24, 3), "{t}");
            assert_eq!(s.configs["min.insync.replicas"], "2");
        }
        let get = |t: &str| &specs.iter().find(|(n, _)| n == t).unwrap().1;
        assert_eq!(get(&topics.events).configs["retention.ms"], "604800000");
        assert_eq!(
            get(&topics.correlator_state).configs["cleanup.policy"],
            "compact,delete"
        );
        assert_eq!(
            get(&topics.deadletter).configs["retention.ms"],
            "2592000000"
        );
    }
}
