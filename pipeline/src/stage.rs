//! The loop of a Kafka-to-Kafka stage (enricher, export): consume an event batch, decode,
//! transform, encode the output ([`Emit`]: re-keyed event batches by
//! [`schemas::topics::partition_key`], or export records), produce, and store the input offset
//! only once every output (and every dead letter) was acknowledged.
//!
//! Several input messages are in flight at once; their acknowledgements are awaited in
//! consumption order, so a stored offset never passes a message whose output is not durable.
//! A produce that fails is retried with backoff until it succeeds or the stage shuts down (the
//! message is then re-read from the last commit, and deterministic ids hide the replay).

use crate::deadletter::{DeadLetters, Origin};
use crate::kafka::{Acks, Bus, Outgoing, StageConsumer, commit_now};
use crate::metrics::{BATCH_SIZE, EVENTS_IN, EVENTS_OUT};
use crate::shutdown::Shutdown;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::Message;
use schemas::ActivityEvent;
use schemas::batch;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Events a transform hands on, possibly later (e.g. after waiting a bounded time for
/// metadata). Later messages are not held back meanwhile; only their offsets wait, in order.
pub type Transformed = Pin<Box<dyn Future<Output = Vec<ActivityEvent>> + Send>>;

/// What a stage does to events. Called on one input message's events at a time, in order.
pub trait Transform: Send + 'static {
    fn apply(&mut self, events: Vec<ActivityEvent>) -> Transformed;
}

/// The identity transform (a benchmark baseline).
#[derive(Debug, Default)]
pub struct PassThrough;

impl Transform for PassThrough {
    fn apply(&mut self, events: Vec<ActivityEvent>) -> Transformed {
        Box::pin(std::future::ready(events))
    }
}

/// Records a stage's output becomes, possibly after async work (e.g. creating a topic).
pub type Emitted = Pin<Box<dyn Future<Output = Vec<Outgoing>> + Send>>;

/// How a stage encodes its output events as Kafka records.
pub trait Emit: Send + Sync + 'static {
    fn emit(&self, events: Vec<ActivityEvent>) -> Emitted;
}

/// The internal topics' encoding: event batches, one partition of the partition key each.
#[derive(Debug, Clone)]
pub struct EventBatches {
    pub topic: String,
    pub partitions: i32,
}

impl EventBatches {
    /// Batches for `topic` (its partition count looked up on the broker).
    pub async fn new(bus: &Bus, topic: &str) -> anyhow::Result<Self> {
        Ok(EventBatches {
            topic: topic.to_string(),
            partitions: bus.partitions(topic).await?,
        })
    }
}

impl Emit for EventBatches {
    fn emit(&self, events: Vec<ActivityEvent>) -> Emitted {
        Box::pin(std::future::ready(encode_by_partition(
            &events,
            &self.topic,
            self.partitions,
        )))
    }
}

/// Configuration of a Kafka-to-Kafka stage (`AA_<STAGE>__…` environment overrides).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    pub kafka: crate::config::KafkaConfig,
    pub topics: schemas::topics::Topics,
    /// Consumer group of the stage's replicas.
    pub group: String,
    /// Input messages whose outputs may await acknowledgement at once.
    pub max_in_flight: usize,
    pub ops: crate::config::OpsConfig,
}

impl StageConfig {
    /// Defaults for the stage called `stage`, with its ops endpoints on `ops_port`.
    pub fn named(stage: &str, ops_port: u16) -> Self {
        StageConfig {
            kafka: crate::config::KafkaConfig::default(),
            topics: schemas::topics::Topics::default(),
            group: format!("activity-audit-{stage}"),
            max_in_flight: 256,
            ops: crate::config::OpsConfig::on_port(ops_port),
        }
    }
}

impl Default for StageConfig {
    fn default() -> Self {
        Self::named("stage", 0)
    }
}

/// Sets up a stage from its config (producer, dead letters, consumer on `input`) and runs it
/// until `shutdown`, producing what `output` makes of the transformed events.
pub async fn serve<T: Transform, E: Emit, F: Future<Output = anyhow::Result<E>>>(
    cfg: &StageConfig,
    stage: &'static str,
    input: &str,
    output: impl FnOnce(Bus) -> F,
    transform: T,
    ready: crate::ops::Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    cfg.kafka.validate()?;
    let bus = Bus::new(&cfg.kafka, &format!("activity-audit-{stage}"))?;
    let dlq = DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), stage);
    let emit = output(bus.clone()).await?;
    let consumer = crate::kafka::consumer(&cfg.kafka, stage, &cfg.group, &[input])?;
    ready.set(true);
    tracing::info!(stage, input, "stage started");
    let spec = StageSpec {
        stage,
        max_in_flight: cfg.max_in_flight.max(1),
    };
    run(
        consumer,
        bus,
        dlq,
        spec,
        transform,
        std::sync::Arc::new(emit),
        shutdown,
    )
    .await
}

/// Names and limits of one stage.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub stage: &'static str,
    /// Input messages whose outputs may be awaiting acknowledgement at once.
    pub max_in_flight: usize,
}

type Pending = Pin<Box<dyn Future<Output = Option<(String, i32, i64)>> + Send>>;

/// Groups events by partition (of their partition key) and encodes each group as batch
/// messages for `topic`, which has `partitions` partitions.
pub fn encode_by_partition<'a>(
    events: impl IntoIterator<Item = &'a ActivityEvent>,
    topic: &str,
    partitions: i32,
) -> Vec<Outgoing> {
    let mut groups: BTreeMap<i32, Vec<&ActivityEvent>> = BTreeMap::new();
    for e in events {
        let p = schemas::topics::partition_of(e, partitions);
        groups.entry(p).or_default().push(e);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (partition, evs) in groups {
        for payload in batch::encode(evs, batch::MAX_MESSAGE_BYTES) {
            out.push(Outgoing {
                topic: topic.to_string(),
                partition: Some(partition),
                key: String::new(),
                payload,
                headers: Vec::new(),
            });
        }
    }
    out
}

/// Decodes a batch message into valid events and the reasons of the lines that are not.
pub fn decode_valid(payload: &[u8]) -> (Vec<ActivityEvent>, Vec<String>) {
    // Sized once: events are large, and growing the vector would copy them.
    let lines = payload.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut events = Vec::with_capacity(lines);
    let mut bad = Vec::new();
    for item in batch::decode(payload) {
        match item {
            Ok(e) => match e.validate() {
                Ok(()) => events.push(e),
                Err(v) => bad.push(format!("event {}: {v}", e.id)),
            },
            Err(b) => bad.push(b.to_string()),
        }
    }
    (events, bad)
}

/// Runs the stage until `shutdown`, then drains what is in flight and commits.
pub async fn run<T: Transform, E: Emit>(
    consumer: StageConsumer,
    bus: Bus,
    dlq: DeadLetters,
    spec: StageSpec,
    mut transform: T,
    emit: std::sync::Arc<E>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut acks = Acks::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let stage = spec.stage;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                Some((topic, partition, offset)) => acks.ack(&topic, partition, offset),
                None => break,
            },
            _ = tick.tick() => acks.store(&consumer),
            msg = consumer.recv(), if in_flight.len() < spec.max_in_flight => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(stage, error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let origin = Origin {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    tenant: String::new(),
                };
                let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                let payload = msg.payload().unwrap_or_default();
                let span = tracing::debug_span!("message", stage, topic = %origin.topic, partition = origin.partition, offset = origin.offset);
                let _g = span.enter();
                let (events, bad) = decode_valid(payload);
                let mut records = Vec::new();
                if !bad.is_empty() {
                    tracing::warn!(stage, bad = bad.len(), "dead-lettering undecodable events");
                    records.push(dlq.record(payload.to_vec(), key, "undecodable", &bad.join("; "), &origin));
                }
                EVENTS_IN.with_label_values(&[stage]).inc_by(events.len() as u64);
                let transformed = transform.apply(events);
                let bus = bus.clone();
                let sd = shutdown.clone();
                let emit = emit.clone();
                in_flight.push_back(Box::pin(async move {
                    let out = transformed.await;
                    BATCH_SIZE.with_label_values(&[stage]).observe(out.len() as f64);
                    let n_out = out.len() as u64;
                    records.extend(emit.emit(out).await);
                    bus.send_until_acked(&records, &sd).await?;
                    EVENTS_OUT.with_label_values(&[stage]).inc_by(n_out);
                    Some((origin.topic, origin.partition, origin.offset))
                }));
            }
        }
    }
    // Drain: outputs already enqueued get a bounded time to be acknowledged. The first message
    // not acknowledged stops acking, so no stored offset passes it.
    let drain = async {
        while let Some(Some((topic, partition, offset))) = in_flight.next().await {
            acks.ack(&topic, partition, offset);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    acks.store(&consumer);
    commit_now(&consumer);
    bus.flush(Duration::from_secs(5));
    tracing::info!(stage, "stage stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_by_partition_groups_pods() {
        let mk = |pod: &str, i: i64| ActivityEvent {
            tenant: "t".into(),
            cluster: "c".into(),
            namespace: "ns".into(),
            pod: pod.into(),
            timestamp: 1_700_000_000_000_000_000 + i,
            comm: "sh".into(),
            ..Default::default()
        };
        let events = vec![mk("a", 1), mk("b", 2), mk("a", 3)];
        let out = encode_by_partition(&events, "topic", 64);
        let pa = schemas::topics::partition_for("t/c/pod/ns/a", 64);
        let a = out.iter().find(|o| o.partition == Some(pa)).unwrap();
        assert_eq!(
            batch::decode(&a.payload)
                .filter(|e| e.as_ref().unwrap().pod == "a")
                .count(),
            2
        );
        let one = encode_by_partition(&events, "topic", 1);
        assert_eq!(one.len(), 1, "one message per partition");
    }
}
