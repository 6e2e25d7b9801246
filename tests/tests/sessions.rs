//! Sessions end to end through the real broker and ClickHouse: a generated `kubectl exec`
//! session (Falco alerts and API-server audit events, as those producers send them) posted to
//! ingest comes out with every event carrying the session's trace id, and the trace record
//! names the user; the correlator is SIGKILLed mid-session and restarted on the way.

use integration_tests::post_item as post;
use integration_tests::scenarios;
use integration_tests::{Service, World};
use std::time::Duration;

#[derive(serde::Deserialize, Debug)]
struct Row {
    id: String,
    trace_id: String,
    revision: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_session_comes_out_as_one_trace_naming_its_user() {
    let world = World::new(4).await;
    let mut p = world.spawn_all();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let session = scenarios::exec_session(3, now - 120_000_000_000, "alice@example.com");
    let items = scenarios::arrival_order(std::slice::from_ref(&session));
    let labelled = scenarios::parse(
        std::slice::from_ref(&session),
        &world.tenant,
        &world.cluster,
    );
    let ids: std::collections::HashSet<&str> =
        labelled.iter().map(|l| l.event.id.as_str()).collect();
    let http = reqwest::Client::new();
    let ch = world.clickhouse();
    let tenant = store::sql::quote(&world.tenant);

    // First half, then the correlator crashes (after at least one snapshot) and comes back.
    let half = items.len() / 2;
    for i in &items[..half] {
        post(&http, &p.ingest.url(), &world.token, &i.input).await;
    }
    let seen = world
        .wait_count(half.min(ids.len()) as u64 - 1, Duration::from_secs(60))
        .await;
    assert!(seen > 0, "first half stored");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.correlator.kill9();
    p.correlator = world.spawn(Service::Correlator);
    for i in &items[half..] {
        post(&http, &p.ingest.url(), &world.token, &i.input).await;
    }

    // Every event of the session ends up with one trace id (late links re-emitted).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let rows = loop {
        let rows: Vec<Row> = ch
            .query_rows(&format!(
                "SELECT id, trace_id, revision FROM events FINAL WHERE tenant = {tenant}"
            ))
            .await
            .unwrap();
        let traces: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.trace_id.as_str()).collect();
        if rows.len() == ids.len() && traces.len() == 1 && !traces.contains("") {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not one trace yet: {} rows of {}, traces {traces:?}",
            rows.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        rows.iter()
            .all(|r| ids.contains(r.id.as_str()) && r.revision > 0)
    );
    let trace = rows[0].trace_id.clone();

    // The trace record names who started the session and counts what it did.
    #[derive(serde::Deserialize, Debug)]
    struct T {
        kind: String,
        user: String,
        groups: Vec<String>,
        #[serde(rename = "sourceAddresses")]
        source_addresses: Vec<String>,
        pod: String,
        commands: u64,
        fileaccesses: u64,
        connections: u64,
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let t = loop {
        let mut t: Vec<T> = ch
            .query_rows(&format!(
                "SELECT kind, user, groups, sourceAddresses, pod, commands, fileaccesses, connections \
                 FROM traces FINAL WHERE tenant = {tenant} AND traceId = {}",
                store::sql::quote(&trace)
            ))
            .await
            .unwrap();
        if let Some(t) = t.pop().filter(|t| t.commands == 7) {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trace record incomplete"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (t.kind.as_str(), t.user.as_str()),
        ("exec", "alice@example.com")
    );
    assert_eq!(t.groups, ["developers", "system:authenticated"]);
    assert_eq!(t.source_addresses, ["203.0.113.24", "10.0.0.2"]);
    assert_eq!(t.pod, "web-7d9f8-x2x4q");
    assert_eq!((t.fileaccesses, t.connections), (2, 1));

    // The query API returns the whole session from any of its entries.
    let addr = world
        .start_tenant_query_api(pipeline::shutdown::Shutdown::new())
        .await
        .http;
    let cat = labelled
        .iter()
        .find(|l| l.event.comm == "cat" && l.event.kind == schemas::ActivityType::Command)
        .unwrap();
    let url = format!(
        "http://{addr}/api/v1/activity/entries/{}/trace",
        cat.event.id
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "the trace needs a token");
    let v: serde_json::Value = http
        .get(&url)
        .bearer_auth("q")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["trace"]["user"], "alice@example.com", "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        ids.len(),
        "every entry of the session, the origin included"
    );
    let times: Vec<i64> = entries
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    // The process tree: `cat` hangs under the exec'd shell, its file access under `cat`.
    let shell = entries
        .iter()
        .find(|e| e["comm"] == "bash" && e["type"] == "command")
        .unwrap();
    let cat_entry = entries
        .iter()
        .find(|e| e["id"] == cat.event.id.as_str())
        .unwrap();
    assert_eq!(cat_entry["parentEntryId"], shell["id"]);
    let file = entries
        .iter()
        .find(|e| e["type"] == "fileaccess" && e["filename"] == "/etc/passwd")
        .unwrap();
    assert_eq!(file["parentEntryId"], cat_entry["id"]);
}
