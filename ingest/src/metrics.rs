//! Ingest metrics, per input source and tenant.

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};
use std::sync::LazyLock;

pub static RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_ingest_received_total",
        "Items received",
        &["source", "tenant"]
    )
    .unwrap()
});
pub static ACCEPTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_ingest_accepted_total",
        "Events acknowledged by Kafka",
        &["source", "tenant"]
    )
    .unwrap()
});
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_ingest_rejected_total",
        "Items rejected as invalid",
        &["source", "tenant"]
    )
    .unwrap()
});
pub static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_ingest_dropped_not_activity_total",
        "Valid items that are not activity",
        &["source", "tenant"]
    )
    .unwrap()
});
pub static BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_ingest_bytes_total",
        "Request body bytes after decompression",
        &["source", "tenant"]
    )
    .unwrap()
});
pub static PRODUCE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "aa_ingest_produce_latency_seconds",
        "Time from request decoded to every event acknowledged by Kafka",
        &["source"],
        prometheus::exponential_buckets(0.0005, 2.0, 16).unwrap()
    )
    .unwrap()
});
