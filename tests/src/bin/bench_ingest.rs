//! Ingest benchmark: HTTP JSON → Kafka acknowledged, as events/s per core of the ingest
//! process's own CPU time and p50/p99 request latency (answered only after `acks=all`), next
//! to a baseline measured in the same run: the same events, encoded as the same messages,
//! produced to the same topic by a plain rdkafka producer in this process.
//!
//! The broker shares this machine's cores, so one run is noisy: the benchmark runs `--rounds`
//! rounds (native, Falco, baseline in each), prints every round and reports the medians. The
//! ingest CPU is also split out into librdkafka's own threads (`rdk:*`).
//!
//! `cargo run --release -p integration-tests --bin aa-bench-ingest -- --events 300000`
//! (needs the local stack: `deploy/local/stack-up.sh`).

use clap::Parser;
use integration_tests::cpu::{cpu_time, threads_cpu_time};
use integration_tests::{Service, World, generator};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Events per format.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds; the medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

struct Run {
    cpu: Duration,
    /// Of `cpu`, librdkafka's threads.
    rdk: Duration,
    wall: Duration,
    latencies: Vec<Duration>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

/// Posts `bodies` with `concurrency` requests in flight; returns the ingest process's CPU.
async fn load(url: &str, token: &str, bodies: Vec<Vec<u8>>, concurrency: usize, pid: &str) -> Run {
    let http = reqwest::Client::new();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let (cpu0, rdk0, t0) = (cpu_time(pid), threads_cpu_time(pid, "rdk:"), Instant::now());
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, queue, url, token) = (
            http.clone(),
            queue.clone(),
            url.to_string(),
            token.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    break;
                };
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "ingest answered {}", r.status());
                let _ = r.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Run {
        cpu: cpu_time(pid) - cpu0,
        rdk: threads_cpu_time(pid, "rdk:") - rdk0,
        wall: t0.elapsed(),
        latencies,
    }
}

fn falco_alert(e: &schemas::ActivityEvent) -> serde_json::Value {
    serde_json::json!({
        "time": "2025-11-26T10:00:00.000000000Z", "rule": "Activity Audit interactive command",
        "priority": "Notice", "source": "syscall", "hostname": e.hostname, "tags": ["activity_audit"],
        "output": format!("aa command proc.cmdline={}", e.cmdline),
        "output_fields": {
            "evt.type": "execve", "evt.time": e.timestamp, "proc.pid": e.pid, "proc.ppid": e.ppid,
            "proc.name": e.comm, "proc.pname": e.pcomm, "proc.exepath": e.exe, "proc.cmdline": e.cmdline,
            "proc.cwd": e.cwd, "proc.tty": 34816, "proc.loginshellid": e.login_shell_id,
            "proc.pid.ts": e.process_start_time, "user.uid": 0, "user.name": "root", "user.loginuid": -1,
            "user.loginname": null, "container.id": e.container_id, "container.name": e.container_name,
            "container.image.repository": e.container_image, "k8s.ns.name": e.namespace, "k8s.pod.name": e.pod
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::new(4).await;
    let ingest = world.spawn(Service::Ingest);
    let pid = ingest.child.id().to_string();
    let mut events = generator::events(5, args.events, 1_764_000_000_000_000_000, false);
    for e in &mut events {
        e.kind = schemas::ActivityType::Command;
        if e.comm.is_empty() {
            e.comm = "bash".into();
            e.cmdline = "bash -il".into();
        }
    }
    let native: Vec<Vec<u8>> = events.chunks(args.batch).map(generator::ndjson).collect();
    let falco: Vec<Vec<u8>> = events
        .chunks(args.batch)
        .map(|c| {
            let mut b = Vec::new();
            for e in c {
                serde_json::to_writer(&mut b, &falco_alert(e)).unwrap();
                b.push(b'\n');
            }
            b
        })
        .collect();
    let avg = |bodies: &[Vec<u8>]| bodies.iter().map(Vec::len).sum::<usize>() / args.events;
    let (native_b, falco_b) = (avg(&native), avg(&falco));

    // Warm up (connections, metadata), not measured.
    load(
        &format!("{}/v1/events", ingest.url()),
        &world.token,
        native[..2].to_vec(),
        2,
        &pid,
    )
    .await;

    // Baseline: the same events as the same messages, from a plain rdkafka producer.
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "bench-baseline")?;
    let partitions = bus.partitions(&world.topics.raw).await?;
    let mut stamped = events.clone();
    for e in &mut stamped {
        e.tenant.clone_from(&world.tenant);
        e.cluster.clone_from(&world.cluster);
        e.id = format!("{:032x}", e.timestamp);
    }
    let records: Vec<Vec<_>> = stamped
        .chunks(args.batch)
        .map(|c| pipeline::stage::encode_by_partition(c, &world.topics.raw, partitions))
        .collect();

    let per_core = |cpu: Duration| args.events as f64 / cpu.as_secs_f64().max(1e-9);
    let per_wall = |wall: Duration| args.events as f64 / wall.as_secs_f64();
    println!(
        "ingest benchmark: {} events per format, {} per request, {} requests in flight, {} rounds",
        args.events, args.batch, args.concurrency, args.rounds
    );
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let mut runs = Vec::new();
        for (path, bodies) in [("events", &native), ("falco", &falco)] {
            let url = format!("{}/v1/{path}", ingest.url());
            runs.push(load(&url, &world.token, bodies.clone(), args.concurrency, &pid).await);
        }
        let (f, n) = (runs.pop().unwrap(), runs.pop().unwrap());
        let (cpu0, t0) = (cpu_time("self"), Instant::now());
        let mut inflight = Vec::new();
        for r in &records {
            inflight.push(bus.send_all(r));
            if inflight.len() == args.concurrency {
                for f in inflight.drain(..) {
                    f.await?;
                }
            }
        }
        for f in inflight {
            f.await?;
        }
        let (base_cpu, base_wall) = (cpu_time("self") - cpu0, t0.elapsed());
        println!(
            "  round {round}: baseline {:.0}, native {:.0}, Falco {:.0} events/s per core",
            per_core(base_cpu),
            per_core(n.cpu),
            per_core(f.cpu)
        );
        rounds.push((base_cpu, base_wall, n, f));
    }

    let base_core = median(rounds.iter().map(|r| per_core(r.0)).collect());
    let base_wall = median(rounds.iter().map(|r| per_wall(r.1)).collect());
    println!(
        "  baseline rdkafka producer, same messages:  {base_core:>9.0} events/s per core, {base_wall:>8.0} events/s wall"
    );
    for (name, bytes, pick) in [
        ("native JSON", native_b, 0usize),
        ("Falco JSON ", falco_b, 1usize),
    ] {
        let runs: Vec<&Run> = rounds
            .iter()
            .map(|r| if pick == 0 { &r.2 } else { &r.3 })
            .collect();
        let core = median(runs.iter().map(|r| per_core(r.cpu)).collect());
        let core_wo = median(runs.iter().map(|r| per_core(r.cpu - r.rdk)).collect());
        let rdk_share = median(
            runs.iter()
                .map(|r| r.rdk.as_secs_f64() / r.cpu.as_secs_f64().max(1e-9))
                .collect(),
        );
        let wall = median(runs.iter().map(|r| per_wall(r.wall)).collect());
        let mut lat: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.clone()).collect();
        println!(
            "  ingest {name} (~{bytes} B/event):      {core:>9.0} events/s per core, {:>8.0} without librdkafka threads ({:.0}% of its CPU), {wall:>8.0} events/s wall, ack latency p50 {:.1} ms p99 {:.1} ms  ({:.2}x baseline per core, {:.2}x wall)",
            core_wo,
            rdk_share * 100.0,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            core / base_core,
            wall / base_wall,
        );
    }
    println!(
        "  (medians of {} rounds; targets: >= 150000 events/s per core; wall within 0.8x of baseline when the broker is the bottleneck)",
        args.rounds
    );
    Ok(())
}
