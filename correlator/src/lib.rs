//! Correlator: `enriched` topic → sessions (traces) → `events` and `traces` topics.
//!
//! One [`engine::Engine`] per input partition (a pod's audit and agent events, or a host's,
//! share a partition) links every event to its session and emits it at once; a late origin
//! re-emits what it changes with a higher revision. The engine is deterministic, so its state
//! survives restarts and rebalances as snapshots ([`snapshot`]) plus a replay: a partition's
//! state is restored from its last snapshot and the input is re-read from the offset that
//! snapshot continues from, producing the same ids and revisions again (readers keep one row
//! per id, the highest revision). A snapshot is written only once every output before it is
//! acknowledged, so restoring never skips an output; input offsets are stored, in order, only
//! once a message's outputs are acknowledged.

pub mod engine;
pub mod snapshot;

use engine::{Engine, EngineConfig};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::deadletter::{DeadLetters, Origin};
use pipeline::kafka::{Acks, Bus, Outgoing, StageConsumer, TailReader, commit_now};
use pipeline::metrics::{EVENTS_IN, EVENTS_OUT};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const STAGE: &str = "correlator";

/// Correlator configuration (`AA_CORRELATOR__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelatorConfig {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// Consumer group of the correlator's replicas.
    pub group: String,
    /// Input messages whose outputs may await acknowledgement at once.
    pub max_in_flight: usize,
    /// How often each partition's state is snapshotted, ms (replay after a restart is at
    /// most this much input).
    pub snapshot_interval_ms: u64,
    pub engine: EngineConfig,
    pub ops: OpsConfig,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            kafka: KafkaConfig::default(),
            topics: Topics::default(),
            group: format!("activity-audit-{STAGE}"),
            max_in_flight: 256,
            snapshot_interval_ms: 30_000,
            engine: EngineConfig::default(),
            ops: OpsConfig::on_port(9449),
        }
    }
}

impl CorrelatorConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        self.engine.validate()?;
        if !(100..=600_000).contains(&self.snapshot_interval_ms) {
            anyhow::bail!("snapshot_interval_ms must be within 100..=600000");
        }
        Ok(())
    }
}

/// A partition's engine and where it is in the input.
struct Part {
    engine: Engine,
    /// Offset of the next input message the engine expects.
    next_offset: i64,
    /// After a seek: messages before this offset are stale and skipped.
    seeking: Option<i64>,
    last_snapshot: Instant,
    dirty: bool,
    last_input: Instant,
}

type Pending = Pin<Box<dyn Future<Output = Option<(i32, i64)>> + Send>>;

/// Runs the correlator until `shutdown`.
pub async fn run(
    cfg: CorrelatorConfig,
    ready: Readiness,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let bus = Bus::new(&cfg.kafka, "activity-audit-correlator")?;
    let dlq = DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), STAGE);
    let input = cfg.topics.enriched.clone();
    let consumer = pipeline::kafka::consumer(&cfg.kafka, STAGE, &cfg.group, &[&input])?;
    let reader = Arc::new(Mutex::new(snapshot::reader(&cfg.kafka)?));
    let output = pipeline::stage::EventBatches::new(&bus, &cfg.topics.events).await?;
    let trace_partitions = bus.partitions(&cfg.topics.traces).await?;
    ready.set(true);
    tracing::info!(input = %input, output = %cfg.topics.events, "correlator started");

    let mut parts: HashMap<i32, Part> = HashMap::new();
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    // The events of the last chunk, once encoded: the next chunk is decoded into them.
    let mut spent = Vec::new();
    let mut acks = Acks::default();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let snapshot_every = Duration::from_millis(cfg.snapshot_interval_ms);
    // Set while a snapshot waits for every earlier output to be acknowledged.
    let mut snapshot_due = false;
    loop {
        if snapshot_due && in_flight.is_empty() {
            snapshot_due = false;
            acks.store(&consumer);
            if !snapshot_all(&cfg, &bus, &mut parts, false, &shutdown).await {
                break;
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                Some((partition, offset)) => acks.ack(&input, partition, offset),
                None => break,
            },
            _ = tick.tick() => {
                acks.store(&consumer);
                // Trace records held back by the update interval go out once a partition idles.
                let mut idle_traces = Vec::new();
                for (partition, p) in parts.iter_mut() {
                    if p.engine.has_pending_traces() && p.last_input.elapsed() > Duration::from_secs(1) {
                        let traces = p.engine.take_traces(true);
                        p.dirty = true;
                        idle_traces.push(trace_message(&traces, &cfg.topics.traces, partition % trace_partitions));
                    }
                }
                if !idle_traces.is_empty() && bus.send_until_acked(&idle_traces, &shutdown).await.is_none() {
                    break;
                }
                snapshot_due |= parts.values().any(|p| p.dirty && p.last_snapshot.elapsed() >= snapshot_every);
            }
            msg = consumer.recv(), if !snapshot_due && in_flight.len() < cfg.max_in_flight => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let (partition, offset) = (msg.partition(), msg.offset());
                let part = match place(&cfg, &reader, &consumer, &input, &mut parts, partition, offset).await {
                    Some(p) => p,
                    None => continue,
                };
                let payload = msg.payload().unwrap_or_default();
                // Decoded, correlated and encoded a chunk at a time (pipeline::stage::CHUNK):
                // a chunk's events stay in the CPU cache from decode to encode.
                let (mut records, mut traces, mut bad) = (Vec::new(), Vec::new(), Vec::new());
                let (mut n_in, mut n_out) = (0, 0);
                let mut lines = schemas::batch::lines(payload).peekable();
                while lines.peek().is_some() {
                    let events = pipeline::stage::decode_chunk(&mut lines, pipeline::stage::CHUNK, &mut bad, std::mem::take(&mut spent));
                    n_in += events.len() as u64;
                    let out = part.engine.process(offset as u64, events);
                    n_out += out.events.len() as u64;
                    records = output.append(&out.events, records);
                    traces.extend(out.traces);
                    spent = out.events;
                }
                if !bad.is_empty() {
                    let origin = Origin { topic: input.clone(), partition, offset, tenant: String::new() };
                    tracing::warn!(bad = bad.len(), offset, "dead-lettering undecodable events");
                    records.push(dlq.record(payload.to_vec(), String::new(), "undecodable", &bad.join("; "), &origin));
                }
                EVENTS_IN.with_label_values(&[STAGE]).inc_by(n_in);
                part.next_offset = offset + 1;
                part.dirty = true;
                part.last_input = Instant::now();
                if !traces.is_empty() {
                    records.push(trace_message(&traces, &cfg.topics.traces, partition % trace_partitions));
                }
                let bus = bus.clone();
                let sd = shutdown.clone();
                in_flight.push_back(Box::pin(async move {
                    bus.send_until_acked(&records, &sd).await?;
                    EVENTS_OUT.with_label_values(&[STAGE]).inc_by(n_out);
                    Some((partition, offset))
                }));
            }
        }
    }
    // Drain: outputs already enqueued get a bounded time to be acknowledged; only then are the
    // states snapshotted (a snapshot never gets ahead of what is durable).
    let mut drained = true;
    let drain = async {
        while let Some(done) = in_flight.next().await {
            match done {
                Some((partition, offset)) => acks.ack(&input, partition, offset),
                None => return false,
            }
        }
        true
    };
    match tokio::time::timeout(Duration::from_secs(10), drain).await {
        Ok(true) => {}
        _ => drained = false,
    }
    if drained {
        let give_up = Shutdown::default();
        let snap = snapshot_all(&cfg, &bus, &mut parts, true, &give_up);
        if tokio::time::timeout(Duration::from_secs(10), snap)
            .await
            .is_err()
        {
            give_up.cancel();
            tracing::warn!(
                "final snapshot not acknowledged in time; restart replays from the previous one"
            );
        }
    }
    acks.store(&consumer);
    commit_now(&consumer);
    bus.flush(Duration::from_secs(5));
    tracing::info!("correlator stopped");
    Ok(())
}

/// The state for a message at `offset` of `partition`: continues the partition's engine when
/// the message is the next one; otherwise (first message after start or rebalance, or
/// another replica went on meanwhile) restores the last snapshot and seeks the input to where
/// it continues. `None`: skip this message.
async fn place<'a>(
    cfg: &CorrelatorConfig,
    reader: &Arc<Mutex<TailReader>>,
    consumer: &StageConsumer,
    input: &str,
    parts: &'a mut HashMap<i32, Part>,
    partition: i32,
    offset: i64,
) -> Option<&'a mut Part> {
    if let Some(p) = parts.get_mut(&partition) {
        if let Some(target) = p.seeking {
            if offset < target {
                return None;
            }
            p.seeking = None;
            if offset > target {
                tracing::warn!(
                    partition,
                    target,
                    offset,
                    "input before the snapshot's offset is gone; continuing"
                );
            }
            p.next_offset = offset;
        }
        if offset + 1 == p.next_offset {
            // Redelivery of the message just processed: skip it.
            return None;
        }
    }
    if parts
        .get(&partition)
        .is_some_and(|p| p.next_offset == offset)
    {
        return parts.get_mut(&partition);
    }
    let reader = reader.clone();
    let topic = cfg.topics.correlator_state.clone();
    let ecfg = cfg.engine.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let reader = reader.lock().unwrap_or_else(|p| p.into_inner());
        snapshot::load(&reader, &topic, partition, &ecfg)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r);
    let snap = match loaded {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(partition, error = %e, "could not read the state snapshot; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            seek(consumer, input, partition, offset);
            return None;
        }
    };
    let (engine, next) = match snap {
        Some(s) => {
            tracing::info!(partition, from = s.next_offset, at = offset, sizes = ?s.engine.sizes(), "state restored from snapshot");
            (s.engine, s.next_offset)
        }
        None => {
            tracing::info!(
                partition,
                at = offset,
                "no state snapshot: starting with an empty state"
            );
            (Engine::new(cfg.engine.clone()), offset)
        }
    };
    let part = Part {
        engine,
        next_offset: next,
        seeking: None,
        last_snapshot: Instant::now(),
        dirty: false,
        last_input: Instant::now(),
    };
    parts.insert(partition, part);
    let p = parts.get_mut(&partition).expect("inserted");
    if next == offset {
        return Some(p);
    }
    p.seeking = Some(next);
    seek(consumer, input, partition, next);
    None
}

fn seek(consumer: &StageConsumer, topic: &str, partition: i32, offset: i64) {
    if let Err(e) = consumer.seek(
        topic,
        partition,
        rdkafka::Offset::Offset(offset),
        Duration::from_secs(10),
    ) {
        tracing::warn!(partition, offset, error = %e, "seek failed");
    }
}

/// Snapshots the partitions that changed since their last snapshot (all of them when
/// `all`). Called only when every output so far is acknowledged. Returns false when
/// interrupted by shutdown.
async fn snapshot_all(
    cfg: &CorrelatorConfig,
    bus: &Bus,
    parts: &mut HashMap<i32, Part>,
    all: bool,
    shutdown: &Shutdown,
) -> bool {
    let every = Duration::from_millis(cfg.snapshot_interval_ms);
    for (partition, p) in parts.iter_mut() {
        if !p.dirty || !(all || p.last_snapshot.elapsed() >= every) {
            continue;
        }
        p.engine.sweep();
        let records = match snapshot::encode(
            &p.engine,
            p.next_offset,
            &cfg.topics.correlator_state,
            *partition,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(partition, error = %e, "could not encode a snapshot");
                continue;
            }
        };
        let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
        if bus.send_until_acked(&records, shutdown).await.is_none() {
            return false;
        }
        tracing::debug!(
            partition,
            bytes,
            next_offset = p.next_offset,
            "state snapshotted"
        );
        p.last_snapshot = Instant::now();
        p.dirty = false;
    }
    true
}

/// Trace records as one JSON-lines message.
fn trace_message(traces: &[schemas::TraceRecord], topic: &str, partition: i32) -> Outgoing {
    let mut payload = Vec::new();
    for t in traces {
        schemas::json::write(&mut payload, t).expect("a trace record serializes");
        payload.push(b'\n');
    }
    Outgoing {
        topic: topic.to_string(),
        partition: Some(partition),
        key: String::new(),
        payload,
        headers: Vec::new(),
    }
}
