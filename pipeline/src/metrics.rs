//! Prometheus series shared by the stages, labelled by `stage` (ingest, enricher, correlator,
//! writer). Registered in the default registry that `/metrics` exports.

use prometheus::{
    HistogramVec, IntCounterVec, IntGaugeVec, register_histogram_vec, register_int_counter_vec,
    register_int_gauge_vec,
};
use std::sync::LazyLock;

pub static EVENTS_IN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("aa_events_in_total", "Events a stage received", &["stage"]).unwrap()
});
pub static EVENTS_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_events_out_total",
        "Events a stage handed on (produced and acknowledged, or inserted)",
        &["stage"]
    )
    .unwrap()
});
pub static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "aa_dead_lettered_total",
        "Messages or events sent to the dead-letter topic",
        &["stage", "reason"]
    )
    .unwrap()
});
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "aa_consumer_lag",
        "Messages behind the partition's high watermark",
        &["stage", "topic", "partition"]
    )
    .unwrap()
});
pub static BATCH_SIZE: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "aa_batch_events",
        "Events per batch a stage handed on",
        &["stage"],
        prometheus::exponential_buckets(1.0, 4.0, 10).unwrap()
    )
    .unwrap()
});
