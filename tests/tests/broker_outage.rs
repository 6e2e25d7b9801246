//! Ingest while the broker is unavailable: 503 with `Retry-After`, nothing half-accepted; once
//! the broker is back, the retried requests are accepted and every event is on the topic.
//! Uses a broker of its own (so other tests are not disturbed), made unavailable by freezing
//! it, and reads the topic back with a plain consumer.

use integration_tests::{PrivateBroker, Service, World, generator, post_events};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Distinct event ids on `topic` (all partitions, from the beginning).
fn ids_on_topic(brokers: &str, topic: &str, want: usize, timeout: Duration) -> HashSet<String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "unused-no-subscribe")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut ids = HashSet::new();
    let start = Instant::now();
    while ids.len() < want && start.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            for e in schemas::batch::decode(m.payload().unwrap_or_default()) {
                ids.insert(e.unwrap().id);
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_the_broker_is_down_and_loses_nothing() {
    let broker = PrivateBroker::start();
    let world = World::on_brokers(&broker.brokers(), 2).await;
    // Short produce timeout so the outage shows quickly. tansu 0.6 cannot take the idempotent
    // producer's epoch bump that follows a delivery timeout (it panics), so this test runs
    // without idempotence; duplicates would be removed downstream by the deterministic ids.
    let ingest = world.spawn_with(
        Service::Ingest,
        &[
            ("AA_INGEST__KAFKA__PRODUCE_TIMEOUT_MS", "3000"),
            ("AA_INGEST__KAFKA__IDEMPOTENCE", "false"),
        ],
    );
    let http = reqwest::Client::new();
    let base = ingest.url();
    let before = generator::events(11, 2_000, 1_764_000_000_000_000_000, false);
    post_events(&http, &base, &world.token, generator::ndjson(&before)).await;

    broker.freeze();
    let during = generator::events(12, 2_000, 1_764_000_100_000_000_000, false);
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&world.token)
        .body(generator::ndjson(&during))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("kafka"), "{body}");

    broker.thaw();
    // The client retries what was refused, as it was told to.
    post_events(&http, &base, &world.token, generator::ndjson(&during)).await;
    let brokers = broker.brokers();
    let topic = world.topics.raw.clone();
    let ids = tokio::task::spawn_blocking(move || {
        ids_on_topic(&brokers, &topic, 4_000, Duration::from_secs(120))
    })
    .await
    .unwrap();
    assert_eq!(
        ids.len(),
        4_000,
        "every event of both batches is on the topic"
    );
}
