//! `activity-audit-export`: the SIEM export stage.

use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Activity Audit export stage: OCSF and ECS topics for SIEMs")]
struct Args {
    /// TOML config file; `AA_EXPORT__…` variables override it.
    #[arg(long, env = "AA_EXPORT_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::alloc::tune();
    pipeline::telemetry::init();
    let args = Args::parse();
    let cfg: export::ExportConfig = pipeline::config::load(args.config.as_deref(), "AA_EXPORT")?;
    let shutdown = pipeline::shutdown::on_signals();
    let ready = pipeline::ops::Readiness::default();
    pipeline::ops::serve(cfg.ops.listen, ready.clone(), shutdown.clone()).await?;
    export::run(cfg, ready, shutdown).await
}
