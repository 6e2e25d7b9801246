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

/// Records a stage's output becomes, possibly after async work (e.g. creating a topic), and
/// the events they were made from, spent: the stage decodes later events into them.
pub type Emitted = Pin<Box<dyn Future<Output = (Vec<Outgoing>, Vec<ActivityEvent>)> + Send>>;

/// How a stage encodes its output events as Kafka records.
pub trait Emit: Send + Sync + 'static {
    /// Appends the records of `events` to `out`, the records of the earlier chunks of the same
    /// input message: messages of one topic and partition continue where they ended, so a
    /// message's chunks make the records its events would have made at once. Hands the events
    /// back once encoded.
    fn emit(&self, events: Vec<ActivityEvent>, out: Vec<Outgoing>) -> Emitted;
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

    /// Appends the messages of `events` to `out`, the messages of the earlier chunks of the
    /// same input message (see [`Emit::emit`]).
    pub fn append(&self, events: &[ActivityEvent], mut out: Vec<Outgoing>) -> Vec<Outgoing> {
        // A chunk starts a partition's message with room for the whole message: later chunks
        // fill it without moving it.
        encode_into(
            events,
            &self.topic,
            self.partitions,
            &mut out,
            batch::MESSAGE_CAPACITY,
        );
        out
    }
}

impl Emit for EventBatches {
    fn emit(&self, events: Vec<ActivityEvent>, out: Vec<Outgoing>) -> Emitted {
        Box::pin(std::future::ready((self.append(&events, out), events)))
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
    let mut out = Vec::new();
    encode_into(events, topic, partitions, &mut out, 0);
    out
}

/// [`encode_by_partition`], appending to `out`: the last message of each partition in `out`
/// is filled up before a new one starts, which gets `capacity` bytes at once (0: sized to the
/// events at hand).
fn encode_into<'a>(
    events: impl IntoIterator<Item = &'a ActivityEvent>,
    topic: &str,
    partitions: i32,
    out: &mut Vec<Outgoing>,
    capacity: usize,
) {
    let mut groups: BTreeMap<i32, Vec<&ActivityEvent>> = BTreeMap::new();
    for e in events {
        let p = schemas::topics::partition_of(e, partitions);
        groups.entry(p).or_default().push(e);
    }
    let record = |partition: i32, payload: Vec<u8>| Outgoing {
        topic: topic.to_string(),
        partition: Some(partition),
        key: String::new(),
        payload,
        headers: Vec::new(),
    };
    for (partition, evs) in groups {
        let i = open_message(out, record(partition, Vec::with_capacity(capacity)));
        let more = batch::append(&mut out[i].payload, evs, batch::MAX_MESSAGE_BYTES);
        out.extend(more.into_iter().map(|payload| record(partition, payload)));
    }
}

/// The index in `out` of the message `like` continues: the last one of the same topic,
/// partition and headers with no key (a line-framed message an earlier chunk left open);
/// `like` itself, pushed, when there is none.
pub fn open_message(out: &mut Vec<Outgoing>, like: Outgoing) -> usize {
    out.iter()
        .rposition(|o| {
            o.key.is_empty()
                && o.partition == like.partition
                && o.topic == like.topic
                && o.headers == like.headers
        })
        .unwrap_or_else(|| {
            out.push(like);
            out.len() - 1
        })
}

/// Decodes a batch message into valid events and the reasons of the lines that are not.
pub fn decode_valid(payload: &[u8]) -> (Vec<ActivityEvent>, Vec<String>) {
    // Sized once: events are large, and growing the vector would copy them.
    let lines = payload.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut bad = Vec::new();
    let events = decode_chunk(&mut batch::lines(payload), lines, &mut bad, Vec::new());
    (events, bad)
}

/// Events a stage decodes, transforms and encodes at a time. A message holds thousands of
/// events (megabytes decoded); a chunk of them stays in the CPU cache from decode to encode,
/// and its memory is reused by the next chunk.
pub const CHUNK: usize = 256;

/// Up to `n` valid events from `lines` ([`batch::lines`]: numbered lines; the reasons of the
/// invalid ones go to `bad`). Each is decoded in its place in the vector, not moved there,
/// into the `spent` events of an earlier chunk first (cleared: their strings' buffers are
/// reused, so decoding allocates only where a value outgrows them).
pub fn decode_chunk<'a>(
    lines: &mut impl Iterator<Item = (usize, &'a [u8])>,
    n: usize,
    bad: &mut Vec<String>,
    spent: Vec<ActivityEvent>,
) -> Vec<ActivityEvent> {
    let mut events = spent;
    events.reserve(n.saturating_sub(events.len()));
    let mut valid = 0;
    for (line, text) in lines {
        match events.get_mut(valid) {
            Some(e) => e.clear(),
            None => events.push(ActivityEvent::default()),
        }
        let e = &mut events[valid];
        let checked = match batch::decode_line_into(text, e) {
            Ok(()) => e.validate().map_err(|v| format!("event {}: {v}", e.id)),
            Err(message) => Err(batch::BadLine { line, message }.to_string()),
        };
        match checked {
            Ok(()) => valid += 1,
            Err(reason) => bad.push(reason),
        }
        if valid == n {
            break;
        }
    }
    events.truncate(valid);
    events
}

/// One input message, decoded, transformed and encoded chunk by chunk ([`CHUNK`]): at once
/// while the transform and the encoding are ready (the usual case), in order later from the
/// first chunk whose transform waits (e.g. for metadata).
struct Chunks {
    /// The records of the chunks emitted so far, or the emitting that waits.
    head: Result<Vec<Outgoing>, Emitted>,
    /// Transformed chunks after the first that waited, in order.
    tail: Vec<Transformed>,
    events_in: usize,
    events_out: usize,
}

/// `spent`: events the last chunk handed back, to decode into (the stage keeps them from
/// message to message).
fn process<T: Transform, E: Emit>(
    payload: &[u8],
    transform: &mut T,
    emit: &E,
    bad: &mut Vec<String>,
    spent: &mut Vec<ActivityEvent>,
) -> Chunks {
    use futures::FutureExt;
    let mut lines = batch::lines(payload).peekable();
    let mut c = Chunks {
        head: Ok(Vec::new()),
        tail: Vec::new(),
        events_in: 0,
        events_out: 0,
    };
    // Until no line is left (`spent` kept for the next message).
    while lines.peek().is_some() {
        let events = decode_chunk(&mut lines, CHUNK, bad, std::mem::take(spent));
        c.events_in += events.len();
        let mut transformed = transform.apply(events);
        if c.tail.is_empty()
            && let Ok(done) = &mut c.head
            && let Some(out) = (&mut transformed).now_or_never()
        {
            c.events_out += out.len();
            let mut emitted = emit.emit(out, std::mem::take(done));
            c.head = match (&mut emitted).now_or_never() {
                Some((records, events)) => {
                    *spent = events;
                    Ok(records)
                }
                None => Err(emitted),
            };
        } else {
            c.tail.push(transformed);
        }
    }
    c
}

impl Chunks {
    /// The message's records and the number of events they carry, once every chunk is done.
    async fn finish<E: Emit>(self, emit: &E) -> (Vec<Outgoing>, usize) {
        let mut out = match self.head {
            Ok(records) => records,
            Err(emitted) => emitted.await.0,
        };
        let mut n = self.events_out;
        for transformed in self.tail {
            let events = transformed.await;
            n += events.len();
            out = emit.emit(events, out).await.0;
        }
        (out, n)
    }
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
    let mut spent = Vec::new();
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
                let origin = Origin::of(&msg);
                let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                let payload = msg.payload().unwrap_or_default();
                let span = tracing::debug_span!("message", stage, topic = %origin.topic, partition = origin.partition, offset = origin.offset);
                let _g = span.enter();
                let mut bad = Vec::new();
                let chunks = process(payload, &mut transform, &*emit, &mut bad, &mut spent);
                let mut records = Vec::new();
                if !bad.is_empty() {
                    tracing::warn!(stage, bad = bad.len(), "dead-lettering undecodable events");
                    records.push(dlq.record(payload.to_vec(), key, "undecodable", &bad.join("; "), &origin));
                }
                EVENTS_IN.with_label_values(&[stage]).inc_by(chunks.events_in as u64);
                let bus = bus.clone();
                let sd = shutdown.clone();
                let emit = emit.clone();
                in_flight.push_back(Box::pin(async move {
                    let (out, n_out) = chunks.finish(&*emit).await;
                    BATCH_SIZE.with_label_values(&[stage]).observe(n_out as f64);
                    records.extend(out);
                    bus.send_until_acked(&records, &sd).await?;
                    EVENTS_OUT.with_label_values(&[stage]).inc_by(n_out as u64);
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

    /// Events are decoded in their slots: a line the fast reader gives up on halfway (spaces)
    /// must come out whole from serde, and a bad line must leave nothing behind.
    #[test]
    fn decoding_in_place_keeps_good_events_whole_and_drops_bad_ones() {
        let e = |i: i64, comm: &str| ActivityEvent {
            id: format!("e{i}"),
            tenant: "t".into(),
            cluster: "c".into(),
            timestamp: 1_700_000_000_000_000_000 + i,
            comm: comm.into(),
            cmdline: format!("{comm} -c 'x'"),
            pid: 40 + i,
            ..Default::default()
        };
        let line = |ev: &ActivityEvent| serde_json::to_string(ev).unwrap();
        let spaced = line(&e(2, "sh")).replacen(",", ", ", 3);
        let mut invalid = e(4, "bash");
        invalid.timestamp = 5;
        let payload = [
            line(&e(1, "ls")),
            spaced,
            line(&e(3, "cat"))[..40].to_string(),
            line(&invalid),
            String::new(),
            line(&e(5, "id")),
        ]
        .join("\n");
        let (events, bad) = decode_valid(payload.as_bytes());
        assert_eq!(events, [e(1, "ls"), e(2, "sh"), e(5, "id")]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad[0].starts_with("line 3: "), "{bad:?}");
        assert!(bad[1].starts_with("event e4: "), "{bad:?}");
    }

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

    /// Waits once (returns pending, then ready) on every other chunk.
    struct SometimesLater(usize);

    impl Transform for SometimesLater {
        fn apply(&mut self, events: Vec<ActivityEvent>) -> Transformed {
            self.0 += 1;
            let mut wait = self.0.is_multiple_of(2);
            Box::pin(async move {
                futures::future::poll_fn(|cx| {
                    if std::mem::take(&mut wait) {
                        cx.waker().wake_by_ref();
                        return std::task::Poll::Pending;
                    }
                    std::task::Poll::Ready(())
                })
                .await;
                events
            })
        }
    }

    #[test]
    fn chunks_make_the_records_of_the_whole_message() {
        let events: Vec<ActivityEvent> = (0..CHUNK * 5 + 17)
            .map(|i| ActivityEvent {
                id: format!("{i:032x}"),
                tenant: "t".into(),
                cluster: "c".into(),
                namespace: "ns".into(),
                pod: format!("pod-{}", i % 13),
                timestamp: 1_700_000_000_000_000_000 + i as i64,
                comm: "sh".into(),
                ..Default::default()
            })
            .collect();
        let mut payload = batch::encode(&events, usize::MAX).remove(0);
        payload.extend_from_slice(b"{not json}\n");
        let whole = encode_by_partition(&events, "out", 8);
        assert!(whole.len() > 1);
        let emit = std::sync::Arc::new(EventBatches {
            topic: "out".into(),
            partitions: 8,
        });
        let mut bad = Vec::new();
        // Decoded into spent events of another message, with fields these events lack.
        let mut spent: Vec<ActivityEvent> = (0..CHUNK + 3)
            .map(|i| ActivityEvent {
                id: format!("old-{i}"),
                trace_id: "t-old".into(),
                container_image: "registry.example.com/old:1".into(),
                pod_labels: vec!["a=b".into()],
                uid: Some(0),
                revision: 9,
                ..events[i % 7].clone()
            })
            .collect();
        let c = process(&payload, &mut PassThrough, &*emit, &mut bad, &mut spent);
        assert!(
            c.tail.is_empty() && c.head.is_ok(),
            "all chunks done at once"
        );
        assert_eq!(c.events_in, events.len());
        assert!(!spent.is_empty(), "the last chunk's events come back");
        let (ready, n) = futures::executor::block_on(c.finish(&*emit));
        let c = process(&payload, &mut PassThrough, &*emit, &mut bad, &mut spent);
        let (again, k) = futures::executor::block_on(c.finish(&*emit));
        let c = process(
            &payload,
            &mut SometimesLater(0),
            &*emit,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert!(
            !c.tail.is_empty(),
            "chunks after the first that waits go later"
        );
        let (later, m) = futures::executor::block_on(c.finish(&*emit));
        assert_eq!(bad.len(), 2, "{bad:?}");
        for (out, n) in [(ready, n), (again, k), (later, m)] {
            assert_eq!(n, events.len());
            let key = |o: &Outgoing| (o.partition, o.payload.clone());
            assert_eq!(
                out.iter().map(key).collect::<Vec<_>>(),
                whole.iter().map(key).collect::<Vec<_>>()
            );
        }
    }
}
