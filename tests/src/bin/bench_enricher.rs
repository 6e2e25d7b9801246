//! Enricher benchmark: events/s per core of the enricher process with a cache of `--pods` pods
//! (watched from an in-process Kubernetes API server), next to the same stage with no cluster
//! configured (events pass through untouched) over the same input in the same run; the
//! enrichment alone; and the memory per cached pod.
//!
//! `cargo run --release -p integration-tests --bin aa-bench-enricher -- --events 1000000`
//! (needs the local stack: `deploy/local/stack-up.sh`).
//!
//! Workload: Falco-like command events that carry only a short container id (the enricher
//! must find namespace, Deployment, pod, container, image and node), spread over the pods.

use clap::Parser;
use enricher::meta::{ClusterMeta, DEFAULT_DROPPED_LABELS, Kind};
use integration_tests::fake_kube::{Fake, kubeconfig, labeled, namespace, node, owned, pod};
use integration_tests::{Service, World, cpu::cpu_time, drain_stage_split};
use pipeline::stage::Transform;
use schemas::{ActivityEvent, ActivityType, Source};
use std::time::Duration;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Pods in the cache (10 per Deployment, 2 containers each).
    #[arg(long, default_value_t = 5_000)]
    pods: usize,
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Only the in-process measurements (no broker).
    #[arg(long)]
    engine_only: bool,
}

fn cid(i: usize, c: usize) -> String {
    format!(
        "{:016x}{:048x}",
        xxhash_rust::xxh3::xxh3_64(&[i as u8, (i >> 8) as u8, (i >> 16) as u8, c as u8]),
        i * 2 + c
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = Fake::default();
    let mut pods = Vec::new();
    let mut rss = Vec::new();
    let mut deployments = Vec::new();
    for d in 0..args.pods.div_ceil(10) {
        let ns = format!("ns-{}", d % 40);
        deployments.push(owned(
            "apps/v1",
            "Deployment",
            &format!("svc-{d}"),
            &ns,
            None,
        ));
        rss.push(owned(
            "apps/v1",
            "ReplicaSet",
            &format!("svc-{d}-6f7c9"),
            &ns,
            Some(("Deployment", &format!("svc-{d}"))),
        ));
    }
    for i in 0..args.pods {
        let d = i / 10;
        let (a, b) = (cid(i, 0), cid(i, 1));
        let app = format!("svc-{d}");
        let team = format!("team-{}", d % 12);
        pods.push(labeled(
            pod(
                &format!("svc-{d}-6f7c9-{i:05}"),
                &format!("ns-{}", d % 40),
                &format!("node-{}", i % 100),
                Some(("ReplicaSet", &format!("svc-{d}-6f7c9"))),
                &[
                    (
                        "app",
                        &format!("registry.example.com/svc-{d}:1.{}", i % 7),
                        Some(&a),
                    ),
                    ("sidecar", "envoyproxy/envoy:v1.31", Some(&b)),
                ],
            ),
            &[
                ("app.kubernetes.io/name", &app),
                ("app.kubernetes.io/part-of", "shop"),
                ("team", &team),
                ("pod-template-hash", "6f7c9"),
            ],
        ));
    }
    let namespaces: Vec<_> = (0..40)
        .map(|n| {
            namespace(
                &format!("ns-{n}"),
                &[
                    ("env", "prod"),
                    ("kubernetes.io/metadata.name", &format!("ns-{n}")),
                ],
            )
        })
        .collect();
    let nodes: Vec<_> = (0..100).map(|n| node(&format!("node-{n}"))).collect();

    // Memory per cached pod, and enrichment alone, on a store built from the same objects.
    let mut meta = ClusterMeta::dropping_labels(DEFAULT_DROPPED_LABELS);
    for p in &pods {
        meta.apply_pod(&serde_json::from_value(p.clone())?);
    }
    for (kind, objects) in [(Kind::ReplicaSet, &rss), (Kind::Deployment, &deployments)] {
        for o in objects {
            meta.apply_controller(kind, &serde_json::from_value(o["metadata"].clone())?);
        }
    }
    for n in &namespaces {
        meta.apply_namespace(&serde_json::from_value(n["metadata"].clone())?);
    }
    for n in &nodes {
        meta.apply_node(&serde_json::from_value(n.clone())?);
    }
    let bytes = meta.heap_bytes();
    fake.set("/api/v1/pods", pods);
    fake.set("/apis/apps/v1/replicasets", rss);
    fake.set("/apis/apps/v1/deployments", deployments);
    fake.set("/api/v1/namespaces", namespaces);
    fake.set("/api/v1/nodes", nodes);

    let (tenant, cluster) = ("bench", "prod");
    let events: Vec<ActivityEvent> = (0..args.events)
        .map(|i| {
            let p = (i * 7919) % args.pods;
            ActivityEvent {
                id: format!("{i:032x}"),
                kind: ActivityType::Command,
                source: Source::Falco,
                tenant: tenant.into(),
                cluster: cluster.into(),
                timestamp: 1_767_000_000_000_000_000 + i as i64 * 1_000,
                hostname: format!("node-{}", p % 100),
                container_id: cid(p, i % 2)[..12].to_string(),
                comm: "curl".into(),
                cmdline: "curl -s http://checkout.shop.svc:8080/healthz".into(),
                exe: "/usr/bin/curl".into(),
                pid: 4242 + i as i64 % 1000,
                ppid: 4200,
                tty: Some(34816),
                uid: Some(0),
                ..Default::default()
            }
        })
        .collect();
    let stores = enricher::watch::Stores::new([(
        (tenant.to_string(), cluster.to_string()),
        std::sync::Arc::new(enricher::watch::Store::new(meta)),
    )]);
    let mut enrich = enricher::Enrich {
        stores,
        wait: Duration::from_millis(1),
    };
    let cpu0 = cpu_time("self");
    let mut enriched = 0usize;
    for chunk in events.chunks(args.batch) {
        let out = enrich.apply(chunk.to_vec()).await;
        enriched += out
            .iter()
            .filter(|e| {
                e.enrichment == "api"
                    && e.workload_kind == "Deployment"
                    && e.pod_labels.len() == 3
                    && e.namespace_labels.len() == 2
            })
            .count();
    }
    let alone = cpu_time("self") - cpu0;
    // The cost of the copies the loop above makes, to subtract it.
    let cpu0 = cpu_time("self");
    for chunk in events.chunks(args.batch) {
        std::hint::black_box(chunk.to_vec());
    }
    let copies = cpu_time("self") - cpu0;
    let n = events.len();
    let alone_line = format!(
        "  (enrichment alone) {:>10.0} events/s per core; {enriched} of {n} events enriched from the API (Deployment, pod and namespace labels)",
        n as f64 / (alone.saturating_sub(copies)).as_secs_f64().max(1e-9)
    );
    let memory_line = format!(
        "  memory: {bytes} bytes for {} cached pods (2 containers and 3 labels each, with ReplicaSets, Deployments, namespaces and nodes) = {} bytes per pod (estimated heap)",
        args.pods,
        bytes / args.pods
    );
    if args.engine_only {
        println!("{alone_line}\n{memory_line}");
        return Ok(());
    }

    // Through Kafka: the real enricher process, watching the fake API server.
    let world = World::new(4).await;
    let events: Vec<ActivityEvent> = events
        .into_iter()
        .map(|mut e| {
            e.tenant.clone_from(&world.tenant);
            e.cluster.clone_from(&world.cluster);
            e
        })
        .collect();
    let port = fake.clone().serve().await;
    let kc = kubeconfig(&world.dir, "bench", port);
    let config = world.dir.join("enricher.toml");
    std::fs::write(
        &config,
        format!(
            "[[clusters]]\ntenant = \"{}\"\nname = \"{}\"\nkubeconfig = \"{}\"\n",
            world.tenant,
            world.cluster,
            kc.display()
        ),
    )?;
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "bench")?;
    let partitions = bus.partitions(&world.topics.raw).await?;
    for chunk in events.chunks(args.batch * partitions as usize) {
        bus.send_all(&pipeline::stage::encode_by_partition(
            chunk,
            &world.topics.raw,
            partitions,
        ))
        .await?;
    }
    let cfg = config.display().to_string();
    let g1 = format!("{}-passthrough", world.name);
    let g2 = format!("{}-enrich", world.name);
    // The measured stage first, the baseline second: what the broker caches in between
    // favours the baseline.
    let enr = drain_stage_split(
        &world,
        Service::Enricher,
        n,
        &[
            ("AA_ENRICHER__GROUP", g2.as_str()),
            ("AA_ENRICHER_CONFIG", cfg.as_str()),
        ],
    )
    .await?;
    let pass = drain_stage_split(
        &world,
        Service::Enricher,
        n,
        &[("AA_ENRICHER__GROUP", g1.as_str())],
    )
    .await?;
    // The enricher's output comes first on the enriched topic: a sample of it must be
    // enriched from the API, not flagged partial (read before the clusters were listed).
    let reader = pipeline::kafka::TailReader::new(&integration_tests::kafka_config(), "bench")?;
    let (lo, _) = reader.watermarks(&world.topics.enriched, 0)?;
    let mut sample = Vec::new();
    for m in reader.read(&world.topics.enriched, 0, lo, lo + 5)? {
        sample.extend(pipeline::stage::decode_valid(&m.payload).0);
    }
    let from_api = sample
        .iter()
        .filter(|e| e.enrichment == "api" && e.workload_kind == "Deployment")
        .count();
    anyhow::ensure!(
        !sample.is_empty() && from_api == sample.len(),
        "only {from_api} of {} sampled output events were enriched from the API",
        sample.len()
    );
    let per_core = |cpu: Duration| n as f64 / cpu.as_secs_f64().max(1e-9);
    println!(
        "enricher benchmark: {n} events, {} pods cached from the Kubernetes API, messages of {} events",
        args.pods, args.batch
    );
    println!(
        "  baseline: same stage, no cluster configured (pass-through): {:>10.0} events/s per core  (cpu {:.2}s, wall {:.2}s)",
        per_core(pass.cpu),
        pass.cpu.as_secs_f64(),
        pass.wall.as_secs_f64()
    );
    println!(
        "  enricher with {} pods cached:                              {:>10.0} events/s per core  (cpu {:.2}s, wall {:.2}s)",
        args.pods,
        per_core(enr.cpu),
        enr.cpu.as_secs_f64(),
        enr.wall.as_secs_f64()
    );
    println!(
        "  (start-up, not counted above) enricher: cpu {:.2}s (connecting, and the first list of {} pods); pass-through: cpu {:.2}s",
        enr.startup.as_secs_f64(),
        args.pods,
        pass.startup.as_secs_f64()
    );
    println!(
        "  enricher / pass-through: {:.2}x   (targets: >= 0.8x, >= 300000 events/s/core)",
        per_core(enr.cpu) / per_core(pass.cpu)
    );
    println!(
        "  output sample: {from_api} of {} events (the first 5 messages of partition 0) enriched from the API",
        sample.len()
    );
    println!("{alone_line}\n{memory_line}");
    Ok(())
}
