//! The ClickHouse cluster layout (`[clickhouse.cluster]`, docs/clickhouse-cluster.md) on the
//! local server's one-shard cluster `aa_local` (deploy/local/clickhouse/config.xml): the
//! migrations create local tables behind `Distributed` ones (idempotently), the real writer
//! inserts through them from Kafka (replays and revisions included), and the query API reads
//! them with the same SQL as on one server: entries (each event once, latest revision), entry
//! by id, trace, histogram and groups.

use integration_tests::{Service, World, generator};
use schemas::TraceRecord;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_layout_stores_and_serves_events() {
    let world = World::new(2).await;
    let db = format!("{}_cluster", world.database);
    let cluster = store::config::ClusterConfig {
        name: "aa_local".into(),
        replicated: false,
        on_cluster: false,
        ..Default::default()
    };
    let ch = store::ClickHouse::new(store::ClickHouseConfig {
        url: integration_tests::clickhouse_url(),
        database: db.clone(),
        cluster: Some(cluster),
        ..Default::default()
    });
    let applied = store::migrations::apply(&ch).await.unwrap();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(
        store::migrations::apply(&ch).await.unwrap().is_empty(),
        "idempotent"
    );
    #[derive(serde::Deserialize)]
    struct Table {
        name: String,
        engine: String,
    }
    let engines: HashMap<String, String> = ch
        .query_rows::<Table>(&format!(
            "SELECT name, engine FROM system.tables WHERE database = {}",
            store::sql::quote(&db)
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.engine))
        .collect();
    for (table, engine) in [
        ("events", "Distributed"),
        ("events_local", "ReplacingMergeTree"),
        ("traces", "Distributed"),
        ("traces_local", "ReplacingMergeTree"),
        ("events_by_id", "Distributed"),
        ("events_by_id_local", "MaterializedView"),
    ] {
        assert_eq!(
            engines.get(table).map(String::as_str),
            Some(engine),
            "{table}: {engines:?}"
        );
    }

    // Events and a trace record through Kafka and the real writer, twice (a replay), then a
    // later revision of one event.
    let mut events = generator::events(41, 800, 1_767_000_000_000_000_000, true);
    for e in &mut events {
        e.tenant.clone_from(&world.tenant);
        e.trace_id.clear();
        e.revision = 0;
    }
    let mut relinked = events[0].clone();
    relinked.trace_id = "trace-1".into();
    relinked.revision = 7;
    let trace = TraceRecord {
        tenant: world.tenant.clone(),
        trace_id: "trace-1".into(),
        kind: "kube-exec".into(),
        origin_id: relinked.id.clone(),
        user: "alice@example.com".into(),
        start: relinked.timestamp,
        end: relinked.timestamp,
        commands: 1,
        confidence: 1.0,
        revision: 1,
        ..Default::default()
    };
    let bus =
        pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "cluster-test").unwrap();
    let partitions = bus.partitions(&world.topics.events).await.unwrap();
    for batch in [&events[..], &events[..], std::slice::from_ref(&relinked)] {
        let records = pipeline::stage::encode_by_partition(batch, &world.topics.events, partitions);
        bus.send_all(&records).await.unwrap();
    }
    let mut line = serde_json::to_vec(&trace).unwrap();
    line.push(b'\n');
    bus.send_all(&[pipeline::kafka::Outgoing {
        topic: world.topics.traces.clone(),
        partition: Some(0),
        key: String::new(),
        payload: line,
        headers: Vec::new(),
    }])
    .await
    .unwrap();
    let _writer = world.spawn_with(
        Service::Writer,
        &[
            ("AA_WRITER__CLICKHOUSE__DATABASE", db.as_str()),
            ("AA_WRITER__CLICKHOUSE__CLUSTER__NAME", "aa_local"),
            ("AA_WRITER__CLICKHOUSE__CLUSTER__REPLICATED", "false"),
            ("AA_WRITER__CLICKHOUSE__CLUSTER__ON_CLUSTER", "false"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = ch
            .query_text("SELECT count() FROM events")
            .await
            .unwrap_or_default();
        let t = ch
            .query_text("SELECT count() FROM traces")
            .await
            .unwrap_or_default();
        if n.trim() == "1601" && t.trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rows through Distributed: {n} events, {t} traces"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let local = ch
        .query_text("SELECT count() FROM events_local")
        .await
        .unwrap();
    assert_eq!(local.trim(), "1601", "rows are on the shard's local table");

    // The query API over the Distributed tables: each event once, the latest revision.
    let mut w = world.clone();
    w.database = db.clone();
    let shutdown = pipeline::shutdown::Shutdown::new();
    let bound = w
        .start_query_api(
            &format!("[[token]]\ntoken = \"q\"\ntenant = \"{}\"\n", world.tenant),
            shutdown.clone(),
        )
        .await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{}/api/v1/activity{path}", bound.http))
                .bearer_auth("q")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let range = "from=1766990000000000000&to=1767010000000000000";
    let page = get(format!("/entries?limit=1000&{range}")).await;
    assert_eq!(page["page"]["total"], 800);
    assert_eq!(page["data"].as_array().unwrap().len(), 800);
    let one = get(format!("/entries/{}", relinked.id)).await;
    assert_eq!(one["traceId"], "trace-1", "latest revision: {one}");
    let tr = get(format!("/entries/{}/trace", relinked.id)).await;
    assert_eq!(tr["trace"]["user"], "alice@example.com", "{tr}");
    assert_eq!(tr["entries"].as_array().unwrap().len(), 1, "{tr}");
    // The histogram and groups count stored rows (no FINAL, for speed): replays collapse
    // when the shard merges, as on one server.
    ch.execute("OPTIMIZE TABLE events_local FINAL")
        .await
        .unwrap();
    let hist = get(format!("/histogram?{range}")).await;
    let total: u64 = hist["totals"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 800, "{hist}");
    let groups = get(format!("/groups?{range}")).await;
    let gsum: u64 = groups["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .chain(groups["hosts"].as_array().unwrap())
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(gsum, 800, "{groups}");
    shutdown.cancel();
}
