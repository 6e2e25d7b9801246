//! `activity-audit-query-api`: the query service.

use clap::Parser;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Activity Audit query API")]
struct Args {
    /// TOML config file; `AA_QUERY__…` variables override it.
    #[arg(long, env = "AA_QUERY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline::alloc::tune();
    pipeline::telemetry::init();
    let args = Args::parse();
    let cfg: query_api::QueryConfig = pipeline::config::load(args.config.as_deref(), "AA_QUERY")?;
    let shutdown = pipeline::shutdown::on_signals();
    let ready = pipeline::ops::Readiness::default();
    pipeline::ops::serve(cfg.ops.listen, ready.clone(), shutdown.clone()).await?;
    let (_, handle) = query_api::start(cfg, ready, shutdown).await?;
    handle.await?;
    Ok(())
}
