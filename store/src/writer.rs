//! The writer stage: consumes the final event topic (and the correlator's trace records),
//! batches rows by count, bytes and time (flushing at least every `flush_interval_ms`), inserts
//! them into ClickHouse (`events` as RowBinary, `traces` as JSON lines) and only then stores the
//! Kafka offsets.
//!
//! Exactly once for readers: a crash after the insert but before the commit replays the batch;
//! replayed rows carry the same deterministic id and sort key, so `ReplacingMergeTree` collapses
//! them and `FINAL` reads never show them twice. ClickHouse being down is retried with backoff
//! forever (nothing is committed meanwhile); rows the server rejects as bad data are isolated by
//! splitting the batch and sent to the dead-letter topic with the server's error.

use crate::client::ClickHouse;
use crate::columns::names;
use crate::config::ClickHouseConfig;
use crate::error::StoreError;
use crate::metrics::{INSERT_LATENCY, INSERT_RETRIES, ROWS_REJECTED};
use crate::row::transcode;
use bytes::Bytes;
use pipeline::config::{KafkaConfig, OpsConfig};
use pipeline::deadletter::{DeadLetters, Origin};
use pipeline::kafka::{Acks, Outgoing, StageConsumer, commit_now};
use pipeline::metrics::{BATCH_SIZE, EVENTS_IN, EVENTS_OUT};
use pipeline::ops::Readiness;
use pipeline::shutdown::Shutdown;
use rdkafka::Message;
use rdkafka::message::BorrowedMessage;
use schemas::json::RawEvent;
use schemas::topics::Topics;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A batch body shared with the HTTP request without copying it.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

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
    /// How often the hourly counts of changed hours are recomputed, milliseconds (0: never,
    /// for writers beside one that does).
    pub rollup_interval_ms: u64,
    /// How long an hour's latest change must be past before its counts are computed, seconds.
    pub rollup_settle_s: u32,
    /// Topic settings `activity-audit-writer --setup` creates the topics with.
    pub topic_setup: pipeline::kafka::TopicSetup,
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
            rollup_interval_ms: 30_000,
            rollup_settle_s: 60,
            topic_setup: Default::default(),
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
struct Batch<'c> {
    body: Vec<u8>,
    /// End offset in `body` of each row.
    row_ends: Vec<usize>,
    /// The event messages the rows came from, held (not copied) until the batch is stored, to
    /// dead-letter a rejected row's source line.
    messages: Vec<BorrowedMessage<'c>>,
    /// Per row: (index in `messages`, line start, line end in its payload).
    sources: Vec<(u32, u32, u32)>,
    /// Trace records (JSON lines, keys = `traces` columns) and the first message they came from.
    traces: Vec<u8>,
    traces_origin: Option<Origin>,
    dead: Vec<Outgoing>,
    acks: Acks,
    opened: Option<tokio::time::Instant>,
}

impl<'c> Batch<'c> {
    fn rows(&self) -> usize {
        self.row_ends.len()
    }
    fn is_empty(&self) -> bool {
        self.opened.is_none()
    }
    fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        (if i == 0 { 0 } else { self.row_ends[i - 1] })..self.row_ends[i]
    }
    /// Row `i`'s source line and the message it came from.
    fn source(&self, i: usize) -> (&[u8], Origin) {
        let (m, a, b) = self.sources[i];
        let msg = &self.messages[m as usize];
        let line = &msg.payload().unwrap_or_default()[a as usize..b as usize];
        (line, Origin::of(msg))
    }
    /// Empties the batch (releasing its messages), keeping its buffers (and their pages) for
    /// the next one.
    fn reset(&mut self) {
        let mut body = std::mem::take(&mut self.body);
        let mut row_ends = std::mem::take(&mut self.row_ends);
        let mut messages = std::mem::take(&mut self.messages);
        let mut sources = std::mem::take(&mut self.sources);
        body.clear();
        row_ends.clear();
        messages.clear();
        sources.clear();
        *self = Batch {
            body,
            row_ends,
            messages,
            sources,
            ..Batch::default()
        };
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
    let dlq = DeadLetters::lazy(&cfg.kafka, cfg.topics.deadletter.clone(), STAGE);
    let consumer = pipeline::kafka::consumer(
        &cfg.kafka,
        STAGE,
        &cfg.group,
        &[&cfg.topics.events, &cfg.topics.traces],
    )?;
    if cfg.rollup_interval_ms > 0 {
        tokio::spawn(crate::rollup::run(
            ch.clone(),
            Duration::from_millis(cfg.rollup_interval_ms),
            cfg.rollup_settle_s,
            shutdown.clone(),
        ));
    }
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
                if msg.topic() == cfg.topics.traces {
                    add_traces(&mut batch, &dlq, &msg);
                } else {
                    add_message(&mut batch, &dlq, msg);
                }
            }
        }
    }
    commit_now(&consumer);
    tracing::info!("writer stopped");
    Ok(())
}

fn add_message<'c>(batch: &mut Batch<'c>, dlq: &DeadLetters, msg: BorrowedMessage<'c>) {
    let msg_idx = batch.messages.len() as u32;
    let payload = msg.payload().unwrap_or_default();
    let mut n = 0u64;
    let mut bad = Vec::new();
    let base = payload.as_ptr() as usize;
    let mut raw = RawEvent::default();
    for (n_line, line) in schemas::batch::lines(payload) {
        // Events on the final topic were validated by every stage before; decoding is all the
        // writer checks (ClickHouse rejections are isolated at insert time).
        match transcode(&mut batch.body, &mut raw, line) {
            Ok(()) => {
                batch.row_ends.push(batch.body.len());
                let start = (line.as_ptr() as usize - base) as u32;
                batch
                    .sources
                    .push((msg_idx, start, start + line.len() as u32));
                n += 1;
            }
            Err(e) => bad.push(format!("line {n_line}: {e}")),
        }
    }
    EVENTS_IN.with_label_values(&[STAGE]).inc_by(n);
    if !bad.is_empty() {
        let key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        tracing::warn!(
            bad = bad.len(),
            offset = msg.offset(),
            "dead-lettering undecodable events"
        );
        batch.dead.push(dlq.record(
            payload.to_vec(),
            key,
            "undecodable",
            &bad.join("; "),
            &Origin::of(&msg),
        ));
    }
    batch.acks.ack(msg.topic(), msg.partition(), msg.offset());
    batch.messages.push(msg);
}

/// Adds a message of trace records. They are validated against the record type so a bad one is
/// dead-lettered with its reason instead of failing the insert.
fn add_traces(batch: &mut Batch<'_>, dlq: &DeadLetters, msg: &BorrowedMessage<'_>) {
    let payload = msg.payload().unwrap_or_default();
    let mut bad = Vec::new();
    for (n_line, line) in schemas::batch::lines(payload) {
        match serde_json::from_slice::<schemas::TraceRecord>(line) {
            Ok(_) => {
                batch.traces.extend_from_slice(line);
                batch.traces.push(b'\n');
            }
            Err(e) => bad.push(format!("line {n_line}: {e}")),
        }
    }
    if !bad.is_empty() {
        tracing::warn!(
            bad = bad.len(),
            offset = msg.offset(),
            "undecodable trace records"
        );
        batch.dead.push(dlq.record(
            payload.to_vec(),
            String::new(),
            "undecodable",
            &bad.join("; "),
            &Origin::of(msg),
        ));
    }
    batch.traces_origin.get_or_insert_with(|| Origin::of(msg));
    batch.acks.ack(msg.topic(), msg.partition(), msg.offset());
}

/// Inserts the batch (retrying while ClickHouse is unavailable, isolating rejected rows),
/// sends its dead letters, then stores the offsets. Returns false if shutdown interrupted it
/// (nothing is committed then; the batch is re-read on restart).
async fn flush(
    ch: &ClickHouse,
    columns: &[&str],
    dlq: &DeadLetters,
    consumer: &StageConsumer,
    batch: &mut Batch<'_>,
    shutdown: &Shutdown,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    let span = tracing::info_span!("flush", rows = batch.rows(), bytes = batch.body.len());
    let _g = span.enter();
    if !batch.traces.is_empty() {
        let body = Bytes::from(std::mem::take(&mut batch.traces));
        match insert_retrying(ch, Table::Traces, body.clone(), shutdown).await {
            Ok(()) => {}
            Err(None) => return false,
            Err(Some(e)) => {
                tracing::warn!(error = %e, "clickhouse rejected trace records; dead-lettering them");
                let origin = batch.traces_origin.clone().unwrap_or_default();
                let rec = dlq.record(
                    body.to_vec(),
                    String::new(),
                    "rejected",
                    &e.to_string(),
                    &origin,
                );
                batch.dead.push(rec);
            }
        }
    }
    let mut rejected = Vec::new();
    // The whole batch first, sharing the body without a copy; its buffer comes back after.
    let shared = Arc::new(std::mem::take(&mut batch.body));
    let first = if batch.rows() == 0 {
        Ok(())
    } else {
        insert_retrying(
            ch,
            Table::Events(columns),
            Bytes::from_owner(Shared(shared.clone())),
            shutdown,
        )
        .await
    };
    batch.body = Arc::try_unwrap(shared).unwrap_or_else(|still_shared| (*still_shared).clone());
    match first {
        Ok(()) => {}
        Err(None) => return false,
        Err(Some(e)) => {
            tracing::warn!(error = %e, "clickhouse rejected the batch; isolating the bad rows");
            let all: Vec<usize> = (0..batch.rows()).collect();
            if !insert_isolating(ch, columns, batch, all, e, &mut rejected, shutdown).await {
                return false;
            }
        }
    }
    // The hours the rows went into are due for their counts again (`crate::rollup`); after the
    // insert, before the commit.
    let hours = crate::rollup::touched_hours(&batch.body, &batch.row_ends);
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = crate::rollup::mark(ch, &hours).await {
        tracing::warn!(error = %e, "marking changed hours failed, retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    for (row, err) in rejected {
        ROWS_REJECTED.inc();
        let (line, origin) = batch.source(row);
        let rec = dlq.record(line.to_vec(), String::new(), "rejected", &err, &origin);
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
    EVENTS_OUT
        .with_label_values(&[STAGE])
        .inc_by(batch.rows() as u64);
    BATCH_SIZE
        .with_label_values(&[STAGE])
        .observe(batch.rows() as f64);
    batch.acks.store(consumer);
    batch.reset();
    true
}

/// `rows` of the batch were rejected together with `error`: splits them in halves and inserts
/// each, splitting again on a bad-data error, until the rejected rows are isolated (collected
/// with the server's message). Retryable errors are retried with
/// backoff until success or shutdown (then returns false).
async fn insert_isolating(
    ch: &ClickHouse,
    columns: &[&str],
    batch: &Batch<'_>,
    rows: Vec<usize>,
    error: StoreError,
    rejected: &mut Vec<(usize, String)>,
    shutdown: &Shutdown,
) -> bool {
    // Parts known to contain a rejected row, with the server's error for them.
    let mut failed = vec![(rows, error)];
    while let Some((part, error)) = failed.pop() {
        if part.len() == 1 {
            rejected.push((part[0], error.to_string()));
            continue;
        }
        let (left, right) = part.split_at(part.len() / 2);
        for half in [left, right] {
            let mut body = Vec::new();
            for &r in half {
                body.extend_from_slice(&batch.body[batch.row_range(r)]);
            }
            match insert_retrying(ch, Table::Events(columns), Bytes::from(body), shutdown).await {
                Ok(()) => {}
                Err(None) => return false,
                Err(Some(e)) => failed.push((half.to_vec(), e)),
            }
        }
    }
    true
}

/// Where an insert goes: `events` (RowBinary in these columns) or `traces` (JSON lines).
#[derive(Clone, Copy)]
enum Table<'a> {
    Events(&'a [&'a str]),
    Traces,
}

/// `Err(None)`: interrupted by shutdown; `Err(Some(e))`: the server rejected the data.
async fn insert_retrying(
    ch: &ClickHouse,
    table: Table<'_>,
    body: Bytes,
    shutdown: &Shutdown,
) -> Result<(), Option<StoreError>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let timer = INSERT_LATENCY.start_timer();
        let r = match table {
            Table::Events(columns) => ch.insert_rowbinary("events", columns, body.clone()).await,
            Table::Traces => ch.insert_json_lines("traces", body.clone()).await,
        };
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
