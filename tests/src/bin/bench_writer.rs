//! Writer benchmark: rows/s per core of the writer's own CPU time, next to a baseline measured
//! in the same run: the same rows inserted directly into ClickHouse (RowBinary over HTTP, the
//! same batch size) by this process.
//!
//! `cargo run --release -p integration-tests --bin aa-bench-writer -- --events 400000`
//! (needs the local stack: `deploy/local/stack-up.sh`).

use clap::Parser;
use integration_tests::{Service, World, cpu::cpu_time, generator};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events to write.
    #[arg(long, default_value_t = 400_000)]
    events: usize,
    /// Rows per insert, for both the writer and the baseline.
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    integration_tests::bin_dir(); // the writer is built before any clock starts
    let world = World::new(4).await;
    let n = args.events;
    let events = generator::events(3, n, 1_764_000_000_000_000_000, true)
        .into_iter()
        .map(|mut e| {
            e.tenant.clone_from(&world.tenant);
            e.cluster.clone_from(&world.cluster);
            e.received_timestamp = e.timestamp + 1;
            e
        })
        .collect::<Vec<_>>();
    let avg_json = generator::ndjson(&events[..1000]).len() / 1000;

    // Baseline: the same rows straight into ClickHouse from this process.
    let ch = world.clickhouse();
    ch.execute("CREATE TABLE baseline AS events").await?;
    let columns = store::columns::names();
    let (cpu0, t0) = (cpu_time("self"), Instant::now());
    for chunk in events.chunks(args.batch) {
        let mut body = Vec::with_capacity(chunk.len() * 400);
        for e in chunk {
            store::row::write_row(&mut body, e);
        }
        ch.insert_rowbinary("baseline", &columns, body.into())
            .await?;
    }
    let (base_cpu, base_wall) = (cpu_time("self") - cpu0, t0.elapsed());

    // Baseline 2: ClickHouse's own client inserting the same events as JSON lines (the
    // "direct clickhouse-client insert" of the brief), CPU of the client process.
    let client = clickhouse_client_insert(&world, &events).await?;

    // Diagnostic: the writer's per-row work without Kafka and HTTP (JSON line -> row).
    let lines = generator::ndjson(&events);
    let cpu0 = cpu_time("self");
    let mut body = Vec::with_capacity(lines.len() / 2);
    let mut rows = 0usize;
    let mut raw = schemas::json::RawEvent::default();
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        store::row::transcode(&mut body, &mut raw, line).map_err(anyhow::Error::msg)?;
        rows += 1;
        if body.len() > 64 << 20 {
            body.clear();
        }
    }
    let transcode_cpu = cpu_time("self") - cpu0;
    drop(body);

    // Fill the final topic (not measured), then let a real writer process drain it.
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "bench")?;
    for chunk in events.chunks(5_000) {
        schemas_publish(&bus, &world.topics.events, chunk).await?;
    }
    let (t1, mut writer) = (Instant::now(), world.spawn(Service::Writer));
    let pid = writer.child.id().to_string();
    let got = world.wait_count(n as u64, Duration::from_secs(600)).await;
    let (writer_cpu, writer_wall) = (cpu_time(&pid), t1.elapsed());
    writer.kill9();
    anyhow::ensure!(got == n as u64, "writer stored {got} of {n} rows");

    let per_core = |rows: usize, cpu: Duration| rows as f64 / cpu.as_secs_f64().max(1e-9);
    let (w, b) = (per_core(n, writer_cpu), per_core(n, base_cpu));
    println!(
        "writer benchmark: {n} events (~{avg_json} B of JSON each), batches of {}",
        args.batch
    );
    println!(
        "  baseline direct INSERT (RowBinary, this process): {:>10.0} rows/s per core  (cpu {:.2}s, wall {:.2}s)",
        b,
        base_cpu.as_secs_f64(),
        base_wall.as_secs_f64()
    );
    println!(
        "  writer (Kafka -> JSON decode -> RowBinary insert): {:>10.0} rows/s per core  (cpu {:.2}s, wall {:.2}s incl. startup and broker)",
        w,
        writer_cpu.as_secs_f64(),
        writer_wall.as_secs_f64()
    );
    if let Some((cpu, wall)) = client {
        let c = per_core(n, cpu);
        println!(
            "  baseline clickhouse-client JSONEachRow insert:     {:>10.0} rows/s per core  (cpu {:.2}s, wall {:.2}s)",
            c,
            cpu.as_secs_f64(),
            wall.as_secs_f64()
        );
        println!("  writer / clickhouse-client: {:.2}x", w / c);
    }
    println!(
        "  (diagnostic) JSON line -> row transcoding alone:  {:>10.0} rows/s per core",
        per_core(rows, transcode_cpu)
    );
    println!(
        "  writer / direct RowBinary insert: {:.2}x   (targets: >= 0.8x, >= 500000 rows/s/core)",
        w / b
    );
    Ok(())
}

async fn schemas_publish(
    bus: &pipeline::kafka::Bus,
    topic: &str,
    events: &[schemas::ActivityEvent],
) -> anyhow::Result<()> {
    let partitions = bus.partitions(topic).await?;
    let records = pipeline::stage::encode_by_partition(events, topic, partitions);
    bus.send_all(&records).await?;
    Ok(())
}

/// Inserts `events` with `clickhouse-client` (JSONEachRow with column names, as a user would
/// load the same data), returning the client's CPU time and the wall time; `None` when the
/// client is not installed.
async fn clickhouse_client_insert(
    world: &World,
    events: &[schemas::ActivityEvent],
) -> anyhow::Result<Option<(Duration, Duration)>> {
    if std::process::Command::new("clickhouse-client")
        .arg("--version")
        .output()
        .is_err()
    {
        return Ok(None);
    }
    let path = world.dir.join("baseline.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for e in events {
        let v = serde_json::to_value(e)?;
        let mut row = serde_json::Map::new();
        for c in store::columns::COLUMNS {
            let val = v
                .get(c.attribute)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let val = match (c.kind, val) {
                (store::columns::Kind::Bool, serde_json::Value::Bool(b)) => {
                    serde_json::json!(b as u8)
                }
                (_, serde_json::Value::Null) if !c.ch_type.starts_with("Nullable") => {
                    match c.ch_type {
                        "Int64" | "UInt16" | "UInt8" => serde_json::json!(0),
                        "Array(String)" => serde_json::json!([]),
                        _ => serde_json::json!(""),
                    }
                }
                (_, v) => v,
            };
            row.insert(c.name.to_string(), val);
        }
        serde_json::to_writer(&mut out, &row)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    drop(out);
    let port = std::env::var("AA_CH_TCP_PORT").unwrap_or_else(|_| "9000".into());
    let script = format!(
        "clickhouse-client --port {port} --database {} --query 'INSERT INTO baseline2 FORMAT JSONEachRow' < {} && times",
        world.database,
        path.display()
    );
    let t0 = Instant::now();
    world
        .clickhouse()
        .execute("CREATE TABLE baseline2 AS events")
        .await?;
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()?;
    let wall = t0.elapsed();
    anyhow::ensure!(
        o.status.success(),
        "clickhouse-client: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `times` prints the shell's times, then its children's: "0m1.234s 0m0.123s".
    let text = String::from_utf8_lossy(&o.stdout);
    let children = text.lines().nth(1).unwrap_or("");
    let secs = |t: &str| -> f64 {
        let (m, s) = t
            .trim_end_matches('s')
            .split_once('m')
            .unwrap_or(("0", "0"));
        m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0)
    };
    let cpu: f64 = children.split_whitespace().map(secs).sum();
    Ok(Some((Duration::from_secs_f64(cpu), wall)))
}
