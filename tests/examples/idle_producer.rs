//! CPU an idle Kafka producer burns: creates a producer, waits 2 s for it to connect, then
//! prints this process's CPU time over the next 20 s of doing nothing. The measurement behind
//! `vendor/patches/rdkafka/0001-timeout-rounds-up-to-a-millisecond.patch` (vendor/README.md).
//!
//! `cargo run --release -p integration-tests --example idle_producer` (needs the local stack's
//! broker, or `AA_BROKERS`).

use integration_tests::cpu::cpu_time;
use rdkafka::ClientConfig;
use rdkafka::producer::FutureProducer;
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", integration_tests::brokers())
        .create()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = cpu_time("self");
    tokio::time::sleep(Duration::from_secs(20)).await;
    println!(
        "idle producer: {:.3} s of CPU in 20 s",
        (cpu_time("self") - start).as_secs_f64()
    );
    drop(producer);
    Ok(())
}
