//! Writer metrics.

use prometheus::{Histogram, IntCounter, register_histogram, register_int_counter};
use std::sync::LazyLock;

pub static INSERT_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "aa_writer_insert_latency_seconds",
        "Duration of one ClickHouse insert",
        prometheus::exponential_buckets(0.001, 2.0, 16).unwrap()
    )
    .unwrap()
});
pub static INSERT_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "aa_writer_insert_retries_total",
        "Inserts retried after a retryable ClickHouse error"
    )
    .unwrap()
});
pub static ROWS_REJECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "aa_writer_rows_rejected_total",
        "Rows ClickHouse rejected, sent to the dead-letter topic"
    )
    .unwrap()
});
