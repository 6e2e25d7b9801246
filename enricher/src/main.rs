//! `activity-audit-enricher`: the enricher stage.

use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Activity Audit enricher stage")]
struct Args {
    /// TOML config file; `AA_ENRICHER__…` variables override it.
    #[arg(long, env = "AA_ENRICHER_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::alloc::tune();
    pipeline::telemetry::init();
    let args = Args::parse();
    let cfg: enricher::EnricherConfig =
        pipeline::config::load(args.config.as_deref(), "AA_ENRICHER")?;
    let shutdown = pipeline::shutdown::on_signals();
    let ready = pipeline::ops::Readiness::default();
    pipeline::ops::serve(cfg.ops.listen, ready.clone(), shutdown.clone()).await?;
    enricher::run(cfg, ready, shutdown).await
}
