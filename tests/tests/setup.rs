//! `activity-audit-writer --setup` on the real broker and ClickHouse: creates every topic with
//! the configured partitions and topic settings, applies the migrations, and leaves existing
//! topics alone when run again.

use integration_tests::{bin_dir, brokers, clickhouse, clickhouse_url, unique};
use schemas::topics::Topics;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_topics_and_migrates() {
    let name = unique("aas");
    let topics = Topics::with_prefix(&name);
    let run = || {
        let mut c = Command::new(bin_dir().join("activity-audit-writer"));
        c.arg("--setup")
            .env("AA_WRITER__KAFKA__BROKERS", brokers())
            .env("AA_WRITER__CLICKHOUSE__URL", clickhouse_url())
            .env("AA_WRITER__CLICKHOUSE__DATABASE", &name)
            // one broker here: replication 1
            .env("AA_WRITER__TOPIC_SETUP__PARTITIONS", "3")
            .env("AA_WRITER__TOPIC_SETUP__REPLICATION", "1")
            .env("AA_WRITER__TOPIC_SETUP__MIN_INSYNC_REPLICAS", "1");
        for (key, topic) in [
            ("RAW", &topics.raw),
            ("ENRICHED", &topics.enriched),
            ("EVENTS", &topics.events),
            ("DEADLETTER", &topics.deadletter),
            ("TRACES", &topics.traces),
            ("CORRELATOR_STATE", &topics.correlator_state),
        ] {
            c.env(format!("AA_WRITER__TOPICS__{key}"), topic);
        }
        c.output().unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "setup-test").unwrap();
    for t in topics.all() {
        assert!(
            printed.contains(&format!("topic {t}: 3 partitions")),
            "{printed}"
        );
        assert_eq!(bus.partitions(t).await.unwrap(), 3, "{t}");
    }
    let applied = clickhouse(&name)
        .query_text("SELECT count() FROM schema_migrations")
        .await
        .unwrap();
    assert_eq!(
        applied.trim(),
        store::migrations::all(
            store::migrations::Features::for_version(18, 16),
            &store::migrations::Layout {
                cluster: None,
                database: &name,
            }
        )
        .len()
        .to_string()
    );
    // Again: nothing to do, nothing fails.
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
