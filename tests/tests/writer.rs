//! The writer against the real broker and ClickHouse: a line it cannot decode goes to the
//! dead-letter topic, with its message and where it came from, and costs the good lines of
//! the same message nothing. Needs the local stack (`deploy/local/stack-up.sh`).

use integration_tests::{Service, World, generator};
use pipeline::kafka::{Bus, Outgoing, TailReader};
use schemas::topics::dlq_headers as h;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_dead_letters_an_undecodable_line_and_stores_the_rest_of_its_message() {
    let world = World::new(1).await;
    let events: Vec<_> = generator::events(1, 3, 1_764_000_000_000_000_000, true)
        .into_iter()
        .map(|mut e| {
            e.tenant.clone_from(&world.tenant);
            e.cluster.clone_from(&world.cluster);
            e
        })
        .collect();
    let lines = generator::ndjson(&events);
    let lines: Vec<&[u8]> = lines
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // Good, bad (a string where a number belongs), good, good: one message.
    let mut payload = Vec::new();
    for line in [
        lines[0],
        br#"{"type":"command","pid":"three"}"#,
        lines[1],
        lines[2],
    ] {
        payload.extend_from_slice(line);
        payload.push(b'\n');
    }
    let bus = Bus::new(&integration_tests::kafka_config(), "test").unwrap();
    bus.send_all(&[Outgoing {
        topic: world.topics.events.clone(),
        partition: Some(0),
        key: "k".into(),
        payload: payload.clone(),
        headers: vec![],
    }])
    .await
    .unwrap();

    let mut writer = world.spawn(Service::Writer);
    assert_eq!(world.wait_count(3, Duration::from_secs(60)).await, 3);
    let stored: Vec<String> = store::read::all(&world.clickhouse(), &world.tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    want.sort();
    let mut got = stored.clone();
    got.sort();
    assert_eq!(got, want, "the three good lines are stored, once each");

    // The dead letter: the whole message, the line that failed and why, and its origin.
    let topic = world.topics.deadletter.clone();
    let letters = tokio::task::spawn_blocking(move || {
        let reader = TailReader::new(
            &integration_tests::kafka_config(),
            &integration_tests::unique("dlq"),
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (lo, hi) = reader.watermarks(&topic, 0).unwrap();
            if hi > lo || std::time::Instant::now() > deadline {
                return reader.read(&topic, 0, lo, hi).unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    writer.kill9();
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    let header = |k: &str| {
        letter
            .headers
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(letter.payload, payload);
    assert_eq!(letter.key, b"k");
    let reason = header(h::REASON);
    assert!(
        reason.starts_with("line 2:") && reason.contains(r#"string "three", expected i64"#),
        "{reason}"
    );
    assert_eq!(header(h::SOURCE_TOPIC), world.topics.events);
    assert_eq!(header(h::SOURCE_PARTITION), "0");
    assert_eq!(header(h::SOURCE_OFFSET), "0");
}
