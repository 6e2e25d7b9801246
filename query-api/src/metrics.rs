//! Query API metrics: requests by operation and status, and their latency.

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};
use std::sync::LazyLock;

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_query_requests_total",
        "Query API requests by operation, transport and status class",
        &["operation", "transport", "status"]
    )
    .unwrap()
});

pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "aa_query_request_seconds",
        "Query API request latency by operation and transport",
        &["operation", "transport"],
        prometheus::exponential_buckets(0.001, 2.0, 16).unwrap()
    )
    .unwrap()
});

/// Records one finished request.
pub fn observe(operation: &str, transport: &str, status: u16, seconds: f64) {
    let class = match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    REQUESTS
        .with_label_values(&[operation, transport, class])
        .inc();
    LATENCY
        .with_label_values(&[operation, transport])
        .observe(seconds);
}
