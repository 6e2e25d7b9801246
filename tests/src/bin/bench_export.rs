//! Export benchmark: events/s per core of the export stage process (Kafka in, OCSF/ECS
//! records out, acknowledged), next to a pass-through stage (the enricher with no cluster
//! configured: the same consume/decode/encode/produce loop, forwarding event batches) over
//! the same input in the same run; and the encoders alone, in this process.
//!
//! `cargo run --release -p integration-tests --bin aa-bench-export -- --events 500000`
//! (needs the local stack: `deploy/local/stack-up.sh`).
//!
//! Workload: the event generator's realistic mix (commands, connections, file accesses, kube
//! execs over many pods), in messages of `--batch` events as the correlator writes them;
//! `--formats` chooses the exports (one topic each).

use clap::Parser;
use export::{Cloud, Format};
use integration_tests::{Drained, Service, World, cpu::cpu_time, drain_stage_split, generator};
use std::time::Duration;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500_000)]
    events: usize,
    /// Events per input message.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Exports to run, comma separated (ocsf, ecs).
    #[arg(long, default_value = "ocsf")]
    formats: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let formats: Vec<Format> = args
        .formats
        .split(',')
        .map(|f| match f.trim() {
            "ocsf" => Ok(Format::Ocsf),
            "ecs" => Ok(Format::Ecs),
            other => Err(anyhow::anyhow!("unknown format {other:?}")),
        })
        .collect::<Result<_, _>>()?;
    let world = World::new(4).await;
    let now = 1_767_000_000_000_000_000;
    let events = generator::events(31, args.events, now, true);
    let n = events.len();
    let avg_json = generator::ndjson(&events[..1000]).len() / 1000;

    // The encoders alone.
    let cloud = Cloud::default();
    let mut encoded = 0usize;
    let mut line = Vec::with_capacity(4096);
    let cpu0 = cpu_time("self");
    for e in &events {
        for f in &formats {
            line.clear();
            f.write(e, &cloud, &mut line);
            encoded += line.len();
        }
    }
    let encode_cpu = cpu_time("self") - cpu0;

    // Fill both stages' input topics (not measured).
    let bus = pipeline::kafka::Bus::new(&integration_tests::kafka_config(), "bench")?;
    let partitions = bus.partitions(&world.topics.events).await?;
    for topic in [&world.topics.events, &world.topics.raw] {
        for chunk in events.chunks(args.batch * partitions as usize) {
            let records = pipeline::stage::encode_by_partition(chunk, topic, partitions);
            bus.send_all(&records).await?;
        }
    }
    // One export stage run per framing, each with its own consumer group over the same input,
    // and the baseline between them. The record framing writes one broker message per event,
    // which grows the local broker's database the most: it runs last, so it cannot slow the
    // others down.
    let mut runs = Vec::new();
    let mut baseline = None;
    for framing in ["ndjson", "baseline", "record"] {
        if framing == "baseline" {
            baseline = Some(drain_stage_split(&world, Service::Enricher, n, &[]).await?);
            continue;
        }
        let config = world.dir.join(format!("export-{framing}.toml"));
        let mut toml = format!(
            "[topic_setup]\npartitions = {partitions}\nreplication = 1\nmin_insync_replicas = 1\n"
        );
        for f in &formats {
            let name = format!("{f:?}").to_lowercase();
            toml.push_str(&format!(
                "[[exports]]\nname = \"{name}\"\nformat = \"{name}\"\nframing = \"{framing}\"\n\
                 topic = \"{}.{name}.{framing}\"\n",
                world.name
            ));
        }
        std::fs::write(&config, toml)?;
        let cfg = config.to_string_lossy().into_owned();
        let group = format!("{}-export-{framing}", world.name);
        let d = drain_stage_split(
            &world,
            Service::Export,
            n,
            &[("AA_EXPORT_CONFIG", &cfg), ("AA_EXPORT__GROUP", &group)],
        )
        .await?;
        runs.push((framing, d));
    }
    let pass = baseline.expect("baseline measured");
    let per_core = |cpu: Duration| n as f64 / cpu.as_secs_f64().max(1e-9);
    // Besides the whole process: without librdkafka's threads, whose CPU on a slow broker is
    // mostly polling while acknowledgements are awaited (the broker's latency, not our work).
    let line = |what: &str, d: &Drained, vs: Option<&Drained>| {
        let own = d.cpu.saturating_sub(d.kafka_threads);
        let ratio = vs.map_or(String::new(), |b| {
            format!(
                "; {:.2}x pass-through, {:.2}x without librdkafka threads",
                per_core(d.cpu) / per_core(b.cpu),
                per_core(own) / per_core(b.cpu.saturating_sub(b.kafka_threads))
            )
        });
        println!(
            "  {what:<38} {:>9.0} events/s per core, {:>9.0} without librdkafka threads  (cpu {:.2}s of which librdkafka {:.2}s, wall {:.2}s{ratio})",
            per_core(d.cpu),
            per_core(own),
            d.cpu.as_secs_f64(),
            d.kafka_threads.as_secs_f64(),
            d.wall.as_secs_f64(),
        );
    };
    println!(
        "export benchmark: {n} events (~{avg_json} B of JSON each) in messages of {}, exports: {}",
        args.batch, args.formats
    );
    line("baseline pass-through stage (enricher):", &pass, None);
    for (framing, d) in &runs {
        line(
            &format!("export, {framing} framing (Kafka -> Kafka):"),
            d,
            Some(&pass),
        );
    }
    println!("  target: >= 200000 events/s/core");
    println!(
        "  (encoders alone) {:>10.0} events/s per core, {} B per record on average",
        n as f64 / encode_cpu.as_secs_f64().max(1e-9),
        encoded / (n * formats.len()).max(1)
    );
    Ok(())
}
