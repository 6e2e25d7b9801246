//! The demo of `deploy/local/up.sh`: streams realistic activity through the native ingest API
//! (as an agent would), waits until all of it is queryable in ClickHouse, then prints counts
//! and sample queries — straight SQL and through the query API; then a kube exec session
//! (audit webhook + Falco) and its whole trace.

use clap::Parser;
use integration_tests::generator;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9410")]
    ingest: String,
    #[arg(long, default_value = "local-dev-token")]
    token: String,
    #[arg(long, default_value = "http://127.0.0.1:9420")]
    query_api: String,
    #[arg(long, default_value = "local-query-token")]
    query_token: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
    #[arg(long, default_value = "activity_audit")]
    database: String,
    /// Tenant of the token (for the SQL samples).
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Events to stream.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ch = store::ClickHouse::new(store::ClickHouseConfig {
        url: args.clickhouse.clone(),
        database: args.database.clone(),
        ..Default::default()
    });
    let before = store::read::count(&ch, &args.tenant).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let seed = (now as u64) ^ 0x5eed;
    // The last ten minutes of activity of a busy cluster.
    let span = 600_000_000_000i64;
    let events = generator::events(seed, args.events, now - span, false)
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.timestamp = now - span + (i as i64) * (span / args.events as i64);
            e
        })
        .collect::<Vec<_>>();
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    for chunk in events.chunks(500) {
        integration_tests::post_events(&http, &args.ingest, &args.token, generator::ndjson(chunk))
            .await;
    }
    println!(
        "demo: posted {} events to {}/v1/events in {:.2}s (each request answered 200 only after Kafka acknowledged it)",
        events.len(),
        args.ingest,
        t0.elapsed().as_secs_f64()
    );
    let want = before + events.len() as u64;
    let mut stored = before;
    while stored < want && t0.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stored = store::read::count(&ch, &args.tenant).await?;
    }
    println!(
        "demo: {} of {} events queryable in ClickHouse after {:.2}s ({} stored for tenant {:?} in total)",
        stored - before,
        events.len(),
        t0.elapsed().as_secs_f64(),
        stored,
        args.tenant
    );
    anyhow::ensure!(stored >= want, "not every event arrived");

    let q = store::sql::quote(&args.tenant);
    let sql = format!(
        "SELECT type, count() AS events FROM events FINAL WHERE tenant = {q} GROUP BY type ORDER BY type FORMAT PrettyCompactMonoBlock"
    );
    println!("\n$ {sql}\n{}", ch.query_text(&sql).await?);
    let sql = format!(
        "SELECT user_name, namespace, pod, sub_resource, command, source_addresses FROM events FINAL \
         WHERE tenant = {q} AND type = 'kubernetes' ORDER BY timestamp DESC LIMIT 5 FORMAT PrettyCompactMonoBlock"
    );
    println!("$ {sql}\n{}", ch.query_text(&sql).await?);
    // The filter language: the latest two reads of /etc/passwd in namespace shop.
    let url = format!("{}/api/v1/activity/entries", args.query_api);
    let filter = r#"cmdline contains "/etc/passwd" and kubernetes.namespace.name = "shop""#;
    // GET a query-api path with parameters, as the demo's token.
    let get = |path: &str, params: Vec<(&str, String)>| {
        let req = http
            .get(format!("{}/api/v1/activity{path}", args.query_api))
            .query(&params)
            .bearer_auth(&args.query_token);
        async move {
            anyhow::Ok(
                req.send()
                    .await?
                    .error_for_status()?
                    .json::<serde_json::Value>()
                    .await?,
            )
        }
    };
    let body = get(
        "/entries",
        vec![
            ("types", "command".into()),
            ("filter", filter.into()),
            ("limit", "2".into()),
        ],
    )
    .await?;
    println!(
        "$ activity-audit query '{filter}' -t command -n 2 -o json   # GET {url}?filter=…\n{}",
        serde_json::to_string_pretty(&body)?
    );
    let hist = get(
        "/histogram",
        vec![
            ("from", (now - 3_600_000_000_000).to_string()),
            ("to", (now + 60_000_000_000).to_string()),
        ],
    )
    .await?;
    println!(
        "$ GET /api/v1/activity/histogram (last hour): {} buckets of {} s, totals {}\n",
        hist["buckets"].as_array().map_or(0, Vec::len),
        hist["bucket"].as_i64().unwrap_or(0) / 1_000_000_000,
        hist["totals"]
    );

    // A `kubectl exec -it … -- bash` session as the API server's audit webhook and Falco
    // report it, then the whole session through the trace endpoint.
    let session =
        integration_tests::scenarios::exec_session(seed, now - 90_000_000_000, "alice@example.com");
    let labelled = integration_tests::scenarios::parse(
        std::slice::from_ref(&session),
        &args.tenant,
        "demo-cluster",
    );
    for item in integration_tests::scenarios::arrival_order(std::slice::from_ref(&session)) {
        integration_tests::post_item(&http, &args.ingest, &args.token, &item.input).await;
    }
    let cat = labelled
        .iter()
        .find(|l| l.event.comm == "cat" && l.event.kind == schemas::ActivityType::Command)
        .expect("the session runs cat");
    let url = format!(
        "{}/api/v1/activity/entries/{}/trace",
        args.query_api, cat.event.id
    );
    // The audit event's two stages are one entry.
    let distinct = labelled
        .iter()
        .map(|l| l.event.id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let t1 = Instant::now();
    let trace = loop {
        let r = http.get(&url).bearer_auth(&args.query_token).send().await?;
        if r.status().is_success() {
            let v: serde_json::Value = r.json().await?;
            if v["entries"].as_array().map(Vec::len) == Some(distinct) {
                break v;
            }
        }
        anyhow::ensure!(
            t1.elapsed() < Duration::from_secs(90),
            "the exec session's trace did not complete"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let t = &trace["trace"];
    println!(
        "\n$ curl -H 'Authorization: Bearer …' '{url}'\n\
         session {} ({}): {} (groups {}) from {} via {}, pod {}/{} container {}, confidence {}",
        t["traceId"].as_str().unwrap_or(""),
        t["kind"].as_str().unwrap_or(""),
        t["user"].as_str().unwrap_or(""),
        t["groups"],
        t["sourceAddresses"],
        t["userAgent"].as_str().unwrap_or(""),
        t["namespace"].as_str().unwrap_or(""),
        t["pod"].as_str().unwrap_or(""),
        t["container"].as_str().unwrap_or(""),
        t["confidence"]
    );
    // The process tree, indented under each entry's parent.
    let entries = trace["entries"].as_array().cloned().unwrap_or_default();
    let depth = |e: &serde_json::Value| {
        let mut d = 0;
        let mut cur = e["parentEntryId"].clone();
        while let Some(p) = cur
            .as_str()
            .and_then(|id| entries.iter().find(|x| x["id"] == id))
        {
            d += 1;
            cur = p["parentEntryId"].clone();
        }
        d
    };
    for e in &entries {
        let what = match e["type"].as_str().unwrap_or("") {
            "kubernetes" => format!(
                "kube {} {} by {}",
                e["subResource"].as_str().unwrap_or(""),
                e["command"].as_str().unwrap_or(""),
                e["user.username"].as_str().unwrap_or("")
            ),
            "command" => format!("$ {}", e["cmdline"].as_str().unwrap_or("")),
            "connection" => format!(
                "-> {}:{}",
                e["serverIp"].as_str().unwrap_or(""),
                e["serverPort"]
            ),
            "fileaccess" => format!(
                "{} {}",
                e["permissions"].as_str().unwrap_or(""),
                e["filename"].as_str().unwrap_or("")
            ),
            other => other.to_string(),
        };
        println!(
            "  {}{what}   [{}]",
            "  ".repeat(depth(e)),
            e["traceLink"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
