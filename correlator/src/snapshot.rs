//! Snapshots of the engine state, one stream per input partition, on the `correlator_state`
//! topic (partition `p` holds the snapshots of `enriched` partition `p`).
//!
//! A snapshot is the engine serialized as JSON, zstd-compressed, cut into chunks of at most
//! [`CHUNK_BYTES`] produced together; each chunk's headers name the input offset the snapshot
//! continues from and its place among the chunks. Restoring reads the partition backwards to
//! the last complete snapshot, so one cut short by a crash is skipped.

use crate::engine::{Engine, EngineConfig};
use pipeline::config::KafkaConfig;
use pipeline::kafka::{Outgoing, TailReader};

pub const CHUNK_BYTES: usize = 512 * 1024;
const H_NEXT: &str = "aa-snapshot-next-offset";
const H_CHUNK: &str = "aa-snapshot-chunk";
const H_CHUNKS: &str = "aa-snapshot-chunks";

/// The engine of one partition and the input offset it continues from.
#[derive(Debug)]
pub struct Snapshot {
    pub next_offset: i64,
    pub engine: Engine,
}

/// The records of a snapshot of `engine` (which has processed everything before
/// `next_offset`), for `partition` of `topic`.
pub fn encode(
    engine: &Engine,
    next_offset: i64,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Vec<Outgoing>> {
    let json = serde_json::to_vec(engine)?;
    let packed = zstd::encode_all(&json[..], 3)?;
    let chunks: Vec<&[u8]> = packed.chunks(CHUNK_BYTES).collect();
    let n = chunks.len();
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| Outgoing {
            topic: topic.to_string(),
            partition: Some(partition),
            key: partition.to_string(),
            payload: c.to_vec(),
            headers: vec![
                (H_NEXT, next_offset.to_string()),
                (H_CHUNK, i.to_string()),
                (H_CHUNKS, n.to_string()),
            ],
        })
        .collect())
}

fn header(h: &[(String, String)], name: &str) -> Option<i64> {
    h.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// Decodes a snapshot from its chunks in order.
pub fn decode(chunks: &[Vec<u8>], cfg: &EngineConfig) -> anyhow::Result<Engine> {
    let packed: Vec<u8> = chunks.concat();
    let json = zstd::decode_all(&packed[..])?;
    let engine: Engine = serde_json::from_slice(&json)?;
    Ok(engine.with_config(cfg.clone()))
}

/// A reader of the snapshot topic.
pub fn reader(kafka: &KafkaConfig) -> anyhow::Result<TailReader> {
    Ok(TailReader::new(kafka, "activity-audit-correlator-restore")?)
}

/// Reads the last complete snapshot of `partition` (blocking). `None` when there is none.
pub fn load(
    reader: &TailReader,
    topic: &str,
    partition: i32,
    cfg: &EngineConfig,
) -> anyhow::Result<Option<Snapshot>> {
    let (low, high) = reader.watermarks(topic, partition)?;
    let mut end = high;
    // Walk back over at most a few incomplete snapshots.
    for _ in 0..8 {
        if end <= low {
            return Ok(None);
        }
        let last = reader.read(topic, partition, end - 1, end)?;
        let Some(m) = last.first() else {
            return Ok(None);
        };
        let (Some(i), Some(n), Some(next)) = (
            header(&m.headers, H_CHUNK),
            header(&m.headers, H_CHUNKS),
            header(&m.headers, H_NEXT),
        ) else {
            end -= 1;
            continue;
        };
        if i != n - 1 || end - n < low {
            // Cut short by a crash: try the snapshot before it.
            end -= i + 1;
            continue;
        }
        let msgs = reader.read(topic, partition, end - n, end)?;
        let complete = msgs.len() == n as usize
            && msgs.iter().enumerate().all(|(k, m)| {
                header(&m.headers, H_CHUNK) == Some(k as i64)
                    && header(&m.headers, H_NEXT) == Some(next)
            });
        if !complete {
            end -= 1;
            continue;
        }
        let chunks: Vec<Vec<u8>> = msgs.into_iter().map(|m| m.payload).collect();
        let engine = decode(&chunks, cfg)?;
        return Ok(Some(Snapshot {
            next_offset: next,
            engine,
        }));
    }
    Ok(None)
}
