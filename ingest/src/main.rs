//! `activity-audit-ingest`: the ingest service (HTTP and gRPC).

use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Activity Audit ingest: HTTP and gRPC -> Kafka")]
struct Args {
    /// TOML config file; `AA_INGEST__…` variables override it.
    #[arg(long, env = "AA_INGEST_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::alloc::tune();
    pipeline::telemetry::init();
    let args = Args::parse();
    let cfg: ingest::IngestConfig = pipeline::config::load(args.config.as_deref(), "AA_INGEST")?;
    let shutdown = pipeline::shutdown::on_signals();
    let ready = pipeline::ops::Readiness::default();
    pipeline::ops::serve(cfg.ops.listen, ready.clone(), shutdown.clone()).await?;
    let (_, handle) = ingest::start(cfg, ready, shutdown).await?;
    handle.await?;
    Ok(())
}
