//! The writer stage: consumes the final event topic, batches rows by count, bytes and time
//! (flushing at least every `flush_interval_ms`), inserts them into ClickHouse as RowBinary and
//! only then stores the Kafka offsets.
//!
//! Exactly once for readers: a crash after the insert but before the commit replays the batch;
//! replayed rows carry the same deterministic id and sort key, so `ReplacingMergeTree` collapses
//! them and `FINAL` reads never show them twice. ClickHouse being down is retried with backoff
//! forever (nothing is committed meanwhile); rows the server rejects as bad data are isolated by
//! splitting the batch and sent to the dead-letter topic with the server's error.

use crate::client::ClickHouse;
use crate::columns::{names, write_row};
use crate::config::ClickHouseConfig;
use crate::error::StoreError;
use crate::metrics::{INSERT_LATENCY, INSERT_RETRIES, ROWS_REJECTED};
use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::deadletter::{DeadLetters, Origin};
use pipeline::kafka::{Acks, Bus, Outgoing, StageConsumer, commit_now};
use pipeline::metrics::{BATCH_SIZE, EVENTS_IN, EVENTS_OUT};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use rdkafka::Message;
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::time::Duration;

const STAGE: &str = "writer";

/// Writer configuration (`AA_WRITER__…` environment overrides).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterConfig {
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub topics: Topics,
    /// Consumer group of the writers.
    pub group: String,
    /// Flush when this many rows are buffered.
    pub batch_rows: usize,
    /// Flush when the RowBinary body reaches this many bytes.
    pub batch_bytes: usize,
    /// Flush at least this often, milliseconds.
    pub flush_interval_ms: u64,
    pub ops: OpsConfig,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            kafka: KafkaConfig::default(),
            clickhouse: ClickHouseConfig::default(),
            topics: Topics::default(),
            group: "activity-audit-writer".into(),
            batch_rows: 100_000,
            batch_bytes: 64 << 20,
            flush_interval_ms: 1000,
            ops: OpsConfig::on_port(9459),
        }
    }
}

impl WriterConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        self.clickhouse.validate()?;
        if self.batch_rows == 0 || self.batch_bytes == 0 {
            anyhow::bail!("batch_rows and batch_bytes must be positive");
        }
        if !(10..=60_000).contains(&self.flush_interval_ms) {
            anyhow::bail!("flush_interval_ms must be within 10..=60000");
        }
        Ok(())
    }
}

/// Rows waiting for one insert, with what is needed to dead-letter any of them.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    /// End offset in `body` of each row.
    row_ends: Vec<usize>,
    /// Each row's source JSON line (for dead letters) and its origin.
    lines: Vec<u8>,
    line_ends: Vec<usize>,
    origins: Vec<u32>,
    origin_list: Vec<Origin>,
    dead: Vec<Outgoing>,
    acks: Acks,
    opened: Option<tokio::time::Instant>,
}

impl Batch {
    fn rows(&self) -> usize {
        self.row_ends.len()
    }
    fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        (if i == 0 { 0 } else { self.row_ends[i - 1] })..self.row_ends[i]
    }
    fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.line_ends[i - 1] };
        &self.lines[start..self.line_ends[i]]
    }
}

/// Runs the writer until `shutdown`.
pub async fn run(cfg: WriterConfig, ready: Readiness, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let ch = ClickHouse::new(cfg.clickhouse.clone());
    // Migrations need ClickHouse: wait for it rather than crash-loop.
    let mut backoff = Duration::from_millis(200);
    loop {
        match crate::migrations::apply(&ch).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "clickhouse not ready for migrations, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let bus = Bus::new(&cfg.kafka, "activity-audit-writer")?;
    let dlq = DeadLetters::new(bus.clone(), cfg.topics.deadletter.clone(), STAGE);
    let consumer = pipeline::kafka::consumer(&cfg.kafka, STAGE, &cfg.group, &[&cfg.topics.events])?;
    ready.set(true);
    tracing::info!(topic = %cfg.topics.events, database = ch.database(), "writer started");
    let columns = names();
    let flush_every = Duration::from_millis(cfg.flush_interval_ms);
    let mut batch = Batch::default();
    loop {
        let deadline = batch
            .opened
            .map(|t| t + flush_every)
            .unwrap_or_else(|| tokio::time::Instant::now() + flush_every);
        let full = batch.rows() >= cfg.batch_rows || batch.body.len() >= cfg.batch_bytes;
        if full {
            if !flush(&ch, &columns, &dlq, &consumer, &mut batch, &shutdown).await {
                break;
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                flush(&ch, &columns, &dlq, &consumer, &mut batch, &shutdown).await;
                break;
            }
            _ = tokio::time::sleep_until(deadline), if batch.opened.is_some() => {
                if !flush(&ch, &columns, &dlq, &consumer, &mut batch, &shutdown).await {
                    break;
                }
            }
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                batch.opened.get_or_insert_with(tokio::time::Instant::now);
                let origin = Origin {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    tenant: String::new(),
                };
                add_message(&mut batch, &dlq, msg.payload().unwrap_or_default(), msg.key(), origin);
            }
        }
    }
    commit_now(&consumer);
    bus.flush(Duration::from_secs(5));
    tracing::info!("writer stopped");
    Ok(())
}

fn add_message(batch: &mut Batch, dlq: &DeadLetters, payload: &[u8], key: Option<&[u8]>, origin: Origin) {
    let origin_idx = batch.origin_list.len() as u32;
    let mut n = 0u64;
    let mut bad = Vec::new();
    for line in payload.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = match serde_json::from_slice::<schemas::ActivityEvent>(line) {
            Ok(e) => match e.validate() {
                Ok(()) => e,
                Err(v) => {
                    bad.push(format!("event {}: {v}", e.id));
                    continue;
                }
            },
            Err(e) => {
                bad.push(e.to_string());
                continue;
            }
        };
        write_row(&mut batch.body, &event);
        batch.row_ends.push(batch.body.len());
        batch.lines.extend_from_slice(line);
        batch.line_ends.push(batch.lines.len());
        batch.origins.push(origin_idx);
        n += 1;
    }
    EVENTS_IN.with_label_values(&[STAGE]).inc_by(n);
    if !bad.is_empty() {
        let key = key.map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        tracing::warn!(bad = bad.len(), offset = origin.offset, "dead-lettering undecodable events");
        batch.dead.push(dlq.record(payload.to_vec(), key, "undecodable", &bad.join("; "), &origin));
    }
    batch.acks.ack(&origin.topic, origin.partition, origin.offset);
    batch.origin_list.push(origin);
}

/// Inserts the batch (retrying while ClickHouse is unavailable, isolating rejected rows),
/// sends its dead letters, then stores the offsets. Returns false if shutdown interrupted it
/// (nothing is committed then; the batch is re-read on restart).
async fn flush(
    ch: &ClickHouse,
    columns: &[&str],
    dlq: &DeadLetters,
    consumer: &StageConsumer,
    batch: &mut Batch,
    shutdown: &Shutdown,
) -> bool {
    if batch.opened.is_none() {
        return true;
    }
    let span = tracing::info_span!("flush", rows = batch.rows(), bytes = batch.body.len());
    let _g = span.enter();
    let all: Vec<usize> = (0..batch.rows()).collect();
    let mut rejected = Vec::new();
    if !insert_isolating(ch, columns, batch, &all, &mut rejected, shutdown).await {
        return false;
    }
    for (row, err) in rejected {
        ROWS_REJECTED.inc();
        let origin = &batch.origin_list[batch.origins[row] as usize];
        let rec = dlq.record(batch.line(row).to_vec(), String::new(), "rejected", &err, origin);
        batch.dead.push(rec);
    }
    if !batch.dead.is_empty() {
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = dlq.send(&batch.dead).await {
            tracing::warn!(error = %e, "dead-letter produce failed, retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
    EVENTS_OUT.with_label_values(&[STAGE]).inc_by(batch.rows() as u64);
    BATCH_SIZE.with_label_values(&[STAGE]).observe(batch.rows() as f64);
    batch.acks.store(consumer);
    *batch = Batch::default();
    true
}

/// Inserts `rows` of the batch; on a bad-data error splits them in halves until the rejected
/// rows are isolated (collected with the server's message). Retryable errors are retried with
/// backoff until success or shutdown (then returns false).
async fn insert_isolating(
    ch: &ClickHouse,
    columns: &[&str],
    batch: &Batch,
    rows: &[usize],
    rejected: &mut Vec<(usize, String)>,
    shutdown: &Shutdown,
) -> bool {
    let mut stack = vec![rows.to_vec()];
    while let Some(part) = stack.pop() {
        if part.is_empty() {
            continue;
        }
        let body = if part.len() == batch.rows() {
            batch.body.clone()
        } else {
            let mut b = Vec::new();
            for &r in &part {
                b.extend_from_slice(&batch.body[batch.row_range(r)]);
            }
            b
        };
        match insert_retrying(ch, columns, body, shutdown).await {
            Ok(()) => {}
            Err(None) => return false,
            Err(Some(e)) => {
                if part.len() == 1 {
                    rejected.push((part[0], e.to_string()));
                } else {
                    let mid = part.len() / 2;
                    stack.push(part[mid..].to_vec());
                    stack.push(part[..mid].to_vec());
                }
            }
        }
    }
    true
}

/// `Err(None)`: interrupted by shutdown; `Err(Some(e))`: the server rejected the data.
async fn insert_retrying(
    ch: &ClickHouse,
    columns: &[&str],
    body: Vec<u8>,
    shutdown: &Shutdown,
) -> Result<(), Option<StoreError>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let timer = INSERT_LATENCY.start_timer();
        let r = ch.insert_rowbinary("events", columns, body.clone()).await;
        timer.observe_duration();
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.is_bad_data() => return Err(Some(e)),
            Err(e) => {
                INSERT_RETRIES.inc();
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "insert failed, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(None),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
