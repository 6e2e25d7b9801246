//! End to end through the real broker and ClickHouse: ingest → enricher → correlator → writer.
//! Needs the local stack (`deploy/local/stack-up.sh`, which `deploy/local/test.sh` runs).

use integration_tests::{Service, World, generator, post_events};
use schemas::ActivityEvent;
use std::collections::HashMap;
use std::time::Duration;

const START_NS: i64 = 1_764_000_000_000_000_000;

async fn post_all(world: &World, base: &str, events: &[ActivityEvent], per_request: usize) {
    let http = reqwest::Client::new();
    for chunk in events.chunks(per_request) {
        post_events(&http, base, &world.token, generator::ndjson(chunk)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_round_trip_every_field() {
    let world = World::new(4).await;
    let p = world.spawn_all();
    let sent = generator::events(1, 100_000, START_NS, true);
    post_all(&world, &p.ingest.url(), &sent, 2_000).await;
    let n = world.wait_count(100_000, Duration::from_secs(420)).await;
    assert_eq!(n, 100_000, "rows visible to readers");

    let stored = store::read::all(&world.clickhouse(), &world.tenant)
        .await
        .unwrap();
    assert_eq!(stored.len(), 100_000);
    let by_id: HashMap<&str, &ActivityEvent> = stored.iter().map(|e| (e.id.as_str(), e)).collect();
    assert_eq!(by_id.len(), 100_000, "ids are unique");
    for s in &sent {
        let got = by_id
            .get(s.id.as_str())
            .unwrap_or_else(|| panic!("event {} missing", s.id));
        let mut expected = s.clone();
        expected.tenant.clone_from(&world.tenant);
        expected.cluster.clone_from(&world.cluster);
        expected.source = schemas::Source::Native;
        // The correlator owns the trace link and the revision, and fills in login shells the
        // producer did not send.
        assert!(got.revision > 0, "correlated");
        expected.revision = got.revision;
        expected.trace_id.clone_from(&got.trace_id);
        expected.trace_confidence = got.trace_confidence;
        expected.trace_link.clone_from(&got.trace_link);
        expected.trace_candidates.clone_from(&got.trace_candidates);
        if s.login_shell_id.is_none() {
            expected.login_shell_id = got.login_shell_id;
            expected.login_shell_distance = got.login_shell_distance;
        }
        assert!(
            got.received_timestamp >= START_NS,
            "received timestamp stamped"
        );
        expected.received_timestamp = got.received_timestamp;
        assert_eq!(**got, expected, "event {} round-trips", s.id);
    }
}

/// Posts 100k events while `victim` is SIGKILLed twice mid-stream and restarted; every event
/// must be stored and visible exactly once.
async fn survive_kill(victim: Service) {
    let world = World::new(4).await;
    let mut p = world.spawn_all();
    // No client ids: ingest derives them, as for real agents.
    let sent = generator::events(2, 100_000, START_NS, false);
    let base = p.ingest.url();
    let poster = {
        let world = world.clone();
        let sent = sent.clone();
        tokio::spawn(async move { post_all(&world, &base, &sent, 1_000).await })
    };
    for round in 0..2 {
        // Let data flow, then crash the stage mid-stream.
        let target = 20_000 * (round + 1);
        world.wait_count(target, Duration::from_secs(240)).await;
        let proc = match victim {
            Service::Writer => &mut p.writer,
            Service::Enricher => &mut p.enricher,
            Service::Correlator => &mut p.correlator,
            Service::Ingest | Service::Export => unreachable!("not in this pipeline"),
        };
        proc.kill9();
        tokio::time::sleep(Duration::from_millis(500)).await;
        *proc = world.spawn(victim);
    }
    poster.await.unwrap();
    let n = world.wait_count(100_000, Duration::from_secs(420)).await;
    assert_eq!(
        n, 100_000,
        "every event visible exactly once after {victim:?} crashes"
    );
    let ch = world.clickhouse();
    let distinct = ch
        .query_text(&format!(
            "SELECT uniqExact(id) FROM events WHERE tenant = {}",
            store::sql::quote(&world.tenant)
        ))
        .await
        .unwrap();
    assert_eq!(distinct.trim(), "100000", "no event lost");
    // A few seconds more: nothing beyond 100k ever becomes visible.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(world.count().await, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_killed_mid_stream_loses_and_duplicates_nothing() {
    survive_kill(Service::Writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_stage_killed_mid_stream_loses_and_duplicates_nothing() {
    survive_kill(Service::Enricher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlator_killed_mid_stream_loses_and_duplicates_nothing() {
    survive_kill(Service::Correlator).await;
}

/// `Bus::send_all` returns once the broker reported on every record of the call: `Ok` when it
/// acknowledged all of them (and they are on the topic), the error when it refused one, also
/// when the others of the same call were acknowledged (the call neither hangs nor passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_waits_for_every_delivery_report_and_reports_a_refusal() {
    use pipeline::kafka::{Bus, Outgoing, ProduceError};
    let world = World::new(2).await;
    let bus = Bus::new(&integration_tests::kafka_config(), "send-all-test").unwrap();
    let topic = world.topics.raw.clone();
    let record = |partition: i32, i: usize| Outgoing {
        topic: topic.clone(),
        partition: Some(partition),
        key: format!("k{i}"),
        payload: format!("{{\"n\":{i}}}").into_bytes(),
        headers: vec![("content-type", "application/json".into())],
    };
    let good: Vec<Outgoing> = (0..3_000).map(|i| record((i % 2) as i32, i)).collect();
    tokio::time::timeout(Duration::from_secs(60), bus.send_all(&good))
        .await
        .expect("send_all returned")
        .expect("every record acknowledged");
    let reader =
        pipeline::kafka::TailReader::new(&integration_tests::kafka_config(), "send-all-test")
            .unwrap();
    let on_topic: i64 = (0..2)
        .map(|p| {
            let (lo, hi) = reader.watermarks(&topic, p).unwrap();
            hi - lo
        })
        .sum();
    assert_eq!(on_topic, 3_000);

    // One record of the call goes to a partition the topic does not have.
    let mut mixed: Vec<Outgoing> = (0..100).map(|i| record(0, i)).collect();
    mixed.insert(50, record(7, 50));
    let refused = tokio::time::timeout(Duration::from_secs(60), bus.send_all(&mixed))
        .await
        .expect("send_all returned");
    assert!(
        matches!(refused, Err(ProduceError::NotAcknowledged(_))),
        "{refused:?}"
    );
}
