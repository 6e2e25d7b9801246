//! CPU an idle Kafka producer burns: creates a producer, waits 2 s for it to connect, then
//! prints the process's CPU time over the next 20 s of doing nothing. The measurement behind
//! `vendor/patches/rdkafka/0001-timeout-rounds-up-to-a-millisecond.patch` (vendor/README.md).
//!
//! `cargo run --release -p pipeline --example idle_producer [-- BROKERS]` (default
//! 127.0.0.1:9092, the local stack).

use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use std::time::Duration;

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // fields after the command name: state is the 1st, utime the 12th, stime the 13th
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "idle producer: {:.3} s of CPU in 20 s",
        cpu_seconds() - start
    );
    drop(producer);
    Ok(())
}
