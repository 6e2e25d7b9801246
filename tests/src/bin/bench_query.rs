//! Query API benchmark: loads realistic events into ClickHouse (default 1e7 over 7 days, four
//! tenants, sessions with trace records), then prints p50/p99 latency of each endpoint over
//! HTTP next to the same SQL statements — captured from the API as it ran them — sent directly
//! to ClickHouse in the same run, with the same concurrency. Also prints the compressed bytes
//! per stored event, overall and for command events alone.
//!
//! `cargo run --release -p integration-tests --bin aa-bench-query -- --events 10000000`
//! (needs the local stack: `deploy/local/stack-up.sh`). The loaded database
//! (`aa_bench_query_<events>`) is kept and reused by later runs; `--reload` rebuilds it.

use clap::Parser;
use integration_tests::{clickhouse, generator};
use schemas::ActivityType;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events to load.
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    /// Days the events span.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Measured runs per endpoint (after two warm-up runs).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Rebuild the database even if it holds the right number of events.
    #[arg(long)]
    reload: bool,
}

const TENANT: &str = "bench";
/// Events per session, and one block in ten of the main tenant's events is a session.
const SESSION: usize = 100;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = format!("aa_bench_query_{}", args.events);
    let ch = clickhouse(&db);
    let loaded: u64 = match ch.query_text("SELECT count() FROM events").await {
        Ok(t) => t.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    if args.reload || loaded != args.events as u64 {
        let _ = ch
            .execute_without_db(&format!("DROP DATABASE IF EXISTS {db}"))
            .await;
        store::migrations::apply(&ch).await?;
        load(&ch, args.events, args.days).await?;
    } else {
        println!("reusing {db}: {loaded} events");
        store::migrations::apply(&ch).await?;
    }
    // The writer's rollup pass, at once (no settle time): hours not yet computed.
    let t = Instant::now();
    let hours = store::rollup::roll_up(&ch, 0, 0).await?;
    if hours > 0 {
        println!(
            "hourly counts: {hours} hours computed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let end: i64 = ch
        .query_text(&format!(
            "SELECT max(timestamp) FROM events WHERE tenant = '{TENANT}'"
        ))
        .await?
        .trim()
        .parse()?;
    let tenant_events: u64 = ch
        .query_text(&format!(
            "SELECT count() FROM events WHERE tenant = '{TENANT}'"
        ))
        .await?
        .trim()
        .parse()?;

    // The API in this process, its ClickHouse client logging each statement it runs.
    let log: store::client::StatementLog = Arc::new(Mutex::new(Vec::new()));
    let dir = std::env::temp_dir().join(format!("aa-bench-query-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[token]]\ntoken = \"admin\"\ntenant = \"{TENANT}\"\n\
             [[token]]\ntoken = \"team\"\ntenant = \"{TENANT}\"\n\
             scope = 'kubernetes.namespace.name = \"payments\"'\npermissions = [\"commands.read\"]\n"
        ),
    )?;
    let cfg = query_api::QueryConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        clickhouse: store::ClickHouseConfig {
            url: integration_tests::clickhouse_url(),
            database: db.clone(),
            ..Default::default()
        },
        tokens_file: tokens,
        ops: pipeline::config::OpsConfig::on_port(0),
        ..Default::default()
    };
    let api_ch = store::ClickHouse::new(cfg.clickhouse.clone()).logging_statements(log.clone());
    let shutdown = pipeline::shutdown::Shutdown::new();
    let (bound, _h) = query_api::serve(cfg, api_ch, Default::default(), shutdown.clone()).await?;
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1/activity", bound.http);

    const H: i64 = 3600 * 1_000_000_000;
    let (h1, h24, d7) = (
        (end + 1 - H).to_string(),
        (end + 1 - 24 * H).to_string(),
        (end + 1 - 7 * 24 * H).to_string(),
    );
    let to = (end + 1).to_string();
    // An entry inside a session, and the next-page cursor of a filtered page.
    let in_session: String = ch
        .query_text(&format!(
            "SELECT id FROM events WHERE tenant = '{TENANT}' AND trace_id != '' \
             AND type = 'command' AND timestamp > {} LIMIT 1",
            end - 24 * H
        ))
        .await?
        .trim()
        .to_string();
    let shop = "kubernetes.namespace.name = \"shop\" and comm != \"ps\"";
    let first: serde_json::Value = http
        .get(format!("{base}/entries"))
        .bearer_auth("admin")
        .query(&[("from", h24.as_str()), ("to", &to), ("filter", shop)])
        .send()
        .await?
        .json()
        .await?;
    let next = first["page"]["next"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // (name, token, path, params, plan): the plan says how the API ran its statements, by
    // their order in the log: stages one after the other; in a stage, lanes in parallel; in
    // a lane, statements one after the other. The direct run replays exactly that.
    type Case<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>, Plan);
    // a page: key probes one after another beside the total, then the rows (`page_plan`)
    let page = Plan::Page;
    let one = Plan::Fixed(&[&[&[0]]]);
    let histogram = Plan::Histogram;
    let cases: Vec<Case> = vec![
        (
            "page, last 1 h, no filter",
            "admin",
            "/entries".into(),
            vec![("from", &h1), ("to", &to)],
            page,
        ),
        (
            "filtered page, 24 h",
            "admin",
            "/entries".into(),
            vec![("from", &h24), ("to", &to), ("filter", shop)],
            page,
        ),
        (
            "next page (cursor), 24 h",
            "admin",
            "/entries".into(),
            vec![("cursor", &next), ("filter", shop)],
            page,
        ),
        (
            "filtered page, 7 d",
            "admin",
            "/entries".into(),
            vec![
                ("from", &d7),
                ("to", &to),
                (
                    "filter",
                    "cmdline contains \"passwd\" and kubernetes.cluster.name = \"prod-eu\"",
                ),
            ],
            page,
        ),
        (
            "team-scoped page, 7 d",
            "team",
            "/entries".into(),
            vec![("from", &d7), ("to", &to), ("filter", "comm = psql")],
            page,
        ),
        (
            "histogram, 24 h",
            "admin",
            "/histogram".into(),
            vec![("from", &h24), ("to", &to)],
            histogram,
        ),
        (
            "histogram, 7 d, filtered",
            "admin",
            "/histogram".into(),
            vec![("from", &d7), ("to", &to), ("filter", shop)],
            histogram,
        ),
        (
            "groups, 24 h",
            "admin",
            "/groups".into(),
            vec![("from", &h24), ("to", &to)],
            one,
        ),
        (
            "values comm, 24 h",
            "admin",
            "/values".into(),
            vec![("from", &h24), ("to", &to), ("attribute", "comm")],
            one,
        ),
        (
            "entry by id",
            "admin",
            format!("/entries/{in_session}"),
            vec![],
            Plan::Fixed(&[&[&[0]], &[&[1]]]),
        ),
        (
            "trace",
            "admin",
            format!("/entries/{in_session}/trace"),
            vec![],
            // entry (locate, read), record, then members ‖ ambiguous ‖ origin (locate, read)
            Plan::Fixed(&[&[&[0]], &[&[1]], &[&[2]], &[&[3], &[4], &[5, 6]]]),
        ),
    ];

    println!(
        "\n{} events stored ({} of tenant {TENANT}), {} days; {} runs per endpoint\n",
        args.events, tenant_events, args.days, args.runs
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "endpoint", "API p50", "API p99", "SQL p50", "SQL p99", "p50 x"
    );
    for (name, token, path, params, plan) in cases {
        let url = format!("{base}{path}");
        let call = || {
            let req = http.get(&url).bearer_auth(token).query(&params);
            async move {
                let r = req.send().await?;
                anyhow::ensure!(
                    r.status().is_success(),
                    "{}: {}",
                    r.status(),
                    r.text().await?
                );
                r.bytes().await?;
                anyhow::Ok(())
            }
        };
        // warm up, and capture the statements of one call
        call().await?;
        log.lock().unwrap().clear();
        call().await?;
        let statements = std::mem::take(&mut *log.lock().unwrap());
        let plan: Vec<Vec<Vec<usize>>> = match plan {
            Plan::Page => page_plan(&statements),
            Plan::Histogram => histogram_plan(&statements),
            Plan::Fixed(p) => p
                .iter()
                .map(|s| s.iter().map(|l| l.to_vec()).collect())
                .collect(),
        };
        let planned = plan.iter().flatten().map(Vec::len).sum::<usize>();
        anyhow::ensure!(
            statements.len() == planned,
            "{name}: the API ran {} statements, the plan has {planned}",
            statements.len()
        );
        let (statements, ch, plan) = (&statements, &ch, &plan);
        let direct = || async move {
            for stage in plan {
                futures::future::try_join_all(stage.iter().map(|lane| async move {
                    for i in lane {
                        ch.query_text(&statements[*i]).await?;
                    }
                    anyhow::Ok(())
                }))
                .await?;
            }
            anyhow::Ok(())
        };
        direct().await?;
        let (mut api, mut sql) = (Vec::new(), Vec::new());
        for _ in 0..args.runs {
            let t = Instant::now();
            call().await?;
            api.push(t.elapsed());
            let t = Instant::now();
            direct().await?;
            sql.push(t.elapsed());
        }
        let (a50, a99, s50, s99) = (
            pct(&mut api, 50),
            pct(&mut api, 99),
            pct(&mut sql, 50),
            pct(&mut sql, 99),
        );
        println!(
            "{name:<28} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>7.2}x",
            ms(a50),
            ms(a99),
            ms(s50),
            ms(s99),
            a50.as_secs_f64() / s50.as_secs_f64()
        );
    }
    shutdown.cancel();

    // Storage.
    let parts = |table: &str| {
        format!(
            "SELECT sum(data_compressed_bytes), sum(rows) FROM system.parts \
             WHERE database = '{db}' AND table = '{table}' AND active"
        )
    };
    let per_row = |t: String| -> anyhow::Result<(f64, u64)> {
        let mut it = t.split_whitespace();
        let bytes: f64 = it.next().unwrap_or("0").parse()?;
        let rows: u64 = it.next().unwrap_or("0").parse()?;
        Ok((bytes / rows.max(1) as f64, rows))
    };
    ch.execute("OPTIMIZE TABLE events FINAL").await.ok();
    let (all, rows) = per_row(ch.query_text(&parts("events")).await?)?;
    ch.execute("DROP TABLE IF EXISTS commands_only").await?;
    ch.execute("CREATE TABLE commands_only AS events").await?;
    ch.execute("INSERT INTO commands_only SELECT * FROM events WHERE type = 'command'")
        .await?;
    ch.execute("OPTIMIZE TABLE commands_only FINAL").await?;
    let (cmd, cmd_rows) = per_row(ch.query_text(&parts("commands_only")).await?)?;
    ch.execute("DROP TABLE commands_only").await?;
    println!(
        "\nstorage: {all:.1} bytes per event compressed ({rows} events), \
         {cmd:.1} bytes per command event ({cmd_rows} command events alone)"
    );
    Ok(())
}

/// How the API ran an endpoint's statements: stages one after the other; in a stage, lanes in
/// parallel; in a lane, statements one after the other.
#[derive(Clone, Copy)]
enum Plan {
    Fixed(&'static [&'static [&'static [usize]]]),
    /// See [`page_plan`].
    Page,
    /// See [`histogram_plan`].
    Histogram,
}

/// How a histogram ran its statements: one scan; or the current hours of the hourly counts
/// (`SELECT hour …`), then the scan of the rest beside the read of the counts.
fn histogram_plan(statements: &[String]) -> Vec<Vec<Vec<usize>>> {
    match statements.len() {
        1 => vec![vec![vec![0]]],
        n => vec![vec![vec![0]], (1..n).map(|i| vec![i]).collect()],
    }
}

/// How a page ran its statements: the key probes (`SELECT timestamp, id …`) one after another
/// beside the total (`SELECT count() AS n …`), then the rows of the keys.
fn page_plan(statements: &[String]) -> Vec<Vec<Vec<usize>>> {
    let (mut probes, mut total, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in statements.iter().enumerate() {
        if s.starts_with("SELECT timestamp, id") {
            probes.push(i);
        } else if s.starts_with("SELECT count() AS n") {
            total.push(i);
        } else {
            rows.push(i);
        }
    }
    let first = [probes, total]
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    vec![first, vec![rows]]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[((v.len() * p).div_ceil(100))
        .saturating_sub(1)
        .min(v.len() - 1)]
}

/// Loads `n` events spread over `days` days ending now: tenant `bench` 70 %, three others
/// 10 % each; two clusters; one block of [`SESSION`] events in ten is a session with a trace
/// record.
async fn load(ch: &store::ClickHouse, n: usize, days: i64) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let end = query_api::query::now_ns();
    let start = end - days * 86400 * 1_000_000_000;
    let step = (end - start) / n as i64;
    let columns = store::columns::names();
    let mut rng = generator::Rng::new(7);
    let mut bench_i = 0usize;
    let mut traces = Vec::new();
    let mut session: Option<schemas::TraceRecord> = None;
    const CHUNK: usize = 250_000;
    for chunk_start in (0..n).step_by(CHUNK) {
        let mut body = Vec::with_capacity(CHUNK * 450);
        let mut ends = Vec::with_capacity(CHUNK);
        for i in chunk_start..(chunk_start + CHUNK).min(n) {
            let ts = start + i as i64 * step + rng.below(step.max(1) as u64) as i64;
            let mut e = generator::event(&mut rng, ts);
            // ids as ingest makes them (128-bit hashes); one container id per pod
            e.id = schemas::id::hash_id(&[b"bench", &(i as u64).to_le_bytes()]);
            e.container_id = schemas::id::hash_id(&[e.pod.as_bytes()])[..12].to_string();
            e.received_timestamp = ts + 500_000_000 + rng.below(1_000_000_000) as i64;
            e.cluster = if rng.below(3) == 0 {
                "prod-us"
            } else {
                "prod-eu"
            }
            .into();
            e.tenant = match rng.below(10) {
                0 => "acme".into(),
                1 => "globex".into(),
                2 => "initech".into(),
                _ => TENANT.into(),
            };
            if e.tenant == TENANT {
                let block = bench_i / SESSION;
                if block.is_multiple_of(10) {
                    let tid = format!("trace-{block}");
                    let rec = session.get_or_insert_with(|| schemas::TraceRecord {
                        tenant: TENANT.into(),
                        trace_id: tid.clone(),
                        kind: "exec".into(),
                        origin_id: e.id.clone(),
                        user: "alice@example.com".into(),
                        groups: vec!["system:masters".into()],
                        source_addresses: vec!["203.0.113.7".into()],
                        cluster: e.cluster.clone(),
                        namespace: e.namespace.clone(),
                        pod: e.pod.clone(),
                        start: ts,
                        confidence: 1.0,
                        revision: 1,
                        ..Default::default()
                    });
                    rec.end = ts;
                    match e.kind {
                        ActivityType::Command => rec.commands += 1,
                        ActivityType::Connection => rec.connections += 1,
                        ActivityType::Fileaccess => rec.fileaccesses += 1,
                        ActivityType::Kubernetes => {}
                    }
                    e.trace_id = tid;
                    e.trace_confidence = 1.0;
                } else if let Some(rec) = session.take() {
                    traces.push(rec);
                }
                bench_i += 1;
            }
            store::row::write_row(&mut body, &e);
            ends.push(body.len());
        }
        // The hours written are marked as the writer marks them.
        let hours = store::rollup::touched_hours(&body, &ends);
        ch.insert_rowbinary("events", &columns, body.into()).await?;
        store::rollup::mark(ch, &hours).await?;
        eprint!("\rloaded {} events", (chunk_start + CHUNK).min(n));
    }
    traces.extend(session);
    for chunk in traces.chunks(10_000) {
        let mut body = Vec::new();
        for r in chunk {
            serde_json::to_writer(&mut body, r)?;
            body.push(b'\n');
        }
        ch.insert_json_lines("traces", body.into()).await?;
    }
    eprintln!(
        "\rloaded {n} events and {} traces in {:.0} s",
        traces.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
