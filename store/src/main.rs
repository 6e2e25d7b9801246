//! `activity-audit-writer`: lands the final event topic in ClickHouse.

use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Activity Audit writer: final topic -> ClickHouse")]
struct Args {
    /// TOML config file; `AA_WRITER__…` variables override it.
    #[arg(long, env = "AA_WRITER_CONFIG")]
    config: Option<PathBuf>,
    /// Apply ClickHouse migrations and exit.
    #[arg(long)]
    migrate_only: bool,
    /// Set up an install and exit: create the topics with `[topic_setup]` (existing ones are
    /// left alone) and apply the ClickHouse migrations.
    #[arg(long, conflicts_with = "migrate_only")]
    setup: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::alloc::tune();
    pipeline::telemetry::init();
    let args = Args::parse();
    let cfg: store::writer::WriterConfig =
        pipeline::config::load(args.config.as_deref(), "AA_WRITER")?;
    cfg.validate()?;
    if args.setup {
        let specs = cfg.topic_setup.specs(&cfg.topics);
        pipeline::kafka::create_topics(&cfg.kafka, &specs).await?;
        for (topic, spec) in &specs {
            println!(
                "topic {topic}: {} partitions, replication {}",
                spec.partitions, spec.replication
            );
        }
    }
    if args.migrate_only || args.setup {
        let ch = store::ClickHouse::new(cfg.clickhouse.clone());
        let applied = store::migrations::apply(&ch).await?;
        println!("migrations applied to {}: {applied:?}", ch.database());
        return Ok(());
    }
    let shutdown = pipeline::shutdown::on_signals();
    let ready = pipeline::ops::Readiness::default();
    pipeline::ops::serve(cfg.ops.listen, ready.clone(), shutdown.clone()).await?;
    store::writer::run(cfg, ready, shutdown).await
}
