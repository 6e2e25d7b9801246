//! The query API on the real ClickHouse: bearer tokens, tenant isolation, newest first,
//! duplicates hidden, bad parameters named.

use integration_tests::{World, free_port, generator};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_authenticated_tenant_scoped_and_deduplicated() {
    let world = World::new(1).await;
    let ch = world.clickhouse();
    // Two tenants' events, the first tenant's inserted twice (a replay).
    let mut mine = generator::events(31, 50, 1_764_000_000_000_000_000, true);
    let mut theirs = generator::events(32, 50, 1_764_000_000_000_000_000, true);
    for e in &mut mine {
        e.tenant.clone_from(&world.tenant);
    }
    for e in &mut theirs {
        e.tenant = "other-tenant".into();
        e.id = format!("other-{}", e.id);
    }
    let columns = store::columns::names();
    for batch in [&mine, &mine, &theirs] {
        let mut body = Vec::new();
        for e in batch.iter() {
            store::row::write_row(&mut body, e);
        }
        ch.insert_rowbinary("events", &columns, body.into())
            .await
            .unwrap();
    }
    let tokens = world.dir.join("query-tokens.toml");
    std::fs::write(
        &tokens,
        format!("[[token]]\ntoken = \"q\"\ntenant = \"{}\"\n", world.tenant),
    )
    .unwrap();
    let port = free_port();
    let cfg = query_api::QueryConfig {
        listen: ([127, 0, 0, 1], port).into(),
        clickhouse: store::ClickHouseConfig {
            url: integration_tests::clickhouse_url(),
            database: world.database.clone(),
            ..Default::default()
        },
        tokens_file: tokens,
        ops: pipeline::config::OpsConfig::on_port(0),
    };
    let shutdown = pipeline::shutdown::Shutdown::new();
    let (addr, _h) = query_api::start(cfg, Default::default(), shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{addr}/api/v1/activity");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // GET `path` with an optional token: (status, body).
    let get = |path: String, token: Option<&'static str>| {
        let mut req = http.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();

    assert_eq!(get("/entries".into(), None).await.0, 401);
    assert_eq!(get("/entries".into(), Some("nope")).await.0, 401);

    let (status, text) = get("/entries?limit=1000".into(), Some("q")).await;
    assert_eq!(status, 200, "{text}");
    let body = json(&text);
    let data = body["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        50,
        "the replayed rows are not shown twice, the other tenant's not at all"
    );
    assert!(data.iter().all(|e| e["tenant"] == world.tenant.as_str()));
    let ts: Vec<i64> = data
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let (status, text) = get("/entries?types=bogus".into(), Some("q")).await;
    assert_eq!(status, 400);
    assert!(text.contains("bogus"));

    let id = &mine[0].id;
    let (status, text) = get(format!("/entries/{id}"), Some("q")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["id"], id.as_str());
    let (status, _) = get(format!("/entries/{}", theirs[0].id), Some("q")).await;
    assert_eq!(status, 404, "another tenant's entry does not exist for us");
    // Injection attempts are values, never SQL.
    let (status, _) = get("/entries/x'%20OR%201=1%20--".into(), Some("q")).await;
    assert_eq!(status, 404);
    shutdown.cancel();
}
