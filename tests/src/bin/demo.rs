//! The demo of `deploy/local/up.sh`: streams realistic activity through the native ingest API
//! (as an agent would), waits until all of it is queryable in ClickHouse, then prints counts
//! and sample queries — straight SQL and through the query API.

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
    let url = format!(
        "{}/api/v1/activity/entries?types=command&limit=2",
        args.query_api
    );
    let body: serde_json::Value = http
        .get(&url)
        .bearer_auth(&args.query_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "$ curl -H 'Authorization: Bearer …' '{url}'\n{}",
        serde_json::to_string_pretty(&body)?
    );
    Ok(())
}
