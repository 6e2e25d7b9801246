//! Correlator benchmark: events/s per core of the correlator process (Kafka in, sessions,
//! Kafka out), next to a pass-through stage (the enricher, which forwards events unchanged
//! through the same consume/decode/encode/produce loop) over the same input in the same run;
//! the engine alone; and the engine's memory per open session (estimated heap of its state).
//!
//! `cargo run --release -p integration-tests --bin aa-bench-correlator -- --events 1000000`
//! (needs the local stack: `deploy/local/stack-up.sh`).
//!
//! Workload: `--sessions` kubectl exec sessions in as many pods, each opened by its audit
//! event and an exec'd shell, then `--events` agent events round-robin over the sessions: a
//! command under the session's shell followed by a connection or a file access of it, over
//! ten minutes of event time (so most events come from sessions past the hold window, as in
//! steady state, and the rest are held for late links).

use clap::Parser;
use integration_tests::{Service, World, cpu::cpu_time, drain_stage};
use schemas::{ActivityEvent, ActivityType, Source};
use std::time::Duration;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Agent events (plus one audit event and one shell per session).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Concurrent open sessions.
    #[arg(long, default_value_t = 5_000)]
    sessions: usize,
    /// Events per input message (as ingest batches them per partition).
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Only the in-process engine measurements (no broker).
    #[arg(long)]
    engine_only: bool,
}

const BASE: i64 = 1_767_000_000_000_000_000;
const S: i64 = 1_000_000_000;

fn workload(tenant: &str, cluster: &str, sessions: usize, events: usize) -> Vec<ActivityEvent> {
    let mut out = Vec::with_capacity(events + 2 * sessions);
    let span = 600 * S;
    let dt = span / events.max(1) as i64;
    let pod = |s: usize| format!("web-{s:05}-7d9f8");
    let base = |s: usize, t: i64| ActivityEvent {
        tenant: tenant.into(),
        cluster: cluster.into(),
        namespace: "shop".into(),
        pod: pod(s),
        hostname: format!("node-{}", s % 50),
        node: format!("node-{}", s % 50),
        container_name: "app".into(),
        container_id: format!("{s:012x}"),
        container_image: "nginx:1.25".into(),
        timestamp: t,
        source: Source::Falco,
        ..Default::default()
    };
    let start = |s: usize| BASE + (s as i64 * 60 * S) / sessions as i64;
    let mut pid = 10_000i64;
    for s in 0..sessions {
        let t = start(s);
        let mut a = base(s, t);
        a.kind = ActivityType::Kubernetes;
        a.source = Source::K8sAudit;
        a.id = schemas::id::hash_id(&[b"audit", &s.to_le_bytes()]);
        a.verb = "create".into();
        a.resource = "pods".into();
        a.sub_resource = "exec".into();
        a.command = "bash".into();
        a.container = "app".into();
        a.tty = Some(1);
        a.user_name = format!("user{}", s % 40);
        a.source_addresses = vec!["203.0.113.9".into()];
        a.hostname.clear();
        a.node.clear();
        a.container_id.clear();
        a.container_name.clear();
        out.push(a);
        let mut root = base(s, t + 200_000_000);
        pid += 1;
        root.id = schemas::id::hash_id(&[b"root", &s.to_le_bytes()]);
        root.kind = ActivityType::Command;
        root.comm = "bash".into();
        root.cmdline = "bash".into();
        root.pid = pid;
        root.process_start_time = root.timestamp;
        root.exec_id = format!("{}:{pid}:{}", root.hostname, root.timestamp);
        root.in_init_tree = Some(false);
        root.tty = Some(34816);
        root.pcomm = "runc".into();
        out.push(root);
    }
    out.sort_by_key(|e| e.timestamp);
    for i in 0..events / 2 {
        let s = i % sessions;
        let t = BASE + 60 * S + 2 * i as i64 * dt;
        pid += 1;
        let host = format!("node-{}", s % 50);
        let shell = format!("{host}:{}:{}", 10_001 + s as i64, start(s) + 200_000_000);
        let mut c = base(s, t);
        c.id = schemas::id::hash_id(&[b"cmd", &i.to_le_bytes()]);
        c.kind = ActivityType::Command;
        c.comm = "curl".into();
        c.cmdline = "curl -s http://checkout.shop.svc:8080/healthz".into();
        c.exe = "/usr/bin/curl".into();
        c.pid = pid;
        c.ppid = 10_001 + s as i64;
        c.pcomm = "bash".into();
        c.tty = Some(34816);
        c.login_shell_id = Some(c.ppid);
        c.process_start_time = t;
        c.exec_id = format!("{host}:{pid}:{t}");
        c.parent_exec_id = shell;
        let mut d = c.clone();
        d.id = schemas::id::hash_id(&[b"act", &i.to_le_bytes()]);
        d.timestamp = t + dt;
        if i % 2 == 0 {
            d.kind = ActivityType::Connection;
            d.direction = "out".into();
            d.l4protocol = "tcp".into();
            d.client_ip = "10.0.3.7".into();
            d.client_port = 41234;
            d.server_ip = "10.96.4.4".into();
            d.server_port = 8080;
        } else {
            d.kind = ActivityType::Fileaccess;
            d.filename = "/etc/passwd".into();
            d.directory = "/etc".into();
            d.permissions = "r".into();
        }
        d.parent_exec_id.clear();
        d.pcomm.clear();
        out.push(c);
        out.push(d);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::new(4).await;
    let events = workload(&world.tenant, &world.cluster, args.sessions, args.events);
    let n = events.len();
    let avg_json = integration_tests::generator::ndjson(&events[..1000]).len() / 1000;

    // The engine alone, in this process: CPU per event and live bytes per open session.
    let mut parts: Vec<Vec<ActivityEvent>> = vec![Vec::new(); 4];
    for e in &events {
        let p = schemas::topics::partition_for(&schemas::topics::partition_key(e), 4);
        parts[p as usize].push(e.clone());
    }
    let cpu0 = cpu_time("self");
    let mut engines = Vec::new();
    let (mut linked, mut emitted) = (0usize, 0usize);
    for (p, evs) in parts.into_iter().enumerate() {
        let mut engine = correlator::engine::Engine::new(Default::default());
        let mut input = evs.into_iter();
        let mut offset = 0u64;
        loop {
            let message: Vec<ActivityEvent> = input.by_ref().take(args.batch).collect();
            if message.is_empty() {
                break;
            }
            let out = engine.process(offset, message);
            emitted += out.events.len();
            linked += out.events.iter().filter(|e| !e.trace_id.is_empty()).count();
            offset += 1;
        }
        engine.sweep();
        let _ = p;
        engines.push(engine);
    }
    let engine_cpu = cpu_time("self") - cpu0;
    let sizes: Vec<_> = engines.iter().map(|e| e.sizes()).collect();
    let live: usize = engines.iter().map(|e| e.heap_bytes()).sum();
    drop(engines);
    let processes: usize = sizes.iter().map(|s| s.processes).sum();
    let held: usize = sizes.iter().map(|s| s.held_events).sum();
    let traces: usize = sizes.iter().map(|s| s.traces).sum();
    let engine_line = format!(
        "  (engine alone) {:>10.0} events/s per core; {linked} of {emitted} emitted events linked to a session",
        n as f64 / engine_cpu.as_secs_f64().max(1e-9)
    );
    let memory_line = format!(
        "  memory: {} bytes of engine state (estimated heap) for {} open sessions = {} bytes per open session ({processes} processes = {:.1} per session, {} bytes per process; {held} held events, {traces} traces)",
        live,
        args.sessions,
        live / args.sessions,
        processes as f64 / args.sessions as f64,
        live / processes.max(1)
    );
    if args.engine_only {
        println!("{engine_line}\n{memory_line}");
        return Ok(());
    }

    // Fill the input topic (not measured).
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "bench")?;
    let partitions = bus.partitions(&world.topics.enriched).await?;
    for chunk in events.chunks(args.batch * partitions as usize) {
        let records =
            pipeline::stage::encode_by_partition(chunk, &world.topics.enriched, partitions);
        bus.send_all(&records).await?;
    }
    // The enricher reads `raw`: give it the same messages there.
    for chunk in events.chunks(args.batch * partitions as usize) {
        let records = pipeline::stage::encode_by_partition(chunk, &world.topics.raw, partitions);
        bus.send_all(&records).await?;
    }

    // The measured stage first, the baseline second: what the broker caches in between
    // favours the baseline.
    // The production snapshot interval (the test harness snapshots every second, so that a
    // crash in a test replays little).
    let interval = correlator::CorrelatorConfig::default()
        .snapshot_interval_ms
        .to_string();
    let production = [("AA_CORRELATOR__SNAPSHOT_INTERVAL_MS", interval.as_str())];
    let (corr_cpu, corr_wall) = drain_stage(&world, Service::Correlator, n, &production).await?;
    let (pass_cpu, pass_wall) = drain_stage(&world, Service::Enricher, n, &[]).await?;

    let per_core = |cpu: Duration| n as f64 / cpu.as_secs_f64().max(1e-9);
    println!(
        "correlator benchmark: {n} events (~{avg_json} B of JSON each), {} open exec sessions in {} pods, messages of {} events",
        args.sessions, args.sessions, args.batch
    );
    println!(
        "  baseline pass-through stage (enricher):  {:>10.0} events/s per core  (cpu {:.2}s, wall {:.2}s)",
        per_core(pass_cpu),
        pass_cpu.as_secs_f64(),
        pass_wall.as_secs_f64()
    );
    println!(
        "  correlator (Kafka -> sessions -> Kafka): {:>10.0} events/s per core  (cpu {:.2}s, wall {:.2}s)",
        per_core(corr_cpu),
        corr_cpu.as_secs_f64(),
        corr_wall.as_secs_f64()
    );
    println!(
        "  correlator / pass-through: {:.2}x   (target: >= 200000 events/s/core)",
        per_core(corr_cpu) / per_core(pass_cpu)
    );
    println!("{engine_line}\n{memory_line}");
    Ok(())
}
